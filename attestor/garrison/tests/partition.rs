//! A site and its hub as real processes (`garrison attestor serve`, `garrison hub serve`):
//! the hub killed and its port black-holed while the site keeps logging; policy and a
//! revocation published at the hub during the partition; either side SIGKILLed in the
//! middle of moving a backlog; and at the end the hub holds exactly the site's log (same
//! records, same roots, nothing twice) and the site holds the hub's cosignature, the policy
//! and the revocation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use garrison_log::{AttestationLog, Decision, LogConfig, NewEntry, Query, Record, RecordKind};
use garrison_testbed::{SITE, Site, TRUST_DOMAIN, free_local_address};
use time::OffsetDateTime;

/// Starts a `garrison` server; what it logs goes to `<first arg>.log` in `dir` (appended).
fn garrison(dir: &Path, args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.log", args[0])))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// What the servers logged, for a failure message.
fn server_logs(dir: &Path) -> String {
    ["hub.log", "attestor.log"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            format!(
                "--- {name} (last lines)\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a `garrison` command to its end; returns its standard output.
fn garrison_cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garrison {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_for_port(addr: SocketAddr, dir: &Path) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing came up on {addr}\n{}", server_logs(dir));
}

fn kill(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

struct Setup {
    dir: PathBuf,
    hub_addr: SocketAddr,
    site_addr: SocketAddr,
    site_db: String,
    hub_db: String,
    testbed: Site,
}

fn origin() -> String {
    garrison_transparency::site_origin(TRUST_DOMAIN, SITE)
}

fn record(i: u64) -> Record {
    Record {
        time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + i as i64).unwrap(),
        site: SITE.to_owned(),
        kind: RecordKind::Renew,
        node_id: Some(format!("{:064x}", i % 500)),
        spiffe_id: Some(format!(
            "spiffe://{TRUST_DOMAIN}/site/{SITE}/node/{}",
            i % 500
        )),
        decision: Decision::Allow,
        reasons: vec![],
        policy_digest: None,
        evidence_digest: None,
        cert_serial: Some(format!("{:x}", 0x10_0000 + i)),
        cert_not_after: None,
    }
}

/// Appends `n` records to the site's log from this process (a second writer beside the
/// attestor, as an operator's CLI is): the backlog a partition leaves.
async fn backlog(url: &str, n: u64) {
    let log = AttestationLog::open(&LogConfig {
        url: url.to_owned(),
        origin: Some(origin()),
        max_batch: 256,
        max_connections: 2,
    })
    .await
    .unwrap();
    let start = log.tree_size().await.unwrap();
    let mut pending = Vec::new();
    for i in start..start + n {
        let log = log.clone();
        pending.push(tokio::spawn(async move {
            let evidence = (i % 50 == 0).then(|| format!("evidence {i}").into_bytes());
            log.append(NewEntry {
                record: record(i),
                evidence,
                node_update: None,
            })
            .await
            .unwrap();
        }));
        if pending.len() == 512 {
            for p in pending.drain(..) {
                p.await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
    log.close().await;
}

async fn size(url: &str) -> u64 {
    match AttestationLog::open_read_only(url, Some(&origin())).await {
        Ok(log) => {
            let size = log.tree_size().await.unwrap_or(0);
            log.close().await;
            size
        }
        Err(_) => 0,
    }
}

/// Waits until the hub holds at least `at_least` records of the site (and returns how many),
/// or `deadline` passes.
async fn hub_reaches(url: &str, at_least: u64, deadline: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let held = size(url).await;
        if held >= at_least || start.elapsed() > deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn setup() -> (tempfile::TempDir, Setup) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let testbed = Site::create(&dir, OffsetDateTime::now_utc()).unwrap();
    let hub_addr = free_local_address().unwrap();
    let site_addr = free_local_address().unwrap();
    std::fs::write(
        dir.join("hub.toml"),
        format!("listen = \"{hub_addr}\"\nca_dir = \"ca/hub\"\ndatabase = \"sqlite://hub.db\"\n"),
    )
    .unwrap();
    testbed
        .write_config(
            site_addr,
            "sqlite://log.db",
            &[],
            &format!(
                "checkpoint_interval = \"1s\"\n\
                 [insecure]\nallow_listed_ek_hashes = [\"{}\"]\n\
                 [hub]\naddress = \"{hub_addr}\"\nsync_interval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"2s\"\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
    let setup = Setup {
        site_db: format!("sqlite://{}/log.db", dir.display()),
        hub_db: format!("sqlite://{}/hub.db", dir.display()),
        dir,
        hub_addr,
        site_addr,
        testbed,
    };
    (tmp, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_partition_and_sigkills_the_hub_holds_exactly_the_sites_log() {
    let (_tmp, s) = setup();
    let dir = s.dir.as_path();
    let hub_serve = ["hub", "serve", "--config", "hub.toml"];
    let site_serve = ["attestor", "serve", "--config", "site.toml"];

    // 1. A first backlog; the hub is SIGKILLed while it takes it.
    backlog(&s.site_db, 5_000).await;
    let mut hub = garrison(dir, &hub_serve);
    wait_for_port(s.hub_addr, dir).await;
    let mut site = garrison(dir, &site_serve);
    wait_for_port(s.site_addr, dir).await;
    let held = hub_reaches(&s.hub_db, 1, Duration::from_secs(60)).await;
    kill(&mut hub);
    let held_at_kill = size(&s.hub_db).await;
    eprintln!("hub SIGKILLed holding {held_at_kill} (first seen {held}) of 5001");

    // 2. The partition: the hub's port black-holed (connections accepted, never answered)
    // while the site goes on logging, and the hub's operator publishes a policy and a
    // revocation meanwhile (the hub's database is there; its server is not).
    let black_hole = std::net::TcpListener::bind(s.hub_addr).unwrap();
    let held_open = std::thread::spawn(move || {
        let mut open = Vec::new();
        black_hole.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok((conn, _)) = black_hole.accept() {
                open.push(conn);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        open.len()
    });
    for serial in ["aa01", "aa02", "aa03"] {
        garrison_cli(
            dir,
            &[
                "node",
                "revoke",
                "--config",
                "site.toml",
                "--serial",
                serial,
                "--reason",
                "partition test",
            ],
        );
    }
    let bundle = dir.join("policy-2.bundle");
    std::fs::write(
        &bundle,
        s.testbed
            .resigned_policy(2, OffsetDateTime::now_utc())
            .unwrap(),
    )
    .unwrap();
    let published = garrison_cli(
        dir,
        &[
            "hub",
            "publish-policy",
            "--config",
            "hub.toml",
            "policy-2.bundle",
        ],
    );
    let digest = published
        .split(['(', ')'])
        .nth(1)
        .expect("the published digest")
        .to_owned();
    let revoked_node = format!("{:064x}", 7);
    garrison_cli(
        dir,
        &[
            "node",
            "revoke",
            "--hub-config",
            "hub.toml",
            "--node",
            &revoked_node,
        ],
    );
    let connections = held_open.join().unwrap();
    eprintln!("the black hole held {connections} connection(s) from the site");
    assert!(connections >= 1, "the site kept trying to reach its hub");

    // 3. The hub is back; a second backlog, and the site is SIGKILLed while moving it.
    let mut hub = garrison(dir, &hub_serve);
    wait_for_port(s.hub_addr, dir).await;
    let before = hub_reaches(&s.hub_db, size(&s.site_db).await, Duration::from_secs(60)).await;
    backlog(&s.site_db, 5_000).await;
    let moving = hub_reaches(&s.hub_db, before + 1, Duration::from_secs(60)).await;
    kill(&mut site);
    eprintln!(
        "site SIGKILLed with the hub holding {moving}; the site holds {}",
        size(&s.site_db).await
    );
    let mut site = garrison(dir, &site_serve);
    wait_for_port(s.site_addr, dir).await;

    // 4. Converged: the hub holds exactly the site's log, cosigned.
    let deadline = Instant::now() + Duration::from_secs(120);
    let site_log = AttestationLog::open_read_only(&s.site_db, Some(&origin()))
        .await
        .unwrap();
    loop {
        let site_size = site_log.tree_size().await.unwrap();
        let hub_size = size(&s.hub_db).await;
        let cosigned = site_log
            .latest_cosignature(&garrison_transparency::hub_witness_name(TRUST_DOMAIN))
            .await
            .unwrap()
            .map_or(0, |c| c.size);
        if hub_size == site_size && cosigned == site_size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: site {site_size}, hub {hub_size}, cosigned {cosigned}\n{}",
            server_logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(&mut site);
    kill(&mut hub);
    let hub_log = AttestationLog::open_read_only(&s.hub_db, Some(&origin()))
        .await
        .unwrap();
    let site_records = site_log.query(&Query::default()).await.unwrap();
    let hub_records = hub_log.query(&Query::default()).await.unwrap();
    assert_eq!(
        hub_records, site_records,
        "same records, same sequences, nothing twice"
    );
    let n = site_records.len() as u64;
    assert!(n > 10_000);
    assert_eq!(
        hub_log.tree_root(n).await.unwrap(),
        site_log.tree_root(n).await.unwrap()
    );

    // What the hub published during the partition is in force at the site.
    assert!(
        site_log.is_node_revoked(&revoked_node).await.unwrap(),
        "the hub's revocation"
    );
    let policy_updates = site_log
        .query(&Query {
            kind: Some(RecordKind::PolicyUpdate),
            decision: Some(Decision::Allow),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        policy_updates
            .iter()
            .any(|r| r.record.policy_digest.as_deref() == Some(digest.as_str())),
        "policy bundle #2 ({digest}) put in force: {policy_updates:?}"
    );
    // The site's own revocations, made while cut off, are in the hub's copy.
    for serial in ["aa01", "aa02", "aa03"] {
        assert!(
            hub_records
                .iter()
                .any(|r| r.record.kind == RecordKind::Revoke
                    && r.record.cert_serial.as_deref() == Some(serial)),
            "revoke of {serial} went up"
        );
    }
    let events = garrison_cli(dir, &["hub", "events", "--config", "hub.toml"]);
    assert!(!events.contains("ALARM"), "{events}");
}

/// A fresh database for a hub: on the PostgreSQL cluster `scripts/test.sh` starts (a hub's
/// default), or SQLite in `dir` when a developer skips PostgreSQL.
async fn hub_database(dir: &Path) -> String {
    let Ok(url) = std::env::var("GARRISON_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("GARRISON_SKIP_POSTGRES").is_ok(),
            "GARRISON_TEST_POSTGRES_URL is not set: run scripts/test.sh (or set GARRISON_SKIP_POSTGRES=1)"
        );
        return format!("sqlite://{}/hub-shared.db", dir.display());
    };
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let name = format!("hub_shared_{}", std::process::id());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_on_one_database_store_the_same_pushes_once() {
    let (_tmp, s) = setup();
    let dir = s.dir.as_path();
    let database = hub_database(dir).await;
    std::fs::write(
        dir.join("hub.toml"),
        format!(
            "listen = \"{}\"\nca_dir = \"ca/hub\"\ndatabase = \"{database}\"\n",
            s.hub_addr
        ),
    )
    .unwrap();
    backlog(&s.site_db, 6_000).await;
    garrison_cli(
        dir,
        &[
            "site",
            "export",
            "--config",
            "site.toml",
            "--out",
            "up.sync",
        ],
    );
    // Each hub process opens the database once first (its migration), then both take the
    // same file at the same moment, three times over.
    garrison_cli(dir, &["hub", "status", "--config", "hub.toml"]);
    for _ in 0..3 {
        let imports: Vec<Child> = (0..2)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_garrison"))
                    .args(["hub", "import", "--config", "hub.toml", "up.sync"])
                    .current_dir(dir)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for import in imports {
            let out = import.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let hub = AttestationLog::open_read_only(&database, Some(&origin()))
        .await
        .unwrap();
    let site = AttestationLog::open_read_only(&s.site_db, Some(&origin()))
        .await
        .unwrap();
    let n = site.tree_size().await.unwrap();
    assert_eq!(hub.tree_size().await.unwrap(), n);
    assert_eq!(
        hub.query(&Query::default()).await.unwrap(),
        site.query(&Query::default()).await.unwrap(),
        "every record once"
    );
    assert_eq!(
        hub.tree_root(n).await.unwrap(),
        site.tree_root(n).await.unwrap()
    );
    let cosignatures = hub.cosignatures().await.unwrap();
    assert_eq!(cosignatures.len(), 1, "one cosignature: {cosignatures:?}");
}
