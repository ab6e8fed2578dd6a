//! Building the Merkle tree over records appended before the tree existed (a database
//! migrated in place): run by [`AttestationLog::open`](crate::AttestationLog::open) before
//! the writer starts.
//!
//! Each leaf is recomputed from the record's columns, not copied from its stored
//! `leaf_hash`: a record whose stored hash disagrees with its contents stops the build (the
//! log would otherwise vouch for an edited row). Work goes in chunks, each its own
//! transaction holding the log's write lock, so a crash midway resumes where it stopped and
//! a concurrent writer of the same log waits or finds the tree complete.

use sqlx::{Any, AnyPool, Row as _, Transaction};

use crate::leaf::leaf_hash;
use crate::read;
use crate::tree::{self, BatchTree};
use crate::writer::insert_tree_hashes;
use crate::{Backend, LogError};

/// Records per transaction.
const CHUNK: i64 = 20_000;

/// Extends log `log_id`'s tree until it covers every record; returns how many were added.
pub(crate) async fn build(pool: &AnyPool, backend: Backend, log_id: i64) -> Result<u64, LogError> {
    let mut added = 0;
    loop {
        let step =
            build_chunk(pool, backend, log_id)
                .await
                .map_err(|source| LogError::TreeBuild {
                    log_id,
                    source: Box::new(source),
                })?;
        if step == 0 {
            return Ok(added);
        }
        added += step;
        tracing::info!(
            log_id,
            added,
            "building the Merkle tree over existing records"
        );
    }
}

async fn build_chunk(pool: &AnyPool, backend: Backend, log_id: i64) -> Result<u64, LogError> {
    let query = |source| LogError::Query { source };
    let mut tx: Transaction<'static, Any> = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(query)?,
        Backend::Postgres => pool.begin().await.map_err(query)?,
    };
    let lock = match backend {
        Backend::Sqlite => "SELECT tree_size, next_sequence FROM logs WHERE id = $1",
        Backend::Postgres => "SELECT tree_size, next_sequence FROM logs WHERE id = $1 FOR UPDATE",
    };
    let row = sqlx::query(lock)
        .bind(log_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(query)?;
    let tree_size: i64 = row.try_get(0).map_err(query)?;
    let next: i64 = row.try_get(1).map_err(query)?;
    if tree_size >= next {
        return Ok(0);
    }
    let records = read::records_from(&mut tx, log_id, tree_size, CHUNK).await?;
    if records.is_empty() {
        return Err(LogError::Corrupt {
            column: "sequence",
            found: format!("no record at {tree_size} although the log holds {next}"),
        });
    }
    let first = tree_size.unsigned_abs();
    let frontier = tree::load_frontier(&mut tx, log_id, first)
        .await
        .map_err(query)?;
    let mut tree = BatchTree::new(frontier);
    for (expected, stored) in (first..).zip(&records) {
        if stored.sequence != expected {
            return Err(LogError::Corrupt {
                column: "sequence",
                found: format!("{} where {expected} was expected", stored.sequence),
            });
        }
        let leaf = leaf_hash(stored.sequence, &stored.record)?;
        if leaf != stored.leaf_hash {
            return Err(LogError::LeafMismatch {
                sequence: stored.sequence,
            });
        }
        tree.push(leaf)?;
    }
    insert_tree_hashes(&mut tx, backend, log_id, &tree.rows)
        .await
        .map_err(query)?;
    let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
    let new_size = i64::try_from(first + count).map_err(|_| LogError::Corrupt {
        column: "tree_size",
        found: (first + count).to_string(),
    })?;
    sqlx::query("UPDATE logs SET tree_size = $1 WHERE id = $2")
        .bind(new_size)
        .bind(log_id)
        .execute(&mut *tx)
        .await
        .map_err(query)?;
    tx.commit().await.map_err(query)?;
    Ok(count)
}
