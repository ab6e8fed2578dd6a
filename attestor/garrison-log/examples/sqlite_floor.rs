//! What SQLite alone costs per record on this schema: the floor under the log's share.
//!
//! The log's schema is created by `AttestationLog::open` (the real migrations), then the
//! log's writes are made straight through SQLite's C API (rusqlite, prepared statements, one
//! thread, no async hand-offs) with the settings the log uses (WAL, `synchronous=FULL`,
//! foreign keys on, 8 MiB page cache), and a second thread runs a passive WAL checkpoint
//! every 50 ms, as `wal_checkpoint.rs` does. Per record, like an enrollment: 2 KiB of
//! distinct evidence, the record (random node among 256, random serial), the node's upsert
//! and two tree hashes; per batch, the log row's update.
//!
//! ```text
//! cargo run --release -p garrison-log --example sqlite_floor -- [SECONDS] [RATE] [BATCH] [VARIANT]
//! ```
//!
//! VARIANT is `schema` (as in use, the default), `no-random-indexes` (the four secondary
//! indexes keyed by random values dropped: records by node, SPIFFE ID and serial, nodes by
//! current serial) or `append-only` (those dropped and no node upsert: the records, their
//! evidence and the tree alone). It prints the CPU per record of the writing thread and of
//! the checkpointing thread, from `/proc/thread-self/stat`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use garrison_log::{AttestationLog, LogConfig};
use rusqlite::{Connection, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};

const NODES: u64 = 256;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Schema,
    NoRandomIndexes,
    AppendOnly,
}

#[tokio::main]
async fn main() {
    let arg = |n: usize| std::env::args().nth(n);
    let seconds: f64 = arg(1).map_or(12.0, |s| s.parse().expect("seconds"));
    let rate: f64 = arg(2).map_or(500.0, |s| s.parse().expect("rate"));
    let batch: u64 = arg(3).map_or(5, |s| s.parse().expect("batch"));
    let variant = match arg(4).as_deref().unwrap_or("schema") {
        "schema" => Variant::Schema,
        "no-random-indexes" => Variant::NoRandomIndexes,
        "append-only" => Variant::AppendOnly,
        other => panic!("unknown variant {other}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floor.db");
    let log = AttestationLog::open(&LogConfig {
        url: format!("sqlite://{}", path.display()),
        origin: None,
        max_batch: 256,
        max_connections: 2,
    })
    .await
    .unwrap();
    log.close().await;

    let conn = connect(&path);
    if variant != Variant::Schema {
        conn.execute_batch(
            "DROP INDEX records_node_id; DROP INDEX records_spiffe_id;
             DROP INDEX records_cert_serial; DROP INDEX nodes_current_serial;",
        )
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (stop, path) = (Arc::clone(&stop), path.clone());
        std::thread::Builder::new()
            .name("floor-checkpoint".into())
            .spawn(move || {
                let conn = connect(&path);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        .unwrap();
                }
                this_thread_cpu_us()
            })
            .unwrap()
    };
    let records = (seconds * rate) as u64;
    let writer = std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || {
            let elapsed = write(conn, records, rate, batch, variant);
            (elapsed, this_thread_cpu_us())
        })
        .unwrap();
    let (elapsed, writer_us) = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let checkpoint_us = checkpointer.join().unwrap();
    let per = |us: u64| us as f64 / records as f64;
    println!(
        "variant={} batch={batch} records={records} seconds={elapsed:.1} \
         writer_us_per_record={:.1} checkpoint_us_per_record={:.1} total_us_per_record={:.1}",
        arg(4).unwrap_or_else(|| "schema".into()),
        per(writer_us),
        per(checkpoint_us),
        per(writer_us + checkpoint_us),
    );
}

/// A connection with the log's settings (`SQLITE_SETTINGS` in `log.rs`).
fn connect(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 16000; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8192; PRAGMA busy_timeout = 5000;",
    )
    .unwrap();
    conn
}

/// Writes `records` records at `rate`, `batch` per transaction; returns the seconds taken.
fn write(mut conn: Connection, records: u64, rate: f64, batch: u64, variant: Variant) -> f64 {
    let start = Instant::now();
    let mut sequence = 0u64;
    while sequence < records {
        let due = start + Duration::from_secs_f64((sequence + batch) as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let n = batch.min(records - sequence);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut reserve = tx
                .prepare_cached(
                    "UPDATE logs SET next_sequence = next_sequence + ?1, \
                     tree_size = tree_size + ?1 WHERE id = 1 RETURNING next_sequence",
                )
                .unwrap();
            let _: i64 = reserve
                .query_row(params![n as i64], |row| row.get(0))
                .unwrap();
            let mut evidence = tx
                .prepare_cached("INSERT OR IGNORE INTO evidence (digest, bytes) VALUES (?1, ?2)")
                .unwrap();
            let mut record = tx
                .prepare_cached(
                    "INSERT INTO records (log_id, sequence, leaf_hash, time_us, site, kind, \
                     node_id, spiffe_id, decision, reasons, policy_digest, evidence_digest, \
                     cert_serial, cert_not_after_us) \
                     VALUES (1, ?1, ?2, ?3, 'site', 'enroll', ?4, ?5, 'allow', '[]', ?6, ?7, ?8, ?9)",
                )
                .unwrap();
            let mut node = tx
                .prepare_cached(
                    "INSERT INTO nodes (node_id, ak_name, spiffe_id, reset_count, restart_count, \
                     clock, current_serial, identity_json, updated_us, log_id, last_sequence) \
                     VALUES (?1, ?2, ?3, 0, 0, ?4, ?5, '{}', ?4, 1, ?6) \
                     ON CONFLICT (node_id) DO UPDATE SET ak_name = excluded.ak_name, \
                     spiffe_id = excluded.spiffe_id, clock = excluded.clock, \
                     current_serial = excluded.current_serial, updated_us = excluded.updated_us, \
                     log_id = excluded.log_id, last_sequence = excluded.last_sequence",
                )
                .unwrap();
            let mut tree = tx
                .prepare_cached("INSERT INTO tree_hashes (log_id, idx, hash) VALUES (1, ?1, ?2)")
                .unwrap();
            for _ in 0..n {
                let mixed = mix(sequence);
                let mut bytes = vec![0u8; 2048];
                for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                    chunk.copy_from_slice(&mix(mixed ^ i as u64).to_le_bytes());
                }
                let digest = hex::encode(Sha256::digest(&bytes));
                evidence.execute(params![digest, bytes]).unwrap();
                let node_id = format!("{:064x}", mixed % NODES);
                let spiffe_id = format!("spiffe://example.org/site/a/node/{}", mixed % NODES);
                let serial = format!("{:016x}{:016x}", mixed, mix(mixed));
                let leaf = hex::encode(Sha256::digest(sequence.to_be_bytes()));
                let time_us = start.elapsed().as_micros() as i64;
                record
                    .execute(params![
                        sequence as i64,
                        leaf,
                        time_us,
                        node_id,
                        spiffe_id,
                        "ab".repeat(32),
                        digest,
                        serial,
                        time_us + 3_600_000_000
                    ])
                    .unwrap();
                if variant != Variant::AppendOnly {
                    node.execute(params![
                        node_id,
                        [1u8; 34],
                        spiffe_id,
                        time_us,
                        serial,
                        sequence as i64
                    ])
                    .unwrap();
                }
                for k in 0..2 {
                    tree.execute(params![(sequence * 2 + k) as i64, [7u8; 32]])
                        .unwrap();
                }
                sequence += 1;
            }
        }
        tx.commit().unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// A 64-bit mix (splitmix64's finaliser): random-looking node choices, serials and evidence.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// utime + stime of the calling thread so far, in µs (USER_HZ = 100).
fn this_thread_cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>().unwrap())
        .sum();
    ticks * 10_000
}
