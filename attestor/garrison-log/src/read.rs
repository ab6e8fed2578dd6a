//! Read queries. They run on the pool, concurrently with the writer.

use std::collections::{BTreeSet, HashMap};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

use crate::leaf::{from_unix_micros, unix_micros};
use crate::{
    Backend, Decision, LogError, NodeState, NodeStatus, Query, Record, RecordKind, StoredRecord,
};

const RECORD_COLUMNS: &str = "sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons, \
                              policy_digest, evidence_digest, cert_serial, cert_not_after_us";

/// A bound value of a dynamically built query.
enum Param {
    Text(String),
    Int(i64),
}

/// `SELECT ... FROM records WHERE <filter> ORDER BY sequence LIMIT n`, with `$n` placeholders
/// (understood by both SQLite and PostgreSQL).
fn records_sql(log_id: i64, filter: &Query) -> Result<(String, Vec<Param>), LogError> {
    let (conditions, mut params) = conditions(log_id, filter)?;
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE ");
    sql.push_str(&conditions.join(" AND "));
    sql.push_str(" ORDER BY sequence");
    if let Some(limit) = filter.limit {
        params.push(Param::Int(i64::from(limit)));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    Ok((sql, params))
}

/// The newest record matching `filter` (its `limit` ignored) whose kind is one of `kinds`:
/// `... ORDER BY sequence DESC LIMIT 1`, which the `(log_id, node_id | spiffe_id |
/// cert_serial | policy_digest, sequence)` indexes answer without a scan.
fn latest_sql(
    log_id: i64,
    filter: &Query,
    kinds: &[RecordKind],
) -> Result<(String, Vec<Param>), LogError> {
    let (mut conditions, mut params) = conditions(log_id, filter)?;
    let mut placeholders = Vec::new();
    for kind in kinds {
        params.push(Param::Text(kind.as_str().to_owned()));
        placeholders.push(format!("${}", params.len()));
    }
    if !placeholders.is_empty() {
        conditions.push(format!("kind IN ({})", placeholders.join(", ")));
    }
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE {} ORDER BY sequence DESC LIMIT 1",
        conditions.join(" AND ")
    );
    Ok((sql, params))
}

/// The `WHERE` conditions of `filter` (all but its limit) and their bound values.
fn conditions(log_id: i64, filter: &Query) -> Result<(Vec<String>, Vec<Param>), LogError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params = Vec::new();
    let mut add = |column_test: &str, param: Param| {
        params.push(param);
        conditions.push(format!("{column_test} ${}", params.len()));
    };
    add("log_id =", Param::Int(log_id));
    if let Some(after) = filter.after_sequence {
        let after = i64::try_from(after).map_err(|_| LogError::InvalidEntry {
            field: "after_sequence",
            problem: "out of range",
        })?;
        add("sequence >", Param::Int(after));
    }
    if let Some(node) = &filter.node_id {
        add("node_id =", Param::Text(node.clone()));
    }
    if let Some(since) = filter.since {
        add("time_us >=", Param::Int(unix_micros(since, "since")?));
    }
    if let Some(until) = filter.until {
        add("time_us <", Param::Int(unix_micros(until, "until")?));
    }
    if let Some(kind) = filter.kind {
        add("kind =", Param::Text(kind.as_str().to_owned()));
    }
    if let Some(decision) = filter.decision {
        add("decision =", Param::Text(decision.as_str().to_owned()));
    }
    if let Some(spiffe) = &filter.spiffe_id {
        add("spiffe_id =", Param::Text(spiffe.clone()));
    }
    if let Some(policy) = &filter.policy_digest {
        add("policy_digest =", Param::Text(policy.clone()));
    }
    if let Some(serial) = &filter.cert_serial {
        add("cert_serial =", Param::Text(serial.to_ascii_lowercase()));
    }
    Ok((conditions, params))
}

pub(crate) async fn records(
    pool: &AnyPool,
    log_id: i64,
    filter: &Query,
) -> Result<Vec<StoredRecord>, LogError> {
    let (sql, params) = records_sql(log_id, filter)?;
    fetch_records(pool, sql, params).await
}

/// The newest record matching `filter` whose kind is one of `kinds` (any kind if empty).
pub(crate) async fn latest_record(
    pool: &AnyPool,
    log_id: i64,
    filter: &Query,
    kinds: &[RecordKind],
) -> Result<Option<StoredRecord>, LogError> {
    let (sql, params) = latest_sql(log_id, filter, kinds)?;
    Ok(fetch_records(pool, sql, params).await?.into_iter().next())
}

async fn fetch_records(
    pool: &AnyPool,
    sql: String,
    params: Vec<Param>,
) -> Result<Vec<StoredRecord>, LogError> {
    // Only column names and `$n` placeholders are interpolated; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text),
            Param::Int(int) => query.bind(int),
        };
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    rows.iter().map(stored_record).collect()
}

/// Up to `limit` records of log `log_id` from sequence `from` on, in order, on `conn`.
pub(crate) async fn records_from(
    conn: &mut AnyConnection,
    log_id: i64,
    from: i64,
    limit: i64,
) -> Result<Vec<StoredRecord>, LogError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE log_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(log_id)
        .bind(from)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| LogError::Query { source })?;
    rows.iter().map(stored_record).collect()
}

const NODE_COLUMNS: &str = "node_id, ak_name, spiffe_id, identity_json, reset_count, restart_count, clock, current_serial, updated_us";

pub(crate) async fn node(pool: &AnyPool, node_id: &str) -> Result<Option<NodeState>, LogError> {
    node_where(pool, "node_id", node_id).await
}

/// Node states by id, after `after`, at most `limit`.
pub(crate) async fn nodes(
    pool: &AnyPool,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<NodeState>, LogError> {
    let rows = node_page(pool, "", after, limit).await?;
    rows.iter().map(node_state).collect()
}

/// Node rows (every log's) by id after `after`, at most `limit`: [`NODE_COLUMNS`], then
/// `extra` (`", column, ..."`, one of ours, never input).
async fn node_page(
    pool: &AnyPool,
    extra: &'static str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<AnyRow>, LogError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS}{extra} FROM nodes WHERE node_id > $1 ORDER BY node_id LIMIT $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after.unwrap_or_default().to_owned())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(|source| LogError::Query { source })
}

pub(crate) async fn node_by_current_serial(
    pool: &AnyPool,
    serial: &str,
) -> Result<Option<NodeState>, LogError> {
    node_where(pool, "current_serial", serial).await
}

/// One node row by an indexed column (`column` is one of ours, never input).
async fn node_where(
    pool: &AnyPool,
    column: &'static str,
    value: &str,
) -> Result<Option<NodeState>, LogError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE {column} = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value.to_owned())
        .fetch_optional(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    row.as_ref().map(node_state).transpose()
}

/// `n.`-qualified [`NODE_COLUMNS`], for queries that join `nodes AS n`.
const NODE_COLUMNS_N: &str = "n.node_id, n.ak_name, n.spiffe_id, n.identity_json, n.reset_count, n.restart_count, \
                              n.clock, n.current_serial, n.updated_us";

/// The node with this id and whether it is revoked, in one statement (one hop to the
/// database instead of two on every enrollment): the answers of [`node`] and [`node_revoked`].
pub(crate) async fn node_status<'c, E>(executor: E, node_id: &str) -> Result<NodeStatus, LogError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    status_query(
        executor,
        "n.node_id",
        NODE_REVOKED_COUNT,
        node_id.to_owned(),
    )
    .await
}

/// The node whose current certificate has `serial` and whether the serial (or the node it was
/// issued to) is revoked, in one statement: the answers of [`node_by_current_serial`] and
/// [`serial_revoked`].
pub(crate) async fn node_status_by_serial<'c, E>(
    executor: E,
    serial: &str,
) -> Result<NodeStatus, LogError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let serial = serial.to_ascii_lowercase();
    status_query(executor, "n.current_serial", SERIAL_REVOKED_COUNT, serial).await
}

/// One row: the node whose `node_column` is `$1` (all NULL without one) and the number of
/// revocations `revoked_count` counts. Both are fixed names from this module; the key is
/// bound.
async fn status_query<'c, E>(
    executor: E,
    node_column: &'static str,
    revoked_count: &'static str,
    key: String,
) -> Result<NodeStatus, LogError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {NODE_COLUMNS_N}, {revoked_count} AS revoked_count \
         FROM (SELECT 1 AS one) AS q LEFT JOIN nodes AS n ON {node_column} = $1"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(key)
        .fetch_one(executor)
        .await
        .map_err(|source| LogError::Query { source })?;
    let node_id: Option<String> = column(&row, "node_id")?;
    let node = match node_id {
        Some(_) => Some(node_state(&row)?),
        None => None,
    };
    let revoked: i64 = column(&row, "revoked_count")?;
    Ok(NodeStatus {
        node,
        revoked: revoked > 0,
    })
}

// Revocations are enforced across the database's logs, not only the handle's own: node
// states are keyed by node id alone, and a site whose origin changes (a renamed site or
// trust domain opens a new log in the same database) must not forget whom it revoked. Only
// sites' own writers write revocations (a hub's replicas never do): in a site's database
// these are that site's revocations, under whichever origin it had; in a PostgreSQL
// database several sites share, each site enforces the others' too.

/// How many revocations, in any log of the database, cover node `$1`: a scalar expression.
const NODE_REVOKED_COUNT: &str = "(SELECT COUNT(*) FROM revocations WHERE node_id = $1)";

/// How many revocations, in any log of the database, cover serial `$1`: the serial itself,
/// or the node it was issued to (by any enroll/renew record, or as the node's current
/// serial). Three counts, each answered from an index (an `OR` of subqueries would scan the
/// revocations on PostgreSQL); `log_id IN (...)` lets the serial index, which leads with the
/// log, be used per log.
const SERIAL_REVOKED_COUNT: &str = "((SELECT COUNT(*) FROM revocations WHERE serial = $1) \
     + (SELECT COUNT(*) FROM revocations WHERE node_id IN \
        (SELECT node_id FROM records WHERE log_id IN (SELECT id FROM logs) AND cert_serial = $1 AND node_id IS NOT NULL)) \
     + (SELECT COUNT(*) FROM revocations WHERE node_id IN \
        (SELECT node_id FROM nodes WHERE current_serial = $1)))";

/// [`NODE_REVOKED_COUNT`] for this log's revocations alone (`$2`): whether this log holds
/// a record of the revocation, which a hub's list is then not recorded again for. (`+log_id`
/// keeps SQLite, which has no statistics without ANALYZE, from searching the revocations by
/// their primary key's leading `log_id`, a scan of the log's revocations, instead of by
/// node or serial.)
const NODE_REVOKED_IN_LOG_COUNT: &str =
    "(SELECT COUNT(*) FROM revocations WHERE node_id = $1 AND +log_id = $2)";

/// [`SERIAL_REVOKED_COUNT`] for this log's revocations and records alone (`$2`).
const SERIAL_REVOKED_IN_LOG_COUNT: &str = "((SELECT COUNT(*) FROM revocations WHERE +log_id = $2 AND serial = $1) \
     + (SELECT COUNT(*) FROM revocations WHERE +log_id = $2 AND node_id IN \
        (SELECT node_id FROM records WHERE log_id = $2 AND cert_serial = $1 AND node_id IS NOT NULL)) \
     + (SELECT COUNT(*) FROM revocations WHERE +log_id = $2 AND node_id IN \
        (SELECT node_id FROM nodes WHERE current_serial = $1)))";

/// The evidence column as bytes. SQLite keeps whatever type a value was written with: bytes
/// rewritten as TEXT (what `||` gives in the sqlite3 shell) are read as their bytes, so that
/// they are found not to hash to their digest instead of failing the whole read.
fn evidence_bytes(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(bytes AS BLOB) AS bytes",
        Backend::Postgres => "bytes",
    }
}

pub(crate) async fn evidence(
    pool: &AnyPool,
    backend: Backend,
    digest: &str,
) -> Result<Option<Vec<u8>>, LogError> {
    let sql = format!(
        "SELECT {} FROM evidence WHERE digest = $1",
        evidence_bytes(backend)
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(digest.to_ascii_lowercase())
        .fetch_optional(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    row.map(|row| column(&row, "bytes")).transpose()
}

/// Digests asked for in one `IN (...)` statement of [`evidence_many`]. Chosen under sqlx
/// 0.9.0, which left Nagle's algorithm on: on PostgreSQL over TCP, statements of 300 or more
/// digests (about 20 KB of bound values) each stalled about 40 ms waiting for the server's
/// delayed ACK (90 µs per digest at 500 against 14-16 µs at 100, on a 20 k-record log). sqlx
/// 0.9.1, in use since, sets `TCP_NODELAY`; larger statements were not measured again.
pub(crate) const EVIDENCE_PER_STATEMENT: usize = 100;

/// [`evidence`] for each of `digests`, in one statement per [`EVIDENCE_PER_STATEMENT`]
/// distinct digests: keyed by the digest as asked, holding what [`evidence`] answers for it
/// (the row under its lowercase form); digests the log does not hold are absent.
pub(crate) async fn evidence_many(
    pool: &AnyPool,
    backend: Backend,
    digests: &[String],
) -> Result<HashMap<String, Vec<u8>>, LogError> {
    // Each lowercase form once, whatever case or repetition the digests were asked in.
    let wanted: Vec<String> = digests
        .iter()
        .map(|digest| digest.to_ascii_lowercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut held: HashMap<String, Vec<u8>> = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(EVIDENCE_PER_STATEMENT) {
        let sql = format!(
            "SELECT digest, {} FROM evidence WHERE digest IN ({})",
            evidence_bytes(backend),
            placeholders(backend, chunk.len())
        );
        // Only placeholders are interpolated; every digest is bound.
        let query = chunk
            .iter()
            .fold(sqlx::query(AssertSqlSafe(sql)), |query, digest| {
                query.bind(digest.clone())
            });
        let rows = query
            .fetch_all(pool)
            .await
            .map_err(|source| LogError::Query { source })?;
        for row in rows {
            held.insert(column(&row, "digest")?, column(&row, "bytes")?);
        }
    }
    let is_lowercase = |digest: &&String| !digest.bytes().any(|b| b.is_ascii_uppercase());
    let mut found = HashMap::with_capacity(held.len());
    // Digests asked with uppercase letters (rare) get a copy of their row's bytes; then each
    // lowercase digest, asked once or more, takes its row's bytes out.
    for digest in digests.iter().filter(|d| !is_lowercase(d)) {
        if let Some(bytes) = held.get(&digest.to_ascii_lowercase()) {
            found.insert(digest.clone(), bytes.clone());
        }
    }
    for digest in digests.iter().filter(is_lowercase) {
        if let Some(bytes) = held.remove(digest) {
            found.insert(digest.clone(), bytes);
        }
    }
    Ok(found)
}

/// `n` placeholders separated by commas: anonymous `?` on SQLite (which looks a numbered
/// parameter up by a linear scan each time it is bound), `$1..$n` on PostgreSQL.
fn placeholders(backend: Backend, n: usize) -> String {
    let mut list = String::with_capacity(n * 5);
    for i in 1..=n {
        if i > 1 {
            list.push_str(", ");
        }
        match backend {
            Backend::Sqlite => list.push('?'),
            Backend::Postgres => {
                list.push('$');
                list.push_str(&i.to_string());
            }
        }
    }
    list
}

/// True if `serial` is revoked, or the node it was issued to (by any enroll/renew record, or
/// as the node's current serial) is.
pub(crate) async fn serial_revoked(pool: &AnyPool, serial: &str) -> Result<bool, LogError> {
    count_is_positive(
        pool,
        format!("SELECT {SERIAL_REVOKED_COUNT} AS count"),
        serial.to_ascii_lowercase(),
        None,
    )
    .await
}

pub(crate) async fn node_revoked(pool: &AnyPool, node_id: &str) -> Result<bool, LogError> {
    count_is_positive(
        pool,
        format!("SELECT {NODE_REVOKED_COUNT} AS count"),
        node_id.to_owned(),
        None,
    )
    .await
}

/// Whether this log (`log_id`) holds a revocation covering `target`, as [`node_revoked`] or
/// [`serial_revoked`] answer for the whole database.
pub(crate) async fn revoked_in_log(
    pool: &AnyPool,
    log_id: i64,
    target: &crate::RevocationTarget,
) -> Result<bool, LogError> {
    let (count, key) = match target {
        crate::RevocationTarget::Node(node_id) => (NODE_REVOKED_IN_LOG_COUNT, node_id.clone()),
        crate::RevocationTarget::Serial(serial) => {
            (SERIAL_REVOKED_IN_LOG_COUNT, serial.to_ascii_lowercase())
        }
    };
    count_is_positive(pool, format!("SELECT {count} AS count"), key, Some(log_id)).await
}

async fn count_is_positive(
    pool: &AnyPool,
    sql: String,
    key: String,
    log_id: Option<i64>,
) -> Result<bool, LogError> {
    // Only fixed SQL is passed in; the key (and the log id, for SQL that names `$2`) is
    // bound.
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(key);
    if let Some(log_id) = log_id {
        query = query.bind(log_id);
    }
    let row = query
        .fetch_one(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    let count: i64 = column(&row, "count")?;
    Ok(count > 0)
}

fn stored_record(row: &AnyRow) -> Result<StoredRecord, LogError> {
    let sequence: i64 = column(row, "sequence")?;
    let sequence = u64::try_from(sequence).map_err(|_| LogError::Corrupt {
        column: "sequence",
        found: sequence.to_string(),
    })?;
    let fields = || -> Result<StoredRecord, LogError> {
        let leaf_hex: String = column(row, "leaf_hash")?;
        let leaf_hash = hex::decode(&leaf_hex)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(LogError::Corrupt {
                column: "leaf_hash",
                found: leaf_hex,
            })?;
        Ok(StoredRecord {
            sequence,
            leaf_hash,
            record: record(row)?,
        })
    };
    fields().map_err(|source| LogError::CorruptRecord {
        sequence,
        source: Box::new(source),
    })
}

fn record(row: &AnyRow) -> Result<Record, LogError> {
    let kind: String = column(row, "kind")?;
    let decision: String = column(row, "decision")?;
    let reasons: String = column(row, "reasons")?;
    let not_after: Option<i64> = column(row, "cert_not_after_us")?;
    Ok(Record {
        time: from_unix_micros(column(row, "time_us")?, "time_us")?,
        site: column(row, "site")?,
        kind: kind.parse::<RecordKind>().map_err(|_| LogError::Corrupt {
            column: "kind",
            found: kind,
        })?,
        node_id: column(row, "node_id")?,
        spiffe_id: column(row, "spiffe_id")?,
        decision: decision
            .parse::<Decision>()
            .map_err(|_| LogError::Corrupt {
                column: "decision",
                found: decision,
            })?,
        reasons: serde_json::from_str(&reasons).map_err(|_| LogError::Corrupt {
            column: "reasons",
            found: reasons,
        })?,
        policy_digest: column(row, "policy_digest")?,
        evidence_digest: column(row, "evidence_digest")?,
        cert_serial: column(row, "cert_serial")?,
        cert_not_after: not_after
            .map(|us| from_unix_micros(us, "cert_not_after_us"))
            .transpose()?,
    })
}

/// See [`AttestationLog::kept_node_states`](crate::AttestationLog::kept_node_states).
pub(crate) async fn kept_node_states(
    pool: &AnyPool,
    log_id: i64,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<crate::KeptNodeState>, LogError> {
    let rows = node_page(
        pool,
        ", last_sequence, log_id, (SELECT COUNT(*) FROM records AS r \
         WHERE r.log_id = nodes.log_id AND r.sequence = nodes.last_sequence) AS record_held",
        after,
        limit,
    )
    .await?;
    rows.iter()
        .map(|row| {
            let node_id: String = column(row, "node_id")?;
            // An unreadable row names its node: an auditor is told which row to look at.
            let named = |e: LogError| {
                let mut why = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    why = format!("{why}: {c}");
                    cause = c.source();
                }
                LogError::Corrupt {
                    column: "nodes",
                    found: format!("the row of node {node_id}: {why}"),
                }
            };
            let read = || -> Result<crate::KeptNodeState, LogError> {
                let last_sequence: i64 = column(row, "last_sequence")?;
                let row_log: i64 = column(row, "log_id")?;
                let record_held: i64 = column(row, "record_held")?;
                Ok(crate::KeptNodeState {
                    state: node_state(row)?,
                    last_sequence: narrow(last_sequence, "last_sequence")?,
                    this_log: row_log == log_id,
                    record_held: record_held > 0,
                })
            };
            read().map_err(named)
        })
        .collect()
}

fn node_state(row: &AnyRow) -> Result<NodeState, LogError> {
    Ok(NodeState {
        node_id: column(row, "node_id")?,
        ak_name: column(row, "ak_name")?,
        spiffe_id: column(row, "spiffe_id")?,
        identity: column(row, "identity_json")?,
        reset_count: narrow(column(row, "reset_count")?, "reset_count")?,
        restart_count: narrow(column(row, "restart_count")?, "restart_count")?,
        clock: narrow(column(row, "clock")?, "clock")?,
        current_serial: column(row, "current_serial")?,
        updated: from_unix_micros(column(row, "updated_us")?, "updated_us")?,
    })
}

fn narrow<T: TryFrom<i64>>(value: i64, column: &'static str) -> Result<T, LogError> {
    T::try_from(value).map_err(|_| LogError::Corrupt {
        column,
        found: value.to_string(),
    })
}

/// A column by name, or by position 0 for the single-column `count` queries (whose column
/// name differs between backends).
fn column<'r, T>(row: &'r AnyRow, name: &'static str) -> Result<T, LogError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    let result = if name == "count" {
        row.try_get(0)
    } else {
        row.try_get(name)
    };
    result.map_err(|source| LogError::Query { source })
}
