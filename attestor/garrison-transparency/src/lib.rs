//! The transparency side of Garrison's attestation log, as an auditor checks it: no I/O, no
//! clock, no database.
//!
//! * [`site_origin`]: the name of a site's log, `garrison.<trust-domain>/site/<site>`.
//! * [`LogKey`]: the site's Ed25519 log key. It signs checkpoints as C2SP signed notes
//!   ([`LogKey::sign_checkpoint`]); the site CA certifies it as the SPIFFE ID
//!   `spiffe://<td>/site/<site>/log`, so that an auditor who holds only the root certificate
//!   can check a checkpoint ([`LogKeyCertificate::verify`]).
//! * [`Checkpoint`]: a C2SP tlog-checkpoint, parsed and verified ([`verify_checkpoint`]).
//! * [`InclusionProof`]: a C2SP tlog-proof (record index, RFC 9162 audit path, the
//!   checkpoint it is relative to, and the record's canonical bytes as its `extra` data);
//!   [`ConsistencyProof`] in a small text format of the same style.
//!
//! The Merkle tree arithmetic is the `tlog_tiles` crate's (a port of Go's sumdb/tlog); the
//! signed-note format is the `signed_note` crate's. This crate adds Garrison's names, its
//! key certification and the proof texts.
//!
//! # What this crate must never do
//!
//! * Accept a checkpoint whose signature, origin or key it did not check, or a key
//!   certificate that does not chain to the given roots through CAs allowed to vouch for the
//!   site ([`garrison_ca::check_path_scope_der`]).
//! * Panic on any input: proofs, notes and certificates come from whoever hands them over.

#![forbid(unsafe_code)]

mod certificate;
mod checkpoint;
mod error;
mod key;
mod proof;

pub use certificate::LogKeyCertificate;
pub use checkpoint::{Checkpoint, verify_checkpoint};
pub use error::TransparencyError;
pub use key::{LogKey, verifier_key};
pub use proof::{
    ConsistencyProof, InclusionProof, leaf_hash_of, verify_consistency, verify_inclusion,
};

/// The origin (log name) of a site's attestation log: `garrison.<trust-domain>/site/<site>`.
pub fn site_origin(trust_domain: &str, site: &str) -> String {
    format!("garrison.{trust_domain}/site/{site}")
}

/// The trust domain and site of a site log origin, if `origin` is one.
pub fn parse_site_origin(origin: &str) -> Option<(&str, &str)> {
    let rest = origin.strip_prefix("garrison.")?;
    let (trust_domain, site) = rest.split_once("/site/")?;
    let valid = !trust_domain.is_empty() && garrison_ca::is_site_name(site);
    valid.then_some((trust_domain, site))
}
