//! Canonical record encoding and RFC 6962 leaf hashes.
//!
//! # Canonical bytes, version 1
//!
//! The bytes hashed for a record at `sequence` are compact JSON (no whitespace, as
//! `serde_json::to_vec` writes it: strings UTF-8 with only `"`, `\` and control characters
//! escaped) of one object with exactly these members, in this order:
//!
//! | member | value |
//! |---|---|
//! | `v` | `1` (encoding version) |
//! | `sequence` | the record's sequence number |
//! | `time` | [`Record::time`] as integer unix microseconds (floor) |
//! | `site` | string |
//! | `kind` | [`RecordKind::as_str`](crate::RecordKind::as_str) |
//! | `node_id` | string or `null` |
//! | `spiffe_id` | string or `null` |
//! | `decision` | `"allow"` or `"deny"` |
//! | `reasons` | array of strings, in order |
//! | `policy_digest` | string or `null` |
//! | `evidence_digest` | lowercase hex SHA-256 or `null` |
//! | `cert_serial` | lowercase hex or `null` |
//! | `cert_not_after` | integer unix microseconds or `null` |
//!
//! Example: `{"v":1,"sequence":0,"time":1700000000000000,"site":"s1","kind":"enroll",
//! "node_id":"ab","spiffe_id":null,"decision":"allow","reasons":[],"policy_digest":null,
//! "evidence_digest":null,"cert_serial":null,"cert_not_after":null}` (one line).
//!
//! The leaf hash is `SHA-256(0x00 || canonical_bytes)` (RFC 6962 §2.1 leaf hashing).

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{LogError, Record};

/// Version of the canonical encoding written into every leaf (`"v"`).
pub const LEAF_ENCODING_VERSION: u32 = 1;

/// The version 1 leaf object. Field order is the encoding: do not reorder.
#[derive(Serialize)]
struct CanonicalLeafV1<'a> {
    v: u32,
    sequence: u64,
    time: i64,
    site: &'a str,
    kind: &'static str,
    node_id: Option<&'a str>,
    spiffe_id: Option<&'a str>,
    decision: &'static str,
    reasons: &'a [String],
    policy_digest: Option<&'a str>,
    evidence_digest: Option<&'a str>,
    cert_serial: Option<&'a str>,
    cert_not_after: Option<i64>,
}

/// The canonical bytes of `record` at `sequence` (see the module docs for the encoding).
pub fn canonical_bytes(sequence: u64, record: &Record) -> Result<Vec<u8>, LogError> {
    let leaf = CanonicalLeafV1 {
        v: LEAF_ENCODING_VERSION,
        sequence,
        time: unix_micros(record.time, "time")?,
        site: &record.site,
        kind: record.kind.as_str(),
        node_id: record.node_id.as_deref(),
        spiffe_id: record.spiffe_id.as_deref(),
        decision: record.decision.as_str(),
        reasons: &record.reasons,
        policy_digest: record.policy_digest.as_deref(),
        evidence_digest: record.evidence_digest.as_deref(),
        cert_serial: record.cert_serial.as_deref(),
        cert_not_after: record
            .cert_not_after
            .map(|t| unix_micros(t, "cert_not_after"))
            .transpose()?,
    };
    serde_json::to_vec(&leaf).map_err(|source| LogError::Encode { source })
}

/// The owned form of [`CanonicalLeafV1`], for reading canonical bytes back.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ParsedLeafV1 {
    v: u32,
    sequence: u64,
    time: i64,
    site: String,
    kind: String,
    node_id: Option<String>,
    spiffe_id: Option<String>,
    decision: String,
    reasons: Vec<String>,
    policy_digest: Option<String>,
    evidence_digest: Option<String>,
    cert_serial: Option<String>,
    cert_not_after: Option<i64>,
}

/// Reads canonical bytes back into the sequence and record they encode: what a replica (the
/// hub) does with the records a site sends. Only the canonical bytes themselves are
/// accepted: the record is encoded again and must give the same bytes, so the leaf hash of
/// what is stored is the leaf hash of what was sent.
pub fn record_from_canonical(bytes: &[u8]) -> Result<(u64, Record), LogError> {
    let not_canonical = |problem: String| LogError::NotCanonical { problem };
    let leaf: ParsedLeafV1 =
        serde_json::from_slice(bytes).map_err(|e| not_canonical(e.to_string()))?;
    if leaf.v != LEAF_ENCODING_VERSION {
        return Err(not_canonical(format!("encoding version {}", leaf.v)));
    }
    let time = |micros: i64, what: &'static str| {
        from_unix_micros(micros, what).map_err(|_| not_canonical(format!("{what} out of range")))
    };
    let record = Record {
        time: time(leaf.time, "time")?,
        site: leaf.site,
        kind: leaf.kind.parse()?,
        node_id: leaf.node_id,
        spiffe_id: leaf.spiffe_id,
        decision: leaf.decision.parse()?,
        reasons: leaf.reasons,
        policy_digest: leaf.policy_digest,
        evidence_digest: leaf.evidence_digest,
        cert_serial: leaf.cert_serial,
        cert_not_after: leaf
            .cert_not_after
            .map(|t| time(t, "cert_not_after"))
            .transpose()?,
    };
    if canonical_bytes(leaf.sequence, &record)? != bytes {
        return Err(not_canonical(
            "the record encodes to other bytes (spacing, escapes or member order differ)"
                .to_owned(),
        ));
    }
    Ok((leaf.sequence, record))
}

/// `SHA-256(0x00 || canonical_bytes(sequence, record))`.
pub fn leaf_hash(sequence: u64, record: &Record) -> Result<[u8; 32], LogError> {
    let bytes = canonical_bytes(sequence, record)?;
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(&bytes);
    Ok(hasher.finalize().into())
}

/// Lowercase hex SHA-256 of evidence bytes: the key evidence is stored under.
pub fn evidence_digest(evidence: &[u8]) -> String {
    hex::encode(Sha256::digest(evidence))
}

/// Whether `text` has the shape of an evidence digest: 64 hex digits (any case).
pub fn is_evidence_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Unix microseconds (floor). Fails only for dates beyond ±292 000 years.
pub(crate) fn unix_micros(t: OffsetDateTime, field: &'static str) -> Result<i64, LogError> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).map_err(|_| LogError::InvalidEntry {
        field,
        problem: "time out of range",
    })
}

/// The UTC time `micros` microseconds after the unix epoch.
pub(crate) fn from_unix_micros(
    micros: i64,
    column: &'static str,
) -> Result<OffsetDateTime, LogError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|_| {
        LogError::Corrupt {
            column,
            found: micros.to_string(),
        }
    })
}

/// `t` with its sub-microsecond part dropped, in UTC: what the log stores and hashes.
pub(crate) fn truncate_to_micros(
    t: OffsetDateTime,
    field: &'static str,
) -> Result<OffsetDateTime, LogError> {
    let micros = unix_micros(t, field)?;
    from_unix_micros(micros, field).map_err(|_| LogError::InvalidEntry {
        field,
        problem: "time out of range",
    })
}
