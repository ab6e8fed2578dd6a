//! What the hub checks of a pushed log batch before it touches its database: no I/O here.
//!
//! In order, each failure a [`Refusal`] with its stable code:
//! 1. the batch is for the caller's own log (`wrong-origin`);
//! 2. the log key's certificate chains to the root for that site (`bad-log-key`), and the
//!    checkpoint is a signed note by that key (`bad-signature`);
//! 3. every record is canonical bytes with the right sequence and the caller's site, and
//!    none lies beyond the checkpoint (`malformed-batch`);
//! 4. the proofs parse as 32-byte hashes (`malformed-batch`).
//!
//! What needs the hub's stored tree (the checkpoint extends what the hub holds and
//! witnessed; the records lead to the checkpoint's root) is checked by `hub.rs` with
//! [`consistent`].

use garrison_log::{Record, record_from_canonical};
use garrison_proto::v1;
use garrison_transparency::{Checkpoint, LogKeyCertificate, parse_site_origin, verify_checkpoint};

use crate::Refusal;

/// A batch that passed the checks that need no database.
#[derive(Debug)]
pub struct CheckedBatch {
    pub origin: String,
    pub checkpoint: Checkpoint,
    /// The certified log key.
    pub log_key: [u8; 32],
    pub log_key_chain_pem: String,
    pub first: u64,
    pub records: Vec<Record>,
    pub evidence: Vec<(String, Vec<u8>)>,
    pub proof_to_checkpoint: Vec<[u8; 32]>,
    pub proof_from_size: u64,
    pub proof_from: Vec<[u8; 32]>,
}

impl CheckedBatch {
    /// The size the records reach: `first + records` (checked not to overflow).
    pub fn end(&self) -> u64 {
        self.first
            .saturating_add(u64::try_from(self.records.len()).unwrap_or(u64::MAX))
    }
}

/// Checks `batch`, sent by the attestor of `caller_origin`'s site, against `roots`.
pub fn check(
    batch: v1::LogBatch,
    caller_origin: &str,
    roots: &[Vec<u8>],
) -> Result<CheckedBatch, Refusal> {
    if batch.origin != caller_origin {
        return Err(Refusal::new(
            "wrong-origin",
            format!(
                "the batch claims log {:?}; this caller may only push {caller_origin}",
                cut(&batch.origin)
            ),
        ));
    }
    let (_, site) = parse_site_origin(caller_origin).ok_or_else(|| {
        Refusal::new("wrong-origin", format!("{caller_origin} is not a site log"))
    })?;
    let log_key = certified_key(&batch.log_key_chain_pem, roots, caller_origin)?;
    let checkpoint = verify_checkpoint(&batch.checkpoint, caller_origin, &log_key)
        .map_err(|e| Refusal::new("bad-signature", e.to_string()))?;
    // Sequences are stored as i64: anything beyond is no record of a real log.
    let end = u64::try_from(batch.records.len())
        .ok()
        .and_then(|n| batch.first.checked_add(n))
        .filter(|end| i64::try_from(*end).is_ok())
        .ok_or_else(|| malformed(format!("records from #{} overflow", batch.first)))?;
    let records = records(&batch.records, batch.first, site)?;
    if end > checkpoint.size {
        return Err(malformed(format!(
            "records reach {end}, beyond the checkpoint's {}",
            checkpoint.size
        )));
    }
    Ok(CheckedBatch {
        origin: batch.origin,
        log_key,
        log_key_chain_pem: batch.log_key_chain_pem,
        first: batch.first,
        records,
        evidence: batch
            .evidence
            .into_iter()
            .map(|e| (e.digest, e.bytes))
            .collect(),
        proof_to_checkpoint: hashes(&batch.proof_to_checkpoint)?,
        proof_from_size: batch.proof_from_size,
        proof_from: hashes(&batch.proof_from)?,
        checkpoint,
    })
}

fn certified_key(chain_pem: &str, roots: &[Vec<u8>], origin: &str) -> Result<[u8; 32], Refusal> {
    LogKeyCertificate::from_pem(chain_pem)
        .and_then(|certificate| certificate.verify(roots, origin))
        .map_err(|e| Refusal::new("bad-log-key", e.to_string()))
}

fn records(encoded: &[Vec<u8>], first: u64, site: &str) -> Result<Vec<Record>, Refusal> {
    let mut records = Vec::with_capacity(encoded.len());
    for (expected, bytes) in (first..).zip(encoded) {
        let (sequence, record) = record_from_canonical(bytes)
            .map_err(|e| malformed(format!("record #{expected}: {e}")))?;
        if sequence != expected {
            return Err(malformed(format!(
                "record #{expected} says it is #{sequence}"
            )));
        }
        if record.site != site {
            return Err(Refusal::new(
                "wrong-origin",
                format!("record #{sequence} is of site {:?}", cut(&record.site)),
            ));
        }
        records.push(record);
    }
    Ok(records)
}

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<[u8; 32]>, Refusal> {
    if proof.len() > 64 {
        return Err(malformed(format!("a proof of {} hashes", proof.len())));
    }
    proof
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| malformed(format!("a proof hash of {} bytes", h.len())))
        })
        .collect()
}

/// Whether the tree of `old_size` with root `old_root` is a prefix of the tree of
/// `new_size` with root `new_root`, by `proof` (RFC 9162): equal roots for equal sizes.
pub fn consistent(
    old_size: u64,
    old_root: &[u8; 32],
    new_size: u64,
    new_root: &[u8; 32],
    proof: &[[u8; 32]],
) -> Result<(), String> {
    if old_size == new_size {
        return if old_root == new_root && proof.is_empty() {
            Ok(())
        } else {
            Err(format!("two different roots for size {new_size}"))
        };
    }
    garrison_transparency::verify_consistency(old_size, old_root, new_size, new_root, proof)
        .map_err(|e| e.to_string())
}

fn malformed(detail: String) -> Refusal {
    Refusal::new("malformed-batch", detail)
}

/// At most 80 characters of something a caller sent, for a message.
fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}
