//! Every rule the CA enforces refuses with its own error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_ca::*;
use ring::rand::SystemRandom;
use time::Duration;

fn intermediate_params(ttl: Duration, path_len: PathLen) -> IntermediateParams {
    IntermediateParams {
        name: "x".into(),
        ttl,
        path_len,
        subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
    }
}

fn svid_params(id: &str, ttl: Duration) -> SvidParams {
    SvidParams {
        spiffe_id: SpiffeId::parse(id).unwrap(),
        ttl,
        max_ttl: Duration::hours(24),
        subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
    }
}

fn issued_leaf_as_authority(h: &Hierarchy) -> Result<Authority, CaError> {
    let issued = h
        .site
        .issue_svid(
            svid_params("spiffe://example.org/n", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    Authority::from_issued(issued)
}

#[test]
fn a_leaf_presented_as_an_issuer_is_refused() {
    let h = hierarchy();
    assert!(matches!(
        issued_leaf_as_authority(&h),
        Err(CaError::IssuerNotCa { .. })
    ));
}

#[test]
fn a_key_that_does_not_match_the_issuer_is_refused() {
    let h = hierarchy();
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &SystemRandom::new()).unwrap();
    let err = Authority::new(h.site.certificate().to_vec(), other, vec![], vec![]);
    assert!(matches!(err, Err(CaError::IssuerKeyMismatch)));
}

#[test]
fn a_site_intermediate_cannot_issue_another_ca() {
    let h = hierarchy();
    assert_eq!(h.site.path_len(), Some(0));
    let err = h
        .site
        .issue_intermediate(
            intermediate_params(Duration::days(1), PathLen::OneBelowIssuer),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(
        matches!(err, CaError::PathLengthExhausted { issuer_path_len: 0 }),
        "{err}"
    );
}

#[test]
fn an_explicit_path_length_must_decrease() {
    let h = hierarchy();
    let err = h
        .hub
        .issue_intermediate(
            intermediate_params(Duration::days(1), PathLen::Exactly(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaError::PathLengthNotDecreasing {
                requested: 1,
                issuer_path_len: 1
            }
        ),
        "{err}"
    );
    // The air-gapped case: a site signed by the root directly, with path length 0.
    let site = h
        .root
        .issue_intermediate(
            intermediate_params(Duration::days(1), PathLen::Exactly(0)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    assert_eq!(Authority::from_issued(site).unwrap().path_len(), Some(0));
}

#[test]
fn an_intermediate_may_not_outlive_its_issuer() {
    let h = hierarchy();
    let err = h
        .site_parent()
        .issue_intermediate(
            intermediate_params(Duration::days(400), PathLen::OneBelowIssuer),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    match err {
        CaError::TtlExceedsIssuer {
            requested_not_after,
            issuer_not_after,
        } => {
            assert_eq!(issuer_not_after, h.hub.not_after());
            assert_eq!(requested_not_after, h.now + Duration::days(400));
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn an_svid_longer_than_the_maximum_is_refused() {
    let h = hierarchy();
    let err = h
        .site
        .issue_svid(
            svid_params("spiffe://example.org/n", Duration::hours(25)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaError::TtlTooLong {
                requested_seconds: 90000,
                max_seconds: 86400
            }
        ),
        "{err}"
    );
}

#[test]
fn zero_and_negative_ttls_are_refused() {
    let h = hierarchy();
    for ttl in [Duration::ZERO, Duration::seconds(-5)] {
        let err = h
            .site
            .issue_svid(
                svid_params("spiffe://example.org/n", ttl),
                h.now,
                &SystemRandom::new(),
            )
            .unwrap_err();
        assert!(matches!(err, CaError::TtlNotPositive { .. }), "{err}");
    }
}

#[test]
fn an_expired_issuer_issues_nothing() {
    let h = hierarchy();
    let later = h.site.not_after() + Duration::seconds(1);
    let err = h
        .site
        .issue_svid(
            svid_params("spiffe://example.org/n", Duration::hours(1)),
            later,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::IssuerExpired { .. }), "{err}");
    let err = h
        .hub
        .issue_intermediate(
            intermediate_params(Duration::days(1), PathLen::OneBelowIssuer),
            h.hub.not_after() + Duration::days(1),
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::IssuerExpired { .. }), "{err}");
}

#[test]
fn an_issuer_not_yet_valid_issues_nothing() {
    let h = hierarchy();
    let before = h.now - Duration::days(1);
    let err = h
        .site
        .issue_svid(
            svid_params("spiffe://example.org/n", Duration::hours(1)),
            before,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::IssuerNotYetValid { .. }), "{err}");
}

#[test]
fn an_svid_without_a_path_or_in_another_trust_domain_is_refused() {
    let h = hierarchy();
    let err = h
        .site
        .issue_svid(
            svid_params("spiffe://example.org", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::SvidWithoutPath { .. }), "{err}");
    let err = h
        .site
        .issue_svid(
            svid_params("spiffe://other.org/n", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");
}

#[test]
fn a_csr_with_a_bad_signature_is_refused() {
    let mut der = csr_der("n1");
    let last = der.len() - 1;
    der[last] ^= 0x01; // the signature is the last field of a CSR
    assert!(matches!(
        VerifiedCsr::from_der(&der),
        Err(CaError::CsrSignatureInvalid)
    ));
}

#[test]
fn garbage_and_truncated_csrs_are_refused_without_panic() {
    let der = csr_der("n1");
    for len in 0..der.len() {
        assert!(
            VerifiedCsr::from_der(&der[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(
        VerifiedCsr::from_der(&trailing),
        Err(CaError::CsrUnparseable)
    ));
}

#[test]
fn a_small_rsa_key_in_a_csr_is_refused() {
    // A 1024-bit RSA CSR made by openssl (key throwaway), PEM.
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=x",
            "-outform",
            "DER",
        ])
        .output()
        .expect("openssl is installed by the test command");
    assert!(out.status.success());
    assert!(matches!(
        VerifiedCsr::from_der(&out.stdout),
        Err(CaError::CsrKeyUnacceptable { .. })
    ));
}

#[test]
fn ca_names_must_be_reasonable() {
    let h = hierarchy();
    let mut params = intermediate_params(Duration::days(1), PathLen::OneBelowIssuer);
    params.name = String::new();
    let err = h
        .hub
        .issue_intermediate(params, h.now, &SystemRandom::new())
        .unwrap_err();
    assert!(matches!(err, CaError::BadCaName { len: 0 }));
}

trait SiteParent {
    fn site_parent(&self) -> &Authority;
}
impl SiteParent for Hierarchy {
    fn site_parent(&self) -> &Authority {
        &self.hub
    }
}
