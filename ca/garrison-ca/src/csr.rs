//! PKCS#10 certificate signing requests: only the public key is taken, and only after the
//! request's self-signature verifies. Subject and requested extensions are ignored: the
//! issuer decides the identity.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::CaError;

/// The smallest RSA modulus certified, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A CSR whose signature verified; it carries nothing but the subject public key.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    spki_der: Vec<u8>,
}

impl VerifiedCsr {
    /// Parse a DER CSR, verify its self-signature and check the key is one we certify.
    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|_| CaError::CsrUnparseable)?;
        if !rest.is_empty() {
            return Err(CaError::CsrUnparseable);
        }
        // The key is checked first so that a key we would never certify (which ring may also
        // refuse to verify with, e.g. RSA-1024) is reported as such, not as a bad signature.
        let spki = &csr.certification_request_info.subject_pki;
        check_key(spki)?;
        csr.verify_signature()
            .map_err(|_| CaError::CsrSignatureInvalid)?;
        Ok(VerifiedCsr {
            spki_der: spki.raw.to_vec(),
        })
    }

    /// Parse a PEM CSR (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`).
    pub fn from_pem(text: &str) -> Result<Self, CaError> {
        let block = pem::parse(text).map_err(|source| CaError::PemMalformed { source })?;
        match block.tag() {
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Self::from_der(block.contents()),
            _ => Err(CaError::PemMissing {
                label: "CERTIFICATE REQUEST",
            }),
        }
    }

    /// The subject public key, as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }
}

fn check_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CaError> {
    let parsed = spki.parsed().map_err(|_| CaError::CsrKeyUnacceptable {
        reason: "public key does not parse",
    })?;
    match parsed {
        PublicKey::EC(point) if matches!(point.key_size(), 256 | 384) => Ok(()),
        PublicKey::EC(_) => Err(CaError::CsrKeyUnacceptable {
            reason: "only P-256 and P-384 EC keys are certified",
        }),
        PublicKey::RSA(rsa) if rsa.key_size() >= MIN_RSA_BITS => Ok(()),
        PublicKey::RSA(_) => Err(CaError::CsrKeyUnacceptable {
            reason: "RSA keys must be at least 2048 bits",
        }),
        _ => Err(CaError::CsrKeyUnacceptable {
            reason: "only EC P-256/P-384 and RSA >= 2048 keys are certified",
        }),
    }
}
