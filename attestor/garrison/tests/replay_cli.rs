//! `garrison audit replay` on the log of a real attestor process whose policy changed while
//! it ran: node-2 is refused under the strict bundle (#1), then admitted under the lab
//! bundle (#2) after SIGHUP. Replay must pick the bundle in force at each record to
//! reproduce both; a what-if with the strict bundle lists node-2's allow as a change; an
//! edited decision in the database makes replay exit 1. Through the Audit service
//! (`--attestor`, an auditor's SVID) replay gives the same verdicts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use garrison_log::{AttestationLog, Query, RecordKind, StoredCosignature};
use garrison_testbed::{GOOD_LOG, INSECURE_BOOT_LOG, Node, Site, free_local_address};
use garrison_transparency::WitnessKey;
use ring::rand::SystemRandom;
use sqlx::Connection;

const LAB_POLICY: &str =
    include_str!("../../../policy/policies/lab-permissive-INSECURE/admission.rego");
const LAB_DATA: &str = include_str!("../../../policy/policies/lab-permissive-INSECURE/data.json");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sign_lab(site: &Site, sequence: u64) -> Vec<u8> {
    let dir = site.dir.join("ca/policy-signer");
    let signer = garrison_policy::BundleSigner::from_pem(
        &std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("chain.pem")).unwrap(),
    )
    .unwrap();
    let mut files = garrison_policy::BundleFiles::new();
    files.insert("admission.rego".into(), LAB_POLICY.as_bytes().to_vec());
    files.insert("data.json".into(), LAB_DATA.as_bytes().to_vec());
    let signed = signer
        .sign(
            &files,
            "lab",
            sequence,
            time::OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
    garrison_policy::encode_archive(&signed)
}

fn garrison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn enroll_until(config: &garrison_agent::AgentConfig) -> garrison_agent::Enrolled {
    for _ in 0..50 {
        if let Ok(enrolled) = garrison_agent::enroll_once(config).await {
            return enrolled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never admitted");
}

/// An auditor's SVID (spiffe://<td>/auditor/replay) from the root, and its key.
fn auditor_identity(site: &Site, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let id = garrison_ca::SpiffeId::parse(&format!(
        "spiffe://{}/auditor/replay",
        garrison_testbed::TRUST_DOMAIN
    ))
    .unwrap();
    let issued = site
        .root_ca
        .issue_svid(
            garrison_ca::SvidParams {
                spiffe_id: id,
                ttl: time::Duration::hours(1),
                max_ttl: time::Duration::hours(1),
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            time::OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
    let (svid, key) = (dir.join("auditor-svid.pem"), dir.join("auditor-key.pem"));
    std::fs::write(&svid, garrison_ca::certificates_to_pem(&issued.chain)).unwrap();
    std::fs::write(&key, issued.key.unwrap().to_pkcs8_pem().expose()).unwrap();
    (svid, key)
}

/// Has a witness key certified by the testbed's hub CA cosign the log's latest checkpoint,
/// and keeps the cosignature and the key's chain in the log at `database`, as a site keeps
/// what its hub sent. Returns the checkpoint's size.
async fn cosign_latest_checkpoint(dir: &Path, database: &str) -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let rng = SystemRandom::new();
    let hub = garrison_attestor::server::load_authority(&dir.join("ca/hub")).unwrap();
    let pkcs8 = WitnessKey::generate_pkcs8(&rng).unwrap();
    let witness = WitnessKey::from_pkcs8(garrison_testbed::TRUST_DOMAIN, &pkcs8).unwrap();
    let issued = hub
        .issue_hub_role_svid(
            garrison_ca::HubRole::Witness,
            time::Duration::days(1),
            garrison_ca::SubjectKey::LogKey(witness.public_key()),
            now,
            &rng,
        )
        .unwrap();
    let log = AttestationLog::open(&garrison_log::LogConfig {
        url: database.to_owned(),
        origin: None,
        max_batch: 1,
        max_connections: 1,
    })
    .await
    .unwrap();
    let checkpoint = loop {
        if let Some(c) = log.latest_checkpoint().await.unwrap() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cosigned = witness
        .cosign(&checkpoint.note, now.unix_timestamp().unsigned_abs())
        .unwrap();
    let line = cosigned.lines().last().unwrap().to_owned();
    log.store_cosignature(&StoredCosignature {
        size: checkpoint.size,
        witness: witness.name().to_owned(),
        line,
        cosigned: now,
    })
    .await
    .unwrap();
    log.add_witness_certificate(&garrison_ca::certificates_to_pem(&issued.chain), now)
        .await
        .unwrap();
    log.close().await;
    checkpoint.size
}

/// `garrison audit COMMAND --db DB --root ROOT EXTRA...`.
fn audit_db(command: &str, db: &str, root: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        command,
        "--db",
        db,
        "--root",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    garrison(&args)
}

fn verify_db(db: &str, root: &Path, extra: &[&str]) -> Output {
    audit_db("verify", db, root, extra)
}

fn replay(db: &str, root: &Path, extra: &[&str]) -> Output {
    audit_db("replay", db, root, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_follows_policy_changes_and_finds_edits() {
    garrison_spiffe_tls::install_ring_provider();
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::create(tmp.path(), time::OffsetDateTime::now_utc()).unwrap();
    let strict = site.policy_bundle();
    let strict_copy = tmp.path().join("strict-1.bundle");
    std::fs::copy(&strict, &strict_copy).unwrap();
    let nodes = [
        Node::start(tmp.path(), "node-1", GOOD_LOG).unwrap(),
        Node::start(tmp.path(), "node-2", INSECURE_BOOT_LOG).unwrap(),
    ];
    let addr = free_local_address().unwrap();
    let audit_addr = free_local_address().unwrap();
    let config = site
        .write_config(
            addr,
            "sqlite://log.db",
            &nodes.iter().collect::<Vec<_>>(),
            &format!("audit_listen = \"{audit_addr}\"\n"),
        )
        .unwrap();
    // Spawned before this process opens any TPM connection (see crash.rs for why).
    let attestor = Killed(
        Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(["attestor", "serve", "--config"])
            .arg(tmp.path().join("site.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agent = |node: &Node| {
        garrison_agent::AgentConfig::load(
            &node
                .write_agent_config(&site, &format!("https://{addr}"))
                .unwrap(),
        )
        .unwrap()
    };
    let (node_1, node_2) = (agent(&nodes[0]), agent(&nodes[1]));
    garrison_agent::enroll_once(&node_1).await.unwrap();
    let refused = garrison_agent::enroll_once(&node_2).await.unwrap_err();
    assert_eq!(refused.reason_code(), Some("policy-deny"));
    std::fs::write(&strict, sign_lab(&site, 2)).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &attestor.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let admitted = enroll_until(&node_2).await;
    let root = site.bundle_pem();

    // Through the attestor's Audit service, with an auditor's SVID: the same verdicts.
    let (svid, key) = auditor_identity(&site, tmp.path());
    let remote = [
        "--attestor".to_owned(),
        format!("https://{audit_addr}"),
        "--attestor-id".to_owned(),
        site.attestor_id(),
        "--svid".to_owned(),
        svid.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
        "--bundle".to_owned(),
        root.display().to_string(),
    ];
    let mut args: Vec<&str> = vec!["audit", "replay", "--root", root.to_str().unwrap()];
    args.extend(remote.iter().map(String::as_str));
    let out = garrison(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 matched, 0 differ"), "{}", text(&out));

    // The hub's cosignature of the latest checkpoint, kept by the site as a sync keeps it:
    // the service serves it, `verify --attestor` checks it, the export carries it.
    let cosigned_size = cosign_latest_checkpoint(tmp.path(), &config.database).await;
    let mut args: Vec<&str> = vec!["audit", "verify", "--root", root.to_str().unwrap()];
    args.extend(remote.iter().map(String::as_str));
    let out = garrison(&args);
    assert!(out.status.success(), "{}", text(&out));
    let witnessed = format!(
        "hub cosignatures verified against the root: 1 (witnessed up to size {cosigned_size})"
    );
    assert!(text(&out).contains(&witnessed), "{}", text(&out));
    args.push("--json");
    let out = garrison(&args);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["hub_cosignatures"]["verified"], 1, "{json}");
    assert_eq!(
        json["hub_cosignatures"]["latest_size"], cosigned_size,
        "{json}"
    );

    // The auditor, who has no database access, takes an archive through the service: it
    // verifies against the root alone, and replays like the database.
    let archive = tmp.path().join("through-the-service.db");
    let mut args: Vec<&str> = vec!["audit", "export", "--out", archive.to_str().unwrap()];
    args.extend(remote.iter().map(String::as_str));
    let out = garrison(&args);
    assert!(out.status.success(), "{}", text(&out));
    let again = garrison(&args);
    assert!(
        !again.status.success() && text(&again).contains("exists"),
        "an archive is never overwritten: {}",
        text(&again)
    );

    // Someone with database access leaves a cosignature without its checkpoint (deletes the
    // checkpoint, or moves the cosignature): the service serves it even so, and the
    // auditor's verify through it reports it, as verify on the database does.
    let orphan = cosigned_size + 1_000_000;
    let mut conn = sqlx::SqliteConnection::connect(&config.database)
        .await
        .unwrap();
    for statement in [
        "PRAGMA foreign_keys = OFF".to_owned(),
        format!(
            "INSERT INTO cosignatures (log_id, size, witness, line, cosigned_us) \
             SELECT log_id, {orphan}, witness, line, cosigned_us FROM cosignatures WHERE size = {cosigned_size}"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let mut args: Vec<&str> = vec!["audit", "verify", "--root", root.to_str().unwrap()];
    args.extend(remote.iter().map(String::as_str));
    let out = garrison(&args);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(&format!(
            "PROBLEM: the cosignature of checkpoint {orphan} does not verify: no checkpoint of that size is kept (removed, or the log rolled back)"
        )),
        "{shown}"
    );
    assert!(shown.contains(&witnessed), "{shown}");
    assert!(
        shown.contains("revocations the attestor enforces: no enforcement state in this source"),
        "{shown}"
    );
    let out = verify_db(&config.database, &root, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("checkpoint {orphan} does not verify")));
    // The site's own database holds what the attestor enforces: checked (none revoked).
    assert!(
        text(&out).contains("revocations the attestor enforces, checked against the log: 0"),
        "{}",
        text(&out)
    );
    for statement in [
        "DROP TRIGGER cosignatures_append_only_delete".to_owned(),
        format!("DELETE FROM cosignatures WHERE size = {orphan}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    // The site's own database, taken as such: its state is there, and checked.
    let out = verify_db(&config.database, &root, &["--site-database"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node states the attestor keeps, checked against the log: 2")
            && !text(&out).contains("derivable"),
        "every state checked in full (AK, identity facts, counters): {}",
        text(&out)
    );
    drop(attestor);
    let archive_url = archive.to_str().unwrap();
    let out = verify_db(archive_url, &root, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&witnessed), "{}", text(&out));
    // Passed off as a site's own database, the archive lacks the attestor's state.
    let out = verify_db(archive_url, &root, &["--site-database"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"PROBLEM: {"problem":"enforcement-state-missing"}"#),
        "{}",
        text(&out)
    );
    let out = replay(archive_url, &root, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 matched, 0 differ"), "{}", text(&out));

    let db = config.database.clone();
    // Record for record as the database holds them, and the same tree.
    let source = AttestationLog::open_read_only(&db, None).await.unwrap();
    let copy = AttestationLog::open_read_only(&format!("sqlite://{archive_url}"), None)
        .await
        .unwrap();
    let copied = copy.query(&Query::default()).await.unwrap();
    let held = source.query(&Query::default()).await.unwrap();
    assert!(copied.len() >= 4, "{copied:?}");
    assert_eq!(copied[..], held[..copied.len()]);
    let size = copied.len() as u64;
    assert_eq!(
        copy.tree_root(size).await.unwrap(),
        source.tree_root(size).await.unwrap()
    );
    for stored in &copied {
        if let Some(digest) = &stored.record.evidence_digest {
            assert_eq!(
                copy.evidence(digest).await.unwrap(),
                source.evidence(digest).await.unwrap()
            );
        }
    }
    source.close().await;
    copy.close().await;
    // Each record under its own bundle: all three reproduced.
    let out = replay(&db, &root, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("3 decision record(s)") && shown.contains("3 matched, 0 differ"),
        "{shown}"
    );
    assert!(shown.contains("OK: every replayable decision"), "{shown}");

    // What-if the strict bundle had stayed: node-2's allow would have been a deny.
    let out = replay(&db, &root, &["--policy", strict_copy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "a what-if is not a failure: {}",
        text(&out)
    );
    let shown = text(&out);
    let changes: Vec<&str> = shown.lines().filter(|l| l.contains("allow ")).collect();
    assert_eq!(changes.len(), 1, "{shown}");
    assert!(
        changes[0].contains(&format!("#{}", admitted.log_sequence))
            && changes[0].contains("deny(policy-deny)"),
        "{shown}"
    );
    assert!(shown.contains("1 decision(s) would change"), "{shown}");

    // The JSON form carries the same.
    let out = replay(&db, &root, &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["summary"]["matched"], 3);
    assert_eq!(json["records"].as_array().unwrap().len(), 3);
    assert_eq!(json["records"][0]["outcome"], "matched");

    // The site revokes node-2, then allows it again (as an attestor would whose revocation
    // row was deleted): the records are intact, but verify names the allow.
    let log = AttestationLog::open(&garrison_log::LogConfig {
        url: db.clone(),
        origin: None,
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .unwrap();
    let node_2 = log.query(&Query::default()).await.unwrap()
        [usize::try_from(admitted.log_sequence).unwrap()]
    .record
    .clone();
    let node_id = node_2.node_id.clone().unwrap();
    let node_2_id = node_id.clone();
    let node_2_state = log.node_status(&node_id).await.unwrap().node.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let revoked = log
        .revoke(garrison_log::Revocation {
            time: now,
            site: node_2.site.clone(),
            target: garrison_log::RevocationTarget::Node(node_id),
            reasons: vec!["key compromise".to_owned()],
            policy_digest: None,
        })
        .await
        .unwrap()
        .sequence;
    let allowed = log
        .append(garrison_log::NewEntry {
            record: garrison_log::Record {
                time: now,
                kind: RecordKind::Renew,
                evidence_digest: None,
                ..node_2
            },
            evidence: None,
            // As the attestor writes its allows: the node's state goes with it.
            node_update: Some(node_2_state),
        })
        .await
        .unwrap()
        .sequence;
    log.close().await;
    let out = verify_db(&db, &root, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(&format!(
            r#"PROBLEM: {{"problem":"allow-after-revocation","sequence":{allowed},"revoked_by":{revoked}}}"#
        )) && shown.contains("NOT OK: no record was found altered, but the site allowed nodes it had revoked"),
        "{shown}"
    );
    // Someone with database access binds node-2's state to another AK (node-1's: its TPM
    // could then renew as node-2): named, with what differs.
    // And winds node-1's TPM clock back and empties its identity facts (what a rolled-back
    // TPM, or a policy keyed on the EK's maker, would need).
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    for statement in [
        "UPDATE nodes SET ak_name = (SELECT ak_name FROM nodes WHERE node_id <> $1) WHERE node_id = $1",
        "UPDATE nodes SET clock = 0, identity_json = '{}' WHERE node_id <> $1",
    ] {
        sqlx::query(statement)
            .bind(node_2_id.clone())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let out = verify_db(&db, &root, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(&format!(
            r#"PROBLEM: {{"problem":"node-state-differs","node_id":"{}","last_sequence":{allowed},"fields":["ak-name"]}}"#,
            node_2_id.clone()
        )) && shown.contains(r#""fields":["identity","counters"]}"#)
            && shown.contains("TAMPERED"),
        "{shown}"
    );

    // Someone with database access turns node-2's refusal into an allow: replay exits 1 and
    // names the record.
    let log = AttestationLog::open_read_only(&db, None).await.unwrap();
    let reject = log
        .query(&Query {
            kind: Some(RecordKind::Reject),
            ..Query::default()
        })
        .await
        .unwrap()[0]
        .sequence;
    log.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    for statement in [
        "DROP TRIGGER records_append_only_update".to_owned(),
        format!("UPDATE records SET decision = 'allow', reasons = '[]' WHERE sequence = {reject}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let out = replay(&db, &root, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    let flagged: Vec<&str> = shown.lines().filter(|l| l.contains("DIFFERS")).collect();
    assert!(
        flagged
            .iter()
            .any(|l| l.starts_with(&format!("#{reject} "))),
        "{shown}"
    );
}
