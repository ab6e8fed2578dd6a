//! The hub witness key's certificate, checked against the root alone, through a real
//! hierarchy built by `garrison_ca`: root → hub CA → witness, with a site CA beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use garrison_ca::{
    Authority, CaRole, HubRole, IntermediateParams, Issued, KeyAlgorithm, PathLen, PrivateKey,
    RootParams, SiteRole, SubjectKey, TrustDomain,
};
use garrison_transparency::{
    LogKey, LogKeyCertificate, TransparencyError, WitnessKey, WitnessKeyCertificate,
};
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

const TD: &str = "example.org";

struct Hierarchy {
    now: OffsetDateTime,
    root: Authority,
    hub: Authority,
    /// The site CA as issued, with its key.
    site: Issued,
}

fn intermediate(issuer: &Authority, name: &str, role: CaRole, now: OffsetDateTime) -> Issued {
    let params = IntermediateParams {
        name: name.into(),
        role,
        ttl: Duration::days(30),
        path_len: PathLen::OneBelowIssuer,
        subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
    };
    issuer
        .issue_intermediate(params, now, &SystemRandom::new())
        .unwrap()
}

fn hierarchy(trust_domain: &str) -> Hierarchy {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let root = Authority::new_root(
        &RootParams {
            trust_domain: TrustDomain::new(trust_domain).unwrap(),
            name: "Root".into(),
            ttl: Duration::days(365),
            path_len: 2,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        now,
        &SystemRandom::new(),
    )
    .unwrap();
    let root = Authority::from_issued(root).unwrap();
    let hub = Authority::from_issued(intermediate(&root, "hub", CaRole::Hub, now)).unwrap();
    let site = intermediate(&hub, "s1", CaRole::Site("s1".into()), now);
    Hierarchy {
        now,
        root,
        hub,
        site,
    }
}

fn witness() -> WitnessKey {
    let pkcs8 = WitnessKey::generate_pkcs8(&SystemRandom::new()).unwrap();
    WitnessKey::from_pkcs8(TD, &pkcs8).unwrap()
}

fn certify(issuer: &Authority, key: &WitnessKey, now: OffsetDateTime) -> WitnessKeyCertificate {
    let issued = issuer
        .issue_hub_role_svid(
            HubRole::Witness,
            Duration::days(7),
            SubjectKey::LogKey(key.public_key()),
            now,
            &SystemRandom::new(),
        )
        .unwrap();
    WitnessKeyCertificate {
        certificate: issued.certificate,
        intermediates: issued.chain[1..].to_vec(),
    }
}

fn refused(result: Result<[u8; 32], TransparencyError>, why: &str) {
    match result {
        Err(TransparencyError::Certificate { reason }) => {
            assert!(reason.contains(why), "{reason:?} does not say {why:?}");
        }
        other => panic!("expected a refusal saying {why:?}, got {other:?}"),
    }
}

#[test]
fn a_witness_certificate_from_the_hub_ca_verifies_against_the_root() {
    let h = hierarchy(TD);
    let key = witness();
    let cert = certify(&h.hub, &key, h.now);
    let roots = h.root.roots().to_vec();
    assert_eq!(cert.verify(&roots, TD).unwrap(), key.public_key());
    // Another root does not vouch for it; nor does the chain without its hub CA.
    let other = hierarchy(TD);
    refused(
        cert.verify(other.root.roots(), TD),
        "does not chain to the root",
    );
    let orphan = WitnessKeyCertificate {
        certificate: cert.certificate.clone(),
        intermediates: vec![],
    };
    refused(orphan.verify(&roots, TD), "does not chain to the root");
}

#[test]
fn the_witness_of_another_trust_domain_is_refused() {
    let h = hierarchy(TD);
    let cert = certify(&h.hub, &witness(), h.now);
    refused(
        cert.verify(h.root.roots(), "other.org"),
        "not spiffe://other.org/hub/witness",
    );
    for bad in ["", "Example.org", "example.org/site/s1", "example.org hub"] {
        assert!(
            matches!(
                cert.verify(h.root.roots(), bad),
                Err(TransparencyError::TrustDomainInvalid { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_site_log_key_certificate_is_not_a_witness_certificate_nor_the_reverse() {
    let h = hierarchy(TD);
    let site = Authority::from_issued(h.site).unwrap();
    let log_key = LogKey::from_pkcs8(
        "garrison.example.org/site/s1",
        &LogKey::generate_pkcs8(&SystemRandom::new()).unwrap(),
    )
    .unwrap();
    let issued = site
        .issue_site_role_svid(
            SiteRole::Log,
            Duration::days(7),
            SubjectKey::LogKey(log_key.public_key()),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    let log_cert = WitnessKeyCertificate {
        certificate: issued.certificate.clone(),
        intermediates: issued.chain[1..].to_vec(),
    };
    refused(
        log_cert.verify(h.root.roots(), TD),
        "certifies spiffe://example.org/site/s1/log, not spiffe://example.org/hub/witness",
    );
    let witness_cert = certify(&h.hub, &witness(), h.now);
    let as_log = LogKeyCertificate {
        certificate: witness_cert.certificate,
        intermediates: witness_cert.intermediates,
    };
    refused(
        as_log.verify(h.root.roots(), "garrison.example.org/site/s1"),
        "not spiffe://example.org/site/s1/log",
    );
}

/// A stolen site CA key can sign any certificate it likes; here it signs a witness
/// certificate (loaded with a chain that claims the hub's role, which the CA code takes on
/// trust from whoever holds the key). Only the verifier's scope check stands in the way.
#[test]
fn a_witness_certificate_signed_by_a_site_ca_is_refused() {
    let h = hierarchy(TD);
    let site_key = h.site.key.as_ref().unwrap().to_pkcs8_pem();
    let masquerading = Authority::new(
        h.site.certificate.clone(),
        PrivateKey::from_pkcs8_pem(site_key.expose()).unwrap(),
        vec![h.hub.certificate().to_vec()],
        h.root.roots().to_vec(),
    )
    .unwrap();
    let key = witness();
    let forged = masquerading
        .issue_hub_role_svid(
            HubRole::Witness,
            Duration::days(7),
            SubjectKey::LogKey(key.public_key()),
            h.now,
            &SystemRandom::new(),
        )
        .unwrap();
    let cert = WitnessKeyCertificate {
        certificate: forged.certificate,
        intermediates: vec![h.site.certificate.clone(), h.hub.certificate().to_vec()],
    };
    refused(cert.verify(h.root.roots(), TD), "outside the scope");
}
