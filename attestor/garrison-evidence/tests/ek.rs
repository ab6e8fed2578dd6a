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
    EkEvidence, EkTrust, EkTrustBasis, EvidenceError, ManufacturerRoots, verify_ek,
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
