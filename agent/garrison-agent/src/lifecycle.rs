//! Enrollment, renewal and the long-running loop, composed from evidence gathering
//! ([`crate::evidence`]), the gRPC client ([`crate::client`]), the files
//! ([`crate::files`]) and the schedule ([`crate::schedule`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use garrison_proto::v1::SvidResponse;
use garrison_spiffe_tls::Identity;
use ring::rand::SystemRandom;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::AgentError;
use crate::client::{Attestor, EnrollmentCalls, RenewalCalls, read_pem_file};
use crate::config::AgentConfig;
use crate::error::Disposition;
use crate::evidence::{self, MissingAk};
use crate::files::{self, SVID_DIR_MODE, SvidPaths};
use crate::node_key::NodeKey;
use crate::ops::AgentMetrics;
use crate::schedule::{Clock, Entropy, SystemClock, SystemEntropy, renewal_time, until};
use crate::tpm_worker::{TpmSettings, TpmWorker};
use crate::trust_bundle;
use crate::workload_api::{Publisher, WorkloadApi, WorkloadIdentity};

/// Longest single sleep while waiting for renewal: the wall clock is re-read after it, so
/// a suspended machine or a clock step does not push renewal past expiry.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long `post_rotate_command` may run before it is killed, unless the configuration
/// says otherwise (`post_rotate_timeout_ms`).
pub const POST_ROTATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A freshly written SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The SPIFFE ID in the certificate.
    pub spiffe_id: String,
    /// notBefore of the leaf.
    pub not_before: SystemTime,
    /// notAfter of the leaf.
    pub not_after: SystemTime,
    /// The attestation-log sequence number of the issuance.
    pub log_sequence: u64,
    /// The files written.
    pub files: SvidPaths,
}

/// The SVID currently on disk.
#[derive(Debug, Clone)]
pub struct CurrentSvid {
    /// `svid.pem` contents.
    pub chain_pem: Vec<u8>,
    /// `svid.key` contents (private; not shown by `Debug` of anything that logs it).
    key_pem: Vec<u8>,
    /// The leaf's SPIFFE ID (empty if it has none).
    pub spiffe_id: String,
    /// notBefore of the leaf.
    pub not_before: SystemTime,
    /// notAfter of the leaf.
    pub not_after: SystemTime,
}

/// Enrolls once (one attempt, no retry) with the system clock and randomness.
pub async fn enroll_once(config: &AgentConfig) -> Result<Enrolled, AgentError> {
    Agent::system(config.clone()).enroll_once().await
}

/// Renews once (one attempt, no retry) with the SVID in `config.svid_dir`.
pub async fn renew_once(config: &AgentConfig) -> Result<Enrolled, AgentError> {
    Agent::system(config.clone()).renew_once().await
}

/// Enrolls, then renews forever, until `shutdown` completes (then returns `Ok`).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    Agent::system(config).run(shutdown).await
}

/// Which exchange an attempt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    Enroll,
    Renew,
}

/// The agent: configuration plus injected clock and jitter source.
pub struct Agent {
    config: AgentConfig,
    clock: Arc<dyn Clock>,
    entropy: Box<dyn Entropy>,
    rng: SystemRandom,
    /// Feeds the Workload API while [`Agent::run`] serves it.
    publisher: Option<Publisher>,
    metrics: Arc<AgentMetrics>,
    /// The registry behind `metrics`, until [`Agent::run`] serves it.
    registry: Option<prometheus_client::registry::Registry>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent with an injected clock and jitter source.
    pub fn new(config: AgentConfig, clock: Box<dyn Clock>, entropy: Box<dyn Entropy>) -> Self {
        let (metrics, registry) = AgentMetrics::register();
        Self {
            config,
            clock: Arc::from(clock),
            entropy,
            rng: SystemRandom::new(),
            publisher: None,
            metrics,
            registry: Some(registry),
        }
    }

    /// An agent on the system clock and OS randomness.
    pub fn system(config: AgentConfig) -> Self {
        Self::new(
            config,
            Box::new(SystemClock),
            Box::new(SystemEntropy::default()),
        )
    }

    /// One full enrollment (Begin, ActivateCredential, quote, Complete), then the files.
    pub async fn enroll_once(&self) -> Result<Enrolled, AgentError> {
        let started = Instant::now();
        let bundle_pem = read_pem_file("trust bundle", &self.config.trust_bundle)?;
        let ek_chain = self.ek_chain()?;
        let channel = self.attestor(&bundle_pem).channel(None)?;
        let mut calls = EnrollmentCalls::new(channel, self.config.rpc_timeout);
        let tpm = TpmWorker::start(self.tpm_settings(MissingAk::Create(self.config.ak_algorithm)))
            .await?;
        let (nv, asserted) = (self.config.ek_certificate_nv, self.config.asserted.clone());
        let begin = tpm
            .run(move |tpm, keys| evidence::begin_request(tpm, keys, nv, ek_chain, &asserted))
            .await?;
        let response = calls.begin(begin).await?;
        let event_log = evidence::event_log(&self.config.event_log)?;
        let key = NodeKey::generate(&self.rng)?;
        let csr = key.csr_der()?;
        let complete = tpm
            .run(move |tpm, keys| evidence::complete_request(tpm, keys, &response, event_log, csr))
            .await?;
        let tpm_time = tpm.tpm_time();
        drop(tpm);
        let svid = calls.complete(complete).await?;
        let enrolled = self.install(&svid, &key, &bundle_pem)?;
        log_timing(Exchange::Enroll, started.elapsed(), tpm_time);
        self.after_rotation(&enrolled).await;
        Ok(enrolled)
    }

    /// One renewal over mTLS with the current SVID and a fresh quote by the enrolled AK.
    pub async fn renew_once(&self) -> Result<Enrolled, AgentError> {
        let started = Instant::now();
        let current = self.current_svid()?;
        let bundle_pem = read_pem_file("trust bundle", &self.config.trust_bundle)?;
        let identity = Identity::from_pem(&current.chain_pem, &current.key_pem)
            .map_err(|source| AgentError::TlsConfig { source })?;
        let channel = self.attestor(&bundle_pem).channel(Some(identity))?;
        let mut calls = RenewalCalls::new(channel, self.config.rpc_timeout);
        let tpm = TpmWorker::start(self.tpm_settings(MissingAk::Refuse)).await?;
        let challenge = calls.begin().await?;
        let event_log = evidence::event_log(&self.config.event_log)?;
        let key = NodeKey::generate(&self.rng)?;
        let csr = key.csr_der()?;
        let request = tpm
            .run(move |tpm, keys| {
                evidence::renewal_request(tpm, &keys.ak, &challenge, event_log, csr)
            })
            .await?;
        let tpm_time = tpm.tpm_time();
        drop(tpm);
        let svid = calls.complete(request).await?;
        let renewed = self.install(&svid, &key, &bundle_pem)?;
        log_timing(Exchange::Renew, started.elapsed(), tpm_time);
        self.after_rotation(&renewed).await;
        if renewed.spiffe_id != current.spiffe_id {
            tracing::warn!(old = %current.spiffe_id, new = %renewed.spiffe_id, "renewal changed the SPIFFE ID");
        }
        Ok(renewed)
    }

    /// Enrolls with retries: at most `attempts` (refusals stop at once), or forever if
    /// `None` (refusals are retried with backoff too).
    pub async fn enroll_with_retry(
        &mut self,
        attempts: Option<u32>,
    ) -> Result<Enrolled, AgentError> {
        self.retry(Exchange::Enroll, attempts).await
    }

    /// Enrolls if there is no valid SVID, then renews around half-life, forever, until
    /// `shutdown` completes. Returns an error only for failures retrying cannot fix.
    ///
    /// With `[workload_api]` configured, the socket is bound first (a failure stops the
    /// agent before it enrolls) and served until the loop ends.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let readiness = self.readiness();
        let probes = match &self.config.ops_listen {
            Some(address) => {
                let listener = garrison_ops::probes::bind(address).await?;
                let registry = self.registry.take().unwrap_or_default();
                let (metrics, clock) = (Arc::clone(&self.metrics), Arc::clone(&self.clock));
                let refresh: garrison_ops::probes::Refresh =
                    Arc::new(move || metrics.refresh(clock.now()));
                let probes = Arc::new(garrison_ops::Probes::new(
                    readiness.clone(),
                    registry,
                    Some(refresh),
                ));
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                tracing::info!(%address, "serving /livez, /readyz and /metrics");
                let task = tokio::spawn(probes.serve(listener, async move {
                    let _ = stopped.await;
                }));
                Some((stop, task))
            }
            None => None,
        };
        let server = match &self.config.workload_api {
            Some(api) => {
                let trust_domain_id =
                    format!("spiffe://{}", self.config.attestor_spiffe_id.trust_domain());
                let (server, publisher) =
                    WorkloadApi::bind(api, trust_domain_id, Arc::clone(&self.clock))?;
                let server = server
                    .with_metrics(Arc::clone(&self.metrics))
                    .with_health(readiness);
                self.publisher = Some(publisher);
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(server.serve(async move {
                    let _ = stopped.await;
                }));
                Some((stop, task))
            }
            None => None,
        };
        if let Ok(current) = self.current_svid() {
            self.publish(&SvidPaths::in_dir(&self.config.svid_dir));
            log_schedule("current SVID", &current.spiffe_id, current.not_after, None);
        }
        let result = self.run_loop(shutdown).await;
        // Dropping the publisher ends the open streams; then the server stops.
        self.publisher = None;
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            match task.await {
                Ok(Err(error)) => {
                    tracing::error!(error = %error_chain(&error), "Workload API server")
                }
                Err(error) => tracing::error!(%error, "Workload API server task"),
                Ok(Ok(())) => {}
            }
        }
        if let Some((stop, task)) = probes {
            let _ = stop.send(());
            if let Ok(Err(error)) = task.await {
                tracing::error!(%error, "probes listener");
            }
        }
        result
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// Ready: an SVID that has not expired is on disk.
    pub fn readiness(&self) -> garrison_ops::Readiness {
        let dir = self.config.svid_dir.clone();
        let clock = Arc::clone(&self.clock);
        garrison_ops::Readiness::new().check_now("svid", move || {
            let current = read_current(&SvidPaths::in_dir(&dir), &dir)
                .map_err(|error| error_chain(&error))?;
            if clock.now() >= current.not_after {
                return Err(format!(
                    "the SVID expired at {}; the agent is renewing",
                    rfc3339(current.not_after)
                ));
            }
            Ok(())
        })
    }

    async fn run_loop(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                cycle = self.cycle() => cycle?,
            }
        }
    }

    /// After new SVID files are written: hand them to the Workload API's open streams, then
    /// run `post_rotate_command`.
    async fn after_rotation(&self, written: &Enrolled) {
        self.publish(&written.files);
        if let Some(argv) = &self.config.post_rotate_command {
            run_post_rotate_command(argv, written, self.config.post_rotate_timeout).await;
        }
    }

    fn publish(&self, paths: &SvidPaths) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        match WorkloadIdentity::from_files(paths) {
            Ok(identity) => {
                publisher.send_replace(Some(Arc::new(identity)));
            }
            Err(error) => tracing::error!(
                error = %error_chain(&error),
                "cannot read back the SVID just written; the Workload API keeps serving the previous one"
            ),
        }
    }

    /// The SVID in `svid_dir`, if present, parseable and not expired.
    pub fn current_svid(&self) -> Result<CurrentSvid, AgentError> {
        let paths = SvidPaths::in_dir(&self.config.svid_dir);
        let current = read_current(&paths, &self.config.svid_dir)?;
        if self.clock.now() >= current.not_after {
            return Err(AgentError::NoCurrentSvid {
                dir: self.config.svid_dir.clone(),
                problem: "the SVID has expired",
            });
        }
        Ok(current)
    }

    /// One step of the loop: enroll if needed, else wait for renewal time and renew
    /// (falling back to enrollment when the attestor will not renew this SVID).
    async fn cycle(&mut self) -> Result<(), AgentError> {
        let renew_at = match self.current_svid() {
            Ok(current) => {
                let at = renewal_time(current.not_before, current.not_after, self.entropy.as_mut());
                log_schedule(
                    "next renewal",
                    &current.spiffe_id,
                    current.not_after,
                    Some(at),
                );
                self.metrics.schedule(Some(current.not_after), Some(at));
                at
            }
            Err(error) => {
                tracing::info!(reason = %error, "enrolling");
                let enrolled = self.retry(Exchange::Enroll, None).await?;
                log_enrolled("enrolled", &enrolled);
                return Ok(());
            }
        };
        self.sleep_until(renew_at).await;
        match self.retry(Exchange::Renew, None).await {
            Ok(renewed) => log_enrolled("renewed", &renewed),
            Err(error) if error.disposition() == Disposition::Reenroll => {
                tracing::warn!(
                    reason = error.reason_code().unwrap_or("none"),
                    error = %error,
                    "renewal impossible with the current SVID; enrolling from scratch"
                );
                let enrolled = self.retry(Exchange::Enroll, None).await?;
                log_enrolled("re-enrolled", &enrolled);
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Runs `exchange` until it succeeds, fails for good, or runs out of `attempts`.
    async fn retry(
        &mut self,
        exchange: Exchange,
        attempts: Option<u32>,
    ) -> Result<Enrolled, AgentError> {
        let mut failures: u32 = 0;
        let name = match exchange {
            Exchange::Enroll => "enroll",
            Exchange::Renew => "renew",
        };
        loop {
            let started = Instant::now();
            let result = match exchange {
                Exchange::Enroll => self.enroll_once().await,
                Exchange::Renew => self.renew_once().await,
            };
            let error = match result {
                Ok(done) => {
                    self.metrics.exchange(name, "ok", Some(started.elapsed()));
                    self.metrics.schedule(Some(done.not_after), None);
                    return Ok(done);
                }
                Err(error) => error,
            };
            let outcome = if error.reason_code().is_some() {
                "refused"
            } else {
                "failed"
            };
            self.metrics.exchange(name, outcome, None);
            failures = failures.saturating_add(1);
            let disposition = match (exchange, error.disposition()) {
                (Exchange::Enroll, Disposition::Reenroll) => Disposition::Refused,
                (_, disposition) => disposition,
            };
            log_failure(exchange, &error, disposition, failures);
            let not_before = match disposition {
                Disposition::Fatal | Disposition::Reenroll => return Err(error),
                Disposition::Refused if attempts.is_some() => return Err(error),
                Disposition::Refused => None,
                Disposition::Retry { not_before } => not_before,
            };
            if attempts.is_some_and(|max| failures >= max) {
                return Err(AgentError::RetriesExhausted {
                    attempts: failures,
                    last: Box::new(error),
                });
            }
            let delay = self.delay(failures - 1, not_before);
            tracing::info!(delay_ms = delay.as_millis(), "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Backoff after the `failure`-th (0-based) failure, at least the server's hint.
    fn delay(&mut self, failure: u32, hint: Option<Duration>) -> Duration {
        let backoff = self.config.backoff;
        let delay = backoff.delay(failure, self.entropy.as_mut());
        match hint {
            Some(hint) => backoff.after_hint(hint, self.entropy.as_mut()).max(delay),
            None => delay,
        }
    }

    /// Sleeps until the wall clock reaches `at`, in steps of at most [`MAX_SLEEP`].
    async fn sleep_until(&self, at: SystemTime) {
        loop {
            let left = until(self.clock.now(), at);
            if left.is_zero() {
                return;
            }
            tracing::debug!(seconds = left.as_secs(), "waiting for renewal time");
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
    }

    /// Checks the attestor's answer and writes the SVID files.
    fn install(
        &self,
        svid: &SvidResponse,
        key: &NodeKey,
        bundle_pem: &[u8],
    ) -> Result<Enrolled, AgentError> {
        // The anchors the workloads will get: the bootstrap ones and what they vouch for (a
        // new root during a root rotation); the SVID must chain to one of them.
        let roots = self.trust_bundle_to_write(svid, bundle_pem)?;
        let leaf = check_svid(
            svid,
            key,
            roots.as_bytes(),
            &self.config.trust_bundle,
            self.clock.now(),
        )?;
        files::ensure_dir(&self.config.svid_dir, SVID_DIR_MODE)?;
        let paths = SvidPaths::in_dir(&self.config.svid_dir);
        let chain = files::certificates_to_pem(&svid.certificate_chain);
        files::write_svid(&paths, &chain, &key.pkcs8_pem(), &roots)?;
        if svid.expires_at_unix != unix_seconds(leaf.not_after) {
            tracing::warn!(
                announced = svid.expires_at_unix,
                certificate = unix_seconds(leaf.not_after),
                "expires_at_unix differs from the certificate's notAfter; using the certificate"
            );
        }
        Ok(Enrolled {
            spiffe_id: leaf.spiffe_id,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            log_sequence: svid.log_sequence,
            files: paths,
        })
    }

    /// `bundle.pem`: the bootstrap anchors, plus what they vouch for from the attestor's
    /// bundle (see [`trust_bundle`]); the rest is logged and left out.
    fn trust_bundle_to_write(
        &self,
        svid: &SvidResponse,
        bundle_pem: &[u8],
    ) -> Result<String, AgentError> {
        let bootstrap = files::certificates_from_pem(bundle_pem).map_err(|source| {
            AgentError::DecodePemFile {
                what: "trust bundle",
                path: self.config.trust_bundle.clone(),
                source: Some(source),
            }
        })?;
        let merged = trust_bundle::merge(&bootstrap, &svid.trust_bundle, self.clock.now());
        for ignored in &merged.ignored {
            tracing::warn!(
                subject = %ignored.subject,
                reason = %ignored.reason,
                "ignoring a certificate of the attestor's trust bundle: only the bootstrap \
                 anchors and what they issued are written"
            );
        }
        Ok(files::certificates_to_pem(&merged.anchors))
    }

    fn attestor<'a>(&'a self, bundle_pem: &'a [u8]) -> Attestor<'a> {
        Attestor {
            address: &self.config.attestor,
            spiffe_id: &self.config.attestor_spiffe_id,
            bundle_pem,
            timeout: self.config.rpc_timeout,
        }
    }

    fn tpm_settings(&self, missing_ak: MissingAk) -> TpmSettings {
        TpmSettings {
            tcti: self.config.tcti.clone(),
            ek: self.config.ek,
            ak_blob: self.config.ak_blob_path(),
            missing_ak,
        }
    }

    /// The EK intermediates from the configured PEM files, DER, in order.
    fn ek_chain(&self) -> Result<Vec<Vec<u8>>, AgentError> {
        let mut chain = Vec::new();
        for path in &self.config.ek_chain {
            chain.extend(pem_certificates("EK chain file", path)?);
        }
        Ok(chain)
    }
}

/// What the checks learned about the issued leaf.
#[derive(Debug)]
struct LeafFacts {
    spiffe_id: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// The issued chain must certify our key, chain to the bootstrap bundle for client
/// authentication at `now`, and carry the SPIFFE ID the attestor announced.
fn check_svid(
    svid: &SvidResponse,
    key: &NodeKey,
    bundle_pem: &[u8],
    bundle_path: &Path,
    now: SystemTime,
) -> Result<LeafFacts, AgentError> {
    let (leaf_der, intermediates) =
        svid.certificate_chain
            .split_first()
            .ok_or(AgentError::MissingField {
                message: "SvidResponse",
                field: "certificate_chain",
            })?;
    let facts = leaf_facts(leaf_der)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|_| AgentError::ParseCertificate)?;
    if leaf.public_key().raw != key.public_key_der().as_slice() {
        return Err(AgentError::SvidKeyMismatch);
    }
    verify_chain(leaf_der, intermediates, bundle_pem, bundle_path, now)?;
    if facts.spiffe_id.is_empty() || facts.spiffe_id != svid.spiffe_id {
        return Err(AgentError::SvidSpiffeId {
            expected: svid.spiffe_id.clone(),
            got: facts.spiffe_id,
        });
    }
    Ok(facts)
}

fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    bundle_pem: &[u8],
    bundle_path: &Path,
    now: SystemTime,
) -> Result<(), AgentError> {
    let roots =
        files::certificates_from_pem(bundle_pem).map_err(|source| AgentError::DecodePemFile {
            what: "trust bundle",
            path: bundle_path.to_path_buf(),
            source: Some(source),
        })?;
    let roots: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let anchors = roots
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| AgentError::SvidChain { source })?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let leaf = CertificateDer::from(leaf);
    let cert = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|source| AgentError::SvidChain { source })?;
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|source| AgentError::SvidChain { source })
}

/// notAfter of a DER certificate.
pub(crate) fn not_after_of(der: &[u8]) -> Result<SystemTime, AgentError> {
    Ok(leaf_facts(der)?.not_after)
}

/// SPIFFE ID (empty if none) and validity of a DER certificate.
fn leaf_facts(der: &[u8]) -> Result<LeafFacts, AgentError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| AgentError::ParseCertificate)?;
    let validity = cert.validity();
    let spiffe_id = garrison_spiffe_tls::spiffe_id_of(der)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    Ok(LeafFacts {
        spiffe_id,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

/// Reads `svid.pem` and `svid.key` and the leaf's validity.
fn read_current(paths: &SvidPaths, dir: &Path) -> Result<CurrentSvid, AgentError> {
    let read = |path: &Path| match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(AgentError::NoCurrentSvid {
                dir: dir.to_path_buf(),
                problem: "no svid.pem or svid.key",
            })
        }
        Err(source) => Err(AgentError::ReadSvid {
            path: path.to_path_buf(),
            source,
        }),
    };
    let chain_pem = read(&paths.svid)?;
    let key_pem = read(&paths.key)?;
    let unusable = || AgentError::NoCurrentSvid {
        dir: dir.to_path_buf(),
        problem: "svid.pem holds no parseable certificate",
    };
    let chain = files::certificates_from_pem(&chain_pem).map_err(|_| unusable())?;
    let facts = leaf_facts(chain.first().ok_or_else(unusable)?).map_err(|_| unusable())?;
    Ok(CurrentSvid {
        chain_pem,
        key_pem,
        spiffe_id: facts.spiffe_id,
        not_before: facts.not_before,
        not_after: facts.not_after,
    })
}

fn pem_certificates(what: &'static str, path: &Path) -> Result<Vec<Vec<u8>>, AgentError> {
    let text = read_pem_file(what, path)?;
    let decode_error = |source| AgentError::DecodePemFile {
        what,
        path: path.to_path_buf(),
        source,
    };
    let certs = files::certificates_from_pem(&text).map_err(|e| decode_error(Some(e)))?;
    if certs.is_empty() {
        return Err(decode_error(None));
    }
    Ok(certs)
}

fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn log_enrolled(what: &str, enrolled: &Enrolled) {
    tracing::info!(
        spiffe_id = %enrolled.spiffe_id,
        expires = %rfc3339(enrolled.not_after),
        log_sequence = enrolled.log_sequence,
        svid = %enrolled.files.svid.display(),
        "{what}"
    );
}

/// One INFO line with the SVID's expiry and, when known, the next renewal time.
fn log_schedule(what: &str, spiffe_id: &str, not_after: SystemTime, renew_at: Option<SystemTime>) {
    match renew_at {
        Some(at) => tracing::info!(
            spiffe_id,
            expires = %rfc3339(not_after),
            renew_at = %rfc3339(at),
            "{what}"
        ),
        None => tracing::info!(spiffe_id, expires = %rfc3339(not_after), "{what}"),
    }
}

/// RFC 3339 UTC, to the second.
pub fn rfc3339(at: SystemTime) -> String {
    let seconds = i64::try_from(unix_seconds(at)).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{seconds}"))
}

/// Runs `argv` after a rotation, with the new files in its environment; its failure is
/// logged, never fatal (the SVID is already written and served).
async fn run_post_rotate_command(argv: &[String], written: &Enrolled, limit: Duration) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("GARRISON_SPIFFE_ID", &written.spiffe_id)
        .env("GARRISON_SVID", &written.files.svid)
        .env("GARRISON_SVID_KEY", &written.files.key)
        .env("GARRISON_BUNDLE", &written.files.bundle)
        .env(
            "GARRISON_SVID_EXPIRES",
            unix_seconds(written.not_after).to_string(),
        )
        .stdin(std::process::Stdio::null())
        // Its own process group, so that what it starts can be killed with it.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(program, %error, "post_rotate_command could not start");
            return;
        }
    };
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(program, "post_rotate_command succeeded");
        }
        Ok(Ok(status)) => tracing::warn!(program, %status, "post_rotate_command failed"),
        Ok(Err(error)) => tracing::warn!(program, %error, "post_rotate_command: waiting failed"),
        Err(_) => {
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            tracing::warn!(
                program,
                limit_ms = limit.as_millis(),
                "post_rotate_command ran too long and was killed, with its process group"
            );
        }
    }
}

/// One line per successful exchange: its wall time, the part spent in the TPM (opening it,
/// loading the keys, the commands), and the rest (files, key generation, TLS, the round
/// trips to the attestor and the attestor's own work).
fn log_timing(exchange: Exchange, total: Duration, tpm: Duration) {
    let other = total.saturating_sub(tpm);
    tracing::info!(
        ?exchange,
        total_ms = millis(total),
        tpm_ms = millis(tpm),
        other_ms = millis(other),
        "exchange timing"
    );
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn log_failure(exchange: Exchange, error: &AgentError, disposition: Disposition, failures: u32) {
    let reason = error.reason_code().unwrap_or("none");
    let chain = error_chain(error);
    match disposition {
        Disposition::Refused => {
            tracing::error!(?exchange, reason, failures, error = %chain, "attestor refused")
        }
        Disposition::Fatal => {
            tracing::error!(?exchange, failures, error = %chain, "cannot continue")
        }
        Disposition::Reenroll => tracing::warn!(?exchange, reason, error = %chain, "cannot renew"),
        Disposition::Retry { .. } => {
            tracing::warn!(?exchange, reason, failures, error = %chain, "attempt failed")
        }
    }
}

/// `error: source: source...` on one line (the one rule every Garrison daemon logs with).
pub use garrison_ops::error_chain;
