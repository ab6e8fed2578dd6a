//! garrison-swtpm (placeholder while the crate is being built).
