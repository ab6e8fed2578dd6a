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
//! Unchanged: the attestor's SVID chain and key, client certificates optional (enrollment has
//! none, renewal presents its SVID) and verified against the site CA (see
//! [`crate::server::attestor_identity`]), ALPN `h2` only.

use std::sync::Arc;

use garrison_spiffe_tls::Identity;
use rustls::RootCertStore;
use rustls::server::{NoServerSessionStorage, ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::CertificateDer;

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

/// A rustls server configuration presenting `identity`, accepting (but not requiring) client
/// certificates issued by the CA in `client_issuer_pem`.
pub fn server_config(
    identity: Identity,
    client_issuer_pem: &str,
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
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}
