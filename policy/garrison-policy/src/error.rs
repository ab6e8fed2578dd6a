//! The one error type of this crate. regorus, webpki and serde errors are mapped to variants
//! named after the check that failed; no foreign error type appears in the API.

use thiserror::Error;

/// Why a bundle was refused, a policy did not compile, or an evaluation did not finish.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("bundle is {got} bytes, more than the limit of {limit}")]
    BundleTooLarge { limit: usize, got: usize },
    #[error("bundle has {got} files, more than the limit of {limit}")]
    BundleTooManyFiles { limit: usize, got: usize },
    #[error(
        "bundle file name {name:?} is not allowed (expected *.rego, data.json, manifest.json, signature.json)"
    )]
    BundleFileName { name: String },
    #[error("bundle archive is malformed: {reason}")]
    ArchiveMalformed { reason: String },
    #[error("bundle has no {name}")]
    BundleFileMissing { name: &'static str },
    #[error("manifest.json is malformed: {reason}")]
    ManifestMalformed { reason: String },
    #[error("manifest lists {name} but the bundle does not contain it")]
    ListedFileMissing { name: String },
    #[error("bundle contains {name}, which the manifest does not list")]
    FileNotInManifest { name: String },
    #[error("digest of {name} is {got}, the manifest says {expected}")]
    FileDigestMismatch {
        name: String,
        expected: String,
        got: String,
    },
    #[error("signature.json is malformed: {reason}")]
    SignatureMalformed { reason: String },
    #[error("signer certificate does not chain to the bundle root: {reason}")]
    SignerNotTrusted { reason: String },
    #[error("policy signer is not issued through the root or a policy CA: {reason}")]
    SignerOutOfScope { reason: String },
    #[error(
        "signer certificate is not a policy signer (SPIFFE ID {got:?}, expected spiffe://{trust_domain}/policy/...)"
    )]
    SignerNotPolicyKey {
        trust_domain: String,
        got: Option<String>,
    },
    #[error("manifest signing_key_id is {expected}, the signer's key is {got}")]
    SigningKeyIdMismatch { expected: String, got: String },
    #[error("signer key algorithm is not supported (expected ECDSA P-256/P-384 or Ed25519)")]
    UnsupportedKeyAlgorithm,
    #[error("signature over the manifest does not verify with the signer's key")]
    SignatureInvalid,
    #[error("signing key is unusable: {reason}")]
    SigningKey { reason: &'static str },
    #[error("bundle root is unusable: {reason}")]
    BundleRoot { reason: String },
    #[error("rollback refused: bundle sequence {got} is lower than {in_force}, which is in force")]
    Rollback { in_force: u64, got: u64 },
    #[error(
        "bundle sequence {sequence} is already in force with digest {in_force}, this bundle's is {got}"
    )]
    SequenceReused {
        sequence: u64,
        in_force: String,
        got: String,
    },
    #[error(
        "{file}: calls {builtin}, which policies may not use (clock, network, randomness and runtime builtins are refused)"
    )]
    ForbiddenBuiltin { file: String, builtin: String },
    #[error("{file}: declares package {package}, which is reserved for the host")]
    ReservedPackage { file: String, package: String },
    #[error("policy does not compile: {message}")]
    PolicyCompile { message: String },
    #[error("data.json is malformed: {reason}")]
    DataMalformed { reason: String },
    #[error("input is {got} bytes, more than the limit of {limit}")]
    InputTooLarge { limit: usize, got: usize },
    #[error("input is not valid JSON: {reason}")]
    InputMalformed { reason: String },
    #[error("policy input could not be encoded: {reason}")]
    InputEncoding { reason: String },
    #[error("policy input field {field}: {problem}")]
    InputFact {
        field: &'static str,
        problem: String,
    },
    #[error("input field {field} is missing or invalid: expected {expected}")]
    InputContract {
        field: &'static str,
        expected: &'static str,
    },
    #[error("evaluation exceeded its time limit of {limit_ms} ms")]
    EvaluationTimeLimit { limit_ms: u128 },
    #[error("evaluation exceeded its instruction limit of {limit}")]
    EvaluationInstructionLimit { limit: usize },
    #[error("evaluation failed: {message}")]
    Evaluation { message: String },
    #[error("decision output is {got} bytes, more than the limit of {limit}")]
    DecisionTooLarge { limit: usize, got: usize },
}

/// What a [`PolicyError`] is about, for callers that map errors to their own codes: an
/// exhaustive match here, so a new variant must be placed before it compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyErrorKind {
    /// A bundle below the rollback floor.
    Rollback,
    /// A different bundle at the floor's sequence.
    SequenceReused,
    /// A bundle that does not decode, verify (files, digests, signature, signer, chain,
    /// scope) or compile.
    Bundle,
    /// A decision that could not be made: the input or the evaluation.
    Decision,
}

impl PolicyErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [PolicyErrorKind; 4] = [
        PolicyErrorKind::Rollback,
        PolicyErrorKind::SequenceReused,
        PolicyErrorKind::Bundle,
        PolicyErrorKind::Decision,
    ];
}

impl PolicyError {
    /// What this error is about.
    pub fn kind(&self) -> PolicyErrorKind {
        match self {
            PolicyError::Rollback { .. } => PolicyErrorKind::Rollback,
            PolicyError::SequenceReused { .. } => PolicyErrorKind::SequenceReused,
            PolicyError::BundleTooLarge { .. }
            | PolicyError::BundleTooManyFiles { .. }
            | PolicyError::BundleFileName { .. }
            | PolicyError::ArchiveMalformed { .. }
            | PolicyError::BundleFileMissing { .. }
            | PolicyError::ManifestMalformed { .. }
            | PolicyError::ListedFileMissing { .. }
            | PolicyError::FileNotInManifest { .. }
            | PolicyError::FileDigestMismatch { .. }
            | PolicyError::SignatureMalformed { .. }
            | PolicyError::SignerNotTrusted { .. }
            | PolicyError::SignerOutOfScope { .. }
            | PolicyError::SignerNotPolicyKey { .. }
            | PolicyError::SigningKeyIdMismatch { .. }
            | PolicyError::UnsupportedKeyAlgorithm
            | PolicyError::SignatureInvalid
            | PolicyError::SigningKey { .. }
            | PolicyError::BundleRoot { .. }
            | PolicyError::ForbiddenBuiltin { .. }
            | PolicyError::ReservedPackage { .. }
            | PolicyError::PolicyCompile { .. }
            | PolicyError::DataMalformed { .. } => PolicyErrorKind::Bundle,
            PolicyError::InputTooLarge { .. }
            | PolicyError::InputMalformed { .. }
            | PolicyError::InputEncoding { .. }
            | PolicyError::InputFact { .. }
            | PolicyError::InputContract { .. }
            | PolicyError::EvaluationTimeLimit { .. }
            | PolicyError::EvaluationInstructionLimit { .. }
            | PolicyError::Evaluation { .. }
            | PolicyError::DecisionTooLarge { .. } => PolicyErrorKind::Decision,
        }
    }
}
