//! The client side: verify the server's SVID against the bundle and an expected SPIFFE ID.

use std::sync::Arc;

use garrison_ca::SpiffeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::identity::{Identity, TlsError, certificates_from_pem, spiffe_id_of};

/// Accepts a server certificate only if it chains to the bundle for server authentication
/// and its SPIFFE ID is exactly the expected one. The TLS server name is not used.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    expected: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier for `expected`, anchored at the PEM `bundle`.
    pub fn new(bundle_pem: &[u8], expected: SpiffeId) -> Result<Self, TlsError> {
        let anchors = certificates_from_pem(bundle_pem)?
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(TlsError::BadTrustAnchor)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        Ok(SpiffeServerVerifier {
            anchors,
            expected,
            algorithms,
        })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::InvalidCertificate(webpki_error(e)))?;
        let path = cert
            .verify_for_usage(
                self.algorithms.all,
                &self.anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| rustls::Error::InvalidCertificate(webpki_error(e)))?;
        let id = spiffe_id_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })?;
        if id != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        check_path_scope(&id, &path)
            .map_err(|e| rustls::Error::InvalidCertificate(scope_error(e)))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The containment rule of [`garrison_ca::scope`] over the intermediates webpki actually
/// used (never the list the peer sent) and the anchor it ended at: a site CA vouches only
/// for its own site, so a stolen site-a CA cannot present itself as site-b's attestor, and
/// an anchor that states a role (an intermediate placed in a bundle) is held to that role.
pub fn check_path_scope(
    id: &SpiffeId,
    path: &webpki::VerifiedPath<'_>,
) -> Result<(), garrison_ca::CaError> {
    let issuers: Vec<CertificateDer<'_>> =
        path.intermediate_certificates().map(|c| c.der()).collect();
    let anchor = garrison_ca::CaRole::of_anchor_subject(path.anchor().subject.as_ref())?;
    garrison_ca::check_path_scope_der(id, issuers.iter().map(|c| c.as_ref()), anchor)
}

fn scope_error(error: garrison_ca::CaError) -> rustls::CertificateError {
    rustls::CertificateError::Other(rustls::OtherError(Arc::new(error)))
}

fn webpki_error(error: webpki::Error) -> rustls::CertificateError {
    match error {
        webpki::Error::CertExpired { .. } => rustls::CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => rustls::CertificateError::NotValidYet,
        webpki::Error::UnknownIssuer => rustls::CertificateError::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => rustls::CertificateError::BadSignature,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}

/// ring's provider with AES-128-GCM/SHA-256 suites first: the same strength class for our
/// ECDSA P-256 certificates, and SHA-256 has CPU instructions where SHA-384 (the transcript
/// hash of the AES-256 suite) often does not; an attestor serving a storm of handshakes
/// spends measurably less on them. Every ring suite stays enabled.
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// A rustls client configuration (ring, HTTP/2) that authenticates the server as `expected`
/// under `bundle_pem`, presenting `identity` as client certificate when given.
pub fn client_config(
    bundle_pem: &[u8],
    expected: SpiffeId,
    identity: Option<Identity>,
) -> Result<ClientConfig, TlsError> {
    let verifier = Arc::new(SpiffeServerVerifier::new(bundle_pem, expected)?);
    client_config_with_verifier(verifier, identity)
}

/// [`client_config`] with the server authenticated by `verifier` instead: for a caller that
/// wraps a [`SpiffeServerVerifier`] (the load generator memoizes its chain checks). Same
/// provider, protocol versions, client certificate and ALPN.
pub fn client_config_with_verifier(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<Identity>,
) -> Result<ClientConfig, TlsError> {
    client_config_at(
        verifier,
        identity,
        Arc::new(rustls::time_provider::DefaultTimeProvider),
    )
}

/// [`client_config_with_verifier`] judging certificate validity at `time`'s time instead of
/// the system clock: for a client whose clock is injected (tests that move time).
pub fn client_config_at(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<Identity>,
    time: Arc<dyn rustls::time_provider::TimeProvider>,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(provider());
    let builder =
        ClientConfig::builder_with_details(Arc::clone(&provider) as Arc<CryptoProvider>, time)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .dangerous() // not dangerous: the custom verifier is stricter than name checks
            .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(TlsError::Config)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A lazily connecting gRPC channel to `address` (`https://host[:port]`, default port 443)
/// over TLS with `config`. The TLS server name sent is the URI's host; identity is checked by
/// the config.
pub fn connect(
    address: &str,
    config: impl Into<Arc<ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    // TLS is done by the connector below, so tonic must see a plain-HTTP/2 endpoint: it
    // refuses https URIs unless its own TLS stack is configured.
    let endpoint = Endpoint::from_shared(plain_endpoint(address))?
        // Long enough to wait out an attestor at its connection limit during a storm (it
        // admits newcomers as earlier connections close); the agent backs off after it.
        .connect_timeout(std::time::Duration::from_secs(30));
    let connector = TlsConnector::from(config.into());
    let service = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(service))
}

/// `https://host[:port]` → `http://host:port`; other forms are left for tonic to judge.
fn plain_endpoint(address: &str) -> String {
    match address.strip_prefix("https://") {
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            if has_port {
                format!("http://{authority}")
            } else {
                format!("http://{authority}:443")
            }
        }
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{plain_endpoint, provider};

    #[test]
    fn aes_128_sha_256_is_offered_first_and_nothing_is_dropped() {
        let ours = provider();
        let ring = rustls::crypto::ring::default_provider();
        let first = ours.cipher_suites.first().map(|s| s.suite());
        assert_eq!(first, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        let mut a: Vec<_> = ours.cipher_suites.iter().map(|s| s.suite()).collect();
        let mut b: Vec<_> = ring.cipher_suites.iter().map(|s| s.suite()).collect();
        a.sort_by_key(|s| u16::from(*s));
        b.sort_by_key(|s| u16::from(*s));
        assert_eq!(a, b);
    }

    #[test]
    fn https_addresses_become_plain_endpoints_with_a_port() {
        assert_eq!(
            plain_endpoint("https://127.0.0.1:8443"),
            "http://127.0.0.1:8443"
        );
        assert_eq!(
            plain_endpoint("https://attestor.example"),
            "http://attestor.example:443"
        );
        assert_eq!(plain_endpoint("https://[::1]:8443/"), "http://[::1]:8443");
    }
}
