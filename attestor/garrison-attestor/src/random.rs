//! Where the attestor draws its nonces, credential secrets and challenge ids from.
//!
//! A draw that fails refuses the request (`random-unavailable`): nothing is ever issued on
//! bytes that were not drawn. The source comes in from outside, like the clock, so that tests
//! can make it fail. ring's `SecureRandom` is sealed (nothing outside ring can implement it),
//! hence this trait; the libraries that take a ring generator (MakeCredential in
//! `garrison-evidence`, SVID serials and signatures in `garrison-ca`) get the system
//! generator and report its failures as errors of their own, which map to the same reason.

use std::fmt;

use ring::rand::SystemRandom;

/// A random draw failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RandomFailed;

/// A source of cryptographically secure random bytes.
pub trait RandomSource: Send + Sync + fmt::Debug {
    /// Fill `dest` entirely, or fail.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed>;
}

/// The operating system's generator (ring's `SystemRandom`).
impl RandomSource for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed> {
        ring::rand::SecureRandom::fill(self, dest).map_err(|_| RandomFailed)
    }
}
