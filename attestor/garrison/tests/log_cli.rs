//! `garrison log query` as an operator uses it: read-only, a missing database refused (never
//! created), the node id it prints accepted back, `--until`, and a closed pipe (`| head`)
//! ending it quietly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use garrison_log::{AttestationLog, Decision, LogConfig, NewEntry, Record, RecordKind};
use time::OffsetDateTime;

fn garrison(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

async fn log_with(path: &std::path::Path, n: usize) -> OffsetDateTime {
    let log = AttestationLog::open(&LogConfig {
        url: format!("sqlite://{}", path.display()),
        origin: Some("garrison.example.org/site/site-a".into()),
        max_batch: 64,
        max_connections: 2,
    })
    .await
    .unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    for i in 0..n {
        log.append(NewEntry {
            record: Record {
                time: start + time::Duration::seconds(i as i64),
                site: "site-a".into(),
                kind: RecordKind::Enroll,
                node_id: Some(format!("{:064x}", i % 7)),
                spiffe_id: Some(format!("spiffe://example.org/site/site-a/node/{i}")),
                decision: Decision::Allow,
                reasons: vec![],
                policy_digest: None,
                evidence_digest: None,
                cert_serial: Some(format!("{:032x}", i + 1)),
                cert_not_after: None,
            },
            evidence: None,
            node_update: None,
        })
        .await
        .unwrap();
    }
    log.close().await;
    start
}

#[tokio::test]
async fn log_query_reads_only_takes_back_its_node_ids_and_survives_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    // A path that does not exist is refused, and stays absent.
    let missing = tmp.path().join("nothing-here.db");
    let url = format!("sqlite://{}", missing.display());
    let out = garrison(&["log", "query", "--db", &url]);
    assert!(!out.status.success());
    assert!(!missing.exists(), "a query created a database");

    let db = tmp.path().join("log.db");
    let start = log_with(&db, 3000).await;
    let url = format!("sqlite://{}", db.display());
    // The node id printed is taken back by --node; --until bounds the time.
    let out = garrison(&["log", "query", "--db", &url, "--limit", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let node = text
        .split("node ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(node.len(), 64, "{text}");
    let until = (start + time::Duration::seconds(70))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = garrison(&[
        "log", "query", "--db", &url, "--node", &node, "--until", &until,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Records 0, 7, …, 63 of the first 70 seconds: 10 of node 0.
    assert!(text.ends_with("10 record(s)\n"), "{text}");

    // `| head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(["log", "query", "--db", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("#0"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?} {stderr}", out.status);
}
