//! Where an audit reads a log from: the database or an archive ([`AttestationLog`]), or the
//! attestor's Audit service (a client in the `garrison` CLI).

use std::collections::HashMap;
use std::future::Future;

use garrison_log::{
    AttestationLog, KeptNodeState, Query, RevocationTarget, StoredCheckpoint, StoredCosignature,
    StoredRecord,
};

use crate::AuditError;

/// The stored hashes of a log's Merkle tree, as [`LogSource::stored_tree_hashes`] returns
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTreeHashes {
    /// The records the stored tree covers: beyond them none are kept yet (a log migrated
    /// from before the tree has none until an attestor opens it and builds it).
    pub tree_size: u64,
    /// The sequence the source's log states its next record will get (one past its last).
    pub next_sequence: u64,
    /// Those of the hashes asked for that are kept, by index.
    pub hashes: Vec<(u64, [u8; 32])>,
}

/// The revocations a site's database enforces, by the sequence of the record that made each,
/// as [`LogSource::enforced_revocations`] returns them.
pub type EnforcedRevocations = Vec<(u64, RevocationTarget)>;

/// A log as the auditor reads it. Nothing read through it is trusted: [`verify`](crate::verify)
/// recomputes and checks everything.
pub trait LogSource {
    /// The log's origin, if it has one.
    fn origin(&self) -> Option<String>;
    /// Up to `limit` records after sequence `after` (from the first without it), in order.
    fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, AuditError>>;
    /// Evidence bytes by digest.
    fn evidence(&self, digest: &str) -> impl Future<Output = Result<Option<Vec<u8>>, AuditError>>;
    /// [`evidence`](Self::evidence) for each of `digests` (distinct), keyed by the digest as
    /// given, each holding what `evidence` answers for it; digests not held are absent.
    /// [`verify`](crate::verify) asks for a page's digests at once: a database answers them
    /// in a few queries instead of one round trip each.
    fn evidence_many(
        &self,
        digests: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Vec<u8>>, AuditError>>;
    /// Every signed checkpoint kept.
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<StoredCheckpoint>, AuditError>>;
    /// Every log key certificate chain kept (PEM).
    fn log_key_certificates(&self) -> impl Future<Output = Result<Vec<String>, AuditError>>;
    /// How many records the source says the log holds, if it says: the Audit service states
    /// its log's size, a database or an archive states none (it holds what it holds).
    /// `verify`, `replay` and `export` read no record at or beyond the size stated when they
    /// start on the records, so a service cannot keep them reading without end.
    fn stated_size(&self) -> impl Future<Output = Result<Option<u64>, AuditError>>;
    /// The hub's cosignatures kept of the log's checkpoints, by size.
    fn cosignatures(&self) -> impl Future<Output = Result<Vec<StoredCosignature>, AuditError>>;
    /// The certificate chains (PEM) of the hub witness keys, to check the cosignatures with.
    fn witness_certificates(&self) -> impl Future<Output = Result<Vec<String>, AuditError>>;
    /// The stored hashes of the log's Merkle tree with indexes in `first..end` that its tree
    /// covers, by index (at most [`garrison_log::MAX_STORED_HASHES_READ`] asked at once),
    /// or `None` for a source that keeps none of its own: the Audit service serves proofs
    /// made from them, which the auditor checks, not the hashes. [`verify`](crate::verify)
    /// compares them with the tree of the stored leaves, so that proofs served from a hash
    /// someone changed are found before anyone relies on one.
    fn stored_tree_hashes(
        &self,
        first: u64,
        end: u64,
    ) -> impl Future<Output = Result<Option<StoredTreeHashes>, AuditError>>;
    /// How many stored tree hashes the source keeps outside its tree (an index below 0 or
    /// at or beyond the tree's stored-hash count), if it keeps hashes of its own. None are
    /// written there; one there was put by someone else, and makes the writer's append fail
    /// once the tree reaches its index.
    fn stray_tree_hashes(&self) -> impl Future<Output = Result<Option<u64>, AuditError>> {
        async { Ok(None) }
    }
    /// The revocations the attestor enforces for this log, if the source is the site's own
    /// database (see [`AttestationLog::enforced_revocations`]); `None` for a copy of the
    /// log or the Audit service. [`verify`](crate::verify) checks them against the revoke
    /// records, both ways.
    fn enforced_revocations(
        &self,
    ) -> impl Future<Output = Result<Option<EnforcedRevocations>, AuditError>>;
    /// The node states the site keeps for this log, by node id after `after`, at most
    /// `limit` (see [`AttestationLog::kept_node_states`]); `None` for a source that keeps
    /// none of its own (the Audit service). [`verify`](crate::verify) checks them against
    /// the records that wrote them, on a site's own database.
    fn node_states(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Option<Vec<KeptNodeState>>, AuditError>>;
}

impl LogSource for AttestationLog {
    fn origin(&self) -> Option<String> {
        AttestationLog::origin(self).map(str::to_owned)
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        self.query(&Query {
            after_sequence: after,
            limit: Some(limit),
            ..Query::default()
        })
        .await
        .map_err(AuditError::Log)
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, AuditError> {
        AttestationLog::evidence(self, digest)
            .await
            .map_err(AuditError::Log)
    }

    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, AuditError> {
        AttestationLog::evidence_many(self, digests)
            .await
            .map_err(AuditError::Log)
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        AttestationLog::checkpoints(self)
            .await
            .map_err(AuditError::Log)
    }

    async fn log_key_certificates(&self) -> Result<Vec<String>, AuditError> {
        AttestationLog::log_key_certificates(self)
            .await
            .map_err(AuditError::Log)
    }

    async fn stated_size(&self) -> Result<Option<u64>, AuditError> {
        Ok(None)
    }

    async fn cosignatures(&self) -> Result<Vec<StoredCosignature>, AuditError> {
        AttestationLog::cosignatures(self)
            .await
            .map_err(AuditError::Log)
    }

    async fn witness_certificates(&self) -> Result<Vec<String>, AuditError> {
        AttestationLog::witness_certificates(self)
            .await
            .map_err(AuditError::Log)
    }

    async fn stored_tree_hashes(
        &self,
        first: u64,
        end: u64,
    ) -> Result<Option<StoredTreeHashes>, AuditError> {
        // The head first: a record it counts is visible to any read after it.
        let (next_sequence, tree_size) = self.head().await.map_err(AuditError::Log)?;
        // (No log holds 2^62 records; the bound keeps the index arithmetic in range.)
        let end = end.min(tlog_tiles::stored_hash_count(tree_size.min(1 << 62)));
        let hashes = if first < end {
            AttestationLog::stored_tree_hashes(self, first, end)
                .await
                .map_err(AuditError::Log)?
        } else {
            Vec::new()
        };
        Ok(Some(StoredTreeHashes {
            tree_size,
            next_sequence,
            hashes,
        }))
    }

    async fn stray_tree_hashes(&self) -> Result<Option<u64>, AuditError> {
        AttestationLog::stray_tree_hashes(self)
            .await
            .map(Some)
            .map_err(AuditError::Log)
    }

    async fn enforced_revocations(&self) -> Result<Option<EnforcedRevocations>, AuditError> {
        AttestationLog::enforced_revocations(self)
            .await
            .map_err(AuditError::Log)
    }

    async fn node_states(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<KeptNodeState>>, AuditError> {
        self.kept_node_states(after, limit)
            .await
            .map(Some)
            .map_err(AuditError::Log)
    }
}

/// A log's records, page after page, as every pass over them reads them: each page at most
/// `limit` records, each after the one before (a page served again, or out of order, is
/// refused), and none at or beyond the size the source stated when the pass began.
pub(crate) struct Pages {
    after: Option<u64>,
    end: u64,
    limit: u32,
    ended: bool,
}

impl Pages {
    /// Starts a pass over `source`'s records (reading the size it states now).
    pub(crate) async fn start<S: LogSource>(source: &S, limit: u32) -> Result<Self, AuditError> {
        Ok(Pages {
            after: None,
            end: source.stated_size().await?.unwrap_or(u64::MAX),
            limit,
            ended: false,
        })
    }

    /// The next page; empty once every record was read.
    pub(crate) async fn next<S: LogSource>(
        &mut self,
        source: &S,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        if self.ended || self.after.map_or(0, |a| a.saturating_add(1)) >= self.end {
            return Ok(Vec::new());
        }
        let mut page = source.records_after(self.after, self.limit).await?;
        if page.len() > self.limit as usize {
            return Err(AuditError::Remote(format!(
                "{} records served for a page of {}",
                page.len(),
                self.limit
            )));
        }
        let mut previous = self.after;
        for record in &page {
            if let Some(p) = previous.filter(|p| record.sequence <= *p) {
                return Err(AuditError::Remote(format!(
                    "record #{} served after #{p}",
                    record.sequence
                )));
            }
            previous = Some(record.sequence);
        }
        // What lies beyond the size stated at the start is not this pass's.
        if let Some(cut) = page.iter().position(|r| r.sequence >= self.end) {
            page.truncate(cut);
            self.ended = true;
        }
        match page.last() {
            Some(last) => self.after = Some(last.sequence),
            None => self.ended = true,
        }
        Ok(page)
    }
}
