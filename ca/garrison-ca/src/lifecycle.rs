//! When an intermediate CA is replaced, and which CAs are fit to issue: the rules of a site
//! CA's life, as pure functions of validity periods and a time.
//!
//! A site CA's remaining life is the site's outage budget: it issues alone until its notAfter
//! and fails closed after. Rotation goes prepared → active → old:
//! * **prepare** (a new key, a CSR to the hub) once half of the active CA's life has passed;
//! * **activate** the prepared CA once the active one is down to a sixth of its life, and
//!   only if the prepared one is fit ([`check_activation`]): valid now, outliving the active
//!   one, and itself long enough to issue full-length SVIDs for a while;
//! * keep the **old** one trusted until the last SVID it issued has expired (every leaf is
//!   capped at its issuer's notAfter, so that is at the latest the old CA's notAfter).
//!
//! And by construction a CA's life covers its SVIDs: [`check_ca_lifetime`] refuses a CA
//! lifetime below [`CA_LIFETIME_PER_SVID_TTL`] × the longest SVID TTL, so that a CA activated
//! at a sixth of its life left still has a full SVID's lifetime to give.

use time::{Duration, OffsetDateTime};

/// A CA's lifetime must be at least this many times the longest SVID TTL it hands out.
pub const CA_LIFETIME_PER_SVID_TTL: i32 = 6;

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// The whole lifetime, notBefore to notAfter.
    pub fn lifetime(&self) -> Duration {
        self.not_after - self.not_before
    }

    /// What is left at `now` (negative once expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        self.not_after - now
    }

    /// True while `now` is within the period.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// When a successor should be prepared: half of the lifetime.
    pub fn prepare_at(&self) -> OffsetDateTime {
        self.not_before + self.lifetime() / 2
    }

    /// When a prepared successor should take over: a sixth of the lifetime left.
    pub fn activate_at(&self) -> OffsetDateTime {
        self.not_after - self.lifetime() / 6
    }
}

/// What a site CA's holder should do at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationStep {
    /// Nothing is due.
    Wait,
    /// Generate a new key and ask for its certificate.
    Prepare,
    /// A successor was prepared but its certificate has not come back: ask again.
    AwaitCertificate,
    /// Put the prepared (certified) successor in force.
    Activate,
}

/// Where a successor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    /// None prepared.
    None,
    /// A key and CSR, no certificate yet.
    Requested,
    /// Certified, with this validity.
    Certified(Validity),
}

/// The step due at `now` for an `active` CA and its `successor`.
pub fn rotation_step(active: Validity, successor: Successor, now: OffsetDateTime) -> RotationStep {
    match successor {
        Successor::None if now >= active.prepare_at() => RotationStep::Prepare,
        Successor::None => RotationStep::Wait,
        Successor::Requested => RotationStep::AwaitCertificate,
        Successor::Certified(_) if now >= active.activate_at() => RotationStep::Activate,
        Successor::Certified(_) => RotationStep::Wait,
    }
}

/// Why a CA may not be put in force, or may not be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The CA's lifetime is below [`CA_LIFETIME_PER_SVID_TTL`] × the longest SVID TTL.
    #[error(
        "a CA lifetime of {ca_seconds}s is too short for SVIDs of up to {svid_seconds}s: it \
         must be at least {CA_LIFETIME_PER_SVID_TTL}x the longest SVID TTL, so that a CA \
         rotated with a sixth of its life left still covers a full-length SVID; lower \
         max_svid_ttl or issue a longer-lived CA"
    )]
    TooShortForSvids {
        /// The CA lifetime, seconds.
        ca_seconds: i64,
        /// The longest SVID TTL, seconds.
        svid_seconds: i64,
    },
    /// The successor is not valid yet or any more.
    #[error("the new CA is not valid now (valid {not_before} to {not_after})")]
    NotValidNow {
        /// Its notBefore.
        not_before: OffsetDateTime,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// The successor would expire no later than the CA it replaces.
    #[error(
        "the new CA expires at {successor_not_after}, not after the active one ({active_not_after}): \
         activating it would shorten the site's offline budget"
    )]
    DoesNotOutliveActive {
        /// The successor's notAfter.
        successor_not_after: OffsetDateTime,
        /// The active CA's notAfter.
        active_not_after: OffsetDateTime,
    },
    /// The successor was issued for less than [`CA_LIFETIME_PER_SVID_TTL`] × the longest SVID
    /// TTL: a short-lived CA (an issuer near its own end can only sign short ones).
    #[error(
        "the new CA was issued for {lifetime_seconds}s, less than {CA_LIFETIME_PER_SVID_TTL}x \
         the longest SVID TTL ({svid_seconds}s): it is too short-lived to put in force"
    )]
    ShortLived {
        /// Its whole lifetime, seconds.
        lifetime_seconds: i64,
        /// The longest SVID TTL, seconds.
        svid_seconds: i64,
    },
    /// While the CA in force is still valid, the successor is already down to the last sixth
    /// of its own life: it would need replacing at once.
    #[error(
        "the new CA has {remaining_seconds}s left, less than a sixth of its life: it is nearly \
         expired, and the CA in force is still valid"
    )]
    NearlyExpired {
        /// Its remaining life, seconds.
        remaining_seconds: i64,
    },
}

/// A CA lifetime must be at least [`CA_LIFETIME_PER_SVID_TTL`] × `max_svid_ttl`.
pub fn check_ca_lifetime(
    ca_lifetime: Duration,
    max_svid_ttl: Duration,
) -> Result<(), LifecycleError> {
    if ca_lifetime >= max_svid_ttl * CA_LIFETIME_PER_SVID_TTL {
        return Ok(());
    }
    Err(LifecycleError::TooShortForSvids {
        ca_seconds: ca_lifetime.whole_seconds(),
        svid_seconds: max_svid_ttl.whole_seconds(),
    })
}

/// May `successor` replace `active` at `now`? It must be valid now, expire after `active`,
/// have been issued for at least [`CA_LIFETIME_PER_SVID_TTL`] × `max_svid_ttl` (never a
/// short-lived CA), and, while `active` is still valid, not be down to the last sixth of its
/// own life (never a nearly expired one). Once `active` has expired any fit successor is
/// better than failing closed.
pub fn check_activation(
    successor: Validity,
    active: Validity,
    max_svid_ttl: Duration,
    now: OffsetDateTime,
) -> Result<(), LifecycleError> {
    if !successor.contains(now) {
        return Err(LifecycleError::NotValidNow {
            not_before: successor.not_before,
            not_after: successor.not_after,
        });
    }
    if successor.not_after <= active.not_after {
        return Err(LifecycleError::DoesNotOutliveActive {
            successor_not_after: successor.not_after,
            active_not_after: active.not_after,
        });
    }
    if successor.lifetime() < max_svid_ttl * CA_LIFETIME_PER_SVID_TTL {
        return Err(LifecycleError::ShortLived {
            lifetime_seconds: successor.lifetime().whole_seconds(),
            svid_seconds: max_svid_ttl.whole_seconds(),
        });
    }
    let remaining = successor.remaining(now);
    if now <= active.not_after && remaining < successor.lifetime() / 6 {
        return Err(LifecycleError::NearlyExpired {
            remaining_seconds: remaining.whole_seconds(),
        });
    }
    Ok(())
}

/// The offline budget at `now`: how long the site can still issue without a new CA.
/// Zero once the CA has expired.
pub fn offline_budget(active: Validity, now: OffsetDateTime) -> Duration {
    active.remaining(now).max(Duration::ZERO)
}

/// The budget warning levels, as fractions of the active CA's lifetime still left: a warning
/// is logged on crossing each.
pub const BUDGET_WARNINGS: [(i32, i32); 3] = [(1, 4), (1, 10), (1, 30)];

/// The tightest warning level (as a fraction `(n, d)` of the lifetime left) crossed at `now`,
/// if any: `None` while more than a quarter of the lifetime is left.
pub fn budget_warning(active: Validity, now: OffsetDateTime) -> Option<(i32, i32)> {
    let left = active.remaining(now);
    BUDGET_WARNINGS
        .iter()
        .rev()
        .find(|(n, d)| left <= active.lifetime() * *n / *d)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn days(n: i64) -> Duration {
        Duration::days(n)
    }

    fn ca(from_day: i64, lifetime_days: i64) -> Validity {
        Validity {
            not_before: T0 + days(from_day),
            not_after: T0 + days(from_day + lifetime_days),
        }
    }

    #[test]
    fn prepares_at_half_life_and_activates_at_a_sixth_left() {
        let active = ca(0, 60);
        let new = ca(30, 60);
        let at = |d: f64| T0 + Duration::seconds_f64(d * 86_400.0);
        assert_eq!(
            rotation_step(active, Successor::None, at(29.9)),
            RotationStep::Wait
        );
        assert_eq!(
            rotation_step(active, Successor::None, at(30.0)),
            RotationStep::Prepare
        );
        assert_eq!(
            rotation_step(active, Successor::Requested, at(40.0)),
            RotationStep::AwaitCertificate
        );
        assert_eq!(
            rotation_step(active, Successor::Certified(new), at(49.9)),
            RotationStep::Wait
        );
        assert_eq!(
            rotation_step(active, Successor::Certified(new), at(50.0)),
            RotationStep::Activate
        );
    }

    #[test]
    fn ca_lifetime_must_cover_six_svid_lifetimes() {
        assert!(check_ca_lifetime(Duration::hours(6), Duration::hours(1)).is_ok());
        let refused = check_ca_lifetime(Duration::hours(5), Duration::hours(1)).unwrap_err();
        assert_eq!(
            refused,
            LifecycleError::TooShortForSvids {
                ca_seconds: 5 * 3600,
                svid_seconds: 3600
            }
        );
        assert!(refused.to_string().contains("at least 6x"), "{refused}");
    }

    #[test]
    fn activation_refuses_expired_shorter_and_short_lived_successors() {
        let active = ca(0, 45);
        let now = T0 + days(38);
        let ttl = Duration::hours(24);
        assert!(check_activation(ca(20, 45), active, ttl, now).is_ok());
        assert!(matches!(
            check_activation(ca(39, 45), active, ttl, now),
            Err(LifecycleError::NotValidNow { .. })
        ));
        assert!(matches!(
            check_activation(ca(-10, 50), active, ttl, now),
            Err(LifecycleError::DoesNotOutliveActive { .. })
        ));
        // Issued for 17 days: with 48h SVIDs, 12 days would do; with 72h, 18 are required.
        assert_eq!(
            check_activation(ca(30, 17), active, Duration::hours(72), now),
            Err(LifecycleError::ShortLived {
                lifetime_seconds: 17 * 86_400,
                svid_seconds: 3 * 86_400
            })
        );
        assert!(check_activation(ca(30, 17), active, Duration::hours(48), now).is_ok());
        // 60 days, 2 left while the CA in force is still valid: nearly expired. Once the CA in
        // force has expired, better than failing closed.
        assert_eq!(
            check_activation(ca(-20, 60), ca(-10, 49), ttl, now),
            Err(LifecycleError::NearlyExpired {
                remaining_seconds: 2 * 86_400
            })
        );
        assert!(check_activation(ca(-20, 60), ca(-50, 87), ttl, now).is_ok());
        assert!(check_activation(ca(-20, 60), ca(-50, 80), ttl, now).is_ok());
    }

    #[test]
    fn budget_and_its_warnings() {
        let active = ca(0, 40);
        assert_eq!(offline_budget(active, T0 + days(10)), days(30));
        assert_eq!(offline_budget(active, T0 + days(41)), Duration::ZERO);
        assert_eq!(budget_warning(active, T0 + days(29)), None);
        assert_eq!(budget_warning(active, T0 + days(30)), Some((1, 4)));
        assert_eq!(budget_warning(active, T0 + days(36)), Some((1, 10)));
        assert_eq!(budget_warning(active, T0 + days(39)), Some((1, 30)));
        assert_eq!(budget_warning(active, T0 + days(41)), Some((1, 30)));
    }
}
