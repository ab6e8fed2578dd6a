//! Certificates for the Ed25519 note keys, and how an auditor or a site checks them.
//!
//! * The site's **log key** ([`LogKeyCertificate`]): an X.509 leaf for
//!   `spiffe://<td>/site/<site>/log`, issued by the site CA
//!   (`garrison_ca::Authority::issue_site_role_svid` with `SiteRole::Log`).
//! * The hub's **witness key** ([`WitnessKeyCertificate`]): a leaf for
//!   `spiffe://<td>/hub/witness`, issued by a hub CA
//!   (`garrison_ca::Authority::issue_hub_role_svid` with `HubRole::Witness`).
//!
//! Both are checked the same way, by one function, against the root certificates only:
//!
//! 1. the chain to a root (webpki), at the certificate's own notBefore: a note signed while
//!    the key was certified stays checkable after the certificate expires, which is what an
//!    audit months later needs. (A stolen key could sign after expiry too, so an auditor also
//!    compares checkpoints against the hub's witnessed copies.)
//! 2. that every CA on the path may vouch for the identity
//!    (`garrison_ca::check_path_scope_der`): another site's CA cannot certify this site's log
//!    key, and only hub CAs stand above the witness;
//! 3. that the SPIFFE ID is exactly the expected one;
//! 4. that the key is Ed25519.

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::witness::checked_trust_domain;
use crate::{TransparencyError, parse_site_origin};

/// Ed25519's algorithm identifier, 1.3.101.112.
const ED25519_OID: &str = "1.3.101.112";

/// A log key certificate with the intermediates that lead to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKeyCertificate {
    /// The log key's certificate, DER.
    pub certificate: Vec<u8>,
    /// The CAs above it, issuer first, excluding the root.
    pub intermediates: Vec<Vec<u8>>,
}

/// A chain in PEM (the key's certificate first, then the CAs above it) split into the
/// certificate and its intermediates.
fn split_pem_chain(chain_pem: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), TransparencyError> {
    let mut chain = garrison_ca::certificates_from_pem(chain_pem)
        .map_err(|e| refuse(format!("the chain does not parse: {e}")))?;
    if chain.is_empty() {
        return Err(refuse("the chain holds no certificate".to_owned()));
    }
    let certificate = chain.remove(0);
    Ok((certificate, chain))
}

impl LogKeyCertificate {
    /// The certificate and intermediates of a PEM chain, as logs keep them (not verified).
    pub fn from_pem(chain_pem: &str) -> Result<Self, TransparencyError> {
        let (certificate, intermediates) = split_pem_chain(chain_pem)?;
        Ok(LogKeyCertificate {
            certificate,
            intermediates,
        })
    }

    /// The Ed25519 key the certificate states, **not verified**: for filing the chain
    /// beside its key (an archive); [`verify`](Self::verify) is what vouches for it.
    pub fn stated_key(&self) -> Result<[u8; 32], TransparencyError> {
        let (_, cert) = X509Certificate::from_der(&self.certificate)
            .map_err(|_| refuse("the certificate does not parse".to_owned()))?;
        ed25519_key(&cert)
    }

    /// Checks the certificate against `roots` (DER) for the log `origin` and returns the
    /// certified Ed25519 public key.
    pub fn verify(&self, roots: &[Vec<u8>], origin: &str) -> Result<[u8; 32], TransparencyError> {
        let (trust_domain, site) = parse_site_origin(origin)
            .ok_or_else(|| refuse(format!("{origin:?} is not a site log origin")))?;
        let expected = format!(
            "spiffe://{trust_domain}/site/{site}/{}",
            garrison_ca::SiteRole::Log.segment()
        );
        verify_certified_key(&self.certificate, &self.intermediates, roots, &expected)
    }
}

/// The hub CA's certificate for the witness key, with the intermediates that lead to the
/// root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKeyCertificate {
    /// The witness key's certificate, DER.
    pub certificate: Vec<u8>,
    /// The CAs above it, issuer first, excluding the root.
    pub intermediates: Vec<Vec<u8>>,
}

impl WitnessKeyCertificate {
    /// The certificate and intermediates of a PEM chain, as the hub sends it (not verified).
    pub fn from_pem(chain_pem: &str) -> Result<Self, TransparencyError> {
        let (certificate, intermediates) = split_pem_chain(chain_pem)?;
        Ok(WitnessKeyCertificate {
            certificate,
            intermediates,
        })
    }

    /// Checks the certificate against `roots` (DER) as the witness of `trust_domain`
    /// (`spiffe://<trust_domain>/hub/witness`, issued through hub CAs only) and returns the
    /// certified Ed25519 public key.
    pub fn verify(
        &self,
        roots: &[Vec<u8>],
        trust_domain: &str,
    ) -> Result<[u8; 32], TransparencyError> {
        let trust_domain = checked_trust_domain(trust_domain)?;
        let expected = format!(
            "spiffe://{trust_domain}/hub/{}",
            garrison_ca::HubRole::Witness.segment()
        );
        verify_certified_key(&self.certificate, &self.intermediates, roots, &expected)
    }
}

/// The checks both key certificates share (see the module documentation): returns the
/// Ed25519 key of `certificate` if it certifies exactly `expected_id` through a path to
/// `roots` whose CAs may vouch for that ID.
fn verify_certified_key(
    certificate: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    expected_id: &str,
) -> Result<[u8; 32], TransparencyError> {
    let (_, cert) = X509Certificate::from_der(certificate)
        .map_err(|_| refuse("the certificate does not parse".to_owned()))?;
    let id = garrison_ca::spiffe_uri(&cert).ok_or_else(|| refuse("no SPIFFE ID".to_owned()))?;
    if id != expected_id {
        return Err(refuse(format!("certifies {id}, not {expected_id}")));
    }
    let key = ed25519_key(&cert)?;
    let not_before = cert.validity().not_before.timestamp();
    let path = verify_chain(certificate, intermediates, roots, not_before)?;
    let spiffe = garrison_ca::SpiffeId::parse(&id).map_err(|e| refuse(e.to_string()))?;
    let anchor = garrison_ca::CaRole::of_anchor_subject(&path.anchor_subject)
        .map_err(|e| refuse(e.to_string()))?;
    garrison_ca::check_path_scope_der(
        &spiffe,
        path.intermediates.iter().map(Vec::as_slice),
        anchor,
    )
    .map_err(|e| refuse(e.to_string()))?;
    Ok(key)
}

fn verify_chain(
    certificate: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    at_unix: i64,
) -> Result<VerifiedPath, TransparencyError> {
    let anchors = roots
        .iter()
        .map(|d| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(d.as_slice()))
                .map(|a| a.to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("a root does not parse: {e:?}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf = CertificateDer::from(certificate);
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf).map_err(|e| refuse(format!("{e:?}")))?;
    let seconds = u64::try_from(at_unix).map_err(|_| refuse("notBefore before 1970".to_owned()))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| refuse(format!("does not chain to the root: {e:?}")))?;
    Ok(VerifiedPath {
        intermediates: path
            .intermediate_certificates()
            .map(|c| c.der().to_vec())
            .collect(),
        anchor_subject: path.anchor().subject.as_ref().to_vec(),
    })
}

/// The intermediates webpki used (issuer first) and the anchor's subject.
struct VerifiedPath {
    intermediates: Vec<Vec<u8>>,
    anchor_subject: Vec<u8>,
}

fn ed25519_key(cert: &X509Certificate<'_>) -> Result<[u8; 32], TransparencyError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return Err(refuse("the certified key is not Ed25519".to_owned()));
    }
    <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
        .map_err(|_| refuse("the Ed25519 key is not 32 bytes".to_owned()))
}

fn refuse(reason: String) -> TransparencyError {
    TransparencyError::Certificate { reason }
}
