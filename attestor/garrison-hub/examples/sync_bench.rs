//! What a hub costs to catch a site up: hub ingest rate (records/s, with every check, the
//! replica append with its Merkle tree, and the cosignature), bytes per record in the
//! batches, and the process's peak RSS (site and hub run in this one process).
//!
//! `cargo run --release -p garrison-hub --example sync_bench -- HUB_URL RECORDS [evidence]`
//!
//! * `HUB_URL`: the hub's database, `postgres://…` or `sqlite:///path` (a fresh database).
//! * `RECORDS`: how many renewals the site logged while cut off (10,000 nodes renewing hourly
//!   for 30 days is 7,200,000).
//! * `evidence`: give every record an evidence record of a realistic size (3 KiB) and every
//!   node's event log (one of 20 distinct 40 KiB logs, as a fleet's machines share a few
//!   builds); without it, records travel alone.
//!
//! Batches are built exactly as a site builds them (`SiteSync`, every batch cut at 4 MiB or
//! 2,000 records) and handed to the hub's own push path; TLS and HTTP/2 framing are not
//! counted (the bytes are the protobuf messages').
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::Instant;

use garrison_attestor::SystemClock;
use garrison_attestor::checkpoint::CheckpointSigner;
use garrison_attestor::site_sync::SiteSync;
use garrison_hub::HubConfig;
use garrison_log::{AttestationLog, Decision, LogConfig, NewEntry, Record, RecordKind};
use garrison_testbed::{SITE, Site, TRUST_DOMAIN};
use prost::Message as _;
use ring::rand::SystemRandom;
use time::OffsetDateTime;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hub_url = args.get(1).expect("HUB_URL").clone();
    let n: u64 = args.get(2).expect("RECORDS").parse().expect("a number");
    let evidence = args.get(3).is_some_and(|a| a == "evidence");
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let testbed = Site::create(dir.path(), now).unwrap();
    let origin = garrison_transparency::site_origin(TRUST_DOMAIN, SITE);

    let started = Instant::now();
    let site = AttestationLog::open(&LogConfig {
        url: format!("sqlite://{}/site.db", dir.path().display()),
        origin: Some(origin.clone()),
        max_batch: 512,
        max_connections: 4,
    })
    .await
    .unwrap();
    fill(&site, n, evidence).await;
    let signer = CheckpointSigner::start(
        site.clone(),
        &dir.path().join("log-key.pem"),
        &testbed.site_ca,
        now,
        &SystemRandom::new(),
    )
    .await
    .unwrap();
    let sync = SiteSync::new(
        site.clone(),
        SITE,
        TRUST_DOMAIN,
        testbed.site_ca.roots().to_vec(),
    )
    .with_signer(Arc::new(signer));
    let (checkpoint, chain) = sync.checkpoint(now).await.unwrap();
    println!(
        "site: {n} records logged in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    std::fs::write(
        dir.path().join("hub.toml"),
        format!("listen = \"127.0.0.1:1\"\nca_dir = \"ca/hub\"\ndatabase = \"{hub_url}\"\n"),
    )
    .unwrap();
    let config = HubConfig::load(&dir.path().join("hub.toml")).unwrap();
    let hub = garrison_hub::server::build(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    let mut start = 0;
    let mut bytes = 0usize;
    let mut batches = 0;
    let mut building = std::time::Duration::ZERO;
    let mut pushing = std::time::Duration::ZERO;
    while start < checkpoint.size {
        let t = Instant::now();
        let batch = sync
            .self_contained_batch(start, &checkpoint, &chain, start)
            .await
            .unwrap();
        building += t.elapsed();
        bytes += batch.encoded_len();
        batches += 1;
        let t = Instant::now();
        let result = hub.push(&origin, batch).await.unwrap();
        pushing += t.elapsed();
        start = result.held_size;
    }
    let total = building + pushing;
    println!(
        "hub ({}): {n} records in {batches} batches; built in {:.1} s, ingested in {:.1} s: {:.0} records/s ingest, {:.0} records/s end to end",
        if hub_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        building.as_secs_f64(),
        pushing.as_secs_f64(),
        n as f64 / pushing.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
    );
    println!(
        "bytes per record in the batches ({}): {:.0}",
        if evidence {
            "with evidence, event logs deduplicated"
        } else {
            "without evidence"
        },
        bytes as f64 / n as f64
    );
    println!(
        "peak RSS of this process (site and hub): {} MiB",
        peak_rss_mib()
    );
    hub.log().clone().close().await;
    site.close().await;
}

/// `n` renewal records, 10,000 nodes round-robin, concurrently (group commit).
async fn fill(site: &AttestationLog, n: u64, evidence: bool) {
    let logs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 40 * 1024]).collect();
    let mut pending = Vec::new();
    for i in 0..n {
        let site = site.clone();
        let node = i % 10_000;
        let entry = NewEntry {
            record: record(i, node),
            evidence: evidence.then(|| evidence_of(i, node, &logs)),
            node_update: None,
        };
        pending.push(tokio::spawn(
            async move { site.append(entry).await.unwrap() },
        ));
        if pending.len() == 2048 {
            for p in pending.drain(..) {
                p.await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
    // Event logs are evidence of their own; a fleet's nodes share a few.
    if evidence {
        for log in &logs {
            let record = record(n, 0);
            site.append_with_blobs(
                NewEntry {
                    record,
                    evidence: None,
                    node_update: None,
                },
                vec![log.clone()],
            )
            .await
            .ok();
        }
    }
}

fn record(i: u64, node: u64) -> Record {
    Record {
        time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + (i / 3) as i64).unwrap(),
        site: SITE.to_owned(),
        kind: RecordKind::Renew,
        node_id: Some(format!("{node:064x}")),
        spiffe_id: Some(format!(
            "spiffe://{TRUST_DOMAIN}/site/{SITE}/node/{node:032x}"
        )),
        decision: Decision::Allow,
        reasons: vec![],
        policy_digest: Some(format!("{:064x}", 1)),
        evidence_digest: None,
        cert_serial: Some(format!("{:032x}", 0x1000_0000 + i)),
        cert_not_after: Some(OffsetDateTime::from_unix_timestamp(1_700_003_600).unwrap()),
    }
}

/// An evidence record of about 3 KiB naming one of the shared event logs.
fn evidence_of(i: u64, node: u64, logs: &[Vec<u8>]) -> Vec<u8> {
    let log = &logs[usize::try_from(node % 20).unwrap()];
    let mut e = garrison_appraisal::EvidenceRecord {
        ek_public: vec![1; 400],
        ek_certificate: vec![2; 1200],
        ak_public: vec![3; 300],
        nonce: i.to_be_bytes().to_vec(),
        attest: vec![4; 150],
        signature: vec![5; 260],
        csr: vec![6; 300],
        ..Default::default()
    };
    e.event_log_sha256 = garrison_log::evidence_digest(log);
    e.to_bytes()
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
