//! WAL checkpoints in the background (SQLite only).
//!
//! In WAL mode every commit appends pages to the `-wal` file; a checkpoint copies them back
//! into the database file (and syncs it) so that the WAL can start over. By default SQLite
//! runs the checkpoint inside the commit that crosses `wal_autocheckpoint` pages, on the
//! writer's own connection: that commit, and every append queued behind it, waits for the
//! whole copy. Under load this was the attestor's largest latency stall (figures in
//! `docs/performance.md`, "The latency tail").
//!
//! So the log checkpoints from a connection of its own, off the writer's path. The writer
//! wakes this task after each commit; at most once per [`CHECKPOINT_INTERVAL`] (50 ms) it runs
//! `PRAGMA wal_checkpoint(PASSIVE)`, which copies what is committed without waiting for, or
//! blocking, the writer or any reader.
//!
//! Passive checkpoints alone leave the WAL to grow under steady load: SQLite starts the WAL
//! over only if, when the writer begins its next transaction, a checkpoint has copied every
//! frame, and with a commit every few milliseconds the writer has nearly always added frames
//! while the checkpoint ran. So once the WAL is longer than [`RESTART_FRAMES`], the task
//! takes the [`Link::gate`] that the writer holds around each batch, copies the few frames
//! committed since its last pass, and lets go: the writer waits that long between two
//! batches (far shorter than SQLite's own checkpoint would have held it) and its next
//! transaction starts the WAL over.
//!
//! The writer keeps SQLite's own checkpoint as a backstop (`wal_autocheckpoint`, see
//! `SQLITE_SETTINGS`): should this task fall behind, or fail, the WAL is still bounded, at the
//! old cost.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row as _};
use tokio::sync::{Mutex, Notify, oneshot};
use tokio::time::Instant;

use crate::writer::Counters;

/// At most one checkpoint pass per interval. Short, so that each pass has little to copy
/// and its sync of the database file is quick: the writer's commits sync the WAL on the same
/// disk, and on the dev VM passes of 200 ms' worth of WAL (≈ 5 MiB at 1,000 appends/s)
/// sometimes held a commit's sync up for ≈ 100 ms. At 50 ms the p99 at 500 + 500
/// operations/s was under 20 ms in 6 of 7 runs, against 3 of 7 at 200 ms
/// (`docs/performance.md`). At low rates this is at most 20 syncs of the database file a
/// second, and none while nothing is committed.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// A WAL longer than this after a pass gets a gated checkpoint (4,096 pages: 16 MiB at
/// SQLite's default page size), so that the next transaction starts it over.
pub(crate) const RESTART_FRAMES: i64 = 4_096;

/// What the writer and the checkpointer share.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// Notified after every commit.
    pub committed: Notify,
    /// Held by the writer for each batch, and by the checkpointer for a checkpoint that must
    /// not be overtaken by a commit.
    pub gate: Mutex<()>,
}

/// What one `PRAGMA wal_checkpoint` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// SQLite could not finish because another connection held a lock it needed.
    pub busy: bool,
    /// Frames in the WAL.
    pub frames: i64,
    /// Frames of those copied into the database file.
    pub copied: i64,
}

/// One passive checkpoint on `conn`.
pub(crate) async fn checkpoint(conn: &mut AnyConnection) -> Result<Progress, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Progress {
        busy: row.try_get::<i64, _>(0)? != 0,
        frames: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

/// Runs until `stop` is sent or dropped; then closes its connection.
pub(crate) async fn run(
    mut conn: AnyConnection,
    link: Arc<Link>,
    mut stop: oneshot::Receiver<()>,
    counters: Arc<Counters>,
) {
    let mut last: Option<Instant> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            () = link.committed.notified() => {}
            _ = &mut stop => break,
        }
        if let Some(last) = last {
            tokio::select! {
                () = tokio::time::sleep_until(last + CHECKPOINT_INTERVAL) => {}
                _ = &mut stop => break,
            }
        }
        let pass = counted(&counters, &mut failing, checkpoint(&mut conn).await);
        if pass.is_some_and(|progress| progress.frames >= RESTART_FRAMES) {
            let _no_commit_meanwhile = link.gate.lock().await;
            counted(&counters, &mut failing, checkpoint(&mut conn).await);
        }
        last = Some(Instant::now());
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// Counts `pass`; logs when checkpoints start failing and when they work again (not every
/// failed pass: up to five a second).
fn counted(
    counters: &Counters,
    failing: &mut bool,
    pass: Result<Progress, sqlx::Error>,
) -> Option<Progress> {
    match pass {
        Ok(progress) => {
            counters.count_wal_checkpoint(true);
            if std::mem::take(failing) {
                tracing::info!("background WAL checkpoints work again");
            }
            Some(progress)
        }
        Err(error) => {
            counters.count_wal_checkpoint(false);
            if !std::mem::replace(failing, true) {
                tracing::warn!(%error, "background WAL checkpoints fail (counted in the log's stats; the writer's own checkpoint still bounds the WAL)");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_each_time_and_flagged_until_a_pass_works() {
        let counters = Counters::default();
        let mut failing = false;
        let progress = Progress {
            busy: false,
            frames: 10,
            copied: 10,
        };
        let fail = || Err(sqlx::Error::Protocol("disk I/O error".into()));
        assert_eq!(counted(&counters, &mut failing, fail()), None);
        assert!(failing);
        assert_eq!(counted(&counters, &mut failing, fail()), None);
        assert!(failing, "still failing");
        assert_eq!(
            counted(&counters, &mut failing, Ok(progress)),
            Some(progress)
        );
        assert!(!failing, "a pass that works clears the flag");
        let stats = counters.snapshot();
        assert_eq!(
            (stats.wal_checkpoints, stats.failed_wal_checkpoints),
            (1, 2)
        );
    }
}
