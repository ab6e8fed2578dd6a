//! What a serving process relies on before it accepts anything: the serving lock (one process
//! per SQLite log), the proof that appends can be written, and new SQLite files kept private.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{TestDb, at, entry, record};
use garrison_log::{AttestationLog, Backend, LogConfig, LogError, ServingLock};

both_backends!(a_writable_log_passes_the_write_check_and_gains_no_record);

async fn a_writable_log_passes_the_write_check_and_gains_no_record(db: TestDb) {
    let log = db.open(8).await;
    log.append(entry(record("s1", "n1", at(1, 0))))
        .await
        .unwrap();
    log.check_writable().await.unwrap();
    assert_eq!(
        log.tree_size().await.unwrap(),
        1,
        "the check writes nothing"
    );
    log.append(entry(record("s1", "n2", at(1, 1))))
        .await
        .unwrap();
    assert_eq!(log.tree_size().await.unwrap(), 2);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgresql_session_is_refused_at_open() {
    common::run(Backend::Postgres, |db| async move {
        db.open(8).await.close().await;
        // The session every connection of this pool opens is read-only, as on a standby or
        // for a role with default_transaction_read_only.
        let separator = if db.url.contains('?') { '&' } else { '?' };
        let read_only = LogConfig {
            url: format!(
                "{}{separator}options=-c%20default_transaction_read_only%3Don",
                db.url
            ),
            ..db.config(8)
        };
        // Refused at open: the migrator's bookkeeping (CREATE TABLE IF NOT EXISTS) is a
        // write, so a read-only session never gets as far as a writer.
        let err = AttestationLog::open(&read_only).await.unwrap_err();
        assert!(matches!(err, LogError::Migrate { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_handle_fails_the_write_check() {
    common::run(Backend::Sqlite, |db| async move {
        db.open(8).await.close().await;
        let read_only = LogConfig {
            url: format!("{}?mode=ro", db.url),
            ..db.config(8)
        };
        let log = AttestationLog::open(&read_only).await.unwrap();
        let err = log.check_writable().await.unwrap_err();
        assert!(matches!(err, LogError::Unwritable { .. }), "{err:?}");
        let path = db.url.trim_start_matches("sqlite://");
        assert!(err.to_string().contains(path), "names the file: {err}");
        log.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only() {
    common::run(Backend::Sqlite, |db| async move {
        let log = db.open(8).await;
        log.append(entry(record("s1", "n1", at(1, 0))))
            .await
            .unwrap();
        let path = db.url.trim_start_matches("sqlite://").to_owned();
        for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
        log.close().await;
    })
    .await;
}

#[test]
fn the_serving_lock_is_exclusive_names_its_holder_and_is_released_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("log.db");
    let url = format!("sqlite://{}", database.display());
    let first = ServingLock::acquire(&url, "first holder").unwrap().unwrap();
    assert_eq!(first.path(), garrison_log::lock_path(&database));
    assert_eq!(first.path(), dir.path().join("log.db.lock"));

    // A second open file description conflicts, in this process as in another.
    let err = ServingLock::acquire(&url, "second holder").unwrap_err();
    let LogError::Locked {
        database: named,
        lock,
        holder,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(named, &database);
    assert_eq!(lock, first.path());
    assert_eq!(holder, &format!("first holder, pid {}", std::process::id()));
    let text = err.to_string();
    assert!(
        text.contains("log.db") && text.contains("first holder"),
        "{text}"
    );

    drop(first);
    let second = ServingLock::acquire(&url, "second holder")
        .unwrap()
        .unwrap();
    let written = std::fs::read_to_string(second.path()).unwrap();
    assert_eq!(
        written,
        format!("second holder, pid {}\n", std::process::id()),
        "the new holder replaces the old line"
    );
    let mode = std::fs::metadata(second.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn only_sqlite_files_are_locked() {
    assert!(
        ServingLock::acquire("postgres://u:p@localhost/db", "x")
            .unwrap()
            .is_none()
    );
    assert!(
        ServingLock::acquire("sqlite::memory:", "x")
            .unwrap()
            .is_none()
    );
    assert!(
        ServingLock::acquire("sqlite://?mode=memory", "x")
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        ServingLock::acquire("mysql://x/y", "x"),
        Err(LogError::UnsupportedUrl { .. })
    ));
}

#[test]
fn a_lock_file_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/missing-dir/log.db", dir.path().display());
    let err = ServingLock::acquire(&url, "x").unwrap_err();
    assert!(matches!(err, LogError::LockFile { .. }), "{err:?}");
    assert!(err.to_string().contains("missing-dir/log.db.lock"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_a_sites_log_in_postgresql() {
    common::run(Backend::Postgres, |db| async move {
        let origin = "garrison.example.org/site/site-a";
        let first = ServingLock::acquire_postgres(&db.url, origin, "garrison attestor serve")
            .await
            .unwrap()
            .expect("a PostgreSQL log is locked");
        assert!(first.is_postgres());
        // A second holder of the same site's log is refused and told who holds it.
        let err = ServingLock::acquire_postgres(&db.url, origin, "garrison attestor serve")
            .await
            .unwrap_err();
        match &err {
            LogError::LockedPostgres {
                origin: named,
                holder,
                target,
            } => {
                assert_eq!(named, origin);
                assert!(
                    holder.contains(&format!(
                        "garrison attestor serve, pid {}",
                        std::process::id()
                    )),
                    "{holder}"
                );
                assert!(!target.contains('@'), "no credentials in {target}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .contains("another process is serving the log")
        );
        // Another site's log in the same database is not held.
        let other = ServingLock::acquire_postgres(&db.url, "garrison.example.org/site/site-b", "x")
            .await
            .unwrap();
        assert!(other.is_some());
        // Released with its session: the next serving process takes it.
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            match ServingLock::acquire_postgres(&db.url, origin, "garrison attestor serve").await {
                Ok(lock) => {
                    again = lock;
                    break;
                }
                Err(LogError::LockedPostgres { .. }) => {
                    // The server ends the dropped session asynchronously.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(again.is_some(), "the lock came back after its holder went");
        // An SQLite URL has no advisory lock (its lock is the file's).
        assert!(
            ServingLock::acquire_postgres("sqlite:///tmp/x.db", origin, "x")
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}
