//! garrison-ear: a site's decisions as attestation results for relying parties. Each enroll,
//! renew or reject record of the attestation log (and a revocation that follows one) becomes
//! an EAR, the EAT Attestation Result of draft-ietf-rats-ear-04 (profile
//! [`ear::EAR_PROFILE`], `tag:ietf.org,2026:rats/ear#04`), whose one appraisal (submod
//! [`SUBMOD`]) carries an AR4SI trustworthiness vector (draft-ietf-rats-ar4si) derived from
//! what the attestor verified, and points back into the tamper-evident log (origin, sequence,
//! leaf hash) and at the policy bundle that decided.
//!
//! * [`DecisionFacts`]: what the log establishes about one decision (its host gathers them:
//!   `garrison_audit::decision_facts`).
//! * [`trust_vector`], [`status`]: the mapping, by type: every [`Reason`] placed, no strings.
//! * [`attestation_result`]: the facts as an [`ear::Ear`]; deterministic (`iat` is the
//!   record's time, nothing is drawn or read), so the same record always gives the same claims.
//! * [`sign_jwt`]: the EAR as a JWT (JWS compact, `alg: EdDSA`) signed by the site's log key,
//!   whose certificate chain goes in the `x5c` header; [`verify_jwt`]: the relying party's
//!   check, against the trust domain's root certificates alone.
//!
//! The `ear` crate is used for its data model and serde only (without its `jwt` feature,
//! which links aws-lc-rs: ring is the workspace's only crypto backend).
//!
//! What this crate must never do: I/O, async, read a clock or draw randomness; claim more
//! than the log shows was verified (a claim Garrison does not check is "no claim", 0, and a
//! refusal is never better than contraindicated); accept a JWT whose `x5c` chain it did not
//! check against the given roots for the log the EAR names, or whose signature it did not
//! check; panic on any input.
#![forbid(unsafe_code)]

mod error;
mod facts;
mod jwt;
mod result;
mod vector;

pub use error::EarError;
pub use facts::{DecisionFacts, EkBasis, Outcome, PolicyClaims};
pub use garrison_appraisal::Reason;
pub use jwt::{VerifiedResult, sign_jwt, verify_jwt};
pub use result::{SUBMOD, attestation_result, verifier_id};
pub use vector::{TrustVector, status, trust_vector};
