//! Replicas: another log's records, appended as they were numbered there.
//!
//! The hub keeps a copy of every site's log in its own database, one log per site origin
//! ([`AttestationLog::replica`]). A site sends its records as canonical bytes
//! ([`crate::record_from_canonical`] reads them back) with the evidence they refer to; the
//! hub appends them at the sequences the site gave them ([`AttestationLog::append_replica`]):
//!
//! * in one transaction that holds the replica's row lock (PostgreSQL) or the database's
//!   write lock (SQLite) from its first statement, so two hub processes receiving the same
//!   batch at once store it once: the second finds the records held and adds nothing;
//! * records the replica already holds are compared by leaf hash, never written again (a
//!   resend is a no-op; a different record at a held sequence is a conflict);
//! * the batch may not start beyond what the replica holds (no gaps);
//! * every record's evidence must be in the batch or already held, and evidence bytes must
//!   hash to their digest;
//! * the caller's check sees the tree's new size and root (its Merkle tree is extended in
//!   the same transaction) and may refuse the batch, which then leaves no trace.
//!
//! Replicated records never touch node state or revocations: those are the operational state
//! of the database's own log.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Any, AnyConnection, Row as _, Transaction};

use crate::entry::PreparedEntry;
use crate::leaf::{evidence_digest, leaf_hash, unix_micros};
use crate::origin;
use crate::tree::{self, BatchTree};
use crate::writer::{self, Row};
use crate::{AttestationLog, Backend, LogError, Record};

/// Records of another log, numbered from `first`, with the evidence they need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaBatch {
    /// The sequence of `records[0]`.
    pub first: u64,
    pub records: Vec<Record>,
    /// Evidence (and event-log blobs) as (digest, bytes): what the replica lacks of what
    /// the records refer to.
    pub evidence: Vec<(String, Vec<u8>)>,
}

/// The replica after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAppended {
    /// Records the batch added (0 for a resend of records already held).
    pub added: u64,
    /// Records the replica holds now.
    pub tree_size: u64,
    /// The RFC 9162 root of the batch's end (`first + records.len()`), which is what the
    /// caller's check was shown.
    pub root: [u8; 32],
}

impl AttestationLog {
    /// A handle on the log named `origin` in this database, added if there is none, sharing
    /// this handle's connections. It reads, keeps checkpoints and cosignatures, and takes
    /// [`append_replica`](Self::append_replica); it has no writer, so `append` fails with
    /// [`LogError::WriterGone`]. It never claims a log from before origins.
    pub async fn replica(&self, origin: &str) -> Result<AttestationLog, LogError> {
        let log = origin::replica(self.pool(), origin).await?;
        Ok(self.sibling(log))
    }

    /// The origins of every log in the database, in the order they were added.
    pub async fn origins(&self) -> Result<Vec<String>, LogError> {
        let rows = sqlx::query("SELECT origin FROM logs WHERE origin IS NOT NULL ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(|source| LogError::Query { source })?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(|source| LogError::Query { source })
    }

    /// Of `digests`, those whose evidence the database does not hold, each once, in order.
    pub async fn missing_evidence(&self, digests: &[String]) -> Result<Vec<String>, LogError> {
        let wanted: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|source| LogError::Query { source })?;
        let held = held_evidence(&mut conn, &wanted)
            .await
            .map_err(|source| LogError::Query { source })?;
        Ok(wanted
            .into_iter()
            .filter(|d| !held.contains(*d))
            .map(str::to_owned)
            .collect())
    }

    /// Appends `batch` at the sequences it gives (see the module docs). `check` is shown the
    /// tree size and root after the batch and may refuse it (`Err(reason)`), in which case
    /// nothing is stored.
    pub async fn append_replica(
        &self,
        batch: &ReplicaBatch,
        check: impl FnOnce(u64, &[u8; 32]) -> Result<(), String>,
    ) -> Result<ReplicaAppended, LogError> {
        let origin = self.origin().ok_or(LogError::NoOrigin)?.to_owned();
        check_evidence_bytes(&origin, &batch.evidence)?;
        let entries = prepare_all(&batch.records)?;
        let query = |source| LogError::Query { source };
        let mut tx = begin_locked(self).await.map_err(query)?;
        let held = held_size(&mut tx, self.backend(), self.log_id())
            .await
            .map_err(query)?;
        if batch.first > held {
            return Err(LogError::ReplicaGap {
                origin,
                held,
                first: batch.first,
            });
        }
        let end = batch.first + u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let overlap = held.min(end) - batch.first;
        compare_held(
            &mut tx,
            self.log_id(),
            &origin,
            batch.first,
            &batch.records,
            overlap,
        )
        .await?;
        let skip = usize::try_from(overlap).unwrap_or(usize::MAX);
        let new = entries.get(skip..).unwrap_or_default();
        require_evidence(&mut tx, &origin, new, &batch.evidence).await?;
        let root = if new.is_empty() {
            tree::root_in(&mut tx, self.log_id(), end).await?
        } else {
            let appended = append_new(&mut tx, self, held, new, &batch.evidence).await?;
            appended.root
        };
        check(end, &root).map_err(|reason| LogError::ReplicaRefused {
            origin: origin.clone(),
            reason,
        })?;
        tx.commit().await.map_err(query)?;
        Ok(ReplicaAppended {
            added: u64::try_from(new.len()).unwrap_or(u64::MAX),
            tree_size: held.max(end),
            root,
        })
    }
}

/// The new records' rows, tree hashes and evidence, written in `tx`.
struct NewRows {
    root: [u8; 32],
}

async fn append_new(
    tx: &mut AnyConnection,
    log: &AttestationLog,
    held: u64,
    new: &[PreparedEntry],
    evidence: &[(String, Vec<u8>)],
) -> Result<NewRows, LogError> {
    let query = |source| LogError::Query { source };
    let (log_id, backend) = (log.log_id(), log.backend());
    let first = writer::reserve_sequences(tx, log_id, new.len())
        .await
        .map_err(query)?;
    if first != held {
        return Err(LogError::Tree {
            problem: format!("replica reserved {first}, expected {held}"),
        });
    }
    let frontier = tree::load_frontier(tx, log_id, first)
        .await
        .map_err(query)?;
    let mut batch_tree = BatchTree::new(frontier);
    let mut rows = Vec::with_capacity(new.len());
    for (sequence, entry) in (first..).zip(new) {
        let leaf = leaf_hash(sequence, &entry.record)?;
        batch_tree.push(leaf)?;
        rows.push(Row {
            sequence,
            sequence_db: i64::try_from(sequence).map_err(|_| LogError::Tree {
                problem: format!("sequence {sequence} out of range"),
            })?,
            leaf,
            entry,
        });
    }
    insert_evidence(tx, backend, evidence)
        .await
        .map_err(query)?;
    writer::insert_records(tx, backend, log_id, &rows)
        .await
        .map_err(query)?;
    writer::insert_tree_hashes(tx, backend, log_id, &batch_tree.rows)
        .await
        .map_err(query)?;
    let frontier = batch_tree.frontier()?;
    let root =
        tlog_tiles::tree_hash(frontier.size, &frontier.hashes).map_err(|e| LogError::Tree {
            problem: format!("root of the replica at {}: {e}", frontier.size),
        })?;
    Ok(NewRows { root: root.0 })
}

/// SQLite: the write lock from BEGIN. PostgreSQL: the replica's `logs` row, locked by the
/// first statement ([`held_size`]).
async fn begin_locked(log: &AttestationLog) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match log.backend() {
        Backend::Sqlite => log.pool().begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => log.pool().begin().await,
    }
}

async fn held_size(
    conn: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
) -> Result<u64, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => "SELECT next_sequence, tree_size FROM logs WHERE id = $1",
        Backend::Postgres => "SELECT next_sequence, tree_size FROM logs WHERE id = $1 FOR UPDATE",
    };
    let row = sqlx::query(sql).bind(log_id).fetch_one(&mut *conn).await?;
    let next: i64 = row.try_get(0)?;
    let tree_size: i64 = row.try_get(1)?;
    if next != tree_size {
        return Err(sqlx::Error::Protocol(format!(
            "log {log_id}: the tree covers {tree_size} of {next} records"
        )));
    }
    u64::try_from(next).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The first `overlap` records of the batch are held already: each must be the same record.
async fn compare_held(
    conn: &mut AnyConnection,
    log_id: i64,
    origin: &str,
    first: u64,
    records: &[Record],
    overlap: u64,
) -> Result<(), LogError> {
    if overlap == 0 {
        return Ok(());
    }
    let query = |source| LogError::Query { source };
    let to_db = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT sequence, leaf_hash FROM records WHERE log_id = $1 AND sequence >= $2 AND sequence < $3 \
         ORDER BY sequence",
    )
    .bind(log_id)
    .bind(to_db(first))
    .bind(to_db(first + overlap))
    .fetch_all(&mut *conn)
    .await
    .map_err(query)?;
    let conflict = |sequence| LogError::ReplicaConflict {
        origin: origin.to_owned(),
        sequence,
    };
    for ((sequence, record), row) in (first..).zip(records).zip(&rows) {
        let stored: String = row.try_get(1).map_err(query)?;
        if stored != hex::encode(leaf_hash(sequence, record)?) {
            return Err(conflict(sequence));
        }
    }
    if u64::try_from(rows.len()).unwrap_or(u64::MAX) != overlap {
        return Err(conflict(first));
    }
    Ok(())
}

fn check_evidence_bytes(origin: &str, evidence: &[(String, Vec<u8>)]) -> Result<(), LogError> {
    for (digest, bytes) in evidence {
        if evidence_digest(bytes) != *digest {
            return Err(LogError::ReplicaEvidence {
                origin: origin.to_owned(),
                digest: digest.chars().take(64).collect(),
                problem: "the bytes do not hash to this digest",
            });
        }
    }
    Ok(())
}

/// Every record's evidence is in the batch or held already.
async fn require_evidence(
    conn: &mut AnyConnection,
    origin: &str,
    new: &[PreparedEntry],
    evidence: &[(String, Vec<u8>)],
) -> Result<(), LogError> {
    let sent: BTreeSet<&str> = evidence.iter().map(|(d, _)| d.as_str()).collect();
    let referred: BTreeSet<&str> = new
        .iter()
        .filter_map(|e| e.record.evidence_digest.as_deref())
        .filter(|d| !sent.contains(d))
        .collect();
    let held = held_evidence(conn, &referred)
        .await
        .map_err(|source| LogError::Query { source })?;
    match referred.into_iter().find(|d| !held.contains(*d)) {
        Some(missing) => Err(LogError::ReplicaEvidence {
            origin: origin.to_owned(),
            digest: missing.to_owned(),
            problem: "a record refers to it and it is neither held nor in the batch",
        }),
        None => Ok(()),
    }
}

async fn held_evidence(
    conn: &mut AnyConnection,
    digests: &BTreeSet<&str>,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let mut held = BTreeSet::new();
    let list: Vec<&str> = digests.iter().copied().collect();
    for chunk in list.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only `$n` placeholders are interpolated; every digest is bound.
        let sql = format!(
            "SELECT digest FROM evidence WHERE digest IN ({})",
            placeholders.join(", ")
        );
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, d| {
                q.bind((*d).to_owned())
            });
        for row in query.fetch_all(&mut *conn).await? {
            held.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(held)
}

async fn insert_evidence(
    conn: &mut AnyConnection,
    backend: Backend,
    evidence: &[(String, Vec<u8>)],
) -> Result<(), sqlx::Error> {
    let distinct: BTreeMap<&str, &[u8]> = evidence
        .iter()
        .map(|(d, b)| (d.as_str(), b.as_slice()))
        .collect();
    let rows: Vec<_> = distinct.into_iter().collect();
    writer::insert_rows(
        conn,
        backend,
        "evidence (digest, bytes)",
        2,
        "ON CONFLICT (digest) DO NOTHING",
        &rows,
        |q, (digest, bytes)| q.bind((*digest).to_owned()).bind(bytes.to_vec()),
    )
    .await
}

/// The stored columns of each record, as the writer stores its own.
fn prepare_all(records: &[Record]) -> Result<Vec<PreparedEntry>, LogError> {
    records
        .iter()
        .map(|record| {
            let reasons_json = serde_json::to_string(&record.reasons)
                .map_err(|source| LogError::Encode { source })?;
            Ok(PreparedEntry {
                time_us: unix_micros(record.time, "time")?,
                not_after_us: record
                    .cert_not_after
                    .map(|t| unix_micros(t, "cert_not_after"))
                    .transpose()?,
                record: record.clone(),
                reasons_json,
                evidence: None,
                blobs: Vec::new(),
                node: None,
                revocation: None,
                reset: None,
                precondition: None,
            })
        })
        .collect()
}
