//! [`AttestationLog`]: opening, the append/revoke front of the writer, and reads.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection as _, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::entry::{
    PreparedEntry, normalise_hex, prepare, prepare_node_reset, prepare_precondition,
    prepare_revocation,
};
use crate::leaf::{evidence_digest, from_unix_micros, unix_micros};
use crate::origin::{self, LogId};
use crate::wal_checkpoint;
use crate::writer::{self, Command, Counters, Job, StatusKey, StatusRead, Writer};
use crate::{
    Appended, Decision, KeptNodeState, LogError, LogStats, NewEntry, NodeReset, NodeState,
    NodeStatus, Precondition, Query, Record, RecordKind, Revocation, RevocationTarget,
    StoredCheckpoint, StoredRecord, read,
};
use crate::{tree, tree_build};

/// SQLite waits this long for a lock held by another connection or process.
pub(crate) const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Where the log lives and how hard it may be driven.
#[derive(Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `sqlite:///path/to/log.db` (created if missing, the directory must exist) or
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The log to append to and read, by origin (`garrison.<trust-domain>/site/<site>`):
    /// created if the database has no such log, or claimed if the database's only log has
    /// no origin yet (a database from before origins). `None` opens the database's only
    /// log, whatever its origin: for tools that read a site's own database.
    pub origin: Option<String>,
    /// Most entries committed in one transaction (≥ 1). 64–256 is plenty.
    pub max_batch: usize,
    /// Readers' pool size (≥ 1). The writer has one more connection of its own (and on SQLite
    /// the background WAL checkpointer another).
    pub max_connections: u32,
}

impl fmt::Debug for LogConfig {
    /// Hides the URL's password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("url", &redact_password(&self.url))
            .field("origin", &self.origin)
            .field("max_batch", &self.max_batch)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// Which database a log is stored in, chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `sqlite:` → SQLite; `postgres:` or `postgresql:` → PostgreSQL.
    pub fn from_url(url: &str) -> Result<Backend, LogError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(LogError::UnsupportedUrl {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

/// The durable attestation log and node-state store. Cheap to clone; all clones share one
/// pool and one writer.
#[derive(Clone)]
pub struct AttestationLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// The database URL without credentials, for messages.
    target: String,
    log: LogId,
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// SQLite: the background WAL checkpointer's stop signal and task.
    wal_checkpointer: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl fmt::Debug for AttestationLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationLog")
            .field("backend", &self.inner.backend)
            .field("origin", &self.inner.log.origin)
            .finish_non_exhaustive()
    }
}

impl AttestationLog {
    /// Connects, applies the schema migrations and starts the writer task (on the current
    /// tokio runtime). SQLite databases are switched to WAL and every connection runs with
    /// `synchronous=FULL`, foreign keys on and a busy timeout.
    pub async fn open(config: &LogConfig) -> Result<Self, LogError> {
        if config.max_batch == 0 {
            return Err(LogError::Config { field: "max_batch" });
        }
        if config.max_connections == 0 {
            return Err(LogError::Config {
                field: "max_connections",
            });
        }
        let backend = Backend::from_url(&config.url)?;
        let url = database_url(config, backend);
        let pool = connect(&url, config, backend).await?;
        migrate(&pool, backend).await?;
        let log = origin::resolve(&pool, config.origin.as_deref()).await?;
        let built = tree_build::build(&pool, backend, log.id).await?;
        if built > 0 {
            tracing::info!(records = built, origin = ?log.origin, "Merkle tree built over the log's existing records");
        }
        let counters = Arc::new(Counters::default());
        let (wal_checkpoints, wal_checkpointer) = match backend {
            Backend::Sqlite => {
                let conn = wal_checkpoint_connection(&url).await?;
                let link = Arc::new(wal_checkpoint::Link::default());
                let (stop, stopped) = oneshot::channel();
                let task = tokio::spawn(wal_checkpoint::run(
                    conn,
                    Arc::clone(&link),
                    stopped,
                    Arc::clone(&counters),
                ));
                (Some(link), Some((stop, task)))
            }
            Backend::Postgres => (None, None),
        };
        // Room for the batch being committed plus one full batch waiting: beyond that,
        // `append` waits (backpressure).
        let (commands, receiver) = mpsc::channel(config.max_batch.saturating_mul(2));
        let task = Writer {
            url: url.clone(),
            connection: None,
            backend,
            log_id: log.id,
            frontier: None,
            max_batch: config.max_batch,
            counters: Arc::clone(&counters),
            wal_checkpoints,
        };
        let writer = tokio::spawn(writer::run(task, receiver));
        let inner = Inner {
            pool,
            backend,
            target: url_for_display(&config.url),
            log,
            commands,
            counters,
            writer: Mutex::new(Some(writer)),
            wal_checkpointer: Mutex::new(wal_checkpointer),
        };
        Ok(AttestationLog {
            inner: Arc::new(inner),
        })
    }

    /// Opens an existing log for reading only: no migration, no tree building, no writer
    /// (appends fail with [`LogError::WriterGone`]). SQLite files are opened read-only (a
    /// missing file is an error, never a new empty database); PostgreSQL sessions are
    /// read-only. `origin` `None` opens the database's only log. The schema must be exactly
    /// the one this version writes.
    pub async fn open_read_only(url: &str, origin: Option<&str>) -> Result<Self, LogError> {
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => {
                let base = url.split_once('?').map_or(url, |(base, _)| base);
                format!("{base}?mode=ro")
            }
            Backend::Postgres => url.to_owned(),
        };
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .acquire_timeout(CONNECT_TIMEOUT)
            .max_connections(2)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let setting = match backend {
                        Backend::Sqlite => "PRAGMA query_only = ON",
                        Backend::Postgres => "SET default_transaction_read_only = on",
                    };
                    sqlx::query(setting).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| open_error(&url, source))?;
        check_schema(&pool, backend).await?;
        let log = origin::lookup(&pool, origin).await?;
        // No receiver: every append answers WriterGone at once.
        let (commands, _) = mpsc::channel(1);
        let inner = Inner {
            pool,
            backend,
            target: url_for_display(&url),
            log,
            commands,
            counters: Arc::new(Counters::default()),
            writer: Mutex::new(None),
            wal_checkpointer: Mutex::new(None),
        };
        Ok(AttestationLog {
            inner: Arc::new(inner),
        })
    }

    /// Appends one record (with its evidence and node-state change) and returns once it is
    /// committed. Concurrent calls share transactions (group commit). Dropping the future
    /// after the entry was queued does not withdraw it.
    pub async fn append(&self, entry: NewEntry) -> Result<Appended, LogError> {
        self.submit(prepare(entry)?).await
    }

    /// [`append`](Self::append), also storing `blobs` as evidence (each under its SHA-256, once)
    /// in the same transaction. For evidence that the entry's own evidence refers to by digest
    /// (the attestor stores a node's event log this way, so that a fleet's identical logs are
    /// kept once): when the record is committed, so is everything it refers to.
    pub async fn append_with_blobs(
        &self,
        entry: NewEntry,
        blobs: Vec<Vec<u8>>,
    ) -> Result<Appended, LogError> {
        self.submit(prepare_with_blobs(entry, blobs)?).await
    }

    /// [`append_with_blobs`](Self::append_with_blobs) for a decision that admits a node: the
    /// entry is written only if `precondition` still holds when its batch is written, under
    /// the log's write lock (see [`Precondition`]). Otherwise nothing of it is written and
    /// the answer is [`LogError::PreconditionFailed`]; the rest of the batch is written.
    pub async fn append_if(
        &self,
        entry: NewEntry,
        blobs: Vec<Vec<u8>>,
        precondition: Precondition,
    ) -> Result<Appended, LogError> {
        let mut prepared = prepare_with_blobs(entry, blobs)?;
        prepared.precondition = Some(prepare_precondition(precondition)?);
        self.submit(prepared).await
    }

    /// Logs a revocation (a [`RecordKind::Revoke`] record, decision deny) and makes it
    /// effective for [`is_revoked`](Self::is_revoked) in the same transaction.
    pub async fn revoke(&self, revocation: Revocation) -> Result<Appended, LogError> {
        let Revocation {
            time,
            site,
            target,
            reasons,
            policy_digest,
        } = revocation;
        let (node_id, cert_serial) = match &target {
            RevocationTarget::Serial(serial) => (None, Some(serial.clone())),
            RevocationTarget::Node(node) => (Some(node.clone()), None),
        };
        let record = Record {
            time,
            site,
            kind: RecordKind::Revoke,
            node_id,
            spiffe_id: None,
            decision: Decision::Deny,
            reasons,
            policy_digest,
            evidence_digest: None,
            cert_serial,
            cert_not_after: None,
        };
        self.submit(prepare_revocation(record, target)?).await
    }

    /// Logs that an operator accepted a node's cleared TPM (a [`RecordKind::NodeReset`]
    /// record, decision allow) and, in the same transaction, resets the node's state as
    /// [`NodeReset`] describes. Refused with [`LogError::UnknownNode`] if the node never
    /// enrolled (node states are never deleted, so it cannot disappear before the commit).
    pub async fn reset_node(&self, reset: NodeReset) -> Result<Appended, LogError> {
        let NodeReset {
            time,
            site,
            node_id,
            reasons,
        } = reset;
        if read::node(&self.inner.pool, &node_id).await?.is_none() {
            return Err(LogError::UnknownNode { node_id });
        }
        let record = Record {
            time,
            site,
            kind: RecordKind::NodeReset,
            node_id: Some(node_id),
            spiffe_id: None,
            decision: Decision::Allow,
            reasons,
            policy_digest: None,
            evidence_digest: None,
            cert_serial: None,
            cert_not_after: None,
        };
        self.submit(prepare_node_reset(record)?).await
    }

    async fn submit(&self, entry: PreparedEntry) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job { entry, reply });
        self.inner
            .commands
            .send(Command::Append(job))
            .await
            .map_err(|_| LogError::WriterGone)?;
        answer.await.map_err(|_| LogError::WriterGone)?
    }

    /// Records matching `filter`, in sequence order.
    pub async fn query(&self, filter: &Query) -> Result<Vec<StoredRecord>, LogError> {
        read::records(&self.inner.pool, self.inner.log.id, filter).await
    }

    /// The newest record matching `filter` (its `limit` ignored) whose kind is one of `kinds`
    /// (any kind if empty): e.g. a node's latest decision, in O(log n) through the indexes.
    pub async fn latest(
        &self,
        filter: &Query,
        kinds: &[RecordKind],
    ) -> Result<Option<StoredRecord>, LogError> {
        read::latest_record(&self.inner.pool, self.inner.log.id, filter, kinds).await
    }

    /// The node's state as of its latest record with a node update.
    pub async fn node(&self, node_id: &str) -> Result<Option<NodeState>, LogError> {
        read::node(&self.inner.pool, node_id).await
    }

    /// Node states in node-id order: the first `limit` after `after` (paging).
    pub async fn nodes(&self, after: Option<&str>, limit: u32) -> Result<Vec<NodeState>, LogError> {
        read::nodes(&self.inner.pool, after, limit).await
    }

    /// The node whose current certificate has this serial (hex, any case), if any. A serial
    /// that was superseded by a later issuance no longer finds its node.
    pub async fn node_by_current_serial(
        &self,
        serial_hex: &str,
    ) -> Result<Option<NodeState>, LogError> {
        read::node_by_current_serial(&self.inner.pool, &serial_hex.to_ascii_lowercase()).await
    }

    /// The node's state and whether the node is revoked, in one query.
    pub async fn node_status(&self, node_id: &str) -> Result<NodeStatus, LogError> {
        if let Some(answer) = self
            .status_via_writer(StatusKey::Node(node_id.to_owned()))
            .await
        {
            return answer;
        }
        read::node_status(&self.inner.pool, node_id).await
    }

    /// The node whose current certificate has this serial (hex, any case) and whether that
    /// serial is revoked (as [`is_revoked`](Self::is_revoked) answers), in one query.
    pub async fn node_status_by_serial(&self, serial_hex: &str) -> Result<NodeStatus, LogError> {
        let serial = normalise_hex(serial_hex, "serial_hex")?;
        if let Some(answer) = self
            .status_via_writer(StatusKey::Serial(serial.clone()))
            .await
        {
            return answer;
        }
        read::node_status_by_serial(&self.inner.pool, &serial).await
    }

    /// SQLite, on a handle with a writer: the status read answered on the writer's own
    /// connection, between its batches (why: `writer::serve_reads`). `None` where there is no
    /// writer to ask (PostgreSQL, where every session reads the server's shared buffers; a
    /// read-only or sibling handle; a writer that has stopped): the caller reads through the
    /// pool.
    async fn status_via_writer(&self, key: StatusKey) -> Option<Result<NodeStatus, LogError>> {
        if self.inner.backend != Backend::Sqlite {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Status(StatusRead { key, reply }))
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Evidence bytes by SHA-256 digest (hex, any case).
    pub async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, LogError> {
        read::evidence(&self.inner.pool, self.inner.backend, digest).await
    }

    /// [`evidence`](Self::evidence) for many digests at once (an auditor's page of records):
    /// one `SELECT ... WHERE digest IN (...)` per 100 distinct digests instead of one query
    /// each. The map is keyed by the digests as given (hex, any case), each holding what
    /// [`evidence`](Self::evidence) answers for it; digests the log does not hold are absent.
    pub async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, LogError> {
        read::evidence_many(&self.inner.pool, self.inner.backend, digests).await
    }

    /// True if the certificate serial (hex, any case) is revoked, or the node it was issued
    /// to is, by a revocation in any log of the database: a site whose origin changed keeps
    /// enforcing what it revoked under the old one.
    pub async fn is_revoked(&self, serial_hex: &str) -> Result<bool, LogError> {
        let serial = normalise_hex(serial_hex, "serial_hex")?;
        read::serial_revoked(&self.inner.pool, &serial).await
    }

    /// True if the node id itself is revoked (in any log of the database, as
    /// [`is_revoked`](Self::is_revoked)).
    pub async fn is_node_revoked(&self, node_id: &str) -> Result<bool, LogError> {
        read::node_revoked(&self.inner.pool, node_id).await
    }

    /// True if this log holds a revocation covering `target` (for a serial: the serial, or
    /// the node this log issued it to or holds it as current), whatever other logs of the
    /// database hold: whether a revocation from elsewhere (a hub's list) still needs a
    /// record in this log. [`is_revoked`](Self::is_revoked) and
    /// [`is_node_revoked`](Self::is_node_revoked) answer what is enforced.
    pub async fn is_revoked_in_this_log(
        &self,
        target: &RevocationTarget,
    ) -> Result<bool, LogError> {
        let target = match target {
            RevocationTarget::Serial(serial) => {
                RevocationTarget::Serial(normalise_hex(serial, "serial_hex")?)
            }
            node => node.clone(),
        };
        read::revoked_in_log(&self.inner.pool, self.inner.log.id, &target).await
    }

    /// The node states this database keeps, by node id after `after`, at most `limit`: what
    /// the attestor decides renewals and re-enrollments against (the AK bound, the serial a
    /// renewal must present, the identity facts and counters), the record that last wrote
    /// each, and whether it is this log's. Every log's rows, since the attestor reads a
    /// node's state by its id alone. An auditor checks them against the log: a state edited
    /// (another AK bound, another serial made current) lets another TPM or certificate
    /// renew as the node while the log looks intact.
    pub async fn kept_node_states(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KeptNodeState>, LogError> {
        read::kept_node_states(&self.inner.pool, self.inner.log.id, after, limit).await
    }

    /// The revocation rows this database keeps for this log (those [`is_revoked`] and
    /// [`is_node_revoked`] read, with those of the database's other logs and the records and
    /// node states they also consult), by sequence, if it holds the attestor's operational state for the log: node states or
    /// revocations. `None` if it holds neither, as a copy of the log (a hub's replica, an
    /// archive) does, and a site before its first decision. An auditor checks these rows
    /// against the revoke records: a row deleted un-revokes a node while the log still says
    /// revoked.
    ///
    /// [`is_revoked`]: Self::is_revoked
    /// [`is_node_revoked`]: Self::is_node_revoked
    pub async fn enforced_revocations(
        &self,
    ) -> Result<Option<Vec<(u64, RevocationTarget)>>, LogError> {
        let query = |source| LogError::Query { source };
        let rows = sqlx::query(
            "SELECT sequence, serial, node_id FROM revocations WHERE log_id = $1 ORDER BY sequence",
        )
        .bind(self.inner.log.id)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(query)?;
        if rows.is_empty() {
            let held = sqlx::query("SELECT EXISTS (SELECT 1 FROM nodes WHERE log_id = $1)")
                .bind(self.inner.log.id)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(query)?;
            // (EXISTS is a boolean on PostgreSQL and an integer on SQLite.)
            let held = held
                .try_get::<bool, _>(0)
                .or_else(|_| held.try_get::<i64, _>(0).map(|n| n != 0))
                .map_err(query)?;
            return Ok(held.then(Vec::new));
        }
        let mut revocations = Vec::with_capacity(rows.len());
        for row in &rows {
            let sequence: i64 = row.try_get(0).map_err(query)?;
            let sequence = u64::try_from(sequence).map_err(|_| LogError::Corrupt {
                column: "revocations.sequence",
                found: sequence.to_string(),
            })?;
            let named = |e: sqlx::Error| LogError::Corrupt {
                column: "revocations",
                found: format!("the row of revocation #{sequence}: {e}"),
            };
            let serial: Option<String> = row.try_get(1).map_err(named)?;
            let node: Option<String> = row.try_get(2).map_err(named)?;
            let target = match (serial, node) {
                (Some(serial), None) => RevocationTarget::Serial(serial),
                (None, Some(node)) => RevocationTarget::Node(node),
                (serial, node) => {
                    return Err(LogError::Corrupt {
                        column: "revocations.serial, revocations.node_id",
                        found: format!("revocation #{sequence}: {serial:?}, {node:?}"),
                    });
                }
            };
            revocations.push((sequence, target));
        }
        Ok(Some(revocations))
    }

    /// A handle on another log of this database, sharing this handle's pool and with no
    /// writer of its own (its appends fail with [`LogError::WriterGone`]).
    pub(crate) fn sibling(&self, log: LogId) -> AttestationLog {
        let (commands, _) = mpsc::channel(1);
        AttestationLog {
            inner: Arc::new(Inner {
                pool: self.inner.pool.clone(),
                backend: self.inner.backend,
                target: self.inner.target.clone(),
                log,
                commands,
                counters: Arc::new(Counters::default()),
                writer: Mutex::new(None),
                wal_checkpointer: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn log_id(&self) -> i64 {
        self.inner.log.id
    }

    /// This log's origin (`None` only for a log from before origins opened without one).
    pub fn origin(&self) -> Option<&str> {
        self.inner.log.origin.as_deref()
    }

    /// How many records the log (and its Merkle tree) holds.
    pub async fn tree_size(&self) -> Result<u64, LogError> {
        Ok(self.head().await?.1)
    }

    /// The log's head as one read of its `logs` row: the sequence its next record will get
    /// (one past its last), and how many records its tree covers (the same, once the tree
    /// covers every record). One statement, so a commit cannot fall between the two.
    pub async fn head(&self) -> Result<(u64, u64), LogError> {
        let row = sqlx::query("SELECT next_sequence, tree_size FROM logs WHERE id = $1")
            .bind(self.inner.log.id)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|source| LogError::Query { source })?;
        let read = |index: usize, column: &'static str| -> Result<u64, LogError> {
            let value: i64 = row
                .try_get(index)
                .map_err(|source| LogError::Query { source })?;
            u64::try_from(value).map_err(|_| LogError::Corrupt {
                column,
                found: value.to_string(),
            })
        };
        Ok((read(0, "next_sequence")?, read(1, "tree_size")?))
    }

    /// How many stored tree hashes this log keeps outside its tree: at a negative index, or
    /// at or beyond the stored-hash count of its tree size (the writer writes none there).
    ///
    /// A log being appended to adds hashes beyond the tree size read before the count: the
    /// count holds only if the tree size is the same after it, and is tried again otherwise
    /// (a few times; a log that never stands still long enough reports none).
    pub async fn stray_tree_hashes(&self) -> Result<u64, LogError> {
        let (_, mut tree_size) = self.head().await?;
        for _ in 0..5 {
            // (No log holds 2^62 records; the bound keeps the index arithmetic in range.)
            let end = i64::try_from(tlog_tiles::stored_hash_count(tree_size.min(1 << 62)))
                .unwrap_or(i64::MAX);
            let row = sqlx::query(
                "SELECT COUNT(*) FROM tree_hashes WHERE log_id = $1 AND (idx < 0 OR idx >= $2)",
            )
            .bind(self.inner.log.id)
            .bind(end)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|source| LogError::Query { source })?;
            let count: i64 = row
                .try_get(0)
                .map_err(|source| LogError::Query { source })?;
            let (_, after) = self.head().await?;
            if after == tree_size {
                return Ok(u64::try_from(count).unwrap_or(0));
            }
            tree_size = after;
        }
        Ok(0)
    }

    /// The RFC 9162 root hash of the tree over the first `size` records.
    pub async fn tree_root(&self, size: u64) -> Result<[u8; 32], LogError> {
        tree::root(&self.inner.pool, self.inner.log.id, size).await
    }

    /// The stored hashes of the Merkle tree (what proofs and roots are made from) with
    /// indexes in `first..end` (C2SP/`tlog_tiles` stored-hash indexes), by index, as kept:
    /// an auditor compares them with the tree recomputed from the records. At most
    /// [`MAX_STORED_HASHES_READ`](crate::MAX_STORED_HASHES_READ) per call.
    pub async fn stored_tree_hashes(
        &self,
        first: u64,
        end: u64,
    ) -> Result<Vec<(u64, [u8; 32])>, LogError> {
        tree::stored_range(&self.inner.pool, self.inner.log.id, first, end).await
    }

    /// The RFC 9162 inclusion proof (audit path) of record `index` in the tree of `size`
    /// records, leaf side first.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, LogError> {
        tree::inclusion_proof(&self.inner.pool, self.inner.log.id, index, size).await
    }

    /// The RFC 9162 consistency proof from the tree of `old` records to the tree of `new`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>, LogError> {
        tree::consistency_proof(&self.inner.pool, self.inner.log.id, old, new).await
    }

    /// Keeps a signed checkpoint of this log. The root is checked against the log's own tree
    /// at that size first; a second checkpoint of the same size is ignored (one signer
    /// signs one size the same way every time). Returns whether it was new.
    pub async fn store_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, LogError> {
        if self.inner.log.origin.is_none() {
            return Err(LogError::NoOrigin);
        }
        check_columns(checkpoint)?;
        if self.tree_root(checkpoint.size).await? != checkpoint.root_hash {
            return Err(LogError::CheckpointMismatch {
                size: checkpoint.size,
            });
        }
        let size = i64::try_from(checkpoint.size).map_err(|_| LogError::CheckpointMismatch {
            size: checkpoint.size,
        })?;
        let done = sqlx::query(
            "INSERT INTO checkpoints (log_id, size, root_hash, signed_us, note) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (log_id, size) DO NOTHING",
        )
        .bind(self.inner.log.id)
        .bind(size)
        .bind(checkpoint.root_hash.to_vec())
        .bind(unix_micros(checkpoint.signed, "signed")?)
        .bind(checkpoint.note.clone())
        .execute(&self.inner.pool)
        .await
        .map_err(|source| LogError::Query { source })?;
        Ok(done.rows_affected() == 1)
    }

    /// Every checkpoint kept for this log, by size.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LogError> {
        self.checkpoints_where("", None).await
    }

    /// Up to `limit` checkpoints of a size larger than `after` (all sizes if `None`), by size:
    /// a page of [`checkpoints`](Self::checkpoints), read without the rest.
    pub async fn checkpoints_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, LogError> {
        // Past every size a database holds: nothing after it.
        let after = after.map_or(Ok(-1), i64::try_from).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT size, root_hash, signed_us, note FROM checkpoints WHERE log_id = $1 AND size > $2 \
             ORDER BY size LIMIT $3",
        )
        .bind(self.inner.log.id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|source| LogError::Query { source })?;
        rows.iter().map(stored_checkpoint).collect()
    }

    /// The checkpoint of the largest tree size kept, if any.
    ///
    /// Its size and root columns must be what its signed text states (an error otherwise):
    /// the attestor decides from them whether to sign, and serves proofs to that size.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LogError> {
        self.checkpoints_where(" ORDER BY size DESC LIMIT 1", None)
            .await?
            .pop()
            .map(|c| check_columns(&c).map(|()| c))
            .transpose()
    }

    /// The checkpoint of exactly this tree size, if one was kept (its columns checked as
    /// [`Self::latest_checkpoint`]'s are).
    pub async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, LogError> {
        let size = i64::try_from(size).map_err(|_| LogError::ProofRange {
            what: "checkpoint",
            first: size,
            second: 0,
        })?;
        self.checkpoints_where("", Some(size))
            .await?
            .pop()
            .map(|c| check_columns(&c).map(|()| c))
            .transpose()
    }

    async fn checkpoints_where(
        &self,
        tail: &'static str,
        size: Option<i64>,
    ) -> Result<Vec<StoredCheckpoint>, LogError> {
        let filter = if size.is_some() { " AND size = $2" } else { "" };
        let order = if tail.is_empty() {
            " ORDER BY size"
        } else {
            tail
        };
        let sql = format!(
            "SELECT size, root_hash, signed_us, note FROM checkpoints WHERE log_id = $1{filter}{order}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(self.inner.log.id);
        if let Some(size) = size {
            query = query.bind(size);
        }
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|source| LogError::Query { source })?;
        rows.iter().map(stored_checkpoint).collect()
    }

    /// Keeps the certificate chain (PEM, the log key's certificate first) of a key that
    /// signs this log's checkpoints. Returns whether it was new.
    pub async fn add_log_key_certificate(
        &self,
        public_key: &[u8; 32],
        chain_pem: &str,
        added: time::OffsetDateTime,
    ) -> Result<bool, LogError> {
        let done = sqlx::query(
            "INSERT INTO log_key_certificates (log_id, digest, public_key, chain_pem, added_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (log_id, digest) DO NOTHING",
        )
        .bind(self.inner.log.id)
        .bind(evidence_digest(chain_pem.as_bytes()))
        .bind(public_key.to_vec())
        .bind(chain_pem.to_owned())
        .bind(unix_micros(added, "added")?)
        .execute(&self.inner.pool)
        .await
        .map_err(|source| LogError::Query { source })?;
        Ok(done.rows_affected() == 1)
    }

    /// Every log key certificate chain kept for this log (PEM), oldest first.
    pub async fn log_key_certificates(&self) -> Result<Vec<String>, LogError> {
        let rows = sqlx::query(
            "SELECT chain_pem FROM log_key_certificates WHERE log_id = $1 ORDER BY added_us, digest",
        )
        .bind(self.inner.log.id)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|source| LogError::Query { source })?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(|source| LogError::Query { source })
    }

    /// Proves that appends can be written, without writing any: the writer's first statement
    /// (reserving sequences of this log, which takes SQLite's write lock or the PostgreSQL row
    /// lock) in a transaction that is rolled back. Refused with [`LogError::Unwritable`] for a
    /// read-only file or directory, a read-only session or server, or missing privileges:
    /// what would otherwise fail only at the first append.
    pub async fn check_writable(&self) -> Result<(), LogError> {
        let unwritable = |source| LogError::Unwritable {
            target: self.inner.target.clone(),
            source,
        };
        let mut tx = self.inner.pool.begin().await.map_err(unwritable)?;
        sqlx::query("UPDATE logs SET next_sequence = next_sequence WHERE id = $1")
            .bind(self.inner.log.id)
            .execute(&mut *tx)
            .await
            .map_err(unwritable)?;
        tx.rollback().await.map_err(unwritable)
    }

    /// Group-commit counters, for metrics and tests.
    pub fn stats(&self) -> LogStats {
        self.inner.counters.snapshot()
    }

    /// Which database this log is stored in.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Holds each batch open for up to `window` after its first entry, so that entries
    /// arriving meanwhile share its transaction (zero, the default: commit at once). Trades
    /// up to `window` of latency per append for fewer transactions at moderate rates; a
    /// window that gathers nothing is skipped for a while (see the writer's docs). Applies
    /// from the next batch, to every clone of this handle.
    pub fn set_commit_window(&self, window: Duration) {
        self.inner.counters.set_commit_window(window);
    }

    /// Commits and answers whatever the writer has in hand, stops it and closes the pool.
    /// Appends sent afterwards, through any clone, fail with [`LogError::WriterGone`].
    pub async fn close(self) {
        let (ack, done) = oneshot::channel();
        if self.inner.commands.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        if let Some(writer) = take(&self.inner.writer) {
            let _ = writer.await;
        }
        if let Some((stop, task)) = take(&self.inner.wal_checkpointer) {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.inner.pool.close().await;
    }
}

fn stored_checkpoint(row: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, LogError> {
    let query = |source| LogError::Query { source };
    let size: i64 = row.try_get(0).map_err(query)?;
    let root: Vec<u8> = row.try_get(1).map_err(query)?;
    let signed_us: i64 = row.try_get(2).map_err(query)?;
    let note: String = row.try_get(3).map_err(query)?;
    Ok(StoredCheckpoint {
        size: u64::try_from(size).map_err(|_| LogError::Corrupt {
            column: "checkpoints.size",
            found: size.to_string(),
        })?,
        root_hash: <[u8; 32]>::try_from(root.as_slice()).map_err(|_| LogError::Corrupt {
            column: "checkpoints.root_hash",
            found: hex::encode(&root),
        })?,
        signed: from_unix_micros(signed_us, "checkpoints.signed_us")?,
        note,
    })
}

/// Whether `stored`'s size and root columns are what its signed text states. The columns are a
/// copy of the note's for lookups; a row whose columns someone edited (or a signed note
/// copied into a row of a larger size) must not pass for a checkpoint of that size: the
/// attestor would take the log for signed further than it is and stop signing, or serve
/// proofs to a size nobody signed. Such a row is an error for whoever reads it (signing,
/// sync, proofs stop, loudly, until it is dealt with; `audit verify` names it). The
/// signature itself is the auditor's to check.
pub(crate) fn check_columns(stored: &StoredCheckpoint) -> Result<(), LogError> {
    let stated = tlog_tiles::Checkpoint::from_reader(
        &mut std::io::Cursor::new(stored.note.as_bytes()),
        false,
    )
    .map_err(|_| LogError::Corrupt {
        column: "checkpoints.note",
        found: format!(
            "no checkpoint text in the note kept for size {}",
            stored.size
        ),
    })?;
    if stated.size() != stored.size || stated.hash().0 != stored.root_hash {
        return Err(LogError::Corrupt {
            column: "checkpoints.size",
            found: format!(
                "a row of size {} and root {} holding a note that states size {} and root {}",
                stored.size,
                hex::encode(stored.root_hash),
                stated.size(),
                hex::encode(stated.hash().0)
            ),
        });
    }
    Ok(())
}

/// What `slot` holds, leaving it empty (the first `close` of any clone gets it).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut slot| slot.take())
}

/// The URL to connect with: SQLite files are created if missing.
fn database_url(config: &LogConfig, backend: Backend) -> String {
    match backend {
        Backend::Sqlite if !config.url.contains("mode=") => {
            let separator = if config.url.contains('?') { '&' } else { '?' };
            format!("{}{separator}mode=rwc", config.url)
        }
        _ => config.url.clone(),
    }
}

/// How long opening a pool waits for a first connection: a database that is down gives a
/// clear error within seconds, not sqlx's default 30 s of silent retries.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `url` without credentials (and without its query), for messages.
pub fn url_for_display(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split_once('?').map_or(rest, |(base, _)| base);
            format!("{scheme}://{rest}")
        }
        None => "<database>".to_owned(),
    }
}

/// The error of a pool that could not be opened: unreachable, or another failure.
fn open_error(url: &str, source: sqlx::Error) -> LogError {
    match source {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => LogError::Unreachable {
            target: url_for_display(url),
            seconds: CONNECT_TIMEOUT.as_secs(),
            source,
        },
        source => LogError::Open { source },
    }
}

async fn connect(url: &str, config: &LogConfig, backend: Backend) -> Result<AnyPool, LogError> {
    if url.contains("mode=rwc") {
        create_private_sqlite_file(url)?;
    }
    sqlx::any::install_default_drivers();
    if backend == Backend::Sqlite {
        first_sqlite_connection(url).await?;
    }
    let pool = AnyPoolOptions::new()
        .acquire_timeout(CONNECT_TIMEOUT)
        .max_connections(config.max_connections)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    sqlite_connection_settings(conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|source| open_error(url, source))?;
    if backend == Backend::Sqlite {
        enable_wal(&pool).await.map_err(|e| match e {
            LogError::Open { source } => sqlite_error(url, source),
            other => other,
        })?;
    }
    Ok(pool)
}

/// One SQLite connection set up outside the pool, and closed: the pool retries a connection
/// whose setup fails until its acquire timeout, which would turn a file that is not a
/// database, or a read-only directory, into "cannot be reached" after 5 s.
async fn first_sqlite_connection(url: &str) -> Result<(), LogError> {
    let conn = dedicated_connection(url, Backend::Sqlite)
        .await
        .map_err(|e| sqlite_error(url, e))?;
    let _ = conn.close().await;
    Ok(())
}

/// A failure of SQLite to open or set up the log: [`LogError::Unwritable`] for SQLite's
/// read-only codes (SQLITE_READONLY and its extended codes: a read-only file, or a directory
/// where the -wal and -shm files cannot be made), else [`LogError::Open`].
fn sqlite_error(url: &str, source: sqlx::Error) -> LogError {
    const SQLITE_READONLY: i32 = 8;
    let read_only = source
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_READONLY);
    if read_only {
        LogError::Unwritable {
            target: url_for_display(url),
            source,
        }
    } else {
        LogError::Open { source }
    }
}

/// A missing SQLite database file is created empty (SQLite takes an empty file as a new
/// database) readable by its owner only: SQLite itself would create it with the umask's mode
/// (0644, usually), and its -wal and -shm files take the database file's mode.
fn create_private_sqlite_file(url: &str) -> Result<(), LogError> {
    let Some(path) = crate::serving_lock::sqlite_file(url)? else {
        return Ok(());
    };
    match create_private_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(LogError::CreateDatabase { path, source }),
    }
}

/// Creates `path` as a new empty file readable by its owner only; `AlreadyExists` if
/// anything is there (checked and created in one step).
pub(crate) fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// The background WAL checkpointer's own connection (outside the pool, so that it never waits
/// for, or holds up, the writer and the readers).
async fn wal_checkpoint_connection(url: &str) -> Result<AnyConnection, LogError> {
    dedicated_connection(url, Backend::Sqlite)
        .await
        .map_err(|source| LogError::Open { source })
}

/// A connection of its own, outside the pool, set up as the pool's are.
pub(crate) async fn dedicated_connection(
    url: &str,
    backend: Backend,
) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect(url).await?;
    if backend == Backend::Sqlite
        && let Err(e) = sqlite_connection_settings(&mut conn).await
    {
        let _ = conn.close().await;
        return Err(e);
    }
    Ok(conn)
}

/// Per-connection SQLite settings, in order.
const SQLITE_SETTINGS: &[&str] = &[
    // In WAL mode NORMAL would lose the last commits on power failure, and a commit is a
    // promise to the caller.
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    // Checkpoints normally run in the background, off the writer's path (`wal_checkpoint.rs`),
    // and keep the WAL far below this. This is the backstop, run by the committing writer
    // itself if the background falls behind: every 16,000 pages (≈ 62 MiB) instead of
    // SQLite's 1,000, so that the pages every batch touches (log head, index leaves, node
    // rows) are copied back once per checkpoint rather than sixteen times (the measured
    // gain is in `docs/performance.md`). Durability is the WAL's with synchronous=FULL either way; a
    // restart after a crash replays at most that much WAL.
    "PRAGMA wal_autocheckpoint = 16000",
    // Statement journals (a multi-row insert inside the batch transaction needs one) in
    // memory instead of a temporary file: they never outlive the statement.
    "PRAGMA temp_store = MEMORY",
    // 8 MiB of page cache per connection instead of SQLite's 2 MB: the leaves of the indexes
    // keyed by random values (node ids, serials, digests) that every batch touches stay in
    // memory instead of being read back from the file. 64 appenders in `append_bench`:
    // 104-113 -> 96-97 µs CPU per append.
    "PRAGMA cache_size = -8192",
];

/// Applies [`SQLITE_SETTINGS`] and the busy timeout to a new connection.
async fn sqlite_connection_settings(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for setting in SQLITE_SETTINGS {
        sqlx::query(*setting).execute(&mut *conn).await?;
    }
    let busy = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
    sqlx::query(sqlx::AssertSqlSafe(busy))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// WAL is a property of the database file; set it once, before the pool grows.
async fn enable_wal(pool: &AnyPool) -> Result<(), LogError> {
    let row = sqlx::query("PRAGMA journal_mode = WAL")
        .fetch_one(pool)
        .await
        .map_err(|source| LogError::Open { source })?;
    let mode: String = row.try_get(0).map_err(|source| LogError::Open { source })?;
    if !mode.eq_ignore_ascii_case("wal") {
        let message = format!("SQLite refused WAL mode (journal_mode is {mode:?})");
        return Err(LogError::Open {
            source: sqlx::Error::Configuration(message.into()),
        });
    }
    Ok(())
}

fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
    }
}

/// The applied migrations must be exactly the embedded ones.
async fn check_schema(pool: &AnyPool, backend: Backend) -> Result<(), LogError> {
    let expected: Vec<i64> = migrator(backend).iter().map(|m| m.version).collect();
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(|source| LogError::Open { source })?;
    let found = rows
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| LogError::Open { source })?;
    if found != expected {
        return Err(LogError::SchemaVersion { found, expected });
    }
    Ok(())
}

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), LogError> {
    // Separate folders because the column types differ (INTEGER/BLOB vs BIGINT/BYTEA) and
    // PostgreSQL needs a plpgsql function for the append-only trigger.
    migrator(backend)
        .run(pool)
        .await
        .map_err(|source| LogError::Migrate { source })
}

/// [`prepare`], with `blobs` stored by their digests.
fn prepare_with_blobs(entry: NewEntry, blobs: Vec<Vec<u8>>) -> Result<PreparedEntry, LogError> {
    let mut prepared = prepare(entry)?;
    prepared.blobs = blobs
        .into_iter()
        .map(|bytes| (evidence_digest(&bytes), bytes))
        .collect();
    Ok(prepared)
}
