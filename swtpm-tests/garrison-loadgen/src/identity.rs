//! Pre-generated agent identities: a test EK manufacturer CA, and per agent a software TPM,
//! its EK certificate and an SVID key with its CSR. Everything costly happens here, before
//! the clock starts.

use anyhow::{Context, Result, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use time::{Duration, OffsetDateTime};

use crate::soft_tpm::SoftTpm;

/// The TPM manufacturer our EK certificates name: swtpm's ("IBM"), which the testbed's
/// strict policy trusts.
pub const MANUFACTURER: &str = garrison_testbed::SWTPM_MANUFACTURER;
/// subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
/// tcg-at-tpmManufacturer / tpmModel / tpmVersion, DER-encoded OIDs.
const OID_TPM_MANUFACTURER: &[u8] = &[0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x01];
const OID_TPM_MODEL: &[u8] = &[0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x02];
const OID_TPM_VERSION: &[u8] = &[0x06, 0x05, 0x67, 0x81, 0x05, 0x02, 0x03];

/// A test TPM manufacturer CA that issues EK certificates.
pub struct EkCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
}

impl EkCa {
    /// A fresh self-signed P-256 CA, valid from a day before `now` for ten years.
    pub fn generate(now: OffsetDateTime) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("EK CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Garrison loadgen EK manufacturer CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let certificate = params.self_signed(&key).context("EK CA certificate")?;
        Ok(Self {
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Keep the CA in `dir` (`cert.pem`, `key.pem` mode 0600), so that a later run against
    /// an attestor started separately (`--attestor`) issues EK certificates it trusts.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("cert.pem"), &self.certificate_pem).context("EK CA cert.pem")?;
        let mut key = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("key.pem"))
            .context("EK CA key.pem")?;
        key.write_all(self.issuer.key().serialize_pem().as_bytes())
            .context("EK CA key.pem")
    }

    /// A CA kept by [`EkCa::save`].
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))
        };
        let certificate_pem = read("cert.pem")?;
        let key = KeyPair::from_pem(&read("key.pem")?).context("EK CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, key).context("EK CA")?;
        Ok(Self {
            issuer,
            certificate_pem,
        })
    }

    /// The CA certificate, PEM: the site's `ek_roots` entry.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// An EK certificate for `tpm` (TCG EK Credential Profile shape: empty subject, critical
    /// subjectAltName holding the TPM manufacturer, model and version attributes).
    pub fn issue_ek_certificate(
        &self,
        tpm: &SoftTpm,
        serial: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.serial_number = Some(SerialNumber::from(
            serial.saturating_add(1).to_be_bytes().to_vec(),
        ));
        params.key_usages = vec![KeyUsagePurpose::KeyAgreement];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let mut san = CustomExtension::from_oid_content(OID_SUBJECT_ALT_NAME, tpm_directory_name());
        san.set_criticality(true);
        params.custom_extensions = vec![san];
        let public = EkPublicKey(tpm.ek_point().to_vec());
        let certificate = params
            .signed_by(&public, &self.issuer)
            .context("EK certificate")?;
        Ok(certificate.der().to_vec())
    }
}

/// The EK's public key for rcgen: an uncompressed P-256 point.
struct EkPublicKey(Vec<u8>);

impl rcgen::PublicKeyData for EkPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// GeneralNames { directoryName [4] { RDN{manufacturer}, RDN{model}, RDN{version} } }.
fn tpm_directory_name() -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let pair = der(0x30, &[oid, &der(0x0c, value.as_bytes())].concat());
        der(0x31, &pair)
    };
    let rdns = [
        attribute(OID_TPM_MANUFACTURER, MANUFACTURER),
        attribute(OID_TPM_MODEL, "loadgen"),
        attribute(OID_TPM_VERSION, "id:00010002"),
    ]
    .concat();
    let name = der(0x30, &rdns);
    der(0x30, &der(0xa4, &name))
}

/// A DER TLV with a short or long-form length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 0x80 => out.push(short),
        (Ok(byte), _) => out.extend_from_slice(&[0x81, byte]),
        (_, Ok(two)) => {
            out.push(0x82);
            out.extend_from_slice(&two.to_be_bytes());
        }
        // Never happens for the few hundred bytes built here.
        _ => out.push(0),
    }
    out.extend_from_slice(content);
    out
}

/// Everything one simulated agent presents: TPM, EK certificate, SVID key and its CSR.
#[derive(Debug)]
pub struct AgentIdentity {
    /// The software TPM.
    pub tpm: SoftTpm,
    /// EK certificate, DER.
    pub ek_certificate: Vec<u8>,
    /// PKCS#10 for the SVID key, DER (reused for every enrollment and renewal).
    pub csr: Vec<u8>,
    /// The SVID key, PKCS#8 DER (the client key for mTLS renewals).
    pub svid_key: Vec<u8>,
}

impl AgentIdentity {
    /// A complete identity under `ca`.
    pub fn generate(
        ca: &EkCa,
        serial: u64,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Self> {
        let clock_ms = u64::try_from(now.unix_timestamp())
            .unwrap_or(0)
            .saturating_mul(1000);
        let tpm = SoftTpm::generate(rng, clock_ms)?;
        let ek_certificate = ca.issue_ek_certificate(&tpm, serial, now)?;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
            .map_err(|_| anyhow!("SVID key generation"))?;
        let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_ref()),
            &PKCS_ECDSA_P256_SHA256,
        )
        .context("SVID key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params.serialize_request(&key_pair).context("CSR")?;
        Ok(Self {
            tpm,
            ek_certificate,
            csr: csr.der().to_vec(),
            svid_key: pkcs8.as_ref().to_vec(),
        })
    }
}
