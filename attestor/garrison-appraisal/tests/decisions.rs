//! The decisions over real evidence: swtpm's EK through its local CA, an ECC AK and its quote
//! of PCRs 0-7 (attestor/garrison-evidence/testdata/tpm2tools), a CSR made by rcgen, and the
//! shipped lab policy or a policy that denies. Each case goes through the public entry points
//! the attestor and an auditor's replay call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failure is the test failing"
)]

use std::collections::{BTreeMap, HashMap};

use garrison_appraisal::{
    Admission, Answer, Appraisal, BeginEvidence, BootCache, Decision, Enrollment, EvidenceRecord,
    FieldLimits, NodeHistory, Quote, QuotedPcr, Reason, RecordKind, SiteRules, Stage,
    appraise_enrollment, appraise_renewal, check_ak, sha256, verify_ek,
};
use garrison_ca::TrustDomain;
use garrison_evidence::{AkPolicy, EkIdentity, EkTrust, ManufacturerRoots, PcrValues};
use garrison_policy::{BundleFiles, EvalLimits, PolicyEngine};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

macro_rules! tpm2tools {
    ($file:literal) => {
        include_bytes!(concat!(
            "../../garrison-evidence/testdata/tpm2tools/",
            $file
        ))
        .as_slice()
    };
}

const NONCE: &[u8] = b"garrison-nonce-01";
const SITE: &str = "site-a";
const NOW: OffsetDateTime = datetime!(2026-12-01 08:30 UTC);

/// The protocol's limits (garrison_proto::limits, which this crate does not link).
const LIMITS: FieldLimits = FieldLimits {
    public_area: 1024,
    certificate: 8 * 1024,
    ek_chain: 4,
    asserted_facts: 32,
    asserted_len: 256,
    attest: 2048,
    pcr_values: 72,
    event_log: 768 * 1024,
    csr: 4096,
    secret: 64,
};

struct Site {
    trust_domain: TrustDomain,
    ak_policy: AkPolicy,
    pcrs: Vec<u32>,
}

impl Site {
    fn new() -> Self {
        Site {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            ak_policy: AkPolicy::default(),
            pcrs: (0..8).collect(),
        }
    }

    fn rules(&self) -> SiteRules<'_> {
        SiteRules {
            site: SITE,
            trust_domain: &self.trust_domain,
            pcrs: &self.pcrs,
            max_svid_ttl: Duration::hours(1),
            ak_policy: &self.ak_policy,
            limits: &LIMITS,
        }
    }
}

fn lab_policy() -> PolicyEngine {
    let files = BundleFiles::from([
        (
            "admission.rego".to_owned(),
            include_bytes!("../../../policy/policies/lab-permissive-INSECURE/admission.rego")
                .to_vec(),
        ),
        (
            "data.json".to_owned(),
            include_bytes!("../../../policy/policies/lab-permissive-INSECURE/data.json").to_vec(),
        ),
    ]);
    PolicyEngine::from_source("lab", &files, EvalLimits::default()).unwrap()
}

fn denying_policy() -> PolicyEngine {
    let rego = r#"package garrison.admission

default allow := false

reasons contains "site: closed for maintenance" if {
	input.site.id == "site-a"
}
"#;
    let files = BundleFiles::from([("admission.rego".to_owned(), rego.as_bytes().to_vec())]);
    PolicyEngine::from_source("deny", &files, EvalLimits::default()).unwrap()
}

fn ek() -> EkIdentity {
    let intermediate = pem::parse(tpm2tools!("swtpm-localca-intermediate.pem"))
        .unwrap()
        .into_contents();
    let roots =
        ManufacturerRoots::from_pem_or_der(&[("root.pem", tpm2tools!("swtpm-localca-root.pem"))])
            .unwrap();
    let chain = vec![intermediate];
    let asserted = HashMap::new();
    let begin = BeginEvidence {
        ek_public: tpm2tools!("ek_rsa.pub"),
        ek_certificate: tpm2tools!("ek_rsa_cert.der"),
        ek_chain: &chain,
        ak_public: tpm2tools!("ak_ecc.pub"),
        asserted: &asserted,
    };
    garrison_appraisal::check_begin_sizes(&LIMITS, &begin).unwrap();
    verify_ek(&begin, &EkTrust::ManufacturerRoots(roots), NOW).unwrap()
}

/// The quote as the node sent it.
fn quote() -> Quote {
    let values = PcrValues::from_tpm2_tools_pcrs(tpm2tools!("quote_ecc.pcrs")).unwrap();
    Quote {
        attest: tpm2tools!("quote_ecc.msg").to_vec(),
        signature: tpm2tools!("quote_ecc.sig").to_vec(),
        pcrs: values
            .iter()
            .map(|(alg, index, digest)| QuotedPcr {
                hash_alg: u32::from(alg.tpm_alg_id()),
                index,
                digest: digest.to_vec(),
            })
            .collect(),
    }
}

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// An enrollment of the fixture TPM with no event log, as the attestor would record it.
fn enrollment_record() -> EvidenceRecord {
    enrollment_record_with(b"")
}

/// An enrollment of the fixture TPM that sent `event_log`, as the attestor would record it.
fn enrollment_record_with(event_log: &[u8]) -> EvidenceRecord {
    let mut record = EvidenceRecord {
        stage: Stage::EnrollComplete,
        ek_public: tpm2tools!("ek_rsa.pub").to_vec(),
        ek_certificate: tpm2tools!("ek_rsa_cert.der").to_vec(),
        ak_public: tpm2tools!("ak_ecc.pub").to_vec(),
        nonce: NONCE.to_vec(),
        ..EvidenceRecord::default()
    };
    record.fill_answer(Some(&quote()), &sha256(event_log), event_log, &csr());
    record
}

/// Replay's way in: a stored record (bytes) and the event log it names → the decision.
fn enroll_from_stored(
    bytes: &[u8],
    event_log: &[u8],
    policy: &PolicyEngine,
    previous: Option<&NodeHistory>,
) -> Appraisal {
    let site = Site::new();
    let record = EvidenceRecord::decode(bytes).unwrap();
    let quote = record.quote().unwrap();
    let ek = ek();
    let ak = check_ak(&record.ak_public, &site.ak_policy).unwrap();
    let asserted = BTreeMap::new();
    let enrollment = Enrollment {
        ek: &ek,
        ak: &ak,
        asserted: &asserted,
        previous,
    };
    let answer = record.answer(quote.as_ref(), event_log).unwrap();
    appraise_enrollment(
        &site.rules(),
        policy,
        &BootCache::none(),
        &enrollment,
        &answer,
        NOW,
    )
}

fn allowed(appraisal: Appraisal) -> Admission {
    match appraisal.verdict {
        Ok(admission) => admission,
        Err(refusal) => panic!("refused: {refusal:?}"),
    }
}

#[test]
fn a_real_enrollment_is_allowed_with_the_lab_policy() {
    let policy = lab_policy();
    let bytes = enrollment_record().to_bytes();
    let appraisal = enroll_from_stored(&bytes, b"", &policy, None);
    assert_eq!(
        appraisal.policy_digest.as_deref(),
        Some(policy.info().digest.as_str())
    );
    assert!(appraisal.boot.is_some(), "the (empty) log was appraised");
    let admission = allowed(appraisal);
    let ek = ek();
    assert_eq!(admission.kind, RecordKind::Enroll);
    assert_eq!(admission.node_id, ek.ek_hash);
    let path = format!("/site/{SITE}/lab/node/{}", &ek.ek_hash[..32]);
    assert_eq!(admission.spiffe_id.path(), path);
    // The lab policy asks for 15 minutes, under the site's hour.
    assert_eq!(admission.ttl, Duration::seconds(900));
    assert_eq!(admission.svid_params().max_ttl, Duration::hours(1));

    let (record, node) = admission.issued("0a1b".into(), NOW + Duration::seconds(900));
    assert_eq!(record.decision, Decision::Allow);
    assert_eq!(record.kind, RecordKind::Enroll);
    assert_eq!(record.time, NOW);
    assert_eq!(
        record.spiffe_id.as_deref(),
        Some(admission.spiffe_id.as_str())
    );
    assert_eq!(record.policy_digest, Some(policy.info().digest.clone()));
    assert!(record.reasons.is_empty());
    assert_eq!(node.current_serial.as_deref(), Some("0a1b"));
    assert_eq!(node.reset_count, admission.quote.reset_count);
    assert_eq!(node.clock, admission.quote.clock);
    assert!(node.identity.contains("trust_basis"), "{}", node.identity);
}

#[test]
fn the_same_record_is_decided_the_same_way_again() {
    let policy = lab_policy();
    let bytes = enrollment_record().to_bytes();
    let first = allowed(enroll_from_stored(&bytes, b"", &policy, None));
    let again = allowed(enroll_from_stored(&bytes, b"", &policy, None));
    assert_eq!(first.spiffe_id, again.spiffe_id);
    assert_eq!(
        first.issued("01".into(), NOW),
        again.issued("01".into(), NOW)
    );
}

#[test]
fn a_policy_deny_is_refused_with_its_reasons_and_digest() {
    let policy = denying_policy();
    let appraisal = enroll_from_stored(&enrollment_record().to_bytes(), b"", &policy, None);
    assert_eq!(
        appraisal.policy_digest.as_deref(),
        Some(policy.info().digest.as_str())
    );
    let context = appraisal.refusal_context(Some("n".into()));
    let refusal = appraisal.verdict.unwrap_err();
    assert_eq!(refusal.reason, Reason::PolicyDeny);
    assert_eq!(refusal.detail, "site: closed for maintenance");
    assert_eq!(context.spiffe_id, None);
    let record = garrison_appraisal::DecisionRecord::refused(
        SITE,
        NOW,
        context,
        &refusal,
        refusal.detail.clone(),
    );
    assert_eq!(record.kind, RecordKind::Reject);
    assert_eq!(record.decision, Decision::Deny);
    assert_eq!(
        record.reasons,
        ["policy-deny", "site: closed for maintenance"]
    );
    assert_eq!(record.policy_digest, Some(policy.info().digest.clone()));
}

#[test]
fn an_event_log_that_does_not_replay_is_refused_before_policy() {
    let log = include_bytes!("../../../testdata/eventlogs/tpm2tools-event-moklisttrusted.bin");
    let record = enrollment_record_with(log);
    assert_eq!(record.event_log_sha256, hex::encode(sha256(log)));
    // The stored record names its log: replay must be given exactly those bytes.
    let bytes = record.to_bytes();
    let decoded = EvidenceRecord::decode(&bytes).unwrap();
    assert!(decoded.answer(None, b"").is_err());
    assert!(decoded.answer(None, &log[1..]).is_err());
    let appraisal = enroll_from_stored(&bytes, log, &lab_policy(), None);
    assert_eq!(appraisal.policy_digest, None);
    assert!(appraisal.boot.is_none());
    assert_eq!(
        appraisal.verdict.unwrap_err().reason,
        Reason::EventLogReplay
    );
}

/// The node as the fixture enrollment left it, with its TPM counters moved by `ahead`.
fn enrolled_node(ahead: u64) -> NodeHistory {
    let bytes = enrollment_record().to_bytes();
    let admission = allowed(enroll_from_stored(&bytes, b"", &lab_policy(), None));
    let (_, mut node) = admission.issued("01".into(), NOW + Duration::minutes(15));
    node.clock += ahead;
    node
}

fn renew(node: &NodeHistory, policy: &PolicyEngine) -> Appraisal {
    let site = Site::new();
    let quote = quote();
    let csr = csr();
    let answer = Answer {
        nonce: NONCE,
        quote: Some(&quote),
        event_log: b"",
        event_log_sha256: sha256(b""),
        csr: &csr,
    };
    let later = NOW + Duration::minutes(10);
    appraise_renewal(
        &site.rules(),
        policy,
        &BootCache::new(4),
        node,
        tpm2tools!("ak_ecc.pub"),
        &answer,
        later,
    )
}

#[test]
fn a_renewal_with_the_bound_ak_is_allowed_and_a_rolled_back_clock_is_not() {
    let policy = lab_policy();
    let node = enrolled_node(0);
    let admission = allowed(renew(&node, &policy));
    assert_eq!(admission.kind, RecordKind::Renew);
    assert_eq!(admission.identity, node.identity);
    assert_eq!(admission.spiffe_id.as_str(), node.spiffe_id);

    // The node's last quote was 1 ms later than this one: a replayed quote.
    let ahead = enrolled_node(1);
    let appraisal = renew(&ahead, &policy);
    assert_eq!(appraisal.policy_digest, None, "refused before policy ran");
    let refusal = appraisal.verdict.unwrap_err();
    assert_eq!(refusal.reason, Reason::ClockRollback);
    assert!(
        refusal
            .detail
            .contains(&format!("--node {} ", node.node_id))
    );
    // Re-enrolling the same TPM is held to the same history.
    let bytes = enrollment_record().to_bytes();
    let again = enroll_from_stored(&bytes, b"", &policy, Some(&ahead));
    assert_eq!(again.verdict.unwrap_err().reason, Reason::ClockRollback);
}

#[test]
fn a_renewal_with_another_ak_is_refused() {
    let mut node = enrolled_node(0);
    node.ak_name = vec![0; 34];
    let refusal = renew(&node, &lab_policy()).verdict.unwrap_err();
    assert_eq!(refusal.reason, Reason::AkMismatch);
}
