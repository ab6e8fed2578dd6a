//! Crash safety: the attestor process is SIGKILLed in the middle of a burst of enrollments
//! and restarted on the same SQLite log. Every certificate any client received must have
//! its record in the log: a certificate never leaves the server before its record is durable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use garrison_log::{AttestationLog, LogConfig, Query};
use garrison_testbed::{GOOD_LOG, Node, Site, free_local_address};

/// A shell that waits for a line on stdin, then execs the attestor. Spawned before any TPM
/// connection exists in this process: libtss2's swtpm sockets are not close-on-exec, so an
/// attestor spawned later would inherit open TPM connections of the in-process agents and
/// keep them alive, and swtpm serves one connection at a time.
fn attestor_launcher(config: &std::path::Path) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "read _go && exec \"$0\" attestor serve --config \"$1\"",
        ])
        .arg(env!("CARGO_BIN_EXE_garrison"))
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn launch(launcher: &mut Child) {
    use std::io::Write;
    let stdin = launcher.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
}

fn start_attestor(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(["attestor", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_for(addr: std::net::SocketAddr) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("attestor did not come up on {addr}");
}

fn serial_of(svid_pem: &std::path::Path) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem::parse(std::fs::read(svid_pem).unwrap())
        .unwrap()
        .into_contents();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    hex::encode(cert.raw_serial())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_a_client_received_is_in_the_log_after_sigkill() {
    garrison_spiffe_tls::install_ring_provider();
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::create(tmp.path(), time::OffsetDateTime::now_utc()).unwrap();
    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node::start(tmp.path(), &format!("node-{i}"), GOOD_LOG).unwrap())
        .collect();
    let addr = free_local_address().unwrap();
    let trusted: Vec<&Node> = nodes.iter().collect();
    let config = site
        .write_config(addr, "sqlite://log.db", &trusted, "")
        .unwrap();
    let config_path = tmp.path().join("site.toml");
    let url = format!("https://{addr}");

    let mut attestor = start_attestor(&config_path);
    let mut restarted = attestor_launcher(&config_path);
    wait_for(addr).await;

    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for node in &nodes {
        let agent =
            garrison_agent::AgentConfig::load(&node.write_agent_config(&site, &url).unwrap())
                .unwrap();
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match garrison_agent::enroll_once(&agent).await {
                    Ok(enrolled) => received
                        .lock()
                        .unwrap()
                        .push(serial_of(&enrolled.files.svid)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }

    // Let the burst run, then pull the plug in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    attestor.kill().unwrap(); // SIGKILL
    attestor.wait().unwrap();
    let before_crash = received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;

    launch(&mut restarted);
    wait_for(addr).await;
    let resumed_from = received.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < resumed_from + 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    restarted.kill().unwrap();
    restarted.wait().unwrap();

    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: None,
        max_batch: 1,
        max_connections: 1,
    })
    .await
    .unwrap();
    let logged: BTreeSet<String> = log
        .query(&Query::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.record.cert_serial)
        .collect();
    let received = received.lock().unwrap().clone();
    assert!(
        before_crash >= 6,
        "the burst was under way when the attestor died ({before_crash} issued)"
    );
    assert!(
        received.len() >= before_crash + 3,
        "enrollment resumed after the restart"
    );
    let missing: Vec<_> = received.iter().filter(|s| !logged.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "certificates received but not in the log: {missing:?}"
    );
    println!(
        "{} certificates received ({before_crash} before the SIGKILL), all {} in the log",
        received.len(),
        logged.len()
    );
}
