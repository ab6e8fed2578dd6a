//! TLS authenticated by SPIFFE X.509-SVIDs, for Garrison's gRPC connections.
//!
//! Peers are identified by the SPIFFE ID in the URI SAN of a certificate that chains to the
//! trust bundle, not by DNS names: an agent knows the attestor as
//! `spiffe://<td>/site/<site>/attestor`, and the attestor knows a node by the ID in its
//! client certificate. This crate builds rustls configurations that check exactly that, and a
//! tonic channel that uses them.
//!
//! It must never accept a peer whose chain does not verify to the bundle, never accept a
//! server whose SPIFFE ID differs from the expected one, and never accept a server whose
//! issuing CAs may not vouch for that ID (a site CA speaks only for its own site:
//! [`garrison_ca::scope`]). It makes no other trust decision.
#![forbid(unsafe_code)]

mod client;
mod identity;

pub use client::{
    SpiffeServerVerifier, check_path_scope, client_config, client_config_at,
    client_config_with_verifier, connect,
};
pub use identity::{Identity, TlsError, peer_spiffe_id, spiffe_id_of};

/// Install ring as rustls's process-wide crypto provider (idempotent). Binaries call this at
/// start so that no other provider can be picked up implicitly.
pub fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
