//! One test body, two databases: each storage test runs on a fresh SQLite file and on a fresh
//! PostgreSQL database.
//!
//! PostgreSQL comes from `GARRISON_TEST_POSTGRES_URL` (an admin URL; `scripts/test.sh` starts a
//! throwaway cluster with `pg_virtualenv` and sets it). Each test creates its own database
//! there, so tests run in parallel. Without the variable the PostgreSQL half FAILS, unless
//! `GARRISON_SKIP_POSTGRES=1` is set (developer convenience; CI never sets it).

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use garrison_log::{AttestationLog, Backend, Decision, LogConfig, NewEntry, Record, RecordKind};
use sqlx::{Any, AnyConnection, Connection, Transaction};
use time::OffsetDateTime;

/// A database for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn config(&self, max_batch: usize) -> LogConfig {
        LogConfig {
            url: self.url.clone(),
            origin: None,
            max_batch,
            max_connections: 4,
        }
    }

    pub async fn open(&self, max_batch: usize) -> AttestationLog {
        AttestationLog::open(&self.config(max_batch))
            .await
            .expect("open the log")
    }

    /// A separate connection, for looking behind the log's back.
    pub async fn side_connection(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url)
            .await
            .expect("side connection")
    }
}

/// Runs `body` against a fresh database of `backend`.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = match backend {
        Backend::Sqlite => sqlite_db(),
        Backend::Postgres => match postgres_db().await {
            Some(db) => db,
            None => return,
        },
    };
    body(db).await;
}

fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    TestDb {
        backend: Backend::Sqlite,
        url,
        _dir: Some(dir),
    }
}

/// A new database on the test cluster, or `None` when PostgreSQL tests are explicitly skipped.
async fn postgres_db() -> Option<TestDb> {
    let Ok(admin_url) = std::env::var("GARRISON_TEST_POSTGRES_URL") else {
        if std::env::var("GARRISON_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("GARRISON_SKIP_POSTGRES=1: skipping the PostgreSQL half of this test");
            return None;
        }
        panic!(
            "GARRISON_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts a throwaway \
             PostgreSQL cluster for the tests (or set GARRISON_SKIP_POSTGRES=1 to skip PostgreSQL \
             tests on a developer machine; CI never does)"
        );
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "garrison_log_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to GARRISON_TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.expect("close admin connection");
    Some(TestDb {
        backend: Backend::Postgres,
        url: with_database(&admin_url, &name),
        _dir: None,
    })
}

/// `postgres://u:p@h:port/db?x` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let (scheme, rest) = base.split_once("://").expect("URL with ://");
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// Generates `mod name { fn sqlite(); fn postgres(); }` for each `async fn name(TestDb)`.
#[macro_export]
macro_rules! both_backends {
    // Single-threaded runtimes: the only ones on which tokio's clock can be paused.
    (current_thread: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                $crate::common::run(garrison_log::Backend::Sqlite, super::$name).await;
            }
            #[tokio::test]
            async fn postgres() {
                $crate::common::run(garrison_log::Backend::Postgres, super::$name).await;
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::common::run(garrison_log::Backend::Sqlite, super::$name).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::common::run(garrison_log::Backend::Postgres, super::$name).await;
            }
        }
    )*};
}

/// Holds the lock the writer needs for its first statement until the returned transaction is
/// rolled back: SQLite's write lock, PostgreSQL's `logs` row lock.
pub async fn hold_writer_lock(conn: &mut AnyConnection) -> Transaction<'_, Any> {
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("UPDATE logs SET next_sequence = next_sequence")
        .execute(&mut *tx)
        .await
        .expect("lock the log row");
    tx
}

/// Makes every insert of a record with site `poison` fail inside the writer's transaction.
pub async fn install_poison_trigger(db: &TestDb) {
    let mut conn = db.side_connection().await;
    let statements: &[&'static str] = match db.backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER poison BEFORE INSERT ON records WHEN NEW.site = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned record'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.site = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for statement in statements {
        sqlx::query(*statement)
            .execute(&mut conn)
            .await
            .expect("install poison trigger");
    }
}

/// A fixed instant with microsecond precision (what the log stores).
pub fn at(unix_seconds: i64, micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_seconds * 1_000_000 + micros) * 1000)
        .expect("time")
}

/// A minimal allowed enroll record.
pub fn record(site: &str, node: &str, time: OffsetDateTime) -> Record {
    Record {
        time,
        site: site.to_owned(),
        kind: RecordKind::Enroll,
        node_id: Some(node.to_owned()),
        spiffe_id: Some(format!("spiffe://example.org/site/{site}/node/{node}")),
        decision: Decision::Allow,
        reasons: vec![],
        policy_digest: None,
        evidence_digest: None,
        cert_serial: None,
        cert_not_after: None,
    }
}

pub fn entry(record: Record) -> NewEntry {
    NewEntry {
        record,
        evidence: None,
        node_update: None,
    }
}

pub async fn count(conn: &mut AnyConnection, sql: &'static str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(conn)
        .await
        .expect("count")
        .try_get(0)
        .expect("count column")
}

/// A checkpoint note stating `size` and `root` for `origin`, as the log requires of a
/// checkpoint it keeps (its signature line is not checked by the log).
pub fn note_for(origin: &str, size: u64, root: [u8; 32]) -> String {
    let body = tlog_tiles::Checkpoint::new(origin, size, tlog_tiles::Hash(root), "")
        .expect("checkpoint")
        .to_bytes();
    format!(
        "{}\n\u{2014} test AAAA\n",
        String::from_utf8(body).expect("utf-8")
    )
}
