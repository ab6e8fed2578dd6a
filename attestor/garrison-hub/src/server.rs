//! Start-up and serving: `garrison hub serve`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use garrison_attestor::Clock;
use garrison_attestor::checkpoint::{KeyFileError, load_or_create_ed25519};
use garrison_attestor::listener::{self, HandshakeFailures, HandshakeLimits};
use garrison_attestor::server::load_authority;
use garrison_attestor::tls::RotatingServerCert;
use garrison_ca::{
    Authority, CaRole, HubRole, KeyAlgorithm, SpiffeId, SubjectKey, SvidParams, certificates_to_pem,
};
use garrison_log::{AttestationLog, LogConfig};
use garrison_proto::limits::MAX_SYNC_MESSAGE;
use garrison_proto::v1::sync_server::SyncServer;
use garrison_transparency::{WitnessKey, hub_witness_name};
use ring::rand::SystemRandom;
use tonic::transport::Server;

use crate::sync_service::SyncService;
use crate::{Hub, HubConfig, HubParts};

/// Why the hub could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The CA directory does not hold a usable hub CA.
    #[error("hub CA in {dir}: {problem}")]
    Ca { dir: PathBuf, problem: String },
    /// The hub's database cannot be served: it cannot be opened, or not written.
    #[error("hub database {database}")]
    OpenLog {
        /// The database, without credentials.
        database: String,
        #[source]
        source: garrison_log::LogError,
    },
    /// The witness key could not be loaded, created or certified.
    #[error("witness key {path}: {problem}")]
    Witness { path: PathBuf, problem: String },
    /// The hub's TLS identity or configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("listening on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving")]
    Serve(#[source] tonic::transport::Error),
}

/// The origin of the hub's own log in its database: `garrison.<td>/hub`.
pub fn hub_origin(trust_domain: &str) -> String {
    hub_witness_name(trust_domain)
}

/// Opens the hub's database, loads (or creates) the witness key and has the hub CA certify
/// it. What `serve` and the hub's CLI commands start from.
pub async fn build(config: &HubConfig, clock: Arc<dyn Clock>) -> Result<Hub, StartError> {
    let ca = hub_ca(config)?;
    let trust_domain = ca.trust_domain().as_str().to_owned();
    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: Some(hub_origin(&trust_domain)),
        max_batch: 64,
        max_connections: 8,
    })
    .await
    .map_err(|source| open_log_error(config, source))?;
    let rng = SystemRandom::new();
    let witness_err = |problem: String| StartError::Witness {
        path: config.witness_key.clone(),
        problem,
    };
    let pkcs8 = load_or_create_ed25519(&config.witness_key, &rng).map_err(|e| {
        witness_err(match e {
            KeyFileError::Io(e) => e.to_string(),
            KeyFileError::Generate(e) => e.to_string(),
        })
    })?;
    let witness =
        WitnessKey::from_pkcs8(&trust_domain, &pkcs8).map_err(|e| witness_err(e.to_string()))?;
    let issued = ca
        .issue_hub_role_svid(
            HubRole::Witness,
            // Capped at the hub CA's own expiry.
            time::Duration::days(3650),
            SubjectKey::LogKey(witness.public_key()),
            clock.now(),
            &rng,
        )
        .map_err(|e| witness_err(e.to_string()))?;
    // The roots, and the new roots announced (a root rotation): a site whose CA moved under
    // a new root still has its log key and its calls checked.
    let announced = config.ca_dir.join("cross-signed-roots.pem");
    let mut roots = ca.roots().to_vec();
    match std::fs::read_to_string(&announced) {
        Ok(text) => {
            roots.extend(
                garrison_ca::certificates_from_pem(&text).map_err(|e| StartError::Ca {
                    dir: config.ca_dir.clone(),
                    problem: format!("{}: {e}", announced.display()),
                })?,
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StartError::Ca {
                dir: config.ca_dir.clone(),
                problem: format!("{}: {e}", announced.display()),
            });
        }
    }
    Ok(Hub::new(HubParts {
        log,
        trust_domain,
        roots,
        witness,
        witness_chain_pem: certificates_to_pem(&issued.chain),
        ca: Arc::new(ca),
        max_site_ca_ttl: config.max_site_ca_ttl,
        cross_signed_roots: announced,
        clock,
    }))
}

fn open_log_error(config: &HubConfig, source: garrison_log::LogError) -> StartError {
    StartError::OpenLog {
        database: garrison_log::url_for_display(&config.database),
        source,
    }
}

fn hub_ca(config: &HubConfig) -> Result<Authority, StartError> {
    let ca_err = |problem: String| StartError::Ca {
        dir: config.ca_dir.clone(),
        problem,
    };
    let ca = load_authority(&config.ca_dir).map_err(|e| ca_err(e.to_string()))?;
    match ca.role() {
        Ok(Some(CaRole::Hub)) => Ok(ca),
        Ok(other) => Err(ca_err(format!(
            "it is a {} CA, not a hub CA",
            other.map_or_else(|| "root".to_owned(), ToString::to_string)
        ))),
        Err(e) => Err(ca_err(e.to_string())),
    }
}

/// The hub's server SVID (`spiffe://<td>/hub/sync`), issued from the hub CA and re-issued at
/// half its life.
pub fn hub_identity(
    config: &HubConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<RotatingServerCert>, StartError> {
    let ca = hub_ca(config)?;
    let id = SpiffeId::from_path(ca.trust_domain(), "/hub/sync")
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let ttl = config.server_svid_ttl;
    let rng = SystemRandom::new();
    let issue = move |now| {
        let params = SvidParams {
            spiffe_id: id.clone(),
            ttl,
            max_ttl: ttl,
            subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
        };
        ca.issue_svid(params, now, &rng)
    };
    RotatingServerCert::new(Box::new(issue), clock)
        .map(Arc::new)
        .map_err(|e| StartError::Tls(e.to_string()))
}

const HANDSHAKE_LIMITS: HandshakeLimits = HandshakeLimits {
    first_bytes: std::time::Duration::from_secs(3),
    whole: std::time::Duration::from_secs(10),
};

/// Serves the Sync service until `shutdown` resolves.
pub async fn serve(
    config: &HubConfig,
    hub: Arc<Hub>,
    identity: Arc<RotatingServerCert>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // The roots, and new roots announced (a root rotation): sites under either are admitted.
    let roots = hub.roots().to_vec();
    let tls = garrison_attestor::tls::hub_server_config(
        identity,
        &certificates_to_pem(&roots),
        Arc::clone(&clock),
        config.rejoin_window,
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    // Ready: the database takes a write and the hub CA is valid now (it changes only with a
    // restart, after the renewal ceremony).
    let ca_validity = hub_ca(config)?.validity();
    let readiness = hub_readiness(&hub, ca_validity, Arc::clone(&clock));
    let metrics = Arc::new(crate::metrics::HubMetrics::default());
    let (stop_probes, probes) = match config.ops_listen {
        Some(address) => {
            garrison_ops::probes::warn_if_exposed(address);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Listen { address, source })?;
            let mut registry = prometheus_client::registry::Registry::default();
            metrics.register(&mut registry);
            let (refreshed, refresh_clock) = (Arc::clone(&metrics), Arc::clone(&clock));
            let refresh: garrison_ops::probes::Refresh = Arc::new(move || {
                refreshed.refresh(
                    std::time::SystemTime::from(refresh_clock.now()),
                    Some(std::time::SystemTime::from(ca_validity.not_after)),
                );
            });
            let probes = Arc::new(garrison_ops::Probes::new(
                readiness.clone(),
                registry,
                Some(refresh),
            ));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tracing::info!(listen = %address, "serving /livez, /readyz and /metrics");
            let task = tokio::spawn(async move {
                let stopped = async move {
                    let _ = stopped.await;
                };
                if let Err(error) = probes.serve(listener, stopped).await {
                    tracing::error!(%error, "the probes listener failed");
                }
            });
            (Some(stop), Some(task))
        }
        None => (None, None),
    };
    let (health, _) = garrison_ops::health::service(readiness, &["garrison.v1.Sync"]).await;
    let shed_clock = Arc::clone(&clock);
    let service = SyncService::new(hub, &roots, clock)
        .map_err(StartError::Tls)?
        .with_rejoin_window(config.rejoin_window);
    let bound = listener::bind(config.listen).map_err(|source| StartError::Listen {
        address: config.listen,
        source,
    })?;
    let incoming = listener::tls(
        listener::bounded(bound, config.max_connections),
        tls,
        HANDSHAKE_LIMITS,
        Arc::new(HandshakeFailures::default()),
    );
    tracing::info!(listen = %config.listen, "hub Sync service serving (site attestor SVIDs only)");
    let served = Server::builder()
        // A site pushes one batch at a time; a few streams per connection is plenty.
        .concurrency_limit_per_connection(4)
        // No call holds its place for ever (a push of the largest message over a slow link
        // takes minutes, not more).
        .timeout(std::time::Duration::from_secs(600))
        .add_service(
            crate::shed::ShedPushes::new(
                SyncServer::new(service).max_decoding_message_size(MAX_SYNC_MESSAGE),
                crate::shed::ADMITTED_PUSHES,
            )
            .with_metrics(metrics, shed_clock),
        )
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(StartError::Serve);
    if let Some(stop) = stop_probes {
        let _ = stop.send(());
    }
    if let Some(task) = probes {
        let _ = task.await;
    }
    served
}

/// The hub's readiness checks: `database` (takes a write) and `ca` (the hub CA is valid).
fn hub_readiness(
    hub: &Arc<Hub>,
    ca: garrison_ca::lifecycle::Validity,
    clock: Arc<dyn Clock>,
) -> garrison_ops::Readiness {
    let log = hub.log().clone();
    garrison_ops::Readiness::new()
        .check("database", move || {
            let log = log.clone();
            async move {
                log.check_writable()
                    .await
                    .map_err(|error| garrison_ops::error_chain(&error))
            }
        })
        .check_now("ca", move || {
            let now = clock.now();
            if now < ca.not_before {
                return Err(format!("the hub CA is valid only from {}", ca.not_before));
            }
            if now >= ca.not_after {
                return Err(format!(
                    "the hub CA expired at {}: sites cannot be served",
                    ca.not_after
                ));
            }
            Ok(())
        })
}

/// Build and serve: what `garrison hub serve` runs. Before serving, the database is proved
/// writable and key or database files open to group or others are warned about, as the site
/// attestor does at its start (`garrison_attestor::startup`). Unlike the attestor the hub
/// takes no serving lock: several hub processes may share one database (the hub keeps no
/// state of its own beside it that a second process would contradict).
pub async fn run(
    config: HubConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let hub = Arc::new(build(&config, Arc::clone(&clock)).await?);
    hub.log()
        .check_writable()
        .await
        .map_err(|source| open_log_error(&config, source))?;
    let secrets = [
        ("hub CA key", config.ca_dir.join("key.pem")),
        ("witness key", config.witness_key.clone()),
    ];
    for warning in garrison_attestor::startup::permission_warnings(&secrets, &config.database) {
        tracing::warn!("{warning}");
    }
    let identity = hub_identity(&config, Arc::clone(&clock))?;
    serve(&config, hub, identity, clock, shutdown).await
}
