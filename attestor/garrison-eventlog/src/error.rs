//! The one error type of this crate: every variant names the check that failed.

use crate::HashAlg;

/// Why an event log (or a set of quoted PCR values) was rejected.
///
/// Offsets are byte offsets into the log; event indices count from 0 and include the
/// Spec ID header event of crypto-agile logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The log has no bytes at all.
    #[error("event log is empty")]
    Empty,
    /// The log is larger than [`crate::Limits::max_log_bytes`].
    #[error("event log is {size} bytes, more than the limit of {limit}")]
    LogTooLarge { size: usize, limit: usize },
    /// A field runs past the end of the log.
    #[error("log truncated at offset {offset}: {field} needs {needed} bytes, {available} remain")]
    Truncated {
        offset: usize,
        field: &'static str,
        needed: usize,
        available: usize,
    },
    /// The log holds more events than [`crate::Limits::max_events`].
    #[error("event log has more than {limit} events")]
    TooManyEvents { limit: usize },
    /// An event's data is larger than [`crate::Limits::max_event_data_bytes`].
    #[error(
        "event #{event_index} at offset {offset} declares {size} bytes of data, more than the limit of {limit}"
    )]
    EventTooLarge {
        event_index: usize,
        offset: usize,
        size: u64,
        limit: usize,
    },
    /// A crypto-agile event carries a different number of digests than the Spec ID header
    /// lists algorithms.
    #[error(
        "event #{event_index} at offset {offset} carries {got} digests, the Spec ID header lists {expected} algorithms"
    )]
    DigestCountMismatch {
        event_index: usize,
        offset: usize,
        expected: usize,
        got: u32,
    },
    /// A crypto-agile event carries a digest whose algorithm the Spec ID header does not list.
    #[error(
        "event #{event_index} at offset {offset} carries a digest of algorithm {alg_id:#06x}, which the Spec ID header does not list"
    )]
    UnknownDigestAlgorithm {
        event_index: usize,
        offset: usize,
        alg_id: u16,
    },
    /// A crypto-agile event carries two digests of the same algorithm.
    #[error(
        "event #{event_index} at offset {offset} carries two digests of algorithm {alg_id:#06x}"
    )]
    DuplicateDigestAlgorithm {
        event_index: usize,
        offset: usize,
        alg_id: u16,
    },
    /// An extended event names a PCR outside 0..=23.
    #[error("event #{event_index} at offset {offset} extends PCR {pcr}, outside 0..=23")]
    PcrIndexOutOfRange {
        event_index: usize,
        offset: usize,
        pcr: u32,
    },
    /// The Spec ID Event03 header lists no algorithms.
    #[error("Spec ID header lists no digest algorithms")]
    SpecIdNoAlgorithms,
    /// The Spec ID Event03 header lists more algorithms than [`crate::Limits::max_algorithms`].
    #[error("Spec ID header lists {count} digest algorithms, more than the limit of {limit}")]
    SpecIdTooManyAlgorithms { count: u32, limit: usize },
    /// The Spec ID Event03 header lists an algorithm twice.
    #[error("Spec ID header lists algorithm {alg_id:#06x} twice")]
    SpecIdDuplicateAlgorithm { alg_id: u16 },
    /// The Spec ID Event03 header gives a known algorithm the wrong digest size.
    #[error("Spec ID header gives {alg} a digest size of {got} bytes, expected {expected}")]
    SpecIdDigestSizeMismatch {
        alg: HashAlg,
        expected: usize,
        got: u16,
    },
    /// The Spec ID Event03 header has an uintnSize other than 1 (UINT32) or 2 (UINT64).
    #[error("Spec ID header has uintnSize {got}, expected 1 or 2")]
    SpecIdUintnSize { got: u8 },
    /// The Spec ID Event03 structure does not fill its event exactly.
    #[error("Spec ID header event has {extra} bytes after its vendor info")]
    SpecIdTrailingBytes { extra: usize },
    /// A StartupLocality event does not carry exactly one locality byte.
    #[error("StartupLocality event #{event_index} has {size} bytes of data, expected 17")]
    StartupLocalityMalformed { event_index: usize, size: usize },
    /// A second StartupLocality event.
    #[error("StartupLocality event #{event_index} repeats an earlier one")]
    StartupLocalityRepeated { event_index: usize },
    /// A StartupLocality event after PCR 0 was already extended: PCR 0's start value is then
    /// ambiguous.
    #[error("StartupLocality event #{event_index} comes after PCR 0 was extended")]
    StartupLocalityAfterPcr0Extend { event_index: usize },
    /// A quoted PCR value has the wrong length for its bank.
    #[error("quoted PCR {pcr} in bank {alg} is {got} bytes, expected {expected}")]
    QuotedDigestLength {
        alg: HashAlg,
        pcr: u32,
        expected: usize,
        got: usize,
    },
    /// A quoted PCR index is outside 0..=23.
    #[error("quoted PCR index {pcr} is outside 0..=23")]
    QuotedPcrIndexOutOfRange { pcr: u32 },
}
