//! garrison-loadgen: drives a running site attestor over real gRPC+TLS with simulated
//! agents whose software TPMs produce real TPM 2.0 evidence, and reports throughput,
//! latency and the server's CPU and memory per operation (`key=value` lines).
//!
//! A run: pre-generate N identities (EK key and certificate from a test EK CA, AK, SVID key
//! and CSR) before the clock starts; time the crypto floor of one enrollment in-process;
//! start `garrison attestor serve` on a temporary site; enroll every agent once; then an
//! enroll-only phase and a renew-only phase of S seconds each (so CPU per operation is clean
//! for each kind), and a mixed phase when `--renew-ratio` is given. Agents honour
//! RESOURCE_EXHAUSTED with the `retry-after-ms` hint plus jitter, counting `shed`.
//!
//! A bench and test tool, never part of the shipped binaries: its EK manufacturer CA and
//! TPMs are software, so it must never be pointed at a production attestor's trust roots.
//! The library exists so the binary stays a thin shell; `anyhow` is used throughout.
#![forbid(unsafe_code)]

pub mod agent;
pub mod floor;
pub mod identity;
pub mod procfs;
pub mod report;
pub mod run;
pub mod server;
pub mod soft_tpm;
pub mod tls;
