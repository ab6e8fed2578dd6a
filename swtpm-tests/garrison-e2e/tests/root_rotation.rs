//! A root rotation reaching an agent three levels down (root → hub → site → agent), with a
//! real attestor, a real agent on swtpm and openssl as the workloads' verifier: the new root,
//! cross-signed by the old one, is announced (as the hub's Pull carries it), the agent writes
//! it into its bundle at its next renewal; then the hub CA moves under the new root and the
//! site's next CA comes from it, and the agent, still holding only the old root as its
//! bootstrap anchor, keeps renewing. No renewal fails along the way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SubjectKey,
    TrustDomain, VerifiedCsr,
};
use garrison_log::{Query, RecordKind};
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

/// `openssl verify` of the agent's SVID against the bundle it wrote for its workloads.
fn openssl_verifies(svid_dir: &std::path::Path) -> Result<(), String> {
    let chain = std::fs::read_to_string(svid_dir.join("svid.pem")).unwrap();
    let mut certs = pem::parse_many(&chain).unwrap();
    let leaf = certs.remove(0);
    let leaf_path = svid_dir.join("leaf-only.pem");
    let rest_path = svid_dir.join("untrusted.pem");
    std::fs::write(&leaf_path, pem::encode(&leaf)).unwrap();
    std::fs::write(&rest_path, pem::encode_many(&certs)).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(svid_dir.join("bundle.pem"))
        .arg("-untrusted")
        .arg(&rest_path)
        .arg(&leaf_path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_rotation_reaches_the_agent_and_no_renewal_fails() {
    let site = Running::start(&[good("node-1")], "").await;
    let config = site.agent_config("node-1");
    garrison_agent::enroll_once(&config).await.unwrap();
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let dir = site.site.dir.clone();
    let old_root = garrison_attestor::server::load_authority(&dir.join("ca/root")).unwrap();

    // At the offline root: a new root, announced by a certificate the old one signs.
    let new_root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new(garrison_testbed::TRUST_DOMAIN).unwrap(),
                name: "Garrison Testbed Root 2".into(),
                ttl: Duration::days(7300),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let cross = old_root
        .cross_sign(new_root.certificate(), now, &rng)
        .unwrap()
        .certificate;

    // The hub announces it; the site takes it (what a sync round does with the Pull).
    let attestor = site.attestor.clone().unwrap();
    let log = attestor.log();
    let ca = attestor.site_ca();
    // A forged announcement (a self-signed root nobody cross-signed) is refused and recorded.
    let forged = Authority::new_root(
        &RootParams {
            trust_domain: TrustDomain::new(garrison_testbed::TRUST_DOMAIN).unwrap(),
            name: "Garrison Testbed Root 2".into(),
            ttl: Duration::days(7300),
            path_len: 2,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        now,
        &rng,
    )
    .unwrap()
    .certificate;
    assert_eq!(
        ca.accept_announced_roots(log, &[forged], now)
            .await
            .unwrap(),
        0
    );
    // The new root itself and its cross-signed certificate, in either order.
    let twin = new_root.certificate().to_vec();
    assert_eq!(
        ca.accept_announced_roots(log, &[twin.clone(), cross.clone()], now)
            .await
            .unwrap(),
        2
    );

    // Overlap: the agent renews and writes the new root for its workloads.
    garrison_agent::renew_once(&config).await.unwrap();
    let bundle = garrison_ca::certificates_from_pem(
        &std::fs::read_to_string(config.svid_dir.join("bundle.pem")).unwrap(),
    )
    .unwrap();
    assert!(bundle.contains(&twin), "the agent wrote the new root");
    assert!(
        !bundle.contains(&cross),
        "its self-signed certificate stands in for the cross-signed one"
    );
    assert!(bundle.contains(&old_root.certificate().to_vec()));
    openssl_verifies(&config.svid_dir).unwrap();

    // The hub's CA moves under the new root (its file ceremony), and certifies the site's
    // next CA; the site puts it in force.
    let hub2 = Authority::from_issued(
        new_root
            .issue_intermediate(
                IntermediateParams {
                    name: "hub".into(),
                    role: CaRole::Hub,
                    ttl: Duration::days(365),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            )
            .unwrap(),
    )
    .unwrap();
    let csr = ca.prepare(log, now, &rng).await.unwrap();
    let site2 = hub2
        .issue_intermediate(
            IntermediateParams {
                name: garrison_testbed::SITE.into(),
                role: CaRole::Site(garrison_testbed::SITE.into()),
                ttl: Duration::days(31),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Csr(VerifiedCsr::from_der(&csr).unwrap()),
            },
            now,
            &rng,
        )
        .unwrap();
    assert!(ca.install(log, site2.chain, now, &rng).await.unwrap());
    assert!(ca.activate(log, now).await.unwrap());

    // The agent, whose bootstrap anchor is still only the old root, renews: the attestor's
    // new server certificate and the new SVID chain to the new root through the cross-signed
    // certificate. Then it enrolls from scratch too.
    garrison_agent::renew_once(&config).await.unwrap();
    let (_, _, chain) = leaf_of(&config.svid_dir.join("svid.pem"));
    assert_eq!(chain.len(), 3, "leaf, new site CA, new hub CA");
    assert_eq!(chain[2], hub2.certificate(), "the new hub CA");
    openssl_verifies(&config.svid_dir).unwrap();
    garrison_agent::renew_once(&config).await.unwrap();
    garrison_agent::enroll_once(&config).await.unwrap();

    let steps: Vec<String> = log
        .query(&Query {
            kind: Some(RecordKind::Rotate),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.reasons[0].clone())
        .collect();
    assert_eq!(
        steps,
        [
            "root-refused",
            "root-announced",
            "root-announced",
            "prepared",
            "certified",
            "activated"
        ]
    );
    let refusals = site
        .records()
        .await
        .into_iter()
        .filter(|r| r.record.kind == RecordKind::Reject)
        .count();
    assert_eq!(refusals, 0, "no renewal or enrollment failed");
    site.stop().await;
}
