//! A root → hub → site → leaf hierarchy built through the public API, shared by the tests.
#![allow(dead_code)]

use garrison_ca::*;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

pub struct Hierarchy {
    pub now: OffsetDateTime,
    pub root: Authority,
    pub hub: Authority,
    pub site: Authority,
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

pub fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

pub fn root(now: OffsetDateTime) -> Authority {
    let issued = Authority::new_root(
        &RootParams {
            trust_domain: td(),
            name: "Example Root".into(),
            ttl: Duration::days(3650),
            path_len: 2,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        now,
        &SystemRandom::new(),
    )
    .unwrap();
    Authority::from_issued(issued).unwrap()
}

pub fn intermediate(
    issuer: &Authority,
    name: &str,
    ttl: Duration,
    now: OffsetDateTime,
) -> Authority {
    let issued = issuer
        .issue_intermediate(
            IntermediateParams {
                name: name.into(),
                role: if name == "hub" {
                    CaRole::Hub
                } else {
                    CaRole::Site(name.into())
                },
                ttl,
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &SystemRandom::new(),
        )
        .unwrap();
    Authority::from_issued(issued).unwrap()
}

pub fn hierarchy() -> Hierarchy {
    let now = now();
    let root = root(now);
    let hub = intermediate(&root, "hub", Duration::days(365), now);
    let site = intermediate(&hub, "a", Duration::days(30), now);
    Hierarchy {
        now,
        root,
        hub,
        site,
    }
}

/// A PKCS#10 CSR for a fresh P-256 key, made with rcgen (as an agent would).
pub fn csr_der(claimed_san: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec![claimed_san.to_owned()]).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

pub fn svid(site: &Authority, id: &str, ttl: Duration, now: OffsetDateTime) -> Issued {
    site.issue_svid(
        SvidParams {
            spiffe_id: SpiffeId::parse(id).unwrap(),
            ttl,
            max_ttl: Duration::hours(24),
            subject_key: SubjectKey::Csr(
                VerifiedCsr::from_der(&csr_der("evil.example.com")).unwrap(),
            ),
        },
        now,
        &SystemRandom::new(),
    )
    .unwrap()
}
