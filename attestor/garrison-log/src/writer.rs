//! The single writer task: group commit.
//!
//! `append` sends its prepared entry and a oneshot over a bounded channel. The writer waits
//! for at least one entry, takes every entry already queued (up to `max_batch`), and writes
//! them in ONE transaction:
//!
//! 0. Entries appended with a [`Precondition`] (`AttestationLog::append_if`: the attestor's
//!    allows) are judged first, once the transaction holds the log's write lock (SQLite's
//!    BEGIN IMMEDIATE; on PostgreSQL a database-wide advisory lock that orders revocations
//!    against these checks, then the log row), against the revocations of every log of the
//!    database, the current serials committed and the earlier entries of the batch, in one
//!    statement per 500 such entries. Those that fail are answered
//!    [`LogError::PreconditionFailed`] and left out; the rest go on.
//! 1. `UPDATE logs ... RETURNING next_sequence` reserves `n` sequences of this handle's log.
//!    Being the first write of the transaction it takes the database's write lock (SQLite) or
//!    the log row's lock (PostgreSQL) until commit, so sequences are handed out in commit
//!    order and a rolled back batch gives its sequences back: the log stays dense.
//! 2. Leaf hashes are computed with the reserved sequences, and from them the Merkle tree's
//!    new stored hashes (`tree.rs`), then one multi-row statement each: evidence
//!    insert-if-absent, the records, the tree hashes, the node upserts (last per node wins),
//!    the node resets (one statement each: an operator's rare act), the revocation rows.
//! 3. Commit. Only then is any waiter answered: all with their sequence, or, if anything in
//!    the transaction failed, all with the same error.
//!
//! While one batch commits, the next one queues up, which is what turns one fsync per record
//! into one fsync per batch.
//!
//! At a moderate rate that is not enough: an enrollment every 2 ms finds the writer idle, and
//! each is committed alone, paying a whole transaction (the write lock, the statements, the
//! WAL frames of every page it touches, an fsync) for one record. With a commit window
//! ([`AttestationLog::set_commit_window`](crate::AttestationLog::set_commit_window)) the
//! writer holds a batch open for up to that long after its first entry, so that the entries
//! arriving meanwhile share its transaction. A window that gathered nothing (a lone caller
//! appending one record after another, or a quiet site) is not opened again for the next
//! [`IDLE_BATCHES`] batches, so a sequential caller pays it about once in that many appends.
//!
//! On SQLite the writer also answers the node-status reads each decision makes
//! (`node_status`, `node_status_by_serial`), on its own connection, between batches and
//! during a window (never inside a transaction, so a read sees what is committed, as one
//! through the pool would): see [`serve_reads`] for why.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Any, AnyConnection, AssertSqlSafe, Connection as _, Row as _};
use tokio::sync::{mpsc, oneshot};

use crate::entry::{PreparedEntry, PreparedNode};
use crate::leaf::leaf_hash;
use crate::tree::{self, BatchTree, Frontier};
use crate::wal_checkpoint::Link;
use crate::{
    Appended, Backend, LogError, LogStats, NodeStatus, Precondition, PreconditionFailure,
    RevocationTarget, read,
};

/// One queued append and where its answer goes.
pub(crate) struct Job {
    pub entry: PreparedEntry,
    pub reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// A node-status read served on the writer's connection (SQLite; see [`serve_reads`]).
pub(crate) struct StatusRead {
    pub key: StatusKey,
    pub reply: oneshot::Sender<Result<NodeStatus, LogError>>,
}

/// What a [`StatusRead`] looks up.
pub(crate) enum StatusKey {
    /// [`read::node_status`].
    Node(String),
    /// [`read::node_status_by_serial`] (lowercase hex).
    Serial(String),
}

pub(crate) enum Command {
    Append(Box<Job>),
    /// Answered between batches, never inside one: it sees what is committed.
    Status(StatusRead),
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
    wal_checkpoints: AtomicU64,
    failed_wal_checkpoints: AtomicU64,
    commit_windows: AtomicU64,
    commit_windows_gathered: AtomicU64,
    status_reads_on_writer: AtomicU64,
    precondition_failures: AtomicU64,
    /// The commit window, in microseconds (0: none). A setting, not a counter; kept here
    /// because this is what the handle and the writer already share.
    commit_window_us: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> LogStats {
        LogStats {
            batches: self.batches.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            failed_records: self.failed_records.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            wal_checkpoints: self.wal_checkpoints.load(Ordering::Relaxed),
            failed_wal_checkpoints: self.failed_wal_checkpoints.load(Ordering::Relaxed),
            commit_windows: self.commit_windows.load(Ordering::Relaxed),
            commit_windows_gathered: self.commit_windows_gathered.load(Ordering::Relaxed),
            status_reads_on_writer: self.status_reads_on_writer.load(Ordering::Relaxed),
            precondition_failures: self.precondition_failures.load(Ordering::Relaxed),
        }
    }

    pub fn set_commit_window(&self, window: Duration) {
        let us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        self.commit_window_us.store(us, Ordering::Relaxed);
    }

    fn count_commit_window(&self, gathered: bool) {
        self.commit_windows.fetch_add(1, Ordering::Relaxed);
        if gathered {
            self.commit_windows_gathered.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn commit_window(&self) -> Duration {
        Duration::from_micros(self.commit_window_us.load(Ordering::Relaxed))
    }

    pub fn count_wal_checkpoint(&self, ok: bool) {
        let counter = if ok {
            &self.wal_checkpoints
        } else {
            &self.failed_wal_checkpoints
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
    /// Where [`Writer::connection`] connects to.
    pub url: String,
    /// The writer's own connection, outside the pool: opened at the first batch, kept while
    /// batches succeed, and replaced after a failed one. Keeping it is what keeps its SQLite
    /// page cache: a connection drops its whole cache whenever another connection has
    /// committed since its last transaction, so a writer taking any pooled connection (the
    /// one the last node-status read used, say) started every batch cold and read the index
    /// leaves it was about to change back from the file.
    pub connection: Option<AnyConnection>,
    pub backend: Backend,
    /// The log this handle appends to (`logs.id`).
    pub log_id: i64,
    /// The tree's right edge as of the last batch this writer committed; reloaded when
    /// another process appended since.
    pub frontier: Option<Frontier>,
    pub max_batch: usize,
    pub counters: Arc<Counters>,
    /// SQLite: shared with the background checkpointer (`wal_checkpoint.rs`).
    pub wal_checkpoints: Option<Arc<Link>>,
}

/// Batches not held open after a commit window that gathered nothing.
pub(crate) const IDLE_BATCHES: u32 = 64;

/// Whether the next batch is held open: the commit window's on/off rule, apart from time.
#[derive(Debug, Default)]
pub(crate) struct Linger {
    /// Batches still to be committed without a window.
    skip: u32,
}

impl Linger {
    /// True if the batch in hand should wait for more entries (a window is set).
    pub fn open(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// After a window: `gathered` is whether any entry joined the batch during it.
    pub fn closed(&mut self, gathered: bool) {
        self.skip = if gathered { 0 } else { IDLE_BATCHES };
    }
}

/// Moves `received` into `jobs` and `reads`, noting a close (appends after a close are
/// dropped, which answers them `WriterGone`; reads after a close are dropped too, and their
/// callers read through the pool instead).
fn take_commands(
    received: &mut Vec<Command>,
    jobs: &mut Vec<Job>,
    reads: &mut Vec<StatusRead>,
    close: &mut Option<oneshot::Sender<()>>,
) {
    for command in received.drain(..) {
        match command {
            Command::Append(job) if close.is_none() => jobs.push(*job),
            Command::Status(read) if close.is_none() => reads.push(read),
            Command::Append(_) | Command::Status(_) => {}
            Command::Close(ack) => *close = close.take().or(Some(ack)),
        }
    }
}

/// Runs until every sender is gone or a [`Command::Close`] arrives.
pub(crate) async fn run(mut writer: Writer, mut commands: mpsc::Receiver<Command>) {
    let max_batch = writer.max_batch;
    let mut received = Vec::with_capacity(max_batch);
    let mut jobs = Vec::with_capacity(max_batch);
    let mut reads = Vec::new();
    let mut linger = Linger::default();
    loop {
        if commands.recv_many(&mut received, max_batch).await == 0 {
            close_connection(&mut writer).await;
            return;
        }
        let mut close = None;
        take_commands(&mut received, &mut jobs, &mut reads, &mut close);
        serve_reads(&mut writer, &mut reads).await;
        let window = writer.counters.commit_window();
        if !window.is_zero()
            && !jobs.is_empty()
            && close.is_none()
            && jobs.len() < max_batch
            && linger.open()
        {
            let deadline = tokio::time::Instant::now() + window;
            let before = jobs.len();
            // The deadline is checked here too: `timeout_at` polls the channel first, so a
            // steady stream of status reads (which add no job) would otherwise hold the
            // window open past its end, until tokio's cooperative budget made it look at its
            // timer. Tried once (a 20 ms window, four readers on other threads): 2,916 reads
            // served before the batch committed without this check, 233 with it. Only that
            // count tells the two apart, so no test asserts it.
            while close.is_none()
                && jobs.len() < max_batch
                && tokio::time::Instant::now() < deadline
            {
                let room = max_batch - jobs.len();
                match tokio::time::timeout_at(deadline, commands.recv_many(&mut received, room))
                    .await
                {
                    // Every sender gone: commit what is in hand, then stop below.
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        take_commands(&mut received, &mut jobs, &mut reads, &mut close);
                        serve_reads(&mut writer, &mut reads).await;
                    }
                }
            }
            let gathered = jobs.len() > before;
            linger.closed(gathered);
            writer.counters.count_commit_window(gathered);
        }
        if !jobs.is_empty() {
            commit_and_answer(&mut writer, &mut jobs).await;
        }
        if let Some(ack) = close {
            commands.close();
            close_connection(&mut writer).await;
            let _ = ack.send(());
            return;
        }
    }
}

/// Answers `reads` on the writer's connection, outside any transaction, so each sees what is
/// committed (as a read through the pool would).
///
/// Why here and not through the pool: every commit makes SQLite drop the whole page cache of
/// each *other* connection, so a pooled connection read the node, its index leaves and the
/// revocation index back from the file (and looked each page up in the WAL index) on every
/// decision. The writer's connection keeps its cache across its own commits, so the same read
/// finds those pages, which the writer has just touched, in memory. A read waits for whatever
/// the writer is doing when it arrives (committing a batch, waiting for the WAL checkpoint's
/// gate or for SQLite's busy timeout, reconnecting) and for the commands queued before it;
/// the decision that made it then waits for the writer anyway, to append.
async fn serve_reads(writer: &mut Writer, reads: &mut Vec<StatusRead>) {
    for status_read in reads.drain(..) {
        let answer = read_status(writer, &status_read.key).await;
        writer
            .counters
            .status_reads_on_writer
            .fetch_add(1, Ordering::Relaxed);
        // A caller that stopped waiting has nothing to be told.
        let _ = status_read.reply.send(answer);
    }
}

/// One [`StatusRead`] on the writer's connection (opened if need be; closed after a failure,
/// like after a failed batch).
async fn read_status(writer: &mut Writer, key: &StatusKey) -> Result<NodeStatus, LogError> {
    let mut conn = match writer.connection.take() {
        Some(kept) => kept,
        None => connect(&writer.url, writer.backend)
            .await
            .map_err(|source| LogError::Query { source })?,
    };
    let status = match key {
        StatusKey::Node(node_id) => read::node_status(&mut conn, node_id).await,
        StatusKey::Serial(serial) => read::node_status_by_serial(&mut conn, serial).await,
    };
    if status.is_ok() {
        writer.connection = Some(conn);
    } else {
        let _ = conn.close().await;
    }
    status
}

/// Closes the writer's connection cleanly (a SQLite connection's thread ends with it).
async fn close_connection(writer: &mut Writer) {
    if let Some(conn) = writer.connection.take() {
        let _ = conn.close().await;
    }
}

async fn commit_and_answer(writer: &mut Writer, jobs: &mut Vec<Job>) {
    let size = jobs.len();
    let gate = match &writer.wal_checkpoints {
        Some(link) => Some(Arc::clone(link)),
        None => None,
    };
    let gate = match &gate {
        Some(link) => Some(link.gate.lock().await),
        None => None,
    };
    let written = write_batch(writer, jobs).await;
    drop(gate);
    let counters = &writer.counters;
    match written {
        Ok((answers, frontier)) => {
            let written = answers.iter().filter(|answer| answer.is_ok()).count();
            let refused = u64::try_from(size - written).unwrap_or(u64::MAX);
            counters
                .precondition_failures
                .fetch_add(refused, Ordering::Relaxed);
            if let Some(frontier) = frontier {
                writer.frontier = Some(frontier);
                counters.count(written, true);
                if let Some(link) = &writer.wal_checkpoints {
                    link.committed.notify_one();
                }
            }
            for (job, answer) in jobs.drain(..).zip(answers) {
                // A caller that stopped waiting still has its record committed.
                let _ = job.reply.send(answer.map_err(LogError::PreconditionFailed));
            }
        }
        Err(source) => {
            writer.frontier = None;
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

/// What [`write_on`] answers: per job, in `jobs` order, its place in the log or the
/// precondition that no longer held; and the tree's new right edge (`None` if nothing was
/// written).
type Written = (Vec<Result<Appended, PreconditionFailure>>, Option<Frontier>);

/// Writes and commits `jobs` in one transaction on the writer's own connection (opened if
/// need be). After a failure the connection is closed, so that the next batch starts on a
/// fresh one.
async fn write_batch(writer: &mut Writer, jobs: &[Job]) -> Result<Written, sqlx::Error> {
    let (backend, log_id) = (writer.backend, writer.log_id);
    let mut conn = match writer.connection.take() {
        Some(mut kept) => match begin(&mut kept, backend).await {
            Ok(()) => kept,
            // Nothing was done on a session that cannot even begin (a PostgreSQL server that
            // restarted, say): start over on a fresh one, once.
            Err(e) => {
                tracing::debug!(error = %e, "the log writer's connection failed to begin; reconnecting");
                let _ = kept.close().await;
                fresh_and_begun(&writer.url, backend).await?
            }
        },
        None => fresh_and_begun(&writer.url, backend).await?,
    };
    let written = write_on(&mut conn, backend, log_id, writer.frontier.as_ref(), jobs).await;
    if written.is_ok() {
        writer.connection = Some(conn);
    } else {
        // Whatever state the failure left the session in (an open transaction, a broken
        // socket) goes with it.
        let _ = conn.close().await;
    }
    written
}

/// A new connection for the writer, within the pool's connect timeout.
async fn connect(url: &str, backend: Backend) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = tokio::time::timeout(
        crate::log::CONNECT_TIMEOUT,
        crate::log::dedicated_connection(url, backend),
    )
    .await
    .map_err(|_| sqlx::Error::PoolTimedOut)??;
    if backend == Backend::Postgres
        && let Err(e) = postgres_writer_settings(&mut conn).await
    {
        let _ = conn.close().await;
        return Err(e);
    }
    Ok(conn)
}

/// PostgreSQL: bounds on what a stalled session costs the others. A batch waits at most
/// as long for a lock (the revocation lock, the log row) as SQLite's busy timeout lets a
/// writer wait, then fails (its callers get the error; an attestor refuses those
/// decisions) instead of queueing every log's writers behind it: PostgreSQL queues a shared
/// request behind a waiting exclusive one. And a writer that stalls inside its transaction
/// (a paused process, a partition the server has not noticed) has its session ended by the
/// server, which releases its locks, after a minute: a batch's statements follow each other
/// without pause.
async fn postgres_writer_settings(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let lock_timeout = format!("SET lock_timeout = {}", crate::log::SQLITE_BUSY_TIMEOUT_MS);
    sqlx::query(AssertSqlSafe(lock_timeout))
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET idle_in_transaction_session_timeout = 60000")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A new connection for the writer ([`connect`]), with its transaction begun.
async fn fresh_and_begun(url: &str, backend: Backend) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = connect(url, backend).await?;
    if let Err(e) = begin(&mut conn, backend).await {
        let _ = conn.close().await;
        return Err(e);
    }
    Ok(conn)
}

/// Begins the batch's transaction. SQLite: takes the write lock at BEGIN (waiting out
/// busy_timeout) instead of upgrading a read snapshot later, which fails without waiting if
/// another process committed between.
async fn begin(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    let statement = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    sqlx::query(statement).execute(conn).await?;
    Ok(())
}

/// Writes the batch inside the transaction [`begin`] opened, and commits it: every entry whose
/// precondition (if it has one) still holds. On an error the transaction is left open: the
/// caller closes the connection, which rolls it back.
async fn write_on(
    tx: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    frontier: Option<&Frontier>,
    all_jobs: &[Job],
) -> Result<Written, sqlx::Error> {
    lock_revocations(&mut *tx, backend, all_jobs).await?;
    let failures = check_preconditions(&mut *tx, backend, log_id, all_jobs).await?;
    let jobs: Vec<&Job> = all_jobs
        .iter()
        .zip(&failures)
        .filter(|(_, failure)| failure.is_none())
        .map(|(job, _)| job)
        .collect();
    if jobs.is_empty() {
        sqlx::query("ROLLBACK").execute(&mut *tx).await?;
        let refused = failures.into_iter().flatten().map(Err).collect();
        return Ok((refused, None));
    }
    let first = reserve_sequences(&mut *tx, log_id, jobs.len()).await?;
    let frontier = match frontier {
        Some(frontier) if frontier.size == first => frontier.clone(),
        // First batch, or another process appended since our last one.
        _ => tree::load_frontier(&mut *tx, log_id, first).await?,
    };
    let mut tree = BatchTree::new(frontier);
    let mut rows = Vec::with_capacity(jobs.len());
    for (sequence, job) in (first..).zip(jobs) {
        let leaf = leaf_hash(sequence, &job.entry.record).map_err(encode_error)?;
        tree.push(leaf).map_err(encode_error)?;
        let sequence_db = i64::try_from(sequence).map_err(encode_error)?;
        rows.push(Row {
            sequence,
            sequence_db,
            leaf,
            entry: &job.entry,
        });
    }
    // A handful of multi-row statements per batch, not a few per entry. (Sending them as one
    // multi-statement query on SQLite, one hop to sqlx's connection thread instead of five,
    // was measured and saved nothing: `docs/performance.md`.)
    insert_evidence(&mut *tx, backend, &rows).await?;
    insert_records(&mut *tx, backend, log_id, &rows).await?;
    insert_tree_hashes(&mut *tx, backend, log_id, &tree.rows).await?;
    let changes = NodeChanges::of(&rows);
    upsert_nodes(&mut *tx, backend, log_id, &changes.states).await?;
    reset_nodes(&mut *tx, log_id, &changes.resets).await?;
    insert_revocations(&mut *tx, backend, log_id, &rows).await?;
    let frontier = tree.frontier().map_err(encode_error)?;
    // One row per admitted job, in order.
    let mut appended = rows.iter().map(|row| Appended {
        sequence: row.sequence,
        leaf_hash: row.leaf,
    });
    let mut answers = Vec::with_capacity(failures.len());
    for failure in failures {
        answers.push(match failure {
            Some(failure) => Err(failure),
            None => Ok(appended.next().ok_or_else(|| {
                sqlx::Error::Protocol("fewer rows than admitted entries".to_owned())
            })?),
        });
    }
    sqlx::query("COMMIT").execute(&mut *tx).await?;
    Ok((answers, Some(frontier)))
}

/// The PostgreSQL transaction-level advisory lock (two-key form, a key space apart from the
/// serving locks' one-key form) that orders revocations against the preconditions judged
/// by every log's writer in the database: "garr", 1.
const REVOCATION_LOCK: (i32, i32) = (0x6761_7272, 1);

/// PostgreSQL: a batch that writes revocations takes [`REVOCATION_LOCK`] exclusively, one
/// that judges preconditions takes it shared, before anything else (the log row's lock
/// comes after, in every batch, so two writers cannot wait on each other). Preconditions
/// are judged against revocations in any log of the database, and another log's writer
/// does not take this log's row lock: without this, a revocation committed by it between
/// this batch's check and its commit would let an allow through. Held to commit or
/// rollback. SQLite's `BEGIN IMMEDIATE` already serializes every writer of the database.
async fn lock_revocations(
    tx: &mut AnyConnection,
    backend: Backend,
    jobs: &[Job],
) -> Result<(), sqlx::Error> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    let sql = if jobs.iter().any(|job| job.entry.revocation.is_some()) {
        "SELECT pg_advisory_xact_lock($1, $2) IS NULL"
    } else if jobs.iter().any(|job| job.entry.precondition.is_some()) {
        "SELECT pg_advisory_xact_lock_shared($1, $2) IS NULL"
    } else {
        return Ok(());
    };
    sqlx::query(sql)
        .bind(REVOCATION_LOCK.0)
        .bind(REVOCATION_LOCK.1)
        .fetch_one(&mut *tx)
        .await?;
    Ok(())
}

/// Per job, the precondition that no longer holds (`None`: none, or it holds), judged
/// against the committed state and the earlier entries of the batch. Reads nothing if no job
/// has a precondition.
async fn check_preconditions(
    tx: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    jobs: &[Job],
) -> Result<Vec<Option<PreconditionFailure>>, sqlx::Error> {
    let preconditions: Vec<&Precondition> = jobs
        .iter()
        .filter_map(|job| job.entry.precondition.as_ref())
        .collect();
    if preconditions.is_empty() {
        return Ok(jobs.iter().map(|_| None).collect());
    }
    if backend == Backend::Postgres {
        // This log's revocations are written under the log row's lock (every batch takes it,
        // in `reserve_sequences`); other logs' under the revocation lock this batch already
        // holds shared (`lock_revocations`). Taking the row now, before reading them, leaves
        // no moment for one to commit between this check and this batch's records.
        // (SQLite's BEGIN IMMEDIATE already holds the database's write lock.)
        sqlx::query("SELECT id FROM logs WHERE id = $1 FOR UPDATE")
            .bind(log_id)
            .fetch_one(&mut *tx)
            .await?;
    }
    let mut standing = Standing::read(tx, &preconditions).await?;
    Ok(jobs
        .iter()
        .map(|job| {
            let failure = job
                .entry
                .precondition
                .as_ref()
                .and_then(|p| standing.check(p));
            if failure.is_none() {
                standing.apply(&job.entry);
            }
            failure
        })
        .collect())
}

/// What the preconditions of a batch are judged against: the revocations and current
/// serials of the nodes they name, as committed, then as changed by each entry written
/// before them in the batch.
#[derive(Debug, Default)]
struct Standing {
    revoked_nodes: HashSet<String>,
    revoked_serials: HashSet<String>,
    /// Node id → its current serial (`None`: none), for the nodes named; a node absent here
    /// has no state.
    current: HashMap<String, Option<String>>,
}

impl Standing {
    /// The revocations of the nodes and serials named, in any log of the database (as
    /// `read::node_status` enforces them), and those nodes' current serials: one statement
    /// per 500 preconditions. Revocations by any log's writer are ordered against this read
    /// by [`lock_revocations`] on PostgreSQL, by the database's write lock on SQLite (within
    /// one log, the log row's lock orders them too). (Node states are keyed by node id, not by log, and are not:
    /// in a PostgreSQL database several sites share, another site's allow or reset of the
    /// same node between this read and this commit is not seen. A node is one machine at
    /// one site at a time.)
    async fn read(
        tx: &mut AnyConnection,
        preconditions: &[&Precondition],
    ) -> Result<Self, sqlx::Error> {
        let mut standing = Standing::default();
        // At most 2 × 500 values bound per statement, whatever the batch size.
        for chunk in preconditions.chunks(ROWS_PER_STATEMENT) {
            standing.read_chunk(tx, chunk).await?;
        }
        Ok(standing)
    }

    async fn read_chunk(
        &mut self,
        tx: &mut AnyConnection,
        preconditions: &[&Precondition],
    ) -> Result<(), sqlx::Error> {
        let nodes: BTreeSet<&str> = preconditions.iter().map(|p| p.node_id.as_str()).collect();
        let serials: BTreeSet<&str> = preconditions
            .iter()
            .filter_map(|p| p.presented_serial.as_deref())
            .collect();
        let list = |first: usize, count: usize| {
            (first..first + count)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let node_list = list(1, nodes.len());
        let revoked_where = if serials.is_empty() {
            format!("node_id IN ({node_list})")
        } else {
            let serial_list = list(1 + nodes.len(), serials.len());
            format!("(node_id IN ({node_list}) OR serial IN ({serial_list}))")
        };
        let sql = format!(
            "SELECT 'revoked' AS what, node_id, serial FROM revocations \
             WHERE {revoked_where} \
             UNION ALL \
             SELECT 'current' AS what, node_id, current_serial FROM nodes WHERE node_id IN ({node_list})"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in nodes.iter().chain(&serials) {
            query = query.bind((*value).to_owned());
        }
        for row in query.fetch_all(&mut *tx).await? {
            let what: String = row.try_get(0)?;
            let node_id: Option<String> = row.try_get(1)?;
            let serial: Option<String> = row.try_get(2)?;
            match (what.as_str(), node_id) {
                ("current", Some(node_id)) => {
                    self.current.insert(node_id, serial);
                }
                ("revoked", node_id) => {
                    self.revoked_nodes.extend(node_id);
                    self.revoked_serials.extend(serial);
                }
                _ => {
                    return Err(sqlx::Error::Protocol(format!(
                        "unexpected row {what:?} reading the standing of a batch's nodes"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check(&self, precondition: &Precondition) -> Option<PreconditionFailure> {
        let node_id = &precondition.node_id;
        if self.revoked_nodes.contains(node_id) {
            return Some(PreconditionFailure::NodeRevoked {
                node_id: node_id.clone(),
            });
        }
        let serial = precondition.presented_serial.as_ref()?;
        if self.revoked_serials.contains(serial) {
            return Some(PreconditionFailure::SerialRevoked {
                serial: serial.clone(),
            });
        }
        let current = self.current.get(node_id).and_then(Option::as_ref);
        (current != Some(serial)).then(|| PreconditionFailure::SerialSuperseded {
            serial: serial.clone(),
            node_id: node_id.clone(),
        })
    }

    /// What a written entry changes for the entries after it.
    fn apply(&mut self, entry: &PreparedEntry) {
        match &entry.revocation {
            Some(RevocationTarget::Node(node)) => {
                self.revoked_nodes.insert(node.clone());
            }
            Some(RevocationTarget::Serial(serial)) => {
                self.revoked_serials.insert(serial.clone());
            }
            None => {}
        }
        if let Some(node) = &entry.node {
            self.current.insert(
                node.state.node_id.clone(),
                node.state.current_serial.clone(),
            );
        }
        if let Some(node) = &entry.reset {
            self.current.insert(node.clone(), None);
        }
    }
}

/// One entry of the batch with its assigned place in the log.
pub(crate) struct Row<'a> {
    pub sequence: u64,
    pub sequence_db: i64,
    pub leaf: [u8; 32],
    pub entry: &'a PreparedEntry,
}

pub(crate) fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// Bumps the log's head (and its tree size: the batch's tree hashes commit with it) by
/// `count` and returns the first reserved sequence. Refuses to append to a log whose tree
/// has not been built yet (see `tree_build.rs`): the new hashes would have nothing to
/// stand on.
pub(crate) async fn reserve_sequences(
    conn: &mut AnyConnection,
    log_id: i64,
    count: usize,
) -> Result<u64, sqlx::Error> {
    let count = i64::try_from(count).map_err(encode_error)?;
    let row = sqlx::query(
        "UPDATE logs SET next_sequence = next_sequence + $1, tree_size = tree_size + $1 \
         WHERE id = $2 RETURNING next_sequence, tree_size",
    )
    .bind(count)
    .bind(log_id)
    .fetch_one(&mut *conn)
    .await?;
    let next: i64 = row.try_get(0)?;
    let tree_size: i64 = row.try_get(1)?;
    if tree_size != next {
        return Err(sqlx::Error::Protocol(format!(
            "log {log_id}: the tree covers {tree_size} of {next} records; it is built when the log is opened"
        )));
    }
    let first = next
        .checked_sub(count)
        .and_then(|first| u64::try_from(first).ok());
    first.ok_or_else(|| {
        sqlx::Error::Protocol(format!(
            "logs.next_sequence {next} is below the batch size {count}"
        ))
    })
}

/// Rows per multi-row statement: 14 columns × 500 stays far below SQLite's 32766 and
/// PostgreSQL's 65535 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

pub(crate) type AnyQuery = sqlx::query::Query<'static, Any, sqlx::any::AnyArguments>;

/// `INSERT INTO <into> VALUES ($1, ..), (..) <tail>` over `items`, in chunks (`?` instead
/// of `$n` on SQLite).
pub(crate) async fn insert_rows<T>(
    conn: &mut AnyConnection,
    backend: Backend,
    into: &str,
    columns: usize,
    tail: &str,
    items: &[T],
    bind: impl Fn(AnyQuery, &T) -> AnyQuery,
) -> Result<(), sqlx::Error> {
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("INSERT INTO {into} VALUES ");
        let mut placeholder = 0usize;
        for row in 0..chunk.len() {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match backend {
                    // Anonymous `?`: SQLite looks a numbered parameter up by a linear scan
                    // each time it is bound, quadratic over a 500-row statement (5 % of the
                    // writer's CPU in `append_bench` before this).
                    Backend::Sqlite => sql.push('?'),
                    Backend::Postgres => {
                        placeholder += 1;
                        sql.push('$');
                        sql.push_str(&placeholder.to_string());
                    }
                }
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        // Only fixed table/column names and `$n` placeholders; every value is bound.
        let query = chunk.iter().fold(sqlx::query(AssertSqlSafe(sql)), &bind);
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Each distinct digest once; already stored evidence is left alone.
async fn insert_evidence(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[Row<'_>],
) -> Result<(), sqlx::Error> {
    let distinct: BTreeMap<&str, &[u8]> = rows
        .iter()
        .flat_map(|row| row.entry.evidence.iter().chain(&row.entry.blobs))
        .map(|(digest, bytes)| (digest.as_str(), bytes.as_slice()))
        .collect();
    let evidence: Vec<_> = distinct.into_iter().collect();
    insert_rows(
        conn,
        backend,
        "evidence (digest, bytes)",
        2,
        "ON CONFLICT (digest) DO NOTHING",
        &evidence,
        |q, (digest, bytes)| q.bind(digest.to_string()).bind(bytes.to_vec()),
    )
    .await
}

pub(crate) async fn insert_records(
    conn: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    rows: &[Row<'_>],
) -> Result<(), sqlx::Error> {
    let into = "records (log_id, sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons, \
                policy_digest, evidence_digest, cert_serial, cert_not_after_us)";
    insert_rows(conn, backend, into, 14, "", rows, |q, row| {
        let (entry, r) = (row.entry, &row.entry.record);
        q.bind(log_id)
            .bind(row.sequence_db)
            .bind(hex::encode(row.leaf))
            .bind(entry.time_us)
            .bind(r.site.clone())
            .bind(r.kind.as_str())
            .bind(r.node_id.clone())
            .bind(r.spiffe_id.clone())
            .bind(r.decision.as_str())
            .bind(entry.reasons_json.clone())
            .bind(r.policy_digest.clone())
            .bind(r.evidence_digest.clone())
            .bind(r.cert_serial.clone())
            .bind(entry.not_after_us)
    })
    .await
}

/// The batch's new stored tree hashes.
pub(crate) async fn insert_tree_hashes(
    conn: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    hashes: &[(i64, Vec<u8>)],
) -> Result<(), sqlx::Error> {
    insert_rows(
        conn,
        backend,
        "tree_hashes (log_id, idx, hash)",
        3,
        "",
        hashes,
        |q, (index, hash)| q.bind(log_id).bind(*index).bind(hash.clone()),
    )
    .await
}

/// What the batch does to node states: per node, its last change wins. A state replaces
/// every column; a reset (node-reset record) zeroes the counters and clock and drops the AK
/// binding and current serial of whatever state is there, including one written earlier in
/// the same batch.
#[derive(Debug, Default)]
struct NodeChanges<'a> {
    /// The last state per node, with its record's sequence.
    states: Vec<(i64, &'a PreparedNode)>,
    /// Nodes whose last change is a reset: (record sequence, time, node id).
    resets: Vec<(i64, i64, &'a str)>,
}

impl<'a> NodeChanges<'a> {
    fn of(rows: &[Row<'a>]) -> Self {
        let mut states: BTreeMap<&str, (i64, &PreparedNode)> = BTreeMap::new();
        let mut resets: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for row in rows {
            let entry = row.entry;
            if let Some(node) = &entry.node {
                states.insert(node.state.node_id.as_str(), (row.sequence_db, node));
            }
            if let Some(node) = &entry.reset {
                resets.insert(node.as_str(), (row.sequence_db, entry.time_us));
            }
        }
        // A state written after a node's reset replaces it; one written before it is reset.
        let resets = resets
            .into_iter()
            .filter(|(node, (sequence, _))| states.get(node).is_none_or(|(s, _)| s < sequence))
            .map(|(node, (sequence, time))| (sequence, time, node))
            .collect();
        NodeChanges {
            states: states.into_values().collect(),
            resets,
        }
    }
}

/// One statement for all the batch's node states (PostgreSQL refuses to upsert one key twice
/// in a statement; [`NodeChanges`] keeps the last per node).
async fn upsert_nodes(
    conn: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    nodes: &[(i64, &PreparedNode)],
) -> Result<(), sqlx::Error> {
    let into = "nodes (node_id, ak_name, spiffe_id, identity_json, reset_count, restart_count, clock, \
                current_serial, updated_us, log_id, last_sequence)";
    let tail = "ON CONFLICT (node_id) DO UPDATE SET ak_name = excluded.ak_name, spiffe_id = excluded.spiffe_id, \
                identity_json = excluded.identity_json, \
                reset_count = excluded.reset_count, restart_count = excluded.restart_count, clock = excluded.clock, \
                current_serial = excluded.current_serial, updated_us = excluded.updated_us, \
                log_id = excluded.log_id, last_sequence = excluded.last_sequence";
    insert_rows(
        conn,
        backend,
        into,
        11,
        tail,
        nodes,
        |q, (sequence, node)| {
            let s = &node.state;
            q.bind(s.node_id.clone())
                .bind(s.ak_name.clone())
                .bind(s.spiffe_id.clone())
                .bind(s.identity.clone())
                .bind(i64::from(s.reset_count))
                .bind(i64::from(s.restart_count))
                .bind(node.clock)
                .bind(s.current_serial.clone())
                .bind(node.updated_us)
                .bind(log_id)
                .bind(*sequence)
        },
    )
    .await
}

/// Reset each node: counters and clock to zero, no AK bound, no current serial. The node
/// was checked to exist before its entry was queued, and node states are never deleted: a
/// missing one fails the batch rather than leave a record of a reset that did not happen.
async fn reset_nodes(
    conn: &mut AnyConnection,
    log_id: i64,
    resets: &[(i64, i64, &str)],
) -> Result<(), sqlx::Error> {
    for (sequence, time_us, node) in resets {
        let done = sqlx::query(
            "UPDATE nodes SET reset_count = 0, restart_count = 0, clock = 0, ak_name = $1, \
             current_serial = NULL, updated_us = $2, log_id = $3, last_sequence = $4 WHERE node_id = $5",
        )
        .bind(Vec::<u8>::new())
        .bind(*time_us)
        .bind(log_id)
        .bind(*sequence)
        .bind(node.to_string())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(sqlx::Error::Protocol(format!(
                "node-reset record #{sequence}: node {node} has no state to reset"
            )));
        }
    }
    Ok(())
}

async fn insert_revocations(
    conn: &mut AnyConnection,
    backend: Backend,
    log_id: i64,
    rows: &[Row<'_>],
) -> Result<(), sqlx::Error> {
    let revocations: Vec<_> = rows
        .iter()
        .filter_map(|row| row.entry.revocation.as_ref().map(|target| (row, target)))
        .collect();
    insert_rows(
        conn,
        backend,
        "revocations (log_id, sequence, serial, node_id, time_us)",
        5,
        "",
        &revocations,
        |q, (row, target)| {
            let (serial, node_id) = match target {
                RevocationTarget::Serial(serial) => (Some(serial.clone()), None),
                RevocationTarget::Node(node) => (None, Some(node.clone())),
            };
            q.bind(log_id)
                .bind(row.sequence_db)
                .bind(serial)
                .bind(node_id)
                .bind(row.entry.time_us)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::{IDLE_BATCHES, Linger};

    #[test]
    fn a_window_that_gathers_nothing_is_skipped_for_a_while() {
        let mut linger = Linger::default();
        assert!(linger.open(), "the first batch is held open");
        linger.closed(true);
        assert!(linger.open(), "a window that paid off stays");
        linger.closed(false);
        for batch in 0..IDLE_BATCHES {
            assert!(
                !linger.open(),
                "batch {batch} after an idle window is committed at once"
            );
        }
        assert!(linger.open(), "then the window is tried again");
        linger.closed(false);
        assert!(!linger.open());
    }
}
