//! Appends per second on SQLite with 1 and with 64 concurrent appenders: what group commit
//! buys. Each record carries 1 KiB of distinct evidence and a node update, like an enrollment.
//!
//! ```text
//! cargo run --release -p garrison-log --example append_bench [SECONDS_PER_RUN]
//! cargo run --release -p garrison-log --example append_bench SECONDS paced RATE [WINDOW_MS]
//! ```
//!
//! `paced` offers RATE appends/s in all from 256 nodes (an attestor at that many decisions
//! per second, the issue's 500 say): each node reads its state (as every decision does),
//! appends, then waits its turn. It prints the CPU per append of the whole process and of
//! SQLite's connection threads alone (where every statement runs), and the mean batch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use garrison_log::{AttestationLog, Decision, LogConfig, NewEntry, NodeState, Record, RecordKind};
use time::OffsetDateTime;

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(3, |s| s.parse().expect("seconds"));
    let run = Duration::from_secs(seconds);
    if std::env::args().nth(2).as_deref() == Some("paced") {
        let rate: f64 = std::env::args()
            .nth(3)
            .map_or(500.0, |s| s.parse().expect("rate"));
        let window_ms: u64 = std::env::args()
            .nth(4)
            .map_or(0, |s| s.parse().expect("window ms"));
        paced(rate, Duration::from_millis(window_ms), run).await;
        return;
    }
    let single = measure(1, run).await;
    let many = measure(64, run).await;
    println!("ratio 64/1: {:.1}x", many / single);
}

/// A fresh SQLite log in a temporary directory (kept as long as the returned guard).
async fn open_log(max_connections: u32) -> (tempfile::TempDir, AttestationLog) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let log = AttestationLog::open(&LogConfig {
        url,
        origin: None,
        max_batch: 256,
        max_connections,
    })
    .await
    .unwrap();
    (dir, log)
}

/// Appends/s with `appenders` concurrent tasks over `run`.
async fn measure(appenders: usize, run: Duration) -> f64 {
    let (_dir, log) = open_log(4).await;
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = process_cpu_us();
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let (log, stop) = (log.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    log.append(entry(task, done)).await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = process_cpu_us().saturating_sub(cpu_before);
    let stats = log.stats();
    log.close().await;
    let rate = total as f64 / elapsed;
    println!(
        "{appenders:>2} appender(s): {total} appends in {elapsed:.2} s = {rate:.0} appends/s, \
         {} batches (mean {:.1} records/batch), {:.0} µs per append, \
         {:.0} µs CPU per append (whole process)",
        stats.batches,
        stats.records as f64 / stats.batches.max(1) as f64,
        1e6 / rate,
        cpu_us as f64 / total.max(1) as f64,
    );
    rate
}

/// Nodes of the paced run.
const PACED_NODES: usize = 256;

/// `rate` appends/s from [`PACED_NODES`] nodes, each reading its state before it appends.
async fn paced(rate: f64, window: Duration, run: Duration) {
    let (_dir, log) = open_log(128).await;
    // Every node exists before the measured part, as they would at a running site.
    for node in 0..PACED_NODES {
        log.append(entry(node, 0)).await.unwrap();
    }
    log.set_commit_window(window);
    let before = log.stats();
    let interval = Duration::from_secs_f64(PACED_NODES as f64 / rate);
    // `APPEND_BENCH_NO_READ=1`: appends alone, to tell the read's share from the append's.
    let read = std::env::var("APPEND_BENCH_NO_READ").is_err();
    let (cpu_before, sqlite_before) = (process_cpu_us(), sqlite_threads_cpu_us());
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = (0..PACED_NODES)
        .map(|node| {
            let log = log.clone();
            tokio::spawn(async move {
                // Spread the nodes' first appends over one interval.
                let offset = interval.mul_f64(node as f64 / PACED_NODES as f64);
                let mut next = tokio::time::Instant::from_std(start) + offset;
                let mut done = 0u64;
                loop {
                    tokio::time::sleep_until(next).await;
                    if Instant::now() >= deadline {
                        return done;
                    }
                    done += 1;
                    if read {
                        let status = log.node_status(&format!("{node:064x}")).await.unwrap();
                        assert!(!status.revoked);
                    }
                    log.append(entry(node, done)).await.unwrap();
                    next += interval;
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = process_cpu_us().saturating_sub(cpu_before);
    let sqlite_us = sqlite_threads_cpu_us().saturating_sub(sqlite_before);
    let stats = log.stats();
    log.close().await;
    let batches = stats.batches - before.batches;
    let records = stats.records - before.records;
    let total_f = total.max(1) as f64;
    println!(
        "paced at {rate:.0}/s, commit window {window:?}: {total} appends in {elapsed:.2} s = {:.0} appends/s, \
         {batches} batches (mean {:.2} records/batch), \
         {:.0} µs CPU per append (whole process), {:.0} µs on SQLite's threads",
        total as f64 / elapsed,
        records as f64 / batches.max(1) as f64,
        cpu_us as f64 / total_f,
        sqlite_us as f64 / total_f,
    );
}

/// User + system CPU so far of the threads sqlx runs SQLite connections on (named
/// `sqlx-sqlite-worker-N`; a thread that ended took its time with it).
fn sqlite_threads_cpu_us() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.contains("(sqlx-sqlite"))
        .map(|stat| stat_cpu_us(&stat))
        .sum()
}

/// SVID serials are random, so spread them over the index like real ones.
fn serial(task: usize, n: u64) -> String {
    let mixed = (n ^ ((task as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{mixed:016x}{:016x}", mixed.rotate_left(29))
}

/// User + system CPU of this process so far, from `/proc/self/stat` (USER_HZ = 100).
fn process_cpu_us() -> u64 {
    stat_cpu_us(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// utime + stime of a `/proc/.../stat` line, in µs.
fn stat_cpu_us(stat: &str) -> u64 {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    ticks * 10_000
}

fn entry(task: usize, n: u64) -> NewEntry {
    let node_id = format!("{task:064x}");
    let time = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n);
    let mut evidence = vec![0u8; 1024];
    evidence[..16].copy_from_slice(&(((task as u128) << 64) | u128::from(n)).to_be_bytes());
    NewEntry {
        record: Record {
            time,
            site: "bench".into(),
            kind: RecordKind::Renew,
            node_id: Some(node_id.clone()),
            spiffe_id: Some(format!("spiffe://example.org/site/bench/node/{node_id}")),
            decision: Decision::Allow,
            reasons: vec!["policy allow".into()],
            policy_digest: Some("ab".repeat(32)),
            evidence_digest: None,
            cert_serial: Some(serial(task, n)),
            cert_not_after: Some(time + Duration::from_secs(3600)),
        },
        evidence: Some(evidence),
        node_update: Some(NodeState {
            node_id: node_id.clone(),
            ak_name: vec![0x00, 0x0b, 1, 2, 3],
            spiffe_id: format!("spiffe://example.org/site/bench/node/{node_id}"),
            identity: "{}".to_owned(),
            reset_count: 1,
            restart_count: 0,
            clock: n,
            current_serial: Some(serial(task, n)),
            updated: time,
        }),
    }
}
