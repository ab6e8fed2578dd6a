//! garrison-loadgen: drives a running site attestor over real gRPC+TLS with simulated
//! agents whose software TPMs produce real TPM 2.0 evidence, and reports throughput,
//! latency and the server's CPU and memory per operation.
//!
//! A bench and test tool, never part of the shipped binaries: its EK manufacturer CA and
//! TPMs are software, so it must never be pointed at a production attestor's trust roots.
#![forbid(unsafe_code)]

pub mod identity;
pub mod soft_tpm;
