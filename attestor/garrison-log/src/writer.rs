//! The single writer task: group commit.
//!
//! `append` sends its prepared entry and a oneshot over a bounded channel. The writer waits
//! for at least one entry, takes every entry already queued (up to `max_batch`), and writes
//! them in ONE transaction:
//!
//! 1. `UPDATE log_head ... RETURNING next_sequence` reserves `n` sequences. Being the first
//!    write of the transaction it takes the database's write lock (SQLite) or the head row's
//!    lock (PostgreSQL) until commit, so sequences are handed out in commit order and a rolled
//!    back batch gives its sequences back: the log stays dense.
//! 2. Per entry: evidence insert-if-absent, the record with its leaf hash, the node upsert,
//!    the revocation row.
//! 3. Commit. Only then is any waiter answered: all with their sequence, or, if anything in
//!    the transaction failed, all with the same error.
//!
//! While one batch commits, the next one queues up, which is what turns one fsync per record
//! into one fsync per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::entry::PreparedEntry;
use crate::leaf::leaf_hash;
use crate::{Appended, Backend, LogError, LogStats, RevocationTarget};

/// One queued append and where its answer goes.
pub(crate) struct Job {
    pub entry: PreparedEntry,
    pub reply: oneshot::Sender<Result<Appended, LogError>>,
}

pub(crate) enum Command {
    Append(Box<Job>),
    /// Finish the batch in hand, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// Counters behind [`LogStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    failed_batches: AtomicU64,
    failed_records: AtomicU64,
    largest_batch: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> LogStats {
        LogStats {
            batches: self.batches.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            failed_records: self.failed_records.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }

    fn count(&self, size: usize, ok: bool) {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.largest_batch.fetch_max(size, Ordering::Relaxed);
        let (batches, records) = if ok {
            (&self.batches, &self.records)
        } else {
            (&self.failed_batches, &self.failed_records)
        };
        batches.fetch_add(1, Ordering::Relaxed);
        records.fetch_add(size, Ordering::Relaxed);
    }
}

/// What the writer needs, moved into its task.
pub(crate) struct Writer {
    pub pool: AnyPool,
    pub backend: Backend,
    pub max_batch: usize,
    pub counters: Arc<Counters>,
}

/// Runs until every sender is gone or a [`Command::Close`] arrives.
pub(crate) async fn run(writer: Writer, mut commands: mpsc::Receiver<Command>) {
    let max_batch = writer.max_batch;
    let mut received = Vec::with_capacity(max_batch);
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        if commands.recv_many(&mut received, max_batch).await == 0 {
            return;
        }
        let mut close = None;
        for command in received.drain(..) {
            match command {
                Command::Append(job) if close.is_none() => jobs.push(*job),
                // Sent after a close: dropping the job answers WriterGone.
                Command::Append(_) => {}
                Command::Close(ack) => close = close.or(Some(ack)),
            }
        }
        if !jobs.is_empty() {
            commit_and_answer(&writer, &mut jobs).await;
        }
        if let Some(ack) = close {
            commands.close();
            let _ = ack.send(());
            return;
        }
    }
}

async fn commit_and_answer(writer: &Writer, jobs: &mut Vec<Job>) {
    let size = jobs.len();
    let counters = &writer.counters;
    match write_batch(writer, jobs).await {
        Ok(appended) => {
            counters.count(size, true);
            for (job, done) in jobs.drain(..).zip(appended) {
                // A caller that stopped waiting still has its record committed.
                let _ = job.reply.send(Ok(done));
            }
        }
        Err(source) => {
            counters.count(size, false);
            tracing::warn!(batch_size = size, error = %source, "attestation log batch failed; nothing of it was recorded");
            let source = Arc::new(source);
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(LogError::Append {
                    batch_size: size,
                    source: Arc::clone(&source),
                }));
            }
        }
    }
}

/// Writes and commits `jobs` in one transaction; the returned vector is in `jobs` order.
async fn write_batch(writer: &Writer, jobs: &[Job]) -> Result<Vec<Appended>, sqlx::Error> {
    // SQLite: take the write lock at BEGIN (waiting out busy_timeout) instead of upgrading a
    // read snapshot later, which fails without waiting if another process committed between.
    let mut tx: Transaction<'static, Any> = match writer.backend {
        Backend::Sqlite => writer.pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => writer.pool.begin().await?,
    };
    let first = reserve_sequences(&mut tx, jobs.len()).await?;
    let mut appended = Vec::with_capacity(jobs.len());
    for (sequence, job) in (first..).zip(jobs) {
        appended.push(write_entry(&mut tx, sequence, &job.entry).await?);
    }
    tx.commit().await?;
    Ok(appended)
}

/// Bumps the head by `count` and returns the first reserved sequence.
async fn reserve_sequences(conn: &mut AnyConnection, count: usize) -> Result<u64, sqlx::Error> {
    let count = i64::try_from(count).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let row = sqlx::query("UPDATE log_head SET next_sequence = next_sequence + $1 WHERE id = 1 RETURNING next_sequence")
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
    let next: i64 = row.try_get(0)?;
    let first = next
        .checked_sub(count)
        .and_then(|first| u64::try_from(first).ok());
    first.ok_or_else(|| {
        sqlx::Error::Protocol(format!(
            "log_head.next_sequence {next} is below the batch size {count}"
        ))
    })
}

async fn write_entry(
    conn: &mut AnyConnection,
    sequence: u64,
    entry: &PreparedEntry,
) -> Result<Appended, sqlx::Error> {
    let leaf = leaf_hash(sequence, &entry.record).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let sequence_db = i64::try_from(sequence).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    if let Some((digest, bytes)) = &entry.evidence {
        sqlx::query(
            "INSERT INTO evidence (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(bytes.as_slice())
        .execute(&mut *conn)
        .await?;
    }
    insert_record(conn, sequence_db, &hex::encode(leaf), entry).await?;
    if entry.node.is_some() {
        upsert_node(conn, sequence_db, entry).await?;
    }
    if let Some(target) = &entry.revocation {
        insert_revocation(conn, sequence_db, entry.time_us, target).await?;
    }
    Ok(Appended {
        sequence,
        leaf_hash: leaf,
    })
}

async fn insert_record(
    conn: &mut AnyConnection,
    sequence: i64,
    leaf_hex: &str,
    entry: &PreparedEntry,
) -> Result<(), sqlx::Error> {
    let r = &entry.record;
    sqlx::query(
        "INSERT INTO records (sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons, \
         policy_digest, evidence_digest, cert_serial, cert_not_after_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(sequence)
    .bind(leaf_hex)
    .bind(entry.time_us)
    .bind(r.site.as_str())
    .bind(r.kind.as_str())
    .bind(r.node_id.as_deref())
    .bind(r.spiffe_id.as_deref())
    .bind(r.decision.as_str())
    .bind(entry.reasons_json.as_str())
    .bind(r.policy_digest.as_deref())
    .bind(r.evidence_digest.as_deref())
    .bind(r.cert_serial.as_deref())
    .bind(entry.not_after_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_node(
    conn: &mut AnyConnection,
    sequence: i64,
    entry: &PreparedEntry,
) -> Result<(), sqlx::Error> {
    let Some(node) = &entry.node else {
        return Ok(());
    };
    let s = &node.state;
    sqlx::query(
        "INSERT INTO nodes (node_id, ak_name, spiffe_id, reset_count, restart_count, clock, current_serial, \
         updated_us, last_sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (node_id) DO UPDATE SET ak_name = excluded.ak_name, spiffe_id = excluded.spiffe_id, \
         reset_count = excluded.reset_count, restart_count = excluded.restart_count, clock = excluded.clock, \
         current_serial = excluded.current_serial, updated_us = excluded.updated_us, \
         last_sequence = excluded.last_sequence",
    )
    .bind(s.node_id.as_str())
    .bind(s.ak_name.as_slice())
    .bind(s.spiffe_id.as_str())
    .bind(i64::from(s.reset_count))
    .bind(i64::from(s.restart_count))
    .bind(node.clock)
    .bind(s.current_serial.as_deref())
    .bind(node.updated_us)
    .bind(sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_revocation(
    conn: &mut AnyConnection,
    sequence: i64,
    time_us: i64,
    target: &RevocationTarget,
) -> Result<(), sqlx::Error> {
    let (serial, node_id) = match target {
        RevocationTarget::Serial(serial) => (Some(serial.as_str()), None),
        RevocationTarget::Node(node) => (None, Some(node.as_str())),
    };
    sqlx::query(
        "INSERT INTO revocations (sequence, serial, node_id, time_us) VALUES ($1, $2, $3, $4)",
    )
    .bind(sequence)
    .bind(serial)
    .bind(node_id)
    .bind(time_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
