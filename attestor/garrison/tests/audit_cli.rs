//! `garrison audit` as an auditor runs it, over a real signed log (SQLite): `prove` output
//! checked by the independent RFC 9162 verifier, `verify` exit codes and the first bad
//! record named after tampering, `export` then `verify` on the archive, read-only opens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../../garrison-audit/tests/support/fixture.rs"]
mod fixture;
#[path = "../../garrison-log/tests/rfc9162/mod.rs"]
mod rfc9162;

use std::process::Command;

use garrison_log::LogConfig;
use garrison_transparency::{InclusionProof, leaf_hash_of, verify_checkpoint};

fn garrison(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Signed {
    _dir: tempfile::TempDir,
    site: fixture::Site,
    db: String,
    root: String,
}

async fn signed_log(records: u64) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("log.db").display());
    let site = fixture::Site::new();
    let log = site
        .build_log(
            LogConfig {
                url: db.clone(),
                origin: None,
                max_batch: 8,
                max_connections: 2,
            },
            records,
        )
        .await;
    log.close().await;
    let root = dir.path().join("root.pem");
    std::fs::write(&root, site.root_pem()).unwrap();
    Signed {
        root: root.display().to_string(),
        _dir: dir,
        site,
        db,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_the_cli_verify_with_the_independent_rfc9162_verifier() {
    let signed = signed_log(21).await;
    for sequence in [0u64, 5, 20] {
        let (ok, text, err) = garrison(&[
            "audit",
            "prove",
            "--db",
            &signed.db,
            "--sequence",
            &sequence.to_string(),
        ]);
        assert!(ok, "{err}");
        let proof = InclusionProof::parse(&text).unwrap();
        let checkpoint = verify_checkpoint(
            &proof.checkpoint,
            &fixture::origin(),
            &signed.site.key.public_key(),
        )
        .unwrap();
        let leaf = leaf_hash_of(proof.extra.as_deref().unwrap());
        assert!(rfc9162::verify_inclusion(
            proof.index,
            checkpoint.size,
            &leaf,
            &proof.hashes,
            &checkpoint.root
        ));
        // check-proof agrees, against the root alone.
        let file = signed._dir.path().join(format!("{sequence}.tlog-proof"));
        std::fs::write(&file, &text).unwrap();
        let (ok, out, err) = garrison(&[
            "audit",
            "check-proof",
            file.to_str().unwrap(),
            "--root",
            &signed.root,
            "--db",
            &signed.db,
        ]);
        assert!(
            ok && out.contains(&format!("OK: record #{sequence}")),
            "{out}{err}"
        );
        // A proof edited to claim another record fails.
        let forged = text.replacen(
            &format!("index {sequence}\n"),
            &format!("index {}\n", sequence + 1),
            1,
        );
        std::fs::write(&file, forged).unwrap();
        let (ok, out, _) = garrison(&[
            "audit",
            "check-proof",
            file.to_str().unwrap(),
            "--root",
            &signed.root,
            "--db",
            &signed.db,
        ]);
        assert!(!ok && out.contains("BAD"), "{out}");
    }
    let (ok, _, err) = garrison(&["audit", "prove", "--db", &signed.db, "--sequence", "21"]);
    assert!(!ok && err.contains("not in the log"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_clean_log_and_names_the_first_bad_record() {
    let signed = signed_log(25).await;
    let (ok, out, err) = garrison(&[
        "audit",
        "verify",
        "--db",
        &signed.db,
        "--root",
        &signed.root,
    ]);
    assert!(ok && out.contains("OK: every record"), "{out}{err}");
    // The archive verifies alone.
    let archive = signed._dir.path().join("archive.db");
    let archive = archive.to_str().unwrap();
    let (ok, out, err) = garrison(&["audit", "export", "--db", &signed.db, "--out", archive]);
    assert!(ok && out.contains("25 records"), "{out}{err}");
    let (ok, out, _) = garrison(&[
        "audit",
        "verify",
        "--db",
        archive,
        "--root",
        &signed.root,
        "--json",
    ]);
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["records"], 25);
    // Checkpoints seen before, given back: one as a proof file, one as its note alone.
    let proof = signed._dir.path().join("record.tlog-proof");
    let (ok, _, err) = garrison(&[
        "audit",
        "prove",
        "--db",
        &signed.db,
        "--sequence",
        "3",
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let note = signed._dir.path().join("checkpoint.note");
    let proof_text = std::fs::read_to_string(&proof).unwrap();
    let (_, checkpoint) = proof_text.split_once("\n\n").unwrap();
    std::fs::write(&note, checkpoint).unwrap();
    let (ok, out, err) = garrison(&[
        "audit",
        "verify",
        "--db",
        archive,
        "--root",
        &signed.root,
        "--checkpoint",
        proof.to_str().unwrap(),
        "--checkpoint",
        note.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains("checkpoints given with --checkpoint: 2"),
        "{out}{err}"
    );
    let (ok, _, err) = garrison(&[
        "audit",
        "verify",
        "--db",
        archive,
        "--root",
        &signed.root,
        "--checkpoint",
        signed.root.as_str(),
    ]);
    assert!(!ok && err.contains("checkpoint given #0"), "{err}");
    let huge = signed._dir.path().join("huge.note");
    std::fs::write(&huge, vec![b'x'; 100_000]).unwrap();
    let (ok, _, err) = garrison(&[
        "audit",
        "verify",
        "--db",
        archive,
        "--root",
        &signed.root,
        "--checkpoint",
        huge.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("more than a checkpoint"), "{err}");
    // Someone with database access edits record 15 (a refusal) of the live log into an admission.
    let path = signed.db.strip_prefix("sqlite://").unwrap();
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
    for statement in [
        "DROP TRIGGER records_append_only_update",
        "UPDATE records SET decision = 'allow', reasons = '[]' WHERE sequence = 15",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    let (ok, out, _) = garrison(&[
        "audit",
        "verify",
        "--db",
        &signed.db,
        "--root",
        &signed.root,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FIRST BAD RECORD: #15") && out.contains("TAMPERED"),
        "{out}"
    );
    // The archive taken before the edit still verifies: an auditor compares the two.
    let (ok, _, _) = garrison(&["audit", "verify", "--db", archive, "--root", &signed.root]);
    assert!(ok);
}

#[test]
fn audit_commands_never_create_or_write_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let missing = missing.to_str().unwrap();
    let (ok, _, err) = garrison(&["audit", "query", "--db", missing]);
    assert!(!ok && err.contains("no such file"), "{err}");
    let (ok, _, err) = garrison(&["audit", "query", "--db", &format!("sqlite://{missing}")]);
    assert!(!ok, "{err}");
    assert!(!std::path::Path::new(missing).exists(), "nothing created");
}

/// `audit ear` against a database: no signing key there, so refused without --unsigned; with
/// it, the claims of the node's latest decision (here a refusal after an allow), unsigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_results_offline_are_unsigned_claims_and_only_on_request() {
    let signed = signed_log(0).await;
    let log = garrison_log::AttestationLog::open(&LogConfig {
        url: signed.db.clone(),
        origin: Some(fixture::origin()),
        max_batch: 1,
        max_connections: 1,
    })
    .await
    .unwrap();
    let node = "cd".repeat(32);
    for (kind, decision, reasons) in [
        (
            garrison_log::RecordKind::Enroll,
            garrison_log::Decision::Allow,
            vec![],
        ),
        (
            garrison_log::RecordKind::Reject,
            garrison_log::Decision::Deny,
            vec!["quote-signature".to_owned(), "bad signature".to_owned()],
        ),
    ] {
        let mut record = fixture::record(0, signed.site.now);
        record.kind = kind;
        record.decision = decision;
        record.node_id = Some(node.clone());
        if decision == garrison_log::Decision::Deny {
            record.cert_serial = None;
        }
        record.reasons = reasons;
        record.policy_digest = None;
        log.append(garrison_log::NewEntry {
            record,
            evidence: None,
            node_update: None,
        })
        .await
        .unwrap();
    }
    log.close().await;
    let ear = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "ear",
            "--db",
            &signed.db,
            "--node",
            &node,
            "--root",
            &signed.root,
        ];
        args.extend_from_slice(extra);
        garrison(&args)
    };
    let (ok, _, err) = ear(&[]);
    assert!(!ok && err.contains("--unsigned"), "{err}");
    let (ok, out, err) = ear(&["--unsigned"]);
    assert!(ok, "{err}");
    let claims: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
    assert_eq!(claims["ear_status"], "contraindicated");
    let node_claims = &claims["submods"]["node"];
    assert_eq!(
        node_claims["ear_trustworthiness_vector"]["instance-identity"],
        99
    );
    assert_eq!(
        node_claims["ear_verifier_claims"]["garrison_log_sequence"],
        1
    );
    // A node the log never decided about.
    let (ok, _, err) = garrison(&[
        "audit",
        "ear",
        "--db",
        &signed.db,
        "--node",
        &"ef".repeat(32),
        "--root",
        &signed.root,
        "--unsigned",
    ]);
    assert!(!ok && err.contains("no decision"), "{err}");
}
