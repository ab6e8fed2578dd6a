//! The AR4SI trustworthiness vector of a decision, and its status.
//!
//! Values are draft-ietf-rats-ar4si's (as the `ear` crate names them in `ear::claim`). A
//! claim is affirming only when the check behind it passed in this decision; a refusal keeps
//! the claims its earlier checks established (the appraisal runs in a fixed order: EK, AK,
//! credential activation, quote, PCR selection, counters, event-log replay, CSR, policy),
//! marks the one its failing check speaks to, and leaves the rest at "no claim". The table
//! in README.md ("Attestation results") is this module in prose.

use ear::TrustTier;
use ear::claim::{
    APPROVED_BOOT, APPROVED_CONFIG, APPROVED_FILES, CRYPTO_VALIDATION_FAILED, GENUINE_HARDWARE,
    NO_CLAIM, TRUSTWORTHY_INSTANCE, UNEXPECTED_EVIDENCE, UNRECOGNIZED_HARDWARE,
    UNRECOGNIZED_INSTANCE, UNTRUSTWORTHY_INSTANCE, VERIFIER_MALFUNCTION,
};
use garrison_appraisal::Reason;

use crate::facts::{EkBasis, Outcome, PolicyClaims};

/// The eight AR4SI claims. Every one is always given, 0 ("no claim") where Garrison verified
/// nothing about it: runtime-opaque, storage-opaque and sourced-data always are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustVector {
    pub instance_identity: i8,
    pub configuration: i8,
    pub executables: i8,
    pub file_system: i8,
    pub hardware: i8,
    pub runtime_opaque: i8,
    pub storage_opaque: i8,
    pub sourced_data: i8,
}

impl TrustVector {
    /// As the `ear` crate's vector, every claim set (0 included, so the JSON names all eight).
    pub fn to_ear(self) -> ear::TrustVector {
        let mut v = ear::TrustVector::new();
        v.instance_identity.set(self.instance_identity);
        v.configuration.set(self.configuration);
        v.executables.set(self.executables);
        v.file_system.set(self.file_system);
        v.hardware.set(self.hardware);
        v.runtime_opaque.set(self.runtime_opaque);
        v.storage_opaque.set(self.storage_opaque);
        v.sourced_data.set(self.sourced_data);
        v
    }
}

/// Nothing claimed.
const NONE: TrustVector = TrustVector {
    instance_identity: NO_CLAIM,
    configuration: NO_CLAIM,
    executables: NO_CLAIM,
    file_system: NO_CLAIM,
    hardware: NO_CLAIM,
    runtime_opaque: NO_CLAIM,
    storage_opaque: NO_CLAIM,
    sourced_data: NO_CLAIM,
};

/// The vector of a decision that ended in `outcome`, for a node whose EK was trusted on
/// `ek` (if known), decided by a policy that declares `policy`.
pub fn trust_vector(outcome: Outcome, ek: Option<EkBasis>, policy: PolicyClaims) -> TrustVector {
    match outcome {
        Outcome::Enrolled | Outcome::Renewed => admitted(ek, policy),
        Outcome::Revoked => only_identity(UNTRUSTWORTHY_INSTANCE),
        Outcome::Refused(reason) => refused(reason, ek, policy),
    }
}

/// The status of the decision's appraisal (and of the EAR): a refusal or a revocation is
/// contraindicated whatever its vector; an allow is the worst tier of its vector, and a
/// warning when its EK was only allow-listed (no manufacturer certificate was checked).
pub fn status(outcome: Outcome, ek: Option<EkBasis>, vector: TrustVector) -> TrustTier {
    match outcome {
        Outcome::Refused(_) | Outcome::Revoked => TrustTier::Contraindicated,
        Outcome::Enrolled | Outcome::Renewed => {
            let mut appraisal = ear::Appraisal::new();
            appraisal.trust_vector = vector.to_ear();
            appraisal.update_status_from_trust_vector();
            if ek == Some(EkBasis::InsecureAllowList) {
                appraisal.status.max(TrustTier::Warning)
            } else {
                appraisal.status
            }
        }
    }
}

fn only_identity(value: i8) -> TrustVector {
    TrustVector {
        instance_identity: value,
        ..NONE
    }
}

/// The EK is trusted and the AK proven in its TPM (credential activation at enrollment, the
/// bound AK's signature over a fresh nonce at renewal); the hardware is genuine only if the
/// EK certificate chained to a manufacturer CA.
fn identity_proven(ek: Option<EkBasis>) -> TrustVector {
    TrustVector {
        instance_identity: TRUSTWORTHY_INSTANCE,
        hardware: match ek {
            Some(EkBasis::ManufacturerCertificate) => GENUINE_HARDWARE,
            Some(EkBasis::InsecureAllowList) | None => NO_CLAIM,
        },
        ..NONE
    }
}

fn admitted(ek: Option<EkBasis>, policy: PolicyClaims) -> TrustVector {
    let declared = |yes: bool, value: i8| if yes { value } else { NO_CLAIM };
    TrustVector {
        configuration: declared(policy.configuration, APPROVED_CONFIG),
        executables: declared(policy.executables, APPROVED_BOOT),
        file_system: declared(policy.file_system, APPROVED_FILES),
        ..identity_proven(ek)
    }
}

/// By type: a new reason does not compile until it is placed here.
fn refused(reason: Reason, ek: Option<EkBasis>, policy: PolicyClaims) -> TrustVector {
    use Reason as R;
    match reason {
        // Nothing was proven, nothing is claimed.
        R::ChallengeUnknown
        | R::ChallengeExpired
        | R::ChallengePeerMismatch
        | R::ClientCertificateRequired => NONE,
        // Evidence the appraisal could not read, wherever it stopped.
        R::MalformedRequest | R::MalformedEvidence => only_identity(UNEXPECTED_EVIDENCE),
        // The EK certificate does not chain to a manufacturer this site trusts.
        R::EkTrust => TrustVector {
            instance_identity: UNRECOGNIZED_INSTANCE,
            hardware: UNRECOGNIZED_HARDWARE,
            ..NONE
        },
        R::UnknownSvid => only_identity(UNRECOGNIZED_INSTANCE),
        // The keys are not what they claim, the AK is not in that TPM or not the bound one,
        // the TPM went back in time, or the node is revoked.
        R::EkCertificateMismatch
        | R::EkAttributes
        | R::AkAttributes
        | R::CredentialActivation
        | R::ClockRollback
        | R::AkMismatch
        | R::Revoked => only_identity(UNTRUSTWORTHY_INSTANCE),
        // The quote is not the AK's, not a quote, or not fresh.
        R::QuoteSignature | R::AttestStructure | R::Nonce => {
            only_identity(CRYPTO_VALIDATION_FAILED)
        }
        // The AK signed the quote, but the PCR values or the event log do not match it: the
        // measurements of the boot cannot be trusted.
        R::PcrDigest | R::EventLogReplay => TrustVector {
            configuration: CRYPTO_VALIDATION_FAILED,
            executables: CRYPTO_VALIDATION_FAILED,
            ..identity_proven(ek)
        },
        // Signed and fresh, but not the PCRs the challenge asked for.
        R::PcrSelection => TrustVector {
            configuration: UNEXPECTED_EVIDENCE,
            executables: UNEXPECTED_EVIDENCE,
            ..identity_proven(ek)
        },
        // Everything before the policy passed; a refusal does not say which of the policy's
        // checks failed (its reasons are in the EAR's verifier claims).
        R::Csr | R::PolicyDeny => identity_proven(ek),
        // The policy could not decide, or asked for what it may not: the verifier's failure
        // for the claims the policy would have made.
        R::PolicyScope | R::PolicyError => {
            let failed = |yes: bool| if yes { VERIFIER_MALFUNCTION } else { NO_CLAIM };
            TrustVector {
                configuration: failed(policy.configuration),
                executables: failed(policy.executables),
                file_system: failed(policy.file_system),
                ..identity_proven(ek)
            }
        }
        // The site could not finish (no CA, no log, no randomness, too busy): nothing is
        // said about the node.
        R::CaUnavailable | R::LogUnavailable | R::RandomUnavailable | R::Overloaded => {
            only_identity(VERIFIER_MALFUNCTION)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: PolicyClaims = PolicyClaims {
        configuration: true,
        executables: true,
        file_system: false,
    };
    const CERT: Option<EkBasis> = Some(EkBasis::ManufacturerCertificate);

    /// (identity, configuration, executables, hardware) by reason, for a node with a
    /// manufacturer-certified EK under a policy declaring configuration and executables.
    /// Written out for every reason (matched without a wildcard), so a new reason must be
    /// placed here too; the other four claims are always 0.
    fn expected(reason: Reason) -> (i8, i8, i8, i8) {
        use Reason as R;
        match reason {
            R::ChallengeUnknown
            | R::ChallengeExpired
            | R::ChallengePeerMismatch
            | R::ClientCertificateRequired => (0, 0, 0, 0),
            R::MalformedRequest | R::MalformedEvidence => (1, 0, 0, 0),
            R::EkTrust => (97, 0, 0, 97),
            R::UnknownSvid => (97, 0, 0, 0),
            R::EkCertificateMismatch
            | R::EkAttributes
            | R::AkAttributes
            | R::CredentialActivation
            | R::ClockRollback
            | R::AkMismatch
            | R::Revoked => (96, 0, 0, 0),
            R::QuoteSignature | R::AttestStructure | R::Nonce => (99, 0, 0, 0),
            R::PcrDigest | R::EventLogReplay => (2, 99, 99, 2),
            R::PcrSelection => (2, 1, 1, 2),
            R::Csr | R::PolicyDeny => (2, 0, 0, 2),
            R::PolicyScope | R::PolicyError => (2, -1, -1, 2),
            R::CaUnavailable | R::LogUnavailable | R::RandomUnavailable | R::Overloaded => {
                (-1, 0, 0, 0)
            }
        }
    }

    #[test]
    fn every_refusal_has_its_vector_and_is_contraindicated() {
        for reason in Reason::ALL {
            let outcome = Outcome::Refused(reason);
            let v = trust_vector(outcome, CERT, STRICT);
            assert_eq!(
                (
                    v.instance_identity,
                    v.configuration,
                    v.executables,
                    v.hardware
                ),
                expected(reason),
                "{reason:?}"
            );
            assert_eq!(
                (
                    v.file_system,
                    v.runtime_opaque,
                    v.storage_opaque,
                    v.sourced_data
                ),
                (0, 0, 0, 0),
                "{reason:?}"
            );
            assert_eq!(
                status(outcome, CERT, v),
                TrustTier::Contraindicated,
                "{reason:?}"
            );
        }
    }

    #[test]
    fn an_allow_claims_what_was_verified_and_what_the_policy_declares() {
        for outcome in [Outcome::Enrolled, Outcome::Renewed] {
            let v = trust_vector(outcome, CERT, STRICT);
            assert_eq!(
                v,
                TrustVector {
                    instance_identity: 2,
                    configuration: 2,
                    executables: 3,
                    hardware: 2,
                    ..NONE
                }
            );
            assert_eq!(status(outcome, CERT, v), TrustTier::Affirming);
            // A policy that declares nothing: the boot is not vouched for.
            let v = trust_vector(outcome, CERT, PolicyClaims::default());
            assert_eq!(
                v,
                TrustVector {
                    instance_identity: 2,
                    hardware: 2,
                    ..NONE
                }
            );
            assert_eq!(status(outcome, CERT, v), TrustTier::Affirming);
            // An allow-listed EK: no hardware claim, and a warning.
            let listed = Some(EkBasis::InsecureAllowList);
            let v = trust_vector(outcome, listed, STRICT);
            assert_eq!((v.instance_identity, v.hardware), (2, 0));
            assert_eq!(status(outcome, listed, v), TrustTier::Warning);
            // The basis unknown (not in an exported archive): no hardware claim.
            assert_eq!(trust_vector(outcome, None, STRICT).hardware, 0);
        }
    }

    #[test]
    fn a_revocation_is_an_untrustworthy_instance() {
        let v = trust_vector(Outcome::Revoked, CERT, STRICT);
        assert_eq!(v, only_identity(96));
        assert_eq!(
            status(Outcome::Revoked, CERT, v),
            TrustTier::Contraindicated
        );
    }
}
