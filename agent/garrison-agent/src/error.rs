//! The one error type of this crate, and how the agent reacts to each failure.

use std::path::PathBuf;
use std::time::Duration;

use garrison_tpm::TpmError;
use tonic::{Code, Status};

/// gRPC metadata key holding the attestor's stable refusal reason code.
pub const REASON_METADATA_KEY: &str = "garrison-reason";
/// gRPC metadata key holding the attestor's retry hint in milliseconds (load shedding).
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after-ms";
/// The longest retry hint the agent honours: a shed attestor wants clients spread over
/// seconds, not hours, and a huge hint (from a bug or a hostile attestor) must not park the
/// node. Longer hints are cut to this, with a warning.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Reason codes that mean "your SVID is no good for renewal": the agent enrolls from
/// scratch instead of renewing.
const REENROLL_REASONS: &[&str] = &[
    "unknown-svid",
    "revoked",
    "client-certificate-required",
    "ak-mismatch",
    "svid-expired",
];

/// Reason codes that only say "this challenge is gone": the whole exchange starts over.
const CHALLENGE_REASONS: &[&str] = &["challenge-expired", "challenge-unknown"];

/// A failed agent operation. Variants are named after what failed; the cause is the
/// `#[source]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration file could not be read.
    #[error("cannot read configuration {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid TOML or has unknown or ill-typed fields.
    #[error("invalid configuration")]
    ParseConfig {
        #[source]
        source: toml::de::Error,
    },
    /// A configuration value is well-typed but unacceptable.
    #[error("configuration field `{field}` = {value:?}: {problem}")]
    ConfigValue {
        field: &'static str,
        value: String,
        problem: &'static str,
    },
    /// The configured attestor SPIFFE ID does not parse.
    #[error("configuration field `attestor_spiffe_id` = {value:?} is not a SPIFFE ID")]
    AttestorSpiffeId {
        value: String,
        #[source]
        source: garrison_ca::SpiffeIdError,
    },
    /// The bootstrap trust bundle (or an EK chain file) could not be read.
    #[error("cannot read {what} {path}")]
    ReadPemFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be decoded or holds no certificate.
    #[error("{what} {path} holds no usable PEM certificate")]
    DecodePemFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Option<pem::PemError>,
    },
    /// The TLS client configuration could not be built (bad bundle, bad SVID/key pair).
    #[error("cannot build the TLS client configuration")]
    TlsConfig {
        #[source]
        source: garrison_spiffe_tls::TlsError,
    },
    /// The attestor address is not a valid gRPC endpoint.
    #[error("invalid attestor address")]
    AttestorAddress {
        #[source]
        source: tonic::transport::Error,
    },
    /// A gRPC call failed: transport error or refusal (see [`AgentError::reason_code`]).
    #[error("{rpc} failed: {code:?}{}", reason_suffix(.status))]
    Rpc {
        rpc: &'static str,
        code: Code,
        #[source]
        status: Box<Status>,
    },
    /// A gRPC call did not complete in time.
    #[error("{rpc} timed out after {timeout:?}")]
    RpcTimeout {
        rpc: &'static str,
        timeout: Duration,
    },
    /// The attestor's answer lacks a field the protocol requires.
    #[error("{message} from the attestor has no {field}")]
    MissingField {
        message: &'static str,
        field: &'static str,
    },
    /// The TPM could not be opened.
    #[error("cannot open the TPM")]
    OpenTpm {
        #[source]
        source: TpmError,
    },
    /// The EK could not be loaded or created.
    #[error("cannot load the EK")]
    LoadEk {
        #[source]
        source: TpmError,
    },
    /// The EK certificate could not be read from NV.
    #[error("cannot read the EK certificate")]
    ReadEkCertificate {
        #[source]
        source: TpmError,
    },
    /// The stored AK blob could not be read.
    #[error("cannot read the AK blob {path}")]
    ReadAkBlob {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored AK blob is malformed.
    #[error("the AK blob {path} is malformed")]
    ParseAkBlob {
        path: PathBuf,
        #[source]
        source: TpmError,
    },
    /// Creating the AK under the EK failed.
    #[error("cannot create the AK")]
    CreateAk {
        #[source]
        source: TpmError,
    },
    /// Loading the stored AK under the EK failed (TPM cleared? other TPM?).
    #[error("cannot load the stored AK under the EK")]
    LoadAk {
        #[source]
        source: TpmError,
    },
    /// TPM2_ActivateCredential failed.
    #[error("cannot activate the enrollment credential")]
    ActivateCredential {
        #[source]
        source: TpmError,
    },
    /// The challenge asks for a PCR selection this agent cannot quote.
    #[error("unsupported PCR selection in the challenge: {problem}")]
    PcrSelection { problem: &'static str },
    /// Building the TPM PCR selection failed.
    #[error("invalid PCR selection in the challenge")]
    BuildPcrSelection {
        #[source]
        source: TpmError,
    },
    /// TPM2_Quote failed.
    #[error("cannot quote the PCRs")]
    Quote {
        #[source]
        source: TpmError,
    },
    /// TPM2_PCR_Read failed.
    #[error("cannot read the PCRs")]
    ReadPcrs {
        #[source]
        source: TpmError,
    },
    /// The TPM worker thread stopped before answering (it panicked or was cancelled).
    #[error("the TPM worker stopped unexpectedly")]
    TpmWorkerStopped,
    /// Renewal needs the AK bound at enrollment, and its blob is gone.
    #[error("no AK blob at {path}; the enrolled AK is lost")]
    AkBlobMissing { path: PathBuf },
    /// The event log exists but could not be read (or is too large).
    #[error("cannot read the event log")]
    ReadEventLog {
        #[source]
        source: TpmError,
    },
    /// Generating the SVID key pair failed (ring's error carries no detail).
    #[error("cannot generate the SVID key")]
    GenerateKey,
    /// Building the PKCS#10 request failed.
    #[error("cannot build the CSR")]
    BuildCsr {
        #[source]
        source: rcgen::Error,
    },
    /// A request field exceeds the protocol limit, so the attestor would refuse it.
    #[error("{field} is {got} bytes, the protocol allows {max}")]
    RequestTooLarge {
        field: &'static str,
        max: usize,
        got: usize,
    },
    /// The issued certificate (or one in its chain) does not parse.
    #[error("the attestor returned an unparseable certificate")]
    ParseCertificate,
    /// The issued leaf certificate does not carry the key this agent generated.
    #[error("the issued SVID does not certify the key in the CSR")]
    SvidKeyMismatch,
    /// The issued SVID does not chain to the bootstrap trust bundle.
    #[error("the issued SVID does not chain to the trust bundle")]
    SvidChain {
        #[source]
        source: webpki::Error,
    },
    /// The issued SVID's SPIFFE ID is missing or differs from the one announced.
    #[error("the issued SVID names {got:?}, the attestor announced {expected:?}")]
    SvidSpiffeId { expected: String, got: String },
    /// A directory for state or SVID files could not be created.
    #[error("cannot create directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written, synced or renamed into place.
    #[error("cannot write {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The current SVID files could not be read.
    #[error("cannot read the current SVID {path}")]
    ReadSvid {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The Workload API socket cannot be created or bound.
    #[error("cannot serve the Workload API on {path}")]
    WorkloadApiBind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The Workload API socket path is taken.
    #[error("cannot serve the Workload API on {path}: it {problem}")]
    WorkloadApiSocket {
        path: PathBuf,
        problem: &'static str,
    },
    /// The Workload API server stopped with an error.
    #[error("the Workload API server on {path} failed")]
    WorkloadApiServe {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The probes and metrics address cannot be bound.
    #[error(transparent)]
    OpsListen(#[from] garrison_ops::probes::BindError),
    /// There is no usable current SVID to renew with.
    #[error("no current SVID in {dir}: {problem}")]
    NoCurrentSvid { dir: PathBuf, problem: &'static str },
    /// Every attempt failed; the last failure is the source.
    #[error("giving up after {attempts} attempts")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<AgentError>,
    },
}

fn reason_suffix(status: &Status) -> String {
    reason_code(status)
        .map(|code| format!(" (garrison-reason: {code})"))
        .unwrap_or_default()
}

/// The attestor's stable reason code on a refusal, if it sent one.
pub fn reason_code(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(REASON_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
}

/// The attestor's retry hint on a RESOURCE_EXHAUSTED answer, if it sent one, at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(status: &Status) -> Option<Duration> {
    let hint = status
        .metadata()
        .get(RETRY_AFTER_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)?;
    if hint > MAX_RETRY_AFTER {
        tracing::warn!(
            hint_ms = hint.as_millis(),
            max_ms = MAX_RETRY_AFTER.as_millis(),
            "the attestor's retry hint is too long; waiting at most the maximum"
        );
    }
    Some(hint.min(MAX_RETRY_AFTER))
}

/// What the agent does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again after backoff (at least `not_before` if the server asked for it).
    Retry { not_before: Option<Duration> },
    /// The attestor refused: `enroll --once` stops; `run` retries with backoff.
    Refused,
    /// Renewal is impossible with the current SVID: enroll from scratch.
    Reenroll,
    /// Retrying cannot help (bad configuration, malformed local state).
    Fatal,
}

impl AgentError {
    /// The attestor's reason code, if this is a refusal that carried one (also through
    /// [`AgentError::RetriesExhausted`]).
    pub fn reason_code(&self) -> Option<&str> {
        match self {
            Self::Rpc { status, .. } => reason_code(status),
            Self::RetriesExhausted { last, .. } => last.reason_code(),
            _ => None,
        }
    }

    /// How the agent reacts to this failure.
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Rpc { status, .. } => status_disposition(status),
            Self::RetriesExhausted { last, .. } => last.disposition(),
            Self::NoCurrentSvid { .. } | Self::AkBlobMissing { .. } => Disposition::Reenroll,
            Self::ReadConfig { .. }
            | Self::ParseConfig { .. }
            | Self::ConfigValue { .. }
            | Self::AttestorSpiffeId { .. }
            | Self::AttestorAddress { .. }
            | Self::ParseAkBlob { .. }
            | Self::PcrSelection { .. }
            | Self::RequestTooLarge { .. }
            | Self::WorkloadApiBind { .. }
            | Self::WorkloadApiSocket { .. }
            | Self::WorkloadApiServe { .. }
            | Self::OpsListen(_) => Disposition::Fatal,
            _ => Disposition::Retry { not_before: None },
        }
    }
}

/// The agent's reaction to a gRPC status.
pub fn status_disposition(status: &Status) -> Disposition {
    let reason = reason_code(status);
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::Internal => Disposition::Retry { not_before: None },
        Code::ResourceExhausted => Disposition::Retry {
            not_before: retry_after(status),
        },
        Code::FailedPrecondition if reason.is_some_and(|r| CHALLENGE_REASONS.contains(&r)) => {
            Disposition::Retry { not_before: None }
        }
        Code::Unauthenticated => Disposition::Reenroll,
        Code::PermissionDenied if reason.is_some_and(|r| REENROLL_REASONS.contains(&r)) => {
            Disposition::Reenroll
        }
        _ => Disposition::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: Code, reason: &str) -> Status {
        let mut status = Status::new(code, format!("refused: {reason}"));
        status
            .metadata_mut()
            .insert(REASON_METADATA_KEY, reason.parse().unwrap());
        status
    }

    #[test]
    fn reason_code_comes_from_metadata() {
        let status = refusal(Code::PermissionDenied, "pcr-digest");
        assert_eq!(reason_code(&status), Some("pcr-digest"));
        assert_eq!(reason_code(&Status::unavailable("down")), None);
        let error = AgentError::Rpc {
            rpc: "Complete",
            code: status.code(),
            status: Box::new(status),
        };
        assert_eq!(error.reason_code(), Some("pcr-digest"));
        assert!(error.to_string().contains("garrison-reason: pcr-digest"));
        assert_eq!(error.disposition(), Disposition::Refused);
    }

    #[test]
    fn retry_after_is_read_in_milliseconds() {
        let mut status = refusal(Code::ResourceExhausted, "overloaded");
        status
            .metadata_mut()
            .insert(RETRY_AFTER_METADATA_KEY, "1500".parse().unwrap());
        assert_eq!(retry_after(&status), Some(Duration::from_millis(1500)));
        assert_eq!(
            status_disposition(&status),
            Disposition::Retry {
                not_before: Some(Duration::from_millis(1500))
            }
        );
        let garbage = {
            let mut s = Status::resource_exhausted("busy");
            s.metadata_mut()
                .insert(RETRY_AFTER_METADATA_KEY, "soon".parse().unwrap());
            s
        };
        assert_eq!(retry_after(&garbage), None);
    }

    #[test]
    fn retry_hint_is_capped() {
        for (hint, want) in [
            ("300000", MAX_RETRY_AFTER),
            ("300001", MAX_RETRY_AFTER),
            ("86400000", MAX_RETRY_AFTER),
            ("18446744073709551615", MAX_RETRY_AFTER),
            ("299999", Duration::from_millis(299_999)),
        ] {
            let mut status = refusal(Code::ResourceExhausted, "overloaded");
            status
                .metadata_mut()
                .insert(RETRY_AFTER_METADATA_KEY, hint.parse().unwrap());
            assert_eq!(retry_after(&status), Some(want), "{hint}");
            assert_eq!(
                status_disposition(&status),
                Disposition::Retry {
                    not_before: Some(want)
                },
                "{hint}"
            );
        }
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(300));
    }

    #[test]
    fn dispositions_follow_codes_and_reasons() {
        let cases = [
            (
                Status::unavailable("refused"),
                Disposition::Retry { not_before: None },
            ),
            (
                Status::deadline_exceeded("slow"),
                Disposition::Retry { not_before: None },
            ),
            (
                refusal(Code::Unavailable, "log-unavailable"),
                Disposition::Retry { not_before: None },
            ),
            (
                refusal(Code::FailedPrecondition, "challenge-expired"),
                Disposition::Retry { not_before: None },
            ),
            (
                refusal(Code::Unauthenticated, "unknown-svid"),
                Disposition::Reenroll,
            ),
            (
                refusal(Code::Unauthenticated, "revoked"),
                Disposition::Reenroll,
            ),
            (
                refusal(Code::PermissionDenied, "ak-mismatch"),
                Disposition::Reenroll,
            ),
            (
                refusal(Code::PermissionDenied, "policy-deny"),
                Disposition::Refused,
            ),
            (refusal(Code::InvalidArgument, "csr"), Disposition::Refused),
            (Status::permission_denied("no reason"), Disposition::Refused),
        ];
        for (status, want) in cases {
            assert_eq!(status_disposition(&status), want, "{status:?}");
        }
    }
}
