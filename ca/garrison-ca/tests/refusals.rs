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
        role: CaRole::Site("x".into()),
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
            svid_params("spiffe://example.org/site/a/n", Duration::hours(1)),
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
            svid_params("spiffe://example.org/site/a/n", Duration::hours(25)),
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
                svid_params("spiffe://example.org/site/a/n", ttl),
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
            svid_params("spiffe://example.org/site/a/n", Duration::hours(1)),
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
            svid_params("spiffe://example.org/site/a/n", Duration::hours(1)),
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
            svid_params("spiffe://other.org/site/a/n", Duration::hours(1)),
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

#[test]
fn a_site_ca_issues_only_inside_its_own_site() {
    let h = hierarchy();
    for outside in [
        "spiffe://example.org/site/b/node/n1",
        "spiffe://example.org/site/ab/node/n1",
        "spiffe://example.org/policy/ops",
        "spiffe://example.org/auditor/alice",
        "spiffe://example.org/n",
    ] {
        let err = h
            .site
            .issue_svid(
                svid_params(outside, Duration::hours(1)),
                h.now,
                &SystemRandom::new(),
            )
            .unwrap_err();
        assert!(
            matches!(err, CaError::OutOfScope { .. }),
            "{outside}: {err}"
        );
    }
}

#[test]
fn role_identities_are_never_issued_as_node_svids() {
    let h = hierarchy();
    for reserved in [
        "spiffe://example.org/site/a/attestor",
        "spiffe://example.org/site/a/attestor/x",
        "spiffe://example.org/site/a/log",
    ] {
        let err = h
            .site
            .issue_svid(
                svid_params(reserved, Duration::hours(1)),
                h.now,
                &SystemRandom::new(),
            )
            .unwrap_err();
        assert!(
            matches!(err, CaError::ReservedIdentity { .. }),
            "{reserved}: {err}"
        );
    }
    // The site's own attestor certificate comes from the role path, for its own site only.
    let issued = h
        .site
        .issue_site_role_svid(
            SiteRole::Attestor,
            Duration::hours(1),
            SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    let summary = CertificateSummary::from_der(&issued.certificate).unwrap();
    assert!(
        summary
            .to_text()
            .contains("spiffe://example.org/site/a/attestor"),
        "{}",
        summary.to_text()
    );
    let err = h
        .hub
        .issue_site_role_svid(
            SiteRole::Attestor,
            Duration::hours(1),
            SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::RoleNotIssuable { .. }), "{err}");
}

#[test]
fn a_ca_issues_only_the_roles_its_place_allows() {
    let h = hierarchy();
    let issue = |issuer: &Authority, role: CaRole, path_len: PathLen| {
        let mut params = intermediate_params(Duration::days(1), path_len);
        params.role = role;
        issuer.issue_intermediate(params, h.now, &SystemRandom::new())
    };
    // A hub may not make a policy CA (policy signers never chain through an online hub).
    let err = issue(&h.hub, CaRole::Policy, PathLen::OneBelowIssuer).unwrap_err();
    assert!(matches!(err, CaError::RoleNotIssuable { .. }), "{err}");
    // The root may.
    let policy_ca = issue(&h.root, CaRole::Policy, PathLen::Exactly(0)).unwrap();
    let policy_ca = Authority::from_issued(policy_ca).unwrap();
    assert_eq!(policy_ca.role().unwrap(), Some(&CaRole::Policy));
    // A policy CA makes policy signers and nothing under /site/.
    let site_leaf = policy_ca
        .issue_svid(
            svid_params("spiffe://example.org/site/a/n", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(
        matches!(site_leaf, CaError::OutOfScope { .. }),
        "{site_leaf}"
    );
    policy_ca
        .issue_svid(
            svid_params("spiffe://example.org/policy/ops", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    // The role is in the subject, where openssl shows it and SPIFFE verifiers ignore it.
    assert_eq!(h.site.role().unwrap(), Some(&CaRole::Site("a".into())));
    assert!(h.site.subject().contains("site/a"), "{}", h.site.subject());
}

#[test]
fn an_intermediate_without_a_role_issues_nothing() {
    // A CA certificate made outside Garrison (rcgen directly), as before roles existed.
    let now = now();
    let root = Authority::new_root(
        &RootParams {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            name: "root".into(),
            ttl: Duration::days(10),
            path_len: 1,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        now,
        &SystemRandom::new(),
    )
    .unwrap();
    let root_key =
        rcgen::KeyPair::from_pem(root.key.as_ref().unwrap().to_pkcs8_pem().expose()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&root.certificate.as_slice().into(), &root_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org".to_owned().try_into().unwrap(),
    )];
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    let authority = Authority::new(
        der.clone(),
        PrivateKey::from_pkcs8_pem(&key.serialize_pem()).unwrap(),
        vec![der],
        vec![root.certificate.clone()],
    )
    .unwrap();
    assert!(matches!(
        authority.role(),
        Err(CaError::IssuerWithoutRole { .. })
    ));
    let err = authority
        .issue_svid(
            svid_params("spiffe://example.org/site/a/n", Duration::hours(1)),
            now,
            &SystemRandom::new(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::OutOfScope { .. }), "{err}");
}

fn witness_key() -> [u8; 32] {
    use ring::signature::KeyPair as _;
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    pair.public_key().as_ref().try_into().unwrap()
}

#[test]
fn only_a_hub_ca_issues_the_witness_certificate() {
    let h = hierarchy();
    let issue = |issuer: &Authority, key: SubjectKey| {
        issuer.issue_hub_role_svid(
            HubRole::Witness,
            Duration::days(30),
            key,
            h.now,
            &SystemRandom::new(),
        )
    };
    let policy_ca = h
        .root
        .issue_intermediate(
            IntermediateParams {
                name: "policy".into(),
                role: CaRole::Policy,
                ttl: Duration::days(1),
                path_len: PathLen::Exactly(0),
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    let policy_ca = Authority::from_issued(policy_ca).unwrap();
    for (issuer, name) in [
        (&h.root, "root"),
        (&h.site, "site/a"),
        (&policy_ca, "policy"),
    ] {
        match issue(issuer, SubjectKey::LogKey(witness_key())).unwrap_err() {
            CaError::RoleNotIssuable { requested, issuer } => {
                assert_eq!((requested.as_str(), issuer.as_str()), ("hub/witness", name));
            }
            other => panic!("{name}: wrong error: {other}"),
        }
    }
    // The witness certifies an Ed25519 note key, never a TLS key.
    let err = issue(&h.hub, SubjectKey::Generate(KeyAlgorithm::EcdsaP256)).unwrap_err();
    assert!(matches!(err, CaError::RoleNotIssuable { .. }), "{err}");
    issue(&h.hub, SubjectKey::LogKey(witness_key())).unwrap();
}

#[test]
fn the_witness_identity_is_never_issued_as_an_ordinary_svid() {
    let h = hierarchy();
    for reserved in [
        "spiffe://example.org/hub/witness",
        "spiffe://example.org/hub/witness/x",
    ] {
        let err = h
            .hub
            .issue_svid(
                svid_params(reserved, Duration::hours(1)),
                h.now,
                &SystemRandom::new(),
            )
            .unwrap_err();
        match err {
            CaError::ReservedIdentity { holder, role, .. } => {
                assert_eq!((holder, role), ("hub", "witness"), "{reserved}");
            }
            other => panic!("{reserved}: wrong error: {other}"),
        }
    }
    // Other hub identities still come from issue_svid.
    h.hub
        .issue_svid(
            svid_params("spiffe://example.org/hub/witnesses", Duration::hours(1)),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
}
