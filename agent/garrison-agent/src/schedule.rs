//! When to retry and when to renew: pure functions of injected time and randomness.

use std::time::{Duration, SystemTime};

/// Renewal happens at a uniformly drawn fraction of the SVID lifetime in this range, so a
/// fleet enrolled together does not renew in lock-step.
pub const RENEWAL_FRACTION: (f64, f64) = (0.45, 0.55);

/// The wall clock, injected so expiry and renewal are testable without sleeping.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Randomness for jitter (not for keys: those use ring's `SecureRandom`).
pub trait Entropy: Send + Sync {
    /// A uniformly distributed 64-bit value.
    fn next_u64(&mut self) -> u64;
}

/// Jitter from the operating system's CSPRNG (through ring).
#[derive(Debug)]
pub struct SystemEntropy(ring::rand::SystemRandom);

impl Default for SystemEntropy {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Entropy for SystemEntropy {
    fn next_u64(&mut self) -> u64 {
        // ring::rand::generate fails only if the OS RNG is unusable; the key generation
        // that follows would fail loudly then. Jitter degrades to "no jitter" meanwhile.
        ring::rand::generate::<[u8; 8]>(&self.0)
            .map(|bytes| u64::from_be_bytes(bytes.expose()))
            .unwrap_or(0)
    }
}

/// A small deterministic generator (SplitMix64) for reproducible schedules in tests and
/// simulations. Never used for secrets.
#[derive(Debug, Clone)]
pub struct SeededEntropy(u64);

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A uniform draw in [0, 1).
fn unit(entropy: &mut dyn Entropy) -> f64 {
    // 53 random bits: exactly representable in an f64 mantissa.
    (entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential backoff with full jitter: attempt `n` (0-based) waits a uniform time in
/// `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A schedule with `base` and `cap` (the cap is raised to `base` if lower).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
        }
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The upper bound of the delay after failed attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |delay| delay.min(self.cap))
    }

    /// The delay after failed attempt `attempt` (0-based), full jitter.
    pub fn delay(&self, attempt: u32, entropy: &mut dyn Entropy) -> Duration {
        self.ceiling(attempt).mul_f64(unit(entropy))
    }

    /// The delay when the server asked to wait `hint`: at least `hint`, plus up to one
    /// base delay of jitter so that shed clients do not come back together.
    pub fn after_hint(&self, hint: Duration, entropy: &mut dyn Entropy) -> Duration {
        hint.saturating_add(self.base.mul_f64(unit(entropy)))
    }
}

/// When to renew an SVID valid from `not_before` to `not_after`: at a uniformly drawn
/// fraction in [`RENEWAL_FRACTION`] of its lifetime. A certificate with no positive
/// lifetime is due at once (`not_before`).
pub fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    entropy: &mut dyn Entropy,
) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return not_before;
    };
    let (low, high) = RENEWAL_FRACTION;
    let fraction = low + (high - low) * unit(entropy);
    not_before + lifetime.mul_f64(fraction)
}

/// How long to wait from `now` until `at` (zero if it has passed).
pub fn until(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_exponential_ceiling_and_cap() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut entropy = SeededEntropy::new(7);
        for attempt in 0..40 {
            let ceiling = backoff.ceiling(attempt);
            let expected = Duration::from_millis(500)
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(Duration::from_secs(60));
            assert_eq!(ceiling, expected, "attempt {attempt}");
            for _ in 0..200 {
                let delay = backoff.delay(attempt, &mut entropy);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} > {ceiling:?}"
                );
            }
        }
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn backoff_jitter_spreads_over_the_range() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut entropy = SeededEntropy::new(42);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.delay(10, &mut entropy)).collect();
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(6))
            .count();
        let high = delays
            .iter()
            .filter(|d| **d > Duration::from_secs(54))
            .count();
        // Full jitter: each tenth of [0, 60 s] holds about 100 of 1000 draws.
        assert!((50..150).contains(&low), "{low}");
        assert!((50..150).contains(&high), "{high}");
    }

    #[test]
    fn seeded_entropy_is_reproducible() {
        let mut a = SeededEntropy::new(1);
        let mut b = SeededEntropy::new(1);
        let mut c = SeededEntropy::new(2);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs.first(), Some(&c.next_u64()));
    }

    #[test]
    fn server_hint_is_a_floor() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut entropy = SeededEntropy::new(3);
        for _ in 0..100 {
            let delay = backoff.after_hint(Duration::from_secs(2), &mut entropy);
            assert!(delay >= Duration::from_secs(2));
            assert!(delay <= Duration::from_millis(2500));
        }
    }

    #[test]
    fn renewal_falls_between_45_and_55_percent_of_lifetime() {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lifetime = Duration::from_secs(3600);
        let not_after = not_before + lifetime;
        let mut entropy = SeededEntropy::new(99);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let at = renewal_time(not_before, not_after, &mut entropy);
            let offset = at.duration_since(not_before).unwrap();
            assert!(offset >= lifetime.mul_f64(0.45), "{offset:?}");
            assert!(offset <= lifetime.mul_f64(0.55), "{offset:?}");
            seen_low |= offset < lifetime.mul_f64(0.46);
            seen_high |= offset > lifetime.mul_f64(0.54);
        }
        assert!(seen_low && seen_high, "jitter covers the range");
        assert_eq!(renewal_time(not_after, not_before, &mut entropy), not_after);
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(until(now, now - Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(
            until(now, now + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
