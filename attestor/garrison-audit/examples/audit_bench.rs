//! The auditor's costs at scale, on SQLite or PostgreSQL: fill one origin with N records,
//! sign a checkpoint, then time query-by-node, inclusion and consistency proofs, a full
//! `verify`, and the database bytes per record.
//!
//! ```text
//! cargo run --release -p garrison-audit --example audit_bench -- sqlite:///tmp/bench.db 1000000
//! cargo run --release -p garrison-audit --example audit_bench -- postgres://u:p@host/db 1000000
//! ```
//!
//! Each record is an enrollment-like record of one of N/10 nodes with 512 bytes of distinct
//! evidence. Prints one line per figure; see docs/performance.md. Run again on the same
//! database it measures a warm cache (the fill is skipped); a third argument `no-verify`
//! skips the full verify.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole, SubjectKey,
    TrustDomain, certificates_to_pem,
};
use garrison_log::{
    AttestationLog, Decision, LogConfig, NewEntry, Query, Record, RecordKind, StoredCheckpoint,
};
use garrison_transparency::LogKey;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

const ORIGIN: &str = "garrison.example.org/site/bench";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let n: u64 = args.next().map_or(100_000, |s| s.parse().expect("N"));
    let run_verify = args.next().as_deref() != Some("no-verify");
    let now = OffsetDateTime::now_utc();
    let log = AttestationLog::open(&LogConfig {
        url: url.clone(),
        origin: Some(ORIGIN.into()),
        max_batch: 256,
        max_connections: 8,
    })
    .await
    .unwrap();
    let (root, key) = certify(&log, now).await;
    let have = log.tree_size().await.unwrap();
    if have < n {
        fill(&log, have, n, now).await;
    }
    let size = log.tree_size().await.unwrap();
    let root_hash = log.tree_root(size).await.unwrap();
    log.store_checkpoint(&StoredCheckpoint {
        size,
        root_hash,
        signed: now,
        note: key.sign_checkpoint(size, &root_hash).unwrap(),
    })
    .await
    .unwrap();
    println!("records: {size}");
    let nodes = (size / 10).max(1);
    let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
    let mut times = Vec::new();
    for _ in 0..300 {
        let node = node_id(rng.next() % nodes);
        let t = Instant::now();
        let found = log
            .query(&Query {
                node_id: Some(node),
                limit: Some(1000),
                ..Query::default()
            })
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(!found.is_empty());
    }
    report("query by node (about 10 records each)", &mut times);
    for _ in 0..1000 {
        let index = rng.next() % size;
        let t = Instant::now();
        let proof = log.inclusion_proof(index, size).await.unwrap();
        times.push(t.elapsed());
        assert!(!proof.is_empty() || size == 1);
    }
    report("inclusion proof at the full size", &mut times);
    for _ in 0..1000 {
        let old = 1 + rng.next() % size;
        let t = Instant::now();
        let _ = log.consistency_proof(old, size).await.unwrap();
        times.push(t.elapsed());
    }
    report("consistency proof to the full size", &mut times);
    if !run_verify {
        log.close().await;
        return;
    }
    let t = Instant::now();
    let verified = garrison_audit::verify(&log, &[root]).await.unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    assert!(verified.ok(), "{verified:?}");
    println!(
        "verify: {} records in {elapsed:.1} s = {:.0} records/s (every leaf, evidence digest and checkpoint)",
        verified.records,
        verified.records as f64 / elapsed
    );
    println!(
        "database bytes per record: {:.0}",
        database_bytes(&url).await as f64 / size as f64
    );
    log.close().await;
}

/// A root → hub → site hierarchy whose site CA certifies a fresh log key.
async fn certify(log: &AttestationLog, now: OffsetDateTime) -> (Vec<u8>, LogKey) {
    let rng = SystemRandom::new();
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "bench root".into(),
                ttl: Duration::days(30),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let intermediate = |issuer: &Authority, name: &str, role, days| {
        Authority::from_issued(
            issuer
                .issue_intermediate(
                    IntermediateParams {
                        name: name.into(),
                        role,
                        ttl: Duration::days(days),
                        path_len: PathLen::OneBelowIssuer,
                        subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                    },
                    now,
                    &rng,
                )
                .unwrap(),
        )
        .unwrap()
    };
    let hub = intermediate(&root, "hub", CaRole::Hub, 20);
    let site = intermediate(&hub, "bench", CaRole::Site("bench".into()), 10);
    let key = LogKey::from_pkcs8(ORIGIN, &LogKey::generate_pkcs8(&rng).unwrap()).unwrap();
    let issued = site
        .issue_site_role_svid(
            SiteRole::Log,
            Duration::days(5),
            SubjectKey::LogKey(key.public_key()),
            now,
            &rng,
        )
        .unwrap();
    log.add_log_key_certificate(&key.public_key(), &certificates_to_pem(&issued.chain), now)
        .await
        .unwrap();
    (root.certificate().to_vec(), key)
}

async fn fill(log: &AttestationLog, from: u64, to: u64, now: OffsetDateTime) {
    let next = Arc::new(AtomicU64::new(from));
    let start = Instant::now();
    let cpu = cpu_us();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (log, next) = (log.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return;
                    }
                    log.append(entry(i, to, now)).await.unwrap();
                    if i % 500_000 == 0 && i > 0 {
                        eprintln!("... {i} records");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let count = (to - from) as f64;
    println!(
        "fill: {} records in {secs:.0} s = {:.0} appends/s, {:.0} µs CPU per append (whole process, 64 appenders)",
        to - from,
        count / secs,
        (cpu_us() - cpu) as f64 / count
    );
}

fn node_id(i: u64) -> String {
    format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn entry(i: u64, n: u64, now: OffsetDateTime) -> NewEntry {
    let node = i % (n / 10).max(1);
    let mut evidence =
        format!("{{\"stage\":\"enroll-complete\",\"record\":{i},\"padding\":\"").into_bytes();
    evidence.resize(500, b'x');
    evidence.extend_from_slice(b"\"}");
    NewEntry {
        record: Record {
            time: now + Duration::milliseconds(i as i64),
            site: "bench".into(),
            kind: RecordKind::Enroll,
            node_id: Some(node_id(node)),
            spiffe_id: Some(format!("spiffe://example.org/site/bench/node/{node}")),
            decision: Decision::Allow,
            reasons: vec![],
            policy_digest: Some("ab".repeat(32)),
            evidence_digest: None,
            cert_serial: Some(format!("{:032x}", i + 1)),
            cert_not_after: Some(now + Duration::hours(1)),
        },
        evidence: Some(evidence),
        node_update: None,
    }
}

fn report(what: &str, times: &mut Vec<std::time::Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms ({} samples)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times.len()
    );
    times.clear();
}

async fn database_bytes(url: &str) -> u64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        return ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{path}{suffix}")).ok())
            .map(|m| m.len())
            .sum();
    }
    use sqlx::{Connection as _, Row as _};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let row = sqlx::query("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.try_get::<i64, _>(0).unwrap().unsigned_abs()
}

/// Process CPU time (user + system), µs.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000
}

/// A small deterministic generator: the same samples every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
}
