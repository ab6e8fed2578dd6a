//! Issue 12, item 6: a node whose TPM was cleared (TPM2_Clear zeroes resetCount and
//! restartCount and restarts the clock) is refused `clock-rollback` with the way out named,
//! stays refused however often it retries, and is admitted again only after an operator's
//! logged `node-reset`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::process::Command;

use common::*;
use garrison_attestor::Clock;
use garrison_log::{Decision, RecordKind};

/// Run a tpm2-tools command against `tcti`.
fn tpm2(tcti: &str, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", tcti)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_tpm_is_readmitted_only_after_the_operators_reset() {
    let mut site = Running::start(&[good("node-1")], "").await;
    // A reboot first, so the node's counters are above what a cleared TPM reports.
    let node = &mut site.nodes[0];
    node.tpm.restart().unwrap();
    garrison_testbed::replay_into(&node.tpm, garrison_testbed::GOOD_LOG).unwrap();
    garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap();
    let records = site.records().await;
    let node_id = records[0].record.node_id.clone().unwrap();
    let log = site.log().await;
    let before = log.node(&node_id).await.unwrap().unwrap();
    log.close().await;
    assert!(before.reset_count > 0, "{before:?}");

    // TPM2_Clear (lockout authorization, empty on swtpm). The EK is derived from the
    // endorsement seed, which Clear keeps: re-create it at its persistent handle, as a
    // provisioning script would. The PCRs keep the boot.
    let tcti = site.node("node-1").tpm.tcti();
    tpm2(&tcti, &["tpm2_clear", "-c", "l"]);
    let ek_pub = site.tmp.path().join("ek.pub");
    tpm2(
        &tcti,
        &[
            "tpm2_createek",
            "-c",
            "0x81010001",
            "-G",
            "rsa",
            "-u",
            ek_pub.to_str().unwrap(),
        ],
    );

    // Refused, and again: no way in without the operator.
    for _ in 0..2 {
        let err = garrison_agent::enroll_once(&site.agent_config("node-1"))
            .await
            .expect_err("a cleared TPM looks like a rollback");
        assert_eq!(reason(&err), "clock-rollback");
    }
    let records = site.records().await;
    assert_eq!(records.len(), 3, "{records:?}");
    for refused in &records[1..] {
        assert_eq!(refused.record.kind, RecordKind::Reject);
        assert!(refused.record.cert_serial.is_none());
        assert_eq!(refused.record.reasons[0], "clock-rollback");
        assert!(
            refused.record.reasons[1].contains(&format!(
                "garrison node reset --config <site.toml> --node {node_id}"
            )),
            "the refusal names the way out: {:?}",
            refused.record.reasons
        );
    }

    // The operator checked the machine and accepts the cleared TPM.
    let log = site.log().await;
    let appended = garrison_attestor::node_admin::reset_node(
        &log,
        Some(garrison_testbed::SITE),
        &node_id,
        Some("operator: TPM cleared during a BIOS update, checked on site"),
        site.clock.now(),
    )
    .await
    .unwrap();
    log.close().await;

    let enrolled = garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap();
    assert!(enrolled.spiffe_id.to_string().ends_with(&node_id[..32]));
    let records = site.records().await;
    let kinds: Vec<(RecordKind, Decision)> = records
        .iter()
        .map(|r| (r.record.kind, r.record.decision))
        .collect();
    assert_eq!(
        kinds,
        [
            (RecordKind::Enroll, Decision::Allow),
            (RecordKind::Reject, Decision::Deny),
            (RecordKind::Reject, Decision::Deny),
            (RecordKind::NodeReset, Decision::Allow),
            (RecordKind::Enroll, Decision::Allow),
        ]
    );
    assert_eq!(records[3].sequence, appended.sequence);
    assert_eq!(records[3].record.reasons[0], "tpm-cleared");
    let log = site.log().await;
    let now = log.node(&node_id).await.unwrap().unwrap();
    log.close().await;
    assert!(
        (now.reset_count, now.restart_count, now.clock)
            < (before.reset_count, before.restart_count, before.clock),
        "the node's state is now the cleared TPM's: {now:?}"
    );
    assert_ne!(now.current_serial, before.current_serial);
    site.stop().await;
}
