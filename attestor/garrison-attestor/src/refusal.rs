//! The one place where refusals become gRPC statuses. What a refusal is, its stable reason
//! codes and the mapping of verifier errors to them live in `garrison-appraisal`, beside the
//! decisions that make them.

use tonic::{Code, Status};

pub use garrison_appraisal::{Reason, Refusal};

/// The metadata key that carries the reason code on every refusal.
pub const REASON_METADATA_KEY: &str = "garrison-reason";
/// The metadata key that carries a retry hint (milliseconds) when the attestor sheds load.
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after-ms";

/// The retry hint sent with `overloaded` refusals, milliseconds.
pub const OVERLOAD_RETRY_AFTER_MS: u64 = 1000;

/// A refusal as the client sees it.
pub trait RefusalStatus {
    /// The gRPC status: reason code in the message and in `garrison-reason` metadata, no
    /// detail (which might help an attacker tune forged evidence).
    fn to_status(&self) -> Status;
}

impl RefusalStatus for Refusal {
    fn to_status(&self) -> Status {
        let code = self.reason.code();
        let mut status = Status::new(grpc_code(self.reason), format!("refused: {code}"));
        if let Ok(value) = code.parse() {
            status.metadata_mut().insert(REASON_METADATA_KEY, value);
        }
        if self.reason == Reason::Overloaded {
            // Agents wait at least this long (plus jitter) before trying again.
            status.metadata_mut().insert(
                RETRY_AFTER_METADATA_KEY,
                tonic::metadata::MetadataValue::from(OVERLOAD_RETRY_AFTER_MS),
            );
        }
        status
    }
}

/// The gRPC status code for a reason: every reason named (a new one does not compile until
/// it is placed here).
fn grpc_code(reason: Reason) -> Code {
    match reason {
        Reason::MalformedRequest | Reason::MalformedEvidence | Reason::Csr => Code::InvalidArgument,
        Reason::ChallengeUnknown | Reason::ChallengeExpired | Reason::ChallengePeerMismatch => {
            Code::FailedPrecondition
        }
        Reason::ClientCertificateRequired | Reason::UnknownSvid | Reason::Revoked => {
            Code::Unauthenticated
        }
        Reason::EkTrust
        | Reason::EkCertificateMismatch
        | Reason::EkAttributes
        | Reason::AkAttributes
        | Reason::CredentialActivation
        | Reason::QuoteSignature
        | Reason::AttestStructure
        | Reason::Nonce
        | Reason::PcrSelection
        | Reason::PcrDigest
        | Reason::ClockRollback
        | Reason::EventLogReplay
        | Reason::AkMismatch
        | Reason::PolicyDeny
        | Reason::PolicyScope
        | Reason::PolicyError => Code::PermissionDenied,
        Reason::CaUnavailable | Reason::LogUnavailable | Reason::RandomUnavailable => {
            Code::Unavailable
        }
        Reason::Overloaded => Code::ResourceExhausted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_code_but_not_detail() {
        let status = Refusal::new(Reason::Nonce, "expected 00, got 01").to_status();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.metadata().get(REASON_METADATA_KEY).unwrap(), "nonce");
        assert!(!status.message().contains("expected"));
    }

    #[test]
    fn overload_carries_a_retry_hint() {
        let status = Refusal::new(Reason::Overloaded, "full").to_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.metadata().get(RETRY_AFTER_METADATA_KEY).unwrap(),
            "1000"
        );
    }

    /// Every reason's gRPC status, by code: one entry per reason, in `Reason::ALL`'s order.
    const EXPECTED: [(&str, Code); 29] = [
        ("malformed-request", Code::InvalidArgument),
        ("malformed-evidence", Code::InvalidArgument),
        ("ek-trust", Code::PermissionDenied),
        ("ek-certificate-mismatch", Code::PermissionDenied),
        ("ek-attributes", Code::PermissionDenied),
        ("ak-attributes", Code::PermissionDenied),
        ("challenge-unknown", Code::FailedPrecondition),
        ("challenge-expired", Code::FailedPrecondition),
        ("challenge-peer-mismatch", Code::FailedPrecondition),
        ("credential-activation", Code::PermissionDenied),
        ("quote-signature", Code::PermissionDenied),
        ("attest-structure", Code::PermissionDenied),
        ("nonce", Code::PermissionDenied),
        ("pcr-selection", Code::PermissionDenied),
        ("pcr-digest", Code::PermissionDenied),
        ("clock-rollback", Code::PermissionDenied),
        ("eventlog-replay", Code::PermissionDenied),
        ("ak-mismatch", Code::PermissionDenied),
        ("revoked", Code::Unauthenticated),
        ("unknown-svid", Code::Unauthenticated),
        ("client-certificate-required", Code::Unauthenticated),
        ("csr", Code::InvalidArgument),
        ("policy-deny", Code::PermissionDenied),
        ("policy-scope", Code::PermissionDenied),
        ("policy-error", Code::PermissionDenied),
        ("ca-unavailable", Code::Unavailable),
        ("log-unavailable", Code::Unavailable),
        ("random-unavailable", Code::Unavailable),
        ("overloaded", Code::ResourceExhausted),
    ];

    #[test]
    fn every_reason_has_its_status() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        let expected: Vec<&str> = EXPECTED.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, expected, "every reason, in order, and no other");
        for (reason, (code, grpc)) in Reason::ALL.into_iter().zip(EXPECTED) {
            let status = Refusal::new(reason, "detail").to_status();
            assert_eq!(status.code(), grpc, "{code}");
            assert_eq!(status.metadata().get(REASON_METADATA_KEY).unwrap(), code);
        }
    }
}
