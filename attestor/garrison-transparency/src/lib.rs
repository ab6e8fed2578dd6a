//! The transparency side of Garrison's attestation log, as an auditor, a site and the hub's
//! witness check it: no I/O, no clock, no database.
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
//! * [`WitnessKey`]: the hub's Ed25519 witness key, named [`hub_witness_name`]
//!   (`garrison.<td>/hub`). A hub CA certifies it as `spiffe://<td>/hub/witness`
//!   ([`WitnessKeyCertificate::verify`]). It signs two things:
//!   * **cosignatures** ([`WitnessKey::cosign`]): a C2SP tlog-cosignature `cosignature/v1`
//!     line on each site checkpoint the hub accepts. A site checks the line
//!     ([`verify_cosignature`]) and merges it into the note it stores
//!     ([`add_cosignature_line`]); a checkpoint the witness cosigned is one the hub saw, so
//!     a log cannot show the hub one history and an auditor another;
//!   * the **revocation list** ([`WitnessKey::sign_revocations`], [`RevocationList`]): a
//!     signed note of revoked nodes (EK hashes) and certificate serials that sites enforce,
//!     read strictly by [`RevocationList::verify`].
//!
//! The Merkle tree arithmetic is the `tlog_tiles` crate's (a port of Go's sumdb/tlog); the
//! signed-note format is the `signed_note` crate's (for witness notes, its signature lines
//! only: see `note.rs`). This crate adds Garrison's names, its key certification, the proof
//! texts, cosignatures and the revocation list.
//!
//! # What this crate must never do
//!
//! * Accept a checkpoint whose signature, origin or key it did not check, or a key
//!   certificate that does not chain to the given roots through CAs allowed to vouch for the
//!   identity ([`garrison_ca::check_path_scope_der`]): another site's CA for a log key, or
//!   anything but hub CAs for the witness key.
//! * Accept a cosignature whose Ed25519 signature over `cosignature/v1`, its time line and
//!   the whole checkpoint body it did not check, or whose timestamp exceeds 2^63 - 1; or
//!   produce one over anything but a checkpoint.
//! * Accept a revocation list not signed by the witness key of the expected trust domain,
//!   or one that is not exactly its format: an entry it cannot read is refused, never
//!   skipped (a skipped entry is a revocation that silently does not happen).
//! * Let one witness signature pass for another kind: cosignature messages start with
//!   `cosignature/v1`, revocation lists with `garrison.<td>/revocations`, and the two use
//!   different key IDs.
//! * Panic on any input: proofs, notes and certificates come from whoever hands them over.
//! * Print a private key: `Debug` of [`LogKey`] and [`WitnessKey`] shows names and key IDs.

#![forbid(unsafe_code)]

mod certificate;
mod checkpoint;
mod cosignature;
mod error;
mod key;
mod note;
mod proof;
mod revocation;
mod witness;

pub use certificate::{LogKeyCertificate, WitnessKeyCertificate};
pub use checkpoint::{Checkpoint, verify_checkpoint};
pub use cosignature::{Cosignature, add_cosignature_line, verify_cosignature};
pub use error::TransparencyError;
pub use key::{LogKey, verifier_key};
pub use proof::{
    ConsistencyProof, InclusionProof, leaf_hash_of, verify_consistency, verify_inclusion,
};
pub use revocation::{
    MAX_REVOCATION_NOTE_LEN, MAX_REVOCATIONS, NewestList, RevocationDefect, RevocationList,
    RevokedTarget, newest_verified_list, revocations_origin,
};
pub use witness::{WitnessKey, hub_witness_name};

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
