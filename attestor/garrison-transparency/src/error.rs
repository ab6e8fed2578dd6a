//! The crate's one error type.

use crate::revocation::RevocationDefect;

/// What failed while signing or checking a checkpoint, cosignature, revocation list, proof or
/// key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransparencyError {
    /// A log or witness key could not be loaded or generated.
    #[error("signing key: {reason}")]
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
    /// A log or witness key certificate is not acceptable.
    #[error("key certificate refused: {reason}")]
    Certificate { reason: String },
    /// A trust domain that cannot name a witness, a revocation list or a SPIFFE ID.
    #[error("{trust_domain:?} is not a valid trust domain")]
    TrustDomainInvalid {
        trust_domain: String,
        #[source]
        source: garrison_ca::SpiffeIdError,
    },
    /// A witness note (cosigned checkpoint, revocation list) or signature line that is not in
    /// the C2SP signed-note format.
    #[error("malformed signed note: {reason}")]
    NoteMalformed { reason: &'static str },
    /// A note longer than its format allows.
    #[error("note is {bytes} bytes long; at most {max} are allowed")]
    NoteTooLarge { bytes: usize, max: usize },
    /// The note carries no signature line with this signer's name and key ID.
    #[error("no signature by {signer} (key ID {key_id:08x})")]
    SignatureMissing { signer: String, key_id: u32 },
    /// The note carries more than one signature line with this signer's name and key ID.
    #[error("more than one signature by {signer} (key ID {key_id:08x})")]
    SignatureDuplicated { signer: String, key_id: u32 },
    /// A cosignature whose signature field is not a timestamp and an Ed25519 signature.
    #[error("cosignature is {got} bytes after its key ID, expected {expected}")]
    CosignatureLength { expected: usize, got: usize },
    /// A cosignature timestamp above 2^63 - 1, which C2SP tlog-cosignature forbids.
    #[error("cosignature timestamp {timestamp} exceeds 2^63 - 1")]
    CosignatureTimestampTooLarge { timestamp: u64 },
    /// The witness's cosignature does not verify over the checkpoint.
    #[error("cosignature by {witness} does not verify")]
    CosignatureInvalid { witness: String },
    /// A revocation list for another trust domain than the one expected.
    #[error("revocation list origin is {got:?}, expected {expected:?}")]
    RevocationListWrongOrigin { expected: String, got: String },
    /// The witness's signature on a revocation list does not verify.
    #[error("revocation list signature by {witness} does not verify")]
    RevocationSignatureInvalid { witness: String },
    /// A revocation list line that is not exactly the format (1-based line of the body).
    #[error("revocation list line {line}: {defect}")]
    RevocationListMalformed {
        line: usize,
        defect: RevocationDefect,
    },
    /// A revocation list with more entries than any list may hold.
    #[error("revocation list has {entries} entries or more; at most {max} are allowed")]
    TooManyRevocations { entries: usize, max: usize },
    /// A witness key asked to sign another trust domain's revocation list.
    #[error("the witness of {key:?} cannot sign a revocation list for {list:?}")]
    RevocationListTrustDomain { key: String, list: String },
}
