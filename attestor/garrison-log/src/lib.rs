//! The durable attestation log and node-state store of a Garrison attestor.
//!
//! Every enrollment, renewal, rejection, revocation, rotation, policy update and node reset
//! (an operator accepting a cleared TPM, [`NodeReset`]) becomes a
//! [`Record`] with a dense sequence number and an RFC 6962 leaf hash ([`leaf_hash`]), stored
//! beside its raw evidence (deduplicated by SHA-256) and, in the same transaction, the
//! node's new [`NodeState`] (AK bound at enrollment, TPM reset/restart counters and clock,
//! current certificate serial). Storage is SQLite (WAL, `synchronous=FULL`) at sites and
//! PostgreSQL at the hub, through one sqlx `Any` code path.
//!
//! # Group commit
//!
//! A single writer task owns all writes; [`AttestationLog::append`] queues its entry on a
//! bounded channel and waits. The writer commits everything queued (up to
//! [`LogConfig::max_batch`]) in one transaction, then answers every waiter. Sequences are
//! reserved inside that transaction, so they are gap-free and in commit order. See
//! `writer.rs` for the details.
//!
//! Measured with `examples/append_bench.rs` (release, SQLite, 2-vCPU VM, each record with
//! 1 KiB of distinct evidence and a node update; 3 s per run, same run for both):
//!
//! | appenders | appends/s | records per batch | ratio |
//! |---|---|---|---|
//! | 1 (pinned to one core) | 980 | 1 | |
//! | 64 (pinned to one core) | 4 322 | 32 | **4.4×** |
//! | 1 | 559 | 1 | |
//! | 64 | 3 530 | 39 | **6.3×** |
//!
//! (An earlier session's figures. On 2026-11-29, pinned, 10 s runs: 64 appenders 5,295/s with
//! SQLite's default WAL auto-checkpoint, 6,812/s with the 16,000-page one set in `log.rs`.)
//!
//! # Checkpoints
//!
//! On SQLite the WAL is copied back into the database file by a task of its own, on a
//! connection of its own, not inside the writer's commits: see `checkpoint.rs`. Under load
//! this removed a ≈ 25 ms stall of every append every couple of seconds, and keeps the WAL
//! file near 20 MiB instead of 64 MiB. [`LogStats::checkpoints`] counts its passes.
//!
//! A lone appender pays a full durable commit (fsync) each time, ~1–1.8 ms here; 64
//! concurrent appenders share it, ~0.23–0.28 ms per record. Writing each batch with a few
//! multi-row statements instead of three statements per entry doubled the 64-appender figure
//! (sqlx's SQLite driver hands every statement to a worker thread).
//!
//! # What this crate must never do
//!
//! * Acknowledge an append before its transaction has committed, or acknowledge part of a
//!   batch: a failed batch fails every one of its waiters.
//! * Leave a gap or a reordering in the sequence numbers, or rewrite a stored record (the
//!   schema rejects UPDATE and DELETE on `records`).
//! * Let node state run ahead of or behind the record that changed it.
//! * Read the clock: every time comes from the caller.
//!
//! # Testing
//!
//! Every storage test runs against SQLite and PostgreSQL. `scripts/test.sh` starts a
//! throwaway PostgreSQL cluster (`pg_virtualenv`) and passes its URL in
//! `GARRISON_TEST_POSTGRES_URL`; without it the PostgreSQL tests fail and say so. Developers
//! without PostgreSQL may set `GARRISON_SKIP_POSTGRES=1` to skip them (CI never does).

#![forbid(unsafe_code)]

mod checkpoint;
mod entry;
mod error;
mod leaf;
mod log;
mod read;
mod record;
mod writer;

pub use error::LogError;
pub use leaf::{LEAF_ENCODING_VERSION, canonical_bytes, evidence_digest, leaf_hash};
pub use log::{AttestationLog, Backend, LogConfig};
pub use record::{
    Appended, Decision, LogStats, NewEntry, NodeReset, NodeState, NodeStatus, Query, Record,
    RecordKind, Revocation, RevocationTarget, StoredRecord,
};
