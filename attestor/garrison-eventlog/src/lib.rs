//! garrison-eventlog (placeholder while the crate is being built).
