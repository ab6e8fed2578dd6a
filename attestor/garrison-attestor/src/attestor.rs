//! The site attestor's exchanges: Begin/Complete enrollment and renewal, independent of
//! gRPC. The decisions are `garrison-appraisal`'s; this is the I/O around them: challenges
//! and the randomness they need, the node's history and revocation status from the log,
//! issuance by the site CA, and the log record of every attempt, within the record budgets.
//! A certificate is returned only after its record is durable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use garrison_appraisal::{
    Admission, Answer, Appraisal, AppraisedBoot, BeginEvidence, BootCache, DecisionRecord,
    Enrollment, EvidenceRecord, NodeHistory, SiteRules, Stage, UnprovenRequest, sha256,
};
use garrison_ca::CaError;
use garrison_evidence::{AkIdentity, AkPolicy, EkIdentity, EkTrust, HashAlg};
use garrison_log::{
    AttestationLog, Decision, LogError, NewEntry, NodeState, Precondition, PreconditionFailure,
    Record, RecordKind,
};
use garrison_policy::PolicyService;
use garrison_proto::v1;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

use crate::challenge::{ChallengeId, ChallengeStore, Pending};
use crate::random::RandomSource;
use crate::record_budget::{BudgetLimits, PeerKey, RecordBudget, UNRECORDED_REFUSALS};
use crate::refusal::{Reason, Refusal};
use crate::translate::{self, FIELD_LIMITS};

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
    /// The site intermediate CA, with its rotation.
    pub ca: Arc<crate::site_ca::SiteCa>,
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
    node: NodeHistory,
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
    /// The site CA's trust domain (the same for every generation of it).
    trust_domain: garrison_ca::TrustDomain,
    /// Decision, latency and log metrics (see `metrics.rs`).
    metrics: Arc<crate::metrics::AttestorMetrics>,
}

/// Distinct (event log, quoted PCRs) appraisals kept: a site's fleet boots a handful of
/// images; each entry is tens of KiB at most.
const BOOT_CACHE_ENTRIES: usize = 256;

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
    stage: Stage,
    request: &'a M,
}

impl<'a, M: prost::Message> Sender<'a, M> {
    fn new(peer: Option<SocketAddr>, stage: Stage, request: &'a M) -> Self {
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
        let trust_domain = parts.ca.active().trust_domain().clone();
        Attestor {
            trust_domain,
            parts,
            enrollments: ChallengeStore::new(capacity),
            renewals: ChallengeStore::new(capacity),
            boot_cache: BootCache::new(BOOT_CACHE_ENTRIES),
            unproven: RecordBudget::new(BudgetLimits::default(), now),
            holders: RecordBudget::for_holders(BudgetLimits::holders(), now),
            rng: SystemRandom::new(),
            metrics: Arc::default(),
        }
    }

    /// The attestor's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::AttestorMetrics> {
        &self.metrics
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

    /// The sequence and digest of the policy bundle in force.
    pub fn policy_in_force(&self) -> (u64, String) {
        let engine = self.parts.policy.current();
        let info = engine.info();
        (info.sequence, info.digest.clone())
    }

    /// The site this attestor serves.
    pub fn site(&self) -> &str {
        &self.parts.site
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

    /// What agents are sent as the trust bundle: the roots and any new root announced.
    pub fn trust_bundle(&self) -> Vec<Vec<u8>> {
        self.parts.ca.trust_bundle()
    }

    /// The site CA holder.
    pub fn site_ca(&self) -> &Arc<crate::site_ca::SiteCa> {
        &self.parts.ca
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
                let sender = Sender::new(peer, Stage::EnrollBegin, &request);
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
        let begin = BeginEvidence {
            ek_public: &request.ek_public,
            ek_certificate: &request.ek_certificate,
            ek_chain: &request.ek_chain,
            ak_public: &request.ak_public,
            asserted: &request.asserted,
        };
        garrison_appraisal::check_begin_sizes(&FIELD_LIMITS, &begin).map_err(unproven)?;
        let ek =
            garrison_appraisal::verify_ek(&begin, &self.parts.ek_trust, now).map_err(unproven)?;
        // From here on the evidence is a real TPM's (and within the field limits), though
        // nobody has shown to hold that TPM yet.
        let mut evidence = EvidenceRecord {
            stage: Stage::EnrollBegin,
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
        let ak = match garrison_appraisal::check_ak(&request.ak_public, &self.parts.ak_policy) {
            Ok(ak) => ak,
            Err(refusal) => return Err(tpm(refusal, evidence)),
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

    /// Enrollment step 2: verify the answer, decide, issue, log.
    pub async fn complete(
        &self,
        mut request: v1::CompleteRequest,
        peer: Option<SocketAddr>,
    ) -> Result<v1::SvidResponse, Refusal> {
        const STAGE: Stage = Stage::EnrollComplete;
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
        let quote = request.quote.as_ref().map(translate::quote);
        let answer = Answer {
            nonce: &pending.nonce,
            quote: quote.as_ref(),
            event_log: &request.event_log,
            event_log_sha256: sha256(&request.event_log),
            csr: &request.csr,
        };
        evidence.fill_answer(
            answer.quote,
            &answer.event_log_sha256,
            answer.event_log,
            answer.csr,
        );
        let mut outcome = Outcome::reject(Some(node_id.clone()), evidence);
        outcome.kind = RecordKind::Enroll;
        let enrollment = Enrollment {
            ek: &pending.ek,
            ak: &pending.ak,
            asserted: &pending.asserted,
            previous: None,
        };
        let result = self
            .complete_checked(
                &request.activated_secret,
                &pending.secret,
                enrollment,
                &answer,
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

    /// The credential round trip, the node's history and revocation status, then the
    /// appraisal and, on allow, issuance.
    async fn complete_checked(
        &self,
        activated_secret: &[u8],
        secret: &[u8],
        enrollment: Enrollment<'_>,
        answer: &Answer<'_>,
        outcome: &mut Outcome,
        now: OffsetDateTime,
    ) -> Result<Issuance, Refusal> {
        garrison_appraisal::verify_activation(secret, activated_secret)?;
        // The sender holds the TPM of this EK, with this AK in it.
        outcome.proof = Proof::Holder;
        let ek_hash = &enrollment.ek.ek_hash;
        let status = self
            .parts
            .log
            .node_status(ek_hash)
            .await
            .map_err(|e| Refusal::new(Reason::LogUnavailable, e.to_string()))?;
        if status.revoked {
            return Err(Refusal::new(
                Reason::Revoked,
                format!("node {ek_hash} is revoked"),
            ));
        }
        // Still not revoked when the allow is committed (a revocation may commit meanwhile).
        let precondition = Precondition {
            node_id: ek_hash.clone(),
            presented_serial: None,
        };
        let previous = status.node.map(translate::node_history);
        let enrollment = Enrollment {
            previous: previous.as_ref(),
            ..enrollment
        };
        let policy = self.parts.policy.current();
        let appraisal = garrison_appraisal::appraise_enrollment(
            &self.rules(),
            &policy,
            &self.boot_cache,
            &enrollment,
            answer,
            now,
        );
        self.issue(appraisal, outcome, precondition)
    }

    /// Renewal step 1: a fresh challenge for the node behind the client certificate.
    pub async fn begin_renewal(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
        peer: Option<SocketAddr>,
    ) -> Result<v1::Challenge, Refusal> {
        const STAGE: Stage = Stage::RenewBegin;
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
            node: translate::node_history(node),
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
        const STAGE: Stage = Stage::RenewComplete;
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
        let mut evidence = EvidenceRecord {
            stage: STAGE,
            ak_public: request.ak_public.clone(),
            nonce: pending.nonce.clone(),
            ..EvidenceRecord::default()
        };
        let quote = request.quote.as_ref().map(translate::quote);
        let answer = Answer {
            nonce: &pending.nonce,
            quote: quote.as_ref(),
            event_log: &request.event_log,
            event_log_sha256: sha256(&request.event_log),
            csr: &request.csr,
        };
        evidence.fill_answer(
            answer.quote,
            &answer.event_log_sha256,
            answer.event_log,
            answer.csr,
        );
        let mut outcome = Outcome::reject(Some(pending.node.node_id.clone()), evidence);
        outcome.kind = RecordKind::Renew;
        let result = self
            .renewal_checked(
                peer_chain,
                &request.ak_public,
                &pending,
                &answer,
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

    /// The client certificate again, then the appraisal and, on allow, issuance.
    async fn renewal_checked(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
        ak_public: &[u8],
        pending: &PendingRenewal,
        answer: &Answer<'_>,
        outcome: &mut Outcome,
        now: OffsetDateTime,
    ) -> Result<Issuance, Refusal> {
        // The same certificate as the challenge's Begin, where `identify_peer` found it to be
        // its node's current SVID, not revoked. It is not read again here: the log's writer
        // checks, when it commits the allow, that neither the serial nor the node has been
        // revoked since and that the serial is still the node's current one (every change
        // of a node's state since the Begin that matters here, an allow, a reset or a new
        // enrollment, replaces it). The price: a Complete whose certificate was revoked after
        // its Begin is appraised and signed before the commit refuses it (once per challenge,
        // each single use and opened while the certificate was still good).
        let (serial, _) = peer_certificate(peer_chain)?;
        if serial != pending.peer_serial {
            return Err(Refusal::new(
                Reason::ChallengePeerMismatch,
                "renewal answered by another client certificate",
            ));
        }
        // The sender holds an SVID of this site that was current at its Begin.
        outcome.proof = Proof::Holder;
        let precondition = Precondition {
            node_id: pending.node.node_id.clone(),
            presented_serial: Some(serial),
        };
        let policy = self.parts.policy.current();
        let appraisal = garrison_appraisal::appraise_renewal(
            &self.rules(),
            &policy,
            &self.boot_cache,
            &pending.node,
            ak_public,
            answer,
            now,
        );
        self.issue(appraisal, outcome, precondition)
    }

    /// What the site's configuration fixes for every decision.
    fn rules(&self) -> SiteRules<'_> {
        SiteRules {
            site: &self.parts.site,
            trust_domain: &self.trust_domain,
            pcrs: &self.parts.pcrs,
            max_svid_ttl: self.parts.max_svid_ttl,
            ak_policy: &self.parts.ak_policy,
            limits: &FIELD_LIMITS,
        }
    }

    /// Keep what the appraisal established for the record, then, on allow, have the site CA
    /// sign the certificate, which is released only if `precondition` (what the node's status
    /// read established) still holds when the allow is committed.
    fn issue(
        &self,
        appraisal: Appraisal,
        outcome: &mut Outcome,
        precondition: Precondition,
    ) -> Result<Issuance, Refusal> {
        outcome.boot = appraisal.boot;
        outcome.policy_digest = appraisal.policy_digest;
        let admission = appraisal.verdict?;
        outcome.spiffe_id = Some(admission.spiffe_id.to_string());
        self.sign(&admission, precondition)
    }

    fn sign(&self, admission: &Admission, precondition: Precondition) -> Result<Issuance, Refusal> {
        let issued = self
            .parts
            .ca
            .active()
            .issue_svid(admission.svid_params(), admission.time, &self.rng)
            .map_err(ca_refusal)?;
        let (record, node) = admission.issued(hex::encode(&issued.serial), issued.not_after);
        Ok(Issuance {
            record: translate::record(record),
            node: translate::node_state(node),
            // Not completed with a cross-signed root: the agent checks it against the bundle
            // it writes, and verifiers that build to a self-signed root (OpenSSL) would take
            // the cross-signed certificate to the old root and exceed its path length.
            chain: issued.chain,
            roots: self.parts.ca.trust_bundle(),
            spiffe_id: admission.spiffe_id.to_string(),
            not_after: issued.not_after,
            precondition,
        })
    }

    /// Log the result, durably, then (and only then) release the certificate.
    async fn finish<M: prost::Message>(
        &self,
        result: Result<Issuance, Refusal>,
        mut outcome: Outcome,
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
        let kind = outcome.kind.as_str();
        let node = outcome.node_id.clone().unwrap_or_default();
        let appended = match self
            .append(entry, &mut outcome, Some(issuance.precondition))
            .await
        {
            Ok(appended) => appended,
            Err(LogError::PreconditionFailed(failure)) => {
                // Revoked (or superseded) between the status read and the commit: the
                // certificate is never released, and the log records the refusal after the
                // revocation.
                tracing::warn!(node = %node, %failure, "allow not committed; certificate withheld");
                let refusal = precondition_refusal(&failure);
                return Err(self.record_refusal(refusal, outcome, sender).await);
            }
            Err(e) => {
                tracing::error!(error = %e, "attestation log append failed; certificate withheld");
                let refusal = Refusal::new(Reason::LogUnavailable, e.to_string());
                self.metrics
                    .decision(kind, false, Some(refusal.reason.code()));
                return Err(refusal);
            }
        };
        self.metrics.decision(kind, true, None);
        tracing::info!(
            kind = %kind,
            node = %node,
            spiffe_id = %issuance.spiffe_id,
            not_after = %issuance.not_after,
            log_sequence = appended.sequence,
            "issued"
        );
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
        // One INFO line per refusal that is recorded; the others (beyond their sender's
        // record budget, or never recorded) at DEBUG, so that a flood of bad requests cannot
        // flood the journal either: the once-a-minute summary counts them.
        let node = outcome.node_id.clone().unwrap_or_else(|| "-".to_owned());
        let peer = sender
            .peer
            .map_or_else(|| "-".to_owned(), |peer| peer.to_string());
        let log_line = |recorded: bool| {
            if recorded {
                tracing::info!(
                    reason = refusal.reason.code(),
                    detail = %refusal.detail,
                    node = %node,
                    peer = %peer,
                    "refused"
                );
            } else {
                tracing::debug!(
                    reason = refusal.reason.code(),
                    detail = %refusal.detail,
                    node = %node,
                    peer = %peer,
                    "refused (not recorded: beyond the sender's record budget, or load shed)"
                );
            }
        };
        let attempted = match sender.stage {
            Stage::EnrollBegin | Stage::EnrollComplete => "enroll",
            Stage::RenewBegin | Stage::RenewComplete => "renew",
            _ => "reject",
        };
        self.metrics
            .decision(attempted, false, Some(refusal.reason.code()));
        if !outcome.logged {
            log_line(false);
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
        log_line(admitted);
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
        let context = garrison_appraisal::RefusalContext {
            node_id: outcome.node_id.take(),
            spiffe_id: outcome.spiffe_id.take(),
            policy_digest: outcome.policy_digest.take(),
        };
        let record = DecisionRecord::refused(&self.parts.site, now, context, &refusal, detail);
        let entry = NewEntry {
            record: translate::record(record),
            evidence: Some(evidence),
            node_update: None,
        };
        // A refusal is recorded whatever happened meanwhile: no precondition.
        match self.append(entry, &mut outcome, None).await {
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
    /// An allow goes with the [`Precondition`] its status read set.
    async fn append(
        &self,
        entry: NewEntry,
        outcome: &mut Outcome,
        precondition: Option<Precondition>,
    ) -> Result<garrison_log::Appended, garrison_log::LogError> {
        let started = std::time::Instant::now();
        let stored = outcome.boot.as_ref().is_some_and(|b| b.log_stored());
        let blobs = if stored || outcome.event_log.is_empty() {
            Vec::new()
        } else if precondition.is_some() {
            // Kept for the refusal's record should the precondition fail.
            vec![outcome.event_log.clone()]
        } else {
            vec![std::mem::take(&mut outcome.event_log)]
        };
        let with_blobs = !blobs.is_empty();
        let log = &self.parts.log;
        let appended = match precondition {
            Some(precondition) => log.append_if(entry, blobs, precondition).await,
            None if with_blobs => log.append_with_blobs(entry, blobs).await,
            None => log.append(entry).await,
        };
        self.metrics.log_append(started.elapsed());
        let appended = appended?;
        if with_blobs && let Some(boot) = &outcome.boot {
            boot.mark_log_stored();
        }
        Ok(appended)
    }

    /// The node behind a verified client certificate, which must be its current SVID.
    async fn identify_peer(
        &self,
        peer_chain: Option<&[Vec<u8>]>,
    ) -> Result<(NodeState, String), Refusal> {
        let (serial, spiffe_id) = peer_certificate(peer_chain)?;
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
    /// Checked by the log's writer when it commits the allow: every allow carries one.
    precondition: Precondition,
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

/// The refusal for an allow whose precondition no longer held when it was to be committed.
fn precondition_refusal(failure: &PreconditionFailure) -> Refusal {
    let reason = match failure {
        PreconditionFailure::NodeRevoked { .. } | PreconditionFailure::SerialRevoked { .. } => {
            Reason::Revoked
        }
        PreconditionFailure::SerialSuperseded { .. } => Reason::UnknownSvid,
    };
    Refusal::new(reason, failure.to_string())
}

/// Every field of a Complete, before anything else is done with it (or stored).
fn check_complete_sizes(r: &v1::CompleteRequest) -> Result<(), Refusal> {
    garrison_appraisal::check_secret_size(&FIELD_LIMITS, &r.activated_secret)?;
    check_answer_sizes(r.quote.as_ref(), &r.event_log, &r.csr)
}

/// Every field of a CompleteRenewal, before anything else is done with it (or stored).
fn check_renewal_sizes(r: &v1::CompleteRenewalRequest) -> Result<(), Refusal> {
    garrison_appraisal::check_ak_size(&FIELD_LIMITS, &r.ak_public)?;
    check_answer_sizes(r.quote.as_ref(), &r.event_log, &r.csr)
}

fn check_answer_sizes(
    quote: Option<&v1::Quote>,
    event_log: &[u8],
    csr: &[u8],
) -> Result<(), Refusal> {
    let quote = quote.map(translate::quote);
    garrison_appraisal::check_answer_sizes(&FIELD_LIMITS, quote.as_ref(), event_log, csr)
}

/// The serial and SPIFFE ID of the client certificate (verified by TLS against the site CA).
fn peer_certificate(peer_chain: Option<&[Vec<u8>]>) -> Result<(String, String), Refusal> {
    let leaf = peer_chain.and_then(|c| c.first()).ok_or_else(|| {
        Refusal::new(
            Reason::ClientCertificateRequired,
            "renewal needs the node's SVID as client certificate",
        )
    })?;
    serial_and_id(leaf)
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

    /// Each way a precondition fails, by its reason code (the match above names every one).
    #[test]
    fn a_failed_precondition_refuses_with_its_reason() {
        let cases = [
            (
                PreconditionFailure::NodeRevoked {
                    node_id: "n1".into(),
                },
                "revoked",
            ),
            (
                PreconditionFailure::SerialRevoked {
                    serial: "aa01".into(),
                },
                "revoked",
            ),
            (
                PreconditionFailure::SerialSuperseded {
                    serial: "aa01".into(),
                    node_id: "n1".into(),
                },
                "unknown-svid",
            ),
        ];
        for (failure, code) in cases {
            let refusal = precondition_refusal(&failure);
            assert_eq!(refusal.reason.code(), code, "{failure}");
            assert_eq!(refusal.detail, failure.to_string());
        }
    }
}
