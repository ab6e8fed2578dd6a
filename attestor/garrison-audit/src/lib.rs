//! What an auditor runs over a site's attestation log, months later, trusting neither the
//! site's operator nor its database: [`verify`] checks every record against the signed
//! checkpoints and the signing key against the root certificate; [`prove`] writes a C2SP
//! tlog-proof for one record; [`replay`] re-runs each decision over its stored evidence;
//! [`garrison_log::AttestationLog::export_sqlite`] writes the self-contained archive these
//! also run on, and [`export`] the same archive from any [`LogSource`] (the Audit service); [`decision_facts`] reads a node's latest decision for its attestation result
//! (`garrison-ear`).
//!
//! # Replay
//!
//! [`replay`] (what Keylime calls durable attestation) runs `garrison-appraisal`, the code
//! the attestor decides with, again over the evidence stored beside every `enroll`, `renew`
//! and `reject` record, at the record's time, with the policy bundle that was in force then
//! (the newest allowed `policy-update` before it, verified against the roots), and reports
//! each record as matched, differs (both verdicts) or not replayable (a stable
//! [`Unreplayable`] code). With a proposed bundle ([`ReplayOptions::policy`]) it answers
//! "what would this policy have decided?": the records that differ are the decisions that
//! would change. What it rebuilds and what it assumes (the site's PCR selection, AK policy
//! and maximum lifetime; no asserted facts; the EK chain taken as the record says) is listed
//! in the module's docs; records refused before any quote was appraised (EK trust,
//! credential activation, unproven requests) are not replayable.
//!
//! # What this crate must never do
//!
//! * Trust a stored hash, a stored leaf or a checkpoint it did not recompute or verify:
//!   every leaf is recomputed from the record's columns, every tree root from those leaves,
//!   every checkpoint signature checked with a key certified under the given roots.
//!   The stored tree hashes a database keeps are compared with the tree of its stored
//!   leaves, since proofs are served from them, and the revocations a site's database
//!   enforces with its revoke records.
//! * Stop at the first problem: the report lists every problem found (bounded), with the
//!   first bad record's sequence.
//! * Load a whole log into memory: records are read in pages, and [`verify`] reads a page's
//!   evidence with one [`LogSource::evidence_many`] call (each distinct digest once), so it
//!   holds one page of records and their evidence at a time (replay keeps one history per
//!   node and one compiled engine per policy bundle).
//! * Let a replay decide with a policy bundle it did not verify against the roots.

#![forbid(unsafe_code)]

mod attestation_result;
mod export;
mod prove;
mod replay;
mod source;
mod verify;
mod witnessed;

pub use attestation_result::{NodeRef, decision_facts};
pub use export::export;
pub use prove::{AuditError, prove};
pub use replay::{
    Outcome, PolicySeen, RecordReplay, ReplayOptions, ReplaySummary, Unreplayable, Verdict, replay,
};
pub use source::{EnforcedRevocations, LogSource, StoredTreeHashes};
pub use verify::{Problem, VerifyReport, verify, verify_against};
pub use witnessed::{
    HubRevocationsReport, WitnessReport, check_cosignatures, check_hub_revocations,
};
