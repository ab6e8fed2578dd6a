//! Storage behaviour of the attestation log, each test on SQLite and on PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestDb, at, count, entry, hold_writer_lock, install_poison_trigger, record};
use garrison_log::{
    AttestationLog, Backend, Decision, LogError, NewEntry, NodeReset, NodeState, NodeStatus,
    Precondition, PreconditionFailure, Query, Record, RecordKind, Revocation, RevocationTarget,
    evidence_digest, leaf_hash,
};
use sha2::{Digest, Sha256};

both_backends!(
    round_trip_with_all_fields,
    concurrent_appends_get_dense_distinct_sequences,
    group_commit_batches_queued_appends,
    appended_record_survives_reopen,
    node_state_is_written_with_its_record,
    evidence_is_stored_once_per_digest,
    query_filters_select_matching_records,
    revocation_by_serial_and_by_node,
    failed_batch_fails_every_waiter_and_leaves_no_trace,
    stored_leaf_hashes_match_the_documented_encoding,
    records_are_append_only,
    invalid_entries_are_refused_alone,
    node_status_answers_like_the_separate_lookups,
    blobs_are_stored_with_their_record_once,
    evidence_many_answers_as_evidence_does_for_each_digest,
    node_reset_forgets_the_cleared_tpms_state,
    an_allow_is_not_committed_once_its_precondition_fails,
    revocations_of_another_origin_stay_enforced,
    a_revocation_by_another_logs_writer_during_the_check_refuses_the_allow,
    a_writer_kept_waiting_for_a_lock_fails_its_batch_then_recovers,
);

fn full_record() -> Record {
    Record {
        time: at(1_700_000_000, 123_456),
        site: "site-1".into(),
        kind: RecordKind::Renew,
        node_id: Some("ab".repeat(32)),
        spiffe_id: Some("spiffe://example.org/site/site-1/node/n1".into()),
        decision: Decision::Allow,
        reasons: vec!["secure boot on".into(), "pcr7 \"golden\" ✓".into()],
        policy_digest: Some("cd".repeat(32)),
        evidence_digest: None,
        cert_serial: Some("0A1B2C".into()),
        cert_not_after: Some(at(1_700_086_400, 999_999)),
    }
}

/// A revocation at site-1, time 4 s.
fn revoke(target: RevocationTarget) -> Revocation {
    Revocation {
        time: at(4, 0),
        site: "site-1".into(),
        target,
        reasons: vec!["key compromise".into()],
        policy_digest: None,
    }
}

fn node_state(node: &str, serial: Option<&str>, clock: u64) -> NodeState {
    NodeState {
        node_id: node.to_owned(),
        ak_name: vec![0x00, 0x0b, 0xff, 0x10],
        spiffe_id: format!("spiffe://example.org/site/site-1/node/{node}"),
        identity: r#"{"manufacturer":"id:00001014"}"#.to_owned(),
        reset_count: 7,
        restart_count: 3,
        clock,
        current_serial: serial.map(str::to_owned),
        updated: at(1_700_000_000, 5),
    }
}

async fn round_trip_with_all_fields(db: TestDb) {
    let log = db.open(64).await;
    let evidence = b"quote + event log".to_vec();
    let node = node_state(&"ab".repeat(32), Some("0a1b2c"), 123_456_789);
    let new = NewEntry {
        record: full_record(),
        evidence: Some(evidence.clone()),
        node_update: Some(node.clone()),
    };
    let appended = log.append(new).await.unwrap();
    assert_eq!(appended.sequence, 0);

    let stored = log.query(&Query::default()).await.unwrap();
    assert_eq!(stored.len(), 1);
    let mut want = full_record();
    want.evidence_digest = Some(evidence_digest(&evidence));
    want.cert_serial = Some("0a1b2c".into()); // stored lowercase
    assert_eq!(stored[0].record, want);
    assert_eq!(stored[0].sequence, 0);
    assert_eq!(stored[0].leaf_hash, appended.leaf_hash);
    assert_eq!(
        log.evidence(&evidence_digest(&evidence)).await.unwrap(),
        Some(evidence)
    );
    assert_eq!(log.node(&node.node_id).await.unwrap(), Some(node));
    assert_eq!(log.node("unknown").await.unwrap(), None);

    // What `garrison log query --json` prints, and back.
    let json = serde_json::to_value(&stored[0]).unwrap();
    assert_eq!(json["record"]["time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(json["record"]["kind"], "renew");
    assert_eq!(json["leaf_hash"], hex::encode(appended.leaf_hash));
    let back: garrison_log::StoredRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, stored[0]);
    log.close().await;
}

async fn concurrent_appends_get_dense_distinct_sequences(db: TestDb) {
    let log = db.open(64).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let appended = log
                    .append(entry(record(
                        &format!("task-{i}"),
                        "n",
                        at(1_700_000_000, i),
                    )))
                    .await;
                (i, appended.unwrap())
            })
        })
        .collect();
    let mut by_sequence = std::collections::BTreeMap::new();
    for task in tasks {
        let (i, appended) = task.await.unwrap();
        assert!(
            by_sequence
                .insert(appended.sequence, (i, appended.leaf_hash))
                .is_none(),
            "sequence handed out twice"
        );
    }
    assert_eq!(
        by_sequence.keys().copied().collect::<Vec<_>>(),
        (0..200).collect::<Vec<u64>>()
    );

    let stored = log.query(&Query::default()).await.unwrap();
    assert_eq!(
        stored.iter().map(|s| s.sequence).collect::<Vec<_>>(),
        (0..200).collect::<Vec<u64>>()
    );
    for s in &stored {
        let (i, leaf) = by_sequence[&s.sequence];
        assert_eq!(
            s.record.site,
            format!("task-{i}"),
            "sequence {} answered to the wrong caller",
            s.sequence
        );
        assert_eq!(s.leaf_hash, leaf);
    }
    let stats = log.stats();
    assert_eq!(stats.records, 200);
    eprintln!(
        "{:?}: 200 concurrent appends in {} batches",
        db.backend, stats.batches
    );
    log.close().await;
}

/// Appends queued while the writer waits for a lock are committed together, at most
/// `max_batch` per transaction.
async fn group_commit_batches_queued_appends(db: TestDb) {
    let log = db.open(16).await;
    let mut side = db.side_connection().await;
    let lock = hold_writer_lock(&mut side).await;
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.append(entry(record("first", "n", at(1, 0)))).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await; // the writer is now stuck on `first`
    let queued: Vec<_> = (0..64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(entry(record("queued", "n", at(2, i)))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log.stats().batches,
        0,
        "nothing may be acknowledged while the lock is held"
    );
    lock.rollback().await.unwrap();

    assert_eq!(first.await.unwrap().unwrap().sequence, 0);
    let mut sequences = BTreeSet::new();
    for task in queued {
        sequences.insert(task.await.unwrap().unwrap().sequence);
    }
    assert_eq!(sequences, (1..=64).collect());
    let stats = log.stats();
    assert_eq!(stats.records, 65);
    assert_eq!(stats.largest_batch, 16);
    assert_eq!(
        stats.batches, 5,
        "first alone, then 64 queued in batches of 16: {stats:?}"
    );
    log.close().await;
}

/// The writer keeps its connection between batches. When the server ends that session (a
/// PostgreSQL restart, an administrator), the next batch begins on a fresh one instead of
/// failing: nothing was done on the dead session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reconnects_when_its_postgresql_session_is_ended() {
    common::run(Backend::Postgres, |db| async move {
        let log = db.open(8).await;
        log.append(entry(record("before", "n", at(1, 0))))
            .await
            .unwrap();
        let mut side = db.side_connection().await;
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut side)
        .await
        .unwrap();
        assert!(!ended.is_empty() && ended.iter().all(|e| *e), "{ended:?}");
        let after = log
            .append(entry(record("after", "n", at(2, 0))))
            .await
            .unwrap();
        assert_eq!(after.sequence, 1);
        let stats = log.stats();
        assert_eq!((stats.batches, stats.failed_batches), (2, 0), "{stats:?}");
        log.close().await;
    })
    .await;
}

// Tokio's clock can only be paused on a single-threaded runtime.
both_backends!(
    current_thread: a_commit_window_gathers_appends_that_arrive_while_it_is_open,
    a_lone_appender_pays_the_commit_window_rarely,
    status_reads_go_to_the_sqlite_writer_and_see_only_what_is_committed,
    a_precondition_is_judged_after_the_entries_before_it_in_its_batch,
);

/// A log with one record appended (so the writer has connected: it connects within a
/// timeout that a paused clock would fire at once), then a one-hour commit window and
/// tokio's clock paused, so that a window ends as soon as every task waits.
async fn warm_log_with_an_hour_window(db: &TestDb) -> AttestationLog {
    let log = db.open(16).await;
    log.append(entry(record("warm-up", "n", at(0, 0))))
        .await
        .unwrap();
    log.set_commit_window(Duration::from_secs(3600));
    tokio::time::pause();
    log
}

/// On this single-threaded runtime: lets an append just spawned be queued and taken by the
/// writer, which opens its window.
async fn until_the_writer_has_taken_it() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// On SQLite, `node_status` and `node_status_by_serial` are answered by the writer on its own
/// connection (whose page cache survives its commits), between batches: a read made while a
/// batch waits in its commit window is answered before that batch commits, without it. PostgreSQL
/// reads through the pool.
async fn status_reads_go_to_the_sqlite_writer_and_see_only_what_is_committed(db: TestDb) {
    let log = db.open(16).await;
    let issue = |serial: &str, second: i64| {
        let mut issued = record("site-1", "n1", at(second, 0));
        issued.cert_serial = Some(serial.into());
        NewEntry {
            record: issued,
            evidence: None,
            node_update: Some(node_state("n1", Some(serial), second.unsigned_abs())),
        }
    };
    log.append(issue("aa01", 1)).await.unwrap();
    let status = log.node_status("n1").await.unwrap();
    assert_eq!(status.node.unwrap().current_serial.as_deref(), Some("aa01"));
    let by_serial = log.node_status_by_serial("AA01").await.unwrap();
    assert_eq!(by_serial.node.map(|n| n.node_id).as_deref(), Some("n1"));
    let on_writer = match db.backend {
        Backend::Sqlite => 2,
        Backend::Postgres => 0,
    };
    assert_eq!(log.stats().status_reads_on_writer, on_writer);
    if db.backend == Backend::Postgres {
        log.close().await;
        return;
    }
    log.set_commit_window(Duration::from_secs(3600));
    tokio::time::pause();
    let renewal = tokio::spawn({
        let log = log.clone();
        async move { log.append(issue("aa02", 2)).await }
    });
    until_the_writer_has_taken_it().await;
    assert_eq!(log.stats().batches, 1, "the renewal waits in the window");
    // Answered inside the window: aa02 is not committed yet. (A read that waited for the
    // batch would find aa02 current.) Only this one read is: while it runs every task waits,
    // so the paused clock moves to the window's end and the batch commits right after.
    let during = log.node_status_by_serial("aa02").await.unwrap();
    assert_eq!(during.node, None, "{during:?}");
    assert_eq!(renewal.await.unwrap().unwrap().sequence, 1);
    let after = log.node_status_by_serial("aa02").await.unwrap();
    assert_eq!(after.node.map(|n| n.node_id).as_deref(), Some("n1"));
    let stats = log.stats();
    assert_eq!((stats.batches, stats.status_reads_on_writer), (2, 4));
    log.close().await;
}

/// An append arriving after the writer took the first one, while the commit window is open,
/// shares its transaction. Tokio's clock is paused once the log is open, so the window (an
/// hour) ends as soon as every task waits, not after a real hour.
async fn a_commit_window_gathers_appends_that_arrive_while_it_is_open(db: TestDb) {
    let log = warm_log_with_an_hour_window(&db).await;
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.append(entry(record("first", "n", at(1, 0)))).await }
    });
    until_the_writer_has_taken_it().await;
    assert_eq!(
        log.stats().batches,
        1,
        "the first append waits in the window"
    );
    let second = log
        .append(entry(record("second", "n", at(2, 0))))
        .await
        .unwrap();
    assert_eq!(first.await.unwrap().unwrap().sequence, 1);
    assert_eq!(second.sequence, 2);
    let stats = log.stats();
    assert_eq!(
        (stats.batches, stats.records),
        (2, 3),
        "the warm-up, then both in one batch: {stats:?}"
    );
    assert_eq!(
        (stats.commit_windows, stats.commit_windows_gathered),
        (1, 1)
    );
    log.close().await;
}

/// One caller appending one record after another gathers nothing in a window: after the
/// first, windows are skipped for 64 batches, then tried once again.
async fn a_lone_appender_pays_the_commit_window_rarely(db: TestDb) {
    let log = warm_log_with_an_hour_window(&db).await;
    for i in 0..70 {
        log.append(entry(record("lone", "n", at(1, i))))
            .await
            .unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.batches, 71);
    assert_eq!(
        (stats.commit_windows, stats.commit_windows_gathered),
        (2, 0),
        "two windows in 70 appends: the first, and the one after 64 skipped"
    );
    log.close().await;
}

async fn appended_record_survives_reopen(db: TestDb) {
    let log = db.open(8).await;
    let appended = log.append(entry(full_record())).await.unwrap();
    // No close: a returned append is durable whatever happens to this handle. (Dropping the
    // handle stops the writer; the database has the record already.)
    drop(log);
    let reopened = db.open(8).await;
    let stored = reopened.query(&Query::default()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].leaf_hash, appended.leaf_hash);
    assert_eq!(stored[0].record.site, "site-1");
    let next = reopened
        .append(entry(record("again", "n", at(3, 0))))
        .await
        .unwrap();
    assert_eq!(next.sequence, 1, "sequences continue across reopen");
    reopened.close().await;
}

async fn node_state_is_written_with_its_record(db: TestDb) {
    let log = db.open(8).await;
    let node = "ee".repeat(32);
    let enrolled = node_state(&node, Some("01"), 1_000);
    let mut enroll = record("site-1", &node, at(10, 0));
    enroll.cert_serial = Some("01".into());
    log.append(NewEntry {
        record: enroll,
        evidence: None,
        node_update: Some(enrolled.clone()),
    })
    .await
    .unwrap();
    assert_eq!(log.node(&node).await.unwrap(), Some(enrolled.clone()));
    assert_eq!(
        log.node_by_current_serial("01").await.unwrap(),
        Some(enrolled.clone())
    );
    assert_eq!(log.node_by_current_serial("02").await.unwrap(), None);

    // A renewal whose batch fails must not move the node's counters.
    install_poison_trigger(&db).await;
    let mut renewed = node_state(&node, Some("02"), 2_000);
    renewed.reset_count = 8;
    let mut renew = record("poison", &node, at(11, 0));
    renew.kind = RecordKind::Renew;
    let err = log
        .append(NewEntry {
            record: renew.clone(),
            evidence: None,
            node_update: Some(renewed.clone()),
        })
        .await;
    assert!(matches!(err, Err(LogError::Append { .. })), "{err:?}");
    assert_eq!(log.node(&node).await.unwrap(), Some(enrolled));

    renew.site = "site-1".into();
    let appended = log
        .append(NewEntry {
            record: renew,
            evidence: None,
            node_update: Some(renewed.clone()),
        })
        .await
        .unwrap();
    assert_eq!(appended.sequence, 1);
    assert_eq!(log.node(&node).await.unwrap(), Some(renewed));
    let mut side = db.side_connection().await;
    let last = count(&mut side, "SELECT last_sequence FROM nodes").await;
    assert_eq!(last, 1, "node state points at the record that changed it");
    log.close().await;
}

async fn evidence_is_stored_once_per_digest(db: TestDb) {
    let log = db.open(8).await;
    let evidence = vec![0x5a; 1024];
    let digest = hex::encode(Sha256::digest(&evidence));
    for i in 0..3 {
        let new = NewEntry {
            record: record("site-1", "n", at(20, i)),
            evidence: Some(evidence.clone()),
            node_update: None,
        };
        log.append(new).await.unwrap();
    }
    // Same evidence, given with its (uppercase) digest.
    let mut with_digest = record("site-1", "n", at(21, 0));
    with_digest.evidence_digest = Some(digest.to_uppercase());
    log.append(NewEntry {
        record: with_digest,
        evidence: Some(evidence.clone()),
        node_update: None,
    })
    .await
    .unwrap();

    let mut side = db.side_connection().await;
    assert_eq!(count(&mut side, "SELECT COUNT(*) FROM evidence").await, 1);
    let stored = log.query(&Query::default()).await.unwrap();
    assert!(
        stored
            .iter()
            .all(|s| s.record.evidence_digest.as_deref() == Some(digest.as_str()))
    );
    assert_eq!(log.evidence(&digest).await.unwrap(), Some(evidence.clone()));
    assert_eq!(
        log.evidence(&digest.to_uppercase()).await.unwrap(),
        Some(evidence)
    );
    assert_eq!(log.evidence(&"00".repeat(32)).await.unwrap(), None);
    log.close().await;
}

async fn query_filters_select_matching_records(db: TestDb) {
    let log = db.open(8).await;
    let cases = [
        ("n1", RecordKind::Enroll, Decision::Allow, 100, "p1"),
        ("n1", RecordKind::Renew, Decision::Allow, 200, "p1"),
        ("n2", RecordKind::Reject, Decision::Deny, 300, "p2"),
        ("n2", RecordKind::Enroll, Decision::Allow, 400, "p2"),
        ("n3", RecordKind::Renew, Decision::Deny, 500, "p1"),
    ];
    for (node, kind, decision, seconds, policy) in cases {
        let mut r = record("site-1", node, at(seconds, 0));
        r.kind = kind;
        r.decision = decision;
        r.policy_digest = Some(policy.into());
        log.append(entry(r)).await.unwrap();
    }
    let sequences = |q: Query| {
        let log = log.clone();
        async move {
            log.query(&q)
                .await
                .unwrap()
                .iter()
                .map(|s| s.sequence)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(sequences(Query::default()).await, [0, 1, 2, 3, 4]);
    assert_eq!(
        sequences(Query {
            node_id: Some("n2".into()),
            ..Query::default()
        })
        .await,
        [2, 3]
    );
    assert_eq!(
        sequences(Query {
            since: Some(at(300, 0)),
            ..Query::default()
        })
        .await,
        [2, 3, 4]
    );
    assert_eq!(
        sequences(Query {
            until: Some(at(300, 0)),
            ..Query::default()
        })
        .await,
        [0, 1]
    );
    assert_eq!(
        sequences(Query {
            since: Some(at(200, 1)),
            until: Some(at(400, 1)),
            ..Query::default()
        })
        .await,
        [2, 3]
    );
    assert_eq!(
        sequences(Query {
            kind: Some(RecordKind::Renew),
            ..Query::default()
        })
        .await,
        [1, 4]
    );
    assert_eq!(
        sequences(Query {
            decision: Some(Decision::Deny),
            ..Query::default()
        })
        .await,
        [2, 4]
    );
    assert_eq!(
        sequences(Query {
            policy_digest: Some("p2".into()),
            ..Query::default()
        })
        .await,
        [2, 3]
    );
    let spiffe = "spiffe://example.org/site/site-1/node/n3".to_owned();
    assert_eq!(
        sequences(Query {
            spiffe_id: Some(spiffe),
            ..Query::default()
        })
        .await,
        [4]
    );
    let combined = Query {
        node_id: Some("n1".into()),
        kind: Some(RecordKind::Enroll),
        decision: Some(Decision::Allow),
        ..Query::default()
    };
    assert_eq!(sequences(combined).await, [0]);
    assert_eq!(
        sequences(Query {
            limit: Some(2),
            ..Query::default()
        })
        .await,
        [0, 1]
    );
    assert_eq!(
        sequences(Query {
            kind: Some(RecordKind::Rotate),
            ..Query::default()
        })
        .await,
        Vec::<u64>::new()
    );
    // The newest match, among the kinds given (any kind without), limit ignored.
    let latest = |q: Query, kinds: &'static [RecordKind]| {
        let log = log.clone();
        async move { log.latest(&q, kinds).await.unwrap().map(|s| s.sequence) }
    };
    let n2 = || Query {
        node_id: Some("n2".into()),
        limit: Some(1),
        ..Query::default()
    };
    assert_eq!(latest(n2(), &[]).await, Some(3));
    assert_eq!(latest(n2(), &[RecordKind::Reject]).await, Some(2));
    assert_eq!(
        latest(n2(), &[RecordKind::Reject, RecordKind::Renew]).await,
        Some(2)
    );
    assert_eq!(latest(n2(), &[RecordKind::Renew]).await, None);
    assert_eq!(
        latest(Query::default(), &[RecordKind::Renew]).await,
        Some(4)
    );
    let p1_before_4 = Query {
        policy_digest: Some("p1".into()),
        until: Some(at(500, 0)),
        ..Query::default()
    };
    assert_eq!(latest(p1_before_4, &[]).await, Some(1));
    log.close().await;
}

async fn revocation_by_serial_and_by_node(db: TestDb) {
    let log = db.open(8).await;
    // n1 enrolled with serial aa01, renewed to aa02 (only seen in its node state).
    let mut enroll = record("site-1", "n1", at(1, 0));
    enroll.cert_serial = Some("aa01".into());
    log.append(NewEntry {
        record: enroll,
        evidence: None,
        node_update: Some(node_state("n1", Some("aa01"), 1)),
    })
    .await
    .unwrap();
    let mut renew = record("site-1", "n1", at(2, 0));
    renew.kind = RecordKind::Renew;
    log.append(NewEntry {
        record: renew,
        evidence: None,
        node_update: Some(node_state("n1", Some("AA02"), 2)),
    })
    .await
    .unwrap();
    let mut other = record("site-1", "n2", at(3, 0));
    other.cert_serial = Some("bb01".into());
    log.append(entry(other)).await.unwrap();

    for serial in ["aa01", "aa02", "bb01", "cc01"] {
        assert!(
            !log.is_revoked(serial).await.unwrap(),
            "{serial} revoked too early"
        );
    }
    let by_serial = log
        .revoke(revoke(RevocationTarget::Serial("CC01".into())))
        .await
        .unwrap();
    assert!(log.is_revoked("cc01").await.unwrap());
    assert!(!log.is_revoked("aa01").await.unwrap());
    assert!(!log.is_node_revoked("n1").await.unwrap());

    let by_node = log
        .revoke(revoke(RevocationTarget::Node("n1".into())))
        .await
        .unwrap();
    assert_eq!((by_serial.sequence, by_node.sequence), (3, 4));
    assert!(log.is_node_revoked("n1").await.unwrap());
    assert!(
        log.is_revoked("aa01").await.unwrap(),
        "serial from n1's enroll record"
    );
    assert!(log.is_revoked("AA02").await.unwrap(), "n1's current serial");
    assert!(!log.is_revoked("bb01").await.unwrap(), "n2 is not revoked");

    let revokes = log
        .query(&Query {
            kind: Some(RecordKind::Revoke),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(revokes.len(), 2);
    assert_eq!(revokes[0].record.cert_serial.as_deref(), Some("cc01"));
    assert_eq!(revokes[1].record.node_id.as_deref(), Some("n1"));
    assert!(revokes.iter().all(|s| s.record.decision == Decision::Deny));
    assert!(matches!(
        log.is_revoked("not hex").await,
        Err(LogError::InvalidEntry { .. })
    ));
    log.close().await;
}

/// One bad entry fails its whole batch: every waiter of that batch gets the error, nothing of
/// the batch is stored, and the sequence numbers stay dense.
async fn failed_batch_fails_every_waiter_and_leaves_no_trace(db: TestDb) {
    let log = db.open(64).await;
    log.append(entry(record("before", "n", at(1, 0))))
        .await
        .unwrap();
    install_poison_trigger(&db).await;

    let mut side = db.side_connection().await;
    let lock = hold_writer_lock(&mut side).await;
    let blocker = tokio::spawn({
        let log = log.clone();
        async move { log.append(entry(record("blocker", "n", at(2, 0)))).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut batch = Vec::new();
    for i in 0..11 {
        let site = if i == 5 { "poison" } else { "innocent" };
        let log = log.clone();
        let new = NewEntry {
            record: record(site, &format!("node-{i}"), at(3, i)),
            evidence: Some(format!("evidence {i}").into_bytes()),
            node_update: Some(node_state(&format!("node-{i}"), None, 1)),
        };
        batch.push(tokio::spawn(async move { log.append(new).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();

    assert_eq!(blocker.await.unwrap().unwrap().sequence, 1);
    for task in batch {
        match task.await.unwrap() {
            Err(LogError::Append { batch_size: 11, .. }) => {}
            other => panic!("every waiter of the poisoned batch must get its error, got {other:?}"),
        }
    }
    let stats = log.stats();
    assert_eq!(
        (stats.failed_batches, stats.failed_records),
        (1, 11),
        "{stats:?}"
    );
    let sites: Vec<_> = log
        .query(&Query::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record.site)
        .collect();
    assert_eq!(sites, ["before", "blocker"]);
    assert_eq!(count(&mut side, "SELECT COUNT(*) FROM evidence").await, 0);
    assert_eq!(count(&mut side, "SELECT COUNT(*) FROM nodes").await, 0);
    let after = log
        .append(entry(record("after", "n", at(4, 0))))
        .await
        .unwrap();
    assert_eq!(after.sequence, 2, "a failed batch leaves no gap");
    log.close().await;
}

/// Recomputes leaf hashes from the encoding documented in the crate (written out by hand
/// here, not through the crate's serializer).
async fn stored_leaf_hashes_match_the_documented_encoding(db: TestDb) {
    let log = db.open(8).await;
    log.append(entry(record("s1", "ab", at(1_700_000_000, 0))))
        .await
        .unwrap();
    let evidence = b"ev".to_vec();
    log.append(NewEntry {
        record: full_record(),
        evidence: Some(evidence.clone()),
        node_update: None,
    })
    .await
    .unwrap();
    let stored = log.query(&Query::default()).await.unwrap();

    let first = concat!(
        r#"{"v":1,"sequence":0,"time":1700000000000000,"site":"s1","kind":"enroll","node_id":"ab","#,
        r#""spiffe_id":"spiffe://example.org/site/s1/node/ab","decision":"allow","reasons":[],"#,
        r#""policy_digest":null,"evidence_digest":null,"cert_serial":null,"cert_not_after":null}"#
    );
    let second = format!(
        concat!(
            r#"{{"v":1,"sequence":1,"time":1700000000123456,"site":"site-1","kind":"renew","node_id":"{node}","#,
            r#""spiffe_id":"spiffe://example.org/site/site-1/node/n1","decision":"allow","#,
            r#""reasons":["secure boot on","pcr7 \"golden\" ✓"],"policy_digest":"{policy}","#,
            r#""evidence_digest":"{evidence}","cert_serial":"0a1b2c","cert_not_after":1700086400999999}}"#
        ),
        node = "ab".repeat(32),
        policy = "cd".repeat(32),
        evidence = hex::encode(Sha256::digest(&evidence)),
    );
    for (stored, canonical) in stored.iter().zip([first.to_owned(), second]) {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(canonical.as_bytes());
        let want: [u8; 32] = hasher.finalize().into();
        assert_eq!(
            stored.leaf_hash, want,
            "leaf {} differs from the documented encoding",
            stored.sequence
        );
        assert_eq!(leaf_hash(stored.sequence, &stored.record).unwrap(), want);
    }
    // Pinned: changing the encoding changes this and needs a new version number.
    assert_eq!(
        hex::encode(stored[0].leaf_hash),
        "96a11c3f7e7aa601c8566b484c08ca69af9cc78b1981ad82f0622cf48ea2bf4f"
    );
    log.close().await;
}

async fn records_are_append_only(db: TestDb) {
    let log = db.open(8).await;
    log.append(entry(record("s1", "n", at(1, 0))))
        .await
        .unwrap();
    let mut side = db.side_connection().await;
    let update = sqlx::query("UPDATE records SET site = 'forged'")
        .execute(&mut side)
        .await;
    assert!(update.is_err(), "records must not be updatable");
    let delete = sqlx::query("DELETE FROM records").execute(&mut side).await;
    assert!(delete.is_err(), "records must not be deletable");
    assert_eq!(
        log.query(&Query::default()).await.unwrap()[0].record.site,
        "s1"
    );
    log.close().await;
}

/// Malformed entries are refused before they can fail a batch shared with others.
async fn invalid_entries_are_refused_alone(db: TestDb) {
    let log = db.open(8).await;
    let mut revoke = record("s1", "n", at(1, 0));
    revoke.kind = RecordKind::Revoke;
    let mut wrong_digest = record("s1", "n", at(1, 0));
    wrong_digest.evidence_digest = Some("00".repeat(32));
    let mut bad_serial = record("s1", "n", at(1, 0));
    bad_serial.cert_serial = Some("0x12".into());
    let refused = [
        entry(revoke),
        NewEntry {
            record: wrong_digest.clone(),
            evidence: Some(b"other".to_vec()),
            node_update: None,
        },
        entry(wrong_digest),
        NewEntry {
            record: record("s1", "n", at(1, 0)),
            evidence: None,
            node_update: Some(node_state("m", None, 1)),
        },
        NewEntry {
            record: record("s1", "n", at(1, 0)),
            evidence: None,
            node_update: Some(node_state("n", None, u64::MAX)),
        },
        entry(bad_serial),
    ];
    for new in refused {
        let result = log.append(new.clone()).await;
        assert!(
            matches!(result, Err(LogError::InvalidEntry { .. })),
            "{new:?} gave {result:?}"
        );
    }
    assert_eq!(
        log.stats().batches + log.stats().failed_batches,
        0,
        "nothing reached the writer"
    );
    assert_eq!(
        log.append(entry(record("s1", "n", at(1, 0))))
            .await
            .unwrap()
            .sequence,
        0
    );
    log.close().await;
}

#[tokio::test]
async fn closed_log_refuses_appends() {
    common::run(Backend::Sqlite, |db| async move {
        let log = db.open(8).await;
        let clone = log.clone();
        log.close().await;
        let result = clone.append(entry(record("s1", "n", at(1, 0)))).await;
        assert!(matches!(result, Err(LogError::WriterGone)), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn open_rejects_bad_configs() {
    let config = |url: &str, max_batch, max_connections| garrison_log::LogConfig {
        url: url.into(),
        origin: None,
        max_batch,
        max_connections,
    };
    let err = garrison_log::AttestationLog::open(&config("mysql://x/y", 8, 4))
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::UnsupportedUrl { .. }), "{err:?}");
    let err = garrison_log::AttestationLog::open(&config("sqlite:///tmp/x.db", 0, 4))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LogError::Config { field: "max_batch" }),
        "{err:?}"
    );
    let err = garrison_log::AttestationLog::open(&config("sqlite:///nonexistent-dir/x.db", 8, 4))
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::CreateDatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent-dir/x.db"), "{err}");
    // A PostgreSQL server that is not there: a clear error naming where (never the
    // password), after the connect timeout rather than sqlx's silent 30 s.
    let err = garrison_log::AttestationLog::open(&config(
        "postgres://garrison:s3cret@127.0.0.1:1/log",
        8,
        4,
    ))
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LogError::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains("postgres://127.0.0.1:1/log") && !text.contains("s3cret"),
        "{text}"
    );
    let err = garrison_log::AttestationLog::open_read_only(
        "postgres://garrison:s3cret@127.0.0.1:1/log",
        None,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, LogError::Unreachable { .. }), "{err:?}");
    let debug = format!(
        "{:?}",
        config("postgres://garrison:s3cret@db:5432/log", 8, 4)
    );
    assert!(
        !debug.contains("s3cret") && debug.contains("garrison:***@db"),
        "{debug}"
    );
}

/// `node_status` / `node_status_by_serial` (one query each) give the same answers as
/// `node` + `is_node_revoked` and `node_by_current_serial` + `is_revoked`, before and after
/// revocations.
async fn node_status_answers_like_the_separate_lookups(db: TestDb) {
    let log = db.open(8).await;
    async fn check(log: &AttestationLog, step: &str) {
        for node in ["n1", "n2", "unknown"] {
            let status = log.node_status(node).await.unwrap();
            let expected = NodeStatus {
                node: log.node(node).await.unwrap(),
                revoked: log.is_node_revoked(node).await.unwrap(),
            };
            assert_eq!(status, expected, "{step}: node {node}");
        }
        for serial in ["aa01", "AA02", "bb01", "cc01"] {
            let status = log.node_status_by_serial(serial).await.unwrap();
            let expected = NodeStatus {
                node: log.node_by_current_serial(serial).await.unwrap(),
                revoked: log.is_revoked(serial).await.unwrap(),
            };
            assert_eq!(status, expected, "{step}: serial {serial}");
        }
    }
    // n1 enrolled with aa01 and renewed to aa02; n2 holds bb01.
    for (node, serial, second) in [("n1", "aa01", 1), ("n1", "aa02", 2), ("n2", "bb01", 3)] {
        let mut issued = record("site-1", node, at(second, 0));
        issued.cert_serial = Some(serial.into());
        log.append(NewEntry {
            record: issued,
            evidence: None,
            node_update: Some(node_state(node, Some(serial), second.unsigned_abs())),
        })
        .await
        .unwrap();
    }
    check(&log, "before revocations").await;
    let n1 = log.node_status_by_serial("aa02").await.unwrap();
    assert_eq!(n1.node.map(|n| n.node_id).as_deref(), Some("n1"));
    assert!(!n1.revoked);
    let superseded = log.node_status_by_serial("aa01").await.unwrap();
    assert_eq!(
        superseded.node, None,
        "aa01 is no longer n1's current serial"
    );
    log.revoke(revoke(RevocationTarget::Serial("bb01".into())))
        .await
        .unwrap();
    check(&log, "after revoking bb01").await;
    assert!(log.node_status_by_serial("bb01").await.unwrap().revoked);
    assert!(!log.node_status("n2").await.unwrap().revoked);
    log.revoke(revoke(RevocationTarget::Node("n1".into())))
        .await
        .unwrap();
    check(&log, "after revoking n1").await;
    assert!(log.node_status("n1").await.unwrap().revoked);
    assert!(log.node_status_by_serial("aa02").await.unwrap().revoked);
    assert!(matches!(
        log.node_status_by_serial("not hex").await,
        Err(LogError::InvalidEntry { .. })
    ));
    log.close().await;
}

/// Blobs appended with a record are stored in its transaction, once per digest, and are
/// readable by their SHA-256 like any evidence.
async fn blobs_are_stored_with_their_record_once(db: TestDb) {
    let log = db.open(8).await;
    let blob = vec![0x42; 19 * 1024];
    let blob_digest = evidence_digest(&blob);
    for i in 0..3 {
        let new = NewEntry {
            record: record("site-1", "n", at(30, i)),
            evidence: Some(
                format!("{{\"event_log_sha256\":\"{blob_digest}\",\"i\":{i}}}").into_bytes(),
            ),
            node_update: None,
        };
        log.append_with_blobs(new, vec![blob.clone()])
            .await
            .unwrap();
    }
    let mut side = db.side_connection().await;
    // Three distinct evidence documents and the one blob they all name.
    assert_eq!(count(&mut side, "SELECT COUNT(*) FROM evidence").await, 4);
    assert_eq!(log.evidence(&blob_digest).await.unwrap(), Some(blob));
    log.close().await;
}

/// `evidence_many` over more digests than one statement takes: every digest asked, in any
/// case, repeated or missing, gets exactly what `evidence` answers for it (missing ones are
/// absent from the map), including a row stored under an uppercase digest (which `evidence`,
/// asking for the lowercase form, does not find).
async fn evidence_many_answers_as_evidence_does_for_each_digest(db: TestDb) {
    let log = db.open(8).await;
    assert!(log.evidence_many(&[]).await.unwrap().is_empty());
    // 1,203 blobs: more digests than several statements take (100 each), and not a multiple.
    let blobs: Vec<Vec<u8>> = (0..1203)
        .map(|i| format!("blob {i}").into_bytes())
        .collect();
    let digests: Vec<String> = blobs.iter().map(|b| evidence_digest(b)).collect();
    let new = NewEntry {
        record: record("site-1", "n", at(40, 0)),
        evidence: Some(b"the record's own evidence".to_vec()),
        node_update: None,
    };
    log.append_with_blobs(new, blobs.clone()).await.unwrap();
    let upper_stored = evidence_digest(b"stored under an uppercase digest").to_uppercase();
    let mut side = db.side_connection().await;
    sqlx::query("INSERT INTO evidence (digest, bytes) VALUES ($1, $2)")
        .bind(upper_stored.clone())
        .bind(b"stored under an uppercase digest".to_vec())
        .execute(&mut side)
        .await
        .unwrap();
    let missing = ["00".repeat(32), "FF".repeat(32), "not even hex".to_owned()];
    let mut asked = digests.clone();
    asked.push(digests[0].clone()); // the same digest twice
    asked.push(digests[1].to_uppercase()); // and in uppercase, beside its lowercase form
    asked.push(digests[1200].to_uppercase());
    asked.extend(missing.iter().cloned());
    asked.push(upper_stored.clone());
    asked.push(upper_stored.to_ascii_lowercase());
    let found = log.evidence_many(&asked).await.unwrap();
    for digest in &asked {
        assert_eq!(
            found.get(digest),
            log.evidence(digest).await.unwrap().as_ref(),
            "{digest}"
        );
    }
    assert_eq!(
        found.len(),
        1203 + 2,
        "each digest held, and two uppercase spellings"
    );
    assert_eq!(found[&digests[1].to_uppercase()], blobs[1]);
    assert_eq!(found[&digests[1202]], blobs[1202]);
    for absent in missing.iter().chain([&upper_stored]) {
        assert!(!found.contains_key(absent), "{absent}");
    }
    // An uppercase digest alone, as `evidence` takes it.
    let one = log
        .evidence_many(&[digests[7].to_uppercase()])
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[&digests[7].to_uppercase()], blobs[7]);
    log.close().await;
}

/// SQLite: the WAL is copied into the database file and started over in the background,
/// long before the writer's own checkpoint (16,000 pages) would run.
///
/// About 12,000 pages of records go in, in 12 paced rounds (a 16 KiB blob per record, so each
/// takes a few pages of its own). Without the background checkpointer nothing would be copied
/// (12,000 < 16,000): the database file would stay at its empty size and the WAL file would
/// hold every page. With it, the database file holds the records and the WAL file stays
/// below what was written, which it can only do if the WAL was started over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_and_restarted_in_the_background() {
    common::run(Backend::Sqlite, |db| async move {
        let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
        let log = db.open(64).await;
        let empty_db_bytes = std::fs::metadata(&path).unwrap().len();
        const PAGE: u64 = 4096;
        const ROUNDS: u64 = 12;
        const PER_ROUND: u64 = 250; // × ≥ 4 pages each ≈ 1,000 pages a round
        for round in 0..ROUNDS {
            let tasks: Vec<_> = (0..PER_ROUND)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let n = round * PER_ROUND + i;
                        // Distinct per record, so that none is stored only once.
                        let blob: Vec<u8> = n.to_le_bytes().iter().cycle().take(16 * 1024).copied().collect();
                        let time = at(1, i64::try_from(n).unwrap());
                        log.append_with_blobs(entry(record("wal", &format!("n{n}"), time)), vec![blob])
                            .await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Long enough for a last pass after the final commit.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let written = ROUNDS * PER_ROUND * 4 * PAGE;
        let db_bytes = std::fs::metadata(&path).unwrap().len();
        let wal_bytes = std::fs::metadata(format!("{path}-wal")).unwrap().len();
        let stats = log.stats();
        assert!(stats.wal_checkpoints > 0, "{stats:?}");
        assert_eq!(stats.failed_wal_checkpoints, 0, "{stats:?}");
        assert!(
            db_bytes > empty_db_bytes + written / 2,
            "the records were copied into the database file: {db_bytes} bytes (empty: {empty_db_bytes}, written ≥ {written})"
        );
        assert!(
            wal_bytes < written / 2,
            "the WAL was started over: {wal_bytes} bytes after ≥ {written} written"
        );
        log.close().await;
    })
    .await;
}

/// SQLite: under continuous appends (no pause in which a passive checkpoint could catch up
/// by chance) the WAL is still started over, because the checkpointer takes the writer's gate
/// for a last short pass once the WAL is long. Without that, it grows to the writer's own
/// checkpoint at 16,000 pages (≈ 64 MiB) before anything starts it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_started_over_under_continuous_appends() {
    common::run(Backend::Sqlite, |db| async move {
        let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
        let log = db.open(64).await;
        const APPENDERS: u64 = 16;
        const EACH: u64 = 320; // 5,120 records × ≥ 4 pages: beyond 20,000 pages in all
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let n = a * EACH + i;
                        let blob: Vec<u8> = n
                            .to_le_bytes()
                            .iter()
                            .cycle()
                            .take(16 * 1024)
                            .copied()
                            .collect();
                        let time = at(2, i64::try_from(n).unwrap());
                        log.append_with_blobs(
                            entry(record("wal", &format!("c{n}"), time)),
                            vec![blob],
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let wal_bytes = std::fs::metadata(format!("{path}-wal")).unwrap().len();
        let stats = log.stats();
        assert_eq!(stats.records, APPENDERS * EACH);
        assert!(
            wal_bytes < 10_000 * 4096,
            "the WAL grew to {wal_bytes} bytes under continuous appends: {stats:?}"
        );
        log.close().await;
    })
    .await;
}

/// An operator's node reset: a node-reset record and, in its transaction, the node's state
/// without the old TPM's counters, clock, AK and current serial. Only through `reset_node`,
/// only for a node that enrolled.
async fn node_reset_forgets_the_cleared_tpms_state(db: TestDb) {
    let log = db.open(8).await;
    let node = "ee".repeat(32);
    let reset = |node: &str| NodeReset {
        time: at(20, 0),
        site: "site-1".into(),
        node_id: node.to_owned(),
        reasons: vec!["tpm-cleared".into(), "board swapped, ticket 42".into()],
    };
    let err = log.reset_node(reset(&node)).await.unwrap_err();
    assert!(matches!(err, LogError::UnknownNode { .. }), "{err:?}");
    assert!(
        log.query(&Query::default()).await.unwrap().is_empty(),
        "nothing written"
    );

    let enrolled = node_state(&node, Some("01"), 5_000);
    let mut enroll = record("site-1", &node, at(10, 0));
    enroll.cert_serial = Some("01".into());
    log.append(NewEntry {
        record: enroll,
        evidence: None,
        node_update: Some(enrolled.clone()),
    })
    .await
    .unwrap();

    // A node-reset record cannot be appended as an ordinary entry.
    let mut forged = record("site-1", &node, at(11, 0));
    forged.kind = RecordKind::NodeReset;
    let err = log.append(entry(forged)).await.unwrap_err();
    assert!(matches!(err, LogError::InvalidEntry { .. }), "{err:?}");

    let appended = log.reset_node(reset(&node)).await.unwrap();
    assert_eq!(appended.sequence, 1);
    let after = log.node(&node).await.unwrap().unwrap();
    assert_eq!(
        after,
        NodeState {
            ak_name: vec![],
            reset_count: 0,
            restart_count: 0,
            clock: 0,
            current_serial: None,
            updated: at(20, 0),
            ..enrolled
        }
    );
    assert_eq!(log.node_by_current_serial("01").await.unwrap(), None);
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
    assert_eq!(record.decision, Decision::Allow);
    assert_eq!(record.reasons[0], "tpm-cleared");
    assert_eq!(record.kind.as_str(), "node-reset");
    assert_eq!(
        "node-reset".parse::<RecordKind>().unwrap(),
        RecordKind::NodeReset
    );

    // Enrolling again afterwards binds the new TPM state as usual.
    let mut again = node_state(&node, Some("02"), 10);
    again.reset_count = 0;
    again.restart_count = 0;
    log.append(NewEntry {
        record: record_at(&node, at(30, 0)),
        evidence: None,
        node_update: Some(again.clone()),
    })
    .await
    .unwrap();
    assert_eq!(log.node(&node).await.unwrap(), Some(again));
    log.close().await;
}

fn record_at(node: &str, time: time::OffsetDateTime) -> Record {
    record("site-1", node, time)
}

/// An allow of `node` issuing `serial` (its node state too), as the attestor appends it.
fn issue(node: &str, serial: &str, second: i64) -> NewEntry {
    let mut issued = record("site-1", node, at(second, 0));
    issued.cert_serial = Some(serial.to_owned());
    NewEntry {
        record: issued,
        evidence: None,
        node_update: Some(node_state(node, Some(serial), second.unsigned_abs())),
    }
}

fn precondition(node: &str, presented: Option<&str>) -> Precondition {
    Precondition {
        node_id: node.to_owned(),
        presented_serial: presented.map(str::to_owned),
    }
}

/// The precondition an append failed on; any other answer fails the test.
fn failed_precondition(answer: Result<garrison_log::Appended, LogError>) -> PreconditionFailure {
    match answer {
        Err(LogError::PreconditionFailed(failure)) => failure,
        other => panic!("expected a failed precondition, got {other:?}"),
    }
}

/// The log's next sequence and its records, from a side connection.
async fn records_held(db: &TestDb) -> i64 {
    let mut conn = db.side_connection().await;
    count(&mut conn, "SELECT COUNT(*) FROM records").await
}

/// The attestor reads a node's status, decides, and appends with what it read as a
/// precondition. A revocation (of the node or of the presented serial) or another renewal
/// committed in between refuses that append alone: nothing of it is written, the log stays
/// dense, and the next append goes on.
async fn an_allow_is_not_committed_once_its_precondition_fails(db: TestDb) {
    let log = db.open(8).await;
    // n1 enrolls (aa01), then renews presenting aa01, in upper case (aa02).
    let enrolled = log
        .append_if(issue("n1", "aa01", 1), vec![], precondition("n1", None))
        .await
        .unwrap();
    let renewed = log
        .append_if(
            issue("n1", "aa02", 2),
            vec![b"event log".to_vec()],
            precondition("n1", Some("AA01")),
        )
        .await
        .unwrap();
    assert_eq!((enrolled.sequence, renewed.sequence), (0, 1));
    // A second renewal with the same certificate, read before the first committed.
    assert_eq!(
        failed_precondition(
            log.append_if(
                issue("n1", "aa03", 3),
                vec![],
                precondition("n1", Some("aa01"))
            )
            .await
        ),
        PreconditionFailure::SerialSuperseded {
            serial: "aa01".into(),
            node_id: "n1".into()
        }
    );
    // A node with no state has no current serial.
    assert!(matches!(
        failed_precondition(
            log.append_if(
                issue("n9", "ff01", 3),
                vec![],
                precondition("n9", Some("ff00"))
            )
            .await
        ),
        PreconditionFailure::SerialSuperseded { .. }
    ));
    // Revoked after the status read: the serial, then the node.
    log.revoke(revoke(RevocationTarget::Serial("AA02".into())))
        .await
        .unwrap();
    assert_eq!(
        failed_precondition(
            log.append_if(
                issue("n1", "aa03", 5),
                vec![],
                precondition("n1", Some("aa02"))
            )
            .await
        ),
        PreconditionFailure::SerialRevoked {
            serial: "aa02".into()
        }
    );
    log.append_if(issue("n2", "bb01", 5), vec![], precondition("n2", None))
        .await
        .unwrap();
    log.revoke(revoke(RevocationTarget::Node("n2".into())))
        .await
        .unwrap();
    for presented in [None, Some("bb01")] {
        assert_eq!(
            failed_precondition(
                log.append_if(
                    issue("n2", "bb02", 6),
                    vec![],
                    precondition("n2", presented)
                )
                .await
            ),
            PreconditionFailure::NodeRevoked {
                node_id: "n2".into()
            }
        );
    }
    // Nothing of the refused entries was written; n2's state still names bb01.
    assert_eq!(records_held(&db).await, 5);
    assert_eq!(
        log.node_status("n2")
            .await
            .unwrap()
            .node
            .unwrap()
            .current_serial
            .as_deref(),
        Some("bb01")
    );
    let next = log
        .append(entry(record("site-1", "n3", at(7, 0))))
        .await
        .unwrap();
    assert_eq!(next.sequence, 5, "the log stays dense");
    let stats = log.stats();
    assert_eq!((stats.records, stats.failed_records), (6, 0), "{stats:?}");
    // A precondition that names nothing is refused before it is queued.
    for bad in [precondition("", None), precondition("n1", Some("not hex"))] {
        assert!(matches!(
            log.append_if(issue("n1", "aa04", 8), vec![], bad).await,
            Err(LogError::InvalidEntry { .. })
        ));
    }
    log.close().await;
}

/// Queues `entry` with `precondition` on `log` and lets the writer take it (the first opens a
/// commit window, the others join it); its answer comes through the handle.
async fn queue(
    log: &AttestationLog,
    entry: NewEntry,
    precondition: Precondition,
) -> tokio::task::JoinHandle<Result<garrison_log::Appended, LogError>> {
    let log = log.clone();
    let task = tokio::spawn(async move { log.append_if(entry, vec![], precondition).await });
    until_the_writer_has_taken_it().await;
    task
}

/// In one batch, a precondition is judged after the entries queued before it: a revocation
/// ahead of an allow refuses it; one behind it does not (the allow came first, as the log
/// then shows); an allow ahead of a renewal with the same certificate supersedes it; other
/// nodes' allows in the batch are written.
async fn a_precondition_is_judged_after_the_entries_before_it_in_its_batch(db: TestDb) {
    let log = warm_log_with_an_hour_window(&db).await;
    // The revocation of n1 opens the window; n1's, n3's and n2's allows join its batch.
    let revocation = tokio::spawn({
        let log = log.clone();
        async move {
            log.revoke(revoke(RevocationTarget::Node("n1".into())))
                .await
        }
    });
    until_the_writer_has_taken_it().await;
    let n1 = queue(&log, issue("n1", "aa01", 5), precondition("n1", None)).await;
    let n3 = queue(&log, issue("n3", "cc01", 5), precondition("n3", None)).await;
    let n2 = log
        .append_if(issue("n2", "bb01", 5), vec![], precondition("n2", None))
        .await
        .unwrap();
    assert_eq!(revocation.await.unwrap().unwrap().sequence, 1);
    assert!(matches!(
        n1.await.unwrap(),
        Err(LogError::PreconditionFailed(
            PreconditionFailure::NodeRevoked { .. }
        ))
    ));
    assert_eq!(n3.await.unwrap().unwrap().sequence, 2);
    assert_eq!(n2.sequence, 3);
    assert_eq!(log.stats().batches, 2, "the warm-up, then one batch");
    // Then, in one batch: n3 renews cc01 to cc02, a second renewal presenting cc01 (read
    // before the first committed) is superseded, and n3's revocation comes after both.
    let renewed = queue(
        &log,
        issue("n3", "cc02", 7),
        precondition("n3", Some("cc01")),
    )
    .await;
    let superseded = queue(
        &log,
        issue("n3", "cc03", 7),
        precondition("n3", Some("cc01")),
    )
    .await;
    let revocation = log
        .revoke(revoke(RevocationTarget::Node("n3".into())))
        .await
        .unwrap();
    assert_eq!(renewed.await.unwrap().unwrap().sequence, 4);
    assert_eq!(
        superseded.await.unwrap().unwrap_err().to_string(),
        LogError::PreconditionFailed(PreconditionFailure::SerialSuperseded {
            serial: "cc01".into(),
            node_id: "n3".into()
        })
        .to_string()
    );
    assert_eq!(revocation.sequence, 5);
    let stats = log.stats();
    assert_eq!(stats.batches, 3, "the second three in one batch: {stats:?}");
    assert_eq!(stats.precondition_failures, 2);
    assert_eq!(records_held(&db).await, 6);
    log.close().await;
}

/// A site renamed (or moved to another trust domain) opens a new log in the same database.
/// Whom it revoked under the old origin stays revoked: the status reads, the revocation
/// checks and the precondition judged at commit all see the old log's revocations, while
/// each log keeps its own records and revocation rows.
async fn revocations_of_another_origin_stay_enforced(db: TestDb) {
    let old_origin = "garrison.example.org/site/old-name";
    let open = |origin: &'static str| {
        let mut config = db.config(8);
        config.origin = Some(origin.to_owned());
        async move { AttestationLog::open(&config).await.unwrap() }
    };
    let old = open(old_origin).await;
    for (node, serial) in [("n1", "aa01"), ("n2", "bb01"), ("n3", "cc01")] {
        old.append_if(issue(node, serial, 1), vec![], precondition(node, None))
            .await
            .unwrap();
    }
    old.revoke(revoke(RevocationTarget::Node("n1".into())))
        .await
        .unwrap();
    old.revoke(revoke(RevocationTarget::Serial("BB01".into())))
        .await
        .unwrap();
    old.close().await;

    let new = open("garrison.example.org/site/new-name").await;
    assert_eq!(new.tree_size().await.unwrap(), 0);
    // No state of its own yet (the node states are the old log's).
    assert_eq!(new.enforced_revocations().await.unwrap(), None);
    // Status reads, by node and by serial.
    assert!(new.node_status("n1").await.unwrap().revoked);
    assert!(new.is_node_revoked("n1").await.unwrap());
    assert!(new.node_status_by_serial("aa01").await.unwrap().revoked);
    assert!(new.is_revoked("AA01").await.unwrap());
    assert!(new.node_status_by_serial("bb01").await.unwrap().revoked);
    assert!(!new.node_status("n2").await.unwrap().revoked);
    assert!(!new.node_status("n3").await.unwrap().revoked);
    assert!(!new.is_revoked("cc01").await.unwrap());
    // The precondition judged at commit.
    assert_eq!(
        failed_precondition(
            new.append_if(issue("n1", "aa02", 2), vec![], precondition("n1", None))
                .await
        ),
        PreconditionFailure::NodeRevoked {
            node_id: "n1".into()
        }
    );
    assert_eq!(
        failed_precondition(
            new.append_if(
                issue("n2", "bb02", 2),
                vec![],
                precondition("n2", Some("bb01"))
            )
            .await
        ),
        PreconditionFailure::SerialRevoked {
            serial: "bb01".into()
        }
    );
    // A node nobody revoked renews under the new origin; nothing refused was written.
    let renewed = new
        .append_if(
            issue("n3", "cc02", 2),
            vec![],
            precondition("n3", Some("cc01")),
        )
        .await
        .unwrap();
    assert_eq!(renewed.sequence, 0);
    assert_eq!(new.tree_size().await.unwrap(), 1);
    // A revocation under the new origin is the new log's own row.
    new.revoke(revoke(RevocationTarget::Node("n3".into())))
        .await
        .unwrap();
    assert_eq!(new.enforced_revocations().await.unwrap().unwrap().len(), 1);
    new.close().await;
    let old = open(old_origin).await;
    assert_eq!(old.enforced_revocations().await.unwrap().unwrap().len(), 2);
    assert!(old.is_node_revoked("n3").await.unwrap());
    old.close().await;
}

/// Two logs in one database (a renamed site, or sites sharing a PostgreSQL database): a
/// revocation another log's writer is committing while this log's writer judges an allow's
/// precondition is waited for and then refuses the allow. On PostgreSQL the two writers
/// share no row lock; the revocation lock orders them (the test checks that the allow's
/// writer really waits on it). On SQLite the database's write lock does.
async fn a_revocation_by_another_logs_writer_during_the_check_refuses_the_allow(db: TestDb) {
    let open = |origin: &'static str| {
        let mut config = db.config(8);
        config.origin = Some(origin.to_owned());
        async move { AttestationLog::open(&config).await.unwrap() }
    };
    let old = open("garrison.example.org/site/a").await;
    let new = open("garrison.example.org/site/b").await;
    old.append_if(issue("n1", "aa01", 1), vec![], precondition("n1", None))
        .await
        .unwrap();
    // The old log's writer, as seen from outside: its transaction holds the revocation lock
    // (PostgreSQL) or the write lock (SQLite) and has written a revocation of n1, not yet
    // committed. (A bare row: the lock and the commit are what is tested.)
    let mut side = db.side_connection().await;
    let mut tx = sqlx::Connection::begin(&mut side).await.unwrap();
    match db.backend {
        Backend::Postgres => {
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2) IS NULL")
                .bind(0x6761_7272_i32)
                .bind(1_i32)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            sqlx::query("UPDATE logs SET next_sequence = next_sequence")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    sqlx::query(
        "INSERT INTO revocations (log_id, sequence, serial, node_id, time_us) \
         SELECT id, 0, NULL, 'n1', 0 FROM logs WHERE origin = 'garrison.example.org/site/a'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let allow = {
        let new = new.clone();
        tokio::spawn(async move {
            new.append_if(issue("n1", "aa02", 2), vec![], precondition("n1", None))
                .await
        })
    };
    if db.backend == Backend::Postgres {
        let mut watcher = db.side_connection().await;
        let mut waited = false;
        for _ in 0..500 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND NOT l.granted \
                 AND a.datname = current_database()",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                waited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            waited,
            "the allow's writer never waited for the revocation lock"
        );
    }
    tx.commit().await.unwrap();
    match allow.await.unwrap() {
        Err(LogError::PreconditionFailed(PreconditionFailure::NodeRevoked { node_id })) => {
            assert_eq!(node_id, "n1");
        }
        other => panic!("expected the allow refused, got {other:?}"),
    }
    assert_eq!(new.tree_size().await.unwrap(), 0);
    old.close().await;
    new.close().await;
}

/// A writer kept waiting for a lock by another session's stalled transaction fails its batch
/// after the lock timeout (5 s, SQLite's busy timeout; PostgreSQL's `lock_timeout` on the
/// writer's session) instead of waiting for ever, its caller gets the error, nothing of the
/// batch is stored, and the next batch goes through once the lock is free. On PostgreSQL both
/// locks a batch takes are tried: the revocation lock (a stalled batch of another log holding
/// it) and the log's row.
async fn a_writer_kept_waiting_for_a_lock_fails_its_batch_then_recovers(db: TestDb) {
    let log = db.open(8).await;
    log.append_if(issue("n1", "aa01", 1), vec![], precondition("n1", None))
        .await
        .unwrap();
    let holds: &[&str] = match db.backend {
        Backend::Postgres => &[
            "SELECT pg_advisory_xact_lock(1734439538, 1) IS NULL",
            "SELECT next_sequence FROM logs FOR UPDATE",
        ],
        Backend::Sqlite => &["UPDATE logs SET next_sequence = next_sequence"],
    };
    let mut side = db.side_connection().await;
    for (second, hold) in (2_i64..).zip(holds) {
        let mut tx = sqlx::Connection::begin(&mut side).await.unwrap();
        sqlx::query(*hold).execute(&mut *tx).await.unwrap();
        let serial = format!("aa{second:02}");
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            log.append_if(
                issue("n1", &serial, second),
                vec![],
                precondition("n1", None),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("the writer still waits on `{hold}` after a minute"));
        match waited {
            Err(e @ LogError::Append { batch_size: 1, .. }) => {
                let message = format!("{e:?}");
                assert!(
                    message.contains("lock"),
                    "`{hold}`: the error should say a lock was not had: {message}"
                );
            }
            other => panic!("`{hold}`: expected the batch to fail, got {other:?}"),
        }
        assert_eq!(log.tree_size().await.unwrap(), second.unsigned_abs() - 1);
        tx.rollback().await.unwrap();
        let after = log
            .append_if(
                issue("n1", &serial, second),
                vec![],
                precondition("n1", None),
            )
            .await
            .unwrap();
        assert_eq!(after.sequence, second.unsigned_abs() - 1);
    }
    assert_eq!(log.stats().failed_batches, holds.len() as u64);
    log.close().await;
}
