//! The Merkle tree over each log, its proofs, origins, checkpoints, and the in-place upgrade
//! of a database from before the tree: on SQLite and PostgreSQL, checked against the
//! independent RFC 9162 code in `rfc9162/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod rfc9162;

use common::{TestDb, at, entry, note_for, record};
use garrison_log::{AttestationLog, Backend, LogConfig, LogError, StoredCheckpoint};
use rfc9162::H;

both_backends!(
    tree_roots_and_proofs_match_rfc9162,
    two_origins_share_a_database_without_sharing_a_tree,
    a_database_from_before_the_tree_upgrades_in_place,
    an_edited_record_stops_the_upgrade,
    two_handles_extend_one_tree,
    checkpoints_are_checked_kept_and_listed,
    an_archive_written_page_by_page_has_the_same_tree_up_to_its_first_gap,
);

fn config(db: &TestDb, origin: Option<&str>) -> LogConfig {
    LogConfig {
        origin: origin.map(str::to_owned),
        ..db.config(64)
    }
}

async fn open(db: &TestDb, origin: &str) -> AttestationLog {
    AttestationLog::open(&config(db, Some(origin)))
        .await
        .expect("open the log")
}

/// Appends `n` records, some alone and some concurrently (so batches of several sizes), and
/// returns their leaf hashes in sequence order.
async fn append_records(log: &AttestationLog, site: &str, n: usize) -> Vec<H> {
    let mut leaves = Vec::new();
    let mut i = 0;
    while i < n {
        let burst = (i % 7 + 1).min(n - i);
        let appends = (0..burst).map(|j| {
            let node = format!("{site}-node-{}", i + j);
            let log = log.clone();
            let rec = record(site, &node, at(1_700_000_000 + (i + j) as i64, 0));
            async move { log.append(entry(rec)).await }
        });
        let mut done: Vec<_> = futures_join_all(appends).await;
        done.sort_by_key(|a| a.sequence);
        leaves.extend(done.into_iter().map(|a| a.leaf_hash));
        i += burst;
    }
    leaves
}

async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, LogError>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("join").expect("append"));
    }
    out
}

async fn check_against_rfc(log: &AttestationLog, leaves: &[H]) {
    let n = leaves.len() as u64;
    assert_eq!(log.tree_size().await.expect("size"), n);
    for size in 1..=n {
        let root = log.tree_root(size).await.expect("root");
        assert_eq!(
            root,
            rfc9162::mth(&leaves[..size as usize]),
            "root of size {size}"
        );
    }
    for size in [1, 2, 3, 7, 8, 9, n - 1, n] {
        let root = rfc9162::mth(&leaves[..size as usize]);
        for index in (0..size).step_by(3).chain([size - 1]) {
            let path = log
                .inclusion_proof(index, size)
                .await
                .expect("inclusion proof");
            assert!(
                rfc9162::verify_inclusion(index, size, &leaves[index as usize], &path, &root),
                "inclusion of {index} in {size}"
            );
            // The same path does not prove another leaf.
            let other = leaves[((index + 1) % size) as usize];
            if size > 1 {
                assert!(!rfc9162::verify_inclusion(
                    index, size, &other, &path, &root
                ));
            }
        }
        for old in (1..=size).step_by(2).chain([size]) {
            let proof = log
                .consistency_proof(old, size)
                .await
                .expect("consistency proof");
            let old_root = rfc9162::mth(&leaves[..old as usize]);
            assert!(
                rfc9162::verify_consistency(old, size, &old_root, &root, &proof),
                "consistency {old} -> {size}"
            );
        }
    }
    assert!(matches!(
        log.inclusion_proof(n, n).await,
        Err(LogError::ProofRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(1, n + 1).await,
        Err(LogError::ProofRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(0, n).await,
        Err(LogError::ProofRange { .. })
    ));
    // Beyond the tree, whether the proof needs stored hashes or none (the size is checked in
    // the statement that reads them, else on its own), and beyond any size a database holds:
    // refused, with the tree's real size.
    for size in [n + 1, n + 2, u64::MAX] {
        let beyond = |r: Result<_, LogError>| {
            matches!(r, Err(LogError::ProofRange { what: "tree", first, second })
                if first == size && second == n)
        };
        assert!(beyond(log.inclusion_proof(0, size).await), "{size}");
        assert!(
            beyond(log.tree_root(size).await.map(|_| Vec::new())),
            "{size}"
        );
        assert!(beyond(log.consistency_proof(1, size).await), "{size}");
    }
}

async fn tree_roots_and_proofs_match_rfc9162(db: TestDb) {
    let log = open(&db, "garrison.example.org/site/site-1").await;
    assert_eq!(log.tree_size().await.expect("size"), 0);
    // A proof that needs no stored hash (record 0 of a one-record tree) still checks the size.
    assert!(matches!(
        log.inclusion_proof(0, 1).await,
        Err(LogError::ProofRange {
            what: "tree",
            first: 1,
            second: 0
        })
    ));
    let leaves = append_records(&log, "site-1", 70).await;
    check_against_rfc(&log, &leaves).await;
    log.close().await;
    // The tree survives a reopen, and extends from where it was.
    let log = open(&db, "garrison.example.org/site/site-1").await;
    let mut leaves = leaves;
    leaves.extend(append_records(&log, "site-1", 5).await);
    check_against_rfc(&log, &leaves).await;
    // The size a proof is checked against is the log's, even where the stored hashes would
    // reach further (a tree size lowered in the database).
    let mut side = db.side_connection().await;
    sqlx::query("UPDATE logs SET tree_size = 60")
        .execute(&mut side)
        .await
        .expect("lower the tree size");
    assert!(matches!(
        log.inclusion_proof(3, 75).await,
        Err(LogError::ProofRange {
            what: "tree",
            first: 75,
            second: 60
        })
    ));
    assert!(log.inclusion_proof(3, 60).await.is_ok());
    log.close().await;
}

async fn two_origins_share_a_database_without_sharing_a_tree(db: TestDb) {
    let a = open(&db, "garrison.example.org/site/a").await;
    let b = open(&db, "garrison.example.org/site/b").await;
    let leaves_a = append_records(&a, "a", 12).await;
    let leaves_b = append_records(&b, "b", 9).await;
    check_against_rfc(&a, &leaves_a).await;
    check_against_rfc(&b, &leaves_b).await;
    // Each log's sequences start at 0 and its queries see only its own records.
    let records_b = b.query(&Default::default()).await.expect("query b");
    assert_eq!(records_b.len(), 9);
    assert_eq!(records_b[0].sequence, 0);
    assert!(records_b.iter().all(|r| r.record.site == "b"));
    assert_eq!(a.origin(), Some("garrison.example.org/site/a"));
    // Without an origin, a database of two logs is refused by name.
    match AttestationLog::open(&config(&db, None)).await {
        Err(LogError::OriginRequired { origins }) => assert_eq!(origins.len(), 2),
        other => panic!("expected OriginRequired, got {other:?}"),
    }
    a.close().await;
    b.close().await;
}

/// Creates the schema of migration 0001 only (a database from before origins and the tree)
/// and fills it with `n` records the way that version wrote them.
async fn old_database(db: &TestDb, n: usize) -> Vec<H> {
    let folder = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = tempfile::tempdir().expect("dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder)
        .join("0001_attestation_log.sql");
    std::fs::copy(&source, dir.path().join("0001_attestation_log.sql")).expect("copy 0001");
    let url = match db.backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("migration 0001");
    let mut leaves = Vec::new();
    for i in 0..n {
        let rec = record("old", &format!("old-{i}"), at(1_600_000_000 + i as i64, 0));
        let leaf = garrison_log::leaf_hash(i as u64, &rec).expect("leaf");
        sqlx::query(
            "INSERT INTO records (sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons) \
             VALUES ($1, $2, $3, $4, 'enroll', $5, $6, 'allow', '[]')",
        )
        .bind(i as i64)
        .bind(hex::encode(leaf))
        .bind((1_600_000_000 + i as i64) * 1_000_000)
        .bind("old")
        .bind(rec.node_id.clone())
        .bind(rec.spiffe_id.clone())
        .execute(&pool)
        .await
        .expect("old record");
        leaves.push(leaf);
    }
    sqlx::query("UPDATE log_head SET next_sequence = $1 WHERE id = 1")
        .bind(n as i64)
        .execute(&pool)
        .await
        .expect("head");
    pool.close().await;
    leaves
}

async fn a_database_from_before_the_tree_upgrades_in_place(db: TestDb) {
    let mut leaves = old_database(&db, 23).await;
    let log = open(&db, "garrison.example.org/site/old").await;
    assert_eq!(
        log.origin(),
        Some("garrison.example.org/site/old"),
        "the old log is claimed"
    );
    let old = log.query(&Default::default()).await.expect("query");
    assert_eq!(
        old.len(),
        23,
        "every old record is still there, in the claimed log"
    );
    leaves.extend(append_records(&log, "old", 4).await);
    check_against_rfc(&log, &leaves).await;
    log.close().await;
}

async fn an_edited_record_stops_the_upgrade(db: TestDb) {
    old_database(&db, 5).await;
    let mut conn = db.side_connection().await;
    // Someone with database access rewrote record 3's decision before the upgrade (the old
    // schema's trigger is dropped first, as such a person would).
    let statements: &[&str] = match db.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER records_append_only_update",
            "UPDATE records SET decision = 'deny' WHERE sequence = 3",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER records_append_only_rows ON records",
            "UPDATE records SET decision = 'deny' WHERE sequence = 3",
        ],
    };
    for statement in statements {
        sqlx::query(*statement)
            .execute(&mut conn)
            .await
            .expect("tamper");
    }
    match AttestationLog::open(&config(&db, Some("garrison.example.org/site/old"))).await {
        Err(LogError::TreeBuild { source, .. }) => {
            assert!(
                matches!(*source, LogError::LeafMismatch { sequence: 3 }),
                "{source:?}"
            )
        }
        other => panic!("expected the tree build to stop at record 3, got {other:?}"),
    }
}

async fn two_handles_extend_one_tree(db: TestDb) {
    // Two handles on one log stand for two processes: each writer must notice the other's
    // appends and extend the tree from the stored hashes, not from its own stale edge.
    let origin = "garrison.example.org/site/shared";
    let first = open(&db, origin).await;
    let second = open(&db, origin).await;
    let mut leaves = Vec::new();
    for round in 0..6 {
        let log = if round % 2 == 0 { &first } else { &second };
        leaves.extend(append_records(log, "shared", 3 + round).await);
    }
    let mut all: Vec<_> = first
        .query(&Default::default())
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.leaf_hash)
        .collect();
    all.dedup();
    assert_eq!(all, leaves);
    check_against_rfc(&first, &leaves).await;
    first.close().await;
    second.close().await;
}

async fn checkpoints_are_checked_kept_and_listed(db: TestDb) {
    let log = open(&db, "garrison.example.org/site/cp").await;
    let leaves = append_records(&log, "cp", 10).await;
    let checkpoint = |size: usize, root: H| StoredCheckpoint {
        size: size as u64,
        root_hash: root,
        signed: at(1_700_000_100, 0),
        note: note_for("garrison.example.org/site/cp", size as u64, root),
    };
    let wrong = checkpoint(10, rfc9162::mth(&leaves[..9]));
    assert!(matches!(
        log.store_checkpoint(&wrong).await,
        Err(LogError::CheckpointMismatch { size: 10 })
    ));
    let beyond = checkpoint(11, rfc9162::mth(&leaves));
    assert!(log.store_checkpoint(&beyond).await.is_err());
    let at_4 = checkpoint(4, rfc9162::mth(&leaves[..4]));
    let at_10 = checkpoint(10, rfc9162::mth(&leaves));
    assert!(log.store_checkpoint(&at_10).await.expect("store 10"));
    assert!(log.store_checkpoint(&at_4).await.expect("store 4"));
    assert!(
        !log.store_checkpoint(&at_10).await.expect("again"),
        "one checkpoint per size"
    );
    assert_eq!(
        log.checkpoints().await.expect("list"),
        vec![at_4.clone(), at_10.clone()]
    );
    // Page by page, as the Audit service serves them.
    let page = |after, limit| log.checkpoints_after(after, limit);
    assert_eq!(page(None, 1).await.expect("page"), vec![at_4.clone()]);
    assert_eq!(page(Some(4), 5).await.expect("page"), vec![at_10.clone()]);
    assert_eq!(page(Some(3), 5).await.expect("page").len(), 2);
    assert!(page(Some(10), 5).await.expect("page").is_empty());
    assert!(page(Some(u64::MAX), 5).await.expect("page").is_empty());
    assert_eq!(log.latest_checkpoint().await.expect("latest"), Some(at_10));
    assert_eq!(
        log.checkpoint_at(4).await.expect("at 4"),
        Some(at_4.clone())
    );
    assert_eq!(log.checkpoint_at(5).await.expect("at 5"), None);
    // Kept as signed: the database refuses to rewrite or drop one.
    let mut conn = db.side_connection().await;
    for statement in [
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "DELETE FROM tree_hashes",
    ] {
        assert!(
            sqlx::query(statement).execute(&mut conn).await.is_err(),
            "{statement}"
        );
    }
    // A note that does not state the size and root it is stored under is refused...
    let mut mislabelled = at_4.clone();
    mislabelled.note = note_for("garrison.example.org/site/cp", 3, at_4.root_hash);
    assert!(matches!(
        log.store_checkpoint(&mislabelled).await,
        Err(LogError::Corrupt { .. })
    ));
    // ...and one copied into a row of a larger size (an insert, which the database allows)
    // is an error for whoever reads it as the latest: the attestor deciding whether to sign
    // must not take the log for signed up to size 50.
    sqlx::query(
        "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) \
         SELECT log_id, 50, root_hash, signed_us, note FROM checkpoints WHERE size = 4",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    match log.latest_checkpoint().await {
        Err(LogError::Corrupt { found, .. }) => {
            assert!(
                found.contains("size 50") && found.contains("size 4"),
                "{found}"
            );
        }
        other => panic!("expected the copied row refused, got {other:?}"),
    }
    assert!(matches!(
        log.checkpoint_at(50).await,
        Err(LogError::Corrupt { .. })
    ));
    log.close().await;
}

/// `ArchiveWriter` builds the tree from the records' leaf hashes as pages arrive: the same
/// roots and inclusion proofs as the source's, across page boundaries; with a record missing
/// it keeps the gap and the tree stops before it.
async fn an_archive_written_page_by_page_has_the_same_tree_up_to_its_first_gap(db: TestDb) {
    const ORIGIN: &str = "garrison.example.org/site/archive";
    let log = open(&db, ORIGIN).await;
    for i in 0..40 {
        log.append(entry(record("site-1", &format!("n{i}"), at(i, 0))))
            .await
            .unwrap();
    }
    let records = log.query(&garrison_log::Query::default()).await.unwrap();
    assert_eq!(records.len(), 40);
    let dir = tempfile::tempdir().unwrap();
    let write = |path: std::path::PathBuf, records: Vec<garrison_log::StoredRecord>| async move {
        let mut archive = garrison_log::ArchiveWriter::create(&path, ORIGIN)
            .await
            .unwrap();
        for page in records.chunks(7) {
            archive.add_records(page).await.unwrap();
        }
        let summary = archive.finish().await.unwrap();
        let opened = AttestationLog::open_read_only(&format!("sqlite://{}", path.display()), None)
            .await
            .unwrap();
        (summary, opened)
    };
    let (summary, whole) = write(dir.path().join("whole.db"), records.clone()).await;
    assert_eq!(summary.records, 40);
    assert_eq!(whole.tree_size().await.unwrap(), 40);
    for size in [1, 7, 8, 21, 40] {
        assert_eq!(
            whole.tree_root(size).await.unwrap(),
            log.tree_root(size).await.unwrap(),
            "root at {size}"
        );
    }
    for index in [0, 6, 7, 13, 39] {
        assert_eq!(
            whole.inclusion_proof(index, 40).await.unwrap(),
            log.inclusion_proof(index, 40).await.unwrap(),
            "proof of {index}"
        );
    }
    whole.close().await;

    let mut gapped = records.clone();
    gapped.remove(20);
    let (summary, with_gap) = write(dir.path().join("gap.db"), gapped).await;
    assert_eq!(summary.records, 39);
    assert_eq!(
        with_gap.tree_size().await.unwrap(),
        20,
        "the tree stops at the gap"
    );
    assert_eq!(
        with_gap.tree_root(20).await.unwrap(),
        log.tree_root(20).await.unwrap()
    );
    let kept = with_gap
        .query(&garrison_log::Query::default())
        .await
        .unwrap();
    assert_eq!(kept.len(), 39);
    assert_eq!(kept[20], records[21], "the records after the gap are kept");
    with_gap.close().await;
    // A source serving a record again, or out of order, is refused.
    let mut archive = garrison_log::ArchiveWriter::create(&dir.path().join("again.db"), ORIGIN)
        .await
        .unwrap();
    archive.add_records(&records[..5]).await.unwrap();
    assert!(matches!(
        archive.add_records(&records[4..6]).await,
        Err(LogError::Corrupt { .. })
    ));
    log.close().await;
}
