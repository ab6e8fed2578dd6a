//! Garrison's node agent: proves the node's identity and boot state with its TPM 2.0 to the
//! site attestor, writes the X.509-SVID it is issued, and renews it around half-life with a
//! fresh quote by the same attestation key.
//!
//! * [`evidence`] turns TPM operations into protocol messages (no network);
//! * [`client`] carries them to the attestor over SPIFFE-authenticated TLS (no TPM);
//! * [`files`] writes the SVID, key, bundle and AK blob atomically;
//! * [`schedule`] decides when to retry and renew, from an injected clock and jitter source;
//! * [`trust_bundle`] decides which roots the agent writes for its workloads: the bootstrap
//!   anchors always, plus only what they vouch for from the attestor's bundle;
//! * [`workload_api`] serves the SVID to the node's workloads over the SPIFFE Workload API;
//! * [`lifecycle`] composes them: [`enroll_once`], [`renew_once`], [`run`].
//!
//! The agent must never write a private key readable by anyone but its owner, never leave
//! a partial file where a reader could find it, never talk to an attestor that does not
//! present the configured SPIFFE ID under the configured bootstrap bundle, and never write
//! an SVID that does not certify its own fresh key or does not chain to that bundle, never
//! drop a bootstrap trust anchor, and never write a root the attestor sent that a bootstrap
//! anchor did not issue. It
//! reads no environment variables; the binary parses the configuration and passes it in.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
mod error;
pub mod evidence;
pub mod files;
pub mod h2_authority;
pub mod lifecycle;
pub mod node_key;
pub mod ops;
pub mod schedule;
mod tpm_worker;
pub mod trust_bundle;
pub mod workload_api;

pub use config::AgentConfig;
pub use error::{
    AgentError, Disposition, MAX_RETRY_AFTER, REASON_METADATA_KEY, RETRY_AFTER_METADATA_KEY,
    reason_code, retry_after, status_disposition,
};
pub use files::SvidPaths;
pub use lifecycle::{Agent, CurrentSvid, Enrolled, enroll_once, error_chain, renew_once, run};
pub use tpm_worker::{TpmSettings, TpmWorker};
