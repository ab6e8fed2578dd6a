//! Parser and replayer for TCG PC Client measured-boot event logs, and the boot claims a
//! verified log supports.
//!
//! Pure: bytes in, typed values or typed errors out. It must never do I/O, never panic on
//! any input, and never allocate according to an untrusted length before checking it
//! against the bytes left and [`Limits`].
//!
//! # Public API
//! * [`EventLog::parse`]`(&[u8]) -> Result<EventLog, EventLogError>` (and
//!   [`EventLog::parse_with_limits`]): SHA-1 (TCG_PCR_EVENT) and crypto-agile
//!   (Spec ID Event03 + TCG_PCR_EVENT2) logs, detected from the first event. Digests of
//!   algorithms Garrison cannot compute are skipped by their Spec ID size.
//!   [`EventLog::events`] gives [`Event`]s (`Serialize` for `--json`), typed by [`EventType`].
//! * [`ReplayedPcrs::replay`]`(&EventLog)`: bank → PCR → value; EV_NO_ACTION is not
//!   extended and StartupLocality sets PCR 0's start value. [`ReplayedPcrs::value`],
//!   [`ReplayedPcrs::iter`].
//! * [`ReplayReport::compare`]`(&EventLog, &PcrValues)`: which quoted PCRs the log replays
//!   to ([`VerifiedPcrs`]) and, for each that it does not, a [`PcrDivergence`] naming the
//!   events that extended it and whether the quote matches an earlier replay state.
//! * [`BootClaims::extract`]`(&EventLog, &VerifiedPcrs)`: Secure Boot state, PK/KEK/db/dbx,
//!   authorities, separators, boot applications, drivers, kernel command line, actions;
//!   only from verified PCRs and digest-checked data. The event type is in no digest, so in
//!   the PCRs claims come from (2, 4, 7, 8, 12) every event counts whatever it is labelled:
//!   it lands in a claim or in `unverifiable`. The rule per PCR is written down in [`claims`].
//!
//! # Performance
//! `benches/replay.rs` measures parsing and replaying a real 112-event log in three banks;
//! the figures are in `docs/performance.md` ("Per-crate benchmarks").
#![forbid(unsafe_code)]

pub mod alg;
pub mod claims;
mod error;
mod event;
mod log;
mod reader;
mod replay;
mod uefi;

pub use alg::HashAlg;
pub use claims::BootClaims;
pub use error::EventLogError;
pub use event::{Event, EventDigest, EventType};
pub use log::{AlgorithmDigestSize, EventLog, Limits, LogFormat, MAX_PCR_INDEX, SpecIdHeader};
pub use replay::{
    LogPrefix, PcrDivergence, PcrValues, ReplayReport, ReplayedPcrs, VerifiedPcrs, reset_value,
};

impl EventLog {
    /// Shorthand for [`ReplayedPcrs::replay`].
    pub fn replay(&self) -> ReplayedPcrs {
        ReplayedPcrs::replay(self)
    }
}
