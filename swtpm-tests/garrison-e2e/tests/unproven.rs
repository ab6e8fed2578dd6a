//! Requests refused before their sender proved anything (no client certificate, a garbage
//! Begin, an unknown challenge) cannot fill the attestation log: each leaves a record of a few
//! hundred bytes (digest, size, peer, reason), never the request's bytes, and each peer only
//! so many records per minute; the rest are counted and summed up in one record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_log::{Decision, RecordKind, StoredRecord};
use garrison_proto::v1;
use v1::enrollment_client::EnrollmentClient;
use v1::renewal_client::RenewalClient;

const LARGE: usize = 8 * 1024 * 1024;

/// A CompleteRenewal of about 740 KiB (every field within its limit) for a challenge that
/// was never issued, sent without a client certificate.
fn large_renewal(i: u8) -> v1::CompleteRenewalRequest {
    v1::CompleteRenewalRequest {
        challenge_id: vec![i; 16],
        quote: Some(v1::Quote {
            attest: vec![i; 2048],
            signature: vec![i; 2048],
            pcrs: vec![],
        }),
        event_log: vec![i; 736 * 1024],
        csr: vec![i; 4096],
        ak_public: vec![i; 1024],
    }
}

/// A Begin whose EK certificate is 900 KiB of garbage.
fn garbage_begin(i: u8) -> v1::BeginRequest {
    v1::BeginRequest {
        ek_public: vec![i; 512],
        ek_certificate: vec![i; 900 * 1024],
        ..v1::BeginRequest::default()
    }
}

/// Bytes of evidence the log holds for `records`, event logs they name included.
async fn evidence_bytes(site: &Running, records: &[StoredRecord]) -> usize {
    let log = site.log().await;
    let mut total = 0;
    for record in records {
        let Some(digest) = &record.record.evidence_digest else {
            continue;
        };
        let bytes = log.evidence(digest).await.unwrap().unwrap();
        total += bytes.len();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(log_digest) = json["event_log_sha256"].as_str().filter(|d| !d.is_empty()) {
            total += log
                .evidence(log_digest)
                .await
                .unwrap()
                .map_or(0, |b| b.len());
        }
    }
    log.close().await;
    total
}

/// The SQLite database and its WAL, bytes (`None` on PostgreSQL).
fn database_bytes(site: &Running) -> Option<u64> {
    let path = site.database.strip_prefix("sqlite://")?;
    let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
    Some(size(path.to_owned()) + size(format!("{path}-wal")))
}

async fn send_unproven(site: &Running, n: u8) {
    let mut renewal = RenewalClient::new(site.channel(None)).max_encoding_message_size(LARGE);
    let mut enrollment = EnrollmentClient::new(site.channel(None)).max_encoding_message_size(LARGE);
    for i in 0..n {
        let status = renewal
            .complete_renewal(large_renewal(i))
            .await
            .unwrap_err();
        assert_eq!(
            status.metadata().get("garrison-reason").unwrap(),
            "challenge-unknown"
        );
        let status = enrollment.begin(garbage_begin(i)).await.unwrap_err();
        assert_eq!(
            status.metadata().get("garrison-reason").unwrap(),
            "malformed-request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unauthenticated_requests_leave_bounded_records() {
    let site = Running::start(&[good("node-1")], "").await;
    let before = database_bytes(&site);

    // 40 requests, 33 MiB in all.
    send_unproven(&site, 20).await;

    let records = site.records().await;
    let stored = evidence_bytes(&site, &records).await;
    assert!(
        stored < 10 * 1024,
        "{} records keep {stored} bytes of evidence",
        records.len()
    );
    assert!(
        records.len() <= 10,
        "one peer's records are rate-limited: {}",
        records.len()
    );
    if let (Some(before), Some(after)) = (before, database_bytes(&site)) {
        assert!(
            after.saturating_sub(before) < 1024 * 1024,
            "database grew from {before} to {after} bytes"
        );
    }
    // What a record keeps: the reason, and the request's size and digest, not its bytes.
    let log = site.log().await;
    for record in &records {
        assert_eq!(
            (record.record.kind, record.record.decision),
            (RecordKind::Reject, Decision::Deny)
        );
        let evidence = log
            .evidence(record.record.evidence_digest.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&evidence).unwrap();
        assert!(
            json["request_bytes"].as_u64().unwrap() > 700 * 1024,
            "{json}"
        );
        assert_eq!(json["request_sha256"].as_str().unwrap().len(), 64);
        assert!(
            json["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{json}"
        );
        assert!(record.record.reasons[1].len() < 1024);
    }
    log.close().await;

    // A node that proves itself is not affected by anyone's budget.
    garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap();
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beyond_the_budget_are_counted_in_a_summary_record() {
    let site = Running::start(&[good("node-1")], "").await;
    let attestor = site.attestor.clone().unwrap();
    send_unproven(&site, 10).await;
    let recorded = site.records().await.len();
    assert_eq!(recorded, 10, "one peer's burst");
    assert_eq!(attestor.unrecorded_refusals(), 10);

    assert_eq!(attestor.record_unrecorded_refusals().await.unwrap(), 10);
    let records = site.records().await;
    let summary = &records.last().unwrap().record;
    assert_eq!(summary.reasons[0], garrison_attestor::UNRECORDED_REFUSALS);
    assert!(
        summary.reasons[1].contains("127.0.0.1 10"),
        "{:?}",
        summary.reasons
    );
    assert_eq!(
        attestor.record_unrecorded_refusals().await.unwrap(),
        0,
        "nothing new to sum up, no record"
    );
    assert_eq!(site.records().await.len(), recorded + 1);

    // Still spent: nothing more is recorded one by one. A minute later (the injected clock)
    // the peer's budget has room again.
    send_unproven(&site, 1).await;
    assert_eq!(site.records().await.len(), recorded + 1);
    site.clock.advance(time::Duration::seconds(60));
    send_unproven(&site, 1).await;
    assert_eq!(site.records().await.len(), recorded + 3);
    assert_eq!(attestor.unrecorded_refusals(), 12);
    site.stop().await;
}

/// A real TPM from a trusted manufacturer that is never admitted (Secure Boot off) proves
/// it holds its TPM on every attempt, so its refusals keep their full evidence: they have a
/// budget of their own, per node, so that one such machine cannot fill the log either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_tpm_refused_again_and_again_is_recorded_within_its_nodes_budget() {
    let node = NodeSpec {
        name: "node-1",
        log: garrison_testbed::INSECURE_BOOT_LOG,
        ek_trusted: true,
    };
    let site = Running::start(&[node], "").await;
    let attestor = site.attestor.clone().unwrap();
    let config = site.agent_config("node-1");
    for _ in 0..24 {
        let err = garrison_agent::enroll_once(&config).await.unwrap_err();
        assert_eq!(reason(&err), "policy-deny");
    }
    let records = site.records().await;
    assert_eq!(records.len(), 20, "the node's burst");
    assert!(records.iter().all(|r| r.record.reasons[0] == "policy-deny"));
    assert_eq!(attestor.unrecorded_refusals(), 4);
    assert_eq!(attestor.record_unrecorded_refusals().await.unwrap(), 4);
    let records = site.records().await;
    let summary = &records.last().unwrap().record;
    assert_eq!(summary.reasons[0], garrison_attestor::UNRECORDED_REFUSALS);
    let node_id = records[0].record.node_id.clone().unwrap();
    assert!(
        summary.reasons[1].contains("of TPM holders or current nodes from 1 peer(s)")
            && summary.reasons[1].contains(&format!("node {} 4", &node_id[..32])),
        "{:?}",
        summary.reasons
    );
    // Ten minutes later (the injected clock) the node has room for one more record.
    site.clock.advance(time::Duration::minutes(10));
    garrison_agent::enroll_once(&config).await.unwrap_err();
    assert_eq!(site.records().await.len(), 22);
    site.stop().await;
}
