//! Hot policy reload on a running attestor process: `kill -HUP` puts a newer signed bundle
//! in force without a restart, an older one is refused (no rollback) while the newer keeps
//! serving, both outcomes are `policy-update` records in the attestation log, and a restart
//! with the old bundle file is refused too (the floor comes from the log).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use garrison_log::{AttestationLog, Decision, LogConfig, Query, RecordKind};
use garrison_testbed::{GOOD_LOG, INSECURE_BOOT_LOG, Node, Site, free_local_address};
use ring::rand::SystemRandom;

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

fn sign(site: &Site, rego: &str, data: &str, name: &str, sequence: u64) -> Vec<u8> {
    let dir = site.dir.join("ca/policy-signer");
    let signer = garrison_policy::BundleSigner::from_pem(
        &std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("chain.pem")).unwrap(),
    )
    .unwrap();
    let mut files = garrison_policy::BundleFiles::new();
    files.insert("admission.rego".into(), rego.as_bytes().to_vec());
    files.insert("data.json".into(), data.as_bytes().to_vec());
    let signed = signer
        .sign(
            &files,
            name,
            sequence,
            time::OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
    garrison_policy::encode_archive(&signed)
}

fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn enroll_until(
    config: &garrison_agent::AgentConfig,
    want_ok: bool,
) -> Result<garrison_agent::Enrolled, String> {
    let mut last = Err(String::new());
    for _ in 0..50 {
        last = garrison_agent::enroll_once(config)
            .await
            .map_err(|e| e.reason_code().unwrap_or("none").to_owned());
        if last.is_ok() == want_ok {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_newer_bundles_and_refuses_rollback() {
    garrison_spiffe_tls::install_ring_provider();
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::create(tmp.path(), time::OffsetDateTime::now_utc()).unwrap();
    let strict = std::fs::read(site.policy_bundle()).unwrap();
    let nodes = [
        Node::start(tmp.path(), "node-1", GOOD_LOG).unwrap(),
        Node::start(tmp.path(), "node-2", INSECURE_BOOT_LOG).unwrap(),
    ];
    let addr = free_local_address().unwrap();
    let config = site
        .write_config(
            addr,
            "sqlite://log.db",
            &nodes.iter().collect::<Vec<_>>(),
            "",
        )
        .unwrap();
    // Spawned before this process opens any TPM connection (see crash.rs for why).
    let serve = || {
        Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(["attestor", "serve", "--config"])
            .arg(tmp.path().join("site.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let attestor = Killed(serve());
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agent = garrison_agent::AgentConfig::load(
        &nodes[1]
            .write_agent_config(&site, &format!("https://{addr}"))
            .unwrap(),
    )
    .unwrap();

    // Strict policy: Secure Boot off is refused.
    assert_eq!(
        garrison_agent::enroll_once(&agent)
            .await
            .unwrap_err()
            .reason_code(),
        Some("policy-deny")
    );

    // A newer (lab) bundle, then SIGHUP: the same node is admitted, under the lab path.
    std::fs::write(
        site.policy_bundle(),
        sign(&site, LAB_POLICY, LAB_DATA, "lab", 2),
    )
    .unwrap();
    hangup(&attestor.0);
    let enrolled = enroll_until(&agent, true).await.unwrap();
    assert!(
        enrolled.spiffe_id.contains("/lab/node/"),
        "{}",
        enrolled.spiffe_id
    );

    // The old strict bundle again (sequence 1): refused, the lab bundle keeps serving.
    std::fs::write(site.policy_bundle(), &strict).unwrap();
    hangup(&attestor.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    garrison_agent::enroll_once(&agent).await.unwrap();

    // A restart does not roll back either: with the old bundle file the attestor refuses to
    // start, because the log says #2 was in force.
    drop(attestor);
    let mut stale = serve();
    let status = stale.wait().unwrap();
    assert!(
        !status.success(),
        "started with a bundle older than the one in force"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(stale.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.to_lowercase().contains("roll"), "{stderr}");

    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: None,
        max_batch: 1,
        max_connections: 1,
    })
    .await
    .unwrap();
    let updates = log
        .query(&Query {
            kind: Some(RecordKind::PolicyUpdate),
            ..Query::default()
        })
        .await
        .unwrap();
    // #1 at start, #2 by reload, #1 refused by reload, #1 refused at the restart.
    assert_eq!(updates.len(), 4, "{updates:?}");
    assert!(
        updates[0].record.reasons[0].contains("#1 in force at start"),
        "{:?}",
        updates[0].record.reasons
    );
    assert_eq!(updates[1].record.decision, Decision::Allow);
    assert!(
        updates[1].record.reasons[0].contains("lab #2 replaced"),
        "{:?}",
        updates[1].record.reasons
    );
    assert_eq!(updates[2].record.decision, Decision::Deny);
    for refused in &updates[2..] {
        assert_eq!(refused.record.decision, Decision::Deny);
        assert_eq!(
            refused.record.reasons[0], "policy-rollback",
            "{:?}",
            refused.record.reasons
        );
    }
    let enrolls = log
        .query(&Query {
            kind: Some(RecordKind::Enroll),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(enrolls.len(), 2);
    assert!(
        enrolls
            .iter()
            .all(|r| r.record.policy_digest == updates[1].record.policy_digest),
        "both admitted under the lab bundle"
    );
    log.close().await;
}
