//! A software "TPM" that produces exactly the bytes a real TPM 2.0 would for enrollment and
//! renewal: TPM2B_PUBLIC of an ECC P-256 EK (TCG template L-2 attributes) and of a
//! restricted ECDSA P-256 AK, TPM2_ActivateCredential for that EK, and TPM2_Quote
//! (TPMS_ATTEST + TPMT_SIGNATURE). Keys live in memory; nothing here is secure and nothing
//! here is meant to be: it lets the load generator make the attestor do the work it does
//! for real TPMs without paying for swtpm.

use anyhow::{Context, Result, anyhow, bail, ensure};
use garrison_evidence::{HashAlg, PcrSelection, PcrValues};
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ring::{digest, hmac};

const TPM_ALG_ECC: u16 = 0x0023;
const TPM_ALG_SHA256: u16 = 0x000B;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_AES: u16 = 0x0006;
const TPM_ALG_CFB: u16 = 0x0043;
const TPM_ALG_ECDSA: u16 = 0x0018;
const TPM_ECC_NIST_P256: u16 = 0x0003;
const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
const EK_ATTRIBUTES: u32 = 0x0003_00B2;
/// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign.
const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// TPM2_PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of every TCG EK template.
const EK_AUTH_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// firmwareVersion written into quotes.
const FIRMWARE_VERSION: u64 = 0x2023_0001_0000_0000;

/// One simulated TPM: its EK, its AK and its clock.
pub struct SoftTpm {
    ek_secret: p256::SecretKey,
    ek_point: Vec<u8>,
    ek_public: Vec<u8>,
    ak: EcdsaKeyPair,
    ak_public: Vec<u8>,
    ak_name: Vec<u8>,
    clock_ms: u64,
}

impl std::fmt::Debug for SoftTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftTpm")
            .field("ak_name", &hex_string(&self.ak_name))
            .finish_non_exhaustive()
    }
}

impl SoftTpm {
    /// A TPM with a fresh EK and AK; its clock starts at `clock_ms`.
    pub fn generate(rng: &dyn SecureRandom, clock_ms: u64) -> Result<Self> {
        let ek_secret = random_p256_secret(rng)?;
        let ek_point = p256_point(&ek_secret.public_key());
        let ek_public = ek_public_area(&ek_point)?;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| anyhow!("AK key generation"))?;
        let ak = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng)
            .map_err(|_| anyhow!("AK key parse"))?;
        let ak_tpmt = ak_tpmt(ak.public_key().as_ref())?;
        let ak_name = object_name(&ak_tpmt);
        Ok(Self {
            ek_secret,
            ek_point,
            ek_public,
            ak_public: tpm2b(&ak_tpmt)?,
            ak,
            ak_name,
            clock_ms,
        })
    }

    /// The EK's TPM2B_PUBLIC.
    pub fn ek_public(&self) -> &[u8] {
        &self.ek_public
    }

    /// The EK's uncompressed SEC1 point (what its certificate certifies).
    pub fn ek_point(&self) -> &[u8] {
        &self.ek_point
    }

    /// The AK's TPM2B_PUBLIC.
    pub fn ak_public(&self) -> &[u8] {
        &self.ak_public
    }

    /// The AK's TPM name (nameAlg || SHA-256(TPMT_PUBLIC)).
    pub fn ak_name(&self) -> &[u8] {
        &self.ak_name
    }

    /// TPM2_ActivateCredential with the EK and the AK: `id_object` and `encrypted_secret`
    /// are TPM2B contents (no size prefix), as `BeginResponse` carries them.
    pub fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>> {
        let seed = self.credential_seed(encrypted_secret)?;
        let mut reader = Reader(id_object);
        let integrity = reader.tpm2b("TPMS_ID_OBJECT.integrityHMAC")?;
        let enc_identity = reader.0;
        let hmac_key = kdfa(&seed, b"INTEGRITY", &[], &[], 32);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &hmac_key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(enc_identity);
        ctx.update(&self.ak_name);
        ensure!(
            ctx.sign().as_ref() == integrity,
            "credential integrity HMAC does not verify (wrong EK or AK name)"
        );
        let sym_key = kdfa(&seed, b"STORAGE", &self.ak_name, &[], 16);
        let mut plain = enc_identity.to_vec();
        aes128_cfb_decrypt(&sym_key, &mut plain)?;
        let mut reader = Reader(&plain);
        let secret = reader.tpm2b("credential TPM2B_DIGEST")?.to_vec();
        ensure!(reader.0.is_empty(), "bytes after the credential");
        Ok(secret)
    }

    /// ECDH with the EK on the ephemeral point, then KDFe: the seed MakeCredential used.
    fn credential_seed(&self, encrypted_secret: &[u8]) -> Result<Vec<u8>> {
        let mut reader = Reader(encrypted_secret);
        let x = reader.tpm2b("TPMS_ECC_POINT.x")?;
        let y = reader.tpm2b("TPMS_ECC_POINT.y")?;
        ensure!(reader.0.is_empty(), "bytes after TPMS_ECC_POINT");
        let point = [&[0x04], x, y].concat();
        let ephemeral = p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| anyhow!("ephemeral point is not on P-256"))?;
        let shared =
            p256::ecdh::diffie_hellman(self.ek_secret.to_nonzero_scalar(), ephemeral.as_affine());
        let ek_x = self.ek_point.get(1..33).unwrap_or_default();
        Ok(kdfe(shared.raw_secret_bytes(), b"IDENTITY", x, ek_x, 32))
    }

    /// TPM2_Quote of `pcrs` (exactly the values of `selection`) with `nonce` as qualifying
    /// data: (TPMS_ATTEST, TPMT_SIGNATURE). The TPM clock advances by at least 1 ms per
    /// quote, so the attestor's rollback check always passes.
    pub fn quote(
        &mut self,
        nonce: &[u8],
        selection: &PcrSelection,
        pcrs: &PcrValues,
        now_ms: u64,
        rng: &dyn SecureRandom,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.clock_ms = now_ms.max(self.clock_ms.saturating_add(1));
        let mut digest = digest::Context::new(&digest::SHA256);
        for (bank, index) in selection.iter() {
            let value = pcrs
                .value(bank, index)
                .with_context(|| format!("no value for PCR {bank}:{index}"))?;
            digest.update(value);
        }
        let attest = self.attest(nonce, selection, digest.finish().as_ref())?;
        let signature = self
            .ak
            .sign(rng, &attest)
            .map_err(|_| anyhow!("AK signing"))?;
        Ok((attest, ecdsa_signature(signature.as_ref())?))
    }

    fn attest(&self, nonce: &[u8], selection: &PcrSelection, pcr_digest: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        out.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        put_tpm2b(&mut out, &self.ak_name)?;
        put_tpm2b(&mut out, nonce)?;
        out.extend_from_slice(&self.clock_ms.to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes()); // resetCount
        out.extend_from_slice(&0u32.to_be_bytes()); // restartCount
        out.push(1); // safe
        out.extend_from_slice(&FIRMWARE_VERSION.to_be_bytes());
        out.extend_from_slice(&selection.to_bytes());
        put_tpm2b(&mut out, pcr_digest)?;
        Ok(out)
    }
}

/// The SHA-256 PCR values a boot that wrote `event_log` leaves behind (replay, with reset
/// values for PCRs the log never extends), for PCRs 0..=23.
pub fn pcrs_from_event_log(event_log: &[u8]) -> Result<PcrValues> {
    let log = garrison_eventlog::EventLog::parse(event_log).context("parsing the event log")?;
    let replayed = log.replay();
    let mut values = PcrValues::new();
    for index in 0..24 {
        let value = replayed
            .value_or_reset(HashAlg::Sha256, index)
            .with_context(|| format!("no SHA-256 value for PCR {index}"))?;
        values.insert(HashAlg::Sha256, index, value)?;
    }
    Ok(values)
}

fn random_p256_secret(rng: &dyn SecureRandom) -> Result<p256::SecretKey> {
    // A random 256-bit string is a valid scalar with probability 1 - 2^-32; retry otherwise.
    for _ in 0..8 {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| anyhow!("RNG"))?;
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            return Ok(secret);
        }
    }
    bail!("could not draw a P-256 scalar")
}

fn p256_point(public: &p256::PublicKey) -> Vec<u8> {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    public.to_encoded_point(false).as_bytes().to_vec()
}

/// Splits an uncompressed SEC1 P-256 point into x and y.
fn coordinates(point: &[u8]) -> Result<(&[u8], &[u8])> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => Ok(rest.split_at(32)),
        _ => bail!("not an uncompressed P-256 point"),
    }
}

fn ek_public_area(point: &[u8]) -> Result<Vec<u8>> {
    let (x, y) = coordinates(point)?;
    let mut t = Vec::with_capacity(128);
    for v in [TPM_ALG_ECC, TPM_ALG_SHA256] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    t.extend_from_slice(&EK_ATTRIBUTES.to_be_bytes());
    put_tpm2b(&mut t, &EK_AUTH_POLICY)?;
    for v in [
        TPM_ALG_AES,
        128,
        TPM_ALG_CFB,
        TPM_ALG_NULL,
        TPM_ECC_NIST_P256,
        TPM_ALG_NULL,
    ] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    put_tpm2b(&mut t, x)?;
    put_tpm2b(&mut t, y)?;
    tpm2b(&t)
}

fn ak_tpmt(point: &[u8]) -> Result<Vec<u8>> {
    let (x, y) = coordinates(point)?;
    let mut t = Vec::with_capacity(96);
    for v in [TPM_ALG_ECC, TPM_ALG_SHA256] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    t.extend_from_slice(&AK_ATTRIBUTES.to_be_bytes());
    put_tpm2b(&mut t, &[])?;
    for v in [
        TPM_ALG_NULL,
        TPM_ALG_ECDSA,
        TPM_ALG_SHA256,
        TPM_ECC_NIST_P256,
        TPM_ALG_NULL,
    ] {
        t.extend_from_slice(&v.to_be_bytes());
    }
    put_tpm2b(&mut t, x)?;
    put_tpm2b(&mut t, y)?;
    Ok(t)
}

fn object_name(tpmt: &[u8]) -> Vec<u8> {
    let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(digest::digest(&digest::SHA256, tpmt).as_ref());
    name
}

/// TPMT_SIGNATURE for ECDSA/SHA-256 from ring's fixed r || s.
fn ecdsa_signature(fixed: &[u8]) -> Result<Vec<u8>> {
    ensure!(fixed.len() == 64, "ECDSA P-256 signature is not 64 bytes");
    let (r, s) = fixed.split_at(32);
    let mut out = Vec::with_capacity(72);
    out.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    put_tpm2b(&mut out, r)?;
    put_tpm2b(&mut out, s)?;
    Ok(out)
}

/// KDFa (TPM 2.0 Part 1, §11.4.10.2) with HMAC-SHA-256; `label` without its NUL.
fn kdfa(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], bytes: usize) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let bits = u32::try_from(bytes.saturating_mul(8)).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(bytes.saturating_add(32));
    let mut counter = 0u32;
    while out.len() < bytes {
        counter = counter.saturating_add(1);
        let mut ctx = hmac::Context::with_key(&key);
        for part in [
            &counter.to_be_bytes()[..],
            label,
            &[0],
            context_u,
            context_v,
        ] {
            ctx.update(part);
        }
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
    }
    out.truncate(bytes);
    out
}

/// KDFe (TPM 2.0 Part 1, §11.4.10.3) with SHA-256; `label` without its NUL.
fn kdfe(z: &[u8], label: &[u8], party_u: &[u8], party_v: &[u8], bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.saturating_add(32));
    let mut counter = 0u32;
    while out.len() < bytes {
        counter = counter.saturating_add(1);
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [&counter.to_be_bytes()[..], z, label, &[0], party_u, party_v] {
            ctx.update(part);
        }
        out.extend_from_slice(ctx.finish().as_ref());
    }
    out.truncate(bytes);
    out
}

fn aes128_cfb_decrypt(key: &[u8], buffer: &mut [u8]) -> Result<()> {
    use cfb_mode::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
    cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, &[0u8; 16])
        .map_err(|_| anyhow!("AES-128 key size"))?
        .decrypt(buffer);
    Ok(())
}

fn put_tpm2b(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let size = u16::try_from(bytes.len()).context("TPM2B larger than 64 KiB")?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn tpm2b(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len().saturating_add(2));
    put_tpm2b(&mut out, bytes)?;
    Ok(out)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads TPM2B fields off the front of a buffer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn tpm2b(&mut self, what: &str) -> Result<&'a [u8]> {
        let [hi, lo, rest @ ..] = self.0 else {
            bail!("{what}: truncated size");
        };
        let size = usize::from(u16::from_be_bytes([*hi, *lo]));
        ensure!(rest.len() >= size, "{what}: truncated");
        let (value, rest) = rest.split_at(size);
        self.0 = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use garrison_evidence::{
        AkPolicy, EkEvidence, EkTrust, ManufacturerRoots, check_ak, make_credential,
        verify_activation, verify_quote,
    };
    use ring::rand::SystemRandom;

    use super::*;
    use crate::identity::EkCa;

    fn tpm() -> SoftTpm {
        SoftTpm::generate(&SystemRandom::new(), 1_000).unwrap()
    }

    #[test]
    fn ek_with_its_certificate_passes_verify_ek_with_the_manufacturer() {
        let now = time::OffsetDateTime::now_utc();
        let ca = EkCa::generate(now).unwrap();
        let tpm = tpm();
        let cert = ca.issue_ek_certificate(&tpm, 7, now).unwrap();
        let roots =
            ManufacturerRoots::from_pem_or_der(&[("ek-ca.pem", ca.certificate_pem().as_bytes())])
                .unwrap();
        let evidence = EkEvidence {
            public_area: tpm.ek_public(),
            certificate: Some(&cert),
            intermediates: &[],
        };
        let ek = garrison_evidence::verify_ek(&evidence, &EkTrust::ManufacturerRoots(roots), now)
            .unwrap();
        let manufacturer = ek.manufacturer.unwrap();
        assert_eq!(manufacturer.manufacturer.as_deref(), Some("id:00001014"));

        let other = EkCa::generate(now).unwrap();
        let foreign =
            ManufacturerRoots::from_pem_or_der(&[("x.pem", other.certificate_pem().as_bytes())])
                .unwrap();
        let refused =
            garrison_evidence::verify_ek(&evidence, &EkTrust::ManufacturerRoots(foreign), now);
        assert_eq!(refused.unwrap_err().check(), "ek-trust");
    }

    #[test]
    fn ak_passes_check_ak_with_the_name_we_compute() {
        let tpm = tpm();
        let ak = check_ak(tpm.ak_public(), &AkPolicy::default()).unwrap();
        assert_eq!(ak.name().as_bytes(), tpm.ak_name());
    }

    #[test]
    fn activate_credential_inverts_make_credential() {
        let tpm = tpm();
        let rng = SystemRandom::new();
        let ek = garrison_evidence::TpmPublic::from_tpm2b(tpm.ek_public()).unwrap();
        let ak = check_ak(tpm.ak_public(), &AkPolicy::default()).unwrap();
        let secret = [0x5au8; 32];
        let made = make_credential(&ek, ak.name(), &secret, &rng).unwrap();
        let got = tpm
            .activate_credential(made.id_object_contents(), made.encrypted_secret_contents())
            .unwrap();
        verify_activation(&secret, &got).unwrap();

        // Another TPM's EK cannot open it.
        let other = self::tpm();
        assert!(
            other
                .activate_credential(made.id_object_contents(), made.encrypted_secret_contents())
                .is_err()
        );
    }

    #[test]
    fn quote_over_the_good_log_passes_verify_quote() {
        let mut tpm = tpm();
        let rng = SystemRandom::new();
        let all = pcrs_from_event_log(garrison_testbed::GOOD_LOG).unwrap();
        let indices: Vec<u32> = (0..=9).collect();
        let selection = PcrSelection::new(&[(HashAlg::Sha256, &indices)]).unwrap();
        let quoted = PcrValues::from_entries(
            indices
                .iter()
                .map(|i| (HashAlg::Sha256, *i, all.value(HashAlg::Sha256, *i).unwrap())),
        )
        .unwrap();
        let nonce = [7u8; 32];
        let (attest, signature) = tpm.quote(&nonce, &selection, &quoted, 5, &rng).unwrap();
        let ak = check_ak(tpm.ak_public(), &AkPolicy::default()).unwrap();
        let verdict = verify_quote(&ak, &attest, &signature, &nonce, &quoted).unwrap();
        assert_eq!(verdict.selection, selection);
        assert_eq!(verdict.clock, 1_001, "clock advances past its start");
        let wrong = verify_quote(&ak, &attest, &signature, &[8u8; 32], &quoted);
        assert_eq!(wrong.unwrap_err().check(), "nonce");
    }
}
