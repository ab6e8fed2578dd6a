//! TPM2B_PUBLIC / TPMT_PUBLIC for RSA and ECC keys (TPM 2.0 Part 2, §12.2) and object names.

use garrison_eventlog::HashAlg;

use crate::EvidenceError;
use crate::wire::{Reader, put_tpm2b};

const TPM_ALG_RSA: u16 = 0x0001;
const TPM_ALG_ECC: u16 = 0x0023;
pub(crate) const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_AES: u16 = 0x0006;
const TPM_ALG_CFB: u16 = 0x0043;
pub(crate) const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_RSAES: u16 = 0x0015;
pub(crate) const TPM_ALG_RSAPSS: u16 = 0x0016;
pub(crate) const TPM_ALG_ECDSA: u16 = 0x0018;
const TPM_ALG_ECDAA: u16 = 0x001A;

/// Largest TPMT_PUBLIC we accept (TPM2B_PUBLIC's buffer is bounded by this in practice: an
/// RSA-4096 key with a SHA-512 policy is well under 700 bytes).
const MAX_PUBLIC_AREA: usize = 1024;
/// MAX_RSA_KEY_BYTES for RSA-4096.
const MAX_RSA_KEY_BYTES: usize = 512;
/// MAX_ECC_KEY_BYTES for P-521.
const MAX_ECC_KEY_BYTES: usize = 66;
/// authPolicy is a digest: SHA-512 at most.
const MAX_DIGEST: usize = 64;

/// TPMA_OBJECT (TPM 2.0 Part 2, §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// fixedTPM: the object cannot be duplicated out of this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// stClear.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// fixedParent: the object cannot be duplicated to another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin: the TPM generated the private key.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// adminWithPolicy.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// noDA.
    pub const NO_DA: u32 = 1 << 10;
    /// encryptedDuplication.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// restricted: signs only TPM-generated data / decrypts only TPM-formatted data.
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt.
    pub const DECRYPT: u32 = 1 << 17;
    /// sign (also "encrypt" for symmetric objects).
    pub const SIGN: u32 = 1 << 18;

    /// Whether every bit of `mask` is set.
    pub fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// A TPMI_ECC_CURVE we can do arithmetic with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EccCurve {
    /// TPM_ECC_NIST_P256 (0x0003).
    NistP256,
    /// TPM_ECC_NIST_P384 (0x0004).
    NistP384,
    /// TPM_ECC_NIST_P521 (0x0005): parsed, but ring cannot verify or agree on it.
    NistP521,
}

impl EccCurve {
    fn from_tpm_id(id: u16) -> Result<Self, EvidenceError> {
        match id {
            0x0003 => Ok(Self::NistP256),
            0x0004 => Ok(Self::NistP384),
            0x0005 => Ok(Self::NistP521),
            got => Err(EvidenceError::UnsupportedCurve { got }),
        }
    }

    /// The TPM_ECC_CURVE id.
    pub fn tpm_id(self) -> u16 {
        match self {
            Self::NistP256 => 0x0003,
            Self::NistP384 => 0x0004,
            Self::NistP521 => 0x0005,
        }
    }

    /// Size of one coordinate (and of r and s) in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::NistP256 => 32,
            Self::NistP384 => 48,
            Self::NistP521 => 66,
        }
    }
}

/// TPMT_SYM_DEF_OBJECT when not TPM_ALG_NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricDef {
    /// TPM_ALG_ID of the cipher (AES = 0x0006).
    pub algorithm: u16,
    /// Key size in bits.
    pub key_bits: u16,
    /// TPM_ALG_ID of the mode (CFB = 0x0043).
    pub mode: u16,
}

impl SymmetricDef {
    /// Whether this is AES-128-CFB or AES-256-CFB, the parent ciphers MakeCredential
    /// implements (EK templates L-1, L-2 and H-1..H-7 use one of them).
    pub fn is_aes_cfb(self) -> bool {
        self.algorithm == TPM_ALG_AES
            && matches!(self.key_bits, 128 | 256)
            && self.mode == TPM_ALG_CFB
    }
}

/// TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME when not TPM_ALG_NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// TPM_ALG_ID of the scheme (RSASSA 0x0014, RSAPSS 0x0016, ECDSA 0x0018, ...).
    pub algorithm: u16,
    /// The scheme's hash, if it has one (RSAES has none).
    pub hash: Option<HashAlg>,
}

/// The key material and its algorithm-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// TPMS_RSA_PARMS + TPM2B_PUBLIC_KEY_RSA.
    Rsa {
        /// keyBits.
        key_bits: u16,
        /// The public exponent, with the TPM's 0 ("default") already replaced by 65537.
        exponent: u32,
        /// Big-endian modulus as the TPM gave it.
        modulus: Vec<u8>,
    },
    /// TPMS_ECC_PARMS + TPMS_ECC_POINT.
    Ecc {
        /// curveID.
        curve: EccCurve,
        /// The KDF scheme, if not TPM_ALG_NULL.
        kdf: Option<Scheme>,
        /// x coordinate, as the TPM gave it.
        x: Vec<u8>,
        /// y coordinate, as the TPM gave it.
        y: Vec<u8>,
    },
}

/// A parsed TPMT_PUBLIC, keeping its marshalled bytes for the object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// nameAlg.
    pub name_alg: HashAlg,
    /// objectAttributes.
    pub attributes: ObjectAttributes,
    /// authPolicy (empty when none).
    pub auth_policy: Vec<u8>,
    /// parameters.symmetric, `None` for TPM_ALG_NULL.
    pub symmetric: Option<SymmetricDef>,
    /// parameters.scheme, `None` for TPM_ALG_NULL.
    pub scheme: Option<Scheme>,
    /// The remaining parameters and unique.
    pub key: PublicKey,
    raw: Vec<u8>,
}

impl TpmPublic {
    /// Parses a TPM2B_PUBLIC (u16 size, then TPMT_PUBLIC), as `tpm2_createek -u` and
    /// `tpm2_createak -u` write it. The size must match and nothing may follow.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut reader = Reader::new(bytes);
        let inner = reader.tpm2b(MAX_PUBLIC_AREA, "TPM2B_PUBLIC")?;
        reader.finish("TPM2B_PUBLIC")?;
        Self::from_tpmt(inner)
    }

    /// Parses a bare TPMT_PUBLIC. Nothing may follow it.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_PUBLIC_AREA {
            return Err(EvidenceError::SizeTooLarge {
                what: "TPMT_PUBLIC",
                max: MAX_PUBLIC_AREA,
                got: bytes.len(),
            });
        }
        let mut reader = Reader::new(bytes);
        let public = Self::read(&mut reader, bytes)?;
        reader.finish("TPMT_PUBLIC")?;
        Ok(public)
    }

    /// Parses either encoding: a TPM2B_PUBLIC if its size prefix covers exactly the rest of
    /// the input, otherwise a bare TPMT_PUBLIC (go-attestation stores the latter).
    pub fn from_tpm2b_or_tpmt(bytes: &[u8]) -> Result<Self, EvidenceError> {
        match bytes {
            [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
                Self::from_tpm2b(bytes)
            }
            _ => Self::from_tpmt(bytes),
        }
    }

    fn read(reader: &mut Reader<'_>, whole: &[u8]) -> Result<Self, EvidenceError> {
        let object_type = reader.u16("TPMT_PUBLIC.type")?;
        let name_alg = read_hash_alg(reader, "TPMT_PUBLIC.nameAlg")?;
        let attributes = ObjectAttributes(reader.u32("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = reader.tpm2b(MAX_DIGEST, "TPMT_PUBLIC.authPolicy")?.to_vec();
        let symmetric = read_symmetric(reader)?;
        let scheme = read_scheme(reader, "TPMT_PUBLIC.parameters.scheme")?;
        let key = match object_type {
            TPM_ALG_RSA => read_rsa(reader)?,
            TPM_ALG_ECC => read_ecc(reader)?,
            got => return Err(EvidenceError::UnsupportedObjectType { got }),
        };
        let consumed = whole.len().saturating_sub(reader.remaining());
        let raw = whole.get(..consumed).unwrap_or(whole).to_vec();
        Ok(Self {
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
            raw,
        })
    }

    /// The marshalled TPMT_PUBLIC this was parsed from.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The TPM2B_PUBLIC encoding (u16 size prefix + TPMT_PUBLIC).
    pub fn tpm2b_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len().saturating_add(2));
        // raw is at most MAX_PUBLIC_AREA bytes, so this cannot fail.
        let _ = put_tpm2b(&mut out, &self.raw);
        out
    }

    /// The object name: nameAlg's TPM_ALG_ID (big-endian) followed by
    /// H_nameAlg(TPMT_PUBLIC) — TPM 2.0 Part 1, §16.
    pub fn name(&self) -> ObjectName {
        let mut name = self.name_alg.tpm_alg_id().to_be_bytes().to_vec();
        name.extend_from_slice(&self.name_alg.digest(&[&self.raw]));
        ObjectName(name)
    }
}

/// A TPM object name (TPM2B_NAME contents, without the size prefix): 2-byte algorithm id +
/// digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName(pub Vec<u8>);

impl ObjectName {
    /// The name bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex, as `tpm2_createak -n` prints it.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

pub(crate) fn read_hash_alg(
    reader: &mut Reader<'_>,
    what: &'static str,
) -> Result<HashAlg, EvidenceError> {
    let id = reader.u16(what)?;
    HashAlg::from_tpm_alg_id(id).ok_or(EvidenceError::UnsupportedAlgorithm { what, got: id })
}

fn read_symmetric(reader: &mut Reader<'_>) -> Result<Option<SymmetricDef>, EvidenceError> {
    let algorithm = reader.u16("TPMT_SYM_DEF_OBJECT.algorithm")?;
    if algorithm == TPM_ALG_NULL {
        return Ok(None);
    }
    let key_bits = reader.u16("TPMT_SYM_DEF_OBJECT.keyBits")?;
    let mode = reader.u16("TPMT_SYM_DEF_OBJECT.mode")?;
    Ok(Some(SymmetricDef {
        algorithm,
        key_bits,
        mode,
    }))
}

/// Reads a TPMT_*_SCHEME / TPMT_KDF_SCHEME: algorithm id, then the details its id selects.
fn read_scheme(
    reader: &mut Reader<'_>,
    what: &'static str,
) -> Result<Option<Scheme>, EvidenceError> {
    let algorithm = reader.u16(what)?;
    match algorithm {
        TPM_ALG_NULL => Ok(None),
        TPM_ALG_RSAES => Ok(Some(Scheme {
            algorithm,
            hash: None,
        })),
        TPM_ALG_ECDAA => {
            let hash = read_hash_alg(reader, what)?;
            let _count = reader.u16(what)?;
            Ok(Some(Scheme {
                algorithm,
                hash: Some(hash),
            }))
        }
        // MGF1, KDF1_SP800_56A, KDF2, KDF1_SP800_108, RSASSA, RSAPSS, OAEP, ECDSA, ECDH, SM2,
        // ECSCHNORR, ECMQV: a single hash algorithm.
        0x0007 | 0x0020..=0x0022 | 0x0014 | 0x0016 | 0x0017 | 0x0018 | 0x0019 | 0x001B..=0x001D => {
            let hash = read_hash_alg(reader, what)?;
            Ok(Some(Scheme {
                algorithm,
                hash: Some(hash),
            }))
        }
        got => Err(EvidenceError::UnsupportedAlgorithm { what, got }),
    }
}

fn read_rsa(reader: &mut Reader<'_>) -> Result<PublicKey, EvidenceError> {
    let key_bits = reader.u16("TPMS_RSA_PARMS.keyBits")?;
    let exponent = match reader.u32("TPMS_RSA_PARMS.exponent")? {
        0 => 65537,
        other => other,
    };
    let modulus = reader
        .tpm2b(MAX_RSA_KEY_BYTES, "TPM2B_PUBLIC_KEY_RSA")?
        .to_vec();
    if modulus.len().saturating_mul(8) != usize::from(key_bits) {
        return Err(EvidenceError::RsaModulusSize {
            expected_bits: key_bits,
            got_bytes: modulus.len(),
        });
    }
    Ok(PublicKey::Rsa {
        key_bits,
        exponent,
        modulus,
    })
}

fn read_ecc(reader: &mut Reader<'_>) -> Result<PublicKey, EvidenceError> {
    let curve = EccCurve::from_tpm_id(reader.u16("TPMS_ECC_PARMS.curveID")?)?;
    let kdf = read_scheme(reader, "TPMS_ECC_PARMS.kdf")?;
    let x = reader
        .tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.x")?
        .to_vec();
    let y = reader
        .tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.y")?
        .to_vec();
    Ok(PublicKey::Ecc { curve, kdf, x, y })
}

/// Left-pads (or strips leading zeros from) a big-endian integer to exactly `len` bytes.
pub(crate) fn fixed_width(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    let significant = strip_leading_zeros(bytes);
    let pad = len.checked_sub(significant.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(significant);
    Some(out)
}

pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

impl PublicKey {
    /// The uncompressed SEC1 point (0x04 || x || y) for ECC keys, coordinates padded to the
    /// curve size.
    pub(crate) fn uncompressed_point(&self) -> Option<Vec<u8>> {
        match self {
            PublicKey::Ecc { curve, x, y, .. } => {
                let mut out = vec![0x04];
                out.extend(fixed_width(x, curve.coordinate_len())?);
                out.extend(fixed_width(y, curve.coordinate_len())?);
                Some(out)
            }
            PublicKey::Rsa { .. } => None,
        }
    }
}
