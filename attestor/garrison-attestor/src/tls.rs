//! The attestor's TLS server configuration, owned here rather than left to tonic's defaults.
//!
//! What differs from tonic's `ServerTlsConfig`:
//! * **No session resumption.** No tickets are sent and no sessions are kept: agents open one
//!   connection per exchange and never resume, so the two TLS 1.3 tickets rustls sends by
//!   default after every handshake were CPU, a write and a record on every connection for
//!   nothing, and a session cache the size of the fleet would be memory for nothing. It also
//!   means every connection is authenticated in full by its own certificate, never by a
//!   remembered session.
//! * **ring, explicitly**, not whichever rustls provider the process installed.
//!
//! * **The attestor's own SVID is re-issued while it runs** ([`RotatingServerCert`]): once
//!   half its lifetime has passed, the next handshake issues a fresh one from the site CA and
//!   later handshakes present it. Connections already open are untouched.
//!
//! Unchanged: client certificates optional (enrollment has none, renewal presents its SVID)
//! and verified against the site CA (see [`crate::server::attestor_identity`]), ALPN `h2` only.

use std::sync::{Arc, Mutex, RwLock};

use garrison_ca::SpiffeId;
use garrison_ca::{CaError, Issued};
use garrison_spiffe_tls::Identity;
use rustls::RootCertStore;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerConfig, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::{Duration, OffsetDateTime};

use crate::attestor::Clock;

/// After a failed re-issue, how long handshakes keep the current certificate before the next
/// attempt (so a CA that cannot issue is not asked on every handshake).
const RETRY_AFTER_FAILURE: Duration = Duration::minutes(1);

/// Issues the attestor's SVID at a given time (the site CA, held by the closure).
pub type IssueServerSvid = dyn Fn(OffsetDateTime) -> Result<Issued, CaError> + Send + Sync;

/// The attestor's server certificate, re-issued from the site CA once half its lifetime has
/// passed. Time comes from the attestor's [`Clock`], so tests can run the attestor past its
/// SVID's lifetime without sleeping.
pub struct RotatingServerCert {
    issue: Box<IssueServerSvid>,
    clock: Arc<dyn Clock>,
    /// Changes when the issuing CA does: the next handshake then re-issues at once.
    issuer_epoch: Option<Arc<dyn ClientIssuers>>,
    current: RwLock<Served>,
    refreshing: Mutex<()>,
}

#[derive(Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    not_after: OffsetDateTime,
    /// When the next handshake should issue a new certificate.
    refresh_at: OffsetDateTime,
    /// The issuer epoch it was issued under.
    epoch: u64,
}

impl std::fmt::Debug for RotatingServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let not_after = self.current.read().map(|c| c.not_after).ok();
        f.debug_struct("RotatingServerCert")
            .field("not_after", &not_after)
            .finish_non_exhaustive()
    }
}

impl RotatingServerCert {
    /// Issue the first certificate now; fails if the CA cannot issue.
    pub fn new(issue: Box<IssueServerSvid>, clock: Arc<dyn Clock>) -> Result<Self, TlsConfigError> {
        let first = issue(clock.now()).map_err(|e| TlsConfigError::Identity(e.to_string()))?;
        let current = served_from(&first)?;
        Ok(RotatingServerCert {
            issue,
            clock,
            issuer_epoch: None,
            current: RwLock::new(current),
            refreshing: Mutex::new(()),
        })
    }

    /// Re-issue on the first handshake after `issuers` changed (a site CA rotation), not
    /// only at half-life.
    pub fn following(mut self, issuers: Arc<dyn ClientIssuers>) -> Self {
        if let Ok(current) = self.current.get_mut() {
            current.epoch = issuers.key();
        }
        self.issuer_epoch = Some(issuers);
        self
    }

    /// The certificate chain presented now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.served().key.cert.clone()
    }

    fn served(&self) -> Served {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The certificate for a handshake at `now`, re-issued first if it is due. A failed
    /// re-issue is logged and the current certificate kept (it may still be valid; if it is
    /// not, clients refuse it, which is the right outcome for a site CA that cannot issue).
    fn certificate_at(&self, now: OffsetDateTime) -> Arc<CertifiedKey> {
        let served = self.served();
        let epoch = self.issuer_epoch.as_ref().map_or(0, |i| i.key());
        if now < served.refresh_at && epoch == served.epoch {
            return served.key;
        }
        // One handshake re-issues; the others present the current certificate meanwhile.
        let Ok(_guard) = self.refreshing.try_lock() else {
            return served.key;
        };
        let next = (self.issue)(now)
            .map_err(|e| TlsConfigError::Identity(e.to_string()))
            .and_then(|issued| served_from(&issued))
            .map(|next| Served { epoch, ..next });
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        match next {
            Ok(next) => {
                tracing::info!(not_after = %next.not_after, "attestor server SVID re-issued");
                *current = next;
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    not_after = %current.not_after,
                    "attestor server SVID could not be re-issued; keeping the current one"
                );
                current.refresh_at = now + RETRY_AFTER_FAILURE;
                current.epoch = epoch;
            }
        }
        Arc::clone(&current.key)
    }
}

impl ResolvesServerCert for RotatingServerCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certificate_at(self.clock.now()))
    }
}

/// The attestor's clock as rustls's time source.
#[derive(Debug)]
pub struct ClockTime(pub Arc<dyn Clock>);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<rustls_pki_types::UnixTime> {
        let seconds = u64::try_from(self.0.now().unix_timestamp()).ok()?;
        Some(rustls_pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(seconds),
        ))
    }
}

fn served_from(issued: &Issued) -> Result<Served, TlsConfigError> {
    let identity = identity_from_issued(issued)?;
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(identity.key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let lifetime = issued.not_after - issued.not_before;
    Ok(Served {
        key: Arc::new(CertifiedKey::new(identity.chain, key)),
        not_after: issued.not_after,
        refresh_at: issued.not_before + lifetime / 2,
        epoch: 0,
    })
}

/// The TLS identity (chain leaf first, PKCS#8 key) of a freshly issued SVID, whose key was
/// generated with it.
pub fn identity_from_issued(issued: &garrison_ca::Issued) -> Result<Identity, TlsConfigError> {
    let key = issued
        .key
        .as_ref()
        .ok_or_else(|| TlsConfigError::Identity("the SVID was issued without its key".into()))?;
    let chain = garrison_ca::certificates_to_pem(&issued.chain);
    Identity::from_pem(chain.as_bytes(), key.to_pkcs8_pem().expose().as_bytes())
        .map_err(|e| TlsConfigError::Identity(e.to_string()))
}

/// Who a TLS client is: its certificate chain checked again with webpki against the trust
/// domain's roots at the attestor's clock (the path webpki builds, not the list the client
/// sent), the containment rule over that path, and the SPIFFE ID of its leaf. What the ID may
/// do is the service's to decide.
#[derive(Clone)]
pub struct PeerCheck {
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCheck")
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl PeerCheck {
    /// Checks against `roots` (DER).
    pub fn new(roots: &[Vec<u8>], clock: Arc<dyn Clock>) -> Result<Self, String> {
        let anchors = roots
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("root certificate: {e:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerCheck {
            anchors: Arc::new(anchors),
            clock,
        })
    }

    /// The checked SPIFFE ID of a gRPC request's TLS client.
    pub fn identity_of<T>(&self, request: &tonic::Request<T>) -> Result<SpiffeId, String> {
        let chain: Vec<Vec<u8>> = request
            .peer_certs()
            .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| "no client certificate".to_owned())?;
        self.identity(leaf, intermediates)
    }

    /// The checked SPIFFE ID of the certificate `leaf` with the `intermediates` sent with it.
    pub fn identity(&self, leaf: &[u8], intermediates: &[Vec<u8>]) -> Result<SpiffeId, String> {
        self.identity_at(leaf, intermediates, self.clock.now())
    }

    /// [`PeerCheck::identity`] with validity judged at `at` instead of the clock's now.
    pub fn identity_at(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        at: OffsetDateTime,
    ) -> Result<SpiffeId, String> {
        self.identity_and_issuer_at(leaf, intermediates, at)
            .map(|(id, _)| id)
    }

    /// [`PeerCheck::identity_at`], with the leaf's issuer on the path webpki verified (DER;
    /// `None` when an anchor issued the leaf): the CA that really vouches for the caller,
    /// whatever else or in whatever order the caller sent.
    pub fn identity_and_issuer_at(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        at: OffsetDateTime,
    ) -> Result<(SpiffeId, Option<Vec<u8>>), String> {
        let leaf_der = CertificateDer::from(leaf);
        let end_entity =
            webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("{e:?}"))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let now = at.unix_timestamp().max(0).unsigned_abs();
        let path = end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &intermediates,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| format!("chain: {e:?}"))?;
        let id = garrison_spiffe_tls::spiffe_id_of(leaf).map_err(|e| e.to_string())?;
        garrison_spiffe_tls::check_path_scope(&id, &path).map_err(|e| e.to_string())?;
        let issuer = path
            .intermediate_certificates()
            .next()
            .map(|c| c.der().to_vec());
        Ok((id, issuer))
    }
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The attestor's own certificate or key is unusable.
    #[error("attestor identity: {0}")]
    Identity(String),
    /// The client issuer PEM held no certificate, or an unreadable one.
    #[error("client certificate issuer: {0}")]
    ClientIssuer(String),
    /// rustls refused the identity or the verifier.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Which CAs' client certificates are accepted, as they change: `key()` is cheap and changes
/// whenever `issuers()` would return another set (a site CA rotated, an old one expired).
pub trait ClientIssuers: Send + Sync {
    /// Changes whenever the set of issuers does.
    fn key(&self) -> u64;
    /// The CA certificates (DER) whose client certificates are accepted.
    fn issuers(&self) -> Vec<Vec<u8>>;
}

/// A client verifier anchored at a set of issuing CAs that changes while the server runs:
/// rebuilt on the first handshake after [`ClientIssuers::key`] changed. A set that cannot be
/// built keeps the last good verifier (logged).
pub struct RotatingClientVerifier {
    issuers: Arc<dyn ClientIssuers>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<(u64, Arc<dyn rustls::server::danger::ClientCertVerifier>)>,
}

impl std::fmt::Debug for RotatingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingClientVerifier")
            .finish_non_exhaustive()
    }
}

impl RotatingClientVerifier {
    /// Builds the first verifier now.
    pub fn new(issuers: Arc<dyn ClientIssuers>) -> Result<Self, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = issuers.key();
        let first = optional_client_verifier(&issuers.issuers(), &provider)?;
        Ok(RotatingClientVerifier {
            issuers,
            provider,
            current: RwLock::new((key, first)),
        })
    }

    fn verifier(&self) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
        let key = self.issuers.key();
        let current = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if current.0 == key {
            return current.1;
        }
        match optional_client_verifier(&self.issuers.issuers(), &self.provider) {
            Ok(next) => {
                let mut slot = match self.current.write() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *slot = (key, Arc::clone(&next));
                tracing::info!("client certificate issuers changed (site CA rotation)");
                next
            }
            Err(e) => {
                tracing::error!(error = %e, "new client certificate issuers unusable; keeping the previous ones");
                current.1
            }
        }
    }
}

impl rustls::server::danger::ClientCertVerifier for RotatingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // Hints would have to outlive the verifier they came from; agents send their one SVID
        // whatever the hints say.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

fn optional_client_verifier(
    issuers: &[Vec<u8>],
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for der in issuers {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsConfigError::ClientIssuer(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::ClientIssuer("no issuing CA".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))
}

/// The attestor's server configuration: the certificate of `identity`, client certificates
/// accepted (not required) when issued by one of `issuers`, the site CAs whose SVIDs are
/// current (the one in force and old ones not yet expired). Validity is judged at `clock`'s
/// time.
pub fn rotating_server_config(
    identity: Arc<dyn ResolvesServerCert>,
    issuers: Arc<dyn ClientIssuers>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let verifier = Arc::new(RotatingClientVerifier::new(issuers)?);
    let provider = Arc::clone(&verifier.provider);
    finish_config(provider, clock, verifier, identity)
}

/// The hub's server configuration: client certificates chaining to `roots_pem` required;
/// with `rejoin_window`, a chain whose only fault is that it has expired, at most that long
/// ago, is also let through the handshake (a site whose CA expired while it was cut off,
/// asking for its next one). What such a caller may do is the service's to decide: it
/// checks the chain again ([`PeerCheck::identity_at`]).
pub fn hub_server_config(
    identity: Arc<dyn ResolvesServerCert>,
    roots_pem: &str,
    clock: Arc<dyn Clock>,
    rejoin_window: Option<Duration>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let Some(window) = rejoin_window else {
        return audit_server_config(identity, roots_pem, clock);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for der in garrison_ca::certificates_from_pem(roots_pem)
        .map_err(|e| TlsConfigError::ClientIssuer(e.to_string()))?
    {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| TlsConfigError::ClientIssuer(e.to_string()))?;
    }
    let strict =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let verifier = Arc::new(ExpiredWithin { strict, window });
    finish_config(provider, clock, verifier, identity)
}

/// A client verifier that also admits a chain that was valid at its leaf's notAfter, if that
/// was at most `window` ago (see [`hub_server_config`]).
#[derive(Debug)]
struct ExpiredWithin {
    strict: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    window: Duration,
}

/// When a chain presented by a site whose CA has expired is judged, for a hub's rejoin window:
/// the leaf's last second, if the leaf was capped at its issuing CA's expiry (a credential of
/// an expired CA, not merely an old leaf), that expiry is in the past but at most `window`
/// ago, and every certificate above that CA is valid now. `None`: the chain does not qualify.
pub fn rejoin_time(
    leaf: &[u8],
    intermediates: &[&[u8]],
    now: OffsetDateTime,
    window: Duration,
) -> Option<OffsetDateTime> {
    use x509_parser::prelude::FromDer as _;
    let validity = |der: &[u8]| {
        x509_parser::certificate::X509Certificate::from_der(der)
            .ok()
            .map(|(_, c)| {
                (
                    c.validity().not_before.to_datetime(),
                    c.validity().not_after.to_datetime(),
                )
            })
    };
    let (_, leaf_cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
    let leaf_not_after = leaf_cert.validity().not_after.to_datetime();
    // The site CA is the certificate that signed the leaf, wherever the caller put it.
    let issued_leaf = |der: &&&[u8]| {
        x509_parser::certificate::X509Certificate::from_der(der).is_ok_and(|(_, ca)| {
            ca.subject() == leaf_cert.issuer()
                && leaf_cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    };
    let site_ca = *intermediates.iter().find(issued_leaf)?;
    let (_, ca_not_after) = validity(site_ca)?;
    let expired_ago = now - ca_not_after;
    let qualifies = leaf_not_after == ca_not_after
        && expired_ago.is_positive()
        && expired_ago <= window
        && intermediates
            .iter()
            .filter(|der| **der != site_ca)
            .all(|der| {
                validity(der)
                    .is_some_and(|(not_before, not_after)| not_before <= now && now <= not_after)
            });
    qualifies.then(|| leaf_not_after - Duration::seconds(1))
}

/// The leaf's notAfter, if it parses.
pub fn leaf_not_after(der: &[u8]) -> Option<OffsetDateTime> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

impl rustls::server::danger::ClientCertVerifier for ExpiredWithin {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.strict.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        let error = match self
            .strict
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        let expired = matches!(
            error,
            Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        );
        let now_at = i64::try_from(now.as_secs())
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        let above: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        let at = now_at
            .filter(|_| expired)
            .and_then(|now| rejoin_time(end_entity.as_ref(), &above, now, self.window));
        let Some(at) = at else {
            return Err(error);
        };
        // Everything in the chain must have been valid at the leaf's last second.
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.unix_timestamp()).unwrap_or(0),
        ));
        self.strict
            .verify_client_cert(end_entity, intermediates, at)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// A rustls server configuration presenting the certificate of `identity`, accepting (but not
/// requiring) client certificates issued by the CA in `client_issuer_pem`.
/// Certificate validity (client certificates here) is judged at `clock`'s time: the attestor's
/// one clock, so that issuance and verification agree (and tests can move both).
pub fn server_config(
    identity: Arc<dyn ResolvesServerCert>,
    client_issuer_pem: &str,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    config_with_clients(identity, client_issuer_pem, clock, ClientAuth::Optional)
}

/// The Audit port's TLS: the attestor's SVID, and a client certificate chaining to one of
/// `roots_pem` is required (the Audit service then checks that it is an auditor's).
pub fn audit_server_config(
    identity: Arc<dyn ResolvesServerCert>,
    roots_pem: &str,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    config_with_clients(identity, roots_pem, clock, ClientAuth::Required)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// Enrollment comes without a client certificate; renewal with one.
    Optional,
    Required,
}

fn config_with_clients(
    identity: Arc<dyn ResolvesServerCert>,
    client_issuer_pem: &str,
    clock: Arc<dyn Clock>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let issuers = garrison_ca::certificates_from_pem(client_issuer_pem)
        .map_err(|e| TlsConfigError::ClientIssuer(e.to_string()))?;
    for der in issuers {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| TlsConfigError::ClientIssuer(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::ClientIssuer("no certificate in PEM".into()));
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    finish_config(provider, clock, verifier, identity)
}

fn finish_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    clock: Arc<dyn Clock>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    identity: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut config = ServerConfig::builder_with_details(provider, Arc::new(ClockTime(clock)))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use garrison_ca::{
        Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole,
        SubjectKey, TrustDomain,
    };
    use ring::rand::SystemRandom;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    #[derive(Debug)]
    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst)).unwrap()
        }
    }

    fn site_ca(now: OffsetDateTime, site_ttl: Duration) -> Authority {
        let rng = SystemRandom::new();
        let root = RootParams {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            name: "root".into(),
            ttl: Duration::days(30),
            path_len: 1,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        };
        let root = Authority::from_issued(Authority::new_root(&root, now, &rng).unwrap()).unwrap();
        let site = IntermediateParams {
            name: "a".into(),
            role: CaRole::Site("a".into()),
            ttl: site_ttl,
            path_len: PathLen::OneBelowIssuer,
            subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
        };
        Authority::from_issued(root.issue_intermediate(site, now, &rng).unwrap()).unwrap()
    }

    fn attestor_svid(ca: &Authority, at: OffsetDateTime) -> garrison_ca::Issued {
        ca.issue_site_role_svid(
            SiteRole::Attestor,
            Duration::hours(1),
            SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            at,
            &SystemRandom::new(),
        )
        .unwrap()
    }

    #[test]
    fn a_rejoin_needs_the_credential_of_an_expired_site_ca() {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let window = Duration::days(30);
        let ca = site_ca(now, Duration::days(10));
        let refs = |chain: &[Vec<u8>]| chain.iter().map(|c| c.to_vec()).collect::<Vec<_>>();
        // Issued at the CA's last minute: capped at its expiry. Qualifies after it, within
        // the window, judged at the leaf's last second.
        let last = attestor_svid(&ca, ca.not_after() - Duration::minutes(1));
        let chain = refs(&last.chain);
        let above: Vec<&[u8]> = chain[1..].iter().map(Vec::as_slice).collect();
        let after = ca.not_after() + Duration::days(1);
        assert_eq!(
            rejoin_time(&chain[0], &above, after, window),
            Some(ca.not_after() - Duration::seconds(1))
        );
        assert_eq!(rejoin_time(&chain[0], &above, after + window, window), None);
        assert_eq!(
            rejoin_time(
                &chain[0],
                &above,
                ca.not_after() - Duration::minutes(1),
                window
            ),
            None,
            "the CA has not expired"
        );
        // An old leaf of a CA still valid does not qualify, even beside a certificate made
        // to expire with it: the site CA is the one that signed the leaf.
        let old = attestor_svid(&ca, now);
        let decoy = site_ca(now, Duration::hours(1));
        let chain = refs(&old.chain);
        let decoy_der = decoy.certificate().to_vec();
        let above: Vec<&[u8]> = vec![decoy_der.as_slice(), chain[1].as_slice()];
        assert_eq!(
            leaf_not_after(&chain[0]),
            leaf_not_after(&decoy_der),
            "the decoy expires with the leaf"
        );
        assert_eq!(
            rejoin_time(&chain[0], &above, now + Duration::hours(2), window),
            None
        );
    }

    fn rotating(ca: Authority, clock: Arc<TestClock>) -> RotatingServerCert {
        let issue = move |now| {
            ca.issue_site_role_svid(
                SiteRole::Attestor,
                Duration::hours(24),
                SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                now,
                &SystemRandom::new(),
            )
        };
        RotatingServerCert::new(Box::new(issue), clock).unwrap()
    }

    fn validity(cert: &Arc<CertifiedKey>) -> (i64, i64) {
        let (_, x509) = X509Certificate::from_der(cert.cert[0].as_ref()).unwrap();
        (
            x509.validity().not_before.timestamp(),
            x509.validity().not_after.timestamp(),
        )
    }

    #[test]
    fn the_server_svid_is_reissued_after_half_its_life_and_never_served_expired() {
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(start.unix_timestamp())));
        let cert = rotating(site_ca(start, Duration::days(20)), Arc::clone(&clock));
        let first = cert.certificate_at(clock.now());
        // Before half-life: the same certificate.
        clock.0.fetch_add(11 * 3600, Ordering::SeqCst);
        assert!(Arc::ptr_eq(&first, &cert.certificate_at(clock.now())));
        // The attestor runs for ten days: every handshake gets a certificate valid then.
        for _ in 0..(10 * 24) {
            clock.0.fetch_add(3600, Ordering::SeqCst);
            let now = clock.now().unix_timestamp();
            let (not_before, not_after) = validity(&cert.certificate_at(clock.now()));
            assert!(
                not_before <= now && now < not_after,
                "served an invalid SVID"
            );
        }
        assert!(!Arc::ptr_eq(&first, &cert.certificate_at(clock.now())));
    }

    #[test]
    fn a_failed_reissue_keeps_the_current_certificate_and_retries_later() {
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(start.unix_timestamp())));
        // The site CA expires 13 h from now: the first re-issue (at 12 h) works, capped at
        // the CA's expiry; after the CA has expired, re-issue fails.
        let cert = rotating(site_ca(start, Duration::hours(13)), Arc::clone(&clock));
        clock.0.fetch_add(14 * 3600, Ordering::SeqCst);
        let kept = cert.certificate_at(clock.now());
        assert_eq!(cert.served().refresh_at, clock.now() + RETRY_AFTER_FAILURE);
        clock.0.fetch_add(30, Ordering::SeqCst);
        assert!(Arc::ptr_eq(&kept, &cert.certificate_at(clock.now())));
    }
}
