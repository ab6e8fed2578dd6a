//! `garrison-loadgen`: see the library docs.
#![forbid(unsafe_code)]

fn main() {}
