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
//! # Origins and the Merkle tree
//!
//! A database holds one or more logs, each named by its origin
//! (`garrison.<trust-domain>/site/<site>`, [`LogConfig::origin`]); a handle appends to and
//! reads one of them (`origin.rs`). Over each log's records the writer keeps an RFC 6962 /
//! RFC 9162 Merkle tree as the `tlog_tiles` crate's stored hashes, in the same transaction as
//! the records (`tree.rs`): [`AttestationLog::tree_root`], [`AttestationLog::inclusion_proof`]
//! and [`AttestationLog::consistency_proof`] read O(log n) hashes. Signed checkpoints of the
//! tree and the certificates of the key that signs them are kept beside the records
//! ([`AttestationLog::store_checkpoint`], [`AttestationLog::add_log_key_certificate`]); the
//! signing itself is the attestor's (`garrison-transparency` holds the formats). A database
//! from before origins upgrades in place: migration 0002, then the first open with an origin
//! claims the old log and builds its tree from recomputed leaves (`tree_build.rs`).
//! [`AttestationLog::open_read_only`] is the auditor's open (no migration, no writer),
//! [`AttestationLog::export_sqlite`] writes one log into a self-contained SQLite archive, and
//! [`ArchiveWriter`] writes the same archive from records read elsewhere (the Audit service).
//!
//! # Group commit
//!
//! A single writer task owns all writes; [`AttestationLog::append`] queues its entry on a
//! bounded channel and waits. The writer commits everything queued (up to
//! [`LogConfig::max_batch`]) in one transaction, then answers every waiter. Sequences are
//! reserved inside that transaction, so they are gap-free and in commit order. See
//! `writer.rs` for the details.
//!
//! Group commit is what makes many concurrent appends cheap: a lone appender pays a full
//! durable commit (fsync) each time, concurrent appenders share one; each batch is written
//! with a few multi-row statements rather than statements per entry (sqlx's SQLite driver
//! hands every statement to a worker thread). At a moderate rate the writer is idle when
//! each entry arrives, so [`AttestationLog::set_commit_window`] lets it hold a batch open for
//! a few milliseconds to gather the entries that follow (the attestor's
//! `log_commit_window_ms`). The writer has a connection of its own, so its page cache
//! survives between batches; on SQLite it also answers the node-status read each decision
//! makes ([`AttestationLog::node_status`], [`AttestationLog::node_status_by_serial`]) between
//! batches, from that warm cache, where a pooled connection would have started cold after
//! every commit. `examples/append_bench.rs` measures all this (`paced` mode for
//! a fixed rate); the figures are in `docs/performance.md` ("The attestation log's group
//! commit", "The log's share at 500 decisions/s").
//!
//! # WAL checkpoints
//!
//! On SQLite the WAL is copied back into the database file by a task of its own, on a
//! connection of its own, not inside the writer's commits: see `wal_checkpoint.rs`.
//! [`LogStats::wal_checkpoints`] counts its passes. (These are SQLite's WAL checkpoints,
//! nothing to do with the signed checkpoints of a transparency log.)
//!
//! # One serving process, and proof of writability
//!
//! A process that serves a log takes its [`ServingLock`] first (an SQLite log only: an OS
//! lock on `<database>.lock`, released by the kernel however the process ends), and proves
//! with [`AttestationLog::check_writable`] that appends can be committed before it accepts
//! any. A new SQLite file is created readable by its owner only.
//!
//! # What this crate must never do
//!
//! * Acknowledge an append before its transaction has committed, or acknowledge part of a
//!   batch: a failed batch fails every one of its waiters.
//! * Leave a gap or a reordering in the sequence numbers, or rewrite a stored record (the
//!   schema rejects UPDATE and DELETE on `records`, `tree_hashes` and `checkpoints`).
//! * Commit records without the tree hashes that cover them, or keep a checkpoint whose
//!   root is not the log's own root at its size.
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

mod entry;
mod error;
mod export;
mod leaf;
mod log;
mod origin;
mod read;
mod record;
mod replica;
mod serving_lock;
mod sync_state;
mod tree;
mod tree_build;
mod wal_checkpoint;
mod writer;

pub use error::LogError;
pub use export::{ArchiveWriter, ExportSummary, remove_archive};
pub use leaf::{
    LEAF_ENCODING_VERSION, canonical_bytes, evidence_digest, is_evidence_digest, leaf_hash,
    record_from_canonical,
};
pub use log::{AttestationLog, Backend, LogConfig, url_for_display};
pub use origin::check_origin;
pub use record::{
    Appended, Decision, KeptNodeState, LogStats, NewEntry, NodeReset, NodeState, NodeStatus,
    Precondition, PreconditionFailure, Query, Record, RecordKind, Revocation, RevocationTarget,
    StoredCheckpoint, StoredRecord,
};
pub use replica::{ReplicaAppended, ReplicaBatch};
pub use serving_lock::{ServingLock, lock_path, sqlite_file};
pub use sync_state::{SYNC_EVENT_DETAIL_MAX, StoredCosignature, SyncEvent, SyncEventSummary};
pub use tree::MAX_STORED_HASHES_READ;
