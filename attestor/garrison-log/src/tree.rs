//! The Merkle tree over each log's records (RFC 6962 §2.1 / RFC 9162 §2.1), kept as the tlog
//! stored hashes (the `tlog_tiles` crate's layout: record `n` adds its leaf hash and the
//! roots of the subtrees it completes, from index `stored_hash_index(0, n)` on).
//!
//! The writer adds a batch's hashes in the batch's own transaction ([`BatchTree`]), so that
//! records and the tree over them commit together. It keeps the tree's right edge (the
//! "frontier": at most one hash per level) between batches, so extending the tree reads
//! nothing from the database unless another process appended in between.
//!
//! Reads ([`root`], [`inclusion_proof`], [`consistency_proof`]) fetch only the O(log n)
//! hashes they need, in one query.

use std::collections::HashMap;

use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row as _};
use tlog_tiles::{Hash, HashReader};

use crate::LogError;

/// Stored hashes by index: the part of the tree a computation needs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hashes(HashMap<u64, Hash>);

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Answers every read with a zero hash and remembers which indexes were asked for: the tlog
/// functions ask for their indexes before they look at any hash, so one dry run says what a
/// real run will read.
#[derive(Debug, Default)]
struct Wanted(std::cell::RefCell<Vec<u64>>);

impl HashReader for Wanted {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash::default(); indexes.len()])
    }
}

/// The stored-hash indexes of the tree of `size` records' right edge: what [`root`] reads
/// and what appending record `size` may read.
pub(crate) fn frontier_indexes(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    tlog_tiles::sub_tree_index(0, size, Vec::new())
}

/// The tree's right edge after `size` records.
#[derive(Debug, Clone)]
pub(crate) struct Frontier {
    pub size: u64,
    pub hashes: Hashes,
}

/// The hashes a batch adds, computed from the frontier before it.
pub(crate) struct BatchTree {
    first: u64,
    next: u64,
    known: Hashes,
    /// (index, hash) rows to insert, in index order.
    pub rows: Vec<(i64, Vec<u8>)>,
}

impl BatchTree {
    /// Starts a batch whose first record is `frontier.size`.
    pub fn new(frontier: Frontier) -> Self {
        BatchTree {
            first: frontier.size,
            next: frontier.size,
            known: frontier.hashes,
            rows: Vec::new(),
        }
    }

    /// Adds record `self.next` with this leaf hash.
    pub fn push(&mut self, leaf: [u8; 32]) -> Result<(), LogError> {
        let n = self.next;
        let hashes = tlog_tiles::stored_hashes_for_record_hash(n, Hash(leaf), &self.known)
            .map_err(|e| tree_error(format!("extending the tree with record {n}: {e}")))?;
        let start = tlog_tiles::stored_hash_index(0, n);
        for (index, hash) in (start..).zip(hashes) {
            self.rows.push((db_index(index)?, hash.0.to_vec()));
            self.known.0.insert(index, hash);
        }
        self.next = n + 1;
        Ok(())
    }

    /// The frontier after the batch, to keep once it has committed.
    pub fn frontier(&self) -> Result<Frontier, LogError> {
        let mut hashes = Hashes::default();
        for index in frontier_indexes(self.next) {
            let hash = self.known.0.get(&index).copied().ok_or_else(|| {
                tree_error(format!(
                    "stored hash {index} missing after records {}..{}",
                    self.first, self.next
                ))
            })?;
            hashes.0.insert(index, hash);
        }
        Ok(Frontier {
            size: self.next,
            hashes,
        })
    }
}

/// Reads the frontier of the tree of `size` records.
pub(crate) async fn load_frontier(
    conn: &mut AnyConnection,
    log_id: i64,
    size: u64,
) -> Result<Frontier, sqlx::Error> {
    let hashes = read_hashes(conn, log_id, &frontier_indexes(size), None).await?;
    Ok(Frontier { size, hashes })
}

/// Stored hashes read per statement. A proof needs about one or two per level of the tree
/// (about 50 at 10 M records), a root one per level; larger trees read more than one chunk.
const HASHES_PER_STATEMENT: usize = 64;

fn encode_index(e: std::num::TryFromIntError) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// The stored hashes at `indexes`; fails if any is missing. With `within`, only while the
/// log's tree covers that many records (checked in the same statement: none is read
/// otherwise, and the read fails as missing).
pub(crate) async fn read_hashes(
    conn: &mut AnyConnection,
    log_id: i64,
    indexes: &[u64],
    within: Option<i64>,
) -> Result<Hashes, sqlx::Error> {
    let mut found = Hashes::default();
    // Statements of one shape whatever the indexes (a chunk is padded by repeating its
    // first index), so each connection prepares them once and keeps them: a statement text
    // of its own per proof made PostgreSQL parse and plan every proof anew.
    let (guard, first_index) = match within {
        Some(_) => (
            " AND EXISTS (SELECT 1 FROM logs WHERE id = $1 AND tree_size >= $2)",
            3,
        ),
        None => ("", 2),
    };
    let placeholders = (first_index..first_index + HASHES_PER_STATEMENT)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT idx, hash FROM tree_hashes WHERE log_id = $1 AND idx IN ({placeholders}){guard}"
    );
    for chunk in indexes.chunks(HASHES_PER_STATEMENT) {
        let mut query = sqlx::query(AssertSqlSafe(sql.clone())).bind(log_id);
        if let Some(size) = within {
            query = query.bind(size);
        }
        let padding = chunk.first().copied().unwrap_or_default();
        for index in chunk
            .iter()
            .chain(std::iter::repeat(&padding))
            .take(HASHES_PER_STATEMENT)
        {
            query = query.bind(i64::try_from(*index).map_err(encode_index)?);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        for row in rows {
            let index: i64 = row.try_get(0)?;
            let bytes: Vec<u8> = row.try_get(1)?;
            let hash = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                sqlx::Error::Decode(format!("tree_hashes[{index}] is not 32 bytes").into())
            })?;
            found.0.insert(index.unsigned_abs(), Hash(hash));
        }
    }
    if let Some(missing) = indexes.iter().find(|i| !found.0.contains_key(i)) {
        return Err(sqlx::Error::Protocol(format!(
            "log {log_id}: stored tree hash {missing} is missing"
        )));
    }
    Ok(found)
}

/// The most stored hashes `AttestationLog::stored_tree_hashes` reads at once (a page of 50,000 records).
pub const MAX_STORED_HASHES_READ: u64 = 100_000;

/// The stored hashes with indexes in `first..end`, by index (at most
/// [`MAX_STORED_HASHES_READ`]: a larger range is refused).
pub(crate) async fn stored_range(
    pool: &AnyPool,
    log_id: i64,
    first: u64,
    end: u64,
) -> Result<Vec<(u64, [u8; 32])>, LogError> {
    if end.saturating_sub(first) > MAX_STORED_HASHES_READ {
        return Err(tree_error(format!(
            "stored hashes {first}..{end}: at most {MAX_STORED_HASHES_READ} are read at once"
        )));
    }
    let query = |source| LogError::Query { source };
    let rows = sqlx::query(
        "SELECT idx, hash FROM tree_hashes WHERE log_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
    )
    .bind(log_id)
    .bind(db_index(first)?)
    .bind(db_index(end.min(i64::MAX.unsigned_abs()))?)
    .fetch_all(pool)
    .await
    .map_err(query)?;
    rows.iter()
        .map(|row| {
            let index: i64 = row.try_get(0).map_err(query)?;
            let bytes: Vec<u8> = row.try_get(1).map_err(query)?;
            let hash = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| LogError::Corrupt {
                column: "tree_hashes.hash",
                found: format!("{} bytes", bytes.len()),
            })?;
            Ok((index.unsigned_abs(), hash))
        })
        .collect()
}

/// The root hash of the tree of the first `size` records.
pub(crate) async fn root(pool: &AnyPool, log_id: i64, size: u64) -> Result<[u8; 32], LogError> {
    refuse_beyond_any_log(pool, log_id, size).await?;
    let hashes = fetch(pool, log_id, &frontier_indexes(size), size).await?;
    let root = tlog_tiles::tree_hash(size, &hashes)
        .map_err(|e| tree_error(format!("root of size {size}: {e}")))?;
    Ok(root.0)
}

/// [`root`], inside a transaction.
pub(crate) async fn root_in(
    conn: &mut AnyConnection,
    log_id: i64,
    size: u64,
) -> Result<[u8; 32], LogError> {
    let hashes = read_hashes(conn, log_id, &frontier_indexes(size), None)
        .await
        .map_err(|source| LogError::Query { source })?;
    let root = tlog_tiles::tree_hash(size, &hashes)
        .map_err(|e| tree_error(format!("root of size {size}: {e}")))?;
    Ok(root.0)
}

/// The RFC 9162 inclusion proof of record `index` in the tree of `size` records.
pub(crate) async fn inclusion_proof(
    pool: &AnyPool,
    log_id: i64,
    index: u64,
    size: u64,
) -> Result<Vec<[u8; 32]>, LogError> {
    if index >= size {
        return Err(LogError::ProofRange {
            what: "inclusion",
            first: index,
            second: size,
        });
    }
    refuse_beyond_any_log(pool, log_id, size).await?;
    let wanted = Wanted::default();
    let _ = tlog_tiles::prove_record(size, index, &wanted);
    let hashes = fetch(pool, log_id, &wanted.0.into_inner(), size).await?;
    let proof = tlog_tiles::prove_record(size, index, &hashes)
        .map_err(|e| tree_error(format!("inclusion proof of {index} in {size}: {e}")))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// The RFC 9162 consistency proof from the tree of `old` records to the tree of `new`.
pub(crate) async fn consistency_proof(
    pool: &AnyPool,
    log_id: i64,
    old: u64,
    new: u64,
) -> Result<Vec<[u8; 32]>, LogError> {
    if old == 0 || old > new {
        return Err(LogError::ProofRange {
            what: "consistency",
            first: old,
            second: new,
        });
    }
    refuse_beyond_any_log(pool, log_id, new).await?;
    let wanted = Wanted::default();
    let _ = tlog_tiles::prove_tree(new, old, &wanted);
    let hashes = fetch(pool, log_id, &wanted.0.into_inner(), new).await?;
    let proof = tlog_tiles::prove_tree(new, old, &hashes)
        .map_err(|e| tree_error(format!("consistency proof {old} -> {new}: {e}")))?;
    Ok(proof.into_iter().map(|h| h.0).collect())
}

/// The stored hashes at `indexes` of the tree of `size` records, read in one statement that
/// also checks that the log's tree covers `size`: a proof or a root costs one statement, not
/// a size check and then a read (on PostgreSQL each is a round trip, after the pool's check
/// of the connection it hands out). Only when the read fails is the size looked up, on the
/// same connection, to say why: [`LogError::ProofRange`] for a tree larger than the log's.
async fn fetch(
    pool: &AnyPool,
    log_id: i64,
    indexes: &[u64],
    size: u64,
) -> Result<Hashes, LogError> {
    let query = |source| LogError::Query { source };
    let mut conn = pool.acquire().await.map_err(query)?;
    // (A size beyond i64 is beyond every log: the size check below says so.)
    if let (false, Ok(within)) = (indexes.is_empty(), i64::try_from(size)) {
        let read = read_hashes(&mut conn, log_id, indexes, Some(within)).await;
        if let Ok(found) = read {
            return Ok(found);
        }
        check_size(&mut conn, log_id, size).await?;
        // The tree covers `size` now: it may have grown to it since the read. Once more.
        return read_hashes(&mut conn, log_id, indexes, Some(within))
            .await
            .map_err(query);
    }
    check_size(&mut conn, log_id, size).await?;
    Ok(Hashes::default())
}

/// No log holds more records than this; the stored-hash index arithmetic (about twice the
/// size) must not overflow.
const MAX_TREE_SIZE: u64 = 1 << 62;

/// A size beyond [`MAX_TREE_SIZE`] is refused by the size check before any stored-hash index
/// is computed for it.
async fn refuse_beyond_any_log(pool: &AnyPool, log_id: i64, size: u64) -> Result<(), LogError> {
    if size <= MAX_TREE_SIZE {
        return Ok(());
    }
    let mut conn = pool
        .acquire()
        .await
        .map_err(|source| LogError::Query { source })?;
    check_size(&mut conn, log_id, size).await?;
    Err(tree_error(format!("tree size {size} is beyond any log")))
}

/// Fails with [`LogError::ProofRange`] if the log's tree holds fewer than `size` records.
async fn check_size(conn: &mut AnyConnection, log_id: i64, size: u64) -> Result<(), LogError> {
    let query = |source| LogError::Query { source };
    let row = sqlx::query("SELECT tree_size FROM logs WHERE id = $1")
        .bind(log_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(query)?;
    let have: i64 = row.try_get(0).map_err(query)?;
    let have = u64::try_from(have).map_err(|_| LogError::Corrupt {
        column: "tree_size",
        found: have.to_string(),
    })?;
    if size > have {
        return Err(LogError::ProofRange {
            what: "tree",
            first: size,
            second: have,
        });
    }
    Ok(())
}

fn db_index(index: u64) -> Result<i64, LogError> {
    i64::try_from(index).map_err(|_| tree_error(format!("stored hash index {index} too large")))
}

fn tree_error(problem: String) -> LogError {
    LogError::Tree { problem }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::{HASHES_PER_STATEMENT, read_hashes};
    use crate::{AttestationLog, Backend, Decision, LogConfig, NewEntry, Record, RecordKind};

    /// Proofs and roots read fewer than [`HASHES_PER_STATEMENT`] hashes below about 2^32
    /// records, so the tests through the public API never reach a second chunk: read every
    /// stored hash of a small tree at once, in several chunks with a partial last one.
    #[tokio::test]
    async fn more_hashes_than_one_statement_reads_are_read_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let log = AttestationLog::open(&LogConfig {
            url: url.clone(),
            origin: None,
            max_batch: 64,
            max_connections: 1,
        })
        .await
        .unwrap();
        for i in 0..100 {
            let record = Record {
                time: time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + i).unwrap(),
                site: "s1".to_owned(),
                kind: RecordKind::Enroll,
                node_id: Some(format!("n{i}")),
                spiffe_id: None,
                decision: Decision::Allow,
                reasons: vec![],
                policy_digest: None,
                evidence_digest: None,
                cert_serial: None,
                cert_not_after: None,
            };
            log.append(NewEntry {
                record,
                evidence: None,
                node_update: None,
            })
            .await
            .unwrap();
        }
        // The range read an auditor's verify makes: the same hashes, by index; and a range
        // larger than allowed at once is refused, not read.
        let ranged = log.stored_tree_hashes(0, 197).await.unwrap();
        assert_eq!(ranged.len(), 197);
        assert!(ranged.windows(2).all(|w| w[0].0 + 1 == w[1].0));
        let limit = super::MAX_STORED_HASHES_READ;
        assert!(log.stored_tree_hashes(0, limit).await.is_ok());
        assert!(log.stored_tree_hashes(0, limit + 1).await.is_err());
        assert!(log.stored_tree_hashes(5, 5).await.unwrap().is_empty());
        log.close().await;
        let mut conn = crate::log::dedicated_connection(&url, Backend::Sqlite)
            .await
            .unwrap();
        // A tree of 100 records stores 2 * 100 - popcount(100) = 197 hashes.
        let stored: Vec<u64> = (0..197).collect();
        assert!(stored.len() > 3 * HASHES_PER_STATEMENT);
        let all = read_hashes(&mut conn, 1, &stored, Some(100)).await.unwrap();
        for (index, hash) in &ranged {
            assert_eq!(all.0[index].0, *hash, "stored hash {index}");
        }
        for index in [0, 63, 64, 127, 128, 191, 192, 196] {
            let one = read_hashes(&mut conn, 1, &[index], None).await.unwrap();
            assert_eq!(all.0[&index], one.0[&index], "hash {index}");
        }
        assert_eq!(all.0.len(), stored.len());
        // One missing index in the last chunk fails the whole read, and names it.
        let mut asked = stored.clone();
        asked.push(197);
        let missing = read_hashes(&mut conn, 1, &asked, None).await.unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("stored tree hash 197 is missing"),
            "{missing}"
        );
        // Beyond the tree's size, no chunk is read.
        assert!(read_hashes(&mut conn, 1, &stored, Some(101)).await.is_err());
        sqlx::Connection::close(conn).await.unwrap();
    }
}
