//! What an auditor runs over a site's attestation log, months later, trusting neither the
//! site's operator nor its database: [`verify`] checks every record against the signed
//! checkpoints and the signing key against the root certificate; [`prove`] writes a C2SP
//! tlog-proof for one record; [`garrison_log::AttestationLog::export_sqlite`] writes the
//! self-contained archive these also run on.
//!
//! # What this crate must never do
//!
//! * Trust a stored hash, a stored leaf or a checkpoint it did not recompute or verify:
//!   every leaf is recomputed from the record's columns, every tree root from those leaves,
//!   every checkpoint signature checked with a key certified under the given roots.
//! * Stop at the first problem: the report lists every problem found (bounded), with the
//!   first bad record's sequence.
//! * Load a whole log into memory: records are read in pages.

#![forbid(unsafe_code)]

mod prove;
mod source;
mod verify;

pub use prove::{AuditError, prove};
pub use source::LogSource;
pub use verify::{Problem, VerifyReport, verify};
