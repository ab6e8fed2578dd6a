//! The one error type of the CA crate.

use time::OffsetDateTime;

use crate::spiffe_id::SpiffeIdError;

/// Why the CA refused to load an issuer or to issue a certificate.
///
/// Each variant names the rule that failed; none is ever "try again": fix the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A SPIFFE ID or trust domain failed validation.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    /// The issuer certificate could not be parsed.
    #[error("issuer certificate is not valid X.509 DER")]
    IssuerUnparseable {
        /// The parser's complaint.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// The issuer certificate is not a CA (basicConstraints cA is absent or false): a leaf was
    /// presented as an issuer.
    #[error("issuer {subject:?} is not a CA certificate (basicConstraints cA=false or absent)")]
    IssuerNotCa {
        /// The issuer's subject.
        subject: String,
    },
    /// The issuer certificate's key usage does not allow signing certificates.
    #[error("issuer {subject:?} lacks the keyCertSign key usage")]
    IssuerLacksKeyCertSign {
        /// The issuer's subject.
        subject: String,
    },
    /// The issuer certificate carries no `spiffe://<trust domain>` URI SAN.
    #[error("issuer {subject:?} has no spiffe://<trust-domain> URI SAN")]
    IssuerWithoutTrustDomain {
        /// The issuer's subject.
        subject: String,
    },
    /// The private key does not belong to the issuer certificate.
    #[error("issuer private key does not match the issuer certificate's public key")]
    IssuerKeyMismatch,
    /// The issuer certificate has expired.
    #[error("issuer expired at {not_after} (now {now})")]
    IssuerExpired {
        /// The issuer's notAfter.
        not_after: OffsetDateTime,
        /// The time of the request.
        now: OffsetDateTime,
    },
    /// The issuer certificate is not valid yet.
    #[error("issuer is not valid before {not_before} (now {now})")]
    IssuerNotYetValid {
        /// The issuer's notBefore.
        not_before: OffsetDateTime,
        /// The time of the request.
        now: OffsetDateTime,
    },
    /// The issuer's path length constraint forbids issuing another CA below it.
    #[error("issuer path length is {issuer_path_len}: it may not issue further CA certificates")]
    PathLengthExhausted {
        /// The issuer's pathLenConstraint.
        issuer_path_len: u8,
    },
    /// A requested path length is not smaller than the issuer's.
    #[error("requested path length {requested} must be below the issuer's {issuer_path_len}")]
    PathLengthNotDecreasing {
        /// The requested pathLenConstraint.
        requested: u8,
        /// The issuer's pathLenConstraint.
        issuer_path_len: u8,
    },
    /// The issuer has no path length constraint, so "one below the issuer" has no meaning.
    #[error("issuer has no path length constraint: give the new CA's path length explicitly")]
    PathLengthRequired,
    /// A CA certificate would outlive its issuer. CA lifetimes are never silently truncated.
    #[error(
        "requested notAfter {requested_not_after} is beyond the issuer's notAfter \
         {issuer_not_after}; ask for a shorter TTL or renew the issuer first"
    )]
    TtlExceedsIssuer {
        /// The notAfter that the TTL asked for.
        requested_not_after: OffsetDateTime,
        /// The issuer's notAfter.
        issuer_not_after: OffsetDateTime,
    },
    /// An SVID TTL above the configured maximum.
    #[error("requested TTL {requested_seconds}s exceeds the maximum of {max_seconds}s")]
    TtlTooLong {
        /// The requested TTL in seconds.
        requested_seconds: i64,
        /// The configured maximum in seconds.
        max_seconds: i64,
    },
    /// A zero or negative TTL.
    #[error("TTL must be positive (got {seconds}s)")]
    TtlNotPositive {
        /// The requested TTL in seconds.
        seconds: i64,
    },
    /// An SVID must identify a workload, so its SPIFFE ID needs a path.
    #[error("SVID SPIFFE ID {id} has no path; only CA certificates carry the bare trust domain")]
    SvidWithoutPath {
        /// The rejected ID.
        id: String,
    },
    /// The SPIFFE ID is in another trust domain than the issuer.
    #[error("SPIFFE ID is in trust domain {requested}, but the issuer is for {issuer}")]
    TrustDomainMismatch {
        /// The requested ID's trust domain.
        requested: String,
        /// The issuer's trust domain.
        issuer: String,
    },
    /// A CA role that is not `hub`, `policy` or `site/<name>`, or more than one role.
    #[error("CA role {role:?} is not hub, policy or site/<name>")]
    BadCaRole {
        /// What was found (cut to 80 characters).
        role: String,
    },
    /// An intermediate CA without a role: it vouches for nothing, so it may not issue.
    #[error("issuer {subject:?} states no role (hub, policy or site/<name>); reissue it")]
    IssuerWithoutRole {
        /// The issuer's subject.
        subject: String,
    },
    /// This issuer may not issue a CA (or a role SVID) of the requested role.
    #[error("a {issuer} CA may not issue a {requested} certificate")]
    RoleNotIssuable {
        /// The requested role.
        requested: String,
        /// The issuer's role (`root` for the trust anchor).
        issuer: String,
    },
    /// The leaf's SPIFFE ID is outside what the CAs above it may vouch for.
    #[error("{id} is outside the scope of its issuing CAs ({chain}): {why}")]
    OutOfScope {
        /// The leaf's SPIFFE ID.
        id: String,
        /// The issuing CAs' roles, issuer first.
        chain: String,
        /// The rule that failed.
        why: &'static str,
    },
    /// The SPIFFE ID is a role identity of a site or of the hub, which no node SVID may carry.
    #[error("{id} is reserved for the {holder}'s {role}; node SVIDs may not use it")]
    ReservedIdentity {
        /// The requested ID.
        id: String,
        /// Whose role identity it is: `site` or `hub`.
        holder: &'static str,
        /// The role it is reserved for.
        role: &'static str,
    },
    /// A CA name (subject common name) that is empty or too long.
    #[error("CA name must be 1 to 64 characters (got {len})")]
    BadCaName {
        /// Its length in characters.
        len: usize,
    },
    /// The CSR is not a well-formed PKCS#10 request.
    #[error("CSR is not a well-formed PKCS#10 request")]
    CsrUnparseable,
    /// The CSR's self-signature does not verify: whoever made it does not hold the key.
    #[error("CSR signature does not verify")]
    CsrSignatureInvalid,
    /// The CSR's public key is of an algorithm or size we do not certify.
    #[error("CSR public key is not acceptable: {reason}")]
    CsrKeyUnacceptable {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A PEM input held no block of the expected kind.
    #[error("no PEM block labelled {label:?} found")]
    PemMissing {
        /// The PEM label looked for.
        label: &'static str,
    },
    /// A PEM input could not be decoded.
    #[error("malformed PEM")]
    PemMalformed {
        /// The decoder's complaint.
        #[source]
        source: pem::PemError,
    },
    /// A private key could not be loaded (wrong format or unsupported algorithm).
    #[error("private key is not a PKCS#8 ECDSA P-256/P-384 key")]
    KeyUnparseable,
    /// Key generation failed in the crypto library.
    #[error("key generation failed")]
    KeyGeneration,
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// Certificate construction or signing failed in rcgen.
    #[error("certificate construction failed")]
    Signing {
        /// rcgen's complaint.
        #[source]
        source: rcgen::Error,
    },
    /// A bundle request with no certificates in it.
    #[error("trust bundle is empty")]
    EmptyBundle,
    /// A certificate in a bundle carries a public key we cannot express as a JWK.
    #[error("certificate public key cannot be expressed as a JWK: {reason}")]
    JwkUnsupportedKey {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Whose fault a [`CaError`] is, for callers that map errors to their own codes: an
/// exhaustive match here, so a new variant must be placed before it compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaErrorKind {
    /// The certificate request itself (unparseable, bad signature, unacceptable key).
    Csr,
    /// The identity asked for is outside what the issuer may vouch for, or reserved.
    Scope,
    /// The random number generator failed.
    Random,
    /// The issuer, its configuration or its key: nothing the requester can fix.
    Issuer,
}

impl CaErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [CaErrorKind; 4] = [
        CaErrorKind::Csr,
        CaErrorKind::Scope,
        CaErrorKind::Random,
        CaErrorKind::Issuer,
    ];
}

impl CaError {
    /// Whose fault this error is.
    pub fn kind(&self) -> CaErrorKind {
        match self {
            CaError::CsrUnparseable
            | CaError::CsrSignatureInvalid
            | CaError::CsrKeyUnacceptable { .. } => CaErrorKind::Csr,
            CaError::OutOfScope { .. } | CaError::ReservedIdentity { .. } => CaErrorKind::Scope,
            CaError::Random => CaErrorKind::Random,
            CaError::SpiffeId(_)
            | CaError::IssuerUnparseable { .. }
            | CaError::IssuerNotCa { .. }
            | CaError::IssuerLacksKeyCertSign { .. }
            | CaError::IssuerWithoutTrustDomain { .. }
            | CaError::IssuerKeyMismatch
            | CaError::IssuerExpired { .. }
            | CaError::IssuerNotYetValid { .. }
            | CaError::PathLengthExhausted { .. }
            | CaError::PathLengthNotDecreasing { .. }
            | CaError::PathLengthRequired
            | CaError::TtlExceedsIssuer { .. }
            | CaError::TtlTooLong { .. }
            | CaError::TtlNotPositive { .. }
            | CaError::SvidWithoutPath { .. }
            | CaError::TrustDomainMismatch { .. }
            | CaError::BadCaRole { .. }
            | CaError::IssuerWithoutRole { .. }
            | CaError::RoleNotIssuable { .. }
            | CaError::BadCaName { .. }
            | CaError::PemMissing { .. }
            | CaError::PemMalformed { .. }
            | CaError::KeyUnparseable
            | CaError::KeyGeneration
            | CaError::Signing { .. }
            | CaError::EmptyBundle
            | CaError::JwkUnsupportedKey { .. } => CaErrorKind::Issuer,
        }
    }
}
