//! [`AttestationLog::export_sqlite`]: one log, as stored, in a new SQLite file an auditor
//! can take away.
//!
//! The archive has this crate's schema, so every reader of a log (`garrison audit query`,
//! `verify`, `prove`) opens it like a live database. It holds the log's records exactly as
//! stored (a tampered row stays tampered, for `verify` to find), the evidence they refer to
//! (with the event logs and policy bundles that evidence names), the stored tree hashes,
//! every checkpoint and every log key certificate chain. Node state is not copied: it is
//! derived from the records. The root certificate is not in it either: the auditor brings
//! their own.
//!
//! [`ArchiveWriter`] writes the same kind of archive from what was read elsewhere (the
//! attestor's Audit service, for an auditor without database access): records and their
//! leaf hashes as served, evidence under the digests asked for, checkpoints and log key
//! certificates. Its tree hashes are built from the served leaf hashes, so `prove` works on
//! it; `verify` recomputes every leaf from its record and finds any that disagree.

use std::collections::BTreeSet;
use std::path::Path;

use sqlx::{AnyConnection, Connection as _, Row as _};

use crate::leaf::unix_micros;
use crate::tree::{BatchTree, Frontier, Hashes};
use crate::writer::{insert_rows, insert_tree_hashes};
use crate::{
    AttestationLog, Backend, LogConfig, LogError, Query, StoredCheckpoint, StoredCosignature,
    StoredRecord,
};

/// Records copied per page.
const PAGE: u32 = 2_000;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    pub records: u64,
    pub evidence: u64,
    pub tree_hashes: u64,
    pub checkpoints: u64,
    pub key_certificates: u64,
    /// Witnesses' cosignatures of the checkpoints, and their witness certificate chains.
    pub cosignatures: u64,
}

impl AttestationLog {
    /// Writes this log into a new SQLite database at `path` (which must not exist).
    pub async fn export_sqlite(&self, path: &Path) -> Result<ExportSummary, LogError> {
        let origin = self.origin().ok_or(LogError::NoOrigin)?.to_owned();
        claim_archive_path(path)?;
        let url = format!("sqlite://{}", path.display());
        // Copied on a connection of its own that does not enforce the schema's foreign keys:
        // an archive keeps what the log holds, a record whose evidence was deleted included,
        // for `verify` to report (a live log's foreign keys would refuse it).
        let written = async {
            let mut conn = new_archive(&url, &origin).await?;
            let mut summary = ExportSummary::default();
            let copied = self.copy_into(&mut conn, &mut summary).await;
            let closed = conn.close().await.map_err(query_error);
            copied?;
            closed?;
            Ok(summary)
        }
        .await;
        if written.is_err() {
            remove_archive(path);
        }
        written
    }

    async fn copy_into(
        &self,
        target: &mut AnyConnection,
        summary: &mut ExportSummary,
    ) -> Result<(), LogError> {
        // A log being appended to while it is copied: each read bounds the next. A
        // cosignature is stored after its checkpoint, a checkpoint after the records it
        // covers, and the head moves with the records; so cosignatures are read before the
        // checkpoints, those before the head, and the records (and tree hashes) appended
        // meanwhile are copied up to the head at the end. The archive is then the log as it
        // stood when its head was read, plus whatever was stored out of place (records
        // beyond the head, a checkpoint beyond the records: left for verify to find).
        let after = self.copy_records(target, summary, None, None).await?;
        let hashes_from = self.copy_tree_hashes(target, summary, 0).await?;
        summary.cosignatures = self.copy_cosignatures(target).await?;
        for checkpoint in self.checkpoints().await? {
            insert_checkpoint(target, &checkpoint).await?;
            summary.checkpoints += 1;
        }
        let rows = sqlx::query(
            "SELECT digest, public_key, chain_pem, added_us FROM log_key_certificates WHERE log_id = $1",
        )
        .bind(self.log_id())
        .fetch_all(self.pool())
        .await
        .map_err(query_error)?;
        for row in rows {
            let digest: String = row.try_get(0).map_err(query_error)?;
            let key: Vec<u8> = row.try_get(1).map_err(query_error)?;
            let chain: String = row.try_get(2).map_err(query_error)?;
            let added: i64 = row.try_get(3).map_err(query_error)?;
            insert_key_certificate(target, digest, key, chain, added).await?;
            summary.key_certificates += 1;
        }
        let head = sqlx::query("SELECT next_sequence, tree_size FROM logs WHERE id = $1")
            .bind(self.log_id())
            .fetch_one(self.pool())
            .await
            .map_err(query_error)?;
        let next: i64 = head.try_get(0).map_err(query_error)?;
        let tree: i64 = head.try_get(1).map_err(query_error)?;
        self.copy_records(target, summary, after, u64::try_from(next).ok())
            .await?;
        self.copy_tree_hashes(target, summary, hashes_from).await?;
        execute(
            sqlx::query("UPDATE logs SET next_sequence = $1, tree_size = $2 WHERE id = 1")
                .bind(next)
                .bind(tree),
            target,
        )
        .await
    }

    /// The witnesses' cosignatures of this log's checkpoints, and every witness certificate
    /// chain, which an auditor checks them with.
    async fn copy_cosignatures(&self, target: &mut AnyConnection) -> Result<u64, LogError> {
        let cosignatures = self.cosignatures().await?;
        for c in &cosignatures {
            insert_cosignature(target, c).await?;
        }
        for chain in self.witness_certificates().await? {
            insert_witness_certificate(target, chain).await?;
        }
        Ok(cosignatures.len() as u64)
    }

    /// The evidence the page's records name, and the blobs that evidence names in turn (event
    /// logs, policy bundles), read a page's worth at a time. What the archive holds already
    /// (a fleet's one event log, evidence records share) is found there ([`not_held`]) and
    /// neither read nor counted again, so nothing is remembered across pages and memory stays
    /// bounded by a page.
    async fn copy_evidence(
        &self,
        target: &mut AnyConnection,
        page: &[StoredRecord],
    ) -> Result<u64, LogError> {
        let mut wanted: BTreeSet<String> = page
            .iter()
            .filter_map(|r| r.record.evidence_digest.clone())
            .collect();
        let mut rows = Vec::new();
        let mut seen = BTreeSet::new();
        while !wanted.is_empty() {
            let ask: Vec<String> = std::mem::take(&mut wanted)
                .into_iter()
                .filter(|d| seen.insert(d.clone()))
                .collect();
            // Evidence an earlier page's records named already (one a fleet shares) is in
            // the archive: neither read again nor counted again.
            let ask = not_held(target, ask).await?;
            for (digest, bytes) in self.evidence_many(&ask).await? {
                // Missing ones are left out: `verify` reports them, in the archive as in the
                // source.
                wanted.extend(referenced_digests(&bytes));
                rows.push((digest, bytes));
            }
        }
        insert_rows(
            &mut *target,
            Backend::Sqlite,
            "evidence (digest, bytes)",
            2,
            "ON CONFLICT (digest) DO NOTHING",
            &rows,
            |q, (digest, bytes)| q.bind(digest.clone()).bind(bytes.clone()),
        )
        .await
        .map_err(query_error)?;
        Ok(rows.len() as u64)
    }

    /// Copies the records after `after` (from the first without it), those below `below`
    /// if given, with their evidence; returns the last sequence copied (or `after`).
    async fn copy_records(
        &self,
        target: &mut AnyConnection,
        summary: &mut ExportSummary,
        mut after: Option<u64>,
        below: Option<u64>,
    ) -> Result<Option<u64>, LogError> {
        loop {
            let mut page = self
                .query(&Query {
                    after_sequence: after,
                    limit: Some(PAGE),
                    ..Query::default()
                })
                .await?;
            if let Some(below) = below {
                page.retain(|r| r.sequence < below);
            }
            let Some(last) = page.last() else {
                return Ok(after);
            };
            after = Some(last.sequence);
            summary.evidence += self.copy_evidence(target, &page).await?;
            copy_records(target, &page).await?;
            summary.records += page.len() as u64;
        }
    }

    /// Copies the tree hashes from index `from` on; returns the index after the last copied.
    async fn copy_tree_hashes(
        &self,
        target: &mut AnyConnection,
        summary: &mut ExportSummary,
        mut from: i64,
    ) -> Result<i64, LogError> {
        loop {
            let rows = sqlx::query(
                "SELECT idx, hash FROM tree_hashes WHERE log_id = $1 AND idx >= $2 ORDER BY idx LIMIT 10000",
            )
            .bind(self.log_id())
            .bind(from)
            .fetch_all(self.pool())
            .await
            .map_err(query_error)?;
            let mut hashes = Vec::with_capacity(rows.len());
            for row in &rows {
                let index: i64 = row.try_get(0).map_err(query_error)?;
                let hash: Vec<u8> = row.try_get(1).map_err(query_error)?;
                hashes.push((index, hash));
            }
            let Some((last, _)) = hashes.last() else {
                return Ok(from);
            };
            from = last + 1;
            crate::writer::insert_tree_hashes(&mut *target, Backend::Sqlite, 1, &hashes)
                .await
                .map_err(query_error)?;
            summary.tree_hashes += hashes.len() as u64;
        }
    }
}

/// Digests named by an evidence record's `*_sha256` members (the event log it refers to),
/// if the evidence is a JSON object. Other evidence (a policy bundle archive) names none.
fn referenced_digests(bytes: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(members)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|(name, _)| name.ends_with("_sha256"))
        .filter_map(|(_, value)| value.as_str())
        .filter(|d| crate::is_evidence_digest(d))
        .map(str::to_ascii_lowercase)
        .collect()
}

async fn copy_records(conn: &mut AnyConnection, page: &[StoredRecord]) -> Result<(), LogError> {
    let mut rows = Vec::with_capacity(page.len());
    for stored in page {
        let r = &stored.record;
        rows.push((
            i64::try_from(stored.sequence).map_err(|_| LogError::Corrupt {
                column: "sequence",
                found: stored.sequence.to_string(),
            })?,
            hex::encode(stored.leaf_hash),
            unix_micros(r.time, "time")?,
            r.cert_not_after
                .map(|t| unix_micros(t, "cert_not_after"))
                .transpose()?,
            serde_json::to_string(&r.reasons).map_err(|source| LogError::Encode { source })?,
            stored,
        ));
    }
    let into = "records (log_id, sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons, \
                policy_digest, evidence_digest, cert_serial, cert_not_after_us)";
    insert_rows(
        conn,
        Backend::Sqlite,
        into,
        14,
        "",
        &rows,
        |q, (sequence, leaf, time, not_after, reasons, stored)| {
            let r = &stored.record;
            q.bind(1i64)
                .bind(*sequence)
                .bind(leaf.clone())
                .bind(*time)
                .bind(r.site.clone())
                .bind(r.kind.as_str())
                .bind(r.node_id.clone())
                .bind(r.spiffe_id.clone())
                .bind(r.decision.as_str())
                .bind(reasons.clone())
                .bind(r.policy_digest.clone())
                .bind(r.evidence_digest.clone())
                .bind(r.cert_serial.clone())
                .bind(*not_after)
        },
    )
    .await
    .map_err(query_error)
}

/// A new archive (as [`AttestationLog::export_sqlite`] writes) filled from a log read
/// elsewhere, page by page: what `garrison audit export --attestor` writes from the Audit
/// service.
///
/// Everything is kept exactly as given, for `verify` to judge: records with their leaf
/// hashes, evidence under the digest it was asked by (bytes that do not hash to it stay so),
/// and records whose evidence the source did not have (the archive's connection does not
/// enforce the schema's foreign keys, which protect a live log, not a copy of one). The
/// Merkle tree's stored hashes are built from the given leaf hashes as records are added.
pub struct ArchiveWriter {
    conn: AnyConnection,
    /// The next record's sequence: records must come in order, from 0, without a gap.
    next: u64,
    /// The tree over records 0.. as far as they came without a gap; `None` once one was
    /// missing (the stored hashes then stop there, at `tree_size`).
    frontier: Option<Frontier>,
    /// Records the stored tree hashes cover (those before the first gap).
    tree_size: u64,
    summary: ExportSummary,
}

impl ArchiveWriter {
    /// Creates the archive at `path` (which must not exist) for the log `origin`.
    pub async fn create(path: &Path, origin: &str) -> Result<Self, LogError> {
        claim_archive_path(path)?;
        let url = format!("sqlite://{}", path.display());
        let conn = match new_archive(&url, origin).await {
            Ok(conn) => conn,
            Err(e) => {
                remove_archive(path);
                return Err(e);
            }
        };
        Ok(ArchiveWriter {
            conn,
            next: 0,
            tree_size: 0,
            frontier: Some(Frontier {
                size: 0,
                hashes: Hashes::default(),
            }),
            summary: ExportSummary::default(),
        })
    }

    /// Adds the next records, in increasing sequence order, and the tree hashes they add.
    ///
    /// A gap (a record the source did not serve: deleted from its database, say) is kept as
    /// a gap, for `verify` to name; the stored tree hashes stop before it, so `prove` answers
    /// only for records before the first gap. A sequence at or below one already added is
    /// refused: no source serves that.
    pub async fn add_records(&mut self, page: &[StoredRecord]) -> Result<(), LogError> {
        let mut tree = self.frontier.clone().map(BatchTree::new);
        let mut rows: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut covered = self.tree_size;
        let mut next = self.next;
        for stored in page {
            if stored.sequence < next {
                return Err(LogError::Corrupt {
                    column: "sequence",
                    found: format!(
                        "record {} served after record {}",
                        stored.sequence,
                        next.saturating_sub(1)
                    ),
                });
            }
            if let Some(growing) = tree.as_mut() {
                if stored.sequence == next {
                    growing.push(stored.leaf_hash)?;
                    covered = next + 1;
                } else {
                    // A gap: the tree stops before it.
                    rows.append(&mut growing.rows);
                    tree = None;
                }
            }
            next = stored.sequence + 1;
        }
        let frontier = match tree.as_mut() {
            Some(growing) => {
                let frontier = growing.frontier()?;
                rows.append(&mut growing.rows);
                Some(frontier)
            }
            None => None,
        };
        let as_i64 = |n: u64| {
            i64::try_from(n).map_err(|_| LogError::Corrupt {
                column: "sequence",
                found: n.to_string(),
            })
        };
        let mut tx = self.conn.begin().await.map_err(query_error)?;
        copy_records(&mut tx, page).await?;
        insert_tree_hashes(&mut tx, Backend::Sqlite, 1, &rows)
            .await
            .map_err(query_error)?;
        sqlx::query("UPDATE logs SET next_sequence = $1, tree_size = $2 WHERE id = 1")
            .bind(as_i64(next)?)
            .bind(as_i64(covered)?)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        self.summary.records += page.len() as u64;
        self.summary.tree_hashes += rows.len() as u64;
        self.frontier = frontier;
        self.tree_size = covered;
        self.next = next;
        Ok(())
    }

    /// Adds evidence under `digest` (64 hex digits, any case; stored lowercase) unless the
    /// archive has it, and returns the digests it names in turn (the event log an evidence
    /// record refers to), which an exporter fetches next.
    pub async fn add_evidence(
        &mut self,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Vec<String>, LogError> {
        if !crate::is_evidence_digest(digest) {
            return Err(LogError::InvalidEntry {
                field: "evidence digest",
                problem: "not 64 hex digits",
            });
        }
        let done = sqlx::query(
            "INSERT INTO evidence (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_ascii_lowercase())
        .bind(bytes.to_vec())
        .execute(&mut self.conn)
        .await
        .map_err(query_error)?;
        self.summary.evidence += done.rows_affected();
        Ok(referenced_digests(bytes))
    }

    /// Of `digests` (lowercase), those the archive does not hold yet: what an export still
    /// has to fetch. Remembering every digest fetched instead would grow with the log.
    pub async fn evidence_not_held(
        &mut self,
        digests: Vec<String>,
    ) -> Result<Vec<String>, LogError> {
        not_held(&mut self.conn, digests).await
    }

    /// Adds a signed checkpoint as given.
    pub async fn add_checkpoint(&mut self, checkpoint: &StoredCheckpoint) -> Result<(), LogError> {
        insert_checkpoint(&mut self.conn, checkpoint).await?;
        self.summary.checkpoints += 1;
        Ok(())
    }

    /// Adds a log key certificate chain (PEM) with the key it states; when it was added to
    /// the source is not known here and is kept as 0 (1970). A chain that states no Ed25519
    /// key (`None`: it does not parse, say) is kept all the same, for `verify` to report,
    /// with 32 zero bytes in the `public_key` column; nothing reads that column to trust a
    /// key (`verify` checks each chain itself against the roots).
    pub async fn add_log_key_certificate(
        &mut self,
        public_key: Option<&[u8; 32]>,
        chain_pem: &str,
    ) -> Result<(), LogError> {
        let public_key = public_key.copied().unwrap_or([0; 32]);
        insert_key_certificate(
            &mut self.conn,
            crate::evidence_digest(chain_pem.as_bytes()),
            public_key.to_vec(),
            chain_pem.to_owned(),
            0,
        )
        .await?;
        self.summary.key_certificates += 1;
        Ok(())
    }

    /// Adds a witness's cosignature of the checkpoint of its size, as served (whether it
    /// verifies is for the auditor's check of cosignatures to say).
    pub async fn add_cosignature(
        &mut self,
        cosignature: &StoredCosignature,
    ) -> Result<(), LogError> {
        insert_cosignature(&mut self.conn, cosignature).await?;
        self.summary.cosignatures += 1;
        Ok(())
    }

    /// Adds a witness key's certificate chain (PEM), once per digest; as for log key
    /// certificates, when it was added is kept as 0.
    pub async fn add_witness_certificate(&mut self, chain_pem: &str) -> Result<(), LogError> {
        insert_witness_certificate(&mut self.conn, chain_pem.to_owned()).await
    }

    /// Closes the archive and says what it holds.
    pub async fn finish(self) -> Result<ExportSummary, LogError> {
        self.conn.close().await.map_err(query_error)?;
        Ok(self.summary)
    }
}

/// Removes what a failed export wrote at `path` (the database file and its WAL and shared
/// memory files), so that no partial archive is left to be mistaken for a whole one. Call it
/// only for an archive this process created.
pub fn remove_archive(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// Creates `path` as an empty file, failing if anything is there already (atomically: a file
/// someone else creates meanwhile is never written to, nor removed after a failure), readable
/// by its owner only. SQLite takes an empty file as a new database.
fn claim_archive_path(path: &Path) -> Result<(), LogError> {
    match crate::log::create_private_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(LogError::ExportExists {
            path: path.display().to_string(),
        }),
        Err(source) => Err(LogError::CreateDatabase {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The schema and a log with this origin (id 1) in the new archive at `url`, then a
/// connection to it that does not enforce the schema's foreign keys: see [`ArchiveWriter`].
async fn new_archive(url: &str, origin: &str) -> Result<AnyConnection, LogError> {
    let created = AttestationLog::open(&LogConfig {
        url: url.to_owned(),
        origin: Some(origin.to_owned()),
        max_batch: 1,
        max_connections: 1,
    })
    .await?;
    created.close().await;
    archive_connection(url).await
}

/// A connection to an archive with the schema's foreign keys not enforced.
async fn archive_connection(url: &str) -> Result<AnyConnection, LogError> {
    let mut conn = crate::log::dedicated_connection(url, Backend::Sqlite)
        .await
        .map_err(query_error)?;
    if let Err(e) = sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut conn)
        .await
    {
        let _ = conn.close().await;
        return Err(query_error(e));
    }
    Ok(conn)
}

/// Of `digests`, those the archive on `conn` does not hold yet (each asked once).
async fn not_held(conn: &mut AnyConnection, digests: Vec<String>) -> Result<Vec<String>, LogError> {
    let mut held = BTreeSet::new();
    for chunk in digests.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        // Only `?` placeholders; every digest is bound.
        let sql = format!("SELECT digest FROM evidence WHERE digest IN ({placeholders})");
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, digest| {
                q.bind(digest.clone())
            });
        for row in query.fetch_all(&mut *conn).await.map_err(query_error)? {
            held.insert(row.try_get::<String, _>(0).map_err(query_error)?);
        }
    }
    Ok(digests
        .into_iter()
        .filter(|digest| !held.contains(digest))
        .collect())
}

/// A signed checkpoint into an archive's log (id 1), as given.
async fn insert_checkpoint(
    conn: &mut AnyConnection,
    checkpoint: &StoredCheckpoint,
) -> Result<(), LogError> {
    let size = i64::try_from(checkpoint.size).map_err(|_| LogError::CheckpointMismatch {
        size: checkpoint.size,
    })?;
    execute(
        sqlx::query(
            "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) VALUES (1, $1, $2, $3, $4)",
        )
        .bind(size)
        .bind(checkpoint.root_hash.to_vec())
        .bind(unix_micros(checkpoint.signed, "signed")?)
        .bind(checkpoint.note.clone()),
        conn,
    )
    .await
}

/// A witness's cosignature of a checkpoint of an archive's log (id 1).
async fn insert_cosignature(
    conn: &mut AnyConnection,
    cosignature: &StoredCosignature,
) -> Result<(), LogError> {
    let size = i64::try_from(cosignature.size).map_err(|_| LogError::CheckpointMismatch {
        size: cosignature.size,
    })?;
    execute(
        sqlx::query(
            "INSERT INTO cosignatures (log_id, size, witness, line, cosigned_us) VALUES (1, $1, $2, $3, $4)",
        )
        .bind(size)
        .bind(cosignature.witness.clone())
        .bind(cosignature.line.clone())
        .bind(unix_micros(cosignature.cosigned, "cosigned")?),
        conn,
    )
    .await
}

/// A witness key's certificate chain into an archive, once per digest.
async fn insert_witness_certificate(
    conn: &mut AnyConnection,
    chain_pem: String,
) -> Result<(), LogError> {
    execute(
        sqlx::query(
            "INSERT INTO witness_certificates (digest, chain_pem, added_us) VALUES ($1, $2, 0) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(crate::evidence_digest(chain_pem.as_bytes()))
        .bind(chain_pem),
        conn,
    )
    .await
}

/// A log key certificate chain into an archive's log (id 1), once per digest.
async fn insert_key_certificate(
    conn: &mut AnyConnection,
    digest: String,
    public_key: Vec<u8>,
    chain_pem: String,
    added_us: i64,
) -> Result<(), LogError> {
    execute(
        sqlx::query(
            "INSERT INTO log_key_certificates (log_id, digest, public_key, chain_pem, added_us) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (log_id, digest) DO NOTHING",
        )
        .bind(digest)
        .bind(public_key)
        .bind(chain_pem)
        .bind(added_us),
        conn,
    )
    .await
}

async fn execute(
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    target: &mut AnyConnection,
) -> Result<(), LogError> {
    query.execute(target).await.map_err(query_error)?;
    Ok(())
}

fn query_error(source: sqlx::Error) -> LogError {
    LogError::Query { source }
}
