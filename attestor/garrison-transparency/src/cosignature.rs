//! C2SP tlog-cosignature `cosignature/v1` (Ed25519) lines on checkpoints.
//!
//! A cosignature is a signed-note line `— <witness name> base64(key ID || timestamp ||
//! signature)`:
//!
//! * key ID: `SHA-256(<name> || "\n" || 0x04 || 32-byte public key)[:4]`;
//! * timestamp: seconds since the epoch as a big-endian u64, at most 2^63 - 1;
//! * signature: Ed25519 over `cosignature/v1\ntime <timestamp>\n` followed by the whole
//!   checkpoint body (with its final newline, without any signature line).
//!
//! The site sends its signed checkpoint to the hub, the hub returns it with its cosignature
//! line appended, and the site checks that line ([`verify_cosignature`]) and merges it into
//! the note it stores ([`add_cosignature_line`]).

use crate::TransparencyError;
use crate::key::ed25519_verifies;
use crate::note::{self, SplitNote};
use crate::witness::WitnessKey;

/// The signature-type byte of Ed25519 cosignatures in key IDs.
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The largest timestamp a cosignature may carry, 2^63 - 1.
const MAX_TIMESTAMP: u64 = u64::MAX >> 1;
/// Timestamp and Ed25519 signature: what follows the key ID.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;
/// The largest checkpoint note handled, as `signed_note` (and so [`crate::verify_checkpoint`])
/// allows.
const MAX_CHECKPOINT_NOTE_LEN: usize = 1_000_000;

/// A cosignature whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// When the witness cosigned, in seconds since the epoch (at most 2^63 - 1).
    pub timestamp: u64,
    /// The signature line as it stands in the note, without its newline.
    pub line: String,
    /// The origin line of the checkpoint it signs, as signed.
    pub origin: String,
    /// The tree size of the checkpoint it signs, as signed: what a reader reports as
    /// witnessed, rather than any size stored beside the note.
    pub size: u64,
}

/// The cosignature key ID of a witness: the key ID of `0x04 || public` under `name`.
pub(crate) fn cosignature_key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut key = Vec::with_capacity(33);
    key.push(ALG_COSIGNATURE_V1);
    key.extend_from_slice(public);
    signed_note::key_id(name, &key)
}

/// What the witness signs: the header line, the time line, and the checkpoint body.
fn signed_message(timestamp: u64, body: &str) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(body.as_bytes());
    message
}

fn check_timestamp(timestamp: u64) -> Result<(), TransparencyError> {
    if timestamp > MAX_TIMESTAMP {
        return Err(TransparencyError::CosignatureTimestampTooLarge { timestamp });
    }
    Ok(())
}

/// A checkpoint note split into body and signatures, with the body parsed; the body must be
/// a checkpoint.
fn split_checkpoint(
    note: &str,
) -> Result<(SplitNote<'_>, tlog_tiles::Checkpoint), TransparencyError> {
    let split = note::split(note, MAX_CHECKPOINT_NOTE_LEN)?;
    let body = tlog_tiles::Checkpoint::from_bytes(split.body.as_bytes()).map_err(|e| {
        TransparencyError::CheckpointMalformed {
            reason: e.to_string(),
        }
    })?;
    Ok((split, body))
}

/// See [`WitnessKey::cosign`].
pub(crate) fn cosign(
    key: &WitnessKey,
    note: &str,
    timestamp: u64,
) -> Result<String, TransparencyError> {
    check_timestamp(timestamp)?;
    let (split, _) = split_checkpoint(note)?;
    let mut signature = timestamp.to_be_bytes().to_vec();
    signature.extend(key.sign(&signed_message(timestamp, split.body)));
    let key_id = cosignature_key_id(key.name(), &key.public_key());
    let line = note::new_signature(key.name(), key_id, signature)?;
    note::with_signature(split, line)
}

/// The timestamp and Ed25519 signature of a cosignature line's signature field.
fn timestamped(signature: &[u8]) -> Result<(u64, &[u8]), TransparencyError> {
    let length_error = || TransparencyError::CosignatureLength {
        expected: TIMESTAMPED_SIGNATURE_LEN,
        got: signature.len(),
    };
    if signature.len() != TIMESTAMPED_SIGNATURE_LEN {
        return Err(length_error());
    }
    let (time, ed25519) = signature
        .split_first_chunk::<8>()
        .ok_or_else(length_error)?;
    let timestamp = u64::from_be_bytes(*time);
    check_timestamp(timestamp)?;
    Ok((timestamp, ed25519))
}

/// Checks that `note`, a checkpoint, carries exactly one cosignature line by the witness
/// `witness_name` with `public_key`, and that it verifies over the checkpoint body. Other
/// signature lines (the log's own, other witnesses', this witness's under another key) are
/// ignored. Never panics.
pub fn verify_cosignature(
    note: &str,
    witness_name: &str,
    public_key: &[u8; 32],
) -> Result<Cosignature, TransparencyError> {
    let (split, body) = split_checkpoint(note)?;
    let key_id = cosignature_key_id(witness_name, public_key);
    let line = note::signature_by(&split.signatures, witness_name, key_id)?;
    let (timestamp, ed25519) = timestamped(line.signature())?;
    if !ed25519_verifies(public_key, &signed_message(timestamp, split.body), ed25519) {
        return Err(TransparencyError::CosignatureInvalid {
            witness: witness_name.to_owned(),
        });
    }
    Ok(Cosignature {
        timestamp,
        line: note::signature_line(line)?,
        origin: body.origin().to_owned(),
        size: body.size(),
    })
}

/// `note` (a checkpoint) with the cosignature `line` (as in [`Cosignature::line`], without
/// newline) appended, replacing any line with the same name and key ID: how a site merges
/// the hub's cosignature into the note it stores. The line must be well formed (a
/// timestamp of at most 2^63 - 1 and a 64-byte signature) but is not verified here: take it
/// from [`verify_cosignature`] over a note with the same body, or verify the result.
pub fn add_cosignature_line(note: &str, line: &str) -> Result<String, TransparencyError> {
    let (split, _) = split_checkpoint(note)?;
    let signature = note::parse_signature_line(line)?;
    timestamped(signature.signature())?;
    note::with_signature(split, signature)
}
