//! The enroll and renew decisions: an answer to a challenge (quote, PCR values, event log,
//! CSR), what is known of the node, the policy in force and the time → an [`Appraisal`].
//!
//! The order of the checks is the order of the reason codes a client or an auditor sees:
//! sizes, PCR values, quote (signature, nonce, digest), PCR selection, monotonic counters,
//! event-log replay and boot claims, CSR, then policy and its scope.

use std::collections::BTreeMap;
use std::sync::Arc;

use garrison_ca::{SpiffeId, SubjectKey, SvidParams, TrustDomain, VerifiedCsr};
use garrison_evidence::{
    AkIdentity, AkPolicy, EkEvidence, EkIdentity, EkTrust, HashAlg, PcrValues, QuoteVerdict,
};
use garrison_policy::{EkFacts, PolicyEngine, RequestFacts, SiteFacts};
use serde_json::Value as Json;
use time::{Duration, OffsetDateTime};

use crate::boot::{AppraisedBoot, BootCache};
use crate::node::NodeHistory;
use crate::policy_input;
use crate::record::{Decision, DecisionRecord, RecordKind, RefusalContext};
use crate::refusal::{Reason, Refusal};
use crate::sizes::{BeginEvidence, FieldLimits, check_answer_sizes};

/// What the site's configuration fixes for every decision.
#[derive(Debug, Clone, Copy)]
pub struct SiteRules<'a> {
    /// The site's name (`/site/<site>/` is the only path policy may hand out).
    pub site: &'a str,
    /// The trust domain of the identities issued.
    pub trust_domain: &'a TrustDomain,
    /// SHA-256 PCRs every quote must cover, exactly.
    pub pcrs: &'a [u32],
    /// The longest SVID lifetime handed out.
    pub max_svid_ttl: Duration,
    /// Which AKs are accepted.
    pub ak_policy: &'a AkPolicy,
    /// Field size limits.
    pub limits: &'a FieldLimits,
}

/// One quoted PCR value as the node sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedPcr {
    /// TPM_ALG_ID of the bank.
    pub hash_alg: u32,
    /// PCR index.
    pub index: u32,
    /// The value.
    pub digest: Vec<u8>,
}

/// A quote as the node sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The values of the quoted PCRs.
    pub pcrs: Vec<QuotedPcr>,
}

/// An answer to a challenge.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The nonce the challenge asked the quote to carry.
    pub nonce: &'a [u8],
    /// The quote, if one came.
    pub quote: Option<&'a Quote>,
    /// The measured-boot event log (empty when none was sent).
    pub event_log: &'a [u8],
    /// [`crate::sha256`] of `event_log`.
    pub event_log_sha256: [u8; 32],
    /// PKCS#10 CSR, DER.
    pub csr: &'a [u8],
}

/// An enrollment whose keys were verified (and, live, whose credential was activated: see
/// [`verify_activation`]).
#[derive(Debug, Clone, Copy)]
pub struct Enrollment<'a> {
    /// The verified EK.
    pub ek: &'a EkIdentity,
    /// The checked AK.
    pub ak: &'a AkIdentity,
    /// What the node says about itself.
    pub asserted: &'a BTreeMap<String, String>,
    /// The node's history, if this EK enrolled before (its TPM counters may not go back).
    pub previous: Option<&'a NodeHistory>,
}

/// The outcome of one decision, and what it established on the way (for the record of a
/// refusal, and for the host's storage of the event log).
#[derive(Debug)]
pub struct Appraisal {
    /// Allow, with what to issue, or the refusal.
    pub verdict: Result<Admission, Refusal>,
    /// Digest of the policy bundle, once policy ran.
    pub policy_digest: Option<String>,
    /// The event log's appraisal, once the whole answer (CSR included) was appraised: its
    /// log replayed to the quote.
    pub boot: Option<Arc<AppraisedBoot>>,
}

/// An allow: the certificate to sign, and what to record once it is signed.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `Enroll` or `Renew`.
    pub kind: RecordKind,
    /// When the decision was made.
    pub time: OffsetDateTime,
    /// The deciding site.
    pub site: String,
    /// The node (EK hash).
    pub node_id: String,
    /// The node's identity facts (see [`NodeHistory::identity`]).
    pub identity: String,
    /// TPM name of the AK.
    pub ak_name: Vec<u8>,
    /// What the verified quote said (its counters become the node's).
    pub quote: QuoteVerdict,
    /// The identity policy chose, inside the site's scope.
    pub spiffe_id: SpiffeId,
    /// The lifetime: policy's, capped at the site's maximum.
    pub ttl: Duration,
    /// The site's maximum lifetime.
    pub max_ttl: Duration,
    /// The verified CSR.
    pub csr: VerifiedCsr,
    /// Digest of the policy bundle that allowed.
    pub policy_digest: String,
}

impl Admission {
    /// What the CA is asked to sign.
    pub fn svid_params(&self) -> SvidParams {
        SvidParams {
            spiffe_id: self.spiffe_id.clone(),
            ttl: self.ttl,
            max_ttl: self.max_ttl,
            subject_key: SubjectKey::Csr(self.csr.clone()),
        }
    }

    /// The record of the allow and the node's new state, once the CA signed the certificate
    /// `serial` (lowercase hex) expiring at `not_after`.
    pub fn issued(
        &self,
        serial: String,
        not_after: OffsetDateTime,
    ) -> (DecisionRecord, NodeHistory) {
        let node = NodeHistory {
            node_id: self.node_id.clone(),
            ak_name: self.ak_name.clone(),
            spiffe_id: self.spiffe_id.to_string(),
            identity: self.identity.clone(),
            reset_count: self.quote.reset_count,
            restart_count: self.quote.restart_count,
            clock: self.quote.clock,
            current_serial: Some(serial.clone()),
            updated: self.time,
        };
        let record = DecisionRecord {
            time: self.time,
            site: self.site.clone(),
            kind: self.kind,
            node_id: Some(self.node_id.clone()),
            spiffe_id: Some(self.spiffe_id.to_string()),
            decision: Decision::Allow,
            reasons: Vec::new(),
            policy_digest: Some(self.policy_digest.clone()),
            cert_serial: Some(serial),
            cert_not_after: Some(not_after),
        };
        (record, node)
    }
}

impl Appraisal {
    /// What the record of a refusal of this decision names besides the refusal: the node,
    /// the policy that ran and, after an allow that could not be issued, the identity.
    pub fn refusal_context(&self, node_id: Option<String>) -> RefusalContext {
        RefusalContext {
            node_id,
            spiffe_id: self.verdict.as_ref().ok().map(|a| a.spiffe_id.to_string()),
            policy_digest: self.policy_digest.clone(),
        }
    }
}

/// What a decision establishes before it ends, allowed or not.
#[derive(Default)]
struct Trail {
    policy_digest: Option<String>,
    boot: Option<Arc<AppraisedBoot>>,
}

impl Trail {
    fn into_appraisal(self, verdict: Result<Admission, Refusal>) -> Appraisal {
        Appraisal {
            verdict,
            policy_digest: self.policy_digest,
            boot: self.boot,
        }
    }
}

/// What a verified answer to a challenge established.
struct Appraised {
    verdict: QuoteVerdict,
    boot: Arc<AppraisedBoot>,
    csr: VerifiedCsr,
}

/// The EK certificate chain to a trusted manufacturer and its key against the EK public
/// area, at `now`.
pub fn verify_ek(
    begin: &BeginEvidence<'_>,
    trust: &EkTrust,
    now: OffsetDateTime,
) -> Result<EkIdentity, Refusal> {
    let intermediates: Vec<&[u8]> = begin.ek_chain.iter().map(Vec::as_slice).collect();
    let certificate = (!begin.ek_certificate.is_empty()).then_some(begin.ek_certificate);
    let evidence = EkEvidence {
        public_area: begin.ek_public,
        certificate,
        intermediates: &intermediates,
    };
    Ok(garrison_evidence::verify_ek(&evidence, trust, now)?)
}

/// The AK's attributes and algorithm against `policy`.
pub fn check_ak(ak_public: &[u8], policy: &AkPolicy) -> Result<AkIdentity, Refusal> {
    Ok(garrison_evidence::check_ak(ak_public, policy)?)
}

/// The credential-activation round trip: the secret the node returned is the one bound to
/// its EK and AK name. A separate step, since only a live exchange has the secret (an
/// auditor's replay takes its outcome from the log).
pub fn verify_activation(secret: &[u8], activated: &[u8]) -> Result<(), Refusal> {
    Ok(garrison_evidence::verify_activation(secret, activated)?)
}

/// The enrollment decision over an answer.
pub fn appraise_enrollment(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    boot_cache: &BootCache,
    enrollment: &Enrollment<'_>,
    answer: &Answer<'_>,
    now: OffsetDateTime,
) -> Appraisal {
    let mut trail = Trail::default();
    let verdict = enroll(
        rules, policy, boot_cache, enrollment, answer, now, &mut trail,
    );
    trail.into_appraisal(verdict)
}

fn enroll(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    boot_cache: &BootCache,
    e: &Enrollment<'_>,
    answer: &Answer<'_>,
    now: OffsetDateTime,
    trail: &mut Trail,
) -> Result<Admission, Refusal> {
    let appraised = appraise_answer(rules, boot_cache, e.ak, answer, e.previous)?;
    trail.boot = Some(Arc::clone(&appraised.boot));
    let identity = policy_input::identity_facts(e.ek)?;
    let site = SiteFacts::without_hub(rules.site, policy.info().sequence);
    let request = RequestFacts::enroll(now);
    let ek = EkFacts::from(e.ek);
    let input = policy_input::build(site, request, ek, e.ak, &appraised.verdict, e.asserted)?;
    let (spiffe_id, ttl) = decide(rules, policy, &input, &appraised.boot, trail)?;
    Ok(admission(
        rules,
        policy,
        RecordKind::Enroll,
        &e.ek.ek_hash,
        identity.to_string(),
        e.ak,
        spiffe_id,
        ttl,
        appraised,
        now,
    ))
}

/// The renewal decision over an answer from `node`, whose AK is `ak_public` (it must be the
/// one bound at enrollment). Who the node is (its current SVID, not revoked) the host has
/// established before.
pub fn appraise_renewal(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    boot_cache: &BootCache,
    node: &NodeHistory,
    ak_public: &[u8],
    answer: &Answer<'_>,
    now: OffsetDateTime,
) -> Appraisal {
    let mut trail = Trail::default();
    let verdict = renew(
        rules, policy, boot_cache, node, ak_public, answer, now, &mut trail,
    );
    trail.into_appraisal(verdict)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the decision's inputs plus its trail"
)]
fn renew(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    boot_cache: &BootCache,
    node: &NodeHistory,
    ak_public: &[u8],
    answer: &Answer<'_>,
    now: OffsetDateTime,
    trail: &mut Trail,
) -> Result<Admission, Refusal> {
    let ak = check_ak(ak_public, rules.ak_policy)?;
    if ak.name().as_bytes() != node.ak_name.as_slice() {
        return Err(Refusal::new(
            Reason::AkMismatch,
            format!(
                "AK {} is not the AK {} bound at enrollment",
                ak.name().to_hex(),
                hex::encode(&node.ak_name)
            ),
        ));
    }
    let appraised = appraise_answer(rules, boot_cache, &ak, answer, Some(node))?;
    trail.boot = Some(Arc::clone(&appraised.boot));
    let request = RequestFacts::renew(now, policy_input::previous_decision(node)?);
    let ek = policy_input::stored_ek_facts(node)?;
    let site = SiteFacts::without_hub(rules.site, policy.info().sequence);
    let input = policy_input::build(site, request, ek, &ak, &appraised.verdict, &BTreeMap::new())?;
    let (spiffe_id, ttl) = decide(rules, policy, &input, &appraised.boot, trail)?;
    Ok(admission(
        rules,
        policy,
        RecordKind::Renew,
        &node.node_id,
        node.identity.clone(),
        &ak,
        spiffe_id,
        ttl,
        appraised,
        now,
    ))
}

#[expect(clippy::too_many_arguments, reason = "one field of the admission each")]
fn admission(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    kind: RecordKind,
    node_id: &str,
    identity: String,
    ak: &AkIdentity,
    spiffe_id: SpiffeId,
    ttl: Duration,
    appraised: Appraised,
    now: OffsetDateTime,
) -> Admission {
    Admission {
        kind,
        time: now,
        site: rules.site.to_owned(),
        node_id: node_id.to_owned(),
        identity,
        ak_name: ak.name().as_bytes().to_vec(),
        quote: appraised.verdict,
        spiffe_id,
        ttl,
        max_ttl: rules.max_svid_ttl,
        csr: appraised.csr,
        policy_digest: policy.info().digest.clone(),
    }
}

/// Quote, PCR selection, monotonic counters, event-log replay, boot claims, CSR.
fn appraise_answer(
    rules: &SiteRules<'_>,
    boot_cache: &BootCache,
    ak: &AkIdentity,
    answer: &Answer<'_>,
    previous: Option<&NodeHistory>,
) -> Result<Appraised, Refusal> {
    let quote = answer
        .quote
        .ok_or_else(|| Refusal::new(Reason::MalformedRequest, "no quote"))?;
    check_answer_sizes(rules.limits, Some(quote), answer.event_log, answer.csr)?;
    let pcrs = pcr_values(quote)?;
    let verdict =
        garrison_evidence::verify_quote(ak, &quote.attest, &quote.signature, answer.nonce, &pcrs)?;
    check_selection(rules.pcrs, &verdict)?;
    if let Some(previous) = previous {
        check_monotonic(previous, &verdict)?;
    }
    let boot = boot_cache.appraise(answer.event_log, answer.event_log_sha256, &pcrs)?;
    let csr =
        VerifiedCsr::from_der(answer.csr).map_err(|e| Refusal::new(Reason::Csr, e.to_string()))?;
    Ok(Appraised { verdict, boot, csr })
}

/// The quote covers exactly the SHA-256 PCRs `wanted`, in order.
pub fn check_selection(wanted: &[u32], verdict: &QuoteVerdict) -> Result<(), Refusal> {
    let quoted: Vec<(HashAlg, u32)> = verdict.selection.iter().collect();
    let wanted: Vec<(HashAlg, u32)> = wanted.iter().map(|i| (HashAlg::Sha256, *i)).collect();
    if quoted != wanted {
        return Err(Refusal::new(
            Reason::PcrSelection,
            format!("quote covers {quoted:?}, the challenge asked for {wanted:?}"),
        ));
    }
    Ok(())
}

/// Admission policy over `input` (everything but `boot` and `pcrs`, which come converted
/// from the boot appraisal), then its answer against the site's scope.
fn decide(
    rules: &SiteRules<'_>,
    policy: &PolicyEngine,
    input: &Json,
    boot: &AppraisedBoot,
    trail: &mut Trail,
) -> Result<(SpiffeId, Duration), Refusal> {
    trail.policy_digest = Some(policy.info().digest.clone());
    let decision = policy
        .evaluate_sections(input, &[("boot", &boot.boot), ("pcrs", &boot.pcrs)])
        .map_err(|e| Refusal::new(Reason::PolicyError, e.to_string()))?;
    if !decision.allow {
        return Err(Refusal::new(
            Reason::PolicyDeny,
            decision.reasons.join("; "),
        ));
    }
    let id = scoped_identity(rules, &decision.spiffe_path.unwrap_or_default())?;
    let ttl =
        Duration::seconds(i64::try_from(decision.ttl_seconds.unwrap_or(0)).unwrap_or(i64::MAX));
    Ok((id, ttl.min(rules.max_svid_ttl)))
}

/// The identity at `path`, which must be under this site and not one of its roles.
fn scoped_identity(rules: &SiteRules<'_>, path: &str) -> Result<SpiffeId, Refusal> {
    let scope = format!("/site/{}/", rules.site);
    if !path.starts_with(&scope) {
        return Err(Refusal::new(
            Reason::PolicyScope,
            format!("policy asked for {path}, outside {scope}"),
        ));
    }
    let id = SpiffeId::from_path(rules.trust_domain, path)
        .map_err(|e| Refusal::new(Reason::PolicyScope, e.to_string()))?;
    if let Some(role) = garrison_ca::scope::reserved_site_role(&id) {
        return Err(Refusal::new(
            Reason::PolicyScope,
            format!("policy asked for {id}, which is reserved for the site's {role}"),
        ));
    }
    Ok(id)
}

/// The quoted PCR values, by bank.
pub fn pcr_values(quote: &Quote) -> Result<PcrValues, Refusal> {
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
pub fn check_monotonic(previous: &NodeHistory, v: &QuoteVerdict) -> Result<(), Refusal> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use garrison_evidence::PcrSelection;

    fn node(reset: u32, restart: u32, clock: u64) -> NodeHistory {
        NodeHistory {
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

    #[test]
    fn policy_may_only_hand_out_identities_of_this_site_that_are_not_its_roles() {
        let td = TrustDomain::new("example.org").unwrap();
        let ak_policy = AkPolicy::default();
        let limits = FieldLimits {
            public_area: 0,
            certificate: 0,
            ek_chain: 0,
            asserted_facts: 0,
            asserted_len: 0,
            attest: 0,
            pcr_values: 0,
            event_log: 0,
            csr: 0,
            secret: 0,
        };
        let rules = SiteRules {
            site: "a",
            trust_domain: &td,
            pcrs: &[],
            max_svid_ttl: Duration::hours(1),
            ak_policy: &ak_policy,
            limits: &limits,
        };
        let id = scoped_identity(&rules, "/site/a/node/n").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/site/a/node/n");
        for path in ["/site/b/node/n", "/site/ab/node/n", "", "/site/a/attestor"] {
            let refusal = scoped_identity(&rules, path).unwrap_err();
            assert_eq!(refusal.reason, Reason::PolicyScope, "{path}");
        }
    }
}
