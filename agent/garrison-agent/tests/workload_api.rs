//! The agent's SPIFFE Workload API server against unmodified clients: the `spiffe` Rust
//! crate's client, a raw gRPC client (for what conforming clients never send), and the
//! Python `spiffe` package from PyPI (installed into a virtualenv by the test).
//!
//! Rotations are pushed through the same [`Publisher`] the agent feeds after it writes new
//! SVID files; the SVIDs are real ones issued by `garrison-ca` and read back from files the
//! way the agent reads them. The agent's own run loop feeding the server is tested in
//! `mock_attestor.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use garrison_agent::SvidPaths;
use garrison_agent::schedule::{Clock, SystemClock};
use garrison_agent::workload_api::{Publisher, WorkloadApi, WorkloadApiConfig, WorkloadIdentity};
use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SpiffeId, SubjectKey,
    SvidParams, TrustDomain,
};
use garrison_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use garrison_proto::workload::{
    JwtsvidRequest, ValidateJwtsvidRequest, WitsvidRequest, X509svidRequest,
};
use ring::rand::SystemRandom;
use spiffe::WorkloadApiClient;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio_stream::StreamExt as _;
use tonic::Code;

const TRUST_DOMAIN: &str = "spiffe://example.org";
const WORKLOAD_ID: &str = "spiffe://example.org/site/site-a/node/n1";

/// The pinned version of the Python client (PyPI `spiffe`).
const PYTHON_SPIFFE: &str = "spiffe==0.3.2";

struct Pki {
    root_pem: String,
    site: Authority,
}

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

impl Pki {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let now = OffsetDateTime::now_utc();
        let root = Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "root".into(),
                ttl: time::Duration::days(2),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap();
        let root_pem = pem(&root.certificate);
        let root = Authority::from_issued(root).unwrap();
        let site = root
            .issue_intermediate(
                IntermediateParams {
                    name: "site-a".into(),
                    role: CaRole::Site("site-a".into()),
                    ttl: time::Duration::days(1),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            )
            .unwrap();
        Self {
            root_pem,
            site: Authority::from_issued(site).unwrap(),
        }
    }

    /// Issues an SVID valid from `now - 1 min` for `ttl`, writes the agent's three files
    /// into `dir` and reads them back as the agent does.
    fn identity(&self, dir: &Path, ttl: time::Duration) -> (WorkloadIdentity, Vec<u8>) {
        let issued = self
            .site
            .issue_svid(
                SvidParams {
                    spiffe_id: SpiffeId::parse(WORKLOAD_ID).unwrap(),
                    ttl,
                    max_ttl: time::Duration::hours(2),
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                OffsetDateTime::now_utc() - time::Duration::minutes(1),
                &SystemRandom::new(),
            )
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let paths = SvidPaths::in_dir(dir);
        let chain: String = issued.chain.iter().map(|der| pem(der)).collect();
        std::fs::write(&paths.svid, chain).unwrap();
        let key = issued.key.unwrap().to_pkcs8_pem().expose().to_owned();
        std::fs::write(&paths.key, key).unwrap();
        std::fs::write(&paths.bundle, &self.root_pem).unwrap();
        let leaf = issued.chain[0].clone();
        (WorkloadIdentity::from_files(&paths).unwrap(), leaf)
    }
}

/// The uid and gid of this process, from /proc (no libc binding needed).
fn own_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// A served Workload API on a socket in a temporary directory.
struct Served {
    dir: tempfile::TempDir,
    socket: PathBuf,
    publisher: Option<Publisher>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), garrison_agent::AgentError>>>,
}

impl Served {
    fn start(allowed_uids: Vec<u32>, allowed_gids: Vec<u32>) -> Self {
        Self::start_with_clock(allowed_uids, allowed_gids, Arc::new(SystemClock))
    }

    fn start_with_clock(
        allowed_uids: Vec<u32>,
        allowed_gids: Vec<u32>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/agent/workload.sock");
        let config = WorkloadApiConfig {
            socket: socket.clone(),
            allowed_uids,
            allowed_gids,
        };
        let (server, publisher) = WorkloadApi::bind(&config, TRUST_DOMAIN.into(), clock).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            dir,
            socket,
            publisher: Some(publisher),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn publish(&self, identity: WorkloadIdentity) {
        self.publisher
            .as_ref()
            .unwrap()
            .send_replace(Some(Arc::new(identity)));
    }

    async fn client(&self) -> WorkloadApiClient {
        WorkloadApiClient::connect_to(self.endpoint())
            .await
            .unwrap()
    }

    /// A generated gRPC client that sends exactly the metadata the test gives it.
    async fn raw(&self) -> SpiffeWorkloadApiClient<tonic::transport::Channel> {
        let socket = self.socket.clone();
        let channel = tonic::transport::Endpoint::from_static("http://workload.invalid")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap();
        SpiffeWorkloadApiClient::new(channel)
    }

    async fn shutdown(mut self) {
        self.publisher = None;
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        assert!(
            !self.socket.exists(),
            "the socket file is removed at shutdown"
        );
    }
}

fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_client_gets_the_svid_and_every_rotation_on_an_open_stream() {
    let pki = Pki::new();
    let (uid, _) = own_ids();
    let served = Served::start(vec![uid], vec![]);
    let (first, first_leaf) = pki.identity(&served.dir.path().join("a"), time::Duration::hours(1));
    served.publish(first);

    let client = served.client().await;
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), WORKLOAD_ID);
    assert_eq!(svid.leaf().as_ref(), first_leaf.as_slice());
    assert_eq!(svid.cert_chain().len(), 2, "leaf and site CA");

    let mut contexts = client.stream_x509_contexts().await.unwrap();
    let context = contexts.next().await.unwrap().unwrap();
    assert_eq!(
        context.default_svid().unwrap().leaf().as_ref(),
        first_leaf.as_slice()
    );
    let mut bundles = client.stream_x509_bundles().await.unwrap();
    let bundle_set = bundles.next().await.unwrap().unwrap();
    let trust_domain = spiffe::TrustDomain::new("example.org").unwrap();
    let roots = bundle_set.get(&trust_domain).unwrap().authorities().len();
    assert_eq!(roots, 1);

    // A rotation reaches both open streams without the client asking again.
    let (second, second_leaf) =
        pki.identity(&served.dir.path().join("b"), time::Duration::hours(1));
    assert_ne!(first_leaf, second_leaf);
    served.publish(second);
    let rotated = tokio::time::timeout(Duration::from_secs(10), contexts.next())
        .await
        .expect("the rotation was pushed")
        .unwrap()
        .unwrap();
    assert_eq!(
        rotated.default_svid().unwrap().leaf().as_ref(),
        second_leaf.as_slice()
    );
    let rebundled = tokio::time::timeout(Duration::from_secs(10), bundles.next())
        .await
        .expect("the bundle stream was refreshed")
        .unwrap()
        .unwrap();
    assert!(rebundled.get(&trust_domain).is_some());
    assert_eq!(
        client.fetch_x509_svid().await.unwrap().leaf().as_ref(),
        second_leaf.as_slice()
    );

    // The JWT profile: an empty JWK set for the trust domain, no JWT-SVID for anyone.
    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let jwt_bundle = jwt_bundles.get(&trust_domain).unwrap();
    assert_eq!(jwt_bundle.jwt_authorities().count(), 0);
    match client.fetch_jwt_token(["audience"], None).await {
        Err(spiffe::WorkloadApiError::PermissionDenied(message)) => {
            assert!(message.contains("no JWT-SVIDs"), "{message}")
        }
        other => panic!("JWT-SVID fetch answered {other:?}"),
    }
    drop(contexts);
    drop(bundles);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_are_refused_by_uid_and_admitted_by_gid() {
    let pki = Pki::new();
    let (uid, gid) = own_ids();
    // Only another uid and another gid are allowed: this process is refused.
    let refused = Served::start(vec![uid.wrapping_add(4242)], vec![gid.wrapping_add(4242)]);
    refused.publish(
        pki.identity(&refused.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    match refused.client().await.fetch_x509_svid().await {
        Err(spiffe::WorkloadApiError::PermissionDenied(message)) => {
            assert!(message.contains(&format!("uid {uid}")), "{message}")
        }
        other => panic!("a caller not on the allow-list got {other:?}"),
    }
    let mut raw = refused.raw().await;
    let status = raw
        .fetch_x509_bundles(with_header(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    refused.shutdown().await;

    // Admitted by its primary gid alone.
    let by_gid = Served::start(vec![], vec![gid]);
    by_gid.publish(
        pki.identity(&by_gid.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    let svid = by_gid.client().await.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), WORKLOAD_ID);
    by_gid.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_specification_s_status_codes() {
    let pki = Pki::new();
    let (uid, _) = own_ids();
    let served = Served::start(vec![uid], vec![]);
    let mut raw = served.raw().await;

    // No security header: InvalidArgument, on every method.
    let status = raw
        .fetch_x509svid(tonic::Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut wrong = tonic::Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "false".parse().unwrap());
    assert_eq!(
        raw.fetch_x509svid(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let status = raw
        .validate_jwtsvid(tonic::Request::new(ValidateJwtsvidRequest {
            audience: "a".into(),
            svid: "x.y.z".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Before the first SVID: Unavailable (clients retry with a backoff).
    let status = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // JWT-SVID profile disabled: mandatory fields checked, then PermissionDenied / untrusted.
    let status = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["db".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = raw
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not trusted"), "{status:?}");
    // The optional WIT-SVID profile: Unimplemented, as the specification requires.
    let status = raw
        .fetch_witsvid(with_header(WitsvidRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // An open stream ends with Unavailable when the SVID it serves is replaced by an
    // expired one (the agent could not renew in time): clients stop using it.
    served.publish(
        pki.identity(&served.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    let mut stream = raw
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 1);
    assert_eq!(first.svids[0].spiffe_id, WORKLOAD_ID);
    assert!(!first.svids[0].x509_svid_key.is_empty());
    let expired = pki
        .identity(&served.dir.path().join("b"), time::Duration::seconds(30))
        .0;
    served.publish(expired);
    let status = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ended")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        raw.fetch_x509_bundles(with_header(Default::default()))
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_uid_cannot_take_every_connection_or_stream() {
    use garrison_agent::workload_api::{MAX_CALLS_PER_CONNECTION, MAX_CONNECTIONS_PER_UID};
    let pki = Pki::new();
    let (uid, _) = own_ids();
    let served = Served::start(vec![uid], vec![]);
    served.publish(
        pki.identity(&served.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    // This uid's share of connections, held open without a byte sent.
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_UID {
        held.push(
            tokio::net::UnixStream::connect(&served.socket)
                .await
                .unwrap(),
        );
    }
    // One more is closed by the agent at once (a read sees the end of the stream).
    let mut extra = tokio::net::UnixStream::connect(&served.socket)
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut extra, &mut byte),
    )
    .await
    .expect("the extra connection was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Places come back when connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = served.client().await;
    assert_eq!(
        client
            .fetch_x509_svid()
            .await
            .unwrap()
            .spiffe_id()
            .to_string(),
        WORKLOAD_ID
    );

    // One connection holds at most MAX_CALLS_PER_CONNECTION calls at once: the next waits
    // (HTTP/2 flow control), it is not refused, and goes through once one ends.
    let mut raw = served.raw().await;
    let mut streams = Vec::new();
    for _ in 0..MAX_CALLS_PER_CONNECTION {
        let stream = raw
            .fetch_x509_bundles(with_header(Default::default()))
            .await
            .unwrap()
            .into_inner();
        streams.push(stream);
    }
    let mut waiting_client = raw.clone();
    let waiting = waiting_client.fetch_x509_bundles(with_header(Default::default()));
    let waited = tokio::time::timeout(Duration::from_millis(500), waiting).await;
    assert!(
        waited.is_err(),
        "a call beyond the connection's limit was answered at once"
    );
    drop(streams.pop());
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        raw.fetch_x509_bundles(with_header(Default::default())),
    )
    .await
    .expect("answered once a place was free");
    assert!(answered.is_ok());
    drop(streams);
    drop(answered);
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_stops_within_its_grace_even_with_a_client_streaming() {
    let pki = Pki::new();
    let (uid, _) = own_ids();
    let mut served = Served::start(vec![uid], vec![]);
    served.publish(
        pki.identity(&served.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    let mut raw = served.raw().await;
    let _open = raw
        .fetch_jwt_bundles(with_header(Default::default()))
        .await
        .unwrap()
        .into_inner();
    // The publisher is kept (streams stay open): only the grace period ends them.
    let _ = served.stop.take().unwrap().send(());
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), served.task.take().unwrap())
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_path_is_claimed_carefully() {
    let (uid, _) = own_ids();
    let served = Served::start(vec![uid], vec![]);
    // A second server on a live socket is refused.
    let config = WorkloadApiConfig {
        socket: served.socket.clone(),
        allowed_uids: vec![uid],
        allowed_gids: vec![],
    };
    let error = WorkloadApi::bind(&config, TRUST_DOMAIN.into(), Arc::new(SystemClock))
        .unwrap_err()
        .to_string();
    assert!(error.contains("another process"), "{error}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&served.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o666);
    served.shutdown().await;

    // A stale socket left by a crash is replaced; a regular file is never removed.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let config = WorkloadApiConfig {
        socket: stale.clone(),
        allowed_uids: vec![uid],
        allowed_gids: vec![],
    };
    let (server, _publisher) =
        WorkloadApi::bind(&config, TRUST_DOMAIN.into(), Arc::new(SystemClock)).unwrap();
    drop(server);
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let config = WorkloadApiConfig {
        socket: file.clone(),
        ..config
    };
    let error = WorkloadApi::bind(&config, TRUST_DOMAIN.into(), Arc::new(SystemClock))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");

    // A directory others may write (another user could put their socket there): refused.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(
        &shared,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let config = WorkloadApiConfig {
        socket: shared.join("agent.sock"),
        ..config
    };
    let error = WorkloadApi::bind(&config, TRUST_DOMAIN.into(), Arc::new(SystemClock))
        .unwrap_err()
        .to_string();
    assert!(error.contains("writable by group or others"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The Python client (PyPI `spiffe`), unmodified
// ---------------------------------------------------------------------------------------

/// A virtualenv with the pinned Python `spiffe` package, made once per target directory.
fn python_with_spiffe() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-spiffe");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(PYTHON_SPIFFE) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
    assert!(status.success(), "python3 -m venv failed");
    let status = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_SPIFFE,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "pip install {PYTHON_SPIFFE} failed");
    std::fs::write(&ready, PYTHON_SPIFFE).unwrap();
    python
}

/// Runs `tests/python/workload_client.py MODE` against `endpoint`; returns its child.
fn python_client(python: &Path, endpoint: &str, mode: &str) -> tokio::process::Child {
    tokio::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/workload_client.py"))
        .arg(mode)
        .env("SPIFFE_ENDPOINT_SOCKET", endpoint)
        .env("PYTHONWARNINGS", "ignore")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn serial_hex(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    cert.raw_serial_as_string().replace(':', "").to_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_gets_the_svid_a_pushed_rotation_and_a_refusal() {
    use tokio::io::AsyncBufReadExt as _;
    let python = tokio::task::spawn_blocking(python_with_spiffe)
        .await
        .unwrap();
    let pki = Pki::new();
    let (uid, gid) = own_ids();

    let served = Served::start(vec![uid], vec![]);
    let (first, first_leaf) = pki.identity(&served.dir.path().join("a"), time::Duration::hours(1));
    served.publish(first);
    let mut child = python_client(&python, &served.endpoint(), "stream");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Python client answered")
            .unwrap()
            .expect("the Python client printed a line")
    };
    assert_eq!(
        next_line().await,
        format!("svid {WORKLOAD_ID} {}", serial_hex(&first_leaf))
    );
    assert_eq!(next_line().await, format!("bundle {TRUST_DOMAIN} 1"));
    assert_eq!(next_line().await, format!("jwt-bundle {TRUST_DOMAIN} 0"));
    assert_eq!(
        next_line().await,
        format!("stream {WORKLOAD_ID} {}", serial_hex(&first_leaf))
    );
    let (second, second_leaf) =
        pki.identity(&served.dir.path().join("b"), time::Duration::hours(1));
    served.publish(second);
    assert_eq!(
        next_line().await,
        format!("stream {WORKLOAD_ID} {}", serial_hex(&second_leaf))
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    served.shutdown().await;

    let refused = Served::start(vec![uid.wrapping_add(4242)], vec![gid.wrapping_add(4242)]);
    refused.publish(
        pki.identity(&refused.dir.path().join("a"), time::Duration::hours(1))
            .0,
    );
    let output = python_client(&python, &refused.endpoint(), "fetch")
        .wait_with_output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains("PERMISSION_DENIED"), "{text}");
    refused.shutdown().await;
}

#[test]
fn identity_debug_never_shows_the_key() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = pki.identity(dir.path(), time::Duration::hours(1));
    let shown = format!("{identity:?}");
    assert!(shown.contains(WORKLOAD_ID));
    assert!(!shown.contains("key"), "{shown}");
    assert!(identity.not_after > SystemTime::now());
}
