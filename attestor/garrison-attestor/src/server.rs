//! Start-up: load the site CA, the EK roots and the policy bundle, open the log (the checks
//! are `startup.rs`'s, shared with `garrison attestor check-config`), issue the attestor's
//! own server SVID, and serve gRPC over TLS until told to stop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use garrison_ca::{
    Authority, KeyAlgorithm, PrivateKey, SiteRole, SubjectKey, certificates_from_pem,
    certificates_to_pem,
};
use garrison_evidence::{AkPolicy, EkTrust, ManufacturerRoots};
use garrison_log::AttestationLog;
use garrison_policy::{BundleLimits, EvalLimits, PolicyService, PolicyTrust, decode_archive};
use garrison_proto::limits;
use garrison_proto::v1::audit_server::AuditServer;
use garrison_proto::v1::enrollment_server::EnrollmentServer;
use garrison_proto::v1::renewal_server::RenewalServer;
use ring::rand::SystemRandom;
use tonic::transport::Server;

use crate::attestor::{Attestor, AttestorParts, Clock};
use crate::config::SiteConfig;
use crate::policy_update::{Assessment, StartRefusal};
use crate::random::RandomSource;
use crate::service::Services;
use crate::startup::{Mode, StartReport, Started, startup_checks};

/// Why the attestor could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A file the configuration names could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The site CA directory does not hold a usable issuer.
    #[error("site CA in {dir}")]
    Ca {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: garrison_ca::CaError,
    },
    /// The CA directory holds a CA that is not this site's CA.
    #[error("the CA in {dir} is a {role} CA, not the CA of site {site:?}")]
    WrongSiteCa {
        /// The directory.
        dir: PathBuf,
        /// The configured site.
        site: String,
        /// The role the CA states.
        role: String,
    },
    /// The site CA directory's rotation state is unusable, or its CA lives too short for the
    /// configured SVID lifetimes.
    #[error("site CA in {dir}")]
    SiteCa {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: crate::site_ca::SiteCaError,
    },
    /// The EK roots are unusable.
    #[error("EK roots")]
    EkRoots(#[source] garrison_evidence::EvidenceError),
    /// The policy bundle is refused.
    #[error("policy bundle {path}")]
    Policy {
        /// The bundle.
        path: PathBuf,
        /// Why.
        #[source]
        source: garrison_policy::PolicyError,
    },
    /// The attestation log could not be opened or written.
    #[error("attestation log")]
    Log(#[source] garrison_log::LogError),
    /// The attestation log cannot be served: another process serves it, or it cannot be
    /// opened, or not written (checked before anything is appended).
    #[error("attestation log {database}")]
    OpenLog {
        /// The database, without credentials.
        database: String,
        /// Why.
        #[source]
        source: garrison_log::LogError,
    },
    /// The log's record of the newest bundle put in force cannot be read back: without it
    /// no bundle can be checked for rollback, so the attestor does not start.
    #[error("policy rollback floor")]
    PolicyFloor(#[source] crate::policy_update::PolicyFloorError),
    /// The listen address could not be bound.
    #[error("listening on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log key or the first signed checkpoint failed.
    #[error("signed checkpoints")]
    Checkpoint(#[source] crate::checkpoint::CheckpointError),
    /// The attestor's TLS identity or configuration is unusable.
    #[error("attestor TLS: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("gRPC server")]
    Serve(#[source] tonic::transport::Error),
}

/// Load the site CA from an issuer directory (cert.pem, key.pem, chain.pem, bundle.pem).
pub fn load_authority(dir: &Path) -> Result<Authority, StartError> {
    let read = |name: &str| read_text(&dir.join(name));
    let ca_err = |source| StartError::Ca {
        dir: dir.to_owned(),
        source,
    };
    let cert = certificates_from_pem(&read("cert.pem")?).map_err(ca_err)?;
    let cert = cert.into_iter().next().ok_or(StartError::Ca {
        dir: dir.to_owned(),
        source: garrison_ca::CaError::EmptyBundle,
    })?;
    let key = PrivateKey::from_pkcs8_pem(&read("key.pem")?).map_err(ca_err)?;
    let chain = certificates_from_pem(&read("chain.pem")?).map_err(ca_err)?;
    let roots = certificates_from_pem(&read("bundle.pem")?).map_err(ca_err)?;
    Authority::new(cert, key, chain, roots).map_err(ca_err)
}

fn read_text(path: &Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|source| StartError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|source| StartError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The site CA must be this site's: a CA of another site (or a hub or policy CA) cannot make
/// this attestor speak for the configured site, and agents would refuse it anyway.
pub fn check_site_ca(config: &SiteConfig, ca: &Authority) -> Result<(), StartError> {
    let role = ca.role().map_err(|source| StartError::Ca {
        dir: config.ca_dir.clone(),
        source,
    })?;
    if role.and_then(garrison_ca::CaRole::site) == Some(config.site.as_str()) {
        return Ok(());
    }
    Err(StartError::WrongSiteCa {
        dir: config.ca_dir.clone(),
        site: config.site.clone(),
        role: role.map_or_else(|| "root".to_owned(), ToString::to_string),
    })
}

/// The site CA holder for `config`: the generation in force must be this site's CA and live
/// at least 6× `max_svid_ttl` (`garrison_ca::lifecycle`).
pub fn load_site_ca(config: &SiteConfig) -> Result<crate::site_ca::SiteCa, StartError> {
    crate::site_ca::SiteCa::load(&config.ca_dir, &config.site, config.max_svid_ttl)
        .map_err(|e| site_ca_error(config, e))
}

/// [`load_site_ca`] leaving the CA directory untouched ([`crate::site_ca::SiteCa::open`]).
pub fn open_site_ca(config: &SiteConfig) -> Result<crate::site_ca::SiteCa, StartError> {
    crate::site_ca::SiteCa::open(&config.ca_dir, &config.site, config.max_svid_ttl)
        .map_err(|e| site_ca_error(config, e))
}

fn site_ca_error(config: &SiteConfig, e: crate::site_ca::SiteCaError) -> StartError {
    use crate::site_ca::SiteCaError;
    match e {
        SiteCaError::WrongSite { path, site, role } => StartError::WrongSiteCa {
            dir: path,
            site,
            role,
        },
        SiteCaError::Ca { path, source } => StartError::Ca { dir: path, source },
        source => StartError::SiteCa {
            dir: config.ca_dir.clone(),
            source,
        },
    }
}

/// Build the attestor from its configuration, drawing from the system's random generator.
pub async fn build(config: &SiteConfig, clock: Arc<dyn Clock>) -> Result<Attestor, StartError> {
    build_with_random(config, clock, Arc::new(SystemRandom::new())).await
}

/// [`build`] with the attestor's nonces, secrets and challenge ids drawn from `random`.
pub async fn build_with_random(
    config: &SiteConfig,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
) -> Result<Attestor, StartError> {
    let mut report = StartReport::default();
    let started = startup_checks(config, &clock, Mode::Serve, &mut report).await;
    report.log_warnings();
    let Started {
        site_ca,
        ek_trust,
        log,
        policy,
    } = started?;
    Ok(Attestor::new(AttestorParts {
        site: config.site.clone(),
        ca: site_ca,
        ek_trust,
        ak_policy: AkPolicy {
            insecure_allow_sha1_signatures: config.insecure.allow_sha1_ak,
        },
        policy: Arc::new(policy),
        log,
        pcrs: config.pcrs.clone(),
        challenge_ttl: config.challenge_ttl,
        max_svid_ttl: config.max_svid_ttl,
        max_pending_challenges: config.max_pending_challenges,
        clock,
        random,
    }))
}

pub(crate) fn ek_trust(config: &SiteConfig) -> Result<EkTrust, StartError> {
    if !config.insecure.allow_listed_ek_hashes.is_empty() {
        return Ok(EkTrust::InsecureAllowListedEkHashes(
            config
                .insecure
                .allow_listed_ek_hashes
                .iter()
                .cloned()
                .collect(),
        ));
    }
    let files = config
        .ek_roots
        .iter()
        .map(|p| Ok((p.display().to_string(), read_bytes(p)?)))
        .collect::<Result<Vec<_>, StartError>>()?;
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    ManufacturerRoots::from_pem_or_der(&refs)
        .map(EkTrust::ManufacturerRoots)
        .map_err(StartError::EkRoots)
}

/// The bundle file given in the configuration, verified and checked against the rollback
/// floor in the log (see `policy_update.rs`): refused below the floor or at the floor's
/// sequence with another digest, put in force when newer. [`Mode::Serve`] records either
/// outcome; [`Mode::Check`] records nothing.
pub(crate) async fn start_policy(
    config: &SiteConfig,
    ca: &Authority,
    log: &AttestationLog,
    now: time::OffsetDateTime,
    mode: Mode,
) -> Result<PolicyService, StartError> {
    let policy_err = |source| StartError::Policy {
        path: config.policy_bundle.clone(),
        source,
    };
    let limits = BundleLimits::default();
    let archive = newest_bundle(read_bytes(&config.policy_bundle)?, log, &limits).await?;
    let files = decode_archive(&archive, &limits).map_err(policy_err)?;
    let trust = PolicyTrust::from_pem(&certificates_to_pem(ca.roots())).map_err(policy_err)?;
    let build = |floor| {
        PolicyService::new_with_floor(trust, &files, now, EvalLimits::default(), limits, floor)
    };
    let started = match mode {
        Mode::Serve => crate::policy_update::start(log, &config.site, build, archive, now).await,
        Mode::Check => match crate::policy_update::assess(log, build).await {
            Ok(Assessment::Admitted { service, .. }) => Ok(service),
            Ok(Assessment::BelowFloor { err, .. }) => Err(StartRefusal::Bundle(err)),
            Err(refusal) => Err(refusal),
        },
    };
    started.map_err(|refusal| match refusal {
        StartRefusal::Floor(source) => StartError::PolicyFloor(source),
        StartRefusal::Bundle(source) => policy_err(source),
        StartRefusal::Log(source) => StartError::Log(source),
    })
}

/// The configured bundle file, or the newest bundle the hub published to this site (kept in
/// the database by sync) when that one is newer: after a hub's policy was put in force, a
/// restart starts with it rather than refuse the older file as a rollback. Either way the
/// bundle is verified and checked against the rollback floor as always.
async fn newest_bundle(
    file: Vec<u8>,
    log: &AttestationLog,
    limits: &BundleLimits,
) -> Result<Vec<u8>, StartError> {
    let Some((kept, _, bundle)) = log.latest_policy_bundle().await.map_err(StartError::Log)? else {
        return Ok(file);
    };
    let file_sequence = decode_archive(&file, limits)
        .ok()
        .and_then(|files| {
            let manifest = files.get(garrison_policy::MANIFEST_FILE)?;
            garrison_policy::Manifest::parse(manifest).ok()
        })
        .map_or(0, |m| m.sequence);
    if kept > file_sequence {
        tracing::info!(
            kept,
            file_sequence,
            "starting with the newer policy bundle the hub published"
        );
        return Ok(bundle);
    }
    Ok(file)
}

/// The attestor's own TLS identity: an SVID for `spiffe://<td>/site/<site>/attestor` issued
/// from the site CA in force (through the role path, [`Authority::issue_site_role_svid`],
/// which node SVIDs never take), with a key that never leaves memory, re-issued while the
/// attestor runs once half its lifetime has passed or the site CA rotated
/// ([`crate::tls::RotatingServerCert`]); and the CAs whose client certificates the TLS layer
/// accepts: the site CA in force and old ones whose SVIDs may still be current
/// ([`crate::site_ca::SiteCaIssuers`]). Renewal only ever accepts this site's own SVIDs (the
/// serial must be a node's current one in this site's log), so anchoring client verification
/// at the site CAs refuses nothing that could succeed, and verifies one signature per
/// handshake instead of the whole chain to the root (three, for leaf → site → hub → root).
pub fn attestor_identity(
    config: &SiteConfig,
    site_ca: Arc<crate::site_ca::SiteCa>,
    clock: Arc<dyn Clock>,
) -> Result<
    (
        Arc<crate::tls::RotatingServerCert>,
        Arc<dyn crate::tls::ClientIssuers>,
    ),
    StartError,
> {
    check_site_ca(config, &site_ca.active())?;
    let issuers: Arc<dyn crate::tls::ClientIssuers> = Arc::new(crate::site_ca::SiteCaIssuers::new(
        Arc::clone(&site_ca),
        Arc::clone(&clock),
    ));
    let ttl = config.attestor_svid_ttl;
    let rng = SystemRandom::new();
    // Once: a CA that has expired issues nothing new, but an attestor restarted during a long
    // outage must still start (to log, and to sync its way to a new CA). Its first server
    // SVID is then dated at the CA's last minute (no client accepts it); later ones come
    // from the CA in force once there is one.
    let first = std::sync::atomic::AtomicBool::new(true);
    let issue = move |now| {
        let ca = site_ca.active();
        let now = if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            issuing_time(&ca, now)
        } else {
            now
        };
        let mut issued = ca.issue_site_role_svid(
            SiteRole::Attestor,
            ttl,
            SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            now,
            &rng,
        )?;
        // Agents that hold only the old root verify a chain ending at a new root through it.
        issued.chain = site_ca.complete_chain(issued.chain);
        Ok(issued)
    };
    let rotating = crate::tls::RotatingServerCert::new(Box::new(issue), clock)
        .map_err(|e| StartError::Tls(e.to_string()))?
        .following(Arc::clone(&issuers));
    Ok((Arc::new(rotating), issuers))
}

/// `now`, or for a CA that has expired its last minute (see [`attestor_identity`]).
fn issuing_time(ca: &Authority, now: time::OffsetDateTime) -> time::OffsetDateTime {
    if now >= ca.not_after() {
        ca.not_after() - time::Duration::minutes(1)
    } else {
        now
    }
}

/// A client that has not sent its ClientHello 3 s after it was admitted, or not finished
/// its TLS handshake 10 s after, is dropped. Real clients send the ClientHello as soon as
/// their TCP connection is up (3 s leaves room for one retransmission over a slow link), so
/// a client that connects and says nothing holds a connection place for 3 s, not 10.
const TLS_HANDSHAKE_LIMITS: crate::listener::HandshakeLimits = crate::listener::HandshakeLimits {
    first_bytes: std::time::Duration::from_secs(3),
    whole: std::time::Duration::from_secs(10),
};
/// Connections are closed (gracefully: requests in flight finish) after this long. An agent
/// needs well under a second per exchange; a client that connects and then idles holds one of
/// `max_connections` places for at most this long.
const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serve until `shutdown` resolves.
pub async fn serve(
    config: &SiteConfig,
    attestor: Arc<Attestor>,
    identity: Arc<crate::tls::RotatingServerCert>,
    client_issuers: Arc<dyn crate::tls::ClientIssuers>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let audit_identity = Arc::clone(&identity);
    let tls = crate::tls::rotating_server_config(identity, client_issuers, attestor.clock())
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let listener = crate::listener::bind(config.listen).map_err(|source| StartError::Listen {
        address: config.listen,
        source,
    })?;
    let failures = Arc::new(crate::listener::HandshakeFailures::default());
    let incoming = crate::listener::tls(
        crate::listener::bounded(listener, config.max_connections),
        tls,
        TLS_HANDSHAKE_LIMITS,
        Arc::clone(&failures),
    );
    spawn_handshake_failure_report(failures);
    spawn_challenge_purge(Arc::clone(&attestor));
    spawn_unrecorded_refusal_summary(Arc::clone(&attestor));
    spawn_policy_reload_on_sighup(Arc::clone(&attestor), config.policy_bundle.clone());
    spawn_ca_tick(Arc::clone(&attestor));
    // The site CA in force, for the log key's certificate and the Audit service's roots.
    let ca = attestor.site_ca().active();
    let signer = start_checkpoints(config, &ca, &attestor).await?;
    let clock = attestor.clock();
    let periodic = crate::checkpoint::spawn_periodic(
        Arc::clone(&signer),
        Arc::clone(&clock),
        std::time::Duration::from_secs(
            config
                .checkpoint_interval
                .whole_seconds()
                .max(1)
                .unsigned_abs(),
        ),
    );
    let (stopping, stop_audit) = tokio::sync::watch::channel(false);
    let audit = match config.audit_listen {
        Some(address) => Some(spawn_audit(
            &ca,
            address,
            &attestor,
            audit_identity,
            Arc::clone(&signer),
            stop_audit,
        )?),
        None => None,
    };
    let sync = spawn_sync(config, &ca, &attestor, Arc::clone(&signer));
    let readiness = crate::ops::readiness(&attestor);
    let probes = match config.ops_listen {
        Some(address) => Some(
            spawn_probes(
                address,
                &attestor,
                config.hub.is_some(),
                readiness.clone(),
                stopping.subscribe(),
            )
            .await?,
        ),
        None => None,
    };
    let (health, _) = garrison_ops::health::service(
        readiness,
        &["garrison.v1.Enrollment", "garrison.v1.Renewal"],
    )
    .await;
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let services = Services::new(attestor, config.max_in_flight);
    let enrollment = EnrollmentServer::new(services.clone())
        .max_decoding_message_size(limits::MAX_REQUEST_BYTES);
    let renewal = RenewalServer::new(services).max_decoding_message_size(limits::MAX_REQUEST_BYTES);
    tracing::info!(listen = %config.listen, site = %config.site, max_connections = config.max_connections, "attestor serving");
    let served = Server::builder()
        // A connection holds one of `max_connections` places: none may keep it forever.
        .max_connection_age(MAX_CONNECTION_AGE)
        .add_service(enrollment)
        .add_service(renewal)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(StartError::Serve);
    periodic.abort();
    sync.abort();
    if let Some(probes) = probes {
        let _ = probes.await;
    }
    if let Some(audit) = audit {
        let _ = audit.await;
    }
    // The last records get a checkpoint before the process goes.
    if let Err(e) = signer.sign(clock.now()).await {
        tracing::error!(error = %e, "signing the final checkpoint failed");
    }
    served
}

/// Syncs with the hub, if the configuration names one; without one, puts in force policy
/// bundles imported from files. Either way in a task of its own: serving never waits on it.
fn spawn_sync(
    config: &SiteConfig,
    ca: &Authority,
    attestor: &Arc<Attestor>,
    signer: Arc<crate::checkpoint::CheckpointSigner>,
) -> tokio::task::JoinHandle<()> {
    let sync = crate::site_sync::SiteSync::new(
        attestor.log().clone(),
        &config.site,
        ca.trust_domain().as_str(),
        ca.roots().to_vec(),
    )
    .with_signer(signer);
    match &config.hub {
        Some(link) => {
            tracing::info!(hub = %link.address, "syncing with the hub");
            crate::sync_client::spawn(sync, Arc::clone(attestor), link.clone())
        }
        None => crate::sync_client::spawn_policy_pickup(
            sync,
            Arc::clone(attestor),
            std::time::Duration::from_secs(30),
        ),
    }
}

/// Serves `/livez`, `/readyz` and `/metrics` on `address` until `stop` turns true.
async fn spawn_probes(
    address: std::net::SocketAddr,
    attestor: &Arc<Attestor>,
    with_hub: bool,
    readiness: garrison_ops::Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    garrison_ops::probes::warn_if_exposed(address);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })?;
    let (registry, refresh) = crate::ops::registry(attestor, with_hub).await;
    let probes = Arc::new(garrison_ops::Probes::new(
        readiness,
        registry,
        Some(refresh),
    ));
    tracing::info!(listen = %address, "serving /livez, /readyz and /metrics");
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) = probes.serve(listener, stopped).await {
            tracing::error!(%error, "the probes listener failed");
        }
    }))
}

/// Serves the Audit service on `address` until `stop` turns true.
fn spawn_audit(
    ca: &Authority,
    address: std::net::SocketAddr,
    attestor: &Attestor,
    identity: Arc<crate::tls::RotatingServerCert>,
    results: Arc<crate::checkpoint::CheckpointSigner>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let tls = crate::tls::audit_server_config(
        identity,
        &certificates_to_pem(ca.roots()),
        attestor.clock(),
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    let service = crate::audit_service::AuditService::new(
        attestor.log().clone(),
        ca.trust_domain().clone(),
        ca.roots(),
        attestor.clock(),
    )
    .map_err(StartError::Tls)?
    .with_results(results);
    let listener =
        crate::listener::bind(address).map_err(|source| StartError::Listen { address, source })?;
    let incoming = crate::listener::tls(
        crate::listener::bounded(listener, AUDIT_MAX_CONNECTIONS),
        tls,
        TLS_HANDSHAKE_LIMITS,
        Arc::new(crate::listener::HandshakeFailures::default()),
    );
    tracing::info!(listen = %address, "Audit service serving (auditor SVIDs only)");
    Ok(tokio::spawn(async move {
        let served = Server::builder()
            .max_connection_age(MAX_CONNECTION_AGE)
            .add_service(AuditServer::new(service).max_decoding_message_size(64 * 1024))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the Audit service stopped");
        }
    }))
}

/// Auditors are few: a handful of connections at once is plenty.
const AUDIT_MAX_CONNECTIONS: usize = 16;

/// The log key, certified by the site CA, and a first checkpoint.
async fn start_checkpoints(
    config: &SiteConfig,
    ca: &Authority,
    attestor: &Attestor,
) -> Result<Arc<crate::checkpoint::CheckpointSigner>, StartError> {
    let now = attestor.clock().now();
    let rng = SystemRandom::new();
    let signer = crate::checkpoint::CheckpointSigner::start(
        attestor.log().clone(),
        &config.log_key,
        ca,
        // The log key's certificate of a CA that has expired is dated at its last minute
        // (see `issuing_time`): checkpoints are still signed, and verify against it.
        issuing_time(ca, now),
        &rng,
    )
    .await
    .map_err(StartError::Checkpoint)?;
    signer.sign(now).await.map_err(StartError::Checkpoint)?;
    Ok(Arc::new(signer))
}

/// How often the site CA's schedule is looked at (activation when due, budget warnings).
const CA_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Every [`CA_TICK`]: activate a certified successor when due (or at once when the CA in force
/// has expired) and log the offline-budget warnings (`site_ca.rs`).
fn spawn_ca_tick(attestor: Arc<Attestor>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CA_TICK);
        loop {
            tick.tick().await;
            let now = attestor.clock().now();
            attestor.site_ca().tick(attestor.log(), now).await;
        }
    });
}

/// How often TLS handshakes that did not finish are reported (one line, if there were any).
const HANDSHAKE_FAILURE_REPORT: std::time::Duration = std::time::Duration::from_secs(60);

fn spawn_handshake_failure_report(failures: Arc<crate::listener::HandshakeFailures>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HANDSHAKE_FAILURE_REPORT);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            // The listener has stopped: nothing more will be counted.
            let stopped = Arc::strong_count(&failures) == 1;
            if let Some(counts) = failures.take() {
                tracing::info!(
                    failed = counts.failed,
                    sent_nothing = counts.silent,
                    timed_out = counts.timed_out,
                    last = %counts.last,
                    period_s = HANDSHAKE_FAILURE_REPORT.as_secs(),
                    "TLS handshakes that did not finish (run with RUST_LOG=debug to see each one)"
                );
            }
            if stopped {
                return;
            }
        }
    });
}

/// Expired challenges are also dropped when the store fills up; this keeps memory flat
/// between bursts too.
fn spawn_challenge_purge(attestor: Arc<Attestor>) {
    let period = std::time::Duration::from_secs(
        attestor
            .challenge_ttl()
            .whole_seconds()
            .clamp(1, 60)
            .unsigned_abs(),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let outstanding = attestor.purge_expired_challenges();
            tracing::debug!(outstanding, "expired challenges purged");
        }
    });
}

/// How often refusals that were not recorded one by one are summed up in one record.
const UNRECORDED_REFUSAL_SUMMARY: std::time::Duration = std::time::Duration::from_secs(60);

/// Refusals of unproven requests beyond their record budget (`record_budget.rs`) are counted;
/// once a minute, if there were any, one record says how many and from where.
fn spawn_unrecorded_refusal_summary(attestor: Arc<Attestor>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UNRECORDED_REFUSAL_SUMMARY);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            if let Err(e) = attestor.record_unrecorded_refusals().await {
                tracing::error!(error = %e, "could not record the summary of unrecorded refusals");
            }
        }
    });
}

/// `kill -HUP <attestor>` re-reads the policy bundle file and puts it in force if it verifies
/// and is not older than the one in force.
fn spawn_policy_reload_on_sighup(attestor: Arc<Attestor>, bundle: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler: policy reload by signal is off");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let outcome = match std::fs::read(&bundle) {
                Ok(bytes) => attestor.reload_policy(&bytes).await,
                Err(e) => Err(format!("reading {}: {e}", bundle.display())),
            };
            match outcome {
                Ok(text) => tracing::info!("{text}"),
                Err(text) => tracing::error!("{text}"),
            }
        }
    });
}

/// Build and serve: what `garrison attestor serve` runs. The log's serving lock
/// ([`garrison_log::ServingLock`]) is taken before anything else and held until the end: a
/// second attestor on the same SQLite log, or on the same site's log in one PostgreSQL
/// database, is refused before it opens it.
pub async fn run(
    config: SiteConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let _serving = crate::startup::serving_lock(&config, "garrison attestor serve")?;
    // A PostgreSQL log is locked per origin (an advisory lock on a session of its own).
    let _serving_postgres = {
        let ca = open_site_ca(&config)?;
        let origin = garrison_transparency::site_origin(
            ca.state().active.trust_domain().as_str(),
            &config.site,
        );
        garrison_log::ServingLock::acquire_postgres(
            &config.database,
            &origin,
            "garrison attestor serve",
        )
        .await
        .map_err(|source| StartError::OpenLog {
            database: garrison_log::url_for_display(&config.database),
            source,
        })?
    };
    let attestor = build(&config, Arc::clone(&clock)).await?;
    let (identity, client_issuers) =
        attestor_identity(&config, Arc::clone(attestor.site_ca()), clock)?;
    tracing::info!(site = %config.site, "attestor server SVID issued");
    serve(
        &config,
        Arc::new(attestor),
        identity,
        client_issuers,
        shutdown,
    )
    .await
}
