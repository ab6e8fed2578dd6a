//! A running site for end-to-end tests: CAs, signed policy, swtpm nodes, and the attestor
//! serving in this process with a clock the test can move.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use garrison_agent::AgentConfig;
use garrison_attestor::{Clock, RandomSource};
use garrison_log::{AttestationLog, LogConfig, Query, StoredRecord};
use garrison_testbed::{Node, Site, free_local_address};
use time::{Duration, OffsetDateTime};

/// A clock that follows real time plus an offset the test can add to.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: Mutex<Duration>,
}

impl ShiftedClock {
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.offset.lock().unwrap()
    }
}

pub struct NodeSpec {
    pub name: &'static str,
    pub log: &'static [u8],
    pub ek_trusted: bool,
}

pub fn good(name: &'static str) -> NodeSpec {
    NodeSpec {
        name,
        log: garrison_testbed::GOOD_LOG,
        ek_trusted: true,
    }
}

pub struct Running {
    pub tmp: tempfile::TempDir,
    pub site: Site,
    pub nodes: Vec<Node>,
    pub addr: SocketAddr,
    pub clock: Arc<ShiftedClock>,
    pub database: String,
    /// The attestor being served (set once serving).
    pub attestor: Option<Arc<garrison_attestor::Attestor>>,
    /// Where the attestor draws its random bytes (kept across restarts).
    random: Arc<dyn RandomSource>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Timeout of every RPC the tests make by hand.
pub const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl Running {
    /// Start a site with these nodes and an attestor on SQLite (or `database`).
    pub async fn start(specs: &[NodeSpec], extra_config: &str) -> Running {
        Self::start_with_random(
            specs,
            extra_config,
            Arc::new(ring::rand::SystemRandom::new()),
        )
        .await
    }

    /// [`Running::start`] with the attestor drawing nonces, secrets and challenge ids from
    /// `random`.
    pub async fn start_with_random(
        specs: &[NodeSpec],
        extra_config: &str,
        random: Arc<dyn RandomSource>,
    ) -> Running {
        garrison_spiffe_tls::install_ring_provider();
        let tmp = tempfile::tempdir().unwrap();
        let site = Site::create(tmp.path(), OffsetDateTime::now_utc()).unwrap();
        let nodes: Vec<Node> = specs
            .iter()
            .map(|s| Node::start(tmp.path(), s.name, s.log).unwrap())
            .collect();
        let trusted: Vec<&Node> = nodes
            .iter()
            .zip(specs)
            .filter(|(_, s)| s.ek_trusted)
            .map(|(n, _)| n)
            .collect();
        let addr = free_local_address().unwrap();
        let database =
            std::env::var("GARRISON_E2E_DATABASE").unwrap_or_else(|_| "sqlite://log.db".to_owned());
        let config = site
            .write_config(addr, &database, &trusted, extra_config)
            .unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let mut running = Running {
            tmp,
            site,
            nodes,
            addr,
            clock,
            database: config.database.clone(),
            attestor: None,
            random,
            stop: None,
            server: None,
        };
        running.serve(config).await;
        running
    }

    async fn serve(&mut self, config: garrison_attestor::SiteConfig) {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let random = Arc::clone(&self.random);
        let attestor =
            garrison_attestor::server::build_with_random(&config, Arc::clone(&clock), random)
                .await
                .unwrap();
        let (identity, bundle) = garrison_attestor::server::attestor_identity(
            &config,
            Arc::clone(attestor.site_ca()),
            Arc::clone(&clock),
        )
        .unwrap();
        let attestor = Arc::new(attestor);
        self.attestor = Some(Arc::clone(&attestor));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            garrison_attestor::server::serve(&config, attestor, identity, bundle, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        self.stop = Some(tx);
        self.server = Some(server);
        wait_for_port(self.addr).await;
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A gRPC channel to the attestor, checked against the site's bundle and the attestor's
    /// SPIFFE ID, presenting `identity` as client certificate when given.
    pub fn channel(
        &self,
        identity: Option<garrison_spiffe_tls::Identity>,
    ) -> tonic::transport::Channel {
        let bundle = std::fs::read(self.site.bundle_pem()).unwrap();
        let id = garrison_ca::SpiffeId::parse(&self.site.attestor_id()).unwrap();
        let url = self.url();
        let attestor = garrison_agent::client::Attestor {
            address: &url,
            spiffe_id: &id,
            bundle_pem: &bundle,
            timeout: RPC_TIMEOUT,
        };
        attestor.channel(identity).unwrap()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn agent_config(&self, name: &str) -> AgentConfig {
        let path = self
            .node(name)
            .write_agent_config(&self.site, &self.url())
            .unwrap();
        AgentConfig::load(&path).unwrap()
    }

    /// A second handle on the attestation log (what an operator's `garrison log` opens).
    pub async fn log(&self) -> AttestationLog {
        AttestationLog::open(&LogConfig {
            url: self.database.clone(),
            origin: None,
            max_batch: 1,
            max_connections: 2,
        })
        .await
        .unwrap()
    }

    /// Every record about nodes (the attestor's own `policy-update` records left out).
    pub async fn records(&self) -> Vec<StoredRecord> {
        let log = self.log().await;
        let records = log.query(&Query::default()).await.unwrap();
        log.close().await;
        records
            .into_iter()
            .filter(|r| r.record.kind != garrison_log::RecordKind::PolicyUpdate)
            .collect()
    }

    /// Stop the attestor, keeping everything to start it again ([`Running::restart`]): the
    /// site unreachable from its nodes.
    pub async fn pause(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Stop the attestor and start it again on the same configuration and log (what an
    /// operator's restart does), e.g. to pick up a new policy bundle file.
    pub async fn restart(&mut self) {
        self.pause().await;
        let config = garrison_attestor::SiteConfig::load(&self.site.dir.join("site.toml")).unwrap();
        self.serve(config).await;
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

pub async fn wait_for_port(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("attestor did not start listening on {addr}");
}

/// The serial (hex) and SPIFFE ID of the leaf in an svid.pem.
pub fn leaf_of(svid_pem: &Path) -> (String, String, Vec<Vec<u8>>) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let chain: Vec<Vec<u8>> = pem::parse_many(std::fs::read(svid_pem).unwrap())
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
    let id = garrison_spiffe_tls::spiffe_id_of(&chain[0])
        .unwrap()
        .to_string();
    (hex::encode(cert.raw_serial()), id, chain)
}

/// The refusal reason code in an agent error's chain, e.g. "policy-deny".
pub fn reason(err: &garrison_agent::AgentError) -> String {
    err.reason_code()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("<no reason code: {}>", garrison_agent::error_chain(err)))
}
