//! Where an audit reads a log from: the database or an archive ([`AttestationLog`]), or the
//! attestor's Audit service (a client in the `garrison` CLI).

use std::collections::HashMap;
use std::future::Future;

use garrison_log::{AttestationLog, Query, StoredCheckpoint, StoredCosignature, StoredRecord};

use crate::AuditError;

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
    /// How many records the log says it holds (its tree size). [`export`](crate::export)
    /// writes no record at or beyond the size it read when it started: a source cannot make
    /// it write more than it claimed.
    fn size(&self) -> impl Future<Output = Result<u64, AuditError>>;
    /// The hub's cosignatures kept of the log's checkpoints, by size.
    fn cosignatures(&self) -> impl Future<Output = Result<Vec<StoredCosignature>, AuditError>>;
    /// The certificate chains (PEM) of the hub witness keys, to check the cosignatures with.
    fn witness_certificates(&self) -> impl Future<Output = Result<Vec<String>, AuditError>>;
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

    async fn size(&self) -> Result<u64, AuditError> {
        self.tree_size().await.map_err(AuditError::Log)
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
}
