//! The site attestor's decisions: Begin/Complete enrollment and renewal, independent of
//! gRPC. Every attempt ends in an attestation-log record; a certificate is returned only
//! after its record is durable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use garrison_ca::{Authority, CaError, SpiffeId, SubjectKey, SvidParams, VerifiedCsr};
use garrison_evidence::{
    AkIdentity, AkPolicy, EkEvidence, EkIdentity, EkTrust, HashAlg, PcrValues, QuoteVerdict,
};
use garrison_log::{AttestationLog, Decision, NewEntry, NodeState, Record, RecordKind};
use garrison_policy::{EkFacts, PolicyService, RequestFacts, SiteFacts};
use garrison_proto::limits;
use garrison_proto::v1;
use ring::rand::SystemRandom;
use serde_json::Value as Json;
use time::{Duration, OffsetDateTime};

use crate::boot_cache::{AppraisedBoot, BootCache, sha256};
use crate::challenge::{ChallengeId, ChallengeStore, Pending};
use crate::evidence_record::{EvidenceRecord, UnprovenRequest};
use crate::policy_input;
use crate::random::RandomSource;
use crate::record_budget::{BudgetLimits, PeerKey, RecordBudget, UNRECORDED_REFUSALS};
use crate::refusal::{Reason, Refusal};

/// Where the attestor gets the time. Tests substitute a fixed or stepping clock.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Everything the attestor decides with.
pub struct AttestorParts {
    /// Site name.
    pub site: String,
    /// The site intermediate CA.
    pub ca: Authority,
    /// How EKs are trusted.
    pub ek_trust: EkTrust,
    /// Which AKs are accepted.
    pub ak_policy: AkPolicy,
    /// Admission policy in force.
    pub policy: Arc<PolicyService>,
    /// The attestation log.
    pub log: AttestationLog,
    /// SHA-256 PCRs every quote must cover.
    pub pcrs: Vec<u32>,
    /// How long a challenge may be answered.
    pub challenge_ttl: Duration,
    /// The longest SVID lifetime handed out.
    pub max_svid_ttl: Duration,
    /// Most challenges outstanding at once.
    pub max_pending_challenges: usize,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where nonces, credential secrets and challenge ids come from (see `random.rs`).
    pub random: Arc<dyn RandomSource>,
}

struct PendingEnrollment {
    ek: EkIdentity,
    ak: AkIdentity,
    secret: Vec<u8>,
    nonce: Vec<u8>,
    asserted: BTreeMap<String, String>,
    evidence: EvidenceRecord,
}

struct PendingRenewal {
    node: NodeState,
    peer_serial: String,
    nonce: Vec<u8>,
}

/// The site attestor.
pub struct Attestor {
    parts: AttestorParts,
    enrollments: ChallengeStore<PendingEnrollment>,
    renewals: ChallengeStore<PendingRenewal>,
    boot_cache: BootCache,
    /// Records of refusals before the sender proved anything, per peer and for the site.
    unproven: RecordBudget,
    /// Records of refusals of proven senders (TPM holders, current nodes), per node and for
    /// the site: a TPM that is real but never admitted must not fill the log either.
    holders: RecordBudget,
    /// For the libraries that take a ring generator (MakeCredential, SVID issuance), which
    /// report its failures as errors; the attestor's own draws use `parts.random`.
    rng: SystemRandom,
}

/// Distinct (event log, quoted PCRs) appraisals kept: a site's fleet boots a handful of
/// images; each entry is tens of KiB at most.
const BOOT_CACHE_ENTRIES: usize = 256;

/// What a verified answer to a challenge established.
struct Appraised {
    verdict: QuoteVerdict,
    boot: Arc<AppraisedBoot>,
    csr: VerifiedCsr,
}

/// The outcome of one decision, before it is logged.
struct Outcome {
    kind: RecordKind,
    node_id: Option<String>,
    spiffe_id: Option<String>,
    policy_digest: Option<String>,
    evidence: EvidenceRecord,
    /// The event log's bytes, stored by digest with the record unless already stored.
    event_log: Vec<u8>,
    /// The appraisal of the event log, once it was appraised.
    boot: Option<Arc<AppraisedBoot>>,
    /// False only for load shedding, which leaves no record (nothing was decided).
    logged: bool,
    /// What the sender has proven so far.
    proof: Proof,
}

/// How much a request's sender has proven: decides what the record of a refusal keeps, and
/// whether it counts against the sender's record budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Nothing: anyone who can open a TLS connection can send this. The record keeps the
    /// request's digest and size (never its bytes) and is subject to the budget.
    Nothing,
    /// The evidence is a real TPM's (its EK certificate chain verified) and within the field
    /// limits, but the sender has not shown it holds that TPM (an EK certificate is public):
    /// the record keeps the evidence and is subject to the budget.
    TpmEvidence,
    /// The sender holds the TPM (its credential was activated) or a current SVID of this
    /// site (renewal): the record keeps all evidence, event log included, within the node's
    /// own budget (20 at once, then one every 10 minutes); beyond it the refusal is counted
    /// in the summary record. The event log's bytes are kept only if it replayed to the
    /// quote.
    Holder,
}

/// Who sent a request and the request, for the record of a refusal that may not keep it.
struct Sender<'a, M> {
    peer: Option<SocketAddr>,
    stage: &'static str,
    request: &'a M,
}

impl<'a, M: prost::Message> Sender<'a, M> {
    fn new(peer: Option<SocketAddr>, stage: &'static str, request: &'a M) -> Self {
        Sender {
            peer,
            stage,
            request,
        }
    }

    /// The request's digest and size: what an unproven request leaves in the log.
    fn unproven(&self) -> UnprovenRequest {
        let bytes = self.request.encode_to_vec();
        UnprovenRequest {
            stage: self.stage,
            peer: self
                .peer
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            request_bytes: bytes.len(),
            request_sha256: hex::encode(sha256(&bytes)),
        }
    }
}

/// Longest refusal detail kept for an unproven request (the rest is cut at a character
/// boundary): details quote parts of what was received.
const MAX_UNPROVEN_DETAIL: usize = 512;

fn bounded(detail: &str) -> String {
    let mut end = detail.len().min(MAX_UNPROVEN_DETAIL);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    match detail.get(..end) {
        Some(kept) if end < detail.len() => format!("{kept}… ({} bytes)", detail.len()),
        _ => detail.to_owned(),
    }
}

impl fmt::Debug for Attestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attestor")
            .field("site", &self.parts.site)
            .finish_non_exhaustive()
    }
}

impl Attestor {
    /// An attestor over `parts`.
    pub fn new(parts: AttestorParts) -> Self {
        let capacity = parts.max_pending_challenges;
        let now = parts.clock.now();
        Attestor {
            parts,
            enrollments: ChallengeStore::new(capacity),
            renewals: ChallengeStore::new(capacity),
            boot_cache: BootCache::new(BOOT_CACHE_ENTRIES),
            unproven: RecordBudget::new(BudgetLimits::default(), now),
            holders: RecordBudget::for_holders(BudgetLimits::holders(), now),
            rng: SystemRandom::new(),
        }
    }

    /// Verify a new signed policy bundle (archive bytes) and put it in force without dropping
    /// requests in flight. Rollbacks (against the floor in the log and the bundle in force),
    /// reused sequences, unverifiable and uncompilable bundles are refused and the bundle in
    /// force keeps serving. Either way the outcome is a `policy-update` record (see
    /// `policy_update.rs`). Returns a one-line description of what happened; a refusal starts
    /// with its stable code.
    pub async fn reload_policy(&self, archive: &[u8]) -> Result<String, String> {
        let now = self.parts.clock.now();
        let parts = &self.parts;
        crate::policy_update::reload(&parts.policy, &parts.log, &parts.site, archive, now).await
    }

    /// Drop challenges that can no longer be answered; returns how many remain outstanding.
    pub fn purge_expired_challenges(&self) -> usize {
        let now = self.parts.clock.now();
        self.enrollments.purge_expired(now) + self.renewals.purge_expired(now)
    }

    /// The attestor's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.parts.clock)
    }

    /// The attestation log.
    pub fn log(&self) -> &AttestationLog {
        &self.parts.log
    }

    /// How long a challenge may be answered.
    pub fn challenge_ttl(&self) -> Duration {
        self.parts.challenge_ttl
    }

    /// The trust domain's roots, DER.
    pub fn trust_bundle(&self) -> &[Vec<u8>] {
        self.parts.ca.roots()
    }

    /// Enrollment step 1. `peer` is the client's address, for the record of a refusal.
    pub async fn begin(
        &self,
        request: v1::BeginRequest,
        peer: Option<SocketAddr>,
    ) -> Result<v1::BeginResponse, Refusal> {
        match self.begin_checked(&request).await {
            Ok(response) => Ok(response),
            Err((refusal, outcome)) => {
                let sender = Sender::new(peer, "enroll-begin", &request);
                Err(self.record_refusal(refusal, outcome, sender).await)
            }
        }
    }

    async fn begin_checked(
        &self,
        request: &v1::BeginRequest,
    ) -> Result<v1::BeginResponse, (Refusal, Outcome)> {
        let now = self.parts.clock.now();
        let unproven = |refusal| (refusal, Outcome::reject(None, EvidenceRecord::default()));
        check_begin_sizes(request).map_err(unproven)?;
        let ek = self.verify_ek(request, now).map_err(unproven)?;
        // From here on the evidence is a real TPM's (and within the field limits), though
        // nobody has shown to hold that TPM yet.
        let mut evidence = EvidenceRecord {
            stage: "enroll-begin",
            ek_public: request.ek_public.clone(),
            ek_certificate: request.ek_certificate.clone(),
            ak_public: request.ak_public.clone(),
            ..EvidenceRecord::default()
        };
        let tpm = |refusal, evidence| {
            let mut outcome = Outcome::reject(None, evidence);
            outcome.proof = Proof::TpmEvidence;
            (refusal, outcome)
        };
        let ak = match garrison_evidence::check_ak(&request.ak_public, &self.parts.ak_policy) {
            Ok(ak) => ak,
            Err(e) => return Err(tpm(Refusal::from(e), evidence)),
        };
        let (secret, nonce, id) = match self.draw_enrollment() {
            Ok(drawn) => drawn,
            Err(refusal) => return Err(tpm(refusal, evidence)),
        };
        let credential =
            match garrison_evidence::make_credential(&ek.public, ak.name(), &secret, &self.rng) {
                Ok(credential) => credential,
                Err(e) => return Err(tpm(Refusal::from(e), evidence)),
            };
        evidence.nonce = nonce.to_vec();
        let challenge = self.challenge(&id, &nonce, now);
        let pending = PendingEnrollment {
            ek,
            ak,
            secret: secret.to_vec(),
            nonce: nonce.to_vec(),
            asserted: request.asserted.clone().into_iter().collect(),
            evidence,
        };
        let expires_at = now + self.parts.challenge_ttl;
        // A full store sheds load: nothing to log, the client retries.
        self.enrollments
            .insert(
                id,
                Pending {
                    expires_at,
                    state: pending,
                },
                now,
            )
            .map_err(|r| (r, Outcome::unlogged()))?;
        Ok(v1::BeginResponse {
            challenge: Some(challenge),
            id_object: credential.id_object_contents().to_vec(),
            encrypted_secret: credential.encrypted_secret_contents().to_vec(),
        })
    }

    /// The EK certificate chain to a trusted manufacturer and its key against the EK public
    /// area.
    fn verify_ek(
        &self,
        request: &v1::BeginRequest,
        now: OffsetDateTime,
    ) -> Result<EkIdentity, Refusal> {
        let intermediates: Vec<&[u8]> = request.ek_chain.iter().map(Vec::as_slice).collect();
        let certificate =
            (!request.ek_certificate.is_empty()).then_some(request.ek_certificate.as_slice());
        let ek_evidence = EkEvidence {
            public_area: &request.ek_public,
            certificate,
            intermediates: &intermediates,
        };
        Ok(garrison_evidence::verify_ek(
            &ek_evidence,
            &self.parts.ek_trust,
            now,
        )?)
    }

    /// Enrollment step 2: verify the answer, decide, issue, log.
    pub async fn complete(
        &self,
        mut request: v1::CompleteRequest,
        peer: Option<SocketAddr>,
    ) -> Result<v1::SvidResponse, Refusal> {
        const STAGE: &str = "enroll-complete";
        let now = self.parts.clock.now();
        let pending = match check_complete_sizes(&request)
            .and_then(|()| self.enrollments.take(&request.challenge_id, now))
        {
            Ok(p) => p,
            Err(refusal) => {
                let outcome = Outcome::reject(None, EvidenceRecord::default());
                let sender = Sender::new(peer, STAGE, &request);
                return Err(self.record_refusal(refusal, outcome, sender).await);
            }
        };
        let node_id = pending.ek.ek_hash.clone();
        let mut evidence = pending.evidence;
        evidence.stage = STAGE;
        let log_digest = sha256(&request.event_log);
        fill_answer(
            &mut evidence,
            request.quote.as_ref(),
            &log_digest,
            &request.event_log,
            &request.csr,
        );
        let mut outcome = Outcome::reject(Some(node_id.clone()), evidence);
        outcome.kind = RecordKind::Enroll;
        let result = self
            .complete_checked(
                &request,
                &pending.ek,
                &pending.ak,
                &pending.secret,
                &pending.nonce,
                &pending.asserted,
                log_digest,
                &mut outcome,
                now,
            )
            .await;
        if outcome.proof == Proof::Holder {
            outcome.event_log = std::mem::take(&mut request.event_log);
        }
        self.finish(result, outcome, Sender::new(peer, STAGE, &request))
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn complete_checked(
        &self,
        request: &v1::CompleteRequest,
        ek: &EkIdentity,
        ak: &AkIdentity,
        secret: &[u8],
        nonce: &[u8],
        asserted: &BTreeMap<String, String>,
        log_digest: [u8; 32],
        outcome: &mut Outcome,
        now: OffsetDateTime,
    ) -> Result<Issuance, Refusal> {
        garrison_evidence::verify_activation(secret, &request.activated_secret)?;
        // The sender holds the TPM of this EK, with this AK in it.
        outcome.proof = Proof::Holder;
        let status = self
            .parts
            .log
            .node_status(&ek.ek_hash)
            .await
            .map_err(|e| Refusal::new(Reason::LogUnavailable, e.to_string()))?;
        if status.revoked {
            return Err(Refusal::new(
                Reason::Revoked,
                format!("node {} is revoked", ek.ek_hash),
            ));
        }
        let previous = status.node;
        let appraised = self.appraise(
            ak,
            nonce,
            request.quote.as_ref(),
            (&request.event_log, log_digest),
            &request.csr,
            previous.as_ref(),
        )?;
        outcome.boot = Some(Arc::clone(&appraised.boot));
        let identity = identity_facts(ek)?;
        let request = RequestFacts::enroll(now);
        let input = self.policy_input(request, EkFacts::from(ek), ak, &appraised, asserted)?;
        let (spiffe_id, ttl) = self.decide(&input, &appraised.boot, outcome)?;
        self.issue(
            &ek.ek_hash,
            &identity.to_string(),
            ak,
            spiffe_id,
            ttl,
            appraised,
            outcome,
            now,
        )
    }

    /// Renewal step 1: a fresh challenge for the node behind the client certificate.
    pub async fn begin_renewal(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
        peer: Option<SocketAddr>,
    ) -> Result<v1::Challenge, Refusal> {
        const STAGE: &str = "renew-begin";
        let now = self.parts.clock.now();
        let request = v1::BeginRenewalRequest {};
        let (node, serial) = match self.identify_peer(peer_chain).await {
            Ok(found) => found,
            Err(refusal) => {
                let outcome = Outcome::reject(None, EvidenceRecord::default());
                let sender = Sender::new(peer, STAGE, &request);
                return Err(self.record_refusal(refusal, outcome, sender).await);
            }
        };
        let (nonce, id) = match self.draw_renewal() {
            Ok(drawn) => drawn,
            Err(refusal) => {
                let mut outcome =
                    Outcome::reject(Some(node.node_id.clone()), EvidenceRecord::default());
                outcome.proof = Proof::Holder;
                let sender = Sender::new(peer, STAGE, &request);
                return Err(self.record_refusal(refusal, outcome, sender).await);
            }
        };
        let challenge = self.challenge(&id, &nonce, now);
        let pending = PendingRenewal {
            node,
            peer_serial: serial,
            nonce: nonce.to_vec(),
        };
        self.renewals.insert(
            id,
            Pending {
                expires_at: now + self.parts.challenge_ttl,
                state: pending,
            },
            now,
        )?;
        Ok(challenge)
    }

    /// Renewal step 2: fresh quote with the bound AK, policy re-evaluated, new SVID.
    pub async fn complete_renewal(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
        mut request: v1::CompleteRenewalRequest,
        peer: Option<SocketAddr>,
    ) -> Result<v1::SvidResponse, Refusal> {
        const STAGE: &str = "renew-complete";
        let now = self.parts.clock.now();
        let pending = match check_renewal_sizes(&request)
            .and_then(|()| self.renewals.take(&request.challenge_id, now))
        {
            Ok(p) => p,
            Err(refusal) => {
                let outcome = Outcome::reject(None, EvidenceRecord::default());
                let sender = Sender::new(peer, STAGE, &request);
                return Err(self.record_refusal(refusal, outcome, sender).await);
            }
        };
        let log_digest = sha256(&request.event_log);
        let mut evidence = EvidenceRecord {
            stage: STAGE,
            ak_public: request.ak_public.clone(),
            nonce: pending.nonce.clone(),
            ..EvidenceRecord::default()
        };
        fill_answer(
            &mut evidence,
            request.quote.as_ref(),
            &log_digest,
            &request.event_log,
            &request.csr,
        );
        let mut outcome = Outcome::reject(Some(pending.node.node_id.clone()), evidence);
        outcome.kind = RecordKind::Renew;
        let result = self
            .renewal_checked(
                peer_chain,
                &request,
                &pending,
                log_digest,
                &mut outcome,
                now,
            )
            .await;
        if outcome.proof == Proof::Holder {
            outcome.event_log = std::mem::take(&mut request.event_log);
        }
        self.finish(result, outcome, Sender::new(peer, STAGE, &request))
            .await
    }

    async fn renewal_checked(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
        request: &v1::CompleteRenewalRequest,
        pending: &PendingRenewal,
        log_digest: [u8; 32],
        outcome: &mut Outcome,
        now: OffsetDateTime,
    ) -> Result<Issuance, Refusal> {
        let (_, serial) = self.identify_peer(peer_chain).await?;
        // The sender holds a current SVID of this site.
        outcome.proof = Proof::Holder;
        if serial != pending.peer_serial {
            return Err(Refusal::new(
                Reason::ChallengePeerMismatch,
                "renewal answered by another client certificate",
            ));
        }
        let ak = garrison_evidence::check_ak(&request.ak_public, &self.parts.ak_policy)?;
        if ak.name().as_bytes() != pending.node.ak_name.as_slice() {
            return Err(Refusal::new(
                Reason::AkMismatch,
                format!(
                    "AK {} is not the AK {} bound at enrollment",
                    ak.name().to_hex(),
                    hex::encode(&pending.node.ak_name)
                ),
            ));
        }
        let node = &pending.node;
        let appraised = self.appraise(
            &ak,
            &pending.nonce,
            request.quote.as_ref(),
            (&request.event_log, log_digest),
            &request.csr,
            Some(node),
        )?;
        outcome.boot = Some(Arc::clone(&appraised.boot));
        // Revocation of the serial and of the node was checked by `identify_peer` above, in
        // this same request.
        let request = RequestFacts::renew(now, policy_input::previous_decision(node)?);
        let ek = policy_input::stored_ek_facts(node)?;
        let input = self.policy_input(request, ek, &ak, &appraised, &BTreeMap::new())?;
        let (spiffe_id, ttl) = self.decide(&input, &appraised.boot, outcome)?;
        self.issue(
            &node.node_id,
            &node.identity,
            &ak,
            spiffe_id,
            ttl,
            appraised,
            outcome,
            now,
        )
    }

    /// Quote, PCR selection, monotonic counters, event-log replay, boot claims, CSR.
    fn appraise(
        &self,
        ak: &AkIdentity,
        nonce: &[u8],
        quote: Option<&v1::Quote>,
        (event_log, log_digest): (&[u8], [u8; 32]),
        csr: &[u8],
        previous: Option<&NodeState>,
    ) -> Result<Appraised, Refusal> {
        let quote = quote.ok_or_else(|| Refusal::new(Reason::MalformedRequest, "no quote"))?;
        check_answer_sizes(Some(quote), event_log, csr)?;
        let pcrs = pcr_values(quote)?;
        let verdict =
            garrison_evidence::verify_quote(ak, &quote.attest, &quote.signature, nonce, &pcrs)?;
        self.check_selection(&verdict)?;
        if let Some(previous) = previous {
            check_monotonic(previous, &verdict)?;
        }
        let boot = self.boot_cache.appraise(event_log, log_digest, &pcrs)?;
        let csr =
            VerifiedCsr::from_der(csr).map_err(|e| Refusal::new(Reason::Csr, e.to_string()))?;
        Ok(Appraised { verdict, boot, csr })
    }

    fn check_selection(&self, verdict: &QuoteVerdict) -> Result<(), Refusal> {
        let quoted: Vec<(HashAlg, u32)> = verdict.selection.iter().collect();
        let wanted: Vec<(HashAlg, u32)> = self
            .parts
            .pcrs
            .iter()
            .map(|i| (HashAlg::Sha256, *i))
            .collect();
        if quoted != wanted {
            return Err(Refusal::new(
                Reason::PcrSelection,
                format!("quote covers {quoted:?}, the challenge asked for {wanted:?}"),
            ));
        }
        Ok(())
    }

    /// The policy input (without `boot` and `pcrs`) from garrison-policy's one producer:
    /// this site, which has no hub to reach yet (`site.connected` false).
    fn policy_input(
        &self,
        request: RequestFacts,
        ek: EkFacts,
        ak: &AkIdentity,
        appraised: &Appraised,
        asserted: &BTreeMap<String, String>,
    ) -> Result<Json, Refusal> {
        let sequence = self.parts.policy.current().info().sequence;
        let site = SiteFacts::without_hub(&self.parts.site, sequence);
        policy_input::build(site, request, ek, ak, &appraised.verdict, asserted)
    }

    /// Admission policy over `input` (everything but `boot` and `pcrs`, which come converted
    /// from the boot cache).
    fn decide(
        &self,
        input: &Json,
        boot: &AppraisedBoot,
        outcome: &mut Outcome,
    ) -> Result<(SpiffeId, Duration), Refusal> {
        let engine = self.parts.policy.current();
        outcome.policy_digest = Some(engine.info().digest.clone());
        let decision = engine
            .evaluate_sections(input, &[("boot", &boot.boot), ("pcrs", &boot.pcrs)])
            .map_err(|e| Refusal::new(Reason::PolicyError, e.to_string()))?;
        if !decision.allow {
            return Err(Refusal::new(
                Reason::PolicyDeny,
                decision.reasons.join("; "),
            ));
        }
        let path = decision.spiffe_path.unwrap_or_default();
        let scope = format!("/site/{}/", self.parts.site);
        if !path.starts_with(&scope) {
            return Err(Refusal::new(
                Reason::PolicyScope,
                format!("policy asked for {path}, outside {scope}"),
            ));
        }
        let id = SpiffeId::from_path(self.parts.ca.trust_domain(), &path)
            .map_err(|e| Refusal::new(Reason::PolicyScope, e.to_string()))?;
        if let Some(role) = garrison_ca::scope::reserved_site_role(&id) {
            return Err(Refusal::new(
                Reason::PolicyScope,
                format!("policy asked for {id}, which is reserved for the site's {role}"),
            ));
        }
        let ttl =
            Duration::seconds(i64::try_from(decision.ttl_seconds.unwrap_or(0)).unwrap_or(i64::MAX));
        outcome.spiffe_id = Some(id.to_string());
        Ok((id, ttl.min(self.parts.max_svid_ttl)))
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        node_id: &str,
        identity: &str,
        ak: &AkIdentity,
        spiffe_id: SpiffeId,
        ttl: Duration,
        appraised: Appraised,
        outcome: &Outcome,
        now: OffsetDateTime,
    ) -> Result<Issuance, Refusal> {
        let params = SvidParams {
            spiffe_id: spiffe_id.clone(),
            ttl,
            max_ttl: self.parts.max_svid_ttl,
            subject_key: SubjectKey::Csr(appraised.csr),
        };
        let issued = self
            .parts
            .ca
            .issue_svid(params, now, &self.rng)
            .map_err(ca_refusal)?;
        let serial = hex::encode(&issued.serial);
        let v = &appraised.verdict;
        let node = NodeState {
            node_id: node_id.to_owned(),
            ak_name: ak.name().as_bytes().to_vec(),
            spiffe_id: spiffe_id.to_string(),
            identity: identity.to_owned(),
            reset_count: v.reset_count,
            restart_count: v.restart_count,
            clock: v.clock,
            current_serial: Some(serial.clone()),
            updated: now,
        };
        let record = Record {
            time: now,
            site: self.parts.site.clone(),
            kind: outcome.kind,
            node_id: Some(node_id.to_owned()),
            spiffe_id: Some(spiffe_id.to_string()),
            decision: Decision::Allow,
            reasons: Vec::new(),
            policy_digest: outcome.policy_digest.clone(),
            evidence_digest: None,
            cert_serial: Some(serial),
            cert_not_after: Some(issued.not_after),
        };
        Ok(Issuance {
            record,
            node,
            chain: issued.chain,
            roots: issued.roots,
            spiffe_id: spiffe_id.to_string(),
            not_after: issued.not_after,
        })
    }

    /// Log the result, durably, then (and only then) release the certificate.
    async fn finish<M: prost::Message>(
        &self,
        result: Result<Issuance, Refusal>,
        outcome: Outcome,
        sender: Sender<'_, M>,
    ) -> Result<v1::SvidResponse, Refusal> {
        let issuance = match result {
            Ok(issuance) => issuance,
            Err(refusal) => return Err(self.record_refusal(refusal, outcome, sender).await),
        };
        let entry = NewEntry {
            record: issuance.record,
            evidence: Some(outcome.evidence.to_bytes()),
            node_update: Some(issuance.node),
        };
        let appended = self.append(entry, outcome).await.map_err(|e| {
            tracing::error!(error = %e, "attestation log append failed; certificate withheld");
            Refusal::new(Reason::LogUnavailable, e.to_string())
        })?;
        Ok(v1::SvidResponse {
            certificate_chain: issuance.chain,
            trust_bundle: issuance.roots,
            spiffe_id: issuance.spiffe_id,
            expires_at_unix: u64::try_from(issuance.not_after.unix_timestamp()).unwrap_or(0),
            log_sequence: appended.sequence,
        })
    }

    /// Record a refusal (reason code first, then detail) and return it for the client. What
    /// the record keeps depends on what the sender proved ([`Proof`]): the request's evidence
    /// only once it is bound to a real TPM, otherwise its digest and size; and refusals that
    /// came before the sender proved to be a TPM's holder or a current node are recorded
    /// within their peer's budget, beyond it only counted (`record_budget.rs`).
    async fn record_refusal<M: prost::Message>(
        &self,
        refusal: Refusal,
        mut outcome: Outcome,
        sender: Sender<'_, M>,
    ) -> Refusal {
        tracing::info!(reason = refusal.reason.code(), detail = %refusal.detail, node = ?outcome.node_id, peer = ?sender.peer, "refused");
        if !outcome.logged {
            return refusal;
        }
        let now = self.parts.clock.now();
        let admitted = match (
            outcome.proof,
            outcome.node_id.as_deref().and_then(PeerKey::node),
        ) {
            (Proof::Holder, Some(node)) => self.holders.admit_key(node, now),
            (Proof::Holder, None) => self.holders.admit(sender.peer, now),
            _ => self.unproven.admit(sender.peer, now),
        };
        if !admitted {
            return refusal;
        }
        let (detail, evidence) = match outcome.proof {
            Proof::Holder => (refusal.detail.clone(), outcome.evidence.to_bytes()),
            Proof::TpmEvidence => (bounded(&refusal.detail), outcome.evidence.to_bytes()),
            Proof::Nothing => (bounded(&refusal.detail), sender.unproven().to_bytes()),
        };
        if outcome.proof != Proof::Holder || outcome.boot.is_none() {
            // Only a proven sender's event log, and only one that replayed to its quote, is
            // ever stored: any other is bytes of the sender's choosing (its digest is in the
            // evidence record).
            outcome.event_log = Vec::new();
        }
        let record = Record {
            time: now,
            site: self.parts.site.clone(),
            kind: RecordKind::Reject,
            node_id: outcome.node_id.take(),
            spiffe_id: outcome.spiffe_id.take(),
            decision: Decision::Deny,
            reasons: vec![refusal.reason.code().to_owned(), detail],
            policy_digest: outcome.policy_digest.take(),
            evidence_digest: None,
            cert_serial: None,
            cert_not_after: None,
        };
        let entry = NewEntry {
            record,
            evidence: Some(evidence),
            node_update: None,
        };
        match self.append(entry, outcome).await {
            Ok(_) => refusal,
            Err(e) => {
                tracing::error!(error = %e, "attestation log append failed for a refusal");
                Refusal::new(Reason::LogUnavailable, e.to_string())
            }
        }
    }

    /// Write one record summing up the refusals that were not recorded one by one (their
    /// record budget was spent) since the last call, if there were any. Returns how many it
    /// covers. The server calls this once a minute.
    pub async fn record_unrecorded_refusals(&self) -> Result<u64, garrison_log::LogError> {
        let mut total = 0;
        for budget in [&self.unproven, &self.holders] {
            total += self.record_unrecorded_of(budget).await?;
        }
        Ok(total)
    }

    async fn record_unrecorded_of(
        &self,
        budget: &RecordBudget,
    ) -> Result<u64, garrison_log::LogError> {
        let now = self.parts.clock.now();
        let Some(unrecorded) = budget.take_unrecorded(now) else {
            return Ok(0);
        };
        tracing::warn!(
            refusals = unrecorded.refusals,
            peers = unrecorded.peers,
            "{unrecorded}"
        );
        let record = Record {
            time: now,
            site: self.parts.site.clone(),
            kind: RecordKind::Reject,
            node_id: None,
            spiffe_id: None,
            decision: Decision::Deny,
            reasons: vec![UNRECORDED_REFUSALS.to_owned(), unrecorded.to_string()],
            policy_digest: None,
            evidence_digest: None,
            cert_serial: None,
            cert_not_after: None,
        };
        let entry = NewEntry {
            record,
            evidence: None,
            node_update: None,
        };
        self.parts.log.append(entry).await?;
        Ok(unrecorded.refusals)
    }

    /// Refusals that were not recorded one by one since the start (each is counted in a
    /// summary record, see [`Self::record_unrecorded_refusals`]).
    pub fn unrecorded_refusals(&self) -> u64 {
        self.unproven
            .unrecorded_total()
            .saturating_add(self.holders.unrecorded_total())
    }

    /// Append `entry` with the event log's bytes, unless a committed record already holds
    /// them (then the digest in the evidence suffices).
    async fn append(
        &self,
        entry: NewEntry,
        outcome: Outcome,
    ) -> Result<garrison_log::Appended, garrison_log::LogError> {
        let stored = outcome.boot.as_ref().is_some_and(|b| b.log_stored());
        if stored || outcome.event_log.is_empty() {
            return self.parts.log.append(entry).await;
        }
        let appended = self
            .parts
            .log
            .append_with_blobs(entry, vec![outcome.event_log])
            .await?;
        if let Some(boot) = &outcome.boot {
            boot.mark_log_stored();
        }
        Ok(appended)
    }

    /// The node behind a verified client certificate, which must be its current SVID.
    async fn identify_peer(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
    ) -> Result<(NodeState, String), Refusal> {
        let leaf = peer_chain.and_then(|c| c.first()).ok_or_else(|| {
            Refusal::new(
                Reason::ClientCertificateRequired,
                "renewal needs the node's SVID as client certificate",
            )
        })?;
        let (serial, spiffe_id) = serial_and_id(leaf)?;
        // One query: the node holding this serial now, and whether the serial or its node is
        // revoked.
        let status = self
            .parts
            .log
            .node_status_by_serial(&serial)
            .await
            .map_err(|e| Refusal::new(Reason::LogUnavailable, e.to_string()))?;
        if status.revoked {
            return Err(Refusal::new(
                Reason::Revoked,
                format!("certificate {serial} or its node is revoked"),
            ));
        }
        let node = status.node.ok_or_else(|| {
            Refusal::new(
                Reason::UnknownSvid,
                format!("{spiffe_id} serial {serial} is not the current SVID of any node here"),
            )
        })?;
        if node.spiffe_id != spiffe_id {
            return Err(Refusal::new(
                Reason::UnknownSvid,
                format!(
                    "certificate says {spiffe_id}, its node holds {}",
                    node.spiffe_id
                ),
            ));
        }
        Ok((node, serial))
    }

    fn challenge(&self, id: &[u8], nonce: &[u8], now: OffsetDateTime) -> v1::Challenge {
        v1::Challenge {
            challenge_id: id.to_vec(),
            nonce: nonce.to_vec(),
            pcr_selection: vec![v1::PcrSelection {
                hash_alg: u32::from(HashAlg::Sha256.tpm_alg_id()),
                pcrs: self.parts.pcrs.clone(),
            }],
            expires_at_unix: u64::try_from((now + self.parts.challenge_ttl).unix_timestamp())
                .unwrap_or(0),
        }
    }

    /// A credential secret, a nonce and a challenge id.
    fn draw_enrollment(&self) -> Result<([u8; 32], [u8; 32], ChallengeId), Refusal> {
        Ok((
            self.random("credential secret")?,
            self.random("nonce")?,
            self.random("challenge id")?,
        ))
    }

    /// A nonce and a challenge id.
    fn draw_renewal(&self) -> Result<([u8; 32], ChallengeId), Refusal> {
        Ok((self.random("nonce")?, self.random("challenge id")?))
    }

    /// `N` random bytes for `what`, or the refusal that stops the request: a nonce, secret or
    /// challenge id that was not drawn must never be used.
    fn random<const N: usize>(&self, what: &str) -> Result<[u8; N], Refusal> {
        let mut bytes = [0u8; N];
        self.parts.random.fill(&mut bytes).map_err(|e| {
            tracing::error!(what, "random draw failed; request refused");
            Refusal::new(
                Reason::RandomUnavailable,
                format!("drawing the {what}: {e}"),
            )
        })?;
        Ok(bytes)
    }
}

/// A certificate ready to be released once its record is durable.
struct Issuance {
    record: Record,
    node: NodeState,
    chain: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
    spiffe_id: String,
    not_after: OffsetDateTime,
}

impl Outcome {
    fn reject(node_id: Option<String>, evidence: EvidenceRecord) -> Self {
        Outcome {
            kind: RecordKind::Reject,
            node_id,
            spiffe_id: None,
            policy_digest: None,
            evidence,
            event_log: Vec::new(),
            boot: None,
            logged: true,
            proof: Proof::Nothing,
        }
    }

    fn unlogged() -> Self {
        Outcome {
            logged: false,
            ..Outcome::reject(None, EvidenceRecord::default())
        }
    }
}

/// What enrollment established about the TPM's identity, kept with the node so that every
/// renewal's policy input carries the same facts (the EK certificate is not sent again).
/// It is `garrison_policy::EkFacts` (what renewals read back with `EkFacts::from_stored`)
/// plus, for auditors, how the EK was trusted.
/// A facts value that does not encode refuses the enrollment: nothing is stored in its place.
pub(crate) fn identity_facts(ek: &EkIdentity) -> Result<Json, Refusal> {
    let mut facts = serde_json::to_value(EkFacts::from(ek))
        .map_err(|e| Refusal::new(Reason::PolicyError, format!("EK facts do not encode: {e}")))?;
    if let Json::Object(fields) = &mut facts {
        fields.insert(
            "trust_basis".to_owned(),
            Json::String(format!("{:?}", ek.basis)),
        );
    }
    Ok(facts)
}

fn fill_answer(
    evidence: &mut EvidenceRecord,
    quote: Option<&v1::Quote>,
    log_digest: &[u8; 32],
    event_log: &[u8],
    csr: &[u8],
) {
    if let Some(q) = quote {
        evidence.attest = q.attest.clone();
        evidence.signature = q.signature.clone();
        evidence.pcrs = q
            .pcrs
            .iter()
            .map(|p| (p.hash_alg, p.index, hex::encode(&p.digest)))
            .collect();
    }
    if !event_log.is_empty() {
        evidence.event_log_sha256 = hex::encode(log_digest);
    }
    evidence.csr = csr.to_vec();
}

fn too_big(what: &str, len: usize, max: usize) -> Result<(), Refusal> {
    if len > max {
        return Err(Refusal::new(
            Reason::MalformedRequest,
            format!("{what} is {len} bytes; at most {max}"),
        ));
    }
    Ok(())
}

fn check_begin_sizes(r: &v1::BeginRequest) -> Result<(), Refusal> {
    too_big("ek_public", r.ek_public.len(), limits::MAX_PUBLIC_AREA)?;
    too_big("ak_public", r.ak_public.len(), limits::MAX_PUBLIC_AREA)?;
    too_big(
        "ek_certificate",
        r.ek_certificate.len(),
        limits::MAX_CERTIFICATE,
    )?;
    too_big("ek_chain", r.ek_chain.len(), limits::MAX_EK_CHAIN)?;
    for cert in &r.ek_chain {
        too_big("ek_chain certificate", cert.len(), limits::MAX_CERTIFICATE)?;
    }
    too_big(
        "asserted facts",
        r.asserted.len(),
        limits::MAX_ASSERTED_FACTS,
    )?;
    for (k, v) in &r.asserted {
        too_big(
            "asserted fact",
            k.len().max(v.len()),
            limits::MAX_ASSERTED_LEN,
        )?;
    }
    Ok(())
}

/// Every field of a Complete, before anything else is done with it (or stored).
fn check_complete_sizes(r: &v1::CompleteRequest) -> Result<(), Refusal> {
    too_big(
        "activated secret",
        r.activated_secret.len(),
        limits::MAX_SECRET,
    )?;
    check_answer_sizes(r.quote.as_ref(), &r.event_log, &r.csr)
}

/// Every field of a CompleteRenewal, before anything else is done with it (or stored).
fn check_renewal_sizes(r: &v1::CompleteRenewalRequest) -> Result<(), Refusal> {
    too_big("ak_public", r.ak_public.len(), limits::MAX_PUBLIC_AREA)?;
    check_answer_sizes(r.quote.as_ref(), &r.event_log, &r.csr)
}

fn check_answer_sizes(
    quote: Option<&v1::Quote>,
    event_log: &[u8],
    csr: &[u8],
) -> Result<(), Refusal> {
    if let Some(quote) = quote {
        too_big("quote attest", quote.attest.len(), limits::MAX_ATTEST)?;
        too_big("quote signature", quote.signature.len(), limits::MAX_ATTEST)?;
        too_big("quote PCR values", quote.pcrs.len(), limits::MAX_PCR_VALUES)?;
        for pcr in &quote.pcrs {
            too_big("quote PCR value", pcr.digest.len(), MAX_PCR_DIGEST)?;
        }
    }
    too_big("event log", event_log.len(), limits::MAX_EVENT_LOG)?;
    too_big("CSR", csr.len(), limits::MAX_CSR)
}

/// The longest digest of any PCR bank (SHA-512, SM3 and SHA3-512 included).
const MAX_PCR_DIGEST: usize = 64;

fn pcr_values(quote: &v1::Quote) -> Result<PcrValues, Refusal> {
    let mut values = PcrValues::new();
    for pcr in &quote.pcrs {
        let alg = u16::try_from(pcr.hash_alg)
            .ok()
            .and_then(HashAlg::from_tpm_alg_id)
            .ok_or_else(|| {
                Refusal::new(
                    Reason::MalformedEvidence,
                    format!("unknown PCR bank {:#x}", pcr.hash_alg),
                )
            })?;
        values.insert(alg, pcr.index, pcr.digest.clone())?;
    }
    Ok(values)
}

/// Lexicographic (resetCount, restartCount, clock): a TPM reset may restart the clock, a
/// restart within a reset may not lower the clock, and nothing may go backwards. A cleared
/// TPM (TPM2_Clear zeroes the counters and the clock) looks exactly like a rollback; the
/// refusal says how an operator accepts one (`garrison node reset`, a logged node-reset).
fn check_monotonic(previous: &NodeState, v: &QuoteVerdict) -> Result<(), Refusal> {
    let before = (previous.reset_count, previous.restart_count, previous.clock);
    let now = (v.reset_count, v.restart_count, v.clock);
    if now < before {
        return Err(Refusal::new(
            Reason::ClockRollback,
            format!(
                "(resetCount, restartCount, clock) went from {before:?} to {now:?}: a replayed \
                 quote, a rolled-back TPM, or a TPM that was cleared. If an operator has \
                 checked that this machine's TPM was cleared, accept it with `garrison node \
                 reset --config <site.toml> --node {} --reason <why>` (logged as a \
                 node-reset record); until then this node is refused.",
                previous.node_id
            ),
        ));
    }
    Ok(())
}

fn serial_and_id(leaf: &[u8]) -> Result<(String, String), Refusal> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|_| Refusal::new(Reason::UnknownSvid, "client certificate does not parse"))?;
    let id = garrison_spiffe_tls::spiffe_id_of(leaf)
        .map_err(|_| Refusal::new(Reason::UnknownSvid, "client certificate has no SPIFFE ID"))?;
    Ok((hex::encode(cert.raw_serial()), id.to_string()))
}

fn ca_refusal(err: CaError) -> Refusal {
    Refusal::new(Reason::of_ca_error(err.kind()), err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use garrison_evidence::PcrSelection;

    fn node(reset: u32, restart: u32, clock: u64) -> NodeState {
        NodeState {
            node_id: "n".into(),
            ak_name: vec![],
            spiffe_id: "spiffe://example.org/site/a/node/n".into(),
            identity: "{}".into(),
            reset_count: reset,
            restart_count: restart,
            clock,
            current_serial: None,
            updated: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn quote(reset: u32, restart: u32, clock: u64) -> QuoteVerdict {
        QuoteVerdict {
            clock,
            reset_count: reset,
            restart_count: restart,
            safe: true,
            firmware_version: 0,
            qualified_signer: vec![],
            selection: PcrSelection::new(&[]).unwrap(),
            pcr_digest_alg: HashAlg::Sha256,
        }
    }

    #[test]
    fn counters_and_clock_may_only_move_forward() {
        let before = node(5, 2, 1_000);
        // Same boot, later: fine. A TPM restart or reset may restart the clock.
        assert!(check_monotonic(&before, &quote(5, 2, 1_000)).is_ok());
        assert!(check_monotonic(&before, &quote(5, 2, 9_000)).is_ok());
        assert!(check_monotonic(&before, &quote(5, 3, 10)).is_ok());
        assert!(check_monotonic(&before, &quote(6, 0, 10)).is_ok());
        // Anything that goes backwards is a replayed or forged quote, or a rolled-back TPM.
        for (reset, restart, clock) in [(5, 2, 999), (5, 1, 5_000), (4, 9, 99_999)] {
            let refusal = check_monotonic(&before, &quote(reset, restart, clock)).unwrap_err();
            assert_eq!(
                refusal.reason,
                Reason::ClockRollback,
                "{reset} {restart} {clock}"
            );
            assert!(
                refusal
                    .detail
                    .contains("garrison node reset --config <site.toml> --node n "),
                "the way out is named: {}",
                refusal.detail
            );
        }
    }
}
