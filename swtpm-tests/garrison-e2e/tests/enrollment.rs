//! Zero-touch enrollment, renewal and refusal end to end: real attestor, real agent code,
//! one swtpm per node carrying a real machine's boot log. The SVIDs are checked by openssl
//! and the `spiffe` crate, and every decision must be in the attestation log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_log::{Decision, RecordKind};

fn openssl_verify(bundle: &std::path::Path, svid: &std::path::Path) {
    for purpose in ["sslclient", "sslserver"] {
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(bundle)
            .arg("-untrusted")
            .arg(svid)
            .args(["-purpose", purpose])
            .arg(svid)
            .output()
            .expect("openssl is installed by the test command");
        assert!(
            out.status.success(),
            "openssl verify {purpose}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_renew_and_refuse_with_every_decision_logged() {
    let site = Running::start(
        &[
            good("node-1"),
            NodeSpec {
                name: "node-2",
                log: garrison_testbed::INSECURE_BOOT_LOG,
                ek_trusted: true,
            },
        ],
        "",
    )
    .await;

    // node-1 enrolls.
    let config = site.agent_config("node-1");
    let enrolled = garrison_agent::enroll_once(&config).await.unwrap();
    let svid = &enrolled.files.svid;
    let (serial, id, chain) = leaf_of(svid);
    assert_eq!(id, enrolled.spiffe_id);
    assert!(
        id.starts_with("spiffe://example.org/site/site-a/node/"),
        "{id}"
    );
    openssl_verify(&site.site.bundle_pem(), svid);
    let key_der = pem::parse(std::fs::read(&enrolled.files.key).unwrap())
        .unwrap()
        .into_contents();
    let parsed = spiffe::X509Svid::parse_from_der(&chain.concat(), &key_der).unwrap();
    assert_eq!(parsed.spiffe_id().to_string(), id);
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&enrolled.files.key)
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(key_mode, 0o600);

    let records = site.records().await;
    let record = records
        .iter()
        .find(|r| r.sequence == enrolled.log_sequence)
        .expect("issuance is in the log");
    assert_eq!(record.record.kind, RecordKind::Enroll);
    assert_eq!(record.record.decision, Decision::Allow);
    assert_eq!(record.record.spiffe_id.as_deref(), Some(id.as_str()));
    assert_eq!(record.record.cert_serial.as_deref(), Some(serial.as_str()));
    assert!(record.record.policy_digest.is_some() && record.record.evidence_digest.is_some());
    let (evidence, stored_log) = evidence_and_log(&site, record).await;
    assert_eq!(evidence["stage"], "enroll-complete");
    assert!(evidence["attest"].as_str().is_some_and(|a| a.len() > 100));
    assert_eq!(
        stored_log,
        std::fs::read(&config.event_log).unwrap(),
        "the node's event log is stored under the digest its evidence names"
    );

    // node-1 renews over mTLS with a fresh quote: a new certificate, same identity.
    let renewed = garrison_agent::renew_once(&config).await.unwrap();
    let (new_serial, new_id, _) = leaf_of(&renewed.files.svid);
    assert_eq!(new_id, id);
    assert_ne!(new_serial, serial);
    openssl_verify(&site.site.bundle_pem(), &renewed.files.svid);
    let records = site.records().await;
    let record = records
        .iter()
        .find(|r| r.sequence == renewed.log_sequence)
        .unwrap();
    assert_eq!(record.record.kind, RecordKind::Renew);
    assert_eq!(
        record.record.cert_serial.as_deref(),
        Some(new_serial.as_str())
    );
    assert_eq!(
        record.record.node_id,
        records
            .iter()
            .find(|r| r.sequence == enrolled.log_sequence)
            .unwrap()
            .record
            .node_id
    );

    // node-2 booted with Secure Boot off: refused by the strict policy, nothing written.
    let config2 = site.agent_config("node-2");
    let err = garrison_agent::enroll_once(&config2).await.unwrap_err();
    assert_eq!(reason(&err), "policy-deny");
    assert!(!config2.svid_dir.join("svid.pem").exists());
    let records = site.records().await;
    let reject = records
        .iter()
        .rev()
        .find(|r| r.record.kind == RecordKind::Reject)
        .expect("refusal is in the log");
    assert_eq!(reject.record.decision, Decision::Deny);
    assert_eq!(reject.record.reasons[0], "policy-deny");
    assert!(
        reject.record.reasons[1].contains("Secure Boot is off"),
        "{:?}",
        reject.record.reasons
    );
    assert!(reject.record.node_id.is_some() && reject.record.cert_serial.is_none());
    // A refusal keeps its evidence too, the (other) event log included.
    let (evidence, stored_log) = evidence_and_log(&site, reject).await;
    assert_eq!(evidence["stage"], "enroll-complete");
    assert_eq!(stored_log, std::fs::read(&config2.event_log).unwrap());
    site.stop().await;
}

/// A record's evidence (JSON) and the event log it names by digest, both from the log.
async fn evidence_and_log(
    site: &Running,
    record: &garrison_log::StoredRecord,
) -> (serde_json::Value, Vec<u8>) {
    let log = site.log().await;
    let digest = record.record.evidence_digest.as_deref().unwrap();
    let evidence = log.evidence(digest).await.unwrap().unwrap();
    let evidence: serde_json::Value = serde_json::from_slice(&evidence).unwrap();
    let log_digest = evidence["event_log_sha256"].as_str().unwrap();
    let stored_log = log.evidence(log_digest).await.unwrap().unwrap();
    (evidence, stored_log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ek_from_an_untrusted_manufacturer_is_refused_at_begin() {
    let site = Running::start(
        &[
            good("node-1"),
            NodeSpec {
                name: "rogue",
                log: garrison_testbed::GOOD_LOG,
                ek_trusted: false,
            },
        ],
        "",
    )
    .await;
    let err = garrison_agent::enroll_once(&site.agent_config("rogue"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ek-trust");
    let records = site.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.reasons[0], "ek-trust");
    site.stop().await;
}
