//! A blocking thread that owns the TPM for one enrollment or renewal attempt.
//!
//! TPM commands block (and a template EK can take seconds to create), so they run off the
//! async runtime. One thread keeps the TPM open with the EK and AK loaded across the
//! attestor round trip, so the keys are loaded once per attempt. Dropping the worker closes
//! its job queue; the thread then flushes the keys and closes the TPM.

use std::path::PathBuf;
use std::sync::mpsc;

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
}

impl TpmWorker {
    /// Opens the TPM and loads the keys on a blocking thread; returns once they are loaded.
    pub async fn start(settings: TpmSettings) -> Result<Self, AgentError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, loaded) = oneshot::channel();
        tokio::task::spawn_blocking(move || serve(&settings, &queue, ready));
        loaded.await.map_err(|_| AgentError::TpmWorkerStopped)??;
        Ok(Self { jobs })
    }

    /// Runs `work` on the TPM thread and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AgentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tpm, &TpmKeys) -> Result<T, AgentError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |tpm, keys| {
            let _ = answer.send(work(tpm, keys));
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
) {
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
    let keys = match evidence::load_keys(
        &mut tpm,
        settings.ek,
        &settings.ak_blob,
        settings.missing_ak,
    ) {
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
