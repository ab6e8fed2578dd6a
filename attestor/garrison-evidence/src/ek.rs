//! Endorsement key checks: the EK certificate chains to a manufacturer root and certifies
//! exactly the EK public area the node presented.
//!
//! Chain building is done here with x509-parser and explicit signature checks rather than
//! with rustls-webpki: EK certificates routinely carry a critical subjectAltName holding
//! only TPM directory attributes, a Subject Directory Attributes extension, no EKU or the
//! TCG EKU 2.23.133.8.1, and keyUsage keyAgreement/keyEncipherment only — webpki (built for
//! TLS server/client certificates) rejects several of these. What we check instead, per
//! link: issuer DN == subject DN of the candidate issuer, the signature verifies under the
//! issuer's key (ring, via x509-parser), and every certificate is inside its validity period
//! at the given time.
//!
//! Every issuing certificate (each intermediate and the root reached) must also meet the CA
//! constraints of RFC 5280, as `openssl verify` enforces them:
//!
//! * basicConstraints with cA = TRUE (§4.2.1.9);
//! * keyUsage with keyCertSign (§4.2.1.3). An intermediate must carry keyUsage: the RFC
//!   requires it of every CA whose key verifies certificate signatures and every TPM vendor's
//!   manufacturing CA has it, so its absence is refused (stricter than openssl, which
//!   tolerates it). A configured root may omit keyUsage: it is a trust anchor the operator
//!   chose, whose constraints §6.1 takes as optional inputs; if present it must allow
//!   keyCertSign, checked when the roots are loaded;
//! * pathLenConstraint, when present, bounds the number of intermediate CAs between the
//!   issuer and the EK certificate, self-issued intermediates not counted (§4.2.1.9,
//!   §6.1.4 (l)–(m)).

use std::collections::BTreeSet;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as X509PublicKey;

use crate::EvidenceError;
use crate::der::{der_tlv, der_uint};
use crate::public::{EccCurve, ObjectAttributes, PublicKey, TpmPublic, strip_leading_zeros};

/// Longest chain we build from the EK certificate to a root (EK, intermediates, root).
const MAX_CHAIN_DEPTH: usize = 6;
/// TCG EK Credential Profile: TPM manufacturer / model / version attributes in the SAN.
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";

/// Attributes every TCG EK template sets (EK Credential Profile, templates L-1..H-7).
const EK_REQUIRED: [(u32, &str); 6] = [
    (ObjectAttributes::FIXED_TPM, "fixedTPM"),
    (ObjectAttributes::FIXED_PARENT, "fixedParent"),
    (
        ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        "sensitiveDataOrigin",
    ),
    (ObjectAttributes::ADMIN_WITH_POLICY, "adminWithPolicy"),
    (ObjectAttributes::RESTRICTED, "restricted"),
    (ObjectAttributes::DECRYPT, "decrypt"),
];

/// The TPM manufacturer roots EK certificates must chain to. Only DER bytes are kept; the
/// caller reads the files.
#[derive(Debug, Clone, Default)]
pub struct ManufacturerRoots {
    roots: Vec<Vec<u8>>,
}

impl ManufacturerRoots {
    /// Loads roots from `(file name, bytes)` pairs. A file is PEM (any number of
    /// CERTIFICATE blocks) if it contains "-----BEGIN", else one DER certificate. Every root
    /// must parse and be a CA certificate; the file name is only used in errors.
    pub fn from_pem_or_der(files: &[(&str, &[u8])]) -> Result<Self, EvidenceError> {
        let mut roots = Vec::new();
        for (name, bytes) in files {
            for der in certificates_in_file(name, bytes)? {
                let cert = parse_certificate(&der, name)?;
                ca_path_len(&cert)?;
                check_key_cert_sign(&cert, IssuerRole::Root)?;
                roots.push(der);
            }
        }
        Ok(Self { roots })
    }

    /// Number of root certificates.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are none (then every certificate is rejected).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

fn certificates_in_file(name: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, EvidenceError> {
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|source| EvidenceError::CertificatePem {
            which: name.to_owned(),
            source,
        })?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    Ok(out)
}

/// How EKs are trusted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EkTrust {
    /// The EK certificate must chain to one of these roots (the normal mode).
    ManufacturerRoots(ManufacturerRoots),
    /// INSECURE: accept any EK whose public-key hash ([`EkIdentity::ek_hash`], hex, case
    /// ignored) is listed, without looking at any certificate. For TPMs without an EK
    /// certificate, enrolled by an operator who recorded the hash out of band. Never a
    /// default; callers should log a warning when configured.
    InsecureAllowListedEkHashes(BTreeSet<String>),
}

/// The EK evidence a node presents.
#[derive(Debug, Clone, Copy)]
pub struct EkEvidence<'a> {
    /// TPM2B_PUBLIC (or TPMT_PUBLIC) of the EK.
    pub public_area: &'a [u8],
    /// The EK certificate (DER), from NV 0x01c00002 (RSA) / 0x01c0000a / 0x01c00016 (ECC).
    pub certificate: Option<&'a [u8]>,
    /// Intermediate CA certificates (DER) the node or its platform supplied.
    pub intermediates: &'a [&'a [u8]],
}

/// Why an EK was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EkTrustBasis {
    /// Its certificate chains to a manufacturer root.
    ManufacturerCertificate,
    /// INSECURE: its hash was on the allow-list.
    InsecureAllowList,
}

/// TPM identity from the EK certificate's subjectAltName (TCG EK Credential Profile §3.2.9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TpmManufacturer {
    /// TPMManufacturer, e.g. "id:49465800" (IFX).
    pub manufacturer: Option<String>,
    /// TPMModel.
    pub model: Option<String>,
    /// TPMVersion, e.g. "id:00070002".
    pub version: Option<String>,
}

/// An accepted EK.
#[derive(Debug, Clone)]
pub struct EkIdentity {
    /// Lower-case hex SHA-256 of the EK public key's DER SubjectPublicKeyInfo, encoded by us
    /// from the public area (RSA: rsaEncryption with NULL parameters, INTEGERs n and e;
    /// ECC: id-ecPublicKey with the named curve, uncompressed point). For a DER-correct EK
    /// certificate this equals
    /// `openssl x509 -in ek.der -inform der -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`.
    pub ek_hash: String,
    /// The parsed EK public area.
    pub public: TpmPublic,
    /// Why it was accepted.
    pub basis: EkTrustBasis,
    /// TPM manufacturer attributes, if the certificate has parseable ones.
    pub manufacturer: Option<TpmManufacturer>,
    /// Certificate issuer DN (RFC 4514 string), when a certificate was checked.
    pub issuer: Option<String>,
    /// Certificate serial number (hex), when a certificate was checked.
    pub serial: Option<String>,
}

/// Verifies an EK at time `at`. With manufacturer roots: the certificate chains to a root
/// (through the supplied intermediates), every certificate is valid at `at`, the
/// certificate's key is the public area's key, and the public area has the EK template's
/// attributes. With the insecure allow-list: attributes and the hash only.
pub fn verify_ek(
    evidence: &EkEvidence<'_>,
    trust: &EkTrust,
    at: OffsetDateTime,
) -> Result<EkIdentity, EvidenceError> {
    let public = TpmPublic::from_tpm2b_or_tpmt(evidence.public_area)?;
    check_ek_attributes(public.attributes)?;
    let ek_hash = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &spki_der(&public.key),
    ));
    match trust {
        EkTrust::InsecureAllowListedEkHashes(allowed) => {
            if !allowed.iter().any(|h| h.eq_ignore_ascii_case(&ek_hash)) {
                return Err(EvidenceError::EkNotAllowListed { got: ek_hash });
            }
            let basis = EkTrustBasis::InsecureAllowList;
            Ok(EkIdentity {
                ek_hash,
                public,
                basis,
                manufacturer: None,
                issuer: None,
                serial: None,
            })
        }
        EkTrust::ManufacturerRoots(roots) => {
            let der = evidence
                .certificate
                .ok_or(EvidenceError::EkCertificateMissing)?;
            let cert = parse_certificate(der, "EK certificate")?;
            check_key_matches(&cert, &public.key)?;
            check_chain(&cert, evidence.intermediates, roots, at.unix_timestamp())?;
            Ok(EkIdentity {
                ek_hash,
                basis: EkTrustBasis::ManufacturerCertificate,
                manufacturer: tpm_manufacturer(&cert),
                issuer: Some(cert.issuer().to_string()),
                serial: Some(hex::encode(cert.raw_serial())),
                public,
            })
        }
    }
}

/// What an EK *certificate states*, for an auditor re-running a decision from the log
/// (`garrison audit replay`): the public area's attributes and hash, and, when a certificate
/// is given, that it certifies exactly this key and what it says (issuer, serial, TPM
/// manufacturer). Its chain is **not** checked: the log keeps the EK certificate but not the
/// intermediates the node sent, so whether the chain was trusted is taken from the record
/// (the attestor only logs a completed exchange for an EK it verified). Never use it to admit
/// a node: live decisions go through [`verify_ek`].
pub fn ek_as_recorded(
    public_area: &[u8],
    certificate: Option<&[u8]>,
) -> Result<EkIdentity, EvidenceError> {
    let public = TpmPublic::from_tpm2b_or_tpmt(public_area)?;
    check_ek_attributes(public.attributes)?;
    let ek_hash = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &spki_der(&public.key),
    ));
    let Some(der) = certificate else {
        return Ok(EkIdentity {
            ek_hash,
            public,
            basis: EkTrustBasis::InsecureAllowList,
            manufacturer: None,
            issuer: None,
            serial: None,
        });
    };
    let cert = parse_certificate(der, "EK certificate")?;
    check_key_matches(&cert, &public.key)?;
    Ok(EkIdentity {
        ek_hash,
        basis: EkTrustBasis::ManufacturerCertificate,
        manufacturer: tpm_manufacturer(&cert),
        issuer: Some(cert.issuer().to_string()),
        serial: Some(hex::encode(cert.raw_serial())),
        public,
    })
}

fn check_ek_attributes(attributes: ObjectAttributes) -> Result<(), EvidenceError> {
    if let Some((_, attribute)) = EK_REQUIRED
        .iter()
        .find(|(bit, _)| !attributes.contains(*bit))
    {
        return Err(EvidenceError::EkAttributeMissing {
            attribute,
            attributes: attributes.0,
        });
    }
    if attributes.contains(ObjectAttributes::SIGN) {
        return Err(EvidenceError::EkAttributeForbidden {
            attribute: "sign",
            attributes: attributes.0,
        });
    }
    Ok(())
}

fn parse_certificate<'a>(der: &'a [u8], which: &str) -> Result<X509Certificate<'a>, EvidenceError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|source| EvidenceError::CertificateParse {
            which: which.to_owned(),
            source,
        })
}

/// Where an issuing certificate sits in the chain: it decides whether keyUsage is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerRole {
    /// A configured manufacturer root (trust anchor): keyUsage optional, keyCertSign if present.
    Root,
    /// An intermediate the node supplied: keyUsage with keyCertSign required.
    Intermediate,
}

/// The RFC 5280 names of the keyUsage bits, in bit order.
const KEY_USAGE_NAMES: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

/// The CA constraints an issuer of `below` intermediate CAs (non-self-issued, between it and
/// the EK certificate) must meet: cA, keyCertSign, pathLenConstraint.
fn check_issuer(
    cert: &X509Certificate<'_>,
    role: IssuerRole,
    below: usize,
) -> Result<(), EvidenceError> {
    let path_len = ca_path_len(cert)?;
    check_key_cert_sign(cert, role)?;
    match path_len {
        Some(max) if usize::try_from(max).is_ok_and(|max| below > max) => {
            Err(EvidenceError::IssuerPathLength {
                subject: cert.subject().to_string(),
                max,
                got: below,
            })
        }
        _ => Ok(()),
    }
}

/// Checks basicConstraints cA = TRUE; returns its pathLenConstraint.
fn ca_path_len(cert: &X509Certificate<'_>) -> Result<Option<u32>, EvidenceError> {
    let constraints =
        cert.basic_constraints()
            .map_err(|source| EvidenceError::IssuerExtension {
                subject: cert.subject().to_string(),
                extension: "basicConstraints",
                source,
            })?;
    match constraints {
        Some(bc) if bc.value.ca => Ok(bc.value.path_len_constraint),
        _ => Err(EvidenceError::IssuerNotCa {
            subject: cert.subject().to_string(),
        }),
    }
}

fn check_key_cert_sign(cert: &X509Certificate<'_>, role: IssuerRole) -> Result<(), EvidenceError> {
    let subject = || cert.subject().to_string();
    let key_usage = cert
        .key_usage()
        .map_err(|source| EvidenceError::IssuerExtension {
            subject: subject(),
            extension: "keyUsage",
            source,
        })?;
    let got = match key_usage {
        Some(ku) if ku.value.key_cert_sign() => return Ok(()),
        Some(ku) => key_usage_names(ku.value.flags),
        None if role == IssuerRole::Root => return Ok(()),
        None => "no keyUsage extension".to_owned(),
    };
    Err(EvidenceError::IssuerKeyUsage {
        subject: subject(),
        expected: "keyCertSign",
        got,
    })
}

fn key_usage_names(flags: u16) -> String {
    let names: Vec<&str> = KEY_USAGE_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags >> bit & 1 == 1)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        return "no bits set".to_owned();
    }
    names.join(",")
}

/// Whether `cert` is self-issued (issuer DN == subject DN): such intermediates do not count
/// towards a pathLenConstraint (key rollover certificates).
fn is_self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == cert.subject().as_raw()
}

fn check_valid_at(cert: &X509Certificate<'_>, at: i64) -> Result<(), EvidenceError> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if (not_before..=not_after).contains(&at) {
        return Ok(());
    }
    Err(EvidenceError::CertificateNotValidAt {
        subject: cert.subject().to_string(),
        at,
        not_before,
        not_after,
    })
}

/// Whether `issuer` issued `child`: names chain and the signature verifies.
fn issued_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    child.issuer().as_raw() == issuer.subject().as_raw()
        && child.verify_signature(Some(issuer.public_key())).is_ok()
}

fn check_chain(
    leaf: &X509Certificate<'_>,
    intermediates: &[&[u8]],
    roots: &ManufacturerRoots,
    at: i64,
) -> Result<(), EvidenceError> {
    check_valid_at(leaf, at)?;
    let roots: Vec<X509Certificate<'_>> = roots
        .roots
        .iter()
        .filter_map(|der| parse_certificate(der, "root").ok())
        .collect();
    let intermediates: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .map(|der| parse_certificate(der, "intermediate"))
        .collect::<Result<_, _>>()?;
    let mut current = leaf;
    // Non-self-issued intermediates between the next issuer and the leaf.
    let mut below = 0usize;
    for _ in 0..MAX_CHAIN_DEPTH {
        if let Some(root) = roots.iter().find(|root| issued_by(current, root)) {
            check_issuer(root, IssuerRole::Root, below)?;
            return check_valid_at(root, at);
        }
        let Some(next) = intermediates.iter().find(|ca| issued_by(current, ca)) else {
            break;
        };
        check_issuer(next, IssuerRole::Intermediate, below)?;
        check_valid_at(next, at)?;
        if !is_self_issued(next) {
            below = below.saturating_add(1);
        }
        current = next;
    }
    Err(EvidenceError::EkChainUntrusted {
        issuer: current.issuer().to_string(),
    })
}

fn check_key_matches(cert: &X509Certificate<'_>, key: &PublicKey) -> Result<(), EvidenceError> {
    let mismatch = |detail| Err(EvidenceError::EkKeyMismatch { detail });
    let Ok(parsed) = cert.public_key().parsed() else {
        return mismatch("certificate key does not parse");
    };
    match (parsed, key) {
        (
            X509PublicKey::RSA(cert_key),
            PublicKey::Rsa {
                exponent, modulus, ..
            },
        ) => {
            if strip_leading_zeros(cert_key.modulus) != strip_leading_zeros(modulus) {
                return mismatch("RSA modulus");
            }
            if strip_leading_zeros(cert_key.exponent)
                != strip_leading_zeros(&exponent.to_be_bytes())
            {
                return mismatch("RSA exponent");
            }
            Ok(())
        }
        (X509PublicKey::EC(point), key @ PublicKey::Ecc { curve, .. }) => {
            let cert_curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if cert_curve.map(|oid| oid.to_id_string()).as_deref() != Some(curve_oid_string(*curve))
            {
                return mismatch("ECC curve");
            }
            if key.uncompressed_point().as_deref() != Some(point.data()) {
                return mismatch("ECC point");
            }
            Ok(())
        }
        _ => mismatch("key type"),
    }
}

fn tpm_manufacturer(cert: &X509Certificate<'_>) -> Option<TpmManufacturer> {
    let san = cert.subject_alternative_name().ok()??;
    let mut found = TpmManufacturer::default();
    for name in &san.value.general_names {
        let GeneralName::DirectoryName(dn) = name else {
            continue;
        };
        for attr in dn.iter_attributes() {
            let value = attr.as_str().ok().map(str::to_owned);
            match attr.attr_type().to_id_string().as_str() {
                OID_TPM_MANUFACTURER => found.manufacturer = value,
                OID_TPM_MODEL => found.model = value,
                OID_TPM_VERSION => found.version = value,
                _ => {}
            }
        }
    }
    (found != TpmManufacturer::default()).then_some(found)
}

fn curve_oid_string(curve: EccCurve) -> &'static str {
    match curve {
        EccCurve::NistP256 => "1.2.840.10045.3.1.7",
        EccCurve::NistP384 => "1.3.132.0.34",
        EccCurve::NistP521 => "1.3.132.0.35",
    }
}

/// DER SubjectPublicKeyInfo of a TPM public key (the canonical form hashed for the EK hash).
pub(crate) fn spki_der(key: &PublicKey) -> Vec<u8> {
    const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let (algorithm, key_bits) = match key {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => {
            let rsa_key = [der_uint(modulus), der_uint(&exponent.to_be_bytes())].concat();
            (
                [RSA_ENCRYPTION, &[0x05, 0x00]].concat(),
                der_tlv(0x30, &rsa_key),
            )
        }
        PublicKey::Ecc { curve, .. } => {
            let curve_oid: &[u8] = match curve {
                EccCurve::NistP256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                EccCurve::NistP384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
                EccCurve::NistP521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            };
            (
                [EC_PUBLIC_KEY, curve_oid].concat(),
                key.uncompressed_point().unwrap_or_default(),
            )
        }
    };
    let bit_string = der_tlv(0x03, &[&[0u8][..], &key_bits].concat());
    der_tlv(0x30, &[der_tlv(0x30, &algorithm), bit_string].concat())
}
