//! `garrison node reset`: the operator's logged way to accept a cleared TPM. The full story
//! (an enrolled swtpm cleared, refused, reset, admitted) is the e2e test
//! `cleared_tpm::a_cleared_tpm_is_readmitted_only_after_the_operators_reset`; here, the
//! command itself against a site's configuration and log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::process::{Command, Output};

use garrison_log::{
    AttestationLog, Decision, LogConfig, NewEntry, NodeState, Query, Record, RecordKind,
};
use garrison_testbed::{Site, free_local_address};

fn garrison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

async fn open(config: &garrison_attestor::SiteConfig) -> AttestationLog {
    AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: None,
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reset_logs_the_operators_reason_and_forgets_the_old_tpm_state() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::create(tmp.path(), time::OffsetDateTime::now_utc()).unwrap();
    let config = site
        .write_config(
            free_local_address().unwrap(),
            "sqlite://log.db",
            &[],
            "[insecure]\nallow_listed_ek_hashes = [\"00\"]\n",
        )
        .unwrap();
    let config_path = site.dir.join("site.toml");
    let config_arg = config_path.to_str().unwrap();
    let node = "ab".repeat(32);

    // A node that enrolled with counters (7, 3, 5000) and serial 01.
    let log = open(&config).await;
    let state = NodeState {
        node_id: node.clone(),
        ak_name: vec![0x00, 0x0b, 0x01],
        spiffe_id: format!("spiffe://example.org/site/{}/node/{node}", config.site),
        identity: "{}".into(),
        reset_count: 7,
        restart_count: 3,
        clock: 5_000,
        current_serial: Some("01".into()),
        updated: time::OffsetDateTime::now_utc(),
    };
    log.append(NewEntry {
        record: Record {
            time: time::OffsetDateTime::now_utc(),
            site: config.site.clone(),
            kind: RecordKind::Enroll,
            node_id: Some(node.clone()),
            spiffe_id: Some(state.spiffe_id.clone()),
            decision: Decision::Allow,
            reasons: vec![],
            policy_digest: None,
            evidence_digest: None,
            cert_serial: Some("01".into()),
            cert_not_after: None,
        },
        evidence: None,
        node_update: Some(state.clone()),
    })
    .await
    .unwrap();
    log.close().await;

    // Refused, nothing written: an unknown node, a reset without a reason.
    let unknown = garrison(&[
        "node",
        "reset",
        "--config",
        config_arg,
        "--node",
        &"cd".repeat(32),
        "--reason",
        "x",
    ]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("never enrolled"), "{stderr}");
    let no_reason = garrison(&[
        "node", "reset", "--config", config_arg, "--node", &node, "--reason", "  ",
    ]);
    assert!(!no_reason.status.success());
    let stderr = String::from_utf8_lossy(&no_reason.stderr);
    assert!(stderr.contains("says why"), "{stderr}");
    let log = open(&config).await;
    assert_eq!(log.query(&Query::default()).await.unwrap().len(), 1);
    log.close().await;

    // Accepted: upper-case hex is the same node.
    let reset = garrison(&[
        "node",
        "reset",
        "--config",
        config_arg,
        "--node",
        &node.to_uppercase(),
        "--reason",
        "alice: BIOS reset on site visit, board unchanged",
    ]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let stdout = String::from_utf8_lossy(&reset.stdout);
    assert!(stdout.contains("node-reset record #1"), "{stdout}");

    let log = open(&config).await;
    let records = log
        .query(&Query {
            kind: Some(RecordKind::NodeReset),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0].record;
    assert_eq!(record.node_id.as_deref(), Some(node.as_str()));
    assert_eq!(record.site, config.site);
    assert_eq!(
        record.reasons,
        [
            garrison_attestor::node_admin::TPM_CLEARED.to_owned(),
            "alice: BIOS reset on site visit, board unchanged".to_owned(),
            "discarded: resetCount 7, restartCount 3, clock 5000 ms, AK name 000b01, current \
             serial 01"
                .to_owned(),
        ]
    );
    let after = log.node(&node).await.unwrap().unwrap();
    assert_eq!(
        (after.reset_count, after.restart_count, after.clock),
        (0, 0, 0)
    );
    assert!(after.ak_name.is_empty());
    assert_eq!(after.current_serial, None);
    assert_eq!(
        after.spiffe_id, state.spiffe_id,
        "the node keeps its identity"
    );
    log.close().await;

    // The literal form: the log URL and the node, no configuration, no reason. The site
    // comes from the node's SPIFFE ID and the record says that no reason was given.
    let db = config.database.clone();
    let bare = garrison(&["node", "reset", "--db", &db, "--node", &node]);
    assert!(
        bare.status.success(),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );
    let log = open(&config).await;
    let records = log
        .query(&Query {
            kind: Some(RecordKind::NodeReset),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].record.site, config.site);
    assert_eq!(
        records[1].record.reasons[1],
        garrison_attestor::node_admin::NO_REASON_GIVEN
    );
    log.close().await;
    let neither = garrison(&["node", "reset", "--node", &node]);
    assert!(!neither.status.success());

    // `garrison log query --kind node-reset` finds it.
    let query = garrison(&["log", "query", "--db", &db, "--kind", "node-reset"]);
    assert!(query.status.success());
    let stdout = String::from_utf8_lossy(&query.stdout);
    assert!(stdout.contains("node-reset"), "{stdout}");
}
