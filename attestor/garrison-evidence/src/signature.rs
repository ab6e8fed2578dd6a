//! TPMT_SIGNATURE (TPM 2.0 Part 2, §11.3.4) and its verification with ring.

use std::fmt;

use garrison_eventlog::HashAlg;
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::EvidenceError;
use crate::der::{der_tlv, der_uint};
use crate::public::{
    EccCurve, PublicKey, TPM_ALG_ECDSA, TPM_ALG_RSAPSS, TPM_ALG_RSASSA, fixed_width, read_hash_alg,
    strip_leading_zeros,
};
use crate::wire::Reader;

const MAX_RSA_SIGNATURE: usize = 512;
const MAX_ECC_COORDINATE: usize = 66;

/// A signing scheme with its hash, as an AK is bound to and a signature declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// TPM_ALG_RSASSA (PKCS#1 v1.5).
    RsaSsa(HashAlg),
    /// TPM_ALG_RSAPSS.
    RsaPss(HashAlg),
    /// TPM_ALG_ECDSA.
    Ecdsa(HashAlg),
}

impl SignatureScheme {
    /// The scheme's hash: also the hash of a quote's pcrDigest.
    pub fn hash(self) -> HashAlg {
        match self {
            Self::RsaSsa(h) | Self::RsaPss(h) | Self::Ecdsa(h) => h,
        }
    }

    pub(crate) fn from_tpm(algorithm: u16, hash: HashAlg) -> Option<Self> {
        match algorithm {
            TPM_ALG_RSASSA => Some(Self::RsaSsa(hash)),
            TPM_ALG_RSAPSS => Some(Self::RsaPss(hash)),
            TPM_ALG_ECDSA => Some(Self::Ecdsa(hash)),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RsaSsa(h) => write!(f, "rsassa-{h}"),
            Self::RsaPss(h) => write!(f, "rsapss-{h}"),
            Self::Ecdsa(h) => write!(f, "ecdsa-{h}"),
        }
    }
}

/// A parsed TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmSignature {
    /// sigAlg and hash.
    pub scheme: SignatureScheme,
    /// The signature value (RSA) or r and s as the TPM gave them (ECDSA).
    pub(crate) body: SignatureBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureBody {
    Rsa(Vec<u8>),
    Ecdsa { r: Vec<u8>, s: Vec<u8> },
}

impl TpmSignature {
    /// Parses a TPMT_SIGNATURE (as `tpm2_quote -s` writes it). Nothing may follow it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut reader = Reader::new(bytes);
        let algorithm = reader.u16("TPMT_SIGNATURE.sigAlg")?;
        let hash = read_hash_alg(&mut reader, "TPMT_SIGNATURE.hash")?;
        let scheme = SignatureScheme::from_tpm(algorithm, hash).ok_or(
            EvidenceError::UnsupportedAlgorithm {
                what: "TPMT_SIGNATURE.sigAlg",
                got: algorithm,
            },
        )?;
        let body = match scheme {
            SignatureScheme::RsaSsa(_) | SignatureScheme::RsaPss(_) => SignatureBody::Rsa(
                reader
                    .tpm2b(MAX_RSA_SIGNATURE, "TPMS_SIGNATURE_RSA.sig")?
                    .to_vec(),
            ),
            SignatureScheme::Ecdsa(_) => SignatureBody::Ecdsa {
                r: reader
                    .tpm2b(MAX_ECC_COORDINATE, "TPMS_SIGNATURE_ECC.signatureR")?
                    .to_vec(),
                s: reader
                    .tpm2b(MAX_ECC_COORDINATE, "TPMS_SIGNATURE_ECC.signatureS")?
                    .to_vec(),
            },
        };
        reader.finish("TPMT_SIGNATURE")?;
        Ok(Self { scheme, body })
    }
}

/// How to verify one AK's signatures with ring.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verifier {
    Rsa(&'static ring_sig::RsaParameters),
    Ecdsa(&'static ring_sig::EcdsaVerificationAlgorithm, EcdsaEncoding),
}

/// The signature encoding a ring ECDSA verifier takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EcdsaEncoding {
    /// r || s, each left-padded to the curve size.
    Fixed,
    /// DER SEQUENCE { INTEGER r, INTEGER s }.
    Asn1,
}

impl Verifier {
    /// The ring algorithm for `scheme` on `key`, or `None` if ring (or our policy) cannot
    /// verify it. SHA-1 RSASSA is only returned when `allow_sha1` is set.
    pub(crate) fn for_key(
        scheme: SignatureScheme,
        key: &PublicKey,
        allow_sha1: bool,
    ) -> Option<Self> {
        use SignatureScheme::{Ecdsa, RsaPss, RsaSsa};
        let verifier = match (scheme, key) {
            (RsaSsa(HashAlg::Sha1), PublicKey::Rsa { .. }) if allow_sha1 => {
                Self::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY)
            }
            (RsaSsa(HashAlg::Sha256), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA256)
            }
            (RsaSsa(HashAlg::Sha384), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA384)
            }
            (RsaSsa(HashAlg::Sha512), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PKCS1_2048_8192_SHA512)
            }
            (RsaPss(HashAlg::Sha256), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA256)
            }
            (RsaPss(HashAlg::Sha384), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA384)
            }
            (RsaPss(HashAlg::Sha512), PublicKey::Rsa { .. }) => {
                Self::Rsa(&ring_sig::RSA_PSS_2048_8192_SHA512)
            }
            (Ecdsa(hash), PublicKey::Ecc { curve, .. }) => {
                let (alg, encoding) = ecdsa_algorithm(*curve, hash)?;
                Self::Ecdsa(alg, encoding)
            }
            _ => return None,
        };
        Some(verifier)
    }
}

fn ecdsa_algorithm(
    curve: EccCurve,
    hash: HashAlg,
) -> Option<(&'static ring_sig::EcdsaVerificationAlgorithm, EcdsaEncoding)> {
    match (curve, hash) {
        (EccCurve::NistP256, HashAlg::Sha256) => {
            Some((&ring_sig::ECDSA_P256_SHA256_FIXED, EcdsaEncoding::Fixed))
        }
        // ring has fixed-width verifiers only for the matched pairs; the mixed ones take DER.
        (EccCurve::NistP256, HashAlg::Sha384) => {
            Some((&ring_sig::ECDSA_P256_SHA384_ASN1, EcdsaEncoding::Asn1))
        }
        (EccCurve::NistP384, HashAlg::Sha256) => {
            Some((&ring_sig::ECDSA_P384_SHA256_ASN1, EcdsaEncoding::Asn1))
        }
        (EccCurve::NistP384, HashAlg::Sha384) => {
            Some((&ring_sig::ECDSA_P384_SHA384_FIXED, EcdsaEncoding::Fixed))
        }
        _ => None,
    }
}

/// A public key prepared for repeated verification: the ring key material is built once.
#[derive(Debug, Clone)]
pub(crate) struct PreparedKey {
    verifier: Verifier,
    /// RSA: (n, e) without leading zeros. ECDSA: the uncompressed point.
    material: KeyMaterial,
    coordinate_len: usize,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ecc(Vec<u8>),
}

impl PreparedKey {
    pub(crate) fn new(verifier: Verifier, key: &PublicKey) -> Option<Self> {
        let (material, coordinate_len) = match key {
            PublicKey::Rsa {
                exponent, modulus, ..
            } => {
                let e = exponent.to_be_bytes();
                let n = strip_leading_zeros(modulus).to_vec();
                (
                    KeyMaterial::Rsa {
                        n,
                        e: strip_leading_zeros(&e).to_vec(),
                    },
                    0,
                )
            }
            PublicKey::Ecc { curve, .. } => (
                KeyMaterial::Ecc(key.uncompressed_point()?),
                curve.coordinate_len(),
            ),
        };
        Some(Self {
            verifier,
            material,
            coordinate_len,
        })
    }

    /// Verifies `signature` over `message`. ECDSA r and s are left-padded to the curve size,
    /// as ring's fixed-width format requires.
    pub(crate) fn verify(
        &self,
        message: &[u8],
        signature: &TpmSignature,
    ) -> Result<(), EvidenceError> {
        let invalid = || EvidenceError::SignatureInvalid {
            scheme: signature.scheme.to_string(),
        };
        match (&self.verifier, &self.material, &signature.body) {
            (Verifier::Rsa(params), KeyMaterial::Rsa { n, e }, SignatureBody::Rsa(sig)) => {
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .map_err(|_| invalid())
            }
            (
                Verifier::Ecdsa(alg, encoding),
                KeyMaterial::Ecc(point),
                SignatureBody::Ecdsa { r, s },
            ) => {
                let encoded =
                    encode_ecdsa(*encoding, r, s, self.coordinate_len).ok_or_else(invalid)?;
                UnparsedPublicKey::new(*alg, point)
                    .verify(message, &encoded)
                    .map_err(|_| invalid())
            }
            _ => Err(invalid()),
        }
    }
}

/// r and s in the form the verifier takes. Values wider than the curve are rejected.
fn encode_ecdsa(
    encoding: EcdsaEncoding,
    r: &[u8],
    s: &[u8],
    coordinate_len: usize,
) -> Option<Vec<u8>> {
    let r = fixed_width(r, coordinate_len)?;
    let s = fixed_width(s, coordinate_len)?;
    match encoding {
        EcdsaEncoding::Fixed => Some([r, s].concat()),
        EcdsaEncoding::Asn1 => Some(der_tlv(0x30, &[der_uint(&r), der_uint(&s)].concat())),
    }
}
