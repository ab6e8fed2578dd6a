//! The raw evidence of one request, stored beside its log record (by SHA-256 digest) so an
//! auditor can re-run the appraisal over exactly what the attestor saw.
//!
//! Encoding: a JSON object, binary fields in standard base64, keys as below. Field order is
//! fixed by the struct, so the same evidence always encodes to the same bytes; [`decode`]
//! accepts exactly those bytes (anything that would not encode back to itself is refused), so
//! a record's digest names one evidence value. The event log is referred to by digest: the
//! log's `evidence(event_log_sha256)` returns its bytes.
//!
//! A request refused before its sender proved anything (no EK certificate chain verified, no
//! credential activated, no current SVID) is the sender's choice of bytes, up to the 1 MiB the
//! transport accepts: its record keeps an [`UnprovenRequest`] instead, a digest and a size.
//! Likewise an event log that did not replay to its quote is kept as its digest only
//! (`event_log_sha256`): its bytes are stored only once they matched a TPM's PCRs.
//!
//! [`decode`]: EvidenceRecord::decode

use serde::{Deserialize, Serialize};

use crate::appraisal::{Answer, Quote, QuotedPcr};
use crate::boot::sha256;

/// Which step of which exchange a record's evidence comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// No step: the evidence of a refusal that came before any was received (a renewal
    /// whose challenge could not be drawn). Encoded as the empty string.
    #[default]
    #[serde(rename = "")]
    None,
    /// Enrollment, step 1 (keys and EK certificate).
    EnrollBegin,
    /// Enrollment, step 2 (the answer: quote, event log, CSR).
    EnrollComplete,
    /// Renewal, step 1 (no evidence; only [`UnprovenRequest`]s carry it).
    RenewBegin,
    /// Renewal, step 2 (the answer).
    RenewComplete,
}

/// Evidence as received, before any interpretation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// `enroll-begin`, `enroll-complete`, `renew-complete` (or empty, see [`Stage::None`]).
    pub stage: Stage,
    /// EK public area (TPM2B_PUBLIC).
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// EK certificate, DER.
    #[serde(with = "b64")]
    pub ek_certificate: Vec<u8>,
    /// AK public area (TPM2B_PUBLIC).
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The nonce the quote had to carry.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// TPMS_ATTEST.
    #[serde(with = "b64")]
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    /// Quoted PCR values as `(TPM_ALG_ID, index, digest)`, digest in lowercase hex.
    pub pcrs: Vec<(u32, u32, String)>,
    /// Lowercase hex SHA-256 of the measured-boot event log (empty when none was sent). The
    /// log's bytes are evidence of their own under that digest, stored with the first record
    /// that refers to them, so a fleet's identical logs are kept once.
    pub event_log_sha256: String,
    /// PKCS#10 CSR, DER.
    #[serde(with = "b64")]
    pub csr: Vec<u8>,
}

/// What the log keeps of a request refused before its sender proved anything: never its
/// bytes. JSON like [`EvidenceRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnprovenRequest {
    /// `enroll-begin`, `enroll-complete`, `renew-begin`, `renew-complete`.
    pub stage: Stage,
    /// The client's address (`ip:port`), or `unknown`.
    pub peer: String,
    /// Size of the request message as decoded and encoded again (protobuf; fields this
    /// version does not know are dropped by the decoder and never reach the attestor).
    pub request_bytes: usize,
    /// Lowercase hex SHA-256 of those bytes.
    pub request_sha256: String,
}

/// Why stored evidence bytes do not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON of the record's shape (unknown or missing field, bad base64, wrong type).
    #[error("{what} does not decode: {source}")]
    Shape {
        /// `evidence record` or `unproven request`.
        what: &'static str,
        /// What the JSON decoder found.
        #[source]
        source: serde_json::Error,
    },
    /// Decodes, but is not the canonical encoding of what it decodes to (spacing, key order,
    /// escapes): the attestor never writes such bytes.
    #[error("{what} is not canonical: {got} bytes stored, {expected} bytes when encoded again")]
    NotCanonical {
        /// `evidence record` or `unproven request`.
        what: &'static str,
        /// Length of the canonical encoding.
        expected: usize,
        /// Length of the bytes given.
        got: usize,
    },
    /// The event log given is not the one the record names.
    #[error("the record names event log {expected:?}, the log given has SHA-256 {got}")]
    EventLogDigest {
        /// The record's `event_log_sha256` (empty: no log was sent).
        expected: String,
        /// The digest of the bytes given.
        got: String,
    },
    /// A quoted PCR value is not hex.
    #[error("PCR {index} of bank {hash_alg:#x}: digest {digest:?} is not hex")]
    PcrDigest {
        /// TPM_ALG_ID of the bank.
        hash_alg: u32,
        /// PCR index.
        index: u32,
        /// The stored digest.
        digest: String,
    },
}

impl EvidenceRecord {
    /// The canonical bytes stored in the log's evidence table.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored as `bytes` (as [`Self::to_bytes`] wrote them).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "evidence record";
        let record: Self = serde_json::from_slice(bytes)
            .map_err(|source| DecodeError::Shape { what: WHAT, source })?;
        canonical(WHAT, bytes, &record.to_bytes())?;
        Ok(record)
    }

    /// The quote the record holds, as the appraisal takes it; `None` when the record has no
    /// quote (no attest, no signature, no PCR values: the request carried none, or carried an
    /// empty one, which the encoding does not tell apart).
    pub fn quote(&self) -> Result<Option<Quote>, DecodeError> {
        if self.attest.is_empty() && self.signature.is_empty() && self.pcrs.is_empty() {
            return Ok(None);
        }
        let pcrs = self
            .pcrs
            .iter()
            .map(|(hash_alg, index, digest)| {
                let bytes = hex::decode(digest).map_err(|_| DecodeError::PcrDigest {
                    hash_alg: *hash_alg,
                    index: *index,
                    digest: digest.clone(),
                })?;
                Ok(QuotedPcr {
                    hash_alg: *hash_alg,
                    index: *index,
                    digest: bytes,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Some(Quote {
            attest: self.attest.clone(),
            signature: self.signature.clone(),
            pcrs,
        }))
    }

    /// The answer this record holds, as the appraisal takes it: `quote` is [`Self::quote`]'s,
    /// `event_log` the bytes stored under [`Self::event_log_sha256`] (empty when it is
    /// empty), checked against it.
    ///
    /// [`Self::event_log_sha256`]: EvidenceRecord::event_log_sha256
    pub fn answer<'a>(
        &'a self,
        quote: Option<&'a Quote>,
        event_log: &'a [u8],
    ) -> Result<Answer<'a>, DecodeError> {
        let digest = sha256(event_log);
        let named = if event_log.is_empty() {
            String::new()
        } else {
            hex::encode(digest)
        };
        if named != self.event_log_sha256 {
            return Err(DecodeError::EventLogDigest {
                expected: self.event_log_sha256.clone(),
                got: hex::encode(digest),
            });
        }
        Ok(Answer {
            nonce: &self.nonce,
            quote,
            event_log,
            event_log_sha256: digest,
            csr: &self.csr,
        })
    }

    /// Keep the answer to a challenge: the quote (if one came), the event log's digest (if a
    /// log came) and the CSR.
    pub fn fill_answer(
        &mut self,
        quote: Option<&Quote>,
        event_log_sha256: &[u8; 32],
        event_log: &[u8],
        csr: &[u8],
    ) {
        if let Some(q) = quote {
            self.attest = q.attest.clone();
            self.signature = q.signature.clone();
            self.pcrs = q
                .pcrs
                .iter()
                .map(|p| (p.hash_alg, p.index, hex::encode(&p.digest)))
                .collect();
        }
        if !event_log.is_empty() {
            self.event_log_sha256 = hex::encode(event_log_sha256);
        }
        self.csr = csr.to_vec();
    }
}

impl UnprovenRequest {
    /// The bytes stored in the log's evidence table (a few hundred at most).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored as `bytes` (as [`Self::to_bytes`] wrote them).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "unproven request";
        let record: Self = serde_json::from_slice(bytes)
            .map_err(|source| DecodeError::Shape { what: WHAT, source })?;
        canonical(WHAT, bytes, &record.to_bytes())?;
        Ok(record)
    }
}

fn canonical(what: &'static str, got: &[u8], encoded: &[u8]) -> Result<(), DecodeError> {
    if got != encoded {
        return Err(DecodeError::NotCanonical {
            what,
            expected: encoded.len(),
            got: got.len(),
        });
    }
    Ok(())
}

/// Bytes as standard base64 strings.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as the attestor wrote them before this crate existed (its `EvidenceRecord`
    /// serialised with `serialize_with`): the encoding must not change, or the digests in
    /// existing logs would name evidence nobody can decode the same way again.
    const GOLDEN: &str = concat!(
        r#"{"stage":"renew-complete","ek_public":"","ek_certificate":"","ak_public":"AAEC","#,
        r#""nonce":"bm9uY2U=","attest":"/0RVRw==","signature":"ABQACw==","#,
        r#""pcrs":[[11,0,"00ff"],[11,7,""]],"event_log_sha256":"#,
        r#""e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","csr":"MII=""#,
        "}"
    );

    fn sample() -> EvidenceRecord {
        EvidenceRecord {
            stage: Stage::RenewComplete,
            ak_public: vec![0, 1, 2],
            nonce: b"nonce".to_vec(),
            attest: vec![0xff, 0x44, 0x55, 0x47],
            signature: vec![0x00, 0x14, 0x00, 0x0b],
            pcrs: vec![(11, 0, "00ff".into()), (11, 7, String::new())],
            event_log_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .into(),
            csr: vec![0x30, 0x82],
            ..EvidenceRecord::default()
        }
    }

    #[test]
    fn the_encoding_is_the_one_already_in_logs() {
        assert_eq!(String::from_utf8(sample().to_bytes()).unwrap(), GOLDEN);
        let empty = EvidenceRecord::default().to_bytes();
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            r#"{"stage":"","ek_public":"","ek_certificate":"","ak_public":"","nonce":"","attest":"","signature":"","pcrs":[],"event_log_sha256":"","csr":""}"#
        );
    }

    #[test]
    fn encode_decode_encode_gives_the_same_bytes() {
        for record in [sample(), EvidenceRecord::default()] {
            let bytes = record.to_bytes();
            let decoded = EvidenceRecord::decode(&bytes).unwrap();
            assert_eq!(decoded, record);
            assert_eq!(decoded.to_bytes(), bytes);
        }
        let unproven = UnprovenRequest {
            stage: Stage::RenewBegin,
            peer: "127.0.0.1:4000".into(),
            request_bytes: 0,
            request_sha256: "e3b0".into(),
        };
        let bytes = unproven.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"stage":"renew-begin","peer":"127.0.0.1:4000","request_bytes":0,"request_sha256":"e3b0"}"#
        );
        assert_eq!(UnprovenRequest::decode(&bytes).unwrap(), unproven);
    }

    #[test]
    fn only_canonical_bytes_of_the_right_shape_decode() {
        let spaced = GOLDEN.replace(',', ", ");
        assert!(matches!(
            EvidenceRecord::decode(spaced.as_bytes()),
            Err(DecodeError::NotCanonical { .. })
        ));
        for bad in [
            GOLDEN.replace("renew-complete", "renew-later"),
            GOLDEN.replace("AAEC", "AAE"),
            GOLDEN.replace(r#""csr""#, r#""extra":"","csr""#),
            GOLDEN.replace(r#","csr":"MII=""#, ""),
            String::new(),
        ] {
            assert!(
                matches!(
                    EvidenceRecord::decode(bad.as_bytes()),
                    Err(DecodeError::Shape { .. })
                ),
                "{bad}"
            );
        }
        // An unproven request is not an evidence record, nor the other way round.
        assert!(UnprovenRequest::decode(GOLDEN.as_bytes()).is_err());
    }

    /// The fuzz target's property over every truncation and single-byte change of the
    /// golden record: no panic, and whatever decodes is canonical.
    #[test]
    fn damaged_records_are_refused_or_canonical() {
        let golden = GOLDEN.as_bytes();
        let mut cases: Vec<Vec<u8>> = (0..golden.len()).map(|n| golden[..n].to_vec()).collect();
        for i in 0..golden.len() {
            for byte in [b'"', b'A', b'0', b'\\', 0xff] {
                let mut damaged = golden.to_vec();
                damaged[i] = byte;
                cases.push(damaged);
            }
        }
        let mut decoded = 0;
        for bytes in &cases {
            if let Ok(record) = EvidenceRecord::decode(bytes) {
                assert_eq!(&record.to_bytes(), bytes);
                let _ = record.quote();
                decoded += 1;
            }
        }
        // Some changes keep a valid record (a base64 or hex character for another).
        assert!(
            decoded > 0 && decoded < cases.len(),
            "{decoded} of {}",
            cases.len()
        );
    }

    #[test]
    fn the_quote_comes_back_as_received() {
        let quote = sample().quote().unwrap().unwrap();
        assert_eq!(quote.attest, sample().attest);
        assert_eq!(quote.pcrs.len(), 2);
        assert_eq!(quote.pcrs[0].digest, vec![0x00, 0xff]);
        let mut refilled = EvidenceRecord::default();
        refilled.fill_answer(Some(&quote), &[0; 32], b"", &sample().csr);
        assert_eq!(refilled.pcrs, sample().pcrs);
        assert_eq!(refilled.event_log_sha256, "", "no log sent, no digest kept");
        assert_eq!(EvidenceRecord::default().quote().unwrap(), None);
        let mut bad = sample();
        bad.pcrs[0].2 = "zz".into();
        assert!(matches!(bad.quote(), Err(DecodeError::PcrDigest { .. })));
    }
}
