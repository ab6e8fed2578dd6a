//! Replicas (the hub's copies of site logs) and the sync state beside them, on SQLite and
//! PostgreSQL: records land at the sequences their site gave them, once, whatever is resent
//! or sent twice at the same moment; the tree and roots equal the site's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{TestDb, at, entry, note_for, record};
use garrison_log::{
    AttestationLog, Backend, LogConfig, LogError, NewEntry, Record, ReplicaBatch, StoredCheckpoint,
    StoredCosignature, SyncEvent, canonical_bytes, evidence_digest, record_from_canonical,
};

both_backends!(
    a_replica_matches_its_source_and_takes_resends_as_no_ops,
    a_replica_refuses_gaps_conflicts_and_missing_evidence,
    a_refusing_check_leaves_no_trace,
    two_handles_storing_one_batch_at_once_store_it_once,
    cosignatures_events_revocation_lists_and_policy_bundles_are_kept,
);

const SITE: &str = "garrison.example.org/site/s1";
const HUB: &str = "garrison.example.org/hub";

async fn open(db: &TestDb, origin: &str) -> AttestationLog {
    AttestationLog::open(&LogConfig {
        origin: Some(origin.to_owned()),
        ..db.config(64)
    })
    .await
    .expect("open")
}

/// A site log in its own database (SQLite, beside the test's) with `n` records, some with
/// evidence; returns it and its records read back.
async fn site_with_records(n: usize) -> (AttestationLog, Vec<Record>, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().expect("dir").keep();
    let site = AttestationLog::open(&LogConfig {
        url: format!("sqlite://{}/site.db", dir.display()),
        origin: Some(SITE.to_owned()),
        max_batch: 16,
        max_connections: 2,
    })
    .await
    .expect("open site");
    let mut evidence = Vec::new();
    for i in 0..n {
        let mut e = entry(record(
            "s1",
            &format!("n{i}"),
            at(1_700_000_000 + i as i64, 7),
        ));
        if i % 3 == 0 {
            let bytes = format!("evidence of n{}", i % 6).into_bytes();
            evidence.push((evidence_digest(&bytes), bytes.clone()));
            e = NewEntry {
                evidence: Some(bytes),
                ..e
            };
        }
        site.append(e).await.expect("append");
    }
    evidence.sort();
    evidence.dedup();
    let records = site
        .query(&Default::default())
        .await
        .expect("read back")
        .into_iter()
        .map(|r| r.record)
        .collect();
    (site, records, evidence)
}

fn batch(first: usize, records: &[Record], evidence: &[(String, Vec<u8>)]) -> ReplicaBatch {
    ReplicaBatch {
        first: first as u64,
        records: records.to_vec(),
        evidence: evidence.to_vec(),
    }
}

fn accept(_: u64, _: &[u8; 32]) -> Result<(), String> {
    Ok(())
}

async fn a_replica_matches_its_source_and_takes_resends_as_no_ops(db: TestDb) {
    let (site, records, evidence) = site_with_records(20).await;
    let hub = open(&db, HUB).await;
    let replica = hub.replica(SITE).await.expect("replica");
    // In two parts, the second overlapping the first by five records.
    let part = replica
        .append_replica(&batch(0, &records[..12], &evidence), accept)
        .await
        .expect("first part");
    assert_eq!((part.added, part.tree_size), (12, 12));
    assert_eq!(part.root, site.tree_root(12).await.unwrap());
    let mut seen = None;
    let rest = replica
        .append_replica(&batch(7, &records[7..], &[]), |size, root| {
            seen = Some((size, *root));
            Ok(())
        })
        .await
        .expect("second part");
    assert_eq!((rest.added, rest.tree_size), (8, 20));
    let site_root = site.tree_root(20).await.unwrap();
    assert_eq!(seen, Some((20, site_root)), "the check saw the new root");
    assert_eq!(replica.tree_root(20).await.unwrap(), site_root);
    assert_eq!(
        replica.consistency_proof(5, 20).await.unwrap(),
        site.consistency_proof(5, 20).await.unwrap()
    );
    // The whole log again: nothing added, same root.
    let again = replica
        .append_replica(&batch(0, &records, &evidence), accept)
        .await
        .expect("resend");
    assert_eq!(
        (again.added, again.tree_size, again.root),
        (0, 20, site_root)
    );
    let stored = replica.query(&Default::default()).await.unwrap();
    let original = site.query(&Default::default()).await.unwrap();
    assert_eq!(stored, original, "records and leaf hashes equal the site's");
    for (digest, bytes) in &evidence {
        assert_eq!(
            replica.evidence(digest).await.unwrap().as_ref(),
            Some(bytes)
        );
    }
    assert_eq!(
        hub.origins().await.unwrap(),
        vec![HUB.to_owned(), SITE.to_owned()]
    );
    assert_eq!(
        hub.tree_size().await.unwrap(),
        0,
        "the hub's own log is untouched"
    );
    // Canonical bytes read back into the same record; any other encoding is refused.
    let bytes = canonical_bytes(3, &records[3]).unwrap();
    assert_eq!(
        record_from_canonical(&bytes).unwrap(),
        (3, records[3].clone())
    );
    let spaced = String::from_utf8(bytes).unwrap().replacen(',', ", ", 1);
    assert!(matches!(
        record_from_canonical(spaced.as_bytes()),
        Err(LogError::NotCanonical { .. })
    ));
    site.close().await;
    hub.close().await;
}

async fn a_replica_refuses_gaps_conflicts_and_missing_evidence(db: TestDb) {
    let (site, records, evidence) = site_with_records(9).await;
    let hub = open(&db, HUB).await;
    let replica = hub.replica(SITE).await.unwrap();
    let gap = replica
        .append_replica(&batch(1, &records[1..], &evidence), accept)
        .await;
    assert!(
        matches!(
            gap,
            Err(LogError::ReplicaGap {
                held: 0,
                first: 1,
                ..
            })
        ),
        "{gap:?}"
    );
    let missing = replica
        .append_replica(&batch(0, &records, &[]), accept)
        .await;
    assert!(
        matches!(missing, Err(LogError::ReplicaEvidence { .. })),
        "{missing:?}"
    );
    let mut forged = evidence.clone();
    forged[0].1.push(b'!');
    let bad_bytes = replica
        .append_replica(&batch(0, &records, &forged), accept)
        .await;
    assert!(
        matches!(bad_bytes, Err(LogError::ReplicaEvidence { .. })),
        "{bad_bytes:?}"
    );
    assert_eq!(
        replica.tree_size().await.unwrap(),
        0,
        "nothing of a refused batch is kept"
    );
    replica
        .append_replica(&batch(0, &records[..5], &evidence), accept)
        .await
        .unwrap();
    let mut edited = records.clone();
    edited[2].reasons.push("rewritten".to_owned());
    let conflict = replica
        .append_replica(&batch(0, &edited, &evidence), accept)
        .await;
    assert!(
        matches!(conflict, Err(LogError::ReplicaConflict { sequence: 2, .. })),
        "{conflict:?}"
    );
    assert_eq!(replica.tree_size().await.unwrap(), 5);
    site.close().await;
    hub.close().await;
}

async fn a_refusing_check_leaves_no_trace(db: TestDb) {
    let (site, records, evidence) = site_with_records(6).await;
    let hub = open(&db, HUB).await;
    let replica = hub.replica(SITE).await.unwrap();
    let refused = replica
        .append_replica(&batch(0, &records, &evidence), |_, _| {
            Err("proof does not verify".to_owned())
        })
        .await;
    assert!(
        matches!(refused, Err(LogError::ReplicaRefused { ref reason, .. }) if reason == "proof does not verify"),
        "{refused:?}"
    );
    assert_eq!(replica.tree_size().await.unwrap(), 0);
    assert!(replica.query(&Default::default()).await.unwrap().is_empty());
    for (digest, _) in &evidence {
        assert_eq!(replica.evidence(digest).await.unwrap(), None);
    }
    // The same batch, accepted, lands whole.
    let done = replica
        .append_replica(&batch(0, &records, &evidence), accept)
        .await
        .unwrap();
    assert_eq!((done.added, done.tree_size), (6, 6));
    site.close().await;
    hub.close().await;
}

async fn two_handles_storing_one_batch_at_once_store_it_once(db: TestDb) {
    let (site, records, evidence) = site_with_records(40).await;
    // Two hub processes: two pools on one database.
    let hub_a = open(&db, HUB).await;
    let hub_b = open(&db, HUB).await;
    let a = hub_a.replica(SITE).await.unwrap();
    let b = hub_b.replica(SITE).await.unwrap();
    let full = batch(0, &records, &evidence);
    let (ra, rb) = tokio::join!(
        a.append_replica(&full, accept),
        b.append_replica(&full, accept)
    );
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(ra.added + rb.added, 40, "stored once: {ra:?} {rb:?}");
    assert_eq!((ra.tree_size, rb.tree_size), (40, 40));
    assert_eq!(ra.root, site.tree_root(40).await.unwrap());
    assert_eq!(a.query(&Default::default()).await.unwrap().len(), 40);
    site.close().await;
    hub_a.close().await;
    hub_b.close().await;
}

async fn cosignatures_events_revocation_lists_and_policy_bundles_are_kept(db: TestDb) {
    let log = open(&db, SITE).await;
    for i in 0..3 {
        log.append(entry(record("s1", &format!("n{i}"), at(1_700_000_000, i))))
            .await
            .unwrap();
    }
    let cosignature = StoredCosignature {
        size: 3,
        witness: HUB.to_owned(),
        line: "— garrison.example.org/hub AAAA".to_owned(),
        cosigned: at(1_700_000_100, 0),
    };
    assert!(matches!(
        log.store_cosignature(&cosignature).await,
        Err(LogError::CosignatureWithoutCheckpoint { size: 3 })
    ));
    let root = log.tree_root(3).await.unwrap();
    log.store_checkpoint(&StoredCheckpoint {
        size: 3,
        root_hash: root,
        signed: at(1_700_000_050, 0),
        note: note_for(SITE, 3, root),
    })
    .await
    .unwrap();
    assert!(log.store_cosignature(&cosignature).await.unwrap());
    assert!(
        !log.store_cosignature(&cosignature).await.unwrap(),
        "kept once"
    );
    assert_eq!(log.cosignatures().await.unwrap(), vec![cosignature.clone()]);
    assert_eq!(
        log.latest_cosignature(HUB).await.unwrap(),
        Some(cosignature.clone())
    );
    assert_eq!(log.latest_cosignature("someone-else").await.unwrap(), None);
    // By checkpoint size range, as the Audit service serves them with a page of checkpoints.
    assert_eq!(
        log.cosignatures_between(1, 3).await.unwrap(),
        vec![cosignature]
    );
    assert!(log.cosignatures_between(4, 9).await.unwrap().is_empty());
    assert!(log.cosignatures_between(0, 2).await.unwrap().is_empty());
    // None is kept without its checkpoint, unless someone with database access deletes the
    // checkpoint: then the cosignature is found among those without one.
    assert!(log.unattached_cosignatures(100).await.unwrap().is_empty());
    let mut conn = db.side_connection().await;
    let statements: &[&str] = match db.backend {
        Backend::Sqlite => &[
            "PRAGMA foreign_keys = OFF",
            "DROP TRIGGER checkpoints_append_only_delete",
            "DELETE FROM checkpoints WHERE size = 3",
        ],
        Backend::Postgres => &[
            "ALTER TABLE cosignatures DROP CONSTRAINT cosignatures_log_id_size_fkey",
            "DROP TRIGGER checkpoints_append_only_rows ON checkpoints",
            "DELETE FROM checkpoints WHERE size = 3",
        ],
    };
    for statement in statements {
        sqlx::query(*statement).execute(&mut conn).await.unwrap();
    }
    sqlx::Connection::close(conn).await.unwrap();
    assert_eq!(
        log.unattached_cosignatures(100).await.unwrap(),
        log.cosignatures().await.unwrap()
    );
    assert_eq!(log.unattached_cosignatures(100).await.unwrap().len(), 1);
    assert!(log.unattached_cosignatures(0).await.unwrap().is_empty());

    // A thousand refusals of one kind are one row.
    for i in 0..1000 {
        log.record_sync_event(&SyncEvent {
            origin: SITE.to_owned(),
            kind: "bad-proof".to_owned(),
            time: at(1_700_000_000 + i, 0),
            detail: "x".repeat(10_000),
            notes: (i == 0).then(|| ("held".to_owned(), "other".to_owned())),
        })
        .await
        .unwrap();
    }
    let events = log.sync_events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].count, 1000);
    assert_eq!(events[0].last, at(1_700_000_999, 0));
    assert_eq!(events[0].detail.len(), garrison_log::SYNC_EVENT_DETAIL_MAX);
    assert_eq!(
        events[0].notes,
        Some(("held".to_owned(), "other".to_owned()))
    );

    assert_eq!(log.latest_revocation_list().await.unwrap(), None);
    assert!(log.store_revocation_list(1, "one", at(1, 0)).await.unwrap());
    assert!(log.store_revocation_list(2, "two", at(2, 0)).await.unwrap());
    assert!(!log.store_revocation_list(2, "two", at(3, 0)).await.unwrap());
    assert_eq!(
        log.latest_revocation_list().await.unwrap(),
        Some((2, "two".to_owned()))
    );
    let digest = "a".repeat(64);
    assert!(
        log.store_policy_bundle(4, &digest, b"bundle", at(1, 0))
            .await
            .unwrap()
    );
    assert!(
        !log.store_policy_bundle(4, &digest, b"bundle", at(2, 0))
            .await
            .unwrap()
    );
    assert!(
        log.store_policy_bundle(4, &"b".repeat(64), b"other", at(2, 0))
            .await
            .is_err(),
        "one sequence, one bundle"
    );
    assert_eq!(
        log.latest_policy_bundle().await.unwrap(),
        Some((4, digest, b"bundle".to_vec()))
    );
    log.close().await;
}
