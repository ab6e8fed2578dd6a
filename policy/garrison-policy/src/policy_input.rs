//! The policy input as one typed value with one producer.
//!
//! [`PolicyInput`] is what `data.garrison.admission` sees as `input` (the contract is
//! `policy/input.schema.json` and the README's *Input contract*). Every producer of inputs
//! builds this value: the attestor from verified evidence ([`TpmFacts::from_evidence`]), the
//! golden generator and the shipped case inputs ([`crate::golden::sample_input`]), so the
//! formats of its fields are decided here, by the types, once:
//!
//! * `tpm.firmware_version`: [`FirmwareVersion`], `"<major>.<minor>"` in decimal from
//!   TPM_PT_FIRMWARE_VERSION_1 (the upper 32 bits of TPMS_ATTEST.firmwareVersion), the form
//!   TPM vendors publish (e.g. `"7.85"`);
//! * `tpm.ak_algorithm`: [`AkAlgorithm`], `"rsa-<bits>"` or `"ecc-nist-p256"` /
//!   `"ecc-nist-p384"` / `"ecc-nist-p521"`;
//! * `site.connected`: true only when the site verifiably reaches its hub. There is no hub
//!   yet, so the only constructor, [`SiteFacts::without_hub`], sets it to false;
//! * `request.time`: RFC 3339, UTC as given.
//!
//! `boot` and `pcrs` depend only on the event log and the quoted PCRs; the attestor converts
//! them once per distinct log ([`crate::InputSection`]) and passes them apart
//! ([`PolicyInput::to_json`]), the tools join them in ([`PolicyInput::with_boot`]). Both come
//! from the same producers: `BootClaims`' serialization and [`PcrsSection`].

use std::collections::BTreeMap;

use garrison_eventlog::{BootClaims, HashAlg};
use garrison_evidence::{AkIdentity, EccCurve, EkIdentity, PublicKey, QuoteVerdict};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value as Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PolicyError;

/// `input` of an admission decision, without `boot` and `pcrs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInput {
    /// Verified TPM identity and state.
    pub tpm: TpmFacts,
    /// What the node says about itself (untrusted).
    pub node: NodeFacts,
    /// The site deciding.
    pub site: SiteFacts,
    /// The request being decided.
    pub request: RequestFacts,
}

impl PolicyInput {
    /// The input as JSON, without `boot` and `pcrs` (which the attestor passes as shared
    /// sections).
    pub fn to_json(&self) -> Result<Json, PolicyError> {
        serde_json::to_value(self).map_err(|e| PolicyError::InputEncoding {
            reason: e.to_string(),
        })
    }

    /// The whole input: these facts with the boot claims and PCR values of the same evidence.
    pub fn with_boot(&self, boot: &BootClaims, pcrs: &PcrsSection) -> Result<Json, PolicyError> {
        let encoding = |e: serde_json::Error| PolicyError::InputEncoding {
            reason: e.to_string(),
        };
        let mut input = self.to_json()?;
        if let Json::Object(top) = &mut input {
            top.insert(
                "boot".to_owned(),
                serde_json::to_value(boot).map_err(encoding)?,
            );
            top.insert(
                "pcrs".to_owned(),
                serde_json::to_value(pcrs).map_err(encoding)?,
            );
        }
        Ok(input)
    }
}

/// `input.tpm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmFacts {
    /// What the EK (and its certificate) established.
    #[serde(flatten)]
    pub ek: EkFacts,
    /// From the quote.
    pub firmware_version: FirmwareVersion,
    /// The AK's key type.
    pub ak_algorithm: AkAlgorithm,
    /// TPMS_CLOCK_INFO.clock of the quote (ms).
    pub clock: u64,
    /// TPMS_CLOCK_INFO.resetCount of the quote.
    pub reset_count: u32,
    /// TPMS_CLOCK_INFO.restartCount of the quote.
    pub restart_count: u32,
}

impl TpmFacts {
    /// The facts of a verified EK, a checked AK and a verified quote: the producer every
    /// real input goes through.
    pub fn from_evidence(
        ek: EkFacts,
        ak: &AkIdentity,
        quote: &QuoteVerdict,
    ) -> Result<Self, PolicyError> {
        Ok(Self {
            ek,
            firmware_version: FirmwareVersion(quote.firmware_version),
            ak_algorithm: AkAlgorithm::of(ak)?,
            clock: quote.clock,
            reset_count: quote.reset_count,
            restart_count: quote.restart_count,
        })
    }
}

/// The EK facts in `input.tpm`. The attestor keeps them with the node at enrollment (the EK
/// certificate is not sent again) and reads them back for renewals ([`EkFacts::from_stored`]).
/// The optional fields are `null` when unknown (an EK accepted without a certificate, a
/// certificate naming no manufacturer): never absent, so a policy testing them sees `null`
/// rather than an undefined value that would silently skip its rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EkFacts {
    /// SHA-256 of the EK public key (DER SubjectPublicKeyInfo), lower-case hex.
    pub ek_sha256: String,
    /// EK certificate issuer DN (RFC 4514).
    pub ek_cert_issuer: Option<String>,
    /// EK certificate serial, hex.
    pub ek_cert_serial: Option<String>,
    /// TPMManufacturer from the EK certificate, e.g. `id:53544D20`.
    pub manufacturer: Option<String>,
}

impl From<&EkIdentity> for EkFacts {
    fn from(ek: &EkIdentity) -> Self {
        Self {
            ek_sha256: ek.ek_hash.clone(),
            ek_cert_issuer: ek.issuer.clone(),
            ek_cert_serial: ek.serial.clone(),
            manufacturer: ek
                .manufacturer
                .as_ref()
                .and_then(|m| m.manufacturer.clone()),
        }
    }
}

impl EkFacts {
    /// The facts from the JSON object the attestor stored at enrollment (other fields in it
    /// are ignored). Anything else is an error: a renewal never decides on made-up facts.
    pub fn from_stored(json: &str) -> Result<Self, PolicyError> {
        serde_json::from_str(json).map_err(|e| PolicyError::InputFact {
            field: "tpm",
            problem: format!("stored EK facts do not decode: {e}"),
        })
    }
}

/// TPMS_ATTEST.firmwareVersion, shown as `"<major>.<minor>"` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion(pub u64);

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let major = (self.0 >> 48) & 0xffff;
        let minor = (self.0 >> 32) & 0xffff;
        write!(f, "{major}.{minor}")
    }
}

impl Serialize for FirmwareVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The AK's key type, shown as `rsa-<bits>` or `ecc-nist-p<size>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AkAlgorithm {
    /// RSA with this modulus size.
    Rsa {
        /// keyBits.
        bits: u16,
    },
    /// ECC on NIST P-256.
    EccNistP256,
    /// ECC on NIST P-384.
    EccNistP384,
    /// ECC on NIST P-521.
    EccNistP521,
}

impl AkAlgorithm {
    /// The algorithm of a checked AK; a key type this input cannot name is an error.
    pub fn of(ak: &AkIdentity) -> Result<Self, PolicyError> {
        match &ak.public().key {
            PublicKey::Rsa { key_bits, .. } => Ok(Self::Rsa { bits: *key_bits }),
            PublicKey::Ecc {
                curve: EccCurve::NistP256,
                ..
            } => Ok(Self::EccNistP256),
            PublicKey::Ecc {
                curve: EccCurve::NistP384,
                ..
            } => Ok(Self::EccNistP384),
            PublicKey::Ecc {
                curve: EccCurve::NistP521,
                ..
            } => Ok(Self::EccNistP521),
            other => Err(PolicyError::InputFact {
                field: "tpm.ak_algorithm",
                problem: format!("no name for the AK key type {other:?}"),
            }),
        }
    }
}

impl std::fmt::Display for AkAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
            Self::EccNistP256 => f.write_str("ecc-nist-p256"),
            Self::EccNistP384 => f.write_str("ecc-nist-p384"),
            Self::EccNistP521 => f.write_str("ecc-nist-p521"),
        }
    }
}

impl Serialize for AkAlgorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `input.node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    /// Self-reported by the node at enrollment (hostname, serial, ...). UNTRUSTED.
    pub asserted: BTreeMap<String, String>,
}

/// `input.site`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteFacts {
    /// The site's name.
    pub id: String,
    /// Whether the site verifiably reaches its hub. Private: only a constructor that has
    /// checked may set it.
    connected: bool,
    /// Sequence of the policy bundle in force.
    pub bundle_sequence: u64,
}

impl SiteFacts {
    /// A site that has no hub to reach (there is none yet): `connected` is false, so
    /// policies give the disconnected TTL.
    pub fn without_hub(id: &str, bundle_sequence: u64) -> Self {
        Self {
            id: id.to_owned(),
            connected: false,
            bundle_sequence,
        }
    }

    /// Whether the site verifiably reaches its hub.
    pub fn connected(&self) -> bool {
        self.connected
    }
}

/// `input.request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestFacts {
    /// Enrollment or renewal.
    pub kind: RequestKind,
    /// When the decision is made: the only clock a policy sees.
    #[serde(serialize_with = "rfc3339")]
    pub time: OffsetDateTime,
    /// Renewals: the decision that admitted the current SVID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousDecision>,
}

impl RequestFacts {
    /// An enrollment decided at `time`.
    pub fn enroll(time: OffsetDateTime) -> Self {
        Self {
            kind: RequestKind::Enroll,
            time,
            previous: None,
        }
    }

    /// A renewal decided at `time` of an SVID admitted by `previous`.
    pub fn renew(time: OffsetDateTime, previous: PreviousDecision) -> Self {
        Self {
            kind: RequestKind::Renew,
            time,
            previous: Some(previous),
        }
    }
}

/// `input.request.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// `"enroll"`.
    Enroll,
    /// `"renew"`.
    Renew,
}

/// `input.request.previous`: what is known of the decision that admitted the current SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousDecision {
    /// Whether it admitted the node.
    pub allow: bool,
    /// The SPIFFE path it gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_path: Option<String>,
    /// Digest of the policy bundle that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
    /// When it was made.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_option"
    )]
    pub time: Option<OffsetDateTime>,
}

/// `input.pcrs`: bank name → PCR index (decimal string) → lower-case hex value. Built from
/// quoted values by the attestor and from replayed values by the golden generator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PcrsSection(BTreeMap<String, BTreeMap<String, String>>);

impl PcrsSection {
    /// The section of `(bank, index, value)` triples.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (HashAlg, u32, &'a [u8])>) -> Self {
        let mut banks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (alg, index, value) in values {
            banks
                .entry(alg.name().to_owned())
                .or_default()
                .insert(index.to_string(), hex::encode(value));
        }
        Self(banks)
    }

    /// As JSON.
    pub fn to_json(&self) -> Json {
        let banks = self.0.iter().map(|(bank, values)| {
            let values = values
                .iter()
                .map(|(index, value)| (index.clone(), Json::String(value.clone())));
            (bank.clone(), Json::Object(values.collect()))
        });
        Json::Object(banks.collect())
    }
}

fn rfc3339<S: Serializer>(time: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = time.format(&Rfc3339).map_err(|e| {
        serde::ser::Error::custom(format!("time not representable in RFC 3339: {e}"))
    })?;
    serializer.serialize_str(&text)
}

fn rfc3339_option<S: Serializer>(
    time: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}
