//! Garrison's admission policy: Rego policies (evaluated by regorus) shipped as signed
//! bundles, compiled once per bundle and evaluated per request inside time, instruction and
//! size limits, with deny-by-default decisions.
//!
//! Pure: bundles come in as a map of file name → bytes, time comes in as a parameter, and
//! nothing here reads files, the clock or the network. It must never let a policy read the
//! clock, network or randomness (such bundles are refused), never turn a missing or ill-typed
//! decision into an allow, never replace the bundle in force with an older one or an unverified
//! one, and never expose regorus types or errors.
//!
//! # Public API
//! * [`verify_bundle`]`(&BundleFiles, &PolicyTrust, now, &BundleLimits) -> VerifiedBundle`:
//!   signer chain to the root (rustls-webpki), `spiffe://<td>/policy/...` signer ID, signature
//!   over `manifest.json`, SHA-256 of every file. [`BundleSigner::sign`] makes one.
//!   [`encode_archive`] / [`decode_archive`]: the one-file form.
//! * [`PolicyEngine`]: [`PolicyEngine::from_verified`] compiles to an RVM program once;
//!   [`PolicyEngine::evaluate`] / [`PolicyEngine::evaluate_ref`] /
//!   [`PolicyEngine::evaluate_json`] / [`PolicyEngine::evaluate_sections`] (with
//!   [`InputSection`]s converted once and shared) → [`Decision`];
//!   [`PolicyEngine::explain`] gives every rule of `data.garrison.admission`.
//! * [`PolicyService`]: the bundle in force behind `RwLock<Arc<_>>`; [`PolicyService::reload`]
//!   refuses rollback and keeps the last good bundle on any error;
//!   [`PolicyService::new_with_floor`] / [`PolicyService::floor`] carry the rollback floor
//!   across restarts (the host persists it).
//! * [`PolicyInput`]: the input as one typed value; [`TpmFacts::from_evidence`] is the one
//!   producer of its TPM facts from verified evidence, [`SiteFacts::without_hub`] of its site
//!   facts (`connected` false: there is no hub yet), [`PcrsSection`] of `input.pcrs`. The
//!   attestor, the golden generator and the shipped case inputs all go through them.
//! * [`golden`]: draft allow-lists and sample inputs from a known-good machine's log.
//!
//! # Performance
//! One decision of the strict policy on a realistic input (built from the real
//! `tpm2tools-event-moklisttrusted.bin` log, 5.9 KB of JSON, 194 values) costs 17 µs when its
//! `boot` and `pcrs` sections come pre-converted as shared [`InputSection`]s (what the
//! attestor does: they depend only on the event log and the quoted PCRs), and 34 µs with the
//! whole input converted per call ([`PolicyEngine::evaluate_ref`]), against 52 µs for the
//! ring ECDSA P-256 verification at the heart of one quote verification, measured in the same
//! process: 0.33× and 0.66×. Figures are the fastest of 400 batches of 20 on one core of the
//! shared 2-core dev VM; run
//! `taskset -c 0 cargo run --release -p garrison-policy --example decision_cost`
//! (or `cargo bench -p garrison-policy --bench decision -- --quick` for criterion's view).
#![forbid(unsafe_code)]

mod bundle;
pub mod cases;
mod decision;
mod engine;
mod error;
pub mod golden;
mod input;
mod policy_input;
mod service;
mod signature;
mod source_check;

pub use bundle::{
    ARCHIVE_FORMAT, BundleFiles, BundleLimits, DATA_FILE, MANIFEST_FILE, MANIFEST_FORMAT, Manifest,
    SIGNATURE_FILE, check_files, decode_archive, encode_archive, sha256_hex,
};
pub use decision::{DECISION_RULES, Decision, MAX_REASONS, valid_spiffe_path};
pub use engine::{ADMISSION_PACKAGE, BundleInfo, EvalLimits, PolicyEngine};
pub use error::{PolicyError, PolicyErrorKind};
pub use input::{InputSection, check_input};
pub use policy_input::{
    AkAlgorithm, EkFacts, FirmwareVersion, NodeFacts, PcrsSection, PolicyInput, PreviousDecision,
    RequestFacts, RequestKind, SiteFacts, TpmFacts,
};
pub use service::{PolicyService, ReloadOutcome};
pub use signature::{
    BundleSigner, POLICY_SIGNER_PATH_PREFIX, PolicyTrust, SIGNED_CONTEXT, SignatureAlgorithm,
    VerifiedBundle, verify_bundle,
};
pub use source_check::FORBIDDEN_BUILTINS;
