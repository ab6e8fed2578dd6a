//! Garrison's certificate authority: pure issuance logic for the nested CA hierarchy
//! (offline root → hub → site) and the leaf X.509-SVIDs that nodes receive.
//!
//! Bytes and parameters in, certificates out. Time and randomness are passed in by the
//! caller. This crate must never do I/O, read the clock or environment, or run async code;
//! the `garrison` binary does those and calls in here.
//!
//! Rules it enforces (each refusal is a distinct [`CaError`] variant):
//! * issuers must be CA certificates with keyCertSign, a `spiffe://<td>` URI SAN, a key that
//!   matches, and be valid at the time of issuance;
//! * intermediates get cA=true, critical keyCertSign+cRLSign, a path length below their
//!   issuer's, no URI name constraints (rustls-webpki fails closed on them), and a lifetime
//!   that may not exceed the issuer's: such requests are refused, never silently truncated;
//! * leaf SVIDs get exactly one URI SAN (a SPIFFE ID with a path, in the issuer's trust
//!   domain), cA=false, critical digitalSignature, serverAuth+clientAuth, notBefore backdated
//!   by [`CLOCK_SKEW_ALLOWANCE`], notAfter = min(now + TTL, issuer notAfter), a random
//!   128-bit serial, and only the public key of a signature-verified CSR;
//! * SPIFFE IDs follow the SPIFFE-ID specification ([`SpiffeId::parse`]);
//! * every intermediate states its role (hub, policy or `site/<name>`) and a CA issues only
//!   what its role allows; role identities (`/site/<s>/attestor`, `/site/<s>/log`,
//!   `/hub/witness`) are never issued as node SVIDs, only by the CA of that site
//!   ([`Authority::issue_site_role_svid`]) or by a hub CA ([`Authority::issue_hub_role_svid`])
//!   ([`scope`] has the whole containment rule, which verifiers enforce too).
//!
//! Performance: `benches/issue_svid.rs`; the figures are in `docs/performance.md` ("Per-crate
//! benchmarks").
#![forbid(unsafe_code)]

mod authority;
mod bundle;
mod csr;
mod error;
mod inspect;
mod key;
pub mod lifecycle;
pub mod scope;
mod spiffe_id;

pub use authority::{
    Authority, CLOCK_SKEW_ALLOWANCE, IntermediateParams, Issued, PathLen, RootParams, SubjectKey,
    SvidParams, validity_of_der, verify_cross_signed, verify_root_twin,
};
pub use bundle::{BundleMetadata, TrustBundle, certificates_from_pem, certificates_to_pem};
pub use csr::{MIN_RSA_BITS, VerifiedCsr};
pub use error::{CaError, CaErrorKind};
pub use inspect::CertificateSummary;
pub use key::{KeyAlgorithm, PrivateKey, SecretPem};
pub use lifecycle::{LifecycleError, RotationStep, Successor, Validity};
pub use scope::{
    CaRole, HubRole, SiteRole, check_leaf_scope, check_leaf_scope_der, check_path_scope_der,
    is_root_shaped, is_site_name, site_of, spiffe_uri,
};
pub use spiffe_id::{
    MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, SpiffeIdError, TrustDomain,
};
