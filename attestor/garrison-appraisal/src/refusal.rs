//! Why a request was refused: a stable reason code (for the client, the log record and an
//! auditor's replay) and a detail (for the log only). Errors of the verifiers become reasons
//! here, by type; the attestor maps reasons to gRPC statuses at its edge.

/// A refused request. `code()` goes to the client; `detail` only to the attestation log
/// and the server's own logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What class of refusal this is.
    pub reason: Reason,
    /// Human-readable detail for operators and auditors (never sent to the client).
    pub detail: String,
}

/// Refusal reasons. Codes are stable: never renamed once released.
///
/// Deliberately not `#[non_exhaustive]`: every host maps reasons exhaustively (the attestor
/// to gRPC statuses, replay to its report), so a new reason must not compile until each
/// mapping has placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A message or field was larger than the protocol allows, or missing.
    MalformedRequest,
    /// A TPM structure, certificate or log could not be parsed.
    MalformedEvidence,
    /// The EK certificate does not chain to a trusted manufacturer (or is not allow-listed).
    EkTrust,
    /// The EK certificate does not belong to the EK presented.
    EkCertificateMismatch,
    /// The EK's attributes are not those of an endorsement key.
    EkAttributes,
    /// The AK is not a restricted, TPM-bound signing key of an accepted algorithm.
    AkAttributes,
    /// No such challenge: never issued, already used (replay) or from another session.
    ChallengeUnknown,
    /// The challenge expired before it was answered.
    ChallengeExpired,
    /// The challenge belongs to another peer.
    ChallengePeerMismatch,
    /// The activated credential secret is wrong: the AK is not in the TPM of that EK.
    CredentialActivation,
    /// The quote's signature does not verify with the AK.
    QuoteSignature,
    /// The quote is not a TPM-generated quote structure.
    AttestStructure,
    /// The quote does not carry the nonce of this challenge.
    Nonce,
    /// The quote does not cover exactly the PCRs asked for.
    PcrSelection,
    /// The supplied PCR values do not give the quoted digest.
    PcrDigest,
    /// The TPM's reset/restart counters or clock went backwards for this node.
    ClockRollback,
    /// The event log does not replay to the quoted PCRs.
    EventLogReplay,
    /// The AK is not the one bound to this node at enrollment.
    AkMismatch,
    /// The certificate or node is revoked.
    Revoked,
    /// The presented SVID is not known to this site.
    UnknownSvid,
    /// Renewal without a client certificate.
    ClientCertificateRequired,
    /// The CSR is malformed, its signature fails or its key is unacceptable.
    Csr,
    /// Admission policy denied the request.
    PolicyDeny,
    /// Admission policy asked for an identity outside this site's scope.
    PolicyScope,
    /// Admission policy could not be evaluated (treated as a deny).
    PolicyError,
    /// The site CA cannot issue (expired, not yet valid).
    CaUnavailable,
    /// The attestation log could not record the decision, so nothing was issued.
    LogUnavailable,
    /// The random number generator failed, so no nonce, secret, challenge or certificate
    /// could be made: nothing was issued.
    RandomUnavailable,
    /// Too many requests in flight: retry later.
    Overloaded,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 29] = [
        Reason::MalformedRequest,
        Reason::MalformedEvidence,
        Reason::EkTrust,
        Reason::EkCertificateMismatch,
        Reason::EkAttributes,
        Reason::AkAttributes,
        Reason::ChallengeUnknown,
        Reason::ChallengeExpired,
        Reason::ChallengePeerMismatch,
        Reason::CredentialActivation,
        Reason::QuoteSignature,
        Reason::AttestStructure,
        Reason::Nonce,
        Reason::PcrSelection,
        Reason::PcrDigest,
        Reason::ClockRollback,
        Reason::EventLogReplay,
        Reason::AkMismatch,
        Reason::Revoked,
        Reason::UnknownSvid,
        Reason::ClientCertificateRequired,
        Reason::Csr,
        Reason::PolicyDeny,
        Reason::PolicyScope,
        Reason::PolicyError,
        Reason::CaUnavailable,
        Reason::LogUnavailable,
        Reason::RandomUnavailable,
        Reason::Overloaded,
    ];

    /// The stable code sent to clients.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedRequest => "malformed-request",
            Reason::MalformedEvidence => "malformed-evidence",
            Reason::EkTrust => "ek-trust",
            Reason::EkCertificateMismatch => "ek-certificate-mismatch",
            Reason::EkAttributes => "ek-attributes",
            Reason::AkAttributes => "ak-attributes",
            Reason::ChallengeUnknown => "challenge-unknown",
            Reason::ChallengeExpired => "challenge-expired",
            Reason::ChallengePeerMismatch => "challenge-peer-mismatch",
            Reason::CredentialActivation => "credential-activation",
            Reason::QuoteSignature => "quote-signature",
            Reason::AttestStructure => "attest-structure",
            Reason::Nonce => "nonce",
            Reason::PcrSelection => "pcr-selection",
            Reason::PcrDigest => "pcr-digest",
            Reason::ClockRollback => "clock-rollback",
            Reason::EventLogReplay => "eventlog-replay",
            Reason::AkMismatch => "ak-mismatch",
            Reason::Revoked => "revoked",
            Reason::UnknownSvid => "unknown-svid",
            Reason::ClientCertificateRequired => "client-certificate-required",
            Reason::Csr => "csr",
            Reason::PolicyDeny => "policy-deny",
            Reason::PolicyScope => "policy-scope",
            Reason::PolicyError => "policy-error",
            Reason::CaUnavailable => "ca-unavailable",
            Reason::LogUnavailable => "log-unavailable",
            Reason::RandomUnavailable => "random-unavailable",
            Reason::Overloaded => "overloaded",
        }
    }

    /// The reason whose [`code`](Self::code) is `code` (what an auditor reads back from a
    /// log record), if any.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The reason for a failed evidence check: by type, every check named (a new check
    /// does not compile until it is placed here).
    pub fn of_check(check: garrison_evidence::Check) -> Reason {
        use garrison_evidence::Check as C;
        match check {
            C::MalformedEvidence | C::MakeCredential => Reason::MalformedEvidence,
            C::AttestStructure => Reason::AttestStructure,
            C::QuoteSignature => Reason::QuoteSignature,
            C::AkAttributes => Reason::AkAttributes,
            C::EkAttributes => Reason::EkAttributes,
            C::EkTrust => Reason::EkTrust,
            C::EkCertificateMismatch => Reason::EkCertificateMismatch,
            C::CredentialActivation => Reason::CredentialActivation,
            C::Nonce => Reason::Nonce,
            C::PcrSelection => Reason::PcrSelection,
            C::PcrDigest => Reason::PcrDigest,
        }
    }

    /// The reason for a CA error, by whose fault it is ([`garrison_ca::CaErrorKind`]).
    pub fn of_ca_error(kind: garrison_ca::CaErrorKind) -> Reason {
        use garrison_ca::CaErrorKind as K;
        match kind {
            K::Csr => Reason::Csr,
            K::Scope => Reason::PolicyScope,
            K::Random => Reason::RandomUnavailable,
            K::Issuer => Reason::CaUnavailable,
        }
    }
}

impl Refusal {
    /// A refusal with its detail.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<garrison_evidence::EvidenceError> for Refusal {
    fn from(err: garrison_evidence::EvidenceError) -> Self {
        // A failed random draw is the attestor's fault, not the evidence's: its check name
        // (`make-credential`) would otherwise read as malformed evidence.
        let reason = match err {
            garrison_evidence::EvidenceError::Randomness => Reason::RandomUnavailable,
            _ => Reason::of_check(err.check_kind()),
        };
        Refusal::new(reason, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason with its code. This matches without a wildcard, so a new variant does not
    /// compile until it is added here (and then to `Reason::ALL`).
    fn expected(reason: Reason) -> &'static str {
        match reason {
            Reason::MalformedRequest => "malformed-request",
            Reason::MalformedEvidence => "malformed-evidence",
            Reason::EkTrust => "ek-trust",
            Reason::EkCertificateMismatch => "ek-certificate-mismatch",
            Reason::EkAttributes => "ek-attributes",
            Reason::AkAttributes => "ak-attributes",
            Reason::ChallengeUnknown => "challenge-unknown",
            Reason::ChallengeExpired => "challenge-expired",
            Reason::ChallengePeerMismatch => "challenge-peer-mismatch",
            Reason::CredentialActivation => "credential-activation",
            Reason::QuoteSignature => "quote-signature",
            Reason::AttestStructure => "attest-structure",
            Reason::Nonce => "nonce",
            Reason::PcrSelection => "pcr-selection",
            Reason::PcrDigest => "pcr-digest",
            Reason::ClockRollback => "clock-rollback",
            Reason::EventLogReplay => "eventlog-replay",
            Reason::AkMismatch => "ak-mismatch",
            Reason::Revoked => "revoked",
            Reason::UnknownSvid => "unknown-svid",
            Reason::ClientCertificateRequired => "client-certificate-required",
            Reason::Csr => "csr",
            Reason::PolicyDeny => "policy-deny",
            Reason::PolicyScope => "policy-scope",
            Reason::PolicyError => "policy-error",
            Reason::CaUnavailable => "ca-unavailable",
            Reason::LogUnavailable => "log-unavailable",
            Reason::RandomUnavailable => "random-unavailable",
            Reason::Overloaded => "overloaded",
        }
    }

    #[test]
    fn every_reason_has_its_own_code() {
        let mut codes = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let code = expected(reason);
            assert_eq!(reason.code(), code);
            assert!(codes.insert(code), "{code} used twice");
            assert_eq!(Reason::from_code(code), Some(reason));
        }
    }

    #[test]
    fn an_unknown_code_is_no_reason() {
        assert_eq!(Reason::from_code("Nonce"), None);
        assert_eq!(Reason::from_code(""), None);
    }

    #[test]
    fn a_failed_random_draw_is_unavailable_not_malformed_evidence() {
        let refusal = Refusal::from(garrison_evidence::EvidenceError::Randomness);
        assert_eq!(refusal.reason, Reason::RandomUnavailable);
    }

    #[test]
    fn every_evidence_check_maps_to_its_reason() {
        use garrison_evidence::Check;
        for check in Check::ALL {
            let reason = Reason::of_check(check);
            match check {
                // Making the credential fails on the EK the node sent (its key cannot take a
                // seed); a failed random draw is mapped by variant, tested above.
                Check::MakeCredential => assert_eq!(reason, Reason::MalformedEvidence),
                // Every other check has a reason code of the same name.
                _ => assert_eq!(reason.code(), check.as_str(), "{check:?}"),
            }
        }
    }

    #[test]
    fn every_ca_error_kind_maps_to_its_reason() {
        use garrison_ca::CaErrorKind;
        let mapped: Vec<(CaErrorKind, &str)> = CaErrorKind::ALL
            .into_iter()
            .map(|kind| (kind, Reason::of_ca_error(kind).code()))
            .collect();
        assert_eq!(
            mapped,
            [
                (CaErrorKind::Csr, "csr"),
                (CaErrorKind::Scope, "policy-scope"),
                (CaErrorKind::Random, "random-unavailable"),
                (CaErrorKind::Issuer, "ca-unavailable"),
            ]
        );
        // Examples of each kind, by variant.
        let csr = garrison_ca::CaError::CsrSignatureInvalid;
        assert_eq!(Reason::of_ca_error(csr.kind()), Reason::Csr);
        let random = garrison_ca::CaError::Random;
        assert_eq!(
            Reason::of_ca_error(random.kind()),
            Reason::RandomUnavailable
        );
        let issuer = garrison_ca::CaError::EmptyBundle;
        assert_eq!(Reason::of_ca_error(issuer.kind()), Reason::CaUnavailable);
    }
}
