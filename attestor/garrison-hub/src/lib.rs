//! The Garrison hub: the aggregated attestation log of every site, a witness of each site's
//! log, and the source of policy bundles and revocations for its sites.
//!
//! Sites open every connection (`sync_service.rs`, gRPC `Sync` over mutual TLS with the
//! site attestor's SVID); the hub never connects to a site. What the hub does with what a
//! site sends ([`Hub`]):
//!
//! * **Log up.** A pushed batch (records as canonical bytes, their evidence, the site's
//!   signed checkpoint and two consistency proofs) is checked without the database first
//!   (`push.rs`: origin, log key certificate, checkpoint signature, record encoding), then
//!   against what the hub holds: the checkpoint must extend the tree the hub already holds
//!   and witnessed (else a `fork` alarm with both checkpoints), and the records must lead
//!   to the checkpoint's root. Records land in the site's replica log at the site's
//!   sequences, once (`garrison_log::AttestationLog::append_replica`), so a resend, a
//!   resumed transfer or the same batch through two hub processes stores nothing twice.
//!   Once the hub holds the checkpoint's whole tree it **cosigns** it (C2SP
//!   `cosignature/v1`) and keeps both.
//! * **Down.** The newest published policy bundle (verified against the roots when
//!   published; sites verify it again exactly as a local bundle) and the newest revocation
//!   list, signed by the hub's witness key, whose certificate chains to the root through the
//!   hub CA.
//! * **Refusals are recorded**, counted per (site, kind) in the database
//!   (`garrison_log::SyncEvent`): a site that keeps sending bad batches updates one row.
//!
//! Air-gapped sites exchange the same messages as files (`files.rs`).
//!
//! # What this crate must never do
//!
//! * Store or cosign anything from a batch it did not check in full, or store part of a
//!   batch: a batch lands whole or not at all.
//! * Let a site push another site's log, or cosign a checkpoint inconsistent with one it
//!   already cosigned.
//! * Open a connection to a site, or hold a whole backlog in memory: batches are bounded
//!   (`garrison_proto::limits`).
//! * Sign a revocation list that drops an entry of the one before it, or reuse a sequence.

#![forbid(unsafe_code)]

pub mod config;
pub mod files;
mod hub;
pub mod metrics;
pub mod push;
pub mod server;
pub mod shed;
pub mod sync_service;

pub use config::HubConfig;
pub use hub::{Hub, HubError, HubParts, MAX_REVOCATION_LIST_BYTES};

/// A refusal of what a site sent: a stable code (also the kind it is recorded under) and
/// what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Refusal {
    /// `wrong-origin`, `bad-log-key`, `bad-signature`, `malformed-batch`, `fork`,
    /// `bad-proof`, `tampered-record`, `gap`, `bad-evidence`, `stale`, `too-large`.
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(code: &'static str, detail: String) -> Self {
        Refusal { code, detail }
    }
}
