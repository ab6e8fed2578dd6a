//! Leaf issuance from a CSR: parse + verify the CSR signature + sign the X.509-SVID.
//! Target: >= 10,000 leaves/s on one core (<= 100 µs each). The mandatory crypto is one ECDSA
//! verify (the CSR) and one ECDSA sign (the certificate); both are timed in the same run as
//! references, so the figure can be reported as a ratio on a noisy machine.
//!
//! Run: `taskset -c 0 cargo bench -p garrison-ca --bench issue_svid`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use criterion::{Criterion, criterion_group, criterion_main};
use garrison_ca::*;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

fn site_authority(now: OffsetDateTime, rng: &SystemRandom) -> Authority {
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "bench root".into(),
                ttl: Duration::days(365),
                path_len: 1,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            rng,
        )
        .unwrap(),
    )
    .unwrap();
    let site = root
        .issue_intermediate(
            IntermediateParams {
                name: "site".into(),
                role: CaRole::Site("a".into()),
                ttl: Duration::days(30),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            rng,
        )
        .unwrap();
    Authority::from_issued(site).unwrap()
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let site = site_authority(now, &rng);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let id = SpiffeId::parse("spiffe://example.org/site/a/node/n1").unwrap();

    c.bench_function("verify CSR + issue P-256 SVID", |b| {
        b.iter(|| {
            let csr = VerifiedCsr::from_der(&csr).unwrap();
            site.issue_svid(
                SvidParams {
                    spiffe_id: id.clone(),
                    ttl: Duration::hours(1),
                    max_ttl: Duration::hours(24),
                    subject_key: SubjectKey::Csr(csr),
                },
                now,
                &rng,
            )
            .unwrap()
        })
    });
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    c.bench_function("reference: one ring ECDSA P-256 sign", |b| {
        b.iter(|| signer.sign(&rng, b"tbs certificate stand-in").unwrap())
    });
    let signature = signer.sign(&rng, b"tbs certificate stand-in").unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        ring::signature::KeyPair::public_key(&signer)
            .as_ref()
            .to_vec(),
    );
    c.bench_function("reference: one ring ECDSA P-256 verify", |b| {
        b.iter(|| {
            public
                .verify(b"tbs certificate stand-in", signature.as_ref())
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
