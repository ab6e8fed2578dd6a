//! One serving process per SQLite log: [`ServingLock`], an exclusive OS lock (`flock`) on a
//! lock file beside the database, `<database>.lock`.
//!
//! The log itself stays correct with several writers (sequences are reserved in each
//! transaction), but a site attestor keeps state of its own beside it (challenges, record
//! budgets, the site CA's rotation), so only one may serve a site's log. The lock is held for
//! as long as the value lives and the kernel drops it when the process ends, however it ends:
//! a crashed attestor leaves the file behind but never a held lock. Tools that only read (or
//! write one record beside a running attestor, as `garrison node reset` does) never take it.
//! PostgreSQL logs are not locked: several hub processes may share one database.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use crate::{Backend, LogError};

/// The exclusive lock on an SQLite log's lock file, held until dropped.
#[derive(Debug)]
pub struct ServingLock {
    /// The lock lives as long as this open file.
    _file: File,
    path: PathBuf,
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
        Ok(Some(ServingLock { _file: file, path }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
