//! Private keys: generated with a caller-supplied RNG, stored as PKCS#8 PEM, never printed.

use std::fmt;

use ring::rand::SecureRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
};

use crate::error::CaError;

/// The key algorithms Garrison issues and certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
}

impl KeyAlgorithm {
    fn ring_alg(self) -> &'static ring::signature::EcdsaSigningAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
            KeyAlgorithm::EcdsaP384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    fn rcgen_alg(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// A CA or workload private key. `Debug` never shows key material.
pub struct PrivateKey {
    pair: rcgen::KeyPair,
}

impl PrivateKey {
    /// Generate a fresh key with randomness from `rng`.
    pub fn generate(alg: KeyAlgorithm, rng: &dyn SecureRandom) -> Result<Self, CaError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg.ring_alg(), rng)
            .map_err(|_| CaError::KeyGeneration)?;
        let pair =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), alg.rcgen_alg())
                .map_err(|_| CaError::KeyGeneration)?;
        Ok(PrivateKey { pair })
    }

    /// Load a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, CaError> {
        let block = pem::parse(pem_text).map_err(|source| CaError::PemMalformed { source })?;
        if block.tag() != "PRIVATE KEY" {
            return Err(CaError::PemMissing {
                label: "PRIVATE KEY",
            });
        }
        let pair =
            rcgen::KeyPair::try_from(block.contents()).map_err(|_| CaError::KeyUnparseable)?;
        let alg = pair.algorithm();
        if alg != &rcgen::PKCS_ECDSA_P256_SHA256 && alg != &rcgen::PKCS_ECDSA_P384_SHA384 {
            return Err(CaError::KeyUnparseable);
        }
        Ok(PrivateKey { pair })
    }

    /// The key as PKCS#8 PEM, wrapped so that it is not printed by accident.
    pub fn to_pkcs8_pem(&self) -> SecretPem {
        SecretPem(self.pair.serialize_pem())
    }

    /// A PKCS#10 request (DER) for this key, self-signed, with only `common_name` as subject:
    /// the issuer decides everything else.
    pub fn csr_der(&self, common_name: &str) -> Result<Vec<u8>, CaError> {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&self.pair)
            .map_err(|source| CaError::Signing { source })?;
        Ok(csr.der().to_vec())
    }

    /// The DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    pub(crate) fn key_pair(&self) -> &rcgen::KeyPair {
        &self.pair
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.pair.algorithm())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// PEM text of a private key. Its `Debug` hides the contents; use [`SecretPem::expose`] only to
/// write the key to its 0600 file.
pub struct SecretPem(String);

impl SecretPem {
    /// The PEM text itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_public_key_and_debug_hides_it() {
        let rng = ring::rand::SystemRandom::new();
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let key = PrivateKey::generate(alg, &rng).unwrap();
            let pem = key.to_pkcs8_pem();
            let again = PrivateKey::from_pkcs8_pem(pem.expose()).unwrap();
            assert_eq!(key.public_key_der(), again.public_key_der());
            assert!(!format!("{key:?}{pem:?}").contains("PRIVATE KEY"));
        }
    }

    #[test]
    fn rejects_non_key_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            PrivateKey::from_pkcs8_pem(pem),
            Err(CaError::PemMissing { .. })
        ));
        assert!(matches!(
            PrivateKey::from_pkcs8_pem("not pem"),
            Err(CaError::PemMalformed { .. })
        ));
    }
}
