//! garrison-ca (placeholder while the crate is being built).
