//! Checking a signed checkpoint against a log's origin and public key.

use crate::TransparencyError;
use crate::key::{ed25519_verifies, note_public_key};

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// RFC 9162 root hash of the tree of that size.
    pub root: [u8; 32],
    /// The signed note as given (body and every signature line, including any cosignatures).
    pub note: String,
}

/// Parses `note` as a C2SP signed note carrying a tlog-checkpoint, and checks that it is for
/// `origin` and carries a valid Ed25519 signature by `public_key` under the name `origin`.
/// Signatures by other keys (cosignatures, say) are allowed and ignored.
pub fn verify_checkpoint(
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Checkpoint, TransparencyError> {
    let malformed = |reason: String| TransparencyError::CheckpointMalformed { reason };
    // C2SP signed-note: every line, the last signature line included, ends with a newline.
    if !note.ends_with('\n') {
        return Err(malformed("the note does not end with a newline".to_owned()));
    }
    let parsed =
        signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| malformed(e.to_string()))?;
    let body =
        tlog_tiles::Checkpoint::from_bytes(parsed.text()).map_err(|e| malformed(e.to_string()))?;
    if body.origin() != origin {
        return Err(TransparencyError::WrongOrigin {
            expected: origin.to_owned(),
            got: body.origin().to_owned(),
        });
    }
    let verifier = LogVerifier::new(origin, public_key);
    let known = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    parsed
        .verify(&known)
        .map_err(|e| TransparencyError::BadSignature {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size: body.size(),
        root: body.hash().0,
        note: note.to_owned(),
    })
}

/// An Ed25519 signed-note verifier on ring.
struct LogVerifier {
    name: String,
    key_id: u32,
    public: [u8; 32],
}

impl LogVerifier {
    fn new(name: &str, public: &[u8; 32]) -> Self {
        LogVerifier {
            name: name.to_owned(),
            key_id: signed_note::key_id(name, &note_public_key(public)),
            public: *public,
        }
    }
}

impl signed_note::Verifier for LogVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        ed25519_verifies(&self.public, msg, sig)
    }
}
