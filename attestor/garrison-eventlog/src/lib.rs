//! Parser and replayer for TCG PC Client measured-boot event logs (being built).
//!
//! Pure: bytes in, typed values or typed errors out. It must never do I/O and never panic on
//! any input.
#![forbid(unsafe_code)]

pub mod alg;
pub use alg::HashAlg;
