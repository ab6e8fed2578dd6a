//! The SVID key: a fresh ECDSA P-256 key per enrollment or renewal, generated in software
//! (the attestor only needs its public key, through a PKCS#10 request).

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _,
};
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::AgentError;

/// A freshly generated P-256 key pair. `Debug` does not show the private key.
pub struct NodeKey {
    key_pair: KeyPair,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("algorithm", &"ECDSA P-256")
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl NodeKey {
    /// Generates a key with randomness from `rng`.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, AgentError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
            .map_err(|_| AgentError::GenerateKey)?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_ref());
        let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
            .map_err(|source| AgentError::BuildCsr { source })?;
        Ok(Self { key_pair })
    }

    /// A PKCS#10 request (DER) for this key, signed with it. The subject is empty and no
    /// extensions are requested: the attestor decides the SPIFFE ID and the profile.
    pub fn csr_der(&self) -> Result<Vec<u8>, AgentError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key_pair)
            .map_err(|source| AgentError::BuildCsr { source })?;
        Ok(csr.der().to_vec())
    }

    /// The SubjectPublicKeyInfo, DER: what the issued certificate must carry.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key_pair.subject_public_key_info()
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for `svid.key`.
    pub fn pkcs8_pem(&self) -> String {
        self.key_pair.serialize_pem()
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use x509_parser::prelude::{FromDer as _, X509CertificationRequest};

    use super::*;

    #[test]
    fn csr_parses_and_its_signature_verifies() {
        let key = NodeKey::generate(&SystemRandom::new()).unwrap();
        let der = key.csr_der().unwrap();
        let (rest, csr) = X509CertificationRequest::from_der(&der).unwrap();
        assert!(rest.is_empty());
        csr.verify_signature().unwrap();
        let info = &csr.certification_request_info;
        assert_eq!(info.subject_pki.raw, key.public_key_der().as_slice());
        assert_eq!(info.subject.iter().count(), 0, "empty subject");
        assert_eq!(
            info.subject_pki.algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1",
            "id-ecPublicKey"
        );
    }

    #[test]
    fn tampered_csr_fails_verification() {
        let key = NodeKey::generate(&SystemRandom::new()).unwrap();
        let mut der = key.csr_der().unwrap();
        // Flip a bit inside the public key (well inside the CertificationRequestInfo).
        let spki = key.public_key_der();
        let at = der
            .windows(spki.len())
            .position(|w| w == spki.as_slice())
            .unwrap()
            + spki.len()
            - 1;
        if let Some(byte) = der.get_mut(at) {
            *byte ^= 1;
        }
        let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
        assert!(csr.verify_signature().is_err());
    }

    #[test]
    fn keys_are_fresh_and_pem_is_pkcs8() {
        let rng = SystemRandom::new();
        let a = NodeKey::generate(&rng).unwrap();
        let b = NodeKey::generate(&rng).unwrap();
        assert_ne!(a.public_key_der(), b.public_key_der());
        let pem = a.pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{a:?}").contains("BEGIN"));
        // Loadable as a TLS identity key.
        let parsed = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(parsed.subject_public_key_info(), a.public_key_der());
    }
}
