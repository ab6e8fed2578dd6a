//! Placeholder so the workspace parses while the real benchmark is written.
fn main() {}
