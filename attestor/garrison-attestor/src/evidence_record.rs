//! The raw evidence of one request, stored beside its log record (by SHA-256 digest) so an
//! auditor can re-run the verifier over exactly what the attestor saw.
//!
//! Encoding: a JSON object, binary fields in standard base64, keys as below. Field order is
//! fixed by the struct, so the same evidence always encodes to the same bytes. The event log
//! is referred to by digest: `AttestationLog::evidence(event_log_sha256)` returns its bytes.
//!
//! A request refused before its sender proved anything (no EK certificate chain verified, no
//! credential activated, no current SVID) is the sender's choice of bytes, up to the 1 MiB the
//! transport accepts: its record keeps an [`UnprovenRequest`] instead, a digest and a size.
//! Likewise an event log that did not replay to its quote is kept as its digest only
//! (`event_log_sha256`): its bytes are stored only once they matched a TPM's PCRs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

/// Evidence as received, before any interpretation.
#[derive(Debug, Default, Serialize)]
pub struct EvidenceRecord {
    /// `enroll-begin`, `enroll-complete`, `renew-complete`.
    pub stage: &'static str,
    /// EK public area (TPM2B_PUBLIC).
    #[serde(serialize_with = "b64")]
    pub ek_public: Vec<u8>,
    /// EK certificate, DER.
    #[serde(serialize_with = "b64")]
    pub ek_certificate: Vec<u8>,
    /// AK public area (TPM2B_PUBLIC).
    #[serde(serialize_with = "b64")]
    pub ak_public: Vec<u8>,
    /// The nonce the quote had to carry.
    #[serde(serialize_with = "b64")]
    pub nonce: Vec<u8>,
    /// TPMS_ATTEST.
    #[serde(serialize_with = "b64")]
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    #[serde(serialize_with = "b64")]
    pub signature: Vec<u8>,
    /// Quoted PCR values as `(TPM_ALG_ID, index, digest)`.
    pub pcrs: Vec<(u32, u32, String)>,
    /// Lowercase hex SHA-256 of the measured-boot event log (empty when none was sent). The
    /// log's bytes are evidence of their own under that digest, stored with the first record
    /// that refers to them, so a fleet's identical logs are kept once.
    pub event_log_sha256: String,
    /// PKCS#10 CSR, DER.
    #[serde(serialize_with = "b64")]
    pub csr: Vec<u8>,
}

/// What the log keeps of a request refused before its sender proved anything: never its
/// bytes. JSON like [`EvidenceRecord`].
#[derive(Debug, Serialize)]
pub struct UnprovenRequest {
    /// `enroll-begin`, `enroll-complete`, `renew-begin`, `renew-complete`.
    pub stage: &'static str,
    /// The client's address (`ip:port`), or `unknown`.
    pub peer: String,
    /// Size of the request message as decoded and encoded again (protobuf; fields this
    /// version does not know are dropped by the decoder and never reach the attestor).
    pub request_bytes: usize,
    /// Lowercase hex SHA-256 of those bytes.
    pub request_sha256: String,
}

impl UnprovenRequest {
    /// The bytes stored in the log's evidence table (a few hundred at most).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn b64<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

impl EvidenceRecord {
    /// The canonical bytes stored in the log's evidence table.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
