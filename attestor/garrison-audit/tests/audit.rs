//! `verify`, `prove` and export over real signed logs, on SQLite and PostgreSQL: a clean log
//! verifies; every kind of tampering by someone with database access is found and named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../../garrison-log/tests/common/mod.rs"]
mod common;
#[path = "../../garrison-log/tests/rfc9162/mod.rs"]
mod rfc9162;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestDb;
use garrison_audit::{AuditError, LogSource, Problem, VerifyReport, export, prove, verify};
use garrison_log::{
    AttestationLog, Backend, LogConfig, NewEntry, StoredCheckpoint, StoredRecord, evidence_digest,
};
use garrison_transparency::{InclusionProof, LogKey, leaf_hash_of, verify_checkpoint};
use ring::rand::SystemRandom;
use support::fixture::{Site, origin};

both_backends!(
    a_clean_log_verifies,
    an_edited_record_is_named,
    an_edited_record_with_a_recomputed_leaf_breaks_the_checkpoint,
    a_deleted_record_is_named,
    records_removed_from_the_end_are_found,
    reordered_records_are_named,
    swapped_evidence_is_named,
    swapped_shared_evidence_is_named_for_every_record_that_names_it,
    deleted_shared_evidence_is_named_for_every_record_that_names_it,
    verify_reads_a_pages_evidence_in_one_call,
    a_checkpoint_of_a_forked_tree_is_found,
    a_checkpoint_signed_by_an_uncertified_key_is_refused,
    a_log_key_certified_by_another_sites_ca_is_refused,
    proofs_verify_with_an_independent_rfc9162_verifier,
    an_export_verifies_alone_and_keeps_tampering_visible,
    an_export_read_through_a_log_source_keeps_every_tampering_visible,
    an_export_writes_no_record_beyond_what_its_source_claimed,
    a_changed_or_deleted_stored_tree_hash_is_found,
    gaps_of_any_length_are_one_problem_each,
    an_export_copies_evidence_shared_across_pages_once,
    the_revocations_a_site_enforces_are_checked_against_its_log,
    an_allow_after_a_revocation_is_named,
    the_node_states_a_site_keeps_are_checked_against_its_log,
    a_log_head_that_misstates_the_records_is_found,
    a_signed_checkpoint_kept_under_another_size_is_found,
    a_deleted_or_changed_event_log_is_named,
    a_log_cut_back_with_its_checkpoints_is_found_against_one_seen_before,
);

const RECORDS: u64 = 37;

async fn signed_log(db: &TestDb) -> (Site, AttestationLog) {
    let site = Site::new();
    let log = site.build_log(db.config(16), RECORDS).await;
    (site, log)
}

async fn reopen_and_verify(db: &TestDb, site: &Site) -> VerifyReport {
    let log = AttestationLog::open_read_only(&db.url, Some(&origin()))
        .await
        .expect("open read-only");
    let report = verify(&log, &site.roots()).await.expect("verify");
    log.close().await;
    report
}

/// Runs statements with the append-only triggers out of the way, as someone with database
/// access would.
async fn tamper(db: &TestDb, statements: &[&str]) {
    let mut conn = db.side_connection().await;
    let drop: &[&str] = match db.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS records_append_only_update",
            "DROP TRIGGER IF EXISTS records_append_only_delete",
            "DROP TRIGGER IF EXISTS checkpoints_append_only_update",
            "DROP TRIGGER IF EXISTS checkpoints_append_only_delete",
            "DROP TRIGGER IF EXISTS tree_hashes_append_only_update",
            "DROP TRIGGER IF EXISTS tree_hashes_append_only_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER IF EXISTS records_append_only_rows ON records",
            "DROP TRIGGER IF EXISTS checkpoints_append_only_rows ON checkpoints",
            "DROP TRIGGER IF EXISTS tree_hashes_append_only_rows ON tree_hashes",
        ],
    };
    for statement in drop.iter().chain(statements) {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

fn has(report: &VerifyReport, wanted: impl Fn(&Problem) -> bool) -> bool {
    report.problems.iter().any(wanted)
}

async fn a_clean_log_verifies(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, RECORDS);
    assert_eq!(report.certified_keys, 1);
    assert_eq!(report.checkpoints_verified, 5, "sizes 0, 10, 20, 30, 37");
    assert_eq!(report.verified_size, RECORDS);
    assert_eq!(report.unsigned_tail, 0);
    // Against another trust domain's root, nothing verifies.
    let stranger = Site::new();
    let log = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    let report = verify(&log, &stranger.roots()).await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.checkpoints_verified, 0);
    assert!(has(&report, |p| matches!(
        p,
        Problem::KeyCertificate { .. }
    )));
}

async fn an_edited_record_is_named(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    tamper(
        &db,
        &["UPDATE records SET decision = 'allow', reasons = '[]' WHERE sequence = 7"],
    )
    .await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(!report.ok());
    assert_eq!(report.first_bad_sequence, Some(7), "{report:?}");
    assert!(has(&report, |p| *p == Problem::LeafMismatch { sequence: 7 }));
    // No proof is handed out for it: it would not verify against the signed checkpoint.
    let log = AttestationLog::open_read_only(&db.url, Some(&origin()))
        .await
        .unwrap();
    assert!(matches!(
        prove(&log, 7).await,
        Err(AuditError::ProofDoesNotVerify { sequence: 7, .. })
    ));
    assert!(prove(&log, 8).await.is_ok(), "the records around it prove");
    log.close().await;
}

async fn an_edited_record_with_a_recomputed_leaf_breaks_the_checkpoint(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    let mut forged = log.query(&Default::default()).await.unwrap()[23]
        .record
        .clone();
    log.close().await;
    forged.decision = garrison_log::Decision::Allow;
    forged.node_id = Some("f".repeat(64));
    let leaf = hex::encode(garrison_log::leaf_hash(23, &forged).unwrap());
    let edit = format!(
        "UPDATE records SET decision = 'allow', node_id = '{}', leaf_hash = '{leaf}' WHERE sequence = 23",
        "f".repeat(64)
    );
    tamper(&db, &[edit.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(!report.ok());
    // The leaf matches its row now, but not what was signed: the first checkpoint after it
    // fails, and the suspect range starts at the last checkpoint that held.
    assert!(
        has(&report, |p| *p
            == Problem::CheckpointRoot {
                size: 30,
                first_suspect: 20
            }),
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(20));
    assert_eq!(report.verified_size, 20);
}

async fn a_deleted_record_is_named(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    tamper(&db, &["DELETE FROM records WHERE sequence = 12"]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(
        has(&report, |p| *p == Problem::MissingRecord { sequence: 12 }),
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(12));
}

async fn records_removed_from_the_end_are_found(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    tamper(&db, &["DELETE FROM records WHERE sequence >= 33"]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(
        has(&report, |p| *p
            == Problem::CheckpointBeyondLog {
                size: 37,
                records: 33
            }),
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(33));
}

async fn reordered_records_are_named(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    // Swap records 4 and 5 (contents and stored leaves), keeping the sequences dense.
    tamper(
        &db,
        &[
            "UPDATE records SET sequence = 1000000 WHERE sequence = 4",
            "UPDATE records SET sequence = 4 WHERE sequence = 5",
            "UPDATE records SET sequence = 5 WHERE sequence = 1000000",
        ],
    )
    .await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(
        has(&report, |p| *p == Problem::LeafMismatch { sequence: 4 }),
        "{report:?}"
    );
    assert!(has(&report, |p| *p == Problem::LeafMismatch { sequence: 5 }));
    assert_eq!(report.first_bad_sequence, Some(4));
}

async fn a_changed_or_deleted_stored_tree_hash_is_found(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    // Record 12's leaf as stored, the hash over records 12 and 13 (stored with record 13),
    // and record 30's leaf: the first two given record 0's hash, the third deleted. The
    // records are untouched, so every checkpoint still verifies; proofs made from these
    // hashes would not.
    let (leaf_12, pair_12_13, leaf_30) = (
        tlog_tiles::stored_hash_index(0, 12),
        tlog_tiles::stored_hash_index(1, 6),
        tlog_tiles::stored_hash_index(0, 30),
    );
    let changes = [
        format!(
            "UPDATE tree_hashes SET hash = (SELECT hash FROM tree_hashes WHERE idx = 0) \
             WHERE idx IN ({leaf_12}, {pair_12_13})"
        ),
        format!("DELETE FROM tree_hashes WHERE idx = {leaf_30}"),
    ];
    let statements: Vec<&str> = changes.iter().map(String::as_str).collect();
    tamper(&db, &statements).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(!report.ok(), "{report:?}");
    assert_eq!(report.checkpoints_verified, 5, "{report:?}");
    let changed = |hashes: &[(u64, u64)]| -> Vec<Problem> {
        hashes
            .iter()
            .map(|&(index, sequence)| Problem::StoredTreeHash { index, sequence })
            .collect()
    };
    assert_eq!(
        report.problems,
        changed(&[(leaf_12, 12), (pair_12_13, 13), (leaf_30, 30)])
    );
    assert_eq!(report.first_bad_sequence, None, "the records are intact");
    // A tree built only so far is checked so far: no hash beyond it is missing. With
    // checkpoints signed beyond it, the head was lowered (which would hide edited hashes
    // beyond it and stops proofs there): that is a problem of its own.
    let unbuilt = format!(
        "DELETE FROM tree_hashes WHERE idx >= {}",
        tlog_tiles::stored_hash_count(20)
    );
    let mut conn = db.side_connection().await;
    for statement in ["UPDATE logs SET tree_size = 20", unbuilt.as_str()] {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::Connection::close(conn).await.unwrap();
    let report = reopen_and_verify(&db, &site).await;
    let mut expected = changed(&[(leaf_12, 12), (pair_12_13, 13)]);
    expected.push(Problem::LogHead {
        next_sequence: RECORDS,
        tree_size: 20,
        records_end: RECORDS,
    });
    assert_eq!(report.problems, expected, "{report:?}");
    assert_eq!(report.checkpoints_verified, 5);
}

async fn gaps_of_any_length_are_one_problem_each(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    // Record 36 moved to sequence 2^40: verify does not stand in a leaf for each of the
    // trillion sequences skipped, it names the gap.
    let far = 1u64 << 40;
    let moved = format!("UPDATE records SET sequence = {far} WHERE sequence = 36");
    tamper(&db, &[moved.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(!report.ok());
    assert!(
        has(&report, |p| *p
            == Problem::MissingRecords {
                first: 36,
                next: far
            }),
        "{report:?}"
    );
    // The checkpoint of 37 records cannot be recomputed past the gap.
    assert!(has(&report, |p| *p
        == Problem::CheckpointRoot {
            size: 37,
            first_suspect: 30
        }));
    assert_eq!(report.first_bad_sequence, Some(36));
    assert_eq!((report.records, report.verified_size), (RECORDS, 30));
    // Records 30..=35 spread a million sequences apart (and 36 already far off): six more
    // gaps, each of them longer than a page of stored hashes covers.
    // (The triggers are gone already.)
    let mut conn = db.side_connection().await;
    sqlx::query(
        "UPDATE records SET sequence = sequence * 1000000 WHERE sequence >= 30 AND sequence < 36",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let report = reopen_and_verify(&db, &site).await;
    let gaps: Vec<&Problem> = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::MissingRecords { .. }))
        .collect();
    assert_eq!(
        gaps.first(),
        Some(&&Problem::MissingRecords {
            first: 30,
            next: 30_000_000
        }),
        "{report:?}"
    );
    assert_eq!(gaps.len(), 7, "{report:?}");
    assert_eq!(report.first_bad_sequence, Some(30));
    assert_eq!((report.records, report.verified_size), (RECORDS, 30));
    assert!(
        !report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::StoredTreeHash { .. })),
        "the stored hashes are checked up to the first gap only: {report:?}"
    );
}

/// Logs the revocation of `target`; its record's sequence.
async fn revoke(site: &Site, log: &AttestationLog, target: garrison_log::RevocationTarget) -> u64 {
    let revocation = garrison_log::Revocation {
        time: site.now,
        site: support::fixture::SITE.to_owned(),
        target,
        reasons: vec!["test".to_owned()],
        policy_digest: None,
    };
    log.revoke(revocation).await.unwrap().sequence
}

async fn the_revocations_a_site_enforces_are_checked_against_its_log(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    use garrison_log::RevocationTarget::{Node, Serial};
    let revoke = async |target| revoke(&site, &log, target).await;
    let by_serial = revoke(Serial("0A1B2C3D".to_owned())).await;
    let by_node = revoke(Node("node-7".to_owned())).await;
    let by_serial_2 = revoke(Serial("0e0f".to_owned())).await;
    site.checkpoint(&log).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive.db");
    log.export_sqlite(&archive).await.unwrap();
    log.close().await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.revocations_checked, Some(3));
    // A copy of the log holds none of the site's operational state: nothing to check.
    let copy = AttestationLog::open_read_only(&format!("sqlite://{}", archive.display()), None)
        .await
        .unwrap();
    let copied = verify(&copy, &site.roots()).await.unwrap();
    copy.close().await;
    assert!(copied.ok(), "{copied:?}");
    assert_eq!(copied.revocations_checked, None);
    // Taken for a site's own database, it lacks what the attestor enforces.
    let mut taken_for_the_site = copied.clone();
    taken_for_the_site.expect_enforcement_state();
    assert!(!taken_for_the_site.ok());
    assert_eq!(
        taken_for_the_site.problems,
        vec![Problem::EnforcementStateMissing]
    );
    // The fixture's allows were appended without node states, as no attestor writes them:
    // taken for the site's own database, each allowed node's missing state is named (and
    // the enforcement state is there).
    assert_eq!(report.nodes_without_state_count, 7, "{report:?}");
    let mut site_report = report.clone();
    site_report.expect_enforcement_state();
    assert_eq!(site_report.problems.len(), 7, "{site_report:?}");
    assert!(
        site_report
            .problems
            .iter()
            .all(|p| matches!(p, Problem::NodeStateMissing { .. })),
        "{site_report:?}"
    );
    // Someone with database access un-revokes the serial (the log still says revoked),
    // points the node's revocation at another node, upper-cases the second serial (the
    // attestor compares serials as stored, lowercase, so that un-revokes it too), and
    // revokes by a row alone.
    let changes = [
        format!("DELETE FROM revocations WHERE sequence = {by_serial}"),
        format!("UPDATE revocations SET node_id = 'node-8' WHERE sequence = {by_node}"),
        format!("UPDATE revocations SET serial = upper(serial) WHERE sequence = {by_serial_2}"),
        "INSERT INTO revocations (log_id, sequence, serial, node_id, time_us) \
         SELECT id, 3, 'ff', NULL, 0 FROM logs"
            .to_owned(),
    ];
    let statements: Vec<&str> = changes.iter().map(String::as_str).collect();
    tamper(&db, &statements).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(!report.ok());
    assert_eq!(
        report.problems,
        vec![
            Problem::RevocationNotEnforced {
                sequence: by_serial
            },
            Problem::RevocationDiffers { sequence: by_node },
            Problem::RevocationDiffers {
                sequence: by_serial_2
            },
            Problem::RevocationNotLogged { sequence: 3 },
        ],
        "{report:?}"
    );
    assert_eq!(report.revocations_checked, Some(3));
    assert_eq!(report.checkpoints_verified, 6, "the log itself is intact");
}

/// The log checked against itself: an allow for a node after its revoke record, or a
/// renewal of a certificate revoked by serial, is named, in the database and in any copy;
/// an enrollment after a serial's revocation (the TPM proves itself again), a renewal of a
/// certificate issued after it, and refusals are not.
async fn an_allow_after_a_revocation_is_named(db: TestDb) {
    use garrison_log::RevocationTarget::{Node, Serial};
    use garrison_log::{Decision, Record, RecordKind};
    let (site, log) = signed_log(&db).await;
    let node = |n: &str| format!("{n:0>64}");
    let decision = |kind, who: &str, decision, serial: Option<&str>| {
        let record = Record {
            time: site.now,
            site: support::fixture::SITE.to_owned(),
            kind,
            node_id: Some(node(who)),
            spiffe_id: None,
            decision,
            reasons: vec![],
            policy_digest: None,
            evidence_digest: None,
            cert_serial: serial.map(str::to_owned),
            cert_not_after: None,
        };
        let log = log.clone();
        async move {
            log.append(NewEntry {
                record,
                evidence: None,
                node_update: None,
            })
            .await
            .unwrap()
            .sequence
        }
    };
    let revoke = async |target| revoke(&site, &log, target).await;
    use Decision::{Allow, Deny};
    use RecordKind::{Enroll, Renew};
    decision(Enroll, "a", Allow, Some("a1")).await;
    let a1_revoked = revoke(Serial("a1".to_owned())).await;
    let renewed_a1 = decision(Renew, "a", Allow, Some("a2")).await;
    decision(Renew, "a", Deny, None).await;
    decision(Enroll, "a", Allow, Some("a3")).await;
    decision(Renew, "a", Allow, Some("a4")).await;
    // A serial the node no longer holds, revoked: its next renewal presents a4.
    revoke(Serial("a3".to_owned())).await;
    decision(Renew, "a", Allow, Some("a5")).await;
    let b_revoked = revoke(Node(node("b"))).await;
    decision(Enroll, "b", Deny, None).await;
    let enrolled_b = decision(Enroll, "b", Allow, Some("b1")).await;
    let renewed_b = decision(Renew, "b", Allow, Some("b2")).await;
    site.checkpoint(&log).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive.db");
    log.export_sqlite(&archive).await.unwrap();
    log.close().await;
    let expected = vec![
        Problem::AllowAfterRevocation {
            sequence: renewed_a1,
            revoked_by: a1_revoked,
        },
        Problem::AllowAfterRevocation {
            sequence: enrolled_b,
            revoked_by: b_revoked,
        },
        Problem::AllowAfterRevocation {
            sequence: renewed_b,
            revoked_by: b_revoked,
        },
    ];
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(report.problems, expected, "{report:?}");
    assert_eq!(
        report.first_bad_sequence, None,
        "a decision that should not have been made, no altered record"
    );
    assert_eq!(
        report.checkpoints_verified, 6,
        "the records themselves are intact"
    );
    let copy = AttestationLog::open_read_only(&format!("sqlite://{}", archive.display()), None)
        .await
        .unwrap();
    let copied = verify(&copy, &site.roots()).await.unwrap();
    copy.close().await;
    assert_eq!(copied.problems, expected, "a copy of the log shows it too");
}

/// The node states a site keeps (the AK a renewal must quote with, the serial it must
/// present) against the records that wrote them: each edit is named, though every record
/// and checkpoint is intact.
async fn the_node_states_a_site_keeps_are_checked_against_its_log(db: TestDb) {
    use garrison_log::{Decision, NodeReset, NodeState, Record, RecordKind};
    let (site, log) = signed_log(&db).await;
    // Two real AKs (tpm2-tools output) and their names as the TPM computes them.
    let ak_rsa = include_bytes!("../../garrison-evidence/testdata/tpm2tools/ak_rsa.pub");
    let name_rsa = include_bytes!("../../garrison-evidence/testdata/tpm2tools/ak_rsa.name");
    let ak_ecc = include_bytes!("../../garrison-evidence/testdata/tpm2tools/ak_ecc.pub");
    let name_ecc = include_bytes!("../../garrison-evidence/testdata/tpm2tools/ak_ecc.name");
    let allow = async |kind, node: &str, serial: &str, ak: &[u8], name: &[u8]| {
        let evidence = garrison_appraisal::EvidenceRecord {
            ak_public: ak.to_vec(),
            ..Default::default()
        };
        let record = Record {
            time: site.now,
            site: support::fixture::SITE.to_owned(),
            kind,
            node_id: Some(node.to_owned()),
            spiffe_id: Some(format!("spiffe://example.org/site/s/node/{node}")),
            decision: Decision::Allow,
            reasons: vec![],
            policy_digest: None,
            evidence_digest: None,
            cert_serial: Some(serial.to_owned()),
            cert_not_after: None,
        };
        let state = NodeState {
            node_id: node.to_owned(),
            ak_name: name.to_vec(),
            spiffe_id: format!("spiffe://example.org/site/s/node/{node}"),
            identity: "{}".to_owned(),
            reset_count: 1,
            restart_count: 2,
            clock: 3,
            current_serial: Some(serial.to_owned()),
            updated: site.now,
        };
        log.append(NewEntry {
            record,
            evidence: Some(evidence.to_bytes()),
            node_update: Some(state),
        })
        .await
        .unwrap()
        .sequence
    };
    let n1_enrolled = allow(RecordKind::Enroll, "n1", "a1", ak_rsa, name_rsa).await;
    allow(RecordKind::Renew, "n1", "a2", ak_rsa, name_rsa).await;
    allow(RecordKind::Enroll, "n2", "b1", ak_ecc, name_ecc).await;
    allow(RecordKind::Enroll, "n3", "c1", ak_ecc, name_ecc).await;
    log.reset_node(NodeReset {
        time: site.now,
        site: support::fixture::SITE.to_owned(),
        node_id: "n3".to_owned(),
        reasons: vec!["tpm cleared".to_owned()],
    })
    .await
    .unwrap();
    site.checkpoint(&log).await;
    log.close().await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.node_states_checked, Some(3));

    // Someone with database access binds n1 to n2's AK (n2's TPM can now renew as n1),
    // makes another serial current for n2 and moves its state to another log (the attestor
    // reads it by node id all the same), points n3's state at an older record, adds a node
    // no record wrote, another whose record would be far beyond the log's end, and one in a
    // log the database does not hold (with foreign keys off, as the sqlite3 shell has them;
    // PostgreSQL has no key on that link).
    let keys_off = match db.backend {
        Backend::Sqlite => "PRAGMA foreign_keys = OFF",
        Backend::Postgres => "SET session_replication_role = replica",
    };
    tamper(
        &db,
        &[
            keys_off,
            "UPDATE nodes SET ak_name = (SELECT ak_name FROM nodes WHERE node_id = 'n2') WHERE node_id = 'n1'",
            "UPDATE nodes SET current_serial = 'ff', log_id = log_id + 1000 WHERE node_id = 'n2'",
            &format!("UPDATE nodes SET last_sequence = {n1_enrolled} WHERE node_id = 'n3'"),
            "INSERT INTO nodes (node_id, ak_name, spiffe_id, reset_count, restart_count, clock, \
             current_serial, identity_json, updated_us, log_id, last_sequence) \
             SELECT 'n9', ak_name, spiffe_id, reset_count, restart_count, clock, current_serial, \
             identity_json, updated_us, log_id, last_sequence FROM nodes WHERE node_id = 'n1'",
            "INSERT INTO nodes (node_id, ak_name, spiffe_id, reset_count, restart_count, clock, \
             current_serial, identity_json, updated_us, log_id, last_sequence) \
             SELECT 'n8', ak_name, spiffe_id, reset_count, restart_count, clock, current_serial, \
             identity_json, updated_us, log_id, 1000000000000 FROM nodes WHERE node_id = 'n1'",
            "INSERT INTO nodes (node_id, ak_name, spiffe_id, reset_count, restart_count, clock, \
             current_serial, identity_json, updated_us, log_id, last_sequence) \
             SELECT 'n7', ak_name, spiffe_id, reset_count, restart_count, clock, current_serial, \
             identity_json, updated_us, log_id + 1000, last_sequence FROM nodes WHERE node_id = 'n1'",
        ],
    )
    .await;
    let report = reopen_and_verify(&db, &site).await;
    let differs = |node: &str, last_sequence, fields: &[&str]| Problem::NodeStateDiffers {
        node_id: node.to_owned(),
        last_sequence,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    };
    let n2_last = n1_enrolled + 2;
    assert_eq!(
        report.problems,
        vec![
            differs("n1", n1_enrolled + 1, &["ak-name"]),
            differs("n2", n2_last, &["log", "current-serial"]),
            differs("n3", n1_enrolled, &["last-sequence"]),
            Problem::NodeStateNotLogged {
                node_id: "n7".to_owned(),
                last_sequence: n1_enrolled + 1,
            },
            Problem::NodeStateNotLogged {
                node_id: "n8".to_owned(),
                last_sequence: 1_000_000_000_000,
            },
            Problem::NodeStateNotLogged {
                node_id: "n9".to_owned(),
                last_sequence: n1_enrolled + 1,
            },
        ],
        "{report:?}"
    );
    assert_eq!(report.node_states_checked, Some(4));
    assert_eq!(report.checkpoints_verified, 6, "the log itself is intact");
}

async fn swapped_evidence_is_named(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    let record = log.query(&Default::default()).await.unwrap()[9].clone();
    log.close().await;
    let digest = record
        .record
        .evidence_digest
        .expect("record 9 has evidence");
    let swap = format!(
        "UPDATE evidence SET bytes = (SELECT bytes FROM evidence WHERE digest <> '{digest}' LIMIT 1) WHERE digest = '{digest}'"
    );
    tamper(&db, &[swap.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(
        has(&report, |p| *p
            == Problem::EvidenceMismatch {
                sequence: 9,
                digest: digest.clone()
            }),
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(9));
}

/// A signed log of 12 records in which records 2, 5, 8 and 11 name one shared evidence
/// document and record 4 its own: returns the shared digest and record 4's.
async fn shared_evidence_log(db: &TestDb, site: &Site) -> (String, String) {
    let log = AttestationLog::open(&LogConfig {
        origin: Some(origin()),
        ..db.config(16)
    })
    .await
    .unwrap();
    site.certify(&log, &site.site_ca, &site.key).await;
    site.checkpoint(&log).await;
    let shared = br#"{"stage":"enroll-complete","shared":true}"#.to_vec();
    let own = br#"{"stage":"enroll-complete","n":4}"#.to_vec();
    for i in 0..12u64 {
        let evidence = match i {
            2 | 5 | 8 | 11 => Some(shared.clone()),
            4 => Some(own.clone()),
            _ => None,
        };
        log.append(NewEntry {
            record: support::fixture::record(i, site.now),
            evidence,
            node_update: None,
        })
        .await
        .unwrap();
    }
    site.checkpoint(&log).await;
    log.close().await;
    let report = reopen_and_verify(db, site).await;
    assert!(report.ok(), "{report:?}");
    (evidence_digest(&shared), evidence_digest(&own))
}

async fn swapped_shared_evidence_is_named_for_every_record_that_names_it(db: TestDb) {
    let site = Site::new();
    let (shared, own) = shared_evidence_log(&db, &site).await;
    let swap = format!(
        "UPDATE evidence SET bytes = (SELECT bytes FROM evidence WHERE digest = '{own}') WHERE digest = '{shared}'"
    );
    tamper(&db, &[swap.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    let mismatch = |sequence| Problem::EvidenceMismatch {
        sequence,
        digest: shared.clone(),
    };
    assert_eq!(
        report.problems,
        [mismatch(2), mismatch(5), mismatch(8), mismatch(11)],
        "every record naming the swapped evidence, and nothing else"
    );
    assert_eq!(report.first_bad_sequence, Some(2));
}

async fn deleted_shared_evidence_is_named_for_every_record_that_names_it(db: TestDb) {
    let site = Site::new();
    let (shared, _) = shared_evidence_log(&db, &site).await;
    let foreign_keys_off = match db.backend {
        Backend::Sqlite => "PRAGMA foreign_keys = OFF",
        Backend::Postgres => "ALTER TABLE records DROP CONSTRAINT records_evidence_digest_fkey",
    };
    let delete = format!("DELETE FROM evidence WHERE digest = '{shared}'");
    tamper(&db, &[foreign_keys_off, delete.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    let missing = |sequence| Problem::EvidenceMissing {
        sequence,
        digest: shared.clone(),
    };
    assert_eq!(
        report.problems,
        [missing(2), missing(5), missing(8), missing(11)],
        "every record naming the deleted evidence, and nothing else"
    );
    assert_eq!(report.first_bad_sequence, Some(2));
}

/// The [`LogSource`] methods a test wrapper passes to its `log` unchanged.
macro_rules! passed_to_the_log {
    () => {
        async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
            LogSource::checkpoints(self.log).await
        }

        async fn log_key_certificates(&self) -> Result<Vec<String>, AuditError> {
            LogSource::log_key_certificates(self.log).await
        }

        async fn cosignatures(&self) -> Result<Vec<garrison_log::StoredCosignature>, AuditError> {
            LogSource::cosignatures(self.log).await
        }

        async fn witness_certificates(&self) -> Result<Vec<String>, AuditError> {
            LogSource::witness_certificates(self.log).await
        }

        async fn stored_tree_hashes(
            &self,
            first: u64,
            end: u64,
        ) -> Result<Option<garrison_audit::StoredTreeHashes>, AuditError> {
            LogSource::stored_tree_hashes(self.log, first, end).await
        }

        async fn enforced_revocations(
            &self,
        ) -> Result<Option<garrison_audit::EnforcedRevocations>, AuditError> {
            LogSource::enforced_revocations(self.log).await
        }

        async fn node_states(
            &self,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Option<Vec<garrison_log::KeptNodeState>>, AuditError> {
            LogSource::node_states(self.log, after, limit).await
        }
    };
}

/// A log read through [`LogSource`], counting the evidence reads made through it (and, with
/// `cut`, failing every `evidence_many` as a connection lost midway would).
struct Counting<'a> {
    log: &'a AttestationLog,
    evidence_calls: AtomicUsize,
    evidence_many_calls: AtomicUsize,
    digests_asked: AtomicUsize,
    cut: bool,
}

impl LogSource for Counting<'_> {
    fn origin(&self) -> Option<String> {
        LogSource::origin(self.log)
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        self.log.records_after(after, limit).await
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, AuditError> {
        self.evidence_calls.fetch_add(1, Ordering::Relaxed);
        LogSource::evidence(self.log, digest).await
    }

    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, AuditError> {
        self.evidence_many_calls.fetch_add(1, Ordering::Relaxed);
        self.digests_asked
            .fetch_add(digests.len(), Ordering::Relaxed);
        if self.cut {
            return Err(AuditError::Remote("connection lost".into()));
        }
        LogSource::evidence_many(self.log, digests).await
    }

    async fn stated_size(&self) -> Result<Option<u64>, AuditError> {
        LogSource::stated_size(self.log).await
    }

    passed_to_the_log!();
}

async fn verify_reads_a_pages_evidence_in_one_call(db: TestDb) {
    let site = Site::new();
    let (shared, _) = shared_evidence_log(&db, &site).await;
    let log = AttestationLog::open_read_only(&db.url, Some(&origin()))
        .await
        .unwrap();
    let counting = Counting {
        cut: false,
        log: &log,
        evidence_calls: AtomicUsize::new(0),
        evidence_many_calls: AtomicUsize::new(0),
        digests_asked: AtomicUsize::new(0),
    };
    let report = verify(&counting, &site.roots()).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(counting.evidence_calls.load(Ordering::Relaxed), 0);
    assert_eq!(counting.evidence_many_calls.load(Ordering::Relaxed), 1);
    assert_eq!(
        counting.digests_asked.load(Ordering::Relaxed),
        2,
        "the shared digest once, and record 4's"
    );
    // An uppercase spelling of a held digest is found, as `evidence` finds it.
    let upper = shared.to_uppercase();
    let many = LogSource::evidence_many(&log, std::slice::from_ref(&upper))
        .await
        .unwrap();
    assert_eq!(
        many.get(&upper),
        LogSource::evidence(&log, &upper).await.unwrap().as_ref()
    );
    assert!(many.contains_key(&upper));
    log.close().await;
}

async fn a_checkpoint_of_a_forked_tree_is_found(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    // The log key signs a tree of 15 records that is not this log's (a fork shown to
    // someone else), and the forged checkpoint is slipped into the table.
    let fork_root = [7u8; 32];
    let note = site.key.sign_checkpoint(15, &fork_root).unwrap();
    let insert = match db.backend {
        Backend::Sqlite => format!(
            "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) VALUES (1, 15, X'{}', 0, '{note}')",
            hex::encode(fork_root)
        ),
        Backend::Postgres => format!(
            "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) VALUES (1, 15, '\\x{}', 0, '{note}')",
            hex::encode(fork_root)
        ),
    };
    // And a second tree of 20 records, beside the log's own checkpoint of 20 (kept in a row
    // of another size: one row per size).
    let fork_20 = site.key.sign_checkpoint(20, &fork_root).unwrap();
    let insert_20 = insert
        .replace("VALUES (1, 15,", "VALUES (1, 21,")
        .replace(&note, &fork_20);
    tamper(&db, &[insert.as_str(), insert_20.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(
        report.problems,
        [
            Problem::CheckpointRow {
                size: 21,
                signed_size: 20
            },
            // No checkpoint of 15 the records reproduce: records 10..15 changed with their
            // leaves, or a fork; which, the log alone cannot tell.
            Problem::CheckpointRoot {
                size: 15,
                first_suspect: 10
            },
            // The log's own checkpoint of 20 holds: the log key signed two trees of 20.
            Problem::CheckpointFork { size: 20 },
        ],
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(10));
}

async fn a_checkpoint_signed_by_an_uncertified_key_is_refused(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    // Someone with the database but not the log key: a key of their own, same origin.
    let pkcs8 = LogKey::generate_pkcs8(&SystemRandom::new()).unwrap();
    let intruder = LogKey::from_pkcs8(&origin(), &pkcs8).unwrap();
    log.close().await;
    let size = 37u64;
    let log = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    let root = log.tree_root(size).await.unwrap();
    log.close().await;
    let note = intruder.sign_checkpoint(size, &root).unwrap();
    tamper(
        &db,
        &[format!("UPDATE checkpoints SET note = '{note}' WHERE size = 37").as_str()],
    )
    .await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(
        has(&report, |p| matches!(
            p,
            Problem::CheckpointSignature { size: 37, .. }
        )),
        "{report:?}"
    );
    assert_eq!(report.verified_size, 30);
}

async fn a_log_key_certified_by_another_sites_ca_is_refused(db: TestDb) {
    let site = Site::new();
    let log = AttestationLog::open(&garrison_log::LogConfig {
        origin: Some(origin()),
        ..db.config(16)
    })
    .await
    .unwrap();
    // Site s2's CA, under the same hub and root, certifies this site's log key: it can only
    // say /site/s2/log, which is not this log's identity.
    let other = site.other_site_ca("s2");
    site.certify(&log, &other, &site.key).await;
    log.append(support::fixture::entry(0, site.now))
        .await
        .unwrap();
    site.checkpoint(&log).await;
    log.close().await;
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(report.certified_keys, 0, "{report:?}");
    assert_eq!(report.checkpoints_verified, 0);
    assert!(has(
        &report,
        |p| matches!(p, Problem::KeyCertificate { reason } if reason.contains("/site/s2/log"))
    ));
    assert!(has(&report, |p| matches!(
        p,
        Problem::CheckpointSignature { .. }
    )));
    // The root cannot certify a log key at all (it states no site).
    assert!(
        site.root
            .issue_site_role_svid(
                garrison_ca::SiteRole::Log,
                time::Duration::days(1),
                garrison_ca::SubjectKey::LogKey(site.key.public_key()),
                site.now,
                &SystemRandom::new(),
            )
            .is_err()
    );
}

async fn proofs_verify_with_an_independent_rfc9162_verifier(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    for sequence in [0, 1, 9, 10, 21, 36] {
        let text = prove(&log, sequence).await.unwrap().to_text();
        let proof = InclusionProof::parse(&text).unwrap();
        assert_eq!(proof.index, sequence);
        let checkpoint =
            verify_checkpoint(&proof.checkpoint, &origin(), &site.key.public_key()).unwrap();
        assert_eq!(checkpoint.size, RECORDS);
        let leaf = leaf_hash_of(proof.extra.as_deref().unwrap());
        assert!(rfc9162::verify_inclusion(
            sequence,
            checkpoint.size,
            &leaf,
            &proof.hashes,
            &checkpoint.root
        ));
        // The record in the proof is the record in the log.
        let stored = &log.query(&Default::default()).await.unwrap()[sequence as usize];
        assert_eq!(leaf, stored.leaf_hash);
        // One flipped bit anywhere and it fails.
        let mut bad = proof.hashes.clone();
        if let Some(first) = bad.first_mut() {
            first[0] ^= 1;
            assert!(!rfc9162::verify_inclusion(
                sequence,
                checkpoint.size,
                &leaf,
                &bad,
                &checkpoint.root
            ));
        }
    }
    assert!(prove(&log, RECORDS).await.is_err(), "no such record");
    // Consistency between every pair of signed checkpoints (the empty tree has none to
    // prove: RFC 9162 defines proofs from size 1), by the independent verifier.
    let checkpoints = log.checkpoints().await.unwrap();
    for old in checkpoints.iter().filter(|c| c.size > 0) {
        for new in checkpoints.iter().filter(|c| c.size >= old.size) {
            let proof = log.consistency_proof(old.size, new.size).await.unwrap();
            assert!(rfc9162::verify_consistency(
                old.size,
                new.size,
                &old.root_hash,
                &new.root_hash,
                &proof
            ));
        }
    }
    log.close().await;
}

async fn an_export_copies_evidence_shared_across_pages_once(db: TestDb) {
    // 2,100 records (the database export copies 2,000 per page), every 100th naming one
    // evidence blob a fleet shares: it is copied, and counted, once, not once per page.
    let site = Site::new();
    let log = AttestationLog::open(&LogConfig {
        origin: Some(origin()),
        ..db.config(64)
    })
    .await
    .unwrap();
    let shared = br#"{"stage":"enroll-complete","shared":true}"#.to_vec();
    // Two waves, each appended concurrently (so the writer batches them) and awaited whole:
    // sequences 0..2000 (20 naming the shared blob) on the first page, 2000..2100 (one) on
    // the second.
    for wave in [0..2_000u64, 2_000..2_100] {
        let mut appends = tokio::task::JoinSet::new();
        for i in wave {
            let (log, shared) = (log.clone(), shared.clone());
            let time = site.now;
            appends.spawn(async move {
                log.append(NewEntry {
                    record: support::fixture::record(i, time),
                    evidence: (i % 100 == 0).then_some(shared),
                    node_update: None,
                })
                .await
                .map(|_| ())
            });
        }
        while let Some(done) = appends.join_next().await {
            done.unwrap().unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("shared.db");
    let summary = log.export_sqlite(&archive).await.unwrap();
    assert_eq!(summary.records, 2_100);
    assert_eq!(summary.evidence, 1, "{summary:?}");
    // The same through a log source (what an export through the Audit service drives).
    let through_source = dir.path().join("shared-through-source.db");
    let summary = export(&log, &through_source).await.unwrap();
    assert_eq!(
        (summary.records, summary.evidence),
        (2_100, 1),
        "{summary:?}"
    );
    log.close().await;
    let copy = AttestationLog::open_read_only(&format!("sqlite://{}", archive.display()), None)
        .await
        .unwrap();
    let digest = evidence_digest(&shared);
    assert_eq!(copy.evidence(&digest).await.unwrap(), Some(shared));
    let naming = copy
        .query(&garrison_log::Query::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.record.evidence_digest.as_deref() == Some(digest.as_str()))
        .count();
    copy.close().await;
    assert_eq!(naming, 21);
}

async fn an_export_verifies_alone_and_keeps_tampering_visible(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.db");
    let summary = log.export_sqlite(&clean).await.unwrap();
    assert_eq!(summary.records, RECORDS);
    assert_eq!(summary.checkpoints, 5);
    assert_eq!(summary.key_certificates, 1);
    assert_eq!(summary.evidence, 13, "every third record has evidence");
    assert!(log.export_sqlite(&clean).await.is_err(), "never overwrites");
    log.close().await;
    let archive = AttestationLog::open_read_only(&format!("sqlite://{}", clean.display()), None)
        .await
        .unwrap();
    let report = verify(&archive, &site.roots()).await.unwrap();
    assert!(report.ok(), "{report:?}");
    for beyond in [RECORDS, u64::MAX] {
        assert!(
            matches!(
                prove(&archive, beyond).await,
                Err(AuditError::NoSuchRecord { sequence }) if sequence == beyond
            ),
            "record #{beyond}"
        );
    }
    let proof = prove(&archive, 5).await.unwrap();
    assert_eq!(proof.index, 5);
    archive.close().await;
    // Tampered at the source, exported: the archive shows the same problem.
    tamper(
        &db,
        &["UPDATE records SET site = 'elsewhere' WHERE sequence = 3"],
    )
    .await;
    let log = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    let tampered = dir.path().join("tampered.db");
    log.export_sqlite(&tampered).await.unwrap();
    log.close().await;
    let archive = AttestationLog::open_read_only(&format!("sqlite://{}", tampered.display()), None)
        .await
        .unwrap();
    let report = verify(&archive, &site.roots()).await.unwrap();
    assert_eq!(report.first_bad_sequence, Some(3), "{report:?}");
    archive.close().await;
}

/// `garrison_audit::export` (what `garrison audit export --attestor` runs over the Audit
/// service) reads only through [`LogSource`] and keeps what it read as read: a clean log's
/// archive verifies alone and proves like the database; a tampered log's archive shows the
/// same problems, at the same sequences, as the database does.
async fn an_export_read_through_a_log_source_keeps_every_tampering_visible(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    let dir = tempfile::tempdir().unwrap();
    let source = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    let clean = dir.path().join("clean.db");
    let summary = export(&source, &clean).await.unwrap();
    assert_eq!(summary.records, RECORDS);
    assert_eq!(summary.checkpoints, 5);
    assert_eq!(summary.key_certificates, 1);
    assert_eq!(summary.evidence, 13, "every third record has evidence");
    assert!(
        matches!(export(&source, &clean).await, Err(AuditError::Log(_))),
        "never overwrites"
    );
    // A source failing midway leaves no partial archive behind.
    let cut = Counting {
        log: &source,
        evidence_calls: AtomicUsize::new(0),
        evidence_many_calls: AtomicUsize::new(0),
        digests_asked: AtomicUsize::new(0),
        cut: true,
    };
    let partial = dir.path().join("partial.db");
    assert!(matches!(
        export(&cut, &partial).await,
        Err(AuditError::Remote(_))
    ));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let archive = AttestationLog::open_read_only(&format!("sqlite://{}", clean.display()), None)
        .await
        .unwrap();
    let report = verify(&archive, &site.roots()).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoints_verified, 5);
    for sequence in [0, 5, RECORDS - 1] {
        assert_eq!(
            prove(&archive, sequence).await.unwrap(),
            prove(&source, sequence).await.unwrap(),
            "the archive's tree, built from the served leaves, proves like the database's"
        );
    }
    archive.close().await;
    let records = source.query(&Default::default()).await.unwrap();
    source.close().await;

    // An edited record, swapped evidence and deleted evidence.
    let digest = |sequence: usize| records[sequence].record.evidence_digest.clone().unwrap();
    let (swapped, deleted) = (digest(9), digest(15));
    let foreign_keys_off = match db.backend {
        Backend::Sqlite => "PRAGMA foreign_keys = OFF",
        Backend::Postgres => "ALTER TABLE records DROP CONSTRAINT records_evidence_digest_fkey",
    };
    let zero_key = match db.backend {
        Backend::Sqlite => "zeroblob(32)",
        Backend::Postgres => "decode(repeat('00', 32), 'hex')",
    };
    let statements = [
        "UPDATE records SET site = 'elsewhere' WHERE sequence = 3".to_owned(),
        format!(
            "UPDATE evidence SET bytes = (SELECT bytes FROM evidence WHERE digest <> '{swapped}' LIMIT 1) WHERE digest = '{swapped}'"
        ),
        foreign_keys_off.to_owned(),
        format!("DELETE FROM evidence WHERE digest = '{deleted}'"),
        "DELETE FROM records WHERE sequence = 20".to_owned(),
        format!(
            "INSERT INTO log_key_certificates (log_id, digest, public_key, chain_pem, added_us) \
             SELECT id, '{}', {zero_key}, 'not a certificate', 0 FROM logs",
            "ab".repeat(32)
        ),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    tamper(&db, &statements).await;
    let at_source = reopen_and_verify(&db, &site).await;
    assert!(
        has(&at_source, |p| *p == Problem::LeafMismatch { sequence: 3 })
            && has(&at_source, |p| *p
                == Problem::EvidenceMismatch {
                    sequence: 9,
                    digest: swapped.clone()
                })
            && has(&at_source, |p| *p
                == Problem::EvidenceMissing {
                    sequence: 15,
                    digest: deleted.clone()
                })
            && has(&at_source, |p| *p
                == Problem::MissingRecord { sequence: 20 })
            && has(&at_source, |p| matches!(p, Problem::KeyCertificate { .. })),
        "{at_source:?}"
    );
    let source = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    let tampered = dir.path().join("tampered.db");
    let summary = export(&source, &tampered).await.unwrap();
    // The database's own export keeps the same.
    let from_database = dir.path().join("tampered-from-database.db");
    let database_summary = source.export_sqlite(&from_database).await.unwrap();
    source.close().await;
    assert_eq!(
        summary.records,
        RECORDS - 1,
        "all but the deleted record, the one whose evidence is gone included"
    );
    assert_eq!(summary.evidence, 12);
    assert_eq!(summary.key_certificates, 2, "the bad chain is kept");
    assert_eq!(database_summary.records, RECORDS - 1);
    for archived in [&tampered, &from_database] {
        let archive =
            AttestationLog::open_read_only(&format!("sqlite://{}", archived.display()), None)
                .await
                .unwrap();
        let in_archive = verify(&archive, &site.roots()).await.unwrap();
        archive.close().await;
        assert_eq!(in_archive.problems, at_source.problems, "{archived:?}");
        assert_eq!(in_archive.first_bad_sequence, Some(3));
    }
}

/// A source that does not stop: after the log's records it makes up more, without end
/// (`Endless`); or it ignores `after` and serves the first page again and again
/// (`Repeating`); or it serves a record more than each page asked for (`Oversized`).
struct Runaway<'a> {
    log: &'a AttestationLog,
    claimed: u64,
    misbehaves: Misbehaviour,
}

#[derive(Clone, Copy, PartialEq)]
enum Misbehaviour {
    Endless,
    Repeating,
    Oversized,
}

impl LogSource for Runaway<'_> {
    fn origin(&self) -> Option<String> {
        LogSource::origin(self.log)
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        match self.misbehaves {
            Misbehaviour::Repeating => return self.log.records_after(None, limit).await,
            Misbehaviour::Oversized | Misbehaviour::Endless => {}
        }
        let mut page = self.log.records_after(after, limit).await?;
        let oversized = self.misbehaves == Misbehaviour::Oversized;
        if page.is_empty() || oversized {
            let template = self.log.records_after(None, 1).await?.remove(0);
            let first = after.map_or(0, |a| a + 1);
            let served = u64::from(limit) + u64::from(oversized);
            page = (first..first + served)
                .map(|sequence| StoredRecord {
                    sequence,
                    ..template.clone()
                })
                .collect();
        }
        Ok(page)
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, AuditError> {
        LogSource::evidence(self.log, digest).await
    }

    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, AuditError> {
        LogSource::evidence_many(self.log, digests).await
    }

    async fn stated_size(&self) -> Result<Option<u64>, AuditError> {
        Ok(Some(self.claimed))
    }

    passed_to_the_log!();
}

/// An attestor serving its Audit service could otherwise fill the auditor's disk: the export
/// stops at the size the source stated, and refuses a source that serves a page again.
async fn an_export_writes_no_record_beyond_what_its_source_claimed(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    let dir = tempfile::tempdir().unwrap();
    let source = AttestationLog::open_read_only(&db.url, None).await.unwrap();
    for (claimed, name) in [
        (RECORDS, "endless.db"),
        (250, "claims-more.db"),
        (10, "claims-less.db"),
    ] {
        let runaway = Runaway {
            log: &source,
            claimed,
            misbehaves: Misbehaviour::Endless,
        };
        let path = dir.path().join(name);
        let summary = export(&runaway, &path).await.unwrap();
        assert_eq!(summary.records, claimed, "{name}");
        // `verify` and `replay` read the records the same way: they end too.
        let read = verify(&runaway, &site.roots()).await.unwrap();
        assert_eq!(read.records, claimed, "{name}");
        let archive = AttestationLog::open_read_only(&format!("sqlite://{}", path.display()), None)
            .await
            .unwrap();
        let report = verify(&archive, &site.roots()).await.unwrap();
        archive.close().await;
        if claimed == RECORDS {
            assert!(report.ok(), "{name}: {report:?}");
        } else {
            assert!(
                !report.ok(),
                "{name}: made-up or missing records are reported"
            );
        }
    }
    // Claiming more than a page, it serves its first page again, or pages too large.
    for (misbehaves, refusal) in [
        (Misbehaviour::Repeating, "served after"),
        (Misbehaviour::Oversized, "records served for a page of"),
    ] {
        let runaway = Runaway {
            log: &source,
            claimed: 250,
            misbehaves,
        };
        let path = dir.path().join("refused.db");
        let refused = export(&runaway, &path).await;
        assert!(
            matches!(&refused, Err(AuditError::Remote(m)) if m.contains(refusal)),
            "{refused:?}"
        );
        assert!(!path.exists(), "nothing is left of a refused export");
        let refused = verify(&runaway, &site.roots()).await;
        assert!(
            matches!(&refused, Err(AuditError::Remote(m)) if m.contains(refusal)),
            "{refused:?}"
        );
    }
    source.close().await;
}

/// The log's head (the `logs` row the attestor appends from) must state the records held:
/// lowered, the attestor's appends would collide with records; raised, they would leave a
/// gap; a tree size lowered below the checkpoints signed hides stored hashes beyond it.
async fn a_log_head_that_misstates_the_records_is_found(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    log.close().await;
    // (A tree larger than the log the schema refuses.)
    for (next_sequence, tree_size) in [(3, 3), (100, 100), (RECORDS, 10)] {
        // (The head is no append-only row: the writer updates it.)
        set_head(&db, next_sequence, tree_size).await;
        let report = reopen_and_verify(&db, &site).await;
        // A tree size lowered also leaves the hashes beyond it outside the tree.
        let mut expected = Vec::new();
        if tree_size < RECORDS {
            let count =
                tlog_tiles::stored_hash_count(RECORDS) - tlog_tiles::stored_hash_count(tree_size);
            expected.push(Problem::StrayTreeHashes { count });
        }
        expected.push(Problem::LogHead {
            next_sequence,
            tree_size,
            records_end: RECORDS,
        });
        assert_eq!(report.problems, expected, "{report:?}");
        assert!(!report.ok());
        set_head(&db, RECORDS, RECORDS).await;
    }
    assert!(reopen_and_verify(&db, &site).await.ok());
    // A stored tree hash where the tree has none yet: the writer's insert at that index
    // would fail once the log grows to it.
    let stray = match db.backend {
        Backend::Sqlite => {
            "INSERT INTO tree_hashes (log_id, idx, hash) VALUES (1, 1000, zeroblob(32))"
        }
        Backend::Postgres => {
            "INSERT INTO tree_hashes (log_id, idx, hash) VALUES (1, 1000, decode(repeat('00', 32), 'hex'))"
        }
    };
    tamper(&db, &[stray]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(
        report.problems,
        [Problem::StrayTreeHashes { count: 1 }],
        "{report:?}"
    );
}

async fn set_head(db: &TestDb, next_sequence: u64, tree_size: u64) {
    let head = format!("UPDATE logs SET next_sequence = {next_sequence}, tree_size = {tree_size}");
    let mut conn = db.side_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(head))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
}

/// A signed note copied into a row of a larger size (an insert, which needs no key) must not
/// pass: the attestor reads the row's size to decide what is signed.
async fn a_signed_checkpoint_kept_under_another_size_is_found(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    let first = log.checkpoints().await.unwrap()[0].size;
    log.close().await;
    let copy = format!(
        "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) \
         SELECT log_id, 1000, root_hash, signed_us, note FROM checkpoints WHERE size = {first}"
    );
    tamper(&db, &[copy.as_str()]).await;
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(
        report.problems,
        [Problem::CheckpointRow {
            size: 1000,
            signed_size: first,
        }],
        "{report:?}"
    );
    assert!(!report.ok());
    // The copy is not counted as another checkpoint verified (the log has five).
    assert_eq!(report.checkpoints_verified, 5, "{report:?}");
}

/// The event logs the decisions were made over are evidence of their own (stored once per
/// digest, named from inside the evidence records): one deleted under an allow, or changed,
/// is named for every record that names it. A refusal's event log may be kept as its digest
/// alone (one that did not replay to its quote is bytes of the sender's choosing).
async fn a_deleted_or_changed_event_log_is_named(db: TestDb) {
    use garrison_log::{Decision, Record, RecordKind};
    let (site, log) = signed_log(&db).await;
    let append = async |kind, decision, node: &str, event_log: &[u8], store: bool| {
        let evidence = garrison_appraisal::EvidenceRecord {
            event_log_sha256: garrison_log::evidence_digest(event_log),
            ..Default::default()
        };
        let record = Record {
            time: site.now,
            site: support::fixture::SITE.to_owned(),
            kind,
            node_id: Some(node.to_owned()),
            spiffe_id: None,
            decision,
            reasons: if decision == Decision::Allow {
                vec![]
            } else {
                vec!["policy".to_owned()]
            },
            policy_digest: None,
            evidence_digest: None,
            cert_serial: None,
            cert_not_after: None,
        };
        let entry = NewEntry {
            record,
            evidence: Some(evidence.to_bytes()),
            node_update: None,
        };
        let blobs = if store {
            vec![event_log.to_vec()]
        } else {
            vec![]
        };
        log.append_with_blobs(entry, blobs).await.unwrap().sequence
    };
    let fleet_log = b"a fleet's measured boot".as_slice();
    let own_log = b"one node's measured boot".as_slice();
    let enrolled = append(RecordKind::Enroll, Decision::Allow, "n1", fleet_log, true).await;
    let renewed = append(RecordKind::Renew, Decision::Allow, "n1", fleet_log, false).await;
    append(RecordKind::Enroll, Decision::Deny, "n2", b"junk", false).await;
    let other = append(RecordKind::Enroll, Decision::Allow, "n3", own_log, true).await;
    site.checkpoint(&log).await;
    log.close().await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(report.ok(), "{report:?}");

    let fleet = garrison_log::evidence_digest(fleet_log);
    let own = garrison_log::evidence_digest(own_log);
    let delete = format!("DELETE FROM evidence WHERE digest = '{fleet}'");
    let change = format!("UPDATE evidence SET bytes = bytes || bytes WHERE digest = '{own}'");
    let mut conn = db.side_connection().await;
    for statement in [delete, change] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::Connection::close(conn).await.unwrap();
    let report = reopen_and_verify(&db, &site).await;
    assert_eq!(
        report.problems,
        [
            Problem::EventLogMissing {
                sequence: enrolled,
                digest: fleet.clone(),
            },
            Problem::EventLogMissing {
                sequence: renewed,
                digest: fleet,
            },
            Problem::EventLogMismatch {
                sequence: other,
                digest: own,
            },
        ],
        "{report:?}"
    );
    assert_eq!(report.first_bad_sequence, Some(enrolled));
}

/// Someone with database access cuts the log back to 33 records and removes everything that
/// said it was longer (the tree's hashes, the checkpoints beyond, the head). What is left is
/// a consistent shorter log: nothing kept with it shows the cut. A checkpoint the auditor
/// saw before does.
async fn a_log_cut_back_with_its_checkpoints_is_found_against_one_seen_before(db: TestDb) {
    let (site, log) = signed_log(&db).await;
    let seen = log.latest_checkpoint().await.unwrap().unwrap();
    log.close().await;
    assert_eq!(seen.size, RECORDS);
    let cut = [
        "DELETE FROM records WHERE sequence >= 33".to_owned(),
        format!(
            "DELETE FROM tree_hashes WHERE idx >= {}",
            tlog_tiles::stored_hash_count(33)
        ),
        "DELETE FROM checkpoints WHERE size > 33".to_owned(),
        "UPDATE logs SET next_sequence = 33, tree_size = 33".to_owned(),
    ];
    let statements: Vec<&str> = cut.iter().map(String::as_str).collect();
    tamper(&db, &statements).await;
    let report = reopen_and_verify(&db, &site).await;
    assert!(report.ok(), "nothing kept shows the cut: {report:?}");
    assert_eq!(report.records, 33);

    let log = AttestationLog::open_read_only(&db.url, Some(&origin()))
        .await
        .unwrap();
    let against =
        garrison_audit::verify_against(&log, &site.roots(), std::slice::from_ref(&seen.note))
            .await
            .unwrap();
    assert_eq!(
        against.problems,
        [Problem::CheckpointBeyondLog {
            size: RECORDS,
            records: 33
        }],
        "{against:?}"
    );
    assert_eq!(against.checkpoints_given, 1);
    assert!(!against.ok());
    // A checkpoint given must be the log's own, signed by a certified key.
    let forged = seen.note.replace("\n\n", "\n\nx");
    match garrison_audit::verify_against(&log, &site.roots(), &[forged]).await {
        Err(AuditError::GivenCheckpoint { index: 0, .. }) => {}
        other => panic!("expected the given checkpoint refused, got {other:?}"),
    }
    log.close().await;
}
