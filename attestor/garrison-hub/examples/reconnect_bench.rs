//! Many sites reconnecting at once after a partition: every site holds a backlog and its
//! sync loop starts at the same moment. Reports the seconds until every site converged (the
//! hub holds its whole log and cosigned it), how many pushes the hub shed with a retry hint,
//! and the hub's peak RSS. The hub runs in a child process (this binary, `hub` mode) so its
//! memory is its own; the sites run in this process, each a real site attestor (its own
//! SQLite log, log key, site CA under the hub CA) with the site's own round and the sync
//! loop's rule for a shed push (wait the hint, jittered up to twice it) and for failures
//! (backoff).
//!
//! `cargo run --release -p garrison-hub --example reconnect_bench -- SITES RECORDS [HUB_DB_URL]`
//!
//! * `SITES`: how many sites (100 in the issue).
//! * `RECORDS`: records each site logged while cut off.
//! * `HUB_DB_URL`: the hub's database (a fresh one); SQLite in the temporary directory if absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use garrison_attestor::checkpoint::CheckpointSigner;
use garrison_attestor::site_sync::{SiteSync, SyncError};
use garrison_attestor::sync_client::{self, HubClient};
use garrison_attestor::{Attestor, Clock, SiteConfig, SystemClock};
use garrison_ca::{Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, SubjectKey};
use garrison_log::{Decision, NewEntry, Record, RecordKind};
use garrison_testbed::{Site, TRUST_DOMAIN};
use ring::rand::SystemRandom;
use time::OffsetDateTime;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hub") {
        return hub_mode(Path::new(&args[2]));
    }
    let sites: usize = args.get(1).expect("SITES").parse().expect("a number");
    let records: usize = args.get(2).expect("RECORDS").parse().expect("a number");
    let hub_db = args.get(3).cloned();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(sites, records, hub_db));
}

/// The hub, serving until killed.
fn hub_mode(config: &Path) {
    let config = garrison_hub::HubConfig::load(config).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            garrison_hub::server::run(config, Arc::new(SystemClock), std::future::pending())
                .await
                .unwrap();
        });
}

struct OneSite {
    name: String,
    attestor: Arc<Attestor>,
    sync: SiteSync,
}

async fn bench(sites: usize, records: usize, hub_db: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let testbed = Site::create(dir.path(), now).unwrap();
    let listen = garrison_testbed::free_local_address().unwrap();
    let database = hub_db.unwrap_or_else(|| format!("sqlite://{}/hub.db", dir.path().display()));
    let hub_toml = dir.path().join("hub.toml");
    std::fs::write(
        &hub_toml,
        format!("listen = \"{listen}\"\nca_dir = \"ca/hub\"\ndatabase = \"{database}\"\n"),
    )
    .unwrap();
    let mut hub = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("hub")
        .arg(&hub_toml)
        .spawn()
        .unwrap();

    let started = Instant::now();
    let hub_ca = garrison_attestor::server::load_authority(&dir.path().join("ca/hub")).unwrap();
    let mut all = Vec::new();
    for i in 0..sites {
        all.push(Arc::new(
            site(&testbed, &hub_ca, dir.path(), i, records, now).await,
        ));
    }
    println!(
        "setup: {sites} sites with {records} records each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_for(listen).await;

    // Every site's loop starts now.
    let shed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for site in &all {
        let (site, shed, failed) = (Arc::clone(site), Arc::clone(&shed), Arc::clone(&failed));
        let address = listen.to_string();
        tasks.push(tokio::spawn(async move {
            converge(&site, &address, &shed, &failed).await;
            (site.name.clone(), started.elapsed())
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.unwrap().1.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let hub_peak = peak_rss_kib(hub.id());
    let _ = hub.kill();
    let _ = hub.wait();
    println!(
        "converged: all {sites} sites in {:.1} s (median site {:.1} s, first {:.1} s); {} pushes shed with a retry hint, {} rounds failed",
        times.last().copied().unwrap_or(0.0),
        times[times.len() / 2],
        times[0],
        shed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "hub peak RSS: {} MiB ({} records taken, {:.0} records/s)",
        hub_peak / 1024,
        sites * records,
        (sites * records) as f64 / times.last().copied().unwrap_or(1.0)
    );
    println!(
        "sites' process peak RSS: {} MiB",
        peak_rss_kib(std::process::id()) / 1024
    );
}

/// Rounds until the hub holds and cosigned the whole log, as the site's sync loop runs them.
async fn converge(site: &OneSite, address: &str, shed: &AtomicU64, failed: &AtomicU64) {
    let tried = AtomicU64::new(0);
    let size = site.attestor.log().tree_size().await.unwrap();
    let mut failures = 0u32;
    loop {
        let ca = site.attestor.site_ca().active();
        let outcome = match HubClient::connect(address, &ca, site.attestor.clock()) {
            Ok(client) => {
                let mut client = client.with_timeout(Duration::from_secs(60));
                sync_client::round(&site.sync, &mut client, &site.attestor, &tried).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(summary)
                if summary.held_size >= size
                    && site.sync.cosigned_size().await.unwrap() >= size =>
            {
                return;
            }
            Ok(_) => {}
            Err(SyncError::Busy { retry_after }) => {
                shed.fetch_add(1, Ordering::Relaxed);
                let jitter = f64::from(rand_u16()) / f64::from(u16::MAX);
                tokio::time::sleep(retry_after + retry_after.mul_f64(jitter)).await;
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                eprintln!("{}: {e}", site.name);
                let wait = sync_client::backoff(
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                    failures,
                    f64::from(rand_u16()) / f64::from(u16::MAX),
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn rand_u16() -> u16 {
    let bytes: [u8; 2] = ring::rand::generate(&SystemRandom::new()).unwrap().expose();
    u16::from_be_bytes(bytes)
}

/// Site `i`: its own CA under the hub CA, configuration, attestor, log with `records`
/// records, log key and checkpoint.
async fn site(
    testbed: &Site,
    hub_ca: &Authority,
    base: &Path,
    i: usize,
    records: usize,
    now: OffsetDateTime,
) -> OneSite {
    let name = format!("site-{i}");
    let dir = base.join(&name);
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let issued = hub_ca
        .issue_intermediate(
            IntermediateParams {
                name: name.clone(),
                role: CaRole::Site(name.clone()),
                ttl: time::Duration::days(30),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &SystemRandom::new(),
        )
        .unwrap();
    let pem = |ders: &[Vec<u8>]| garrison_ca::certificates_to_pem(ders);
    std::fs::write(
        ca_dir.join("cert.pem"),
        pem(std::slice::from_ref(&issued.certificate)),
    )
    .unwrap();
    std::fs::write(ca_dir.join("chain.pem"), pem(&issued.chain)).unwrap();
    std::fs::write(ca_dir.join("bundle.pem"), pem(&issued.roots)).unwrap();
    std::fs::write(
        ca_dir.join("key.pem"),
        issued.key.as_ref().unwrap().to_pkcs8_pem().expose(),
    )
    .unwrap();
    let config_path = dir.join("site.toml");
    let bundle: PathBuf = testbed.dir.join("policy/strict.bundle");
    std::fs::write(
        &config_path,
        format!(
            "site = \"{name}\"\nlisten = \"127.0.0.1:1\"\nca_dir = \"ca\"\ndatabase = \"sqlite://site.db\"\n\
             ek_roots = []\npolicy_bundle = \"{}\"\nmax_svid_ttl = \"1h\"\n\
             [insecure]\nallow_listed_ek_hashes = [\"{}\"]\n",
            bundle.display(),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let config = SiteConfig::load(&config_path).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let attestor = Arc::new(
        garrison_attestor::server::build(&config, clock)
            .await
            .unwrap(),
    );
    let log = attestor.log().clone();
    for n in 0..records {
        log.append(NewEntry {
            record: record(&name, n),
            evidence: None,
            node_update: None,
        })
        .await
        .unwrap();
    }
    let ca = attestor.site_ca().active();
    let signer = CheckpointSigner::start(
        log.clone(),
        &dir.join("log-key.pem"),
        &ca,
        now,
        &SystemRandom::new(),
    )
    .await
    .unwrap();
    signer.sign(now).await.unwrap();
    let sync =
        SiteSync::new(log, &name, TRUST_DOMAIN, ca.roots().to_vec()).with_signer(Arc::new(signer));
    OneSite {
        name,
        attestor,
        sync,
    }
}

fn record(site: &str, n: usize) -> Record {
    Record {
        time: OffsetDateTime::now_utc(),
        site: site.to_owned(),
        kind: RecordKind::Renew,
        node_id: Some(format!("{:064x}", n % 500)),
        spiffe_id: Some(format!(
            "spiffe://{TRUST_DOMAIN}/site/{site}/node/{}",
            n % 500
        )),
        decision: Decision::Allow,
        reasons: vec![],
        policy_digest: None,
        evidence_digest: None,
        cert_serial: Some(format!("{:032x}", n + 1)),
        cert_not_after: None,
    }
}

async fn wait_for(address: std::net::SocketAddr) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hub never listened");
}

/// VmHWM of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
