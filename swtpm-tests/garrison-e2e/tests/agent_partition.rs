//! An agent across a long partition: its SVID expired while the attestor was unreachable,
//! and the bundle it wrote is stale. It does not exit or wedge: it keeps trying (with
//! backoff), authenticates the attestor by its bootstrap anchors (never by the bundle it
//! wrote), and re-enrolls when the attestor is back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::time::Duration as StdDuration;

use common::*;
use garrison_agent::schedule::Backoff;
use garrison_ca::{KeyAlgorithm, SpiffeId, SubjectKey, SvidParams};
use garrison_log::RecordKind;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_svid_expired_while_cut_off_re_enrolls_when_the_attestor_is_back() {
    let mut site = Running::start(&[good("node-1")], "").await;
    let mut config = site.agent_config("node-1");
    config.backoff = Backoff::new(StdDuration::from_millis(50), StdDuration::from_millis(400));
    garrison_agent::enroll_once(&config).await.unwrap();
    let svid_dir = config.svid_dir.clone();
    let (_, id, _) = leaf_of(&svid_dir.join("svid.pem"));

    // What a long partition leaves: the SVID has expired (minutes ago: the testbed's CA is
    // minutes old), and a stale bundle.
    let expired = site
        .site
        .site_ca
        .issue_svid(
            SvidParams {
                spiffe_id: SpiffeId::parse(&id).unwrap(),
                ttl: Duration::minutes(1),
                max_ttl: Duration::minutes(1),
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            OffsetDateTime::now_utc() - Duration::minutes(4),
            &SystemRandom::new(),
        )
        .unwrap();
    std::fs::write(
        svid_dir.join("svid.pem"),
        garrison_ca::certificates_to_pem(&expired.chain),
    )
    .unwrap();
    std::fs::write(
        svid_dir.join("svid.key"),
        expired.key.unwrap().to_pkcs8_pem().expose(),
    )
    .unwrap();
    std::fs::write(svid_dir.join("bundle.pem"), "stale, not a certificate\n").unwrap();
    let stale = std::fs::read(svid_dir.join("svid.pem")).unwrap();

    // The attestor is unreachable when the agent starts.
    site.pause().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        garrison_agent::run(config, async {
            let _ = stopped.await;
        })
        .await
    });
    // It keeps trying while the attestor is away (it has not exited).
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert!(!agent.is_finished(), "the agent gave up while cut off");
    assert_eq!(std::fs::read(svid_dir.join("svid.pem")).unwrap(), stale);

    // The attestor is back: the agent enrolls from scratch.
    site.restart().await;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    while std::fs::read(svid_dir.join("svid.pem")).unwrap() == stale {
        assert!(std::time::Instant::now() < deadline, "never re-enrolled");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let (_, new_id, chain) = leaf_of(&svid_dir.join("svid.pem"));
    assert_eq!(new_id, id, "the same identity");
    let x509 = x509_parser::parse_x509_certificate(&chain[0]).unwrap().1;
    assert!(x509.validity().is_valid(), "a current SVID");
    // The bundle it wrote again is the bootstrap one.
    let bundle = std::fs::read_to_string(svid_dir.join("bundle.pem")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"));
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
    let enrolls = site
        .records()
        .await
        .iter()
        .filter(|r| r.record.kind == RecordKind::Enroll)
        .count();
    assert_eq!(
        enrolls, 2,
        "enrolled at first and again after the partition"
    );
    site.stop().await;
}
