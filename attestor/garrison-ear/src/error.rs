//! The crate's one error type.

/// What stops making, signing or checking an attestation result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EarError {
    /// The policy bundle's `ear` declaration (in its `data.json`) is not the expected shape.
    #[error("the policy's `ear` declaration: {reason}")]
    PolicyDeclaration { reason: String },
    /// The EAR is not valid (the `ear` crate's check: a profile, a submod, `iat` not 0, ...).
    #[error("the EAR is not valid: {reason}")]
    Invalid { reason: String },
    /// The EAR claims do not encode (the `ear` crate refuses an invalid EAR: no profile, no
    /// submod, `iat` 0).
    #[error("encoding the EAR claims")]
    Encode(#[source] serde_json::Error),
    /// The log key refused to sign.
    #[error("signing the EAR")]
    Sign(#[source] garrison_transparency::TransparencyError),
    /// The JWT is not a JWS compact serialization of the expected shape.
    #[error("malformed EAR JWT: {reason}")]
    Malformed { reason: String },
    /// The JWT is signed with another algorithm than the log key's.
    #[error("EAR JWT algorithm is {got:?}, expected {expected:?}")]
    Algorithm { expected: &'static str, got: String },
    /// The `x5c` chain does not certify a log key of the log the EAR names under the roots.
    #[error("the EAR's x5c certificate chain is refused")]
    Certificate(#[source] garrison_transparency::TransparencyError),
    /// The signature does not verify with the certified key.
    #[error("the EAR's signature does not verify with the key its x5c certificate certifies")]
    Signature,
    /// The payload is not an EAR of this profile.
    #[error("the EAR claims do not decode")]
    Claims(#[source] serde_json::Error),
}
