//! The attestor's TCP listener: at most `max_connections` connections open at once.
//!
//! Every accepted connection holds a permit until it closes, from before its TLS handshake
//! to its last byte. While all permits are taken the attestor does not accept: newcomers wait
//! in the kernel's listen backlog (and, past it, in their own SYN retries) instead of each
//! costing a TLS session, HTTP/2 buffers and a task in the attestor's memory. So memory stays
//! bounded however many agents connect at once; a storm is served at the rate the attestor
//! can sustain. Requests on admitted connections are still bounded by `max_in_flight` and shed
//! with an explicit `overloaded` beyond it.
//!
//! [`tls`] then runs each admitted connection's TLS handshake in a task of its own, within
//! [`HandshakeLimits`], and hands finished sessions to the HTTP/2 server. Handshakes that do
//! not finish are counted in [`HandshakeFailures`], which the server reports once a minute:
//! one line, however many (a scanner must not be able to flood the log), with the last
//! failure's peer and reason, so that an operator sees a misconfigured agent without turning
//! on debug logging.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Requested listen backlog; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Bind `address` for the attestor.
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections from `listener`, never more than `max_connections` open at once.
pub fn bounded(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = Result<AdmittedConnection, io::Error>> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    futures_util::stream::unfold((listener, permits), |(listener, permits)| async move {
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
        let (stream, peer) = accept(&listener).await;
        Some((
            Ok(AdmittedConnection {
                stream,
                peer,
                _permit: permit,
            }),
            (listener, permits),
        ))
    })
}

/// How long a client may take over its TLS handshake once admitted.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Until its first bytes (the ClientHello) arrive. A real client sends them as soon as its
    /// TCP connection is up, usually before the attestor admits it; a client that connects and
    /// says nothing holds a connection place for at most this long.
    pub first_bytes: Duration,
    /// For the whole handshake.
    pub whole: Duration,
}

/// Handshakes that did not finish, by how they ended, since the last [`take`](Self::take).
#[derive(Debug, Default)]
pub struct HandshakeFailures {
    /// The client sent nothing within [`HandshakeLimits::first_bytes`].
    silent: AtomicU64,
    /// The handshake failed (not TLS, no shared version or suite, a client certificate that
    /// does not verify against the site CA, ...).
    failed: AtomicU64,
    /// The handshake did not finish within [`HandshakeLimits::whole`].
    timed_out: AtomicU64,
    /// The last failure: who, and why.
    last: Mutex<Option<String>>,
}

/// What [`HandshakeFailures::take`] hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailureCounts {
    pub silent: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// `peer: reason` of the last one counted.
    pub last: String,
}

/// How a handshake ended without a session.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Silent,
    Failed,
    TimedOut,
}

impl HandshakeFailures {
    fn count(&self, failure: Failure, peer: SocketAddr, reason: &str) {
        let counter = match failure {
            Failure::Silent => &self.silent,
            Failure::Failed => &self.failed,
            Failure::TimedOut => &self.timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(format!("{peer}: {reason}"));
        }
    }

    /// The counts since the last call, reset to zero; `None` if there were none.
    pub fn take(&self) -> Option<HandshakeFailureCounts> {
        let counts = HandshakeFailureCounts {
            silent: self.silent.swap(0, Ordering::Relaxed),
            failed: self.failed.swap(0, Ordering::Relaxed),
            timed_out: self.timed_out.swap(0, Ordering::Relaxed),
            last: self
                .last
                .lock()
                .ok()
                .and_then(|mut last| last.take())
                .unwrap_or_default(),
        };
        (counts.silent + counts.failed + counts.timed_out > 0).then_some(counts)
    }
}

/// TLS over `admitted`: every connection's handshake runs in a task of its own, bounded by
/// `limits`; sessions are handed on in the order their handshakes finish. A handshake that
/// fails or times out closes the connection (and frees its place) without reaching HTTP/2,
/// and is counted in `failures`. Stops accepting once the returned stream is dropped.
pub fn tls(
    admitted: impl Stream<Item = Result<AdmittedConnection, io::Error>> + Send + 'static,
    config: Arc<rustls::ServerConfig>,
    limits: HandshakeLimits,
    failures: Arc<HandshakeFailures>,
) -> impl Stream<Item = Result<TlsStream<AdmittedConnection>, io::Error>> {
    let (ready, sessions) = mpsc::channel(HANDED_ON_QUEUE);
    tokio::spawn(handshakes(
        admitted,
        TlsAcceptor::from(config),
        limits,
        failures,
        ready,
    ));
    futures_util::stream::unfold(sessions, |mut sessions| async move {
        let session = sessions.recv().await?;
        Some((Ok(session), sessions))
    })
}

/// Finished sessions waiting for the HTTP/2 server to take them (it takes them as they come;
/// the connection limit bounds how many handshakes run at all).
const HANDED_ON_QUEUE: usize = 64;

async fn handshakes(
    admitted: impl Stream<Item = Result<AdmittedConnection, io::Error>> + Send + 'static,
    acceptor: TlsAcceptor,
    limits: HandshakeLimits,
    failures: Arc<HandshakeFailures>,
    ready: mpsc::Sender<TlsStream<AdmittedConnection>>,
) {
    let mut admitted = std::pin::pin!(admitted);
    loop {
        let next = tokio::select! {
            next = admitted.next() => next,
            () = ready.closed() => return,
        };
        let connection = match next {
            Some(Ok(connection)) => connection,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
            None => return,
        };
        let (acceptor, ready, failures) = (acceptor.clone(), ready.clone(), Arc::clone(&failures));
        tokio::spawn(async move {
            if let Some(session) = handshake(&acceptor, connection, limits, &failures).await {
                // Fails only when the server stopped: the session is dropped, closed.
                let _ = ready.send(session).await;
            }
        });
    }
}

/// The handshake of one connection within `limits`; `None` (and the connection closed,
/// and counted in `failures`) if it failed or took too long.
async fn handshake(
    acceptor: &TlsAcceptor,
    connection: AdmittedConnection,
    limits: HandshakeLimits,
    failures: &HandshakeFailures,
) -> Option<TlsStream<AdmittedConnection>> {
    let started = tokio::time::Instant::now();
    let peer = connection.peer;
    // Peeked, not read: the bytes stay for the handshake. A closed or failed connection
    // ends the wait too, and its handshake then fails at once.
    let mut first = [0u8; 1];
    if tokio::time::timeout(limits.first_bytes, connection.stream.peek(&mut first))
        .await
        .is_err()
    {
        tracing::debug!(
            timeout_ms = limits.first_bytes.as_millis(),
            "client sent nothing; connection closed"
        );
        failures.count(Failure::Silent, peer, "sent nothing");
        return None;
    }
    let rest = limits.whole.saturating_sub(started.elapsed());
    match tokio::time::timeout(rest, acceptor.accept(connection)).await {
        Ok(Ok(session)) => Some(session),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            failures.count(Failure::Failed, peer, &e.to_string());
            None
        }
        Err(_) => {
            tracing::debug!(
                timeout_ms = limits.whole.as_millis(),
                "TLS handshake timed out"
            );
            failures.count(Failure::TimedOut, peer, "handshake timed out");
            None
        }
    }
}

async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// An accepted TCP connection and its place under the connection limit, given back when the
/// connection is dropped.
#[derive(Debug)]
pub struct AdmittedConnection {
    stream: TcpStream,
    /// The client's address, as `accept` gave it.
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl Connected for AdmittedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for AdmittedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use garrison_ca::{
        Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole,
        SpiffeId, SubjectKey, TrustDomain, certificates_to_pem,
    };
    use ring::rand::SystemRandom;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::tls::{RotatingServerCert, server_config};

    const ATTESTOR: &str = "spiffe://example.org/site/a/attestor";

    /// A server config for an attestor SVID issued by a throwaway root, and that root's PEM.
    fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
        let (identity, root_pem) = identity();
        (
            server_config(identity, &root_pem, Arc::new(crate::attestor::SystemClock)).unwrap(),
            root_pem,
        )
    }

    /// An attestor SVID issued by a throwaway site CA under a throwaway root, and that root's
    /// PEM.
    fn identity() -> (Arc<RotatingServerCert>, String) {
        let (rng, now) = (SystemRandom::new(), time::OffsetDateTime::now_utc());
        let root = RootParams {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            name: "listener test root".into(),
            ttl: time::Duration::hours(1),
            path_len: 1,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        };
        let root = Authority::from_issued(Authority::new_root(&root, now, &rng).unwrap()).unwrap();
        let site = IntermediateParams {
            name: "a".into(),
            role: CaRole::Site("a".into()),
            ttl: time::Duration::minutes(50),
            path_len: PathLen::OneBelowIssuer,
            subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
        };
        let site =
            Authority::from_issued(root.issue_intermediate(site, now, &rng).unwrap()).unwrap();
        let issue = move |now| {
            site.issue_site_role_svid(
                SiteRole::Attestor,
                time::Duration::minutes(10),
                SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                now,
                &SystemRandom::new(),
            )
        };
        let rotating =
            RotatingServerCert::new(Box::new(issue), Arc::new(crate::attestor::SystemClock))
                .unwrap();
        let root_pem = certificates_to_pem(&[root.certificate().to_vec()]);
        (Arc::new(rotating), root_pem)
    }

    #[test]
    fn a_client_issuer_that_is_not_a_certificate_is_refused_at_start() {
        for bad in [
            "",
            "not PEM at all",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let (identity, _) = identity();
            assert!(
                matches!(
                    server_config(identity, bad, Arc::new(crate::attestor::SystemClock)),
                    Err(crate::tls::TlsConfigError::ClientIssuer(_))
                ),
                "{bad:?} was accepted as client issuer"
            );
        }
    }

    /// What [`tls`] hands on, boxed.
    type Sessions = Pin<Box<dyn Stream<Item = Result<TlsStream<AdmittedConnection>, io::Error>>>>;

    /// A TLS listener on a free local port admitting `places` connections at once, its
    /// address, its sessions, and the PEM of the root its client config must trust.
    fn tls_listener(
        places: usize,
        limits: HandshakeLimits,
        failures: Arc<HandshakeFailures>,
    ) -> (SocketAddr, Sessions, String) {
        let (config, root_pem) = tls_config();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let sessions = Box::pin(tls(bounded(listener, places), config, limits, failures));
        (address, sessions, root_pem)
    }

    /// A real client handshake against `address`, in the background.
    fn tls_client(address: SocketAddr, root_pem: &str) -> tokio::task::JoinHandle<bool> {
        let expected = SpiffeId::parse(ATTESTOR).unwrap();
        let config =
            garrison_spiffe_tls::client_config(root_pem.as_bytes(), expected, None).unwrap();
        tokio::spawn(async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .is_ok()
        })
    }

    /// Reads until the server closes the connection; false if it is still open after 5 s.
    async fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_handshake_closes_the_connection_and_frees_its_place() {
        let limits = HandshakeLimits {
            first_bytes: Duration::from_secs(10),
            whole: Duration::from_secs(10),
        };
        let (address, mut sessions, root_pem) = tls_listener(1, limits, Arc::default());
        let mut garbage = TcpStream::connect(address).await.unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(
            closed_by_server(&mut garbage).await,
            "a client that is not speaking TLS was not dropped"
        );
        // The only place is free again: a real client gets through.
        let client = tls_client(address, &root_pem);
        let session = tokio::time::timeout(Duration::from_secs(5), sessions.next()).await;
        assert!(matches!(session, Ok(Some(Ok(_)))));
        assert!(client.await.unwrap(), "the client's handshake failed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshakes_that_do_not_finish_are_counted_with_the_last_peer_and_reason() {
        let limits = HandshakeLimits {
            first_bytes: Duration::from_millis(200),
            whole: Duration::from_secs(10),
        };
        let failures = Arc::new(HandshakeFailures::default());
        let (address, mut sessions, root_pem) = tls_listener(4, limits, Arc::clone(&failures));
        assert_eq!(failures.take(), None, "nothing failed yet");
        let mut silent = TcpStream::connect(address).await.unwrap();
        assert!(closed_by_server(&mut silent).await);
        let mut garbage = TcpStream::connect(address).await.unwrap();
        let garbage_port = garbage.local_addr().unwrap().port();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(closed_by_server(&mut garbage).await);
        // A handshake that finishes is not counted.
        let client = tls_client(address, &root_pem);
        let session = tokio::time::timeout(Duration::from_secs(5), sessions.next()).await;
        assert!(matches!(session, Ok(Some(Ok(_)))));
        assert!(client.await.unwrap());

        // The socket closes as the handshake task fails, just before it counts.
        for _ in 0..200 {
            if failures.silent.load(Ordering::Relaxed) + failures.failed.load(Ordering::Relaxed)
                == 2
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counts = failures.take().expect("two failures counted");
        assert_eq!((counts.silent, counts.failed, counts.timed_out), (1, 1, 0));
        assert!(
            counts
                .last
                .starts_with(&format!("127.0.0.1:{garbage_port}: ")),
            "{counts:?}"
        );
        assert_eq!(failures.take(), None, "taking resets the counts");
    }

    /// Holds the only place with `client`, then checks that a real client gets it only after
    /// `held_for` at least, and that `client` was closed by the server.
    async fn place_is_freed_after(
        limits: HandshakeLimits,
        held_for: Duration,
        client: impl AsyncFnOnce(SocketAddr) -> TcpStream,
    ) {
        let (address, mut sessions, root_pem) = tls_listener(1, limits, Arc::default());
        let mut holder = client(address).await;
        // Make sure the holder has the only place before the real client arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let real = tls_client(address, &root_pem);
        let session = tokio::time::timeout(Duration::from_secs(5), sessions.next()).await;
        assert!(matches!(session, Ok(Some(Ok(_)))));
        assert!(
            started.elapsed() >= held_for.saturating_sub(Duration::from_millis(60)),
            "the real client got the place after {:?}, while the holder still held it",
            started.elapsed()
        );
        assert!(real.await.unwrap(), "the real client's handshake failed");
        assert!(
            closed_by_server(&mut holder).await,
            "the holder was not dropped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_sends_nothing_is_dropped_after_the_first_bytes_limit() {
        let limits = HandshakeLimits {
            first_bytes: Duration::from_millis(300),
            whole: Duration::from_secs(30),
        };
        let silent = async |address| TcpStream::connect(address).await.unwrap();
        place_is_freed_after(limits, limits.first_bytes, silent).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stalls_mid_handshake_is_dropped_after_the_whole_limit() {
        let limits = HandshakeLimits {
            first_bytes: Duration::from_millis(100),
            whole: Duration::from_millis(500),
        };
        // The first 5 bytes of a TLS record header (handshake, TLS 1.0 record version,
        // a 512-byte body), and then nothing.
        let stalling = async |address| {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .unwrap();
            stream
        };
        place_is_freed_after(limits, limits.whole, stalling).await;
    }

    #[tokio::test]
    async fn no_more_than_the_limit_are_admitted_until_one_closes() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let mut admitted = Box::pin(bounded(listener, 2));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(address).await.unwrap());
        }
        let first = admitted.next().await.unwrap().unwrap();
        let _second = admitted.next().await.unwrap().unwrap();
        // The third client is connected at the TCP level (backlog) but not admitted...
        let third = tokio::time::timeout(Duration::from_millis(200), admitted.next()).await;
        assert!(
            third.is_err(),
            "a third connection was admitted over a limit of 2"
        );
        // ...until an admitted connection closes.
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), admitted.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))));
    }
}
