//! Which log of the database this handle writes and reads: [`resolve`].
//!
//! A database holds one or more logs (`logs` table), each with a small integer id and an
//! origin. A log from before origins existed has none until a process opens the database
//! with one, which claims it. Claiming and creating are single guarded statements, safe
//! against a second process doing the same at the same moment.

use sqlx::{AnyPool, Row as _};

use crate::LogError;

/// One log of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogId {
    pub id: i64,
    /// `None` only for a log from before origins, opened without naming one.
    pub origin: Option<String>,
}

/// The log named `origin` (claimed or created if needed), or, without a name, the
/// database's only log.
pub(crate) async fn resolve(pool: &AnyPool, origin: Option<&str>) -> Result<LogId, LogError> {
    match origin {
        Some(origin) => named(pool, origin).await,
        None => only(pool).await,
    }
}

/// Checks an origin as a signed-note key name must be (C2SP signed-note): non-empty, no
/// whitespace, no `+`.
pub fn check_origin(origin: &str) -> Result<(), LogError> {
    let bad = origin.is_empty()
        || origin.len() > 255
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control());
    if bad {
        return Err(LogError::InvalidOrigin {
            origin: origin.to_owned(),
        });
    }
    Ok(())
}

/// The log named `origin` (which must exist), or the database's only log: for read-only
/// opens, which create and claim nothing.
pub(crate) async fn lookup(pool: &AnyPool, origin: Option<&str>) -> Result<LogId, LogError> {
    let Some(origin) = origin else {
        return only(pool).await;
    };
    match id_of(pool, origin).await? {
        Some(id) => Ok(LogId {
            id,
            origin: Some(origin.to_owned()),
        }),
        None => Err(LogError::UnknownOrigin {
            origin: origin.to_owned(),
        }),
    }
}

async fn named(pool: &AnyPool, origin: &str) -> Result<LogId, LogError> {
    find_or_add(pool, origin, true).await
}

/// The log named `origin`, added if the database has none; never claims an unnamed log.
/// What a replica (the hub's copy of a site log) is opened with.
pub(crate) async fn replica(pool: &AnyPool, origin: &str) -> Result<LogId, LogError> {
    find_or_add(pool, origin, false).await
}

async fn find_or_add(pool: &AnyPool, origin: &str, may_claim: bool) -> Result<LogId, LogError> {
    check_origin(origin)?;
    // Two rounds: a concurrent claim or insert by another process makes ours a no-op, and the
    // second look finds its row.
    for _ in 0..2 {
        if let Some(id) = id_of(pool, origin).await? {
            return Ok(LogId {
                id,
                origin: Some(origin.to_owned()),
            });
        }
        claim_or_create(pool, origin, may_claim).await?;
    }
    id_of(pool, origin)
        .await?
        .map(|id| LogId {
            id,
            origin: Some(origin.to_owned()),
        })
        .ok_or_else(|| LogError::InvalidOrigin {
            origin: origin.to_owned(),
        })
}

async fn id_of(pool: &AnyPool, origin: &str) -> Result<Option<i64>, LogError> {
    let row = sqlx::query("SELECT id FROM logs WHERE origin = $1")
        .bind(origin.to_owned())
        .fetch_optional(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    row.map(|row| row.try_get::<i64, _>(0))
        .transpose()
        .map_err(|source| LogError::Query { source })
}

/// Claims the database's unnamed log if it is the only log (and `may_claim`); otherwise adds
/// a new log.
async fn claim_or_create(pool: &AnyPool, origin: &str, may_claim: bool) -> Result<(), LogError> {
    if may_claim {
        claim(pool, origin).await?;
    }
    if id_of(pool, origin).await?.is_some() {
        return Ok(());
    }
    create(pool, origin).await
}

async fn claim(pool: &AnyPool, origin: &str) -> Result<(), LogError> {
    let claimed = sqlx::query(
        "UPDATE logs SET origin = $1 WHERE origin IS NULL AND (SELECT COUNT(*) FROM logs) = 1",
    )
    .bind(origin.to_owned())
    .execute(pool)
    .await
    .map_err(|source| LogError::Query { source })?;
    if claimed.rows_affected() == 1 {
        tracing::info!(origin, "the attestation log now carries its origin");
    }
    Ok(())
}

async fn create(pool: &AnyPool, origin: &str) -> Result<(), LogError> {
    // Loses harmlessly to a concurrent insert of the same origin (UNIQUE) or id (PRIMARY KEY).
    let inserted = sqlx::query(
        "INSERT INTO logs (id, origin, next_sequence, tree_size) \
         SELECT COALESCE(MAX(id), 0) + 1, $1, 0, 0 FROM logs",
    )
    .bind(origin.to_owned())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(()),
        Err(source) => Err(LogError::Query { source }),
    }
}

async fn only(pool: &AnyPool) -> Result<LogId, LogError> {
    let rows = sqlx::query("SELECT id, origin FROM logs ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(|source| LogError::Query { source })?;
    let mut logs = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row
            .try_get(0)
            .map_err(|source| LogError::Query { source })?;
        let origin: Option<String> = row
            .try_get(1)
            .map_err(|source| LogError::Query { source })?;
        logs.push(LogId { id, origin });
    }
    match <[LogId; 1]>::try_from(logs) {
        Ok([log]) => Ok(log),
        Err(logs) => Err(LogError::OriginRequired {
            origins: logs.into_iter().filter_map(|l| l.origin).collect(),
        }),
    }
}
