//! The crate's one error type.

/// What failed while signing or checking a checkpoint, proof or log key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransparencyError {
    /// The log key could not be loaded or generated.
    #[error("log key: {reason}")]
    Key { reason: &'static str },
    /// Signing a checkpoint failed.
    #[error("signing the checkpoint failed: {reason}")]
    Sign { reason: String },
    /// A checkpoint or signed note does not parse.
    #[error("malformed checkpoint: {reason}")]
    CheckpointMalformed { reason: String },
    /// The checkpoint names another log than the one expected.
    #[error("checkpoint is for log {got:?}, expected {expected:?}")]
    WrongOrigin { expected: String, got: String },
    /// No signature on the checkpoint verifies with the log's key.
    #[error("checkpoint signature does not verify with the log key of {origin}: {reason}")]
    BadSignature { origin: String, reason: String },
    /// A proof text does not parse.
    #[error("malformed proof: {reason}")]
    ProofMalformed { reason: String },
    /// A Merkle proof does not lead to the expected root.
    #[error("{what} proof does not verify: {reason}")]
    ProofInvalid { what: &'static str, reason: String },
    /// The log key certificate is not acceptable.
    #[error("log key certificate refused: {reason}")]
    Certificate { reason: String },
}
