//! Outstanding challenges: single-use, expiring, bounded in number.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::refusal::{Reason, Refusal};

/// An opaque challenge handle (16 random bytes).
pub type ChallengeId = [u8; 16];

/// A challenge waiting for its answer, with whatever the answer will be checked against.
#[derive(Debug)]
pub struct Pending<T> {
    /// When it stops being answerable.
    pub expires_at: OffsetDateTime,
    /// What Begin established (identities, secret, nonce, selection).
    pub state: T,
}

/// Challenges by id. `take` removes, so a challenge can be answered once at most.
#[derive(Debug)]
pub struct ChallengeStore<T> {
    pending: Mutex<HashMap<ChallengeId, Pending<T>>>,
    capacity: usize,
}

impl<T> ChallengeStore<T> {
    /// A store holding at most `capacity` outstanding challenges.
    pub fn new(capacity: usize) -> Self {
        ChallengeStore {
            pending: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Remember a challenge. When full, expired challenges are dropped first; if still full,
    /// the request is shed (the client retries later) rather than growing without bound.
    pub fn insert(
        &self,
        id: ChallengeId,
        pending: Pending<T>,
        now: OffsetDateTime,
    ) -> Result<(), Refusal> {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, p| p.expires_at > now);
        }
        if map.len() >= self.capacity {
            return Err(Refusal::new(
                Reason::Overloaded,
                format!("{} challenges outstanding", map.len()),
            ));
        }
        map.insert(id, pending);
        Ok(())
    }

    /// Take a challenge for answering: unknown, used and expired ones are refused.
    pub fn take(&self, id: &[u8], now: OffsetDateTime) -> Result<T, Refusal> {
        let key: ChallengeId = id
            .try_into()
            .map_err(|_| Refusal::new(Reason::ChallengeUnknown, "challenge id is not 16 bytes"))?;
        let pending = self.lock().remove(&key).ok_or_else(|| {
            Refusal::new(
                Reason::ChallengeUnknown,
                "no such challenge (never issued or already used)",
            )
        })?;
        if now > pending.expires_at {
            return Err(Refusal::new(
                Reason::ChallengeExpired,
                format!("challenge expired at {}", pending.expires_at),
            ));
        }
        Ok(pending.state)
    }

    /// Drop expired challenges; returns how many remain.
    pub fn purge_expired(&self, now: OffsetDateTime) -> usize {
        let mut map = self.lock();
        map.retain(|_, p| p.expires_at > now);
        map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChallengeId, Pending<T>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(s)
    }

    #[test]
    fn single_use_and_expiry() {
        let store = ChallengeStore::new(10);
        store
            .insert(
                [1; 16],
                Pending {
                    expires_at: at(60),
                    state: "a",
                },
                at(0),
            )
            .unwrap();
        store
            .insert(
                [2; 16],
                Pending {
                    expires_at: at(60),
                    state: "b",
                },
                at(0),
            )
            .unwrap();
        assert_eq!(store.take(&[1; 16], at(10)).unwrap(), "a");
        assert_eq!(
            store.take(&[1; 16], at(10)).unwrap_err().reason,
            Reason::ChallengeUnknown
        );
        assert_eq!(
            store.take(&[2; 16], at(61)).unwrap_err().reason,
            Reason::ChallengeExpired
        );
        assert_eq!(
            store.take(&[2; 16], at(10)).unwrap_err().reason,
            Reason::ChallengeUnknown
        );
        assert_eq!(
            store.take(&[9; 3], at(10)).unwrap_err().reason,
            Reason::ChallengeUnknown
        );
    }

    #[test]
    fn bounded_with_expired_entries_reclaimed() {
        let store = ChallengeStore::new(2);
        store
            .insert(
                [1; 16],
                Pending {
                    expires_at: at(5),
                    state: 1,
                },
                at(0),
            )
            .unwrap();
        store
            .insert(
                [2; 16],
                Pending {
                    expires_at: at(60),
                    state: 2,
                },
                at(0),
            )
            .unwrap();
        let full = store.insert(
            [3; 16],
            Pending {
                expires_at: at(60),
                state: 3,
            },
            at(1),
        );
        assert_eq!(full.unwrap_err().reason, Reason::Overloaded);
        store
            .insert(
                [3; 16],
                Pending {
                    expires_at: at(60),
                    state: 3,
                },
                at(6),
            )
            .unwrap();
        assert_eq!(store.purge_expired(at(6)), 2);
    }
}
