//! Software TPM2_MakeCredential (TPM 2.0 Part 1, §24 "Credential Protection"; Part 3,
//! TPM2_MakeCredential) and the check of what ActivateCredential gave back.
//!
//! The steps, for an EK with nameAlg `H` and symmetric AES-k-CFB, and an AK name `N`:
//!
//! 1. seed: RSA EK — `|H|` random bytes, RSA-OAEP-encrypted to the EK with hash `H` and
//!    label `"IDENTITY\0"`. ECC EK — ephemeral ECDH on the EK's curve, `Z` = x of the shared
//!    point, seed = KDFe(H, Z, "IDENTITY", ephemeral.x, EK.x, |H| bits); the "encrypted
//!    secret" is the ephemeral point as TPMS_ECC_POINT.
//! 2. symKey = KDFa(H, seed, "STORAGE", N, "", k bits).
//! 3. encIdentity = AES-k-CFB(symKey, IV = 0) over the TPM2B_DIGEST credential
//!    (u16 size || secret).
//! 4. hmacKey = KDFa(H, seed, "INTEGRITY", "", "", |H| bits);
//!    integrityHMAC = HMAC-H(hmacKey, encIdentity || N).
//! 5. TPMS_ID_OBJECT = TPM2B_DIGEST(integrityHMAC) || encIdentity (no size of its own).

use garrison_eventlog::HashAlg;
use ring::rand::SecureRandom;
use ring::{agreement, hmac};
use rsa::rand_core::{CryptoRng, RngCore};

use crate::EvidenceError;
use crate::public::{EccCurve, ObjectAttributes, ObjectName, PublicKey, TpmPublic, fixed_width};
use crate::wire::put_tpm2b;

/// Magic and version tpm2-tools puts in front of a credential file.
const TPM2_TOOLS_CREDENTIAL_MAGIC: u32 = 0xBADC_C0DE;
const TPM2_TOOLS_CREDENTIAL_VERSION: u32 = 1;

/// What MakeCredential produces, ready for the agent's ActivateCredential.
///
/// Both fields are complete TPM2B structures **including** their big-endian u16 size
/// prefix: `id_object` is a TPM2B_ID_OBJECT, `encrypted_secret` a TPM2B_ENCRYPTED_SECRET.
/// For tss-esapi (`IdObject::try_from`, `EncryptedSecret::try_from`), which take the buffer
/// contents, pass [`Self::id_object_contents`] and [`Self::encrypted_secret_contents`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredentialOutput {
    /// TPM2B_ID_OBJECT, size prefix included.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET, size prefix included.
    pub encrypted_secret: Vec<u8>,
}

impl MakeCredentialOutput {
    /// TPM2B_ID_OBJECT's buffer (TPMS_ID_OBJECT), without the size prefix.
    pub fn id_object_contents(&self) -> &[u8] {
        self.id_object.get(2..).unwrap_or_default()
    }

    /// TPM2B_ENCRYPTED_SECRET's buffer, without the size prefix.
    pub fn encrypted_secret_contents(&self) -> &[u8] {
        self.encrypted_secret.get(2..).unwrap_or_default()
    }

    /// The file `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads:
    /// u32 0xBADCC0DE, u32 version 1 (both big-endian), TPM2B_ID_OBJECT,
    /// TPM2B_ENCRYPTED_SECRET.
    pub fn to_tpm2_tools_credential_file(&self) -> Vec<u8> {
        let mut out = TPM2_TOOLS_CREDENTIAL_MAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&TPM2_TOOLS_CREDENTIAL_VERSION.to_be_bytes());
        out.extend_from_slice(&self.id_object);
        out.extend_from_slice(&self.encrypted_secret);
        out
    }
}

/// Seals `secret` to the EK so that only a TPM holding both the EK and an object named
/// `ak_name` can recover it with ActivateCredential.
///
/// The EK must be a restricted decryption key with AES-128-CFB or AES-256-CFB symmetric
/// parameters and nameAlg SHA-256/384/512; `secret` is 1 to |nameAlg| bytes.
pub fn make_credential(
    ek: &TpmPublic,
    ak_name: &ObjectName,
    secret: &[u8],
    rng: &dyn SecureRandom,
) -> Result<MakeCredentialOutput, EvidenceError> {
    let (hash, sym_bits) = credential_parameters(ek)?;
    if secret.is_empty() || secret.len() > hash.digest_len() {
        return Err(EvidenceError::CredentialSecretSize {
            max: hash.digest_len(),
            got: secret.len(),
        });
    }
    let (seed, encrypted) = match &ek.key {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => rsa_seed(hash, *exponent, modulus, rng)?,
        PublicKey::Ecc { curve, x, y, .. } => ecc_seed(hash, *curve, x, y, rng)?,
    };
    let name = ak_name.as_bytes();
    let sym_key = kdfa(hash, &seed, b"STORAGE", name, &[], sym_bits);
    let mut enc_identity = Vec::with_capacity(secret.len().saturating_add(2));
    put_tpm2b(&mut enc_identity, secret)?;
    aes_cfb_encrypt(&sym_key, &mut enc_identity)?;
    let hmac_key = kdfa(
        hash,
        &seed,
        b"INTEGRITY",
        &[],
        &[],
        hash.digest_len().saturating_mul(8),
    );
    let integrity = hmac_sign(hash, &hmac_key, &[&enc_identity, name])?;
    let mut id_object_body = Vec::new();
    put_tpm2b(&mut id_object_body, &integrity)?;
    id_object_body.extend_from_slice(&enc_identity);
    let mut id_object = Vec::new();
    put_tpm2b(&mut id_object, &id_object_body)?;
    let mut encrypted_secret = Vec::new();
    put_tpm2b(&mut encrypted_secret, &encrypted)?;
    Ok(MakeCredentialOutput {
        id_object,
        encrypted_secret,
    })
}

/// Checks, in constant time, that the secret ActivateCredential returned is the one sealed.
/// Both are HMACed under a fixed key and the tags compared with ring's constant-time
/// `hmac::verify`, so timing reveals neither content nor common prefix length.
pub fn verify_activation(expected_secret: &[u8], returned: &[u8]) -> Result<(), EvidenceError> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"garrison activation comparison");
    let tag = hmac::sign(&key, expected_secret);
    hmac::verify(&key, returned, tag.as_ref()).map_err(|_| EvidenceError::ActivationSecretMismatch)
}

fn credential_parameters(ek: &TpmPublic) -> Result<(HashAlg, usize), EvidenceError> {
    let unusable = |reason| Err(EvidenceError::EkUnusableForCredential { reason });
    if !ek
        .attributes
        .contains(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT)
    {
        return unusable("not a restricted decryption key");
    }
    let hash = match ek.name_alg {
        HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512 => ek.name_alg,
        _ => return unusable("nameAlg must be SHA-256, SHA-384 or SHA-512"),
    };
    match ek.symmetric {
        Some(sym) if sym.is_aes_cfb() => Ok((hash, usize::from(sym.key_bits))),
        _ => unusable("symmetric must be AES-128-CFB or AES-256-CFB"),
    }
}

fn rsa_seed(
    hash: HashAlg,
    exponent: u32,
    modulus: &[u8],
    rng: &dyn SecureRandom,
) -> Result<(Vec<u8>, Vec<u8>), EvidenceError> {
    let mut seed = vec![0u8; hash.digest_len()];
    rng.fill(&mut seed).map_err(|_| EvidenceError::Randomness)?;
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(modulus),
        rsa::BigUint::from(exponent),
    )
    .map_err(|source| EvidenceError::SeedEncryption { source })?;
    let padding = match hash {
        HashAlg::Sha384 => rsa::Oaep::new_with_label::<sha2::Sha384, _>("IDENTITY\0"),
        HashAlg::Sha512 => rsa::Oaep::new_with_label::<sha2::Sha512, _>("IDENTITY\0"),
        _ => rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
    };
    let mut adapter = RngAdapter { rng, failed: false };
    let encrypted = key
        .encrypt(&mut adapter, padding, &seed)
        .map_err(|source| EvidenceError::SeedEncryption { source })?;
    if adapter.failed {
        return Err(EvidenceError::Randomness);
    }
    Ok((seed, encrypted))
}

fn ecc_seed(
    hash: HashAlg,
    curve: EccCurve,
    ek_x: &[u8],
    ek_y: &[u8],
    rng: &dyn SecureRandom,
) -> Result<(Vec<u8>, Vec<u8>), EvidenceError> {
    let algorithm = match curve {
        EccCurve::NistP256 => &agreement::ECDH_P256,
        EccCurve::NistP384 => &agreement::ECDH_P384,
        EccCurve::NistP521 => {
            return Err(EvidenceError::EkUnusableForCredential {
                reason: "P-521 is not supported",
            });
        }
    };
    let len = curve.coordinate_len();
    let mut ek_point = vec![0x04];
    ek_point.extend(fixed_width(ek_x, len).ok_or(EvidenceError::SeedAgreement)?);
    ek_point.extend(fixed_width(ek_y, len).ok_or(EvidenceError::SeedAgreement)?);
    let ephemeral = agreement::EphemeralPrivateKey::generate(algorithm, rng)
        .map_err(|_| EvidenceError::Randomness)?;
    let ephemeral_public = ephemeral
        .compute_public_key()
        .map_err(|_| EvidenceError::Randomness)?;
    let (eph_x, eph_y) =
        split_point(ephemeral_public.as_ref(), len).ok_or(EvidenceError::SeedAgreement)?;
    let peer = agreement::UnparsedPublicKey::new(algorithm, ek_point);
    let z = agreement::agree_ephemeral(ephemeral, &peer, |z| z.to_vec())
        .map_err(|_| EvidenceError::SeedAgreement)?;
    let seed = kdfe(hash, &z, b"IDENTITY", eph_x, ek_x, hash.digest_len());
    let mut point = Vec::with_capacity(len.saturating_mul(2).saturating_add(4));
    put_tpm2b(&mut point, eph_x)?;
    put_tpm2b(&mut point, eph_y)?;
    Ok((seed, point))
}

/// Splits an uncompressed SEC1 point into x and y.
fn split_point(point: &[u8], len: usize) -> Option<(&[u8], &[u8])> {
    let coordinates = point.strip_prefix(&[0x04])?;
    (coordinates.len() == len.saturating_mul(2)).then(|| coordinates.split_at(len))
}

/// KDFa (TPM 2.0 Part 1, §11.4.10.2): SP 800-108 counter-mode KDF with HMAC-H. `label` is
/// given without its terminating NUL, which is added here.
pub(crate) fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: usize,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8);
    let bits_be = u32::try_from(bits).unwrap_or(u32::MAX).to_be_bytes();
    let Some(algorithm) = hmac_algorithm(hash) else {
        return Vec::new();
    };
    let key = hmac::Key::new(algorithm, key);
    let mut out = Vec::with_capacity(bytes.saturating_add(64));
    for counter in 1u32.. {
        if out.len() >= bytes {
            break;
        }
        let mut ctx = hmac::Context::with_key(&key);
        for part in [
            &counter.to_be_bytes()[..],
            label,
            &[0],
            context_u,
            context_v,
            &bits_be,
        ] {
            ctx.update(part);
        }
        out.extend_from_slice(ctx.sign().as_ref());
    }
    out.truncate(bytes);
    out
}

/// KDFe (TPM 2.0 Part 1, §11.4.10.3): SP 800-56A concatenation KDF with H. `label` is given
/// without its terminating NUL.
pub(crate) fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bytes: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.saturating_add(64));
    for counter in 1u32.. {
        if out.len() >= bytes {
            break;
        }
        out.extend(hash.digest(&[&counter.to_be_bytes(), z, label, &[0], party_u, party_v]));
    }
    out.truncate(bytes);
    out
}

fn hmac_algorithm(hash: HashAlg) -> Option<hmac::Algorithm> {
    match hash {
        HashAlg::Sha256 => Some(hmac::HMAC_SHA256),
        HashAlg::Sha384 => Some(hmac::HMAC_SHA384),
        HashAlg::Sha512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn hmac_sign(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, EvidenceError> {
    let algorithm = hmac_algorithm(hash).ok_or(EvidenceError::EkUnusableForCredential {
        reason: "nameAlg must be SHA-256, SHA-384 or SHA-512",
    })?;
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(algorithm, key));
    parts.iter().for_each(|part| ctx.update(part));
    Ok(ctx.sign().as_ref().to_vec())
}

fn aes_cfb_encrypt(key: &[u8], buffer: &mut [u8]) -> Result<(), EvidenceError> {
    use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
    let iv = [0u8; 16];
    let bad_key = || EvidenceError::EkUnusableForCredential {
        reason: "symmetric key size",
    };
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(|_| bad_key())?
            .encrypt(buffer),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(|_| bad_key())?
            .encrypt(buffer),
        _ => return Err(bad_key()),
    }
    Ok(())
}

/// Lets the rsa crate draw from ring's generator. `RngCore::fill_bytes` cannot fail, so a
/// failure is recorded and the (then useless) ciphertext is discarded by the caller.
struct RngAdapter<'a> {
    rng: &'a dyn SecureRandom,
    failed: bool,
}

impl RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.rng.fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for RngAdapter<'_> {}
