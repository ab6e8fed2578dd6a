//! Proof texts and their verification.
//!
//! An [`InclusionProof`] is a C2SP `tlog-proof@v1`:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the record's canonical bytes>
//! index <sequence>
//! <base64 hash>            (the RFC 9162 audit path, leaf side first, one per line)
//!
//! <the signed checkpoint, verbatim>
//! ```
//!
//! The `extra` line carries the record's canonical bytes (`garrison_log::canonical_bytes`),
//! so the proof alone gives the leaf hash, `SHA-256(0x00 || extra)`; a verifier that holds
//! the record recomputes the bytes and compares.
//!
//! A [`ConsistencyProof`] has no C2SP format; Garrison writes it in the same style:
//!
//! ```text
//! garrison.dev/tlog-consistency@v1
//! old <size>
//! new <size>
//! <base64 hash>            (RFC 9162 consistency proof, one per line)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::TransparencyError;

const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
const CONSISTENCY_HEADER: &str = "garrison.dev/tlog-consistency@v1";
/// More hashes than any tree of 2^64 leaves needs: a bound on what is parsed.
const MAX_PROOF_HASHES: usize = 128;

/// RFC 6962 leaf hash of a record's canonical bytes: `SHA-256(0x00 || bytes)`.
pub fn leaf_hash_of(canonical: &[u8]) -> [u8; 32] {
    tlog_tiles::record_hash(canonical).0
}

/// A record's inclusion in a checkpointed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The record's sequence (leaf index).
    pub index: u64,
    /// The record's canonical bytes, if carried (the `extra` line).
    pub extra: Option<Vec<u8>>,
    /// Audit path, leaf side first.
    pub hashes: Vec<[u8; 32]>,
    /// The signed checkpoint the path leads to.
    pub checkpoint: String,
}

impl InclusionProof {
    /// The tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        push_hashes(&mut text, &self.hashes);
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a tlog-proof text (the checkpoint is kept as text, not yet verified).
    pub fn parse(text: &str) -> Result<Self, TransparencyError> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| malformed("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(PROOF_HEADER) {
            return Err(malformed("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next();
        let mut extra = None;
        if let Some(encoded) = line.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(
                B64.decode(encoded)
                    .map_err(|_| malformed("extra is not base64"))?,
            );
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .ok_or_else(|| malformed("no index line"))
            .and_then(|n| decimal(n, "index"))?;
        let hashes = parse_hashes(lines)?;
        if checkpoint.is_empty() {
            return Err(malformed("no checkpoint"));
        }
        Ok(InclusionProof {
            index,
            extra,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// The consistency of a smaller tree with a larger one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub hashes: Vec<[u8; 32]>,
}

impl ConsistencyProof {
    /// The proof text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{CONSISTENCY_HEADER}\nold {}\nnew {}\n",
            self.old_size, self.new_size
        );
        push_hashes(&mut text, &self.hashes);
        text
    }

    /// Parses a proof text.
    pub fn parse(text: &str) -> Result<Self, TransparencyError> {
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        if lines.next() != Some(CONSISTENCY_HEADER) {
            return Err(malformed(
                "first line is not garrison.dev/tlog-consistency@v1",
            ));
        }
        let mut size = |key: &'static str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .ok_or_else(|| malformed(key))
                .and_then(|n| decimal(n, key))
        };
        let old_size = size("old")?;
        let new_size = size("new")?;
        let hashes = parse_hashes(lines)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            hashes,
        })
    }
}

/// Checks that `hashes` proves leaf `leaf` at `index` in the tree of `size` with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &[u8; 32],
    index: u64,
    size: u64,
    hashes: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), TransparencyError> {
    if index >= size {
        return Err(invalid(
            "inclusion",
            format!("index {index} is not below size {size}"),
        ));
    }
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(invalid("inclusion", "too many hashes".to_owned()));
    }
    let proof: Vec<tlog_tiles::Hash> = hashes.iter().map(|h| tlog_tiles::Hash(*h)).collect();
    tlog_tiles::check_record(
        &proof,
        size,
        tlog_tiles::Hash(*root),
        index,
        tlog_tiles::Hash(*leaf),
    )
    .map_err(|e| invalid("inclusion", e.to_string()))
}

/// Checks that `hashes` proves the tree of `old_size` with `old_root` is a prefix of the tree
/// of `new_size` with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    old_root: &[u8; 32],
    new_size: u64,
    new_root: &[u8; 32],
    hashes: &[[u8; 32]],
) -> Result<(), TransparencyError> {
    if old_size == 0 || old_size > new_size {
        return Err(invalid(
            "consistency",
            format!("sizes {old_size} -> {new_size} cannot be proved"),
        ));
    }
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(invalid("consistency", "too many hashes".to_owned()));
    }
    let proof: Vec<tlog_tiles::Hash> = hashes.iter().map(|h| tlog_tiles::Hash(*h)).collect();
    tlog_tiles::check_tree(
        &proof,
        new_size,
        tlog_tiles::Hash(*new_root),
        old_size,
        tlog_tiles::Hash(*old_root),
    )
    .map_err(|e| invalid("consistency", e.to_string()))
}

fn push_hashes(text: &mut String, hashes: &[[u8; 32]]) {
    for hash in hashes {
        text.push_str(&B64.encode(hash));
        text.push('\n');
    }
}

fn parse_hashes<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<[u8; 32]>, TransparencyError> {
    let mut hashes = Vec::new();
    for line in lines {
        if hashes.len() == MAX_PROOF_HASHES {
            return Err(malformed("too many hashes"));
        }
        let bytes = B64
            .decode(line)
            .map_err(|_| malformed("a hash line is not base64"))?;
        let hash = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| malformed("a hash line is not 32 bytes"))?;
        hashes.push(hash);
    }
    Ok(hashes)
}

/// ASCII decimal without leading zeros (C2SP).
fn decimal(text: &str, what: &'static str) -> Result<u64, TransparencyError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(malformed(what));
    }
    text.parse().map_err(|_| malformed(what))
}

fn malformed(reason: &str) -> TransparencyError {
    TransparencyError::ProofMalformed {
        reason: reason.to_owned(),
    }
}

fn invalid(what: &'static str, reason: String) -> TransparencyError {
    TransparencyError::ProofInvalid { what, reason }
}
