//! EK verification against swtpm's EK certificates and local CA (testdata/tpm2tools).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use std::collections::BTreeSet;

use garrison_evidence::{
    EkEvidence, EkTrust, EkTrustBasis, EvidenceError, ManufacturerRoots, ek_as_recorded, verify_ek,
};
use time::OffsetDateTime;
use time::macros::datetime;

const EK_RSA_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ek_rsa.pub");
const EK_ECC_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ek_ecc.pub");
const EK_RSA_CERT: &[u8] = include_bytes!("../testdata/tpm2tools/ek_rsa_cert.der");
const EK_ECC384_CERT: &[u8] = include_bytes!("../testdata/tpm2tools/ek_ecc384_cert.der");
const ROOT: &[u8] = include_bytes!("../testdata/tpm2tools/swtpm-localca-root.pem");
const INTERMEDIATE: &[u8] = include_bytes!("../testdata/tpm2tools/swtpm-localca-intermediate.pem");
const IMPOSTER: &[u8] = include_bytes!("../testdata/tpm2tools/imposter-root-same-name.pem");
const AK_ECC_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ak_ecc.pub");
/// `openssl x509 -in ek_rsa_cert.der -inform der -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
const EK_RSA_HASH: &str = "2f0c2c8291fd9b8a5e43ec0ad5eac634191e2a07e1957f5ae3a9aaa97cbf0aa2";

/// The fixtures were made on 2026-11-21 12:52 UTC; swtpm's certificates are valid from then.
const AFTER: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);
const BEFORE: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

fn intermediate_der() -> Vec<u8> {
    x509_pem_contents(INTERMEDIATE)
}

fn x509_pem_contents(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()
}

fn roots(files: &[(&str, &[u8])]) -> EkTrust {
    EkTrust::ManufacturerRoots(ManufacturerRoots::from_pem_or_der(files).unwrap())
}

#[test]
fn swtpm_rsa_ek_chains_to_local_ca() {
    let intermediate = intermediate_der();
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[&intermediate],
    };
    let ek = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), AFTER).unwrap();
    assert_eq!(ek.basis, EkTrustBasis::ManufacturerCertificate);
    assert_eq!(
        ek.ek_hash, EK_RSA_HASH,
        "canonical SPKI hash equals openssl's"
    );
    assert_eq!(ek.issuer.as_deref(), Some("CN=swtpm-localca"));
    assert_eq!(ek.serial.as_deref(), Some("02"));
    let manufacturer = ek.manufacturer.unwrap();
    assert_eq!(manufacturer.manufacturer.as_deref(), Some("id:00001014"));
    assert_eq!(manufacturer.model.as_deref(), Some("swtpm"));
    assert_eq!(manufacturer.version.as_deref(), Some("id:20191023"));
}

#[test]
fn intermediate_may_be_configured_as_root_and_der_roots_load() {
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[],
    };
    let der = intermediate_der();
    verify_ek(&evidence, &roots(&[("issuer.der", &der)]), AFTER).unwrap();
}

#[test]
fn missing_intermediate_is_untrusted() {
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[],
    };
    let err = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), AFTER).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkChainUntrusted { .. }),
        "{err}"
    );
}

#[test]
fn wrong_root_with_same_name_is_untrusted() {
    let intermediate = intermediate_der();
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[&intermediate],
    };
    let err = verify_ek(&evidence, &roots(&[("imposter.pem", IMPOSTER)]), AFTER).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkChainUntrusted { .. }),
        "{err}"
    );
}

#[test]
fn certificate_not_yet_valid_is_rejected() {
    let intermediate = intermediate_der();
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[&intermediate],
    };
    let err = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), BEFORE).unwrap_err();
    assert!(
        matches!(err, EvidenceError::CertificateNotValidAt { .. }),
        "{err}"
    );
}

#[test]
fn certificate_for_another_key_is_rejected() {
    let intermediate = intermediate_der();
    let trust = roots(&[("root.pem", ROOT)]);
    // ECC P-256 EK presented with swtpm's P-384 EK certificate.
    let evidence = EkEvidence {
        public_area: EK_ECC_PUB,
        certificate: Some(EK_ECC384_CERT),
        intermediates: &[&intermediate],
    };
    let err = verify_ek(&evidence, &trust, AFTER).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::EkKeyMismatch {
                detail: "ECC curve"
            }
        ),
        "{err}"
    );
    // RSA EK presented with the ECC certificate.
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_ECC384_CERT),
        intermediates: &[&intermediate],
    };
    let err = verify_ek(&evidence, &trust, AFTER).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkKeyMismatch { detail: "key type" }),
        "{err}"
    );
    // RSA EK public area with one modulus byte changed.
    let mut public = EK_RSA_PUB.to_vec();
    let last = public.len() - 1;
    public[last] ^= 1;
    let evidence = EkEvidence {
        public_area: &public,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[&intermediate],
    };
    let err = verify_ek(&evidence, &trust, AFTER).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::EkKeyMismatch {
                detail: "RSA modulus"
            }
        ),
        "{err}"
    );
}

#[test]
fn certificate_is_required_with_manufacturer_roots() {
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: None,
        intermediates: &[],
    };
    let err = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), AFTER).unwrap_err();
    assert!(matches!(err, EvidenceError::EkCertificateMissing), "{err}");
}

#[test]
fn ak_is_not_an_ek() {
    let evidence = EkEvidence {
        public_area: AK_ECC_PUB,
        certificate: None,
        intermediates: &[],
    };
    let err = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), AFTER).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::EkAttributeMissing {
                attribute: "adminWithPolicy",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn non_ca_root_is_refused_at_load() {
    let err = ManufacturerRoots::from_pem_or_der(&[("ek.der", EK_RSA_CERT)]).unwrap_err();
    assert!(matches!(err, EvidenceError::IssuerNotCa { .. }), "{err}");
    let err = ManufacturerRoots::from_pem_or_der(&[("junk", b"not a certificate")]).unwrap_err();
    assert!(
        matches!(err, EvidenceError::CertificateParse { .. }),
        "{err}"
    );
}

#[test]
fn insecure_allow_list_accepts_listed_hash_only() {
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: None,
        intermediates: &[],
    };
    let listed = EkTrust::InsecureAllowListedEkHashes(BTreeSet::from([EK_RSA_HASH.to_uppercase()]));
    let ek = verify_ek(&evidence, &listed, AFTER).unwrap();
    assert_eq!(ek.basis, EkTrustBasis::InsecureAllowList);
    assert_eq!(ek.ek_hash, EK_RSA_HASH);
    let other = EkEvidence {
        public_area: EK_ECC_PUB,
        certificate: None,
        intermediates: &[],
    };
    let err = verify_ek(&other, &listed, AFTER).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkNotAllowListed { .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// CA constraints along the chain (RFC 5280 §4.2.1.3, §4.2.1.9, §6.1.4): chains built with
// rcgen for swtpm's real RSA EK key, each also put to `openssl verify`.
// ---------------------------------------------------------------------------------------

/// A CA made for a test chain: its parameters (for issuing) and key.
struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    der: Vec<u8>,
}

/// What a test CA certificate says about itself.
struct CaShape {
    path_len: Option<u8>,
    /// `None`: no keyUsage extension at all.
    key_usage: Option<Vec<rcgen::KeyUsagePurpose>>,
}

const CERT_SIGN: &[rcgen::KeyUsagePurpose] = &[
    rcgen::KeyUsagePurpose::KeyCertSign,
    rcgen::KeyUsagePurpose::CrlSign,
];

impl CaShape {
    fn ca(path_len: Option<u8>) -> Self {
        Self {
            path_len,
            key_usage: Some(CERT_SIGN.to_vec()),
        }
    }
}

fn test_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.not_before = datetime!(2026-01-01 00:00 UTC);
    params.not_after = datetime!(2030-01-01 00:00 UTC);
    // Lets openssl tell the rolled-over root from the root (same name, other key).
    params.use_authority_key_identifier_extension = true;
    params
}

fn ca_params(name: &str, shape: &CaShape) -> rcgen::CertificateParams {
    let mut params = test_params(name);
    params.is_ca = rcgen::IsCa::Ca(match shape.path_len {
        Some(n) => rcgen::BasicConstraints::Constrained(n),
        None => rcgen::BasicConstraints::Unconstrained,
    });
    params.key_usages = shape.key_usage.clone().unwrap_or_default();
    params
}

impl TestCa {
    fn root(name: &str, shape: &CaShape) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(name, shape);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Self { params, key, der }
    }

    fn issue_ca(&self, name: &str, shape: &CaShape) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(name, shape);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        Self { params, key, der }
    }

    /// An EK certificate for swtpm's RSA EK (the key of `ek_rsa_cert.der`).
    fn issue_ek(&self) -> Vec<u8> {
        let (_, swtpm_ek) =
            <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
                '_,
                _,
            >>::from_der(EK_RSA_CERT)
            .unwrap();
        let ek_key = rcgen::SubjectPublicKeyInfo::from_der(swtpm_ek.public_key().raw).unwrap();
        let mut params = test_params("");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        params.signed_by(&ek_key, &issuer).unwrap().der().to_vec()
    }
}

fn pem_of(ders: &[&[u8]]) -> String {
    ders.iter()
        .map(|der| {
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// Whether `openssl verify` accepts `ek` under `root` through `intermediates` at [`AFTER`].
fn openssl_accepts(root: &[u8], intermediates: &[&[u8]], ek: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.pem");
    let chain_path = dir.path().join("untrusted.pem");
    let ek_path = dir.path().join("ek.pem");
    std::fs::write(&root_path, pem_of(&[root])).unwrap();
    std::fs::write(&chain_path, pem_of(intermediates)).unwrap();
    std::fs::write(&ek_path, pem_of(&[ek])).unwrap();
    let mut command = std::process::Command::new("openssl");
    command
        .arg("verify")
        .arg("-attime")
        .arg(AFTER.unix_timestamp().to_string())
        .arg("-CAfile")
        .arg(&root_path);
    if !intermediates.is_empty() {
        command.arg("-untrusted").arg(&chain_path);
    }
    let out = command
        .arg(&ek_path)
        .output()
        .expect("openssl is installed by the test command");
    eprintln!(
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

/// [`verify_ek`] of swtpm's RSA EK public area with `ek` through `intermediates` to `root`.
fn verify_rsa_ek(
    root: &[u8],
    intermediates: &[&[u8]],
    ek: &[u8],
) -> Result<garrison_evidence::EkIdentity, EvidenceError> {
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(ek),
        intermediates,
    };
    verify_ek(&evidence, &roots(&[("root.der", root)]), AFTER)
}

#[test]
fn constrained_chain_like_a_vendors_is_accepted_by_us_and_openssl() {
    // Vendor shape: root (no path length limit) → manufacturing CA (pathLen 0) → EK.
    let root = TestCa::root("TPM Root", &CaShape::ca(None));
    let manufacturing = root.issue_ca("TPM Manufacturing CA 001", &CaShape::ca(Some(0)));
    let ek = manufacturing.issue_ek();
    assert!(openssl_accepts(&root.der, &[&manufacturing.der], &ek));
    let ek_identity = verify_rsa_ek(&root.der, &[&manufacturing.der], &ek).unwrap();
    assert_eq!(ek_identity.ek_hash, EK_RSA_HASH);

    // Two intermediates, every pathLenConstraint exactly at its limit.
    let root = TestCa::root("TPM Root", &CaShape::ca(Some(2)));
    let upper = root.issue_ca("TPM Intermediate", &CaShape::ca(Some(1)));
    let lower = upper.issue_ca("TPM Manufacturing CA 002", &CaShape::ca(Some(0)));
    let ek = lower.issue_ek();
    assert!(openssl_accepts(&root.der, &[&upper.der, &lower.der], &ek));
    verify_rsa_ek(&root.der, &[&upper.der, &lower.der], &ek).unwrap();
}

#[test]
fn path_length_is_counted_over_the_intermediates_below_each_issuer() {
    // An intermediate with pathLen 0 over another CA: `lower` has no limit of its own, but
    // `upper` may not have any CA below it.
    let root = TestCa::root("TPM Root", &CaShape::ca(Some(2)));
    let upper = root.issue_ca("TPM Intermediate", &CaShape::ca(Some(0)));
    let lower = upper.issue_ca("TPM Manufacturing CA 002", &CaShape::ca(None));
    let ek = lower.issue_ek();
    assert!(!openssl_accepts(&root.der, &[&upper.der, &lower.der], &ek));
    let err = verify_rsa_ek(&root.der, &[&upper.der, &lower.der], &ek).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerPathLength { subject, max: 0, got: 1 } if subject == "CN=TPM Intermediate"
        ),
        "{err}"
    );
    // A root with pathLen 1 over two intermediates (each within its own limit).
    let root = TestCa::root("TPM Root", &CaShape::ca(Some(1)));
    let upper = root.issue_ca("TPM Intermediate", &CaShape::ca(Some(1)));
    let lower = upper.issue_ca("TPM Manufacturing CA 002", &CaShape::ca(Some(0)));
    let ek = lower.issue_ek();
    assert!(!openssl_accepts(&root.der, &[&upper.der, &lower.der], &ek));
    let err = verify_rsa_ek(&root.der, &[&upper.der, &lower.der], &ek).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerPathLength { subject, max: 1, got: 2 } if subject == "CN=TPM Root"
        ),
        "{err}"
    );
}

#[test]
fn root_path_length_zero_forbids_an_intermediate() {
    let root = TestCa::root("TPM Root", &CaShape::ca(Some(0)));
    let intermediate = root.issue_ca("TPM Manufacturing CA", &CaShape::ca(None));
    let ek = intermediate.issue_ek();
    assert!(
        !openssl_accepts(&root.der, &[&intermediate.der], &ek),
        "openssl refuses the chain"
    );
    let err = verify_rsa_ek(&root.der, &[&intermediate.der], &ek).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerPathLength { subject, max: 0, got: 1 } if subject == "CN=TPM Root"
        ),
        "{err}"
    );
    assert_eq!(err.check(), "ek-trust");
    // The same root may sign EK certificates directly.
    let direct = root.issue_ek();
    assert!(openssl_accepts(&root.der, &[], &direct));
    verify_rsa_ek(&root.der, &[], &direct).unwrap();
}

#[test]
fn intermediate_without_key_cert_sign_is_refused() {
    let root = TestCa::root("TPM Root", &CaShape::ca(None));
    let signing_only = root.issue_ca(
        "TPM Manufacturing CA",
        &CaShape {
            path_len: Some(0),
            key_usage: Some(vec![rcgen::KeyUsagePurpose::DigitalSignature]),
        },
    );
    let ek = signing_only.issue_ek();
    assert!(
        !openssl_accepts(&root.der, &[&signing_only.der], &ek),
        "openssl refuses the chain"
    );
    let err = verify_rsa_ek(&root.der, &[&signing_only.der], &ek).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerKeyUsage { subject, expected: "keyCertSign", got }
                if subject == "CN=TPM Manufacturing CA" && got == "digitalSignature"
        ),
        "{err}"
    );
    assert_eq!(err.check(), "ek-trust");
}

#[test]
fn intermediate_without_key_usage_is_refused() {
    // RFC 5280 §4.2.1.3: a CA whose key verifies certificate signatures MUST carry keyUsage.
    // openssl tolerates its absence; every TPM vendor intermediate carries it, so we do not.
    let root = TestCa::root("TPM Root", &CaShape::ca(None));
    let no_key_usage = root.issue_ca(
        "TPM Manufacturing CA",
        &CaShape {
            path_len: Some(0),
            key_usage: None,
        },
    );
    let ek = no_key_usage.issue_ek();
    let err = verify_rsa_ek(&root.der, &[&no_key_usage.der], &ek).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerKeyUsage { expected: "keyCertSign", got, .. }
                if got == "no keyUsage extension"
        ),
        "{err}"
    );
}

#[test]
fn root_constraints_are_checked_at_load_and_on_use() {
    // A configured root whose keyUsage excludes certificate signing is refused at load...
    let not_a_signer = TestCa::root(
        "TPM Root",
        &CaShape {
            path_len: None,
            key_usage: Some(vec![rcgen::KeyUsagePurpose::DigitalSignature]),
        },
    );
    let err = ManufacturerRoots::from_pem_or_der(&[("root.der", &not_a_signer.der)]).unwrap_err();
    assert!(
        matches!(
            &err,
            EvidenceError::IssuerKeyUsage {
                expected: "keyCertSign",
                ..
            }
        ),
        "{err}"
    );
    // ...while a root without any keyUsage (a trust anchor the operator chose; RFC 5280 §6.1
    // takes its constraints as optional inputs) loads and issues.
    let bare = TestCa::root(
        "TPM Root",
        &CaShape {
            path_len: None,
            key_usage: None,
        },
    );
    let ek = bare.issue_ek();
    assert!(openssl_accepts(&bare.der, &[], &ek));
    verify_rsa_ek(&bare.der, &[], &ek).unwrap();
}

#[test]
fn intermediate_that_is_not_a_ca_is_refused() {
    let root = TestCa::root("TPM Root", &CaShape::ca(None));
    let mut params = ca_params("TPM Manufacturing CA", &CaShape::ca(None));
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let issuer = rcgen::Issuer::from_params(&root.params, &root.key);
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    let leaf_ca = TestCa { params, key, der };
    let ek = leaf_ca.issue_ek();
    assert!(!openssl_accepts(&root.der, &[&leaf_ca.der], &ek));
    let err = verify_rsa_ek(&root.der, &[&leaf_ca.der], &ek).unwrap_err();
    assert!(matches!(err, EvidenceError::IssuerNotCa { .. }), "{err}");
}

#[test]
fn self_issued_intermediates_do_not_count_towards_path_length() {
    // Key rollover: the root's name with a new key, certified by the old key. RFC 5280
    // §6.1.4 (l) does not count such self-issued certificates against pathLenConstraint.
    let root = TestCa::root("TPM Root", &CaShape::ca(Some(1)));
    let rolled_over = root.issue_ca("TPM Root", &CaShape::ca(Some(1)));
    let manufacturing = rolled_over.issue_ca("TPM Manufacturing CA", &CaShape::ca(Some(0)));
    let ek = manufacturing.issue_ek();
    let chain: [&[u8]; 2] = [&rolled_over.der, &manufacturing.der];
    assert!(openssl_accepts(&root.der, &chain, &ek));
    verify_rsa_ek(&root.der, &chain, &ek).unwrap();
    // One more (non-self-issued) CA below the root's limit is refused.
    let extra = manufacturing.issue_ca("TPM Extra CA", &CaShape::ca(None));
    let ek = extra.issue_ek();
    let chain: [&[u8]; 3] = [&rolled_over.der, &manufacturing.der, &extra.der];
    assert!(!openssl_accepts(&root.der, &chain, &ek));
    let err = verify_rsa_ek(&root.der, &chain, &ek).unwrap_err();
    assert!(
        matches!(&err, EvidenceError::IssuerPathLength { max: 0, got: 1, .. }),
        "{err}"
    );
}

/// Replay's view of a logged EK: the same facts as the verified one, without the chain; the
/// certificate must still certify this EK.
#[test]
fn a_recorded_ek_states_what_the_verified_one_did() {
    let intermediate = intermediate_der();
    let evidence = EkEvidence {
        public_area: EK_RSA_PUB,
        certificate: Some(EK_RSA_CERT),
        intermediates: &[&intermediate],
    };
    let verified = verify_ek(&evidence, &roots(&[("root.pem", ROOT)]), AFTER).unwrap();
    let recorded = ek_as_recorded(EK_RSA_PUB, Some(EK_RSA_CERT)).unwrap();
    assert_eq!(recorded.ek_hash, EK_RSA_HASH);
    assert_eq!(recorded.basis, verified.basis);
    assert_eq!(recorded.issuer, verified.issuer);
    assert_eq!(recorded.serial, verified.serial);
    assert_eq!(recorded.manufacturer, verified.manufacturer);
    assert!(recorded.manufacturer.is_some());
    // Another EK's certificate is refused; no certificate states nothing.
    assert!(matches!(
        ek_as_recorded(EK_ECC_PUB, Some(EK_RSA_CERT)),
        Err(EvidenceError::EkKeyMismatch { .. })
    ));
    let bare = ek_as_recorded(EK_RSA_PUB, None).unwrap();
    assert_eq!(bare.ek_hash, EK_RSA_HASH);
    assert_eq!(bare.basis, EkTrustBasis::InsecureAllowList);
    assert_eq!((bare.issuer, bare.manufacturer), (None, None));
    // An AK is not an EK.
    assert!(ek_as_recorded(AK_ECC_PUB, None).is_err());
}
