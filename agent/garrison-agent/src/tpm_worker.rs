//! A blocking thread that owns the TPM for one enrollment or renewal attempt.
//!
//! TPM commands block (and a template EK can take seconds to create), so they run off the
//! async runtime. One thread keeps the TPM open with the EK and AK loaded across the
//! attestor round trip, so the keys are loaded once per attempt. Dropping the worker closes
//! its job queue; the thread then flushes the keys and closes the TPM.
//!
//! The worker also adds up the wall time spent in the TPM (opening it and loading the keys
//! in [`TpmWorker::start`], then each job passed to [`TpmWorker::run`]), so an exchange can
//! report how much of its time was the TPM's. Flushing the keys and closing the TPM after
//! the worker is dropped are not counted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use garrison_tpm::{EkSource, Tpm, TpmConfig};
use tokio::sync::oneshot;

use crate::AgentError;
use crate::evidence::{self, MissingAk, TpmKeys};

type Job = Box<dyn FnOnce(&mut Tpm, &TpmKeys) + Send>;

/// How to reach the TPM and which keys to load.
#[derive(Debug, Clone)]
pub struct TpmSettings {
    /// TCTI configuration string.
    pub tcti: String,
    /// Where the EK comes from.
    pub ek: EkSource,
    /// The AK blob in the state directory.
    pub ak_blob: PathBuf,
    /// What to do without an AK blob.
    pub missing_ak: MissingAk,
}

/// The handle on a running TPM thread.
#[derive(Debug)]
pub struct TpmWorker {
    jobs: mpsc::Sender<Job>,
    tpm_time: TpmTime,
}

/// Wall time spent in the TPM, in nanoseconds, shared with the TPM thread.
///
/// Each addition happens on the TPM thread before the result it belongs to is sent back
/// over a oneshot channel, which orders it before the receiver's next read.
#[derive(Debug, Clone, Default)]
struct TpmTime(Arc<AtomicU64>);

impl TpmTime {
    fn add(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                Some(total.saturating_add(nanos))
            });
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl TpmWorker {
    /// Opens the TPM and loads the keys on a blocking thread; returns once they are loaded.
    pub async fn start(settings: TpmSettings) -> Result<Self, AgentError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, loaded) = oneshot::channel();
        let tpm_time = TpmTime::default();
        let counted = tpm_time.clone();
        tokio::task::spawn_blocking(move || serve(&settings, &queue, ready, &counted));
        loaded.await.map_err(|_| AgentError::TpmWorkerStopped)??;
        Ok(Self { jobs, tpm_time })
    }

    /// Wall time spent in the TPM so far: opening it and loading (or creating) the keys in
    /// [`TpmWorker::start`], plus every job that [`TpmWorker::run`] has finished.
    pub fn tpm_time(&self) -> Duration {
        self.tpm_time.get()
    }

    /// Runs `work` on the TPM thread and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AgentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tpm, &TpmKeys) -> Result<T, AgentError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let tpm_time = self.tpm_time.clone();
        let job: Job = Box::new(move |tpm, keys| {
            let started = Instant::now();
            let result = work(tpm, keys);
            tpm_time.add(started.elapsed());
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| AgentError::TpmWorkerStopped)?;
        answered.await.map_err(|_| AgentError::TpmWorkerStopped)?
    }
}

/// The thread body: open, load, report readiness, run jobs until the handle is dropped.
fn serve(
    settings: &TpmSettings,
    queue: &mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<(), AgentError>>,
    tpm_time: &TpmTime,
) {
    let started = Instant::now();
    let opened = Tpm::open(&TpmConfig {
        tcti: settings.tcti.clone(),
    })
    .map_err(|source| AgentError::OpenTpm { source });
    let mut tpm = match opened {
        Ok(tpm) => tpm,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let loaded = evidence::load_keys(
        &mut tpm,
        settings.ek,
        &settings.ak_blob,
        settings.missing_ak,
    );
    tpm_time.add(started.elapsed());
    let keys = match loaded {
        Ok(keys) => keys,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    if ready.send(Ok(())).is_ok() {
        while let Ok(job) = queue.recv() {
            job(&mut tpm, &keys);
        }
    }
    evidence::release_keys(&mut tpm, keys);
}
