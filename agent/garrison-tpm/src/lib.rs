//! garrison-tpm (placeholder while the crate is being built).
