//! The crate's one error type.

use std::sync::Arc;

/// Everything that can go wrong opening, writing or reading the attestation log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("log database URL scheme {scheme:?} is not supported (use sqlite: or postgres:)")]
    UnsupportedUrl { scheme: String },
    /// A [`LogConfig`](crate::LogConfig) value is out of range.
    #[error("log configuration field {field} must be at least 1")]
    Config { field: &'static str },
    /// Connecting to the database or setting up a connection failed.
    #[error("opening the log database failed")]
    Open {
        #[source]
        source: sqlx::Error,
    },
    /// The database server did not answer within the connect timeout (down, unreachable, or
    /// refusing connections). `target` is the URL without its credentials.
    #[error("the log database at {target} cannot be reached (no connection within {seconds} s)")]
    Unreachable {
        target: String,
        seconds: u64,
        #[source]
        source: sqlx::Error,
    },
    /// A write to the log database was refused (a read-only file or directory, a read-only
    /// session or server, missing privileges): nothing could be appended. `target` is the
    /// URL without its credentials.
    #[error(
        "the log database {target} cannot be written (an SQLite file and its directory must be \
         writable: SQLite keeps -wal and -shm files beside it)"
    )]
    Unwritable {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// A new SQLite database file could not be created.
    #[error("creating the log database {path}")]
    CreateDatabase {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process serves this SQLite log: it holds the log's lock file
    /// ([`ServingLock`](crate::ServingLock)).
    #[error(
        "{database} is already served by another process ({holder}, holding {lock}): stop it \
         first, or give this one a database of its own"
    )]
    Locked {
        database: std::path::PathBuf,
        lock: std::path::PathBuf,
        /// What the holder wrote into the lock file (its program and process id).
        holder: String,
    },
    /// Another process holds the PostgreSQL log's serving lock.
    #[error(
        "another process is serving the log {origin} in {target}: {holder}; stop it first, or \
         give this one a log of its own"
    )]
    LockedPostgres {
        origin: String,
        target: String,
        /// The holder's PostgreSQL application name (its program and process id).
        holder: String,
    },
    /// The lock file could not be created, locked or written.
    #[error("the lock file {path} cannot be used (the database's directory must be writable)")]
    LockFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Running the schema migrations failed.
    #[error("migrating the log schema failed")]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The entry was refused before it reached the writer; nothing was written.
    #[error("log entry refused: {field}: {problem}")]
    InvalidEntry {
        field: &'static str,
        problem: &'static str,
    },
    /// The batch transaction carrying this entry failed; no entry of that batch was recorded.
    #[error("committing a batch of {batch_size} log entries failed; none of them was recorded")]
    Append {
        batch_size: usize,
        /// Shared: every waiter of the failed batch receives the same cause.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The writer task has stopped (the log was closed); the entry was not written.
    #[error("the log writer has stopped; the entry was not written")]
    WriterGone,
    /// [`AttestationLog::reset_node`](crate::AttestationLog::reset_node) names a node that
    /// never enrolled; nothing was written.
    #[error("node {node_id} is not in the log (it never enrolled)")]
    UnknownNode { node_id: String },
    /// A read query failed.
    #[error("querying the log failed")]
    Query {
        #[source]
        source: sqlx::Error,
    },
    /// A stored value cannot be turned back into its Rust type.
    #[error("stored log column {column} holds an invalid value: {found:?}")]
    Corrupt { column: &'static str, found: String },
    /// A name that should be a [`RecordKind`](crate::RecordKind) or
    /// [`Decision`](crate::Decision) is not one.
    #[error("{what} {found:?} is not known")]
    UnknownName { what: &'static str, found: String },
    /// Serializing the canonical leaf encoding failed.
    #[error("encoding the canonical leaf bytes failed")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    /// A log origin is not usable as a signed-note key name (empty, over 255 bytes, or
    /// containing whitespace, control characters or `+`).
    #[error("log origin {origin:?} is not valid (non-empty, at most 255 bytes, no spaces or '+')")]
    InvalidOrigin { origin: String },
    /// The database holds several logs (or none) and no origin was given to choose one.
    #[error("{}", origin_required(origins))]
    OriginRequired { origins: Vec<String> },
    /// A signed checkpoint needs the log's origin, and this log has none yet.
    #[error("this log has no origin yet; open it with one to sign or store checkpoints")]
    NoOrigin,
    /// The Merkle tree computation failed (an internal inconsistency of the stored tree).
    #[error("Merkle tree: {problem}")]
    Tree { problem: String },
    /// Building the tree over a migrated log's existing records failed.
    #[error("building the Merkle tree of log {log_id} over its existing records failed")]
    TreeBuild {
        log_id: i64,
        #[source]
        source: Box<LogError>,
    },
    /// A stored record's leaf hash does not match its contents.
    #[error("record #{sequence}: the stored leaf hash does not match the record's contents")]
    LeafMismatch { sequence: u64 },
    /// A proof was asked for between sizes the tree cannot prove.
    #[error("no {what} proof for {first} in/to {second}: out of range of the tree")]
    ProofRange {
        what: &'static str,
        first: u64,
        second: u64,
    },
    /// A checkpoint to store is for a tree size the log does not have, or its root differs
    /// from the log's own root at that size.
    #[error("checkpoint for size {size} does not match this log's tree")]
    CheckpointMismatch { size: u64 },
    /// A stored record cannot be read back (a column holds what the log never writes).
    #[error("record #{sequence} cannot be read")]
    CorruptRecord {
        sequence: u64,
        #[source]
        source: Box<LogError>,
    },
    /// The database's schema is not the one this version reads (read-only opens never
    /// migrate).
    #[error(
        "the log database has schema versions {found:?}, this version reads {expected:?}: open it once with an attestor of this version to upgrade it"
    )]
    SchemaVersion { found: Vec<i64>, expected: Vec<i64> },
    /// A read-only open named an origin the database has no log for.
    #[error("the database holds no log with origin {origin:?}")]
    UnknownOrigin { origin: String },
    /// The export target already exists.
    #[error("{path} already exists; an export never overwrites")]
    ExportExists { path: String },
    /// Bytes handed in as a record's canonical encoding are not one (another encoding of the
    /// same record included: only the canonical bytes hash to the leaf).
    #[error("not a canonical record encoding: {problem}")]
    NotCanonical { problem: String },
    /// A replicated batch does not start where the replica can take it: records are taken
    /// in order, from at most the replica's size.
    #[error("replica of {origin} holds {held} records; a batch starting at {first} leaves a gap")]
    ReplicaGap {
        origin: String,
        held: u64,
        first: u64,
    },
    /// A replicated record differs from the one the replica already holds at its sequence.
    #[error("replica of {origin}: record #{sequence} differs from the one already held")]
    ReplicaConflict { origin: String, sequence: u64 },
    /// A replicated batch's evidence is missing, or its bytes do not hash to their digest.
    #[error("replica of {origin}: evidence {digest}: {problem}")]
    ReplicaEvidence {
        origin: String,
        digest: String,
        problem: &'static str,
    },
    /// The caller's check of the replica's new root refused the batch; nothing was stored.
    #[error("replica of {origin}: batch refused: {reason}")]
    ReplicaRefused { origin: String, reason: String },
    /// A cosignature names a checkpoint this log does not keep.
    #[error("no checkpoint of size {size} is kept to carry this cosignature")]
    CosignatureWithoutCheckpoint { size: u64 },
    /// An entry appended with a [`Precondition`](crate::Precondition) that no longer held
    /// when its batch was written: that entry was not appended (the rest of its batch was).
    #[error("not appended: {0}")]
    PreconditionFailed(crate::PreconditionFailure),
}

fn origin_required(origins: &[String]) -> String {
    if origins.is_empty() {
        "the database holds no attestation log with an origin (none, or only unnamed ones)"
            .to_owned()
    } else {
        format!("the database holds logs {origins:?}: name the origin to open")
    }
}
