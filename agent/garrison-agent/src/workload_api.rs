//! The SPIFFE Workload API, served on a Unix socket to the workloads of this node.
//!
//! * **What is served.** The X.509-SVID profile in full: `FetchX509SVID` and
//!   `FetchX509Bundles` are streams that answer at once and again after every rotation (a
//!   new SVID written by enrollment or renewal), each message complete. The agent issues no
//!   JWT-SVIDs (the profile is administratively disabled, as the specification allows):
//!   `FetchJWTBundles` streams the trust domain's JWT bundle as an empty JWK set, so every
//!   JWT-SVID is untrusted; `FetchJWTSVID` answers `PermissionDenied` (no JWT identity for
//!   any caller); `ValidateJWTSVID` answers `InvalidArgument` (the token cannot be trusted).
//!   The optional WIT-SVID profile answers `Unimplemented`, as the specification requires.
//! * **Who may call.** Every call must carry the security header `workload.spiffe.io: true`
//!   (else `InvalidArgument`). The caller is identified by the kernel (`SO_PEERCRED`) and
//!   must have a uid or a primary gid on the allow-list of `[workload_api]`; others get
//!   `PermissionDenied` (logged once per uid/gid pair, so a local caller cannot flood the
//!   journal). The socket itself is mode 0666: the credentials decide, not the file mode.
//! * **When there is nothing to serve** (not enrolled yet, or the SVID has expired and the
//!   agent is still renewing), calls answer `Unavailable` and open streams end with it, so
//!   clients retry with a backoff and stop using the expired SVID.
//!
//! The agent publishes what it wrote to disk through a [`Publisher`]; the server only
//! reads the [`WorkloadIdentity`] it holds, never the files.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use garrison_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use garrison_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse, WitsvidRequest,
    WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::AgentError;
use crate::files::{self, SvidPaths};
use crate::h2_authority::Rewriter;
use crate::ops::AgentMetrics;
use crate::schedule::Clock;

/// The security header every Workload API call must carry, with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// Where the agent serves when the configuration names no socket (inside the agent's
/// systemd `RuntimeDirectory=`).
pub const DEFAULT_ENDPOINT: &str = "unix:///run/garrison-agent/workload.sock";
/// Most streams open at once, over all callers; more are answered `Unavailable` (load
/// shedding in the specification's terms), so a local caller cannot exhaust the agent.
pub const MAX_STREAMS: usize = 1024;
/// Most connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections one uid may hold open: a local user (allowed or not) cannot take the
/// places of the others.
pub const MAX_CONNECTIONS_PER_UID: usize = 32;
/// Most streams one uid may hold open, over all its connections.
pub const MAX_STREAMS_PER_UID: usize = 256;
/// Most concurrent calls on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_CALLS_PER_CONNECTION: u32 = 16;
/// How long open calls may delay the agent's exit once it stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Buffer between a connection's socket and the gRPC server, each way.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest request the server decodes (requests are empty but for `ValidateJWTSVID`).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Mode of the socket: anyone may connect; the peer credentials decide who is served.
const SOCKET_MODE: u32 = 0o666;
/// Mode of a socket directory the agent creates.
const SOCKET_DIR_MODE: u32 = 0o755;
/// Longest wait before an open stream re-reads the clock (expiry is checked on the wall
/// clock, which may jump).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The JWT bundle of a trust domain with no JWT-SVID signing keys.
const EMPTY_JWKS: &[u8] = br#"{"keys":[]}"#;
/// Distinct refused callers remembered for log deduplication.
const MAX_REMEMBERED_REFUSALS: usize = 256;

/// The `[workload_api]` settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadApiConfig {
    /// The socket path, from a `unix:///absolute/path` endpoint address.
    pub socket: PathBuf,
    /// Callers whose uid is listed are served.
    pub allowed_uids: Vec<u32>,
    /// Callers whose primary gid is listed are served.
    pub allowed_gids: Vec<u32>,
}

impl WorkloadApiConfig {
    /// The address workloads put in `SPIFFE_ENDPOINT_SOCKET`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Parses an endpoint address as `SPIFFE_ENDPOINT_SOCKET` writes it: scheme `unix`, no
/// authority, an absolute path, nothing else (`unix:///run/agent.sock` or
/// `unix:/run/agent.sock`). TCP is refused: over TCP the agent could not tell callers apart.
pub fn parse_endpoint(value: &str) -> Result<PathBuf, &'static str> {
    let rest = value
        .strip_prefix("unix:")
        .ok_or("must be a unix:///absolute/path address (the agent serves only Unix sockets)")?;
    let path = match rest.strip_prefix("//") {
        Some(after_authority) => {
            if !after_authority.starts_with('/') {
                return Err("must not name an authority (host): use unix:///absolute/path");
            }
            after_authority
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return Err("the path must be absolute");
    }
    if path.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    if path.contains('%') {
        return Err("percent-encoded paths are not supported");
    }
    if path.ends_with('/') || path.split('/').any(|part| part == "..") {
        return Err("must name a socket file, without `..`");
    }
    Ok(PathBuf::from(path))
}

/// What the agent serves to workloads: its current SVID, key and trust bundle.
#[derive(Clone)]
pub struct WorkloadIdentity {
    /// The SVID's SPIFFE ID.
    pub spiffe_id: String,
    /// `spiffe://<trust domain>`, the key of the bundle maps.
    pub trust_domain_id: String,
    /// The chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key, PKCS#8 DER.
    key_pkcs8: Vec<u8>,
    /// The trust domain's roots, DER.
    pub bundle: Vec<Vec<u8>>,
    /// notAfter of the leaf.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("bundle_len", &self.bundle.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// Builds the identity from what the agent holds: the chain (DER, leaf first), the
    /// leaf key (PKCS#8 DER) and the roots (DER).
    pub fn new(
        chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
        bundle: Vec<Vec<u8>>,
    ) -> Result<Self, AgentError> {
        let leaf = chain.first().ok_or(AgentError::ParseCertificate)?;
        let id =
            garrison_spiffe_tls::spiffe_id_of(leaf).map_err(|_| AgentError::ParseCertificate)?;
        let not_after = crate::lifecycle::not_after_of(leaf)?;
        Ok(Self {
            spiffe_id: id.as_str().to_owned(),
            trust_domain_id: format!("spiffe://{}", id.trust_domain()),
            chain,
            key_pkcs8,
            bundle,
            not_after,
        })
    }

    /// Reads the SVID files the agent wrote (`svid.pem`, `svid.key`, `bundle.pem`).
    pub fn from_files(paths: &SvidPaths) -> Result<Self, AgentError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| AgentError::ReadSvid {
                path: path.to_path_buf(),
                source,
            })
        };
        let certificates = |path: &Path| {
            let text = read(path)?;
            files::certificates_from_pem(&text).map_err(|source| AgentError::DecodePemFile {
                what: "SVID file",
                path: path.to_path_buf(),
                source: Some(source),
            })
        };
        let chain = certificates(&paths.svid)?;
        let bundle = certificates(&paths.bundle)?;
        let key_text = read(&paths.key)?;
        let key = pem::parse(&key_text)
            .ok()
            .filter(|block| block.tag() == "PRIVATE KEY")
            .ok_or_else(|| AgentError::DecodePemFile {
                what: "SVID key (PKCS#8)",
                path: paths.key.clone(),
                source: None,
            })?;
        Self::new(chain, key.into_contents(), bundle)
    }

    fn x509_svid_response(&self) -> X509svidResponse {
        X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: self.spiffe_id.clone(),
                x509_svid: self.chain.concat(),
                x509_svid_key: self.key_pkcs8.clone(),
                bundle: self.bundle.concat(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: Default::default(),
        }
    }

    fn x509_bundles_response(&self) -> X509BundlesResponse {
        X509BundlesResponse {
            crl: Vec::new(),
            bundles: [(self.trust_domain_id.clone(), self.bundle.concat())].into(),
        }
    }
}

/// The agent's side: publishes each SVID it writes to every open stream.
pub type Publisher = watch::Sender<Option<Arc<WorkloadIdentity>>>;

/// A bound Workload API socket, ready to serve.
pub struct WorkloadApi {
    listener: UnixListener,
    socket: PathBuf,
    service: Service,
    health: Option<garrison_ops::Readiness>,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl WorkloadApi {
    /// Binds the socket (creating its directory, replacing a stale socket file, refusing
    /// one another process still serves, refusing anything that is not a socket) and
    /// returns the server with the publisher the agent feeds.
    ///
    /// `trust_domain_id` (`spiffe://<td>`) keys the JWT bundle, served before enrollment.
    pub fn bind(
        config: &WorkloadApiConfig,
        trust_domain_id: String,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Publisher), AgentError> {
        let socket = config.socket.clone();
        prepare_socket_path(&socket)?;
        let listener = UnixListener::bind(&socket).map_err(|source| bind_error(&socket, source))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|source| bind_error(&socket, source))?;
        let (publisher, identity) = watch::channel(None);
        let service = Service {
            identity,
            trust_domain_id,
            allowed_uids: config.allowed_uids.iter().copied().collect(),
            allowed_gids: config.allowed_gids.iter().copied().collect(),
            clock,
            streams: Budget::new(MAX_STREAMS, MAX_STREAMS_PER_UID),
            refused: Arc::new(Mutex::new(HashSet::new())),
            metrics: None,
        };
        Ok((
            Self {
                listener,
                socket,
                service,
                health: None,
            },
            publisher,
        ))
    }

    /// Counts open streams and refusals in the agent's metrics.
    pub fn with_metrics(mut self, metrics: Arc<AgentMetrics>) -> Self {
        self.service.metrics = Some(metrics);
        self
    }

    /// Also serves the gRPC health service (`grpc.health.v1.Health`, no security header
    /// needed) on the socket, `SERVING` while `readiness` passes.
    pub fn with_health(mut self, readiness: garrison_ops::Readiness) -> Self {
        self.health = Some(readiness);
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serves until `shutdown` completes, then removes the socket file. Open streams end
    /// when the [`Publisher`] is dropped.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let Self {
            listener,
            socket,
            service,
            health,
        } = self;
        tracing::info!(
            endpoint = %format!("unix://{}", socket.display()),
            "serving the SPIFFE Workload API (set SPIFFE_ENDPOINT_SOCKET to this address)"
        );
        let (connections, incoming) = mpsc::channel(16);
        let acceptor = tokio::spawn(accept(listener, connections));
        // Health follows readiness (an unexpired SVID): re-evaluated at each new SVID too.
        let health = match health {
            Some(readiness) => {
                let (health, updater) =
                    garrison_ops::health::service(readiness, &["SpiffeWorkloadAPI"]).await;
                let mut identity = service.identity.clone();
                tokio::spawn(async move {
                    while identity.changed().await.is_ok() {
                        updater.update().await;
                    }
                });
                Some(health)
            }
            None => None,
        };
        // Open calls (streams last as long as their clients) may delay the exit by at most
        // SHUTDOWN_GRACE after `shutdown`.
        let (fired, stopping) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = fired.send(());
        };
        let serving = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(MAX_CALLS_PER_CONNECTION))
            .add_service(
                SpiffeWorkloadApiServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_optional_service(health)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown);
        tokio::pin!(serving);
        let result = tokio::select! {
            result = &mut serving => result,
            () = async {
                if stopping.await.is_ok() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::info!("Workload API calls still open at exit were closed");
                Ok(())
            }
        };
        acceptor.abort();
        let _ = std::fs::remove_file(&socket);
        result.map_err(|source| AgentError::WorkloadApiServe {
            path: socket,
            source,
        })
    }
}

/// Who is calling, as the kernel saw it when the caller connected (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's effective uid.
    pub uid: u32,
    /// The caller's effective primary gid.
    pub gid: u32,
    /// The caller's pid, when the kernel gives it.
    pub pid: Option<i32>,
}

/// An accepted connection as the gRPC server sees it: its end of an in-process pipe (the
/// other end is pumped to the socket through [`Rewriter`]) and the caller's credentials.
struct Connection {
    pipe: DuplexStream,
    caller: Caller,
}

impl Connected for Connection {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// Accepts connections, reads each caller's credentials, and hands the server a pipe whose
/// other end is pumped to the socket. Connections beyond [`MAX_CONNECTIONS`], and callers
/// whose credentials cannot be read, are closed at once.
async fn accept(
    listener: UnixListener,
    connections: mpsc::Sender<Result<Connection, std::io::Error>>,
) {
    let open = Budget::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID);
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                tracing::warn!(%error, "Workload API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(credentials) = socket.peer_cred() else {
            tracing::warn!("Workload API: a caller's credentials cannot be read; closed");
            continue;
        };
        let Some(slot) = open.take(credentials.uid(), None) else {
            tracing::debug!(
                uid = credentials.uid(),
                "Workload API: connection closed (the uid's or all connection places are taken)"
            );
            continue;
        };
        let caller = Caller {
            uid: credentials.uid(),
            gid: credentials.gid(),
            pid: credentials.pid(),
        };
        let (server_end, pump_end) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(async move {
            let _slot = slot;
            pump(socket, pump_end).await;
        });
        let connection = Connection {
            pipe: server_end,
            caller,
        };
        if connections.send(Ok(connection)).await.is_err() {
            return;
        }
    }
}

/// Copies the caller's bytes to the server through the authority [`Rewriter`] and the
/// server's bytes back unchanged, until either side closes or the caller's bytes are not
/// acceptable HTTP/2.
async fn pump(socket: UnixStream, pipe: DuplexStream) {
    let (mut from_client, mut to_client) = socket.into_split();
    let (mut from_server, mut to_server) = tokio::io::split(pipe);
    let upstream = async move {
        let mut rewriter = Rewriter::new();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        loop {
            let read = from_client.read(&mut buffer).await?;
            if read == 0 {
                return to_server.shutdown().await;
            }
            out.clear();
            rewriter
                .push(buffer.get(..read).unwrap_or_default(), &mut out)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
            to_server.write_all(&out).await?;
        }
    };
    let downstream = async move {
        tokio::io::copy(&mut from_server, &mut to_client).await?;
        to_client.shutdown().await
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        result = &mut upstream => match result {
            Ok(()) => {
                let _ = downstream.await;
            }
            Err(error) => tracing::debug!(%error, "Workload API: connection closed"),
        },
        _ = &mut downstream => {}
    }
}

/// Creates the socket's directory if missing; removes a stale socket; refuses a live one
/// or a path that is not a socket.
fn prepare_socket_path(socket: &Path) -> Result<(), AgentError> {
    if let Some(dir) = socket.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        files::ensure_dir(dir, SOCKET_DIR_MODE)?;
        // In a directory others may write, another user could put their own socket (or a
        // symlink) where workloads look for the agent's.
        let mode = std::fs::metadata(dir)
            .map_err(|source| bind_error(dir, source))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(AgentError::WorkloadApiSocket {
                path: socket.to_path_buf(),
                problem: "is in a directory writable by group or others (another user could \
                          replace the socket): use a directory only the agent writes, such \
                          as /run/garrison-agent",
            });
        }
    }
    let metadata = match std::fs::symlink_metadata(socket) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(bind_error(socket, source)),
    };
    if !metadata.file_type().is_socket() {
        return Err(AgentError::WorkloadApiSocket {
            path: socket.to_path_buf(),
            problem: "exists and is not a socket; not replacing it",
        });
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(AgentError::WorkloadApiSocket {
            path: socket.to_path_buf(),
            problem: "another process is serving on it (a second agent?)",
        });
    }
    std::fs::remove_file(socket).map_err(|source| bind_error(socket, source))
}

fn bind_error(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::WorkloadApiBind {
        path: path.to_path_buf(),
        source,
    }
}

/// The gRPC service.
#[derive(Clone)]
struct Service {
    identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
    trust_domain_id: String,
    allowed_uids: HashSet<u32>,
    allowed_gids: HashSet<u32>,
    clock: Arc<dyn Clock>,
    streams: Arc<Budget>,
    refused: Arc<Mutex<HashSet<(u32, u32)>>>,
    metrics: Option<Arc<AgentMetrics>>,
}

type ResponseStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// A count bounded in total and per uid.
#[derive(Debug)]
struct Budget {
    total: usize,
    per_uid: usize,
    held: Mutex<(usize, HashMap<u32, usize>)>,
}

impl Budget {
    fn new(total: usize, per_uid: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_uid,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// One place for `uid`, or `None` when the total or `uid`'s share is used up.
    fn take(self: &Arc<Self>, uid: u32, gauge: Option<Arc<AgentMetrics>>) -> Option<Slot> {
        let mut held = self.held.lock().ok()?;
        let (total, per_uid) = &mut *held;
        let mine = per_uid.entry(uid).or_insert(0);
        if *total >= self.total || *mine >= self.per_uid {
            return None;
        }
        *mine += 1;
        *total += 1;
        if let Some(metrics) = &gauge {
            metrics.streams.inc();
        }
        Some(Slot {
            budget: Arc::clone(self),
            uid,
            gauge,
        })
    }
}

/// One place of a [`Budget`] (and of the streams gauge, if any) until dropped.
struct Slot {
    budget: Arc<Budget>,
    uid: u32,
    gauge: Option<Arc<AgentMetrics>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.budget.held.lock() {
            let (total, per_uid) = &mut *held;
            *total = total.saturating_sub(1);
            if let Some(mine) = per_uid.get_mut(&self.uid) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    per_uid.remove(&self.uid);
                }
            }
        }
        if let Some(metrics) = &self.gauge {
            metrics.streams.dec();
        }
    }
}

impl Service {
    /// The security header, then the caller's credentials.
    fn authorize<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get(SECURITY_HEADER)
            .and_then(|value| value.to_str().ok());
        if header != Some("true") {
            if let Some(metrics) = &self.metrics {
                metrics.refused.inc();
            }
            return Err(Status::invalid_argument(
                "security header `workload.spiffe.io: true` is missing",
            ));
        }
        let Some(&caller) = request.extensions().get::<Caller>() else {
            return Err(Status::permission_denied(
                "the caller's credentials cannot be read",
            ));
        };
        let Caller { uid, gid, pid } = caller;
        if self.allowed_uids.contains(&uid) || self.allowed_gids.contains(&gid) {
            return Ok(caller);
        }
        self.log_refusal(uid, gid, pid);
        if let Some(metrics) = &self.metrics {
            metrics.refused.inc();
        }
        Err(Status::permission_denied(format!(
            "uid {uid} / gid {gid} is not allowed by this agent's [workload_api] allow-list"
        )))
    }

    fn log_refusal(&self, uid: u32, gid: u32, pid: Option<i32>) {
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        if refused.len() < MAX_REMEMBERED_REFUSALS && refused.insert((uid, gid)) {
            tracing::warn!(
                uid,
                gid,
                pid = pid.unwrap_or(0),
                "Workload API caller refused: not on the allow-list (logged once per uid/gid)"
            );
        }
    }

    fn stream_slot(&self, caller: Caller) -> Result<Slot, Status> {
        self.streams
            .take(caller.uid, self.metrics.clone())
            .ok_or_else(|| {
                Status::unavailable("too many open Workload API streams for this uid; retry later")
            })
    }

    /// A stream that sends `render(identity)` now and after every rotation, and ends with
    /// `Unavailable` when the identity expires or the agent stops.
    fn identity_stream<T: Send + 'static>(
        &self,
        caller: Caller,
        render: fn(&WorkloadIdentity) -> T,
    ) -> Result<ResponseStream<T>, Status> {
        // The first message and "changed since" come from one read: a rotation published
        // in between is either sent first or seen as a change, never lost.
        let mut identity = self.identity.clone();
        let first = usable(&identity.borrow_and_update(), self.clock.now())?;
        let slot = self.stream_slot(caller)?;
        let (sender, receiver) = mpsc::channel(2);
        let clock = Arc::clone(&self.clock);
        tokio::spawn(async move {
            let _slot = slot;
            let mut current = first;
            loop {
                if sender.send(Ok(render(&current))).await.is_err() {
                    return;
                }
                loop {
                    let wait = until(clock.now(), current.not_after).min(MAX_WAIT);
                    tokio::select! {
                        changed = identity.changed() => {
                            if changed.is_err() {
                                let _ = sender.send(Err(Status::unavailable("the agent is stopping"))).await;
                                return;
                            }
                            let next = usable(&identity.borrow_and_update(), clock.now());
                            match next {
                                Ok(next) => {
                                    current = next;
                                    break;
                                }
                                Err(status) => {
                                    let _ = sender.send(Err(status)).await;
                                    return;
                                }
                            }
                        }
                        () = tokio::time::sleep(wait) => {
                            if clock.now() >= current.not_after {
                                let _ = sender.send(Err(expired())).await;
                                return;
                            }
                        }
                        () = sender.closed() => return,
                    }
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

fn usable(
    identity: &Option<Arc<WorkloadIdentity>>,
    now: SystemTime,
) -> Result<Arc<WorkloadIdentity>, Status> {
    match identity {
        None => Err(Status::unavailable(
            "this node has no SVID yet: the agent is enrolling; retry later",
        )),
        Some(identity) if now >= identity.not_after => Err(expired()),
        Some(identity) => Ok(Arc::clone(identity)),
    }
}

fn expired() -> Status {
    Status::unavailable("this node's SVID has expired: the agent is renewing it; retry later")
}

fn until(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Service {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;
    type FetchWITSVIDStream = ResponseStream<WitsvidResponse>;
    type FetchWITBundlesStream = ResponseStream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let caller = self.authorize(&request)?;
        let stream = self.identity_stream(caller, WorkloadIdentity::x509_svid_response)?;
        Ok(Response::new(stream))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let caller = self.authorize(&request)?;
        let stream = self.identity_stream(caller, WorkloadIdentity::x509_bundles_response)?;
        Ok(Response::new(stream))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.authorize(&request)?;
        if request.get_ref().audience.iter().all(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        Err(Status::permission_denied(
            "this agent issues no JWT-SVIDs (the JWT-SVID profile is disabled); use the X.509-SVID",
        ))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let caller = self.authorize(&request)?;
        let slot = self.stream_slot(caller)?;
        let message = JwtBundlesResponse {
            bundles: [(self.trust_domain_id.clone(), EMPTY_JWKS.to_vec())].into(),
        };
        let (sender, receiver) = mpsc::channel(1);
        let mut identity = self.identity.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
            // The JWT bundle never changes; hold the stream open until the caller leaves or
            // the agent stops.
            tokio::select! {
                () = sender.closed() => {}
                () = async { while identity.changed().await.is_ok() {} } => {
                    let _ = sender.send(Err(Status::unavailable("the agent is stopping"))).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.authorize(&request)?;
        let body = request.get_ref();
        if body.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if body.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        Err(Status::invalid_argument(
            "the JWT-SVID is not trusted: this trust domain's JWT bundle holds no keys (the \
             agent serves no JWT-SVID profile)",
        ))
    }

    async fn fetch_witsvid(
        &self,
        request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        self.authorize(&request)?;
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }

    async fn fetch_wit_bundles(
        &self,
        request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        self.authorize(&request)?;
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_spiffe_endpoint_socket_rules() {
        assert_eq!(
            parse_endpoint("unix:///run/garrison-agent/workload.sock"),
            Ok(PathBuf::from("/run/garrison-agent/workload.sock"))
        );
        assert_eq!(
            parse_endpoint("unix:/tmp/agent.sock"),
            Ok(PathBuf::from("/tmp/agent.sock"))
        );
        for bad in [
            "/run/agent.sock",
            "tcp://127.0.0.1:8081",
            "unix://host/run/agent.sock",
            "unix://",
            "unix:relative.sock",
            "unix:///run/agent.sock?x=1",
            "unix:///run/agent.sock#frag",
            "unix:///run/agent%20.sock",
            "unix:///run/",
            "unix:///run/../etc/agent.sock",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_default_endpoint_parses() {
        assert!(parse_endpoint(DEFAULT_ENDPOINT).is_ok());
    }
}
