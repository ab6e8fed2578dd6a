//! garrison-evidence (placeholder while the crate is being built).
