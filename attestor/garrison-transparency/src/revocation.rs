//! The hub's revocation list: a signed note that every site enforces.
//!
//! ```text
//! garrison.<td>/revocations
//! <sequence>
//! issued <unix seconds>
//! node <EK hash: 64 lowercase hex>            (zero or more entries, sorted, no duplicates)
//! serial <certificate serial: 1 to 40 lowercase hex>
//!
//! — garrison.<td>/hub <base64 key ID and Ed25519 signature>
//! ```
//!
//! Numbers are decimal without leading zeros. Entries are sorted by their line text (all
//! `node` lines before all `serial` lines). The signature is a plain signed-note Ed25519
//! signature by the hub witness key under the witness name. Reading is strict: anything else
//! (an unknown line, uppercase hex, a duplicate, an empty line, a stray space) is refused with
//! the line and the [`RevocationDefect`], never skipped. A site keeps the list with the
//! highest sequence it has seen; comparing sequences is the caller's job.

use std::fmt;

use crate::TransparencyError;
use crate::key::{ed25519_verifies, note_public_key};
use crate::note;
use crate::witness::{WitnessKey, checked_trust_domain, hub_witness_name};

/// The most entries a revocation list may hold.
pub const MAX_REVOCATIONS: usize = 1_000_000;
/// The longest revocation list note, in bytes (64 MiB).
pub const MAX_REVOCATION_NOTE_LEN: usize = 64 * 1024 * 1024;
/// The number of body lines before the entries.
const HEADER_LINES: usize = 3;

/// The origin line of a trust domain's revocation list: `garrison.<td>/revocations`.
pub fn revocations_origin(trust_domain: &str) -> String {
    format!("garrison.{trust_domain}/revocations")
}

/// A revocation list: what the hub has revoked in one trust domain, as of `issued_unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// The trust domain whose hub issued it.
    pub trust_domain: String,
    /// Increases with every list the hub issues.
    pub sequence: u64,
    /// When the hub issued it, in seconds since the epoch.
    pub issued_unix: u64,
    /// What is revoked; sorted and without duplicates in a verified list.
    pub entries: Vec<RevokedTarget>,
}

/// One revoked thing. The derived order is the order of the lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RevokedTarget {
    /// A node, by the SHA-256 of its EK public key: 64 lowercase hex characters.
    Node(String),
    /// A certificate, by its serial number: 1 to 40 lowercase hex characters.
    Serial(String),
}

/// Why a revocation list line is not exactly the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationDefect {
    /// The body ends before the sequence or the issued line.
    MissingLine,
    /// The sequence is not a decimal u64 without leading zeros.
    BadSequence,
    /// The third line is not `issued <decimal u64 without leading zeros>`.
    BadIssued,
    /// An empty line among the entries.
    EmptyLine,
    /// An entry that is not `node <hex>` or `serial <hex>`.
    UnknownKind,
    /// Hex with uppercase digits (A-F).
    UppercaseHex,
    /// Characters that are not hex digits.
    NotHex,
    /// A node hash that is not 64 hex characters.
    NodeHashLength {
        /// The length found.
        got: usize,
    },
    /// A serial that is not 1 to 40 hex characters.
    SerialLength {
        /// The length found.
        got: usize,
    },
    /// An entry that sorts before the one above it.
    Unsorted,
    /// An entry equal to the one above it.
    Duplicate,
}

impl fmt::Display for RevocationDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationDefect::MissingLine => f.write_str("the list ends before its header does"),
            RevocationDefect::BadSequence => f.write_str("not a decimal sequence number"),
            RevocationDefect::BadIssued => f.write_str("not `issued <decimal seconds>`"),
            RevocationDefect::EmptyLine => f.write_str("an empty line"),
            RevocationDefect::UnknownKind => f.write_str("not a `node` or `serial` entry"),
            RevocationDefect::UppercaseHex => f.write_str("uppercase hex"),
            RevocationDefect::NotHex => f.write_str("not hex"),
            RevocationDefect::NodeHashLength { got } => {
                write!(f, "node hash is {got} hex characters, expected 64")
            }
            RevocationDefect::SerialLength { got } => {
                write!(f, "serial is {got} hex characters, expected 1 to 40")
            }
            RevocationDefect::Unsorted => f.write_str("entries are not sorted"),
            RevocationDefect::Duplicate => f.write_str("a duplicate entry"),
        }
    }
}

impl RevokedTarget {
    fn line(&self) -> String {
        match self {
            RevokedTarget::Node(hash) => format!("node {hash}"),
            RevokedTarget::Serial(serial) => format!("serial {serial}"),
        }
    }

    fn parse(line: &str) -> Result<Self, RevocationDefect> {
        let target = match line.split_once(' ') {
            None if line.is_empty() => return Err(RevocationDefect::EmptyLine),
            Some(("node", hash)) => RevokedTarget::Node(hash.to_owned()),
            Some(("serial", serial)) => RevokedTarget::Serial(serial.to_owned()),
            _ => return Err(RevocationDefect::UnknownKind),
        };
        target.check()?;
        Ok(target)
    }

    /// Is the hex exactly what the format allows?
    fn check(&self) -> Result<(), RevocationDefect> {
        match self {
            RevokedTarget::Node(hash) => {
                check_hex(hash)?;
                if hash.len() != 64 {
                    return Err(RevocationDefect::NodeHashLength { got: hash.len() });
                }
            }
            RevokedTarget::Serial(serial) => {
                check_hex(serial)?;
                if !(1..=40).contains(&serial.len()) {
                    return Err(RevocationDefect::SerialLength { got: serial.len() });
                }
            }
        }
        Ok(())
    }
}

fn check_hex(hex: &str) -> Result<(), RevocationDefect> {
    if hex.bytes().any(|b| matches!(b, b'A'..=b'F')) {
        return Err(RevocationDefect::UppercaseHex);
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RevocationDefect::NotHex);
    }
    Ok(())
}

/// A decimal u64 written the one canonical way: digits only, no leading zero but `0` itself.
fn canonical_u64(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = digits && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn malformed(line: usize, defect: RevocationDefect) -> TransparencyError {
    TransparencyError::RevocationListMalformed { line, defect }
}

fn too_many(entries: usize) -> TransparencyError {
    TransparencyError::TooManyRevocations {
        entries,
        max: MAX_REVOCATIONS,
    }
}

impl RevocationList {
    /// Checks `note` as the revocation list of `trust_domain` signed by the hub witness key
    /// `witness_public` (under [`hub_witness_name`]), and parses it strictly. Never panics.
    pub fn verify(
        note: &str,
        trust_domain: &str,
        witness_public: &[u8; 32],
    ) -> Result<RevocationList, TransparencyError> {
        let trust_domain = checked_trust_domain(trust_domain)?;
        let split = note::split(note, MAX_REVOCATION_NOTE_LEN)?;
        let witness = hub_witness_name(trust_domain);
        let key_id = signed_note::key_id(&witness, &note_public_key(witness_public));
        let signature = note::signature_by(&split.signatures, &witness, key_id)?;
        if !ed25519_verifies(witness_public, split.body.as_bytes(), signature.signature()) {
            return Err(TransparencyError::RevocationSignatureInvalid { witness });
        }
        parse_body(split.body, trust_domain)
    }

    /// The body: header lines, then the entries, sorted and without duplicates.
    fn body(&self) -> Result<String, TransparencyError> {
        if self.entries.len() > MAX_REVOCATIONS {
            return Err(too_many(self.entries.len()));
        }
        let mut entries: Vec<&RevokedTarget> = self.entries.iter().collect();
        entries.sort_unstable();
        entries.dedup();
        let mut body = format!(
            "{}\n{}\nissued {}\n",
            revocations_origin(&self.trust_domain),
            self.sequence,
            self.issued_unix
        );
        for (index, entry) in entries.into_iter().enumerate() {
            entry
                .check()
                .map_err(|defect| malformed(HEADER_LINES + 1 + index, defect))?;
            body.push_str(&entry.line());
            body.push('\n');
        }
        Ok(body)
    }
}

/// Of the revocation lists a site keeps, newest first as `(sequence, note)`: the newest that
/// verifies as `trust_domain`'s with one of `witness_keys` and states its own sequence, and
/// the ones above it that do not (sequence, why). A list whose note is of another trust
/// domain (kept from before the site's trust domain changed) is passed over silently: it
/// is not this trust domain's, and decides nothing here.
pub fn newest_verified_list(
    kept: &[(u64, String)],
    trust_domain: &str,
    witness_keys: &[[u8; 32]],
) -> NewestList {
    let ours = revocations_origin(trust_domain);
    let mut newest = NewestList::default();
    for (sequence, note) in kept {
        let origin = note.split('\n').next().unwrap_or_default();
        let another_domains =
            origin != ours && origin.starts_with("garrison.") && origin.ends_with("/revocations");
        if another_domains {
            continue;
        }
        let mut why = "no witness key certified under the roots is kept".to_owned();
        for key in witness_keys {
            match RevocationList::verify(note, trust_domain, key) {
                Ok(list) if list.sequence == *sequence => {
                    newest.held = Some(list);
                    return newest;
                }
                Ok(list) => {
                    why = format!(
                        "it is kept as list #{sequence} but is list #{}",
                        list.sequence
                    )
                }
                Err(e) => why = e.to_string(),
            }
        }
        newest.unverifiable.push((*sequence, why));
    }
    newest
}

/// What [`newest_verified_list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewestList {
    /// The newest list kept that verifies.
    pub held: Option<RevocationList>,
    /// Lists kept above it (this trust domain's, or claiming no other) that do not verify:
    /// (sequence, why).
    pub unverifiable: Vec<(u64, String)>,
}

/// See [`WitnessKey::sign_revocations`].
pub(crate) fn sign_revocations(
    key: &WitnessKey,
    list: &RevocationList,
) -> Result<String, TransparencyError> {
    if list.trust_domain != key.trust_domain() {
        return Err(TransparencyError::RevocationListTrustDomain {
            key: key.trust_domain().to_owned(),
            list: list.trust_domain.clone(),
        });
    }
    let body = list.body()?;
    let signature = note::new_signature(key.name(), key.note_key_id(), key.sign(body.as_bytes()))?;
    let note = note::join(&body, &[signature])?;
    if note.len() > MAX_REVOCATION_NOTE_LEN {
        return Err(TransparencyError::NoteTooLarge {
            bytes: note.len(),
            max: MAX_REVOCATION_NOTE_LEN,
        });
    }
    Ok(note)
}

/// Parses a verified body (which ends in a newline) strictly.
fn parse_body(body: &str, trust_domain: &str) -> Result<RevocationList, TransparencyError> {
    // `note::split` leaves the body's final newline on it, and `split` yields at least one
    // (possibly empty) line: neither fallback below is ever taken.
    let mut lines = body.strip_suffix('\n').unwrap_or(body).split('\n');
    let origin = revocations_origin(trust_domain);
    let first = lines.next().unwrap_or_default();
    if first != origin {
        return Err(TransparencyError::RevocationListWrongOrigin {
            expected: origin,
            got: first.chars().take(300).collect(),
        });
    }
    let sequence_line = lines
        .next()
        .ok_or(malformed(2, RevocationDefect::MissingLine))?;
    let sequence =
        canonical_u64(sequence_line).ok_or(malformed(2, RevocationDefect::BadSequence))?;
    let issued_unix = lines
        .next()
        .ok_or(malformed(3, RevocationDefect::MissingLine))?
        .strip_prefix("issued ")
        .and_then(canonical_u64)
        .ok_or(malformed(3, RevocationDefect::BadIssued))?;
    Ok(RevocationList {
        trust_domain: trust_domain.to_owned(),
        sequence,
        issued_unix,
        entries: parse_entries(lines)?,
    })
}

/// The entry lines, each checked, in strictly increasing order.
fn parse_entries<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<RevokedTarget>, TransparencyError> {
    let mut entries: Vec<RevokedTarget> = Vec::new();
    for (index, line) in lines.enumerate() {
        let number = HEADER_LINES + 1 + index;
        if entries.len() == MAX_REVOCATIONS {
            return Err(too_many(MAX_REVOCATIONS + 1));
        }
        let entry = RevokedTarget::parse(line).map_err(|defect| malformed(number, defect))?;
        match entries.last().map(|last| last.cmp(&entry)) {
            Some(std::cmp::Ordering::Equal) => {
                return Err(malformed(number, RevocationDefect::Duplicate));
            }
            Some(std::cmp::Ordering::Greater) => {
                return Err(malformed(number, RevocationDefect::Unsorted));
            }
            _ => entries.push(entry),
        }
    }
    Ok(entries)
}
