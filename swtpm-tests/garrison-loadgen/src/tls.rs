//! The generator's TLS client side: the same handshake a real agent makes, with less of the
//! generator's own CPU spent on it.
//!
//! A real agent verifies the attestor's certificate chain on every connection. The generator
//! opens hundreds of connections a second to one attestor with one chain, so checking that
//! chain again each time only takes CPU away from the attestor it shares the machine with
//! (a fifth of the generator's CPU in a profile). [`MemoizingVerifier`] runs the full check
//! once per distinct chain and remembers chains that passed; the handshake signature (proof
//! that the server holds the certificate's key) is still verified on every connection. The
//! attestor sees exactly the handshake a real agent makes: a full one, never resumed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use garrison_spiffe_tls::SpiffeServerVerifier;
use ring::digest::{Context, SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Chains remembered at most; past it the memory starts over (an attestor re-issuing its
/// SVID during a run adds one).
const MAX_REMEMBERED: usize = 64;

/// A [`SpiffeServerVerifier`] that remembers the chains it accepted.
#[derive(Debug)]
pub struct MemoizingVerifier {
    inner: SpiffeServerVerifier,
    accepted: Mutex<HashSet<[u8; 32]>>,
}

impl MemoizingVerifier {
    /// Wraps `inner`.
    pub fn new(inner: SpiffeServerVerifier) -> Arc<Self> {
        Arc::new(Self {
            inner,
            accepted: Mutex::new(HashSet::new()),
        })
    }

    /// How many distinct chains have passed the full check.
    pub fn remembered(&self) -> usize {
        self.accepted.lock().map_or(0, |set| set.len())
    }
}

/// SHA-256 over the length-prefixed certificates, leaf first.
fn chain_digest(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    for cert in std::iter::once(end_entity).chain(intermediates) {
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

impl ServerCertVerifier for MemoizingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = chain_digest(end_entity, intermediates);
        if self.accepted.lock().is_ok_and(|set| set.contains(&digest)) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut set) = self.accepted.lock() {
            if set.len() >= MAX_REMEMBERED {
                set.clear();
            }
            set.insert(digest);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use garrison_ca::SpiffeId;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, SanType,
    };

    use super::*;

    const ATTESTOR: &str = "spiffe://example.org/site/a/attestor";

    /// A root (PEM), and an attestor leaf signed by a site CA under it (leaf first).
    fn root_and_leaf() -> (String, Vec<CertificateDer<'static>>) {
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = CertifiedIssuer::self_signed(root, KeyPair::generate().unwrap()).unwrap();
        let mut site = CertificateParams::new(Vec::<String>::new()).unwrap();
        site.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        site.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 72]), "site/a");
        let site = CertifiedIssuer::signed_by(site, KeyPair::generate().unwrap(), &root).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![SanType::URI(ATTESTOR.try_into().unwrap())];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &site)
            .unwrap();
        (root.pem(), vec![leaf.der().clone(), site.der().clone()])
    }

    fn verify(verifier: &MemoizingVerifier, chain: &[CertificateDer<'_>]) -> bool {
        let name = ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .is_ok()
    }

    fn verifier(bundle_pem: &str) -> Arc<MemoizingVerifier> {
        let expected = SpiffeId::parse(ATTESTOR).unwrap();
        MemoizingVerifier::new(SpiffeServerVerifier::new(bundle_pem.as_bytes(), expected).unwrap())
    }

    #[test]
    fn a_chain_that_passed_is_remembered_and_passes_again() {
        let (root, leaf) = root_and_leaf();
        let verifier = verifier(&root);
        assert!(verify(&verifier, &leaf));
        assert!(verify(&verifier, &leaf));
        assert_eq!(verifier.remembered(), 1);
    }

    #[test]
    fn a_chain_that_failed_is_never_remembered_and_fails_every_time() {
        let (_, leaf) = root_and_leaf();
        let (other_root, _) = root_and_leaf();
        let verifier = verifier(&other_root);
        assert!(!verify(&verifier, &leaf));
        assert!(!verify(&verifier, &leaf));
        assert_eq!(verifier.remembered(), 0);
    }

    #[test]
    fn a_remembered_chain_does_not_vouch_for_another_one() {
        let (root, leaf) = root_and_leaf();
        let (_, stranger) = root_and_leaf();
        let verifier = verifier(&root);
        assert!(verify(&verifier, &leaf));
        assert!(!verify(&verifier, &stranger));
        assert_eq!(verifier.remembered(), 1);
    }
}
