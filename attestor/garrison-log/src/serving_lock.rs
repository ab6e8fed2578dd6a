//! One serving process per SQLite log: [`ServingLock`], an exclusive OS lock (`flock`) on a
//! lock file beside the database, `<database>.lock`.
//!
//! The log itself stays correct with several writers (sequences are reserved in each
//! transaction), but a site attestor keeps state of its own beside it (challenges, record
//! budgets, the site CA's rotation), so only one may serve a site's log. The lock is held for
//! as long as the value lives and the kernel drops it when the process ends, however it ends:
//! a crashed attestor leaves the file behind but never a held lock. Tools that only read (or
//! write one record beside a running attestor, as `garrison node reset` does) never take it.
//! A PostgreSQL log is locked per origin instead ([`ServingLock::acquire_postgres`]): a session
//! advisory lock held on a connection of its own, which the server drops when that connection
//! ends (the process exits, or the connection is lost). Hubs take no lock: several hub
//! processes may share one database.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use crate::{Backend, LogError};

/// The exclusive serving lock of a log, held until dropped.
#[derive(Debug)]
pub struct ServingLock {
    held: Held,
    path: PathBuf,
}

/// What keeps the lock.
#[derive(Debug)]
enum Held {
    /// An SQLite log: the lock lives as long as this open file.
    File(#[allow(dead_code)] File),
    /// A PostgreSQL log: the advisory lock lives as long as this session.
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
}

impl ServingLock {
    /// Takes the lock of the SQLite database `url` names, without waiting, and writes
    /// `holder` and this process's id into the lock file (what a second process is told).
    /// `Ok(None)` for a PostgreSQL or in-memory database: there is no file to lock.
    pub fn acquire(url: &str, holder: &str) -> Result<Option<Self>, LogError> {
        let Some(database) = sqlite_file(url)? else {
            return Ok(None);
        };
        let path = lock_path(&database);
        let lock_file_error = |source| LogError::LockFile {
            path: path.clone(),
            source,
        };
        let mut file = open_lock_file(&path).map_err(lock_file_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    database,
                    holder: holder_of(&mut file),
                    lock: path,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(lock_file_error(source)),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{holder}, pid {}", std::process::id()))
            .map_err(lock_file_error)?;
        Ok(Some(ServingLock {
            held: Held::File(file),
            path,
        }))
    }

    /// Takes the serving lock of the log `origin` in the PostgreSQL database `url`, without
    /// waiting: a session advisory lock keyed by the origin, on a connection of its own named
    /// after `holder` and this process (what a second process is told). `Ok(None)` for an
    /// SQLite database (see [`ServingLock::acquire`]).
    pub async fn acquire_postgres(
        url: &str,
        origin: &str,
        holder: &str,
    ) -> Result<Option<Self>, LogError> {
        use sqlx::{ConnectOptions as _, Connection as _};
        if Backend::from_url(url)? != Backend::Postgres {
            return Ok(None);
        }
        let target = crate::url_for_display(url);
        let name: String = format!("{holder}, pid {}", std::process::id())
            .chars()
            .take(63)
            .collect();
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|source| LogError::Open { source })?
            .application_name(&name);
        let unreachable = |source| LogError::Unreachable {
            target: target.clone(),
            seconds: 5,
            source,
        };
        let mut connection =
            tokio::time::timeout(std::time::Duration::from_secs(5), options.connect())
                .await
                .map_err(|_| unreachable(sqlx::Error::PoolTimedOut))?
                .map_err(unreachable)?;
        let key = advisory_key(origin);
        let query = |source| LogError::Query { source };
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut connection)
            .await
            .map_err(query)?;
        if !taken {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
            )
            .bind(key)
            .fetch_optional(&mut connection)
            .await
            .map_err(query)?;
            let _ = connection.close().await;
            return Err(LogError::LockedPostgres {
                origin: origin.to_owned(),
                target,
                holder: holder
                    .filter(|holder| !holder.is_empty())
                    .unwrap_or_else(|| "another process".to_owned()),
            });
        }
        Ok(Some(ServingLock {
            held: Held::Postgres(connection),
            path: PathBuf::from(format!("{target} (advisory lock of {origin})")),
        }))
    }

    /// The lock file (for PostgreSQL: the database and the origin, in words).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is a PostgreSQL advisory lock.
    pub fn is_postgres(&self) -> bool {
        matches!(self.held, Held::Postgres(_))
    }
}

/// The advisory-lock key of a log origin: the first 8 bytes of SHA-256("garrison serving
/// lock\n" || origin), as a signed 64-bit integer.
fn advisory_key(origin: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("garrison serving lock\n{origin}").as_bytes());
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    i64::from_be_bytes(first)
}

/// The lock file of an SQLite database: `<database>.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The file an SQLite URL names (as sqlx reads the URL), or `None` for PostgreSQL and
/// in-memory databases.
pub fn sqlite_file(url: &str) -> Result<Option<PathBuf>, LogError> {
    if Backend::from_url(url)? != Backend::Sqlite {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|source| LogError::Open { source })?;
    let file = options.get_filename();
    // sqlx names in-memory databases `file:sqlx-in-memory-<n>`.
    let in_memory =
        url.contains("mode=memory") || file.to_string_lossy().starts_with("file:sqlx-in-memory-");
    if in_memory || file.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(file.to_owned()))
}

/// Opens (creating it, readable by its owner only) the lock file, without truncating it: the
/// holder's line stays readable until the lock is ours.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Who holds the lock, as its holder wrote it.
fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    // Unreadable, or read between the holder's lock and its write: nothing better to say.
    let _ = Read::take(&mut *file, 1024).read_to_string(&mut text);
    match text.trim() {
        "" => "another process".to_owned(),
        holder => holder.to_owned(),
    }
}
