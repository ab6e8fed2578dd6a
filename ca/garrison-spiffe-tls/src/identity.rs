//! Certificates and keys as TLS identities, and SPIFFE IDs read from peer certificates.

use garrison_ca::SpiffeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a TLS identity could not be loaded or a peer not be identified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input held no certificate.
    #[error("no certificate found in the PEM input")]
    NoCertificate,
    /// A PEM input could not be decoded.
    #[error("malformed PEM")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// A PEM input held no private key.
    #[error("no private key found in the PEM input")]
    NoPrivateKey,
    /// A trust anchor could not be used.
    #[error("trust bundle certificate is not a usable trust anchor")]
    BadTrustAnchor(#[source] webpki::Error),
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
    /// The certificate has no single valid SPIFFE ID URI SAN.
    #[error("certificate carries no valid SPIFFE ID")]
    NoSpiffeId,
}

/// A certificate chain (leaf first) with its private key: what a TLS endpoint presents.
pub struct Identity {
    /// Leaf first, then intermediates (not the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Load from PEM: `chain` with the leaf first, `key` as PKCS#8.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
            other => TlsError::Pem(other),
        })?;
        Ok(Identity { chain, key })
    }
}

/// All certificates in a PEM text.
pub(crate) fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// The SPIFFE ID of a certificate: its one URI SAN, which must be a valid SPIFFE ID.
pub fn spiffe_id_of(cert: &[u8]) -> Result<SpiffeId, TlsError> {
    let (_, cert) = X509Certificate::from_der(cert).map_err(|_| TlsError::NoSpiffeId)?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or(TlsError::NoSpiffeId)?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => SpiffeId::parse(uri).map_err(|_| TlsError::NoSpiffeId),
        _ => Err(TlsError::NoSpiffeId),
    }
}

/// The SPIFFE ID of a TLS peer from its verified chain (leaf first), if it presented one.
pub fn peer_spiffe_id(chain: &[CertificateDer<'_>]) -> Result<SpiffeId, TlsError> {
    chain
        .first()
        .ok_or(TlsError::NoSpiffeId)
        .and_then(|leaf| spiffe_id_of(leaf))
}
