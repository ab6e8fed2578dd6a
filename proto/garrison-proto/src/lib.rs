//! Garrison's gRPC protocol: generated message and service types for enrollment and
//! renewal, the auditor's Audit service and site↔hub Sync, and the size limits both ends
//! enforce.
//!
//! This crate only defines the wire format. It must never interpret TPM structures or make
//! trust decisions: the attestor converts these messages into typed evidence once, at its
//! edge.
#![forbid(unsafe_code)]

/// Generated code for package `garrison.v1`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
pub mod v1 {
    tonic::include_proto!("garrison.v1");
}

/// Generated code for the SPIFFE Workload API (`proto/spiffe/workload.proto`, copied
/// unchanged from the SPIFFE standards; it has no protobuf package, so its gRPC paths are
/// `/SpiffeWorkloadAPI/<method>` as every SPIFFE client expects). Served by the agent.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
pub mod workload {
    tonic::include_proto!("_");
}

pub mod sync_file;

/// Size limits of the protocol. The server refuses larger messages before decoding them and
/// checks each field again when converting it.
pub mod limits {
    /// Largest encoded request the attestor decodes, bytes.
    pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
    /// Largest encoded response a client decodes, bytes.
    pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
    /// Largest TPM2B_PUBLIC, bytes (an RSA-4096 key with a policy fits easily).
    pub const MAX_PUBLIC_AREA: usize = 1024;
    /// Largest certificate, bytes.
    pub const MAX_CERTIFICATE: usize = 8 * 1024;
    /// Most certificates in an EK chain.
    pub const MAX_EK_CHAIN: usize = 4;
    /// Most self-reported facts, and their key and value lengths.
    pub const MAX_ASSERTED_FACTS: usize = 32;
    /// Longest self-reported fact key or value, bytes.
    pub const MAX_ASSERTED_LEN: usize = 256;
    /// Largest TPMS_ATTEST or TPMT_SIGNATURE, bytes.
    pub const MAX_ATTEST: usize = 2048;
    /// Most PCR values in a quote (3 banks x 24).
    pub const MAX_PCR_VALUES: usize = 72;
    /// Largest measured-boot event log, bytes.
    pub const MAX_EVENT_LOG: usize = 768 * 1024;
    /// Largest CSR, bytes.
    pub const MAX_CSR: usize = 4096;
    /// Largest activated secret or nonce, bytes.
    pub const MAX_SECRET: usize = 64;

    /// Largest encoded Sync message either end decodes (a log batch with its evidence),
    /// bytes. Sites cut their batches to [`SYNC_BATCH_BYTES`], so this leaves room.
    pub const MAX_SYNC_MESSAGE: usize = 16 * 1024 * 1024;
    /// What a site puts in one log batch before it sends it: records and evidence up to
    /// about this many bytes (a single larger evidence value goes alone).
    pub const SYNC_BATCH_BYTES: usize = 4 * 1024 * 1024;
    /// Most records in one log batch.
    pub const SYNC_BATCH_RECORDS: usize = 2_000;
    /// Most digests asked about in one MissingEvidence call.
    pub const SYNC_MAX_DIGESTS: usize = 10_000;
}
