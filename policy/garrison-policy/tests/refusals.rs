//! Signed bundles end to end, and every refusal: tampering, an unknown signer, a non-policy
//! signer, rollback, forbidden builtins, runaway policies, ill-typed decisions, malformed
//! input. After each refusal the service still answers with the last good bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::time::Duration as StdDuration;

use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SpiffeId, SubjectKey,
    SvidParams, TrustDomain, certificates_to_pem,
};
use garrison_policy::{
    BundleFiles, BundleLimits, BundleSigner, EvalLimits, PolicyEngine, PolicyError, PolicyService,
    PolicyTrust, ReloadOutcome, decode_archive, encode_archive, verify_bundle,
};
use ring::rand::SystemRandom;
use serde_json::{Value as Json, json};
use time::{Duration, OffsetDateTime};

struct Pki {
    root_pem: String,
    signer: BundleSigner,
    now: OffsetDateTime,
}

fn make_pki(signer_path: &str) -> Pki {
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let params = RootParams {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        name: "Test Root".to_owned(),
        ttl: Duration::days(30),
        path_len: 2,
        key_algorithm: KeyAlgorithm::EcdsaP256,
    };
    let root = Authority::from_issued(Authority::new_root(&params, now, &rng).unwrap()).unwrap();
    let svid = root
        .issue_svid(
            SvidParams {
                spiffe_id: SpiffeId::parse(&format!("spiffe://example.org{signer_path}")).unwrap(),
                ttl: Duration::days(7),
                max_ttl: Duration::days(7),
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &rng,
        )
        .unwrap();
    let key = svid.key.as_ref().unwrap().to_pkcs8_pem();
    let signer = BundleSigner::from_pem(key.expose(), &certificates_to_pem(&svid.chain)).unwrap();
    Pki {
        root_pem: certificates_to_pem(root.roots()),
        signer,
        now,
    }
}

fn trust(pki: &Pki) -> PolicyTrust {
    PolicyTrust::from_pem(&pki.root_pem).unwrap()
}

fn lab_files() -> BundleFiles {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/lab-permissive-INSECURE");
    ["admission.rego", "data.json"]
        .iter()
        .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

fn rego_files(rego: &str) -> BundleFiles {
    BundleFiles::from([("admission.rego".to_owned(), rego.as_bytes().to_vec())])
}

fn sign(pki: &Pki, files: &BundleFiles, sequence: u64) -> BundleFiles {
    pki.signer
        .sign(files, "test", sequence, pki.now, &SystemRandom::new())
        .unwrap()
}

fn input() -> Json {
    json!({
        "tpm": {"ek_sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
        "boot": {}, "site": {"id": "site-a", "connected": true},
        "request": {"kind": "enroll", "time": "2025-06-01T12:00:00Z"}
    })
}

fn service(pki: &Pki) -> PolicyService {
    let signed = sign(pki, &lab_files(), 5);
    PolicyService::new(
        trust(pki),
        &signed,
        pki.now,
        EvalLimits::default(),
        BundleLimits::default(),
    )
    .unwrap()
}

fn assert_still_serving(service: &PolicyService, sequence: u64) {
    assert_eq!(service.current().info().sequence, sequence);
    let decision = service.decide(input()).unwrap();
    assert!(decision.allow, "{decision:?}");
}

#[test]
fn signed_bundle_verifies_and_round_trips_through_the_archive() {
    let pki = make_pki("/policy/signer/ops");
    let signed = sign(&pki, &lab_files(), 1);
    let archive = encode_archive(&signed);
    let decoded = decode_archive(&archive, &BundleLimits::default()).unwrap();
    let verified =
        verify_bundle(&decoded, &trust(&pki), pki.now, &BundleLimits::default()).unwrap();
    assert_eq!(verified.manifest.sequence, 1);
    assert_eq!(verified.signer, "spiffe://example.org/policy/signer/ops");
    assert_eq!(verified.digest.len(), 64);
    let engine = PolicyEngine::from_verified(&verified, EvalLimits::default()).unwrap();
    let decision = engine.evaluate(input()).unwrap();
    assert!(decision.allow);
    assert_eq!(decision.bundle_digest, verified.digest);
}

#[test]
fn tampered_bundle_is_refused_and_the_last_good_one_keeps_serving() {
    let pki = make_pki("/policy/signer/ops");
    let service = service(&pki);
    let mut tampered = sign(&pki, &lab_files(), 6);
    tampered.insert(
        "data.json".to_owned(),
        br#"{"lab": {"ttl_seconds": 999999}}"#.to_vec(),
    );
    let err = service.reload(&tampered, pki.now).unwrap_err();
    assert!(
        matches!(err, PolicyError::FileDigestMismatch { ref name, .. } if name == "data.json"),
        "{err}"
    );

    let mut extra = sign(&pki, &lab_files(), 6);
    extra.insert(
        "backdoor.rego".to_owned(),
        b"package garrison.admission\n".to_vec(),
    );
    let err = service.reload(&extra, pki.now).unwrap_err();
    assert!(
        matches!(err, PolicyError::FileNotInManifest { .. }),
        "{err}"
    );

    let mut manifest_edit = sign(&pki, &lab_files(), 6);
    let text = String::from_utf8(manifest_edit["manifest.json"].clone()).unwrap();
    manifest_edit.insert(
        "manifest.json".to_owned(),
        text.replace("\"sequence\": 6", "\"sequence\": 7")
            .into_bytes(),
    );
    let err = service.reload(&manifest_edit, pki.now).unwrap_err();
    assert!(matches!(err, PolicyError::SignatureInvalid), "{err}");
    assert_still_serving(&service, 5);
}

#[test]
fn bundle_signed_by_a_key_from_another_root_is_refused() {
    let pki = make_pki("/policy/signer/ops");
    let stranger = make_pki("/policy/signer/ops");
    let service = service(&pki);
    let err = service
        .reload(&sign(&stranger, &lab_files(), 9), pki.now)
        .unwrap_err();
    assert!(matches!(err, PolicyError::SignerNotTrusted { .. }), "{err}");
    assert_still_serving(&service, 5);
}

#[test]
fn signer_without_a_policy_spiffe_id_is_refused() {
    let pki = make_pki("/auditor/alice");
    let signed = sign(&pki, &lab_files(), 1);
    let err = verify_bundle(&signed, &trust(&pki), pki.now, &BundleLimits::default()).unwrap_err();
    assert!(
        matches!(err, PolicyError::SignerNotPolicyKey { .. }),
        "{err}"
    );
}

#[test]
fn expired_signer_is_refused() {
    let pki = make_pki("/policy/signer/ops");
    let signed = sign(&pki, &lab_files(), 1);
    let later = pki.now + Duration::days(8);
    let err = verify_bundle(&signed, &trust(&pki), later, &BundleLimits::default()).unwrap_err();
    assert!(matches!(err, PolicyError::SignerNotTrusted { .. }), "{err}");
}

#[test]
fn rollback_and_reused_sequence_are_refused_and_newer_bundles_hot_reload() {
    let pki = make_pki("/policy/signer/ops");
    let service = service(&pki);
    let held = service.current();
    let err = service
        .reload(&sign(&pki, &lab_files(), 4), pki.now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::Rollback {
                in_force: 5,
                got: 4
            }
        ),
        "{err}"
    );
    let mut other = lab_files();
    other.insert(
        "data.json".to_owned(),
        br#"{"lab": {"ttl_seconds": 60}}"#.to_vec(),
    );
    let err = service.reload(&sign(&pki, &other, 5), pki.now).unwrap_err();
    assert!(
        matches!(err, PolicyError::SequenceReused { sequence: 5, .. }),
        "{err}"
    );
    assert_still_serving(&service, 5);

    let outcome = service.reload(&sign(&pki, &other, 6), pki.now).unwrap();
    assert!(matches!(outcome, ReloadOutcome::Replaced { .. }));
    assert_eq!(service.decide(input()).unwrap().ttl_seconds, Some(60));
    // A request that took the old engine before the reload finishes on it.
    assert_eq!(held.evaluate(input()).unwrap().ttl_seconds, Some(900));
}

#[test]
fn a_restarted_service_refuses_bundles_below_the_persisted_floor() {
    let pki = make_pki("/policy/signer/ops");
    let start = |files: &BundleFiles, floor: u64| {
        PolicyService::new_with_floor(
            trust(&pki),
            files,
            pki.now,
            EvalLimits::default(),
            BundleLimits::default(),
            floor,
        )
    };
    // First run: starts at 5, reloads 7; the host persists floor() = 7.
    let first = start(&sign(&pki, &lab_files(), 5), 0).unwrap();
    assert_eq!(first.floor(), 5);
    first.reload(&sign(&pki, &lab_files(), 7), pki.now).unwrap();
    let floor = first.floor();
    assert_eq!(floor, 7);
    drop(first);

    // Restart with an older bundle on disk: refused, as a rollback.
    let old = sign(&pki, &lab_files(), 5);
    let err = start(&old, floor).unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::Rollback {
                in_force: 7,
                got: 5
            }
        ),
        "{err}"
    );
    // Without a floor (`new`), the same bundle starts: what the floor is for.
    let unfloored = PolicyService::new(
        trust(&pki),
        &old,
        pki.now,
        EvalLimits::default(),
        BundleLimits::default(),
    )
    .unwrap();
    assert_eq!(unfloored.floor(), 5);

    // The bundle at the floor starts, and reloads below it are still refused.
    let restarted = start(&sign(&pki, &lab_files(), 7), floor).unwrap();
    assert_still_serving(&restarted, 7);
    let err = restarted
        .reload(&sign(&pki, &lab_files(), 6), pki.now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::Rollback {
                in_force: 7,
                got: 6
            }
        ),
        "{err}"
    );
    assert_still_serving(&restarted, 7);
    // A newer bundle than the floor starts, and becomes the next floor.
    let newer = start(&sign(&pki, &lab_files(), 9), floor).unwrap();
    assert_eq!(newer.floor(), 9);
}

#[test]
fn policies_using_clock_random_or_network_builtins_are_refused() {
    for (call, name) in [
        ("rand.intn(\"x\", 10)", "rand."),
        ("time.now_ns()", "time.now_ns"),
        ("http.send({\"url\": \"x\"})", "http."),
        ("uuid.rfc4122(\"x\")", "uuid."),
        ("opa.runtime()", "opa.runtime"),
    ] {
        let rego = format!("package garrison.admission\ndefault allow := false\nx := {call}\n");
        let err =
            PolicyEngine::from_source("t", &rego_files(&rego), EvalLimits::default()).unwrap_err();
        assert!(
            matches!(err, PolicyError::ForbiddenBuiltin { ref builtin, .. } if builtin == name),
            "{call}: {err}"
        );
    }
}

const LOOPING: &str = r#"package garrison.admission
default allow := false
spin := count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i != j])
allow if spin > 0
reasons := []
"#;

#[test]
fn a_policy_that_runs_too_long_hits_the_instruction_limit() {
    let limits = EvalLimits {
        time_limit: StdDuration::from_secs(30),
        max_instructions: 100_000,
        ..EvalLimits::default()
    };
    let engine = PolicyEngine::from_source("t", &rego_files(LOOPING), limits).unwrap();
    let err = engine.evaluate(input()).unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::EvaluationInstructionLimit { limit: 100_000 }
        ),
        "{err}"
    );
}

#[test]
fn a_policy_that_runs_too_long_hits_the_time_limit() {
    let limits = EvalLimits {
        time_limit: StdDuration::from_millis(20),
        max_instructions: usize::MAX,
        ..EvalLimits::default()
    };
    let engine = PolicyEngine::from_source("t", &rego_files(LOOPING), limits).unwrap();
    let started = std::time::Instant::now();
    let err = engine.evaluate(input()).unwrap_err();
    assert!(
        matches!(err, PolicyError::EvaluationTimeLimit { limit_ms: 20 }),
        "{err}"
    );
    assert!(started.elapsed() < StdDuration::from_secs(2));
}

#[test]
fn a_runaway_bundle_is_loaded_but_every_decision_fails_closed_while_others_keep_serving() {
    let pki = make_pki("/policy/signer/ops");
    let service = service(&pki);
    service
        .reload(&sign(&pki, &rego_files(LOOPING), 6), pki.now)
        .unwrap();
    assert!(service.decide(input()).is_err());
    // The operator ships a fixed bundle; the service recovers without restarting.
    service
        .reload(&sign(&pki, &lab_files(), 7), pki.now)
        .unwrap();
    assert_still_serving(&service, 7);
}

#[test]
fn ill_typed_or_missing_decisions_deny_with_a_reason() {
    let cases = [
        (
            "allow := \"yes\"\nreasons := []\nspiffe_path := \"/a\"\nttl_seconds := 60",
            "decision: allow is not a boolean",
        ),
        (
            "allow := true\nreasons := []\nspiffe_path := \"/a\"\nttl_seconds := \"60\"",
            "decision: ttl_seconds is not a positive integer",
        ),
        (
            "allow := true\nreasons := []\nspiffe_path := \"/a\"\nttl_seconds := 0",
            "decision: ttl_seconds is not a positive integer",
        ),
        (
            "allow := true\nreasons := []\nspiffe_path := \"a/../b\"\nttl_seconds := 60",
            "decision: spiffe_path is not a valid SPIFFE ID path",
        ),
        (
            "allow := true\nreasons := []\nttl_seconds := 60",
            "decision: spiffe_path is undefined or not a string",
        ),
        (
            "allow := true\nreasons := [1]\nspiffe_path := \"/a\"\nttl_seconds := 60",
            "decision: reasons contains a non-string",
        ),
        (
            "allow := true\nspiffe_path := \"/a\"\nttl_seconds := 60",
            "decision: reasons is undefined",
        ),
        ("reasons := []", "decision: allow is undefined"),
        (
            "allow := true\nreasons := [\"bad\"]\nspiffe_path := \"/a\"\nttl_seconds := 60",
            "decision: allow is true but reasons are present",
        ),
    ];
    for (body, reason) in cases {
        let rego = format!("package garrison.admission\n{body}\n");
        let engine =
            PolicyEngine::from_source("t", &rego_files(&rego), EvalLimits::default()).unwrap();
        let decision = engine.evaluate(input()).unwrap();
        assert!(!decision.allow, "{body}");
        assert!(
            decision.reasons.iter().any(|r| r == reason),
            "{body}: {:?}",
            decision.reasons
        );
        assert_eq!(decision.spiffe_path, None);
    }
}

#[test]
fn malformed_input_is_an_error_not_a_decision() {
    let engine = PolicyEngine::from_source("lab", &lab_files(), EvalLimits::default()).unwrap();
    let err = engine.evaluate_json(b"{\"tpm\": ").unwrap_err();
    assert!(matches!(err, PolicyError::InputMalformed { .. }), "{err}");
    let err = engine.evaluate_json(b"[1, 2]").unwrap_err();
    assert!(
        matches!(err, PolicyError::InputContract { field: "input", .. }),
        "{err}"
    );
    let mut no_site = input();
    no_site.as_object_mut().unwrap().remove("site");
    let err = engine.evaluate(no_site).unwrap_err();
    assert!(
        matches!(err, PolicyError::InputContract { field: "site", .. }),
        "{err}"
    );
    let limits = EvalLimits {
        max_input_bytes: 16,
        ..EvalLimits::default()
    };
    let small = PolicyEngine::from_source("lab", &lab_files(), limits).unwrap();
    let err = small
        .evaluate_json(input().to_string().as_bytes())
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::InputTooLarge { limit: 16, .. }),
        "{err}"
    );
    // A value handed in directly meets the same limit (as a lower bound of its JSON size).
    let err = small.evaluate(input()).unwrap_err();
    assert!(
        matches!(err, PolicyError::InputTooLarge { limit: 16, .. }),
        "{err}"
    );
    let mut padded = input();
    padded["node"] = json!({"asserted": {"pad": "x".repeat(2 * 1024 * 1024)}});
    let err = engine.evaluate_ref(&padded).unwrap_err();
    assert!(matches!(err, PolicyError::InputTooLarge { .. }), "{err}");
    // Nesting beyond serde_json's own limit is refused for values too.
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut nested = input();
    nested["boot"]["deep"] = deep;
    let err = engine.evaluate(nested).unwrap_err();
    assert!(matches!(err, PolicyError::InputMalformed { .. }), "{err}");
}

#[test]
fn evaluate_ref_owned_and_bytes_decide_alike() {
    let engine = PolicyEngine::from_source("lab", &lab_files(), EvalLimits::default()).unwrap();
    let value = input();
    let by_ref = engine.evaluate_ref(&value).unwrap();
    assert_eq!(by_ref, engine.evaluate(value.clone()).unwrap());
    assert_eq!(
        by_ref,
        engine.evaluate_json(value.to_string().as_bytes()).unwrap()
    );
    // The caller's document is left as it was (no time_unix added to it).
    assert_eq!(value, input());
}

#[test]
fn reserved_package_and_missing_admission_package_are_refused() {
    let err = PolicyEngine::from_source(
        "t",
        &rego_files("package garrison_host\nx := 1\n"),
        EvalLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::ReservedPackage { .. } | PolicyError::PolicyCompile { .. }
        ),
        "{err}"
    );
    let err = PolicyEngine::from_source(
        "t",
        &rego_files("package other\nx := 1\n"),
        EvalLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PolicyError::PolicyCompile { .. }), "{err}");
    let err = PolicyEngine::from_source(
        "t",
        &rego_files("package garrison.admission\nallow if {"),
        EvalLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PolicyError::PolicyCompile { .. }), "{err}");
}

#[test]
fn oversized_and_oddly_named_bundles_are_refused_before_parsing() {
    let pki = make_pki("/policy/signer/ops");
    let mut files = sign(&pki, &lab_files(), 1);
    files.insert("../evil.rego".to_owned(), Vec::new());
    let err = verify_bundle(&files, &trust(&pki), pki.now, &BundleLimits::default()).unwrap_err();
    assert!(matches!(err, PolicyError::BundleFileName { .. }), "{err}");
    let tiny = BundleLimits {
        max_total_bytes: 100,
        max_files: 64,
    };
    let err =
        verify_bundle(&sign(&pki, &lab_files(), 1), &trust(&pki), pki.now, &tiny).unwrap_err();
    assert!(matches!(err, PolicyError::BundleTooLarge { .. }), "{err}");
}

/// A stolen site CA key signs a `/policy/...` certificate (with rcgen directly, as a thief
/// would: `garrison-ca` refuses to issue it) and signs a bundle with it. Its chain verifies
/// to the root, its ID is a policy ID, and it is still refused: policy signers never chain
/// through a site CA.
#[test]
fn a_policy_signer_issued_by_a_site_ca_is_refused() {
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "Test Root".to_owned(),
                ttl: Duration::days(30),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let intermediate = |issuer: &Authority, role: CaRole, ttl: Duration| {
        issuer
            .issue_intermediate(
                IntermediateParams {
                    name: role.to_string().replace('/', "-"),
                    role,
                    ttl,
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            )
            .unwrap()
    };
    let hub = Authority::from_issued(intermediate(&root, CaRole::Hub, Duration::days(20))).unwrap();
    let site = intermediate(&hub, CaRole::Site("site-a".into()), Duration::days(10));
    let site_key =
        rcgen::KeyPair::from_pem(site.key.as_ref().unwrap().to_pkcs8_pem().expose()).unwrap();
    let site_issuer =
        rcgen::Issuer::from_ca_cert_der(&site.certificate.as_slice().into(), &site_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org/policy/signer/evil"
            .to_owned()
            .try_into()
            .unwrap(),
    )];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(1);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = params
        .signed_by(&leaf_key, &site_issuer)
        .unwrap()
        .der()
        .to_vec();
    let chain = [leaf, site.certificate.clone(), hub.certificate().to_vec()];
    let signer =
        BundleSigner::from_pem(&leaf_key.serialize_pem(), &certificates_to_pem(&chain)).unwrap();
    let pki = Pki {
        root_pem: certificates_to_pem(root.roots()),
        signer,
        now,
    };
    let signed = sign(&pki, &lab_files(), 1);
    let err = verify_bundle(&signed, &trust(&pki), now, &BundleLimits::default()).unwrap_err();
    assert!(matches!(err, PolicyError::SignerOutOfScope { .. }), "{err}");
}
