//! The site attestor: verifies TPM evidence, evaluates admission policy, issues X.509-SVIDs
//! from the site CA and records every decision in the attestation log.
//!
//! The decisions are `garrison-appraisal`'s; [`Attestor`] is the I/O around them (no gRPC
//! types beyond the generated messages), [`service`] the gRPC edge and [`server`] the
//! start-up. It must never release a
//! certificate before its log record is durable, never tell a client more than a stable
//! reason code about a refusal, never enable an insecure option by default, never store the
//! bytes of a request whose sender proved nothing nor let such senders grow the log without
//! bound (`record_budget.rs`), and never use randomness it failed to draw (`random.rs`).
#![forbid(unsafe_code)]

mod attestor;
pub mod audit_service;
mod challenge;
pub mod checkpoint;
pub mod config;
pub mod listener;
pub mod metrics;
pub mod node_admin;
pub mod ops;
mod policy_update;
mod random;
mod record_budget;
mod refusal;
pub mod server;
pub mod service;
pub mod site_ca;
pub mod site_sync;
pub mod startup;
pub mod status;
pub mod sync_client;
pub mod tls;
mod translate;

pub use attestor::{Attestor, AttestorParts, Clock, SystemClock};
pub use config::{ConfigError, HubLink, InsecureOptions, SiteConfig};
pub use garrison_appraisal::{EvidenceRecord, UnprovenRequest};
pub use policy_update::{PolicyFloorError, PolicyRefusal};
pub use random::{RandomFailed, RandomSource};
pub use record_budget::UNRECORDED_REFUSALS;
pub use refusal::{REASON_METADATA_KEY, RETRY_AFTER_METADATA_KEY, Reason, Refusal, RefusalStatus};
pub use translate::FIELD_LIMITS;
