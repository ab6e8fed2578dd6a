//! The site CA's certificate for the log key, and how an auditor checks it.
//!
//! The certificate is an X.509 leaf for `spiffe://<td>/site/<site>/log` whose subject key is
//! the Ed25519 log key, issued by the site CA (`garrison_ca::Authority::issue_site_role_svid`
//! with `SiteRole::Log`). An auditor holding the root certificates checks:
//!
//! 1. the chain to a root (webpki), at the certificate's own notBefore: a checkpoint signed
//!    while the key was certified stays checkable after the certificate expires, which is
//!    what an audit months later needs. (The key is an attestor's; a stolen key could sign
//!    after expiry too, so an auditor also compares checkpoints against the hub's witnessed
//!    copies.)
//! 2. that every CA on the path may vouch for the site (`garrison_ca::check_path_scope_der`):
//!    another site's CA cannot certify this site's log key;
//! 3. that the SPIFFE ID is exactly the log identity of the origin's site and trust domain;
//! 4. that the key is Ed25519.

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

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

impl LogKeyCertificate {
    /// Checks the certificate against `roots` (DER) for the log `origin` and returns the
    /// certified Ed25519 public key.
    pub fn verify(&self, roots: &[Vec<u8>], origin: &str) -> Result<[u8; 32], TransparencyError> {
        let (trust_domain, site) = parse_site_origin(origin)
            .ok_or_else(|| refuse(format!("{origin:?} is not a site log origin")))?;
        let (_, cert) = X509Certificate::from_der(&self.certificate)
            .map_err(|_| refuse("the certificate does not parse".to_owned()))?;
        let expected = format!("spiffe://{trust_domain}/site/{site}/log");
        let id = garrison_ca::spiffe_uri(&cert).ok_or_else(|| refuse("no SPIFFE ID".to_owned()))?;
        if id != expected {
            return Err(refuse(format!("certifies {id}, not {expected}")));
        }
        let key = ed25519_key(&cert)?;
        let not_before = cert.validity().not_before.timestamp();
        let path = self.verify_chain(roots, not_before)?;
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
        &self,
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
        let intermediates: Vec<CertificateDer<'_>> = self
            .intermediates
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let leaf = CertificateDer::from(self.certificate.as_slice());
        let end_entity =
            webpki::EndEntityCert::try_from(&leaf).map_err(|e| refuse(format!("{e:?}")))?;
        let seconds =
            u64::try_from(at_unix).map_err(|_| refuse("notBefore before 1970".to_owned()))?;
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
