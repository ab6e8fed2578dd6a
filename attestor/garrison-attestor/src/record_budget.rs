//! How many records of *unproven* refusals the attestation log takes: refusals that came
//! before the sender proved anything (see `Proof` in `attestor.rs`), which anyone who can
//! open a TLS connection can cause.
//!
//! Each such record is small (a digest and a size stand in for the request, see
//! `UnprovenRequest`), and their number is bounded twice: per peer (an IPv4 address, an IPv6
//! /64, or "unknown") and for the whole site, each a token bucket refilled by the injected
//! clock. A refusal whose record does not fit is still refused; it is counted, and
//! [`RecordBudget::take_unrecorded`] hands the counts to a periodic summary record, so an
//! operator still sees that (and from where) requests were refused. Memory is bounded too: at
//! most [`BudgetLimits::max_peers`] peers are tracked; when the table is full, peers whose
//! budget is untouched are forgotten (they lose nothing), and new peers beyond that share one
//! overflow bucket.
//!
//! The log's growth from unproven requests is therefore at most `site_burst` records plus one
//! per `site_every`, each under about a kilobyte, however many peers send however much.
//!
//! Refusals of senders who *did* prove something (they hold a TPM whose EK chains to a
//! trusted manufacturer, or a current SVID) keep their full evidence, event log included. A
//! commodity machine's TPM can do that without ever being admitted, so those records have a
//! budget of their own ([`RecordBudget::for_holders`]), keyed by the node (its EK) rather
//! than its address: generous enough that every refusal of a node with a real problem is
//! recorded, bounded so that one TPM cannot fill the log.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// The reason code of the summary record of refusals that were not recorded one by one.
pub const UNRECORDED_REFUSALS: &str = "unrecorded-refusals";

/// Budgets for records of unproven refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Records one peer may cause at once.
    pub per_peer_burst: u32,
    /// One more record per peer this often.
    pub per_peer_every: Duration,
    /// Records all peers together may cause at once.
    pub site_burst: u32,
    /// One more record for the site this often.
    pub site_every: Duration,
    /// Peers tracked one by one.
    pub max_peers: usize,
}

impl BudgetLimits {
    /// Budgets for refusals of proven senders, per node: 20 records per node at once, then
    /// one every 10 minutes (a node's records keep its event log, up to 768 KiB if it
    /// replays: at most about 110 MB a day from one TPM bent on filling the log); 10,000 for
    /// the site at once (every node of a large site refused by one policy change), then ten
    /// a second.
    pub fn holders() -> Self {
        BudgetLimits {
            per_peer_burst: 20,
            per_peer_every: Duration::minutes(10),
            site_burst: 10_000,
            site_every: Duration::milliseconds(100),
            max_peers: 4096,
        }
    }
}

impl Default for BudgetLimits {
    /// 10 records per peer at once, then one every 6 s (10 a minute); 100 for the site at
    /// once, then one a second (3,600 an hour, about 3 MB); 4,096 peers tracked (a few
    /// hundred KiB). A misconfigured agent's refusals are all recorded; a flood is not.
    fn default() -> Self {
        BudgetLimits {
            per_peer_burst: 10,
            per_peer_every: Duration::seconds(6),
            site_burst: 100,
            site_every: Duration::seconds(1),
            max_peers: 4096,
        }
    }
}

/// Who a budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKey {
    /// One IPv4 address.
    V4([u8; 4]),
    /// One IPv6 /64 (what one subscriber usually gets: any address in it is the same peer).
    V6([u8; 8]),
    /// The transport did not say.
    Unknown,
    /// A node, by the first 16 bytes of its EK hash (holders' budgets).
    Node([u8; 16]),
}

impl PeerKey {
    /// The key of a client address.
    pub fn of(peer: Option<SocketAddr>) -> Self {
        match peer.map(|p| p.ip().to_canonical()) {
            Some(IpAddr::V4(ip)) => PeerKey::V4(ip.octets()),
            Some(IpAddr::V6(ip)) => {
                let [a, b, c, d, e, f, g, h, ..] = ip.octets();
                PeerKey::V6([a, b, c, d, e, f, g, h])
            }
            None => PeerKey::Unknown,
        }
    }

    /// The key of a node (its id: the EK public-key SHA-256, hex); `None` if it is not hex.
    pub fn node(node_id: &str) -> Option<Self> {
        let bytes = hex::decode(node_id).ok()?;
        let prefix: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(PeerKey::Node(prefix))
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::V4(octets) => write!(f, "{}", std::net::Ipv4Addr::from(*octets)),
            PeerKey::V6(prefix) => {
                let mut octets = [0u8; 16];
                for (to, from) in octets.iter_mut().zip(prefix) {
                    *to = *from;
                }
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
            PeerKey::Unknown => f.write_str("unknown"),
            PeerKey::Node(prefix) => write!(f, "node {}", hex::encode(prefix)),
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    refilled: OffsetDateTime,
}

impl Bucket {
    fn full(burst: u32, now: OffsetDateTime) -> Self {
        Bucket {
            tokens: burst,
            refilled: now,
        }
    }

    /// Add one token per whole `every` since the last refill, up to `burst`. A clock that
    /// went backwards refills nothing and restarts the count from `now`.
    fn refill(&mut self, burst: u32, every: Duration, now: OffsetDateTime) {
        let elapsed = now - self.refilled;
        if elapsed.is_negative() || every <= Duration::ZERO {
            self.refilled = now;
            return;
        }
        let periods = elapsed.whole_milliseconds() / every.whole_milliseconds().max(1);
        let added = u32::try_from(periods).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(added).min(burst);
        if self.tokens == burst {
            self.refilled = now;
        } else {
            // Keep the part of a period already waited for.
            self.refilled += every * i32::try_from(periods).unwrap_or(i32::MAX);
        }
    }
}

/// Refusals that were not recorded one by one, since the last summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    /// How many.
    pub refusals: u64,
    /// Since when.
    pub since: OffsetDateTime,
    /// Up to [`SUMMARY_PEERS`] peers with the most, most first; the rest are in `refusals`.
    pub top_peers: Vec<(PeerKey, u64)>,
    /// How many distinct peers (those beyond the tracking table counted as one).
    pub peers: usize,
    /// Whose refusals these are ("before authentication", "of proven senders").
    pub senders: &'static str,
}

/// Peers named in a summary.
pub const SUMMARY_PEERS: usize = 16;

#[derive(Debug)]
struct State {
    peers: HashMap<PeerKey, Bucket>,
    overflow: Bucket,
    site: Bucket,
    /// Unrecorded refusals per peer since the last summary; peers beyond `max_peers` are
    /// counted under `None`.
    unrecorded: HashMap<Option<PeerKey>, u64>,
    unrecorded_since: OffsetDateTime,
    unrecorded_total: u64,
}

/// The budgets, shared by every request.
#[derive(Debug)]
pub struct RecordBudget {
    limits: BudgetLimits,
    senders: &'static str,
    state: Mutex<State>,
}

impl RecordBudget {
    /// Full budgets at `now`.
    pub fn new(limits: BudgetLimits, now: OffsetDateTime) -> Self {
        Self::labelled(limits, "before authentication", now)
    }

    /// Full budgets at `now` for refusals of proven senders, keyed with [`PeerKey::node`].
    pub fn for_holders(limits: BudgetLimits, now: OffsetDateTime) -> Self {
        Self::labelled(limits, "of TPM holders or current nodes", now)
    }

    fn labelled(limits: BudgetLimits, senders: &'static str, now: OffsetDateTime) -> Self {
        RecordBudget {
            limits,
            senders,
            state: Mutex::new(State {
                peers: HashMap::new(),
                overflow: Bucket::full(limits.per_peer_burst, now),
                site: Bucket::full(limits.site_burst, now),
                unrecorded: HashMap::new(),
                unrecorded_since: now,
                unrecorded_total: 0,
            }),
        }
    }

    /// May a refusal from `peer` be recorded now? If not, it is counted as unrecorded.
    pub fn admit(&self, peer: Option<SocketAddr>, now: OffsetDateTime) -> bool {
        self.admit_key(PeerKey::of(peer), now)
    }

    /// May a refusal from the sender `key` be recorded now? If not, it is counted.
    pub fn admit_key(&self, key: PeerKey, now: OffsetDateTime) -> bool {
        let l = self.limits;
        let mut guard = self.lock();
        let state = &mut *guard;
        state.site.refill(l.site_burst, l.site_every, now);
        let tracked = state.peers.contains_key(&key) || state.make_room(&l, now);
        let bucket = if tracked {
            state
                .peers
                .entry(key)
                .or_insert_with(|| Bucket::full(l.per_peer_burst, now))
        } else {
            &mut state.overflow
        };
        bucket.refill(l.per_peer_burst, l.per_peer_every, now);
        if bucket.tokens > 0 && state.site.tokens > 0 {
            bucket.tokens -= 1;
            state.site.tokens -= 1;
            return true;
        }
        let counted_as = if tracked || state.unrecorded.len() < l.max_peers {
            Some(key)
        } else {
            None
        };
        let count = state.unrecorded.entry(counted_as).or_insert(0);
        *count = count.saturating_add(1);
        state.unrecorded_total = state.unrecorded_total.saturating_add(1);
        false
    }

    /// The refusals not recorded since the last call (or since the start), if any; the
    /// count starts again from `now`.
    pub fn take_unrecorded(&self, now: OffsetDateTime) -> Option<Unrecorded> {
        let mut state = self.lock();
        let since = std::mem::replace(&mut state.unrecorded_since, now);
        let counts = std::mem::take(&mut state.unrecorded);
        if counts.is_empty() {
            return None;
        }
        let refusals = counts.values().fold(0u64, |sum, n| sum.saturating_add(*n));
        let peers = counts.len();
        let mut named: Vec<(PeerKey, u64)> = counts
            .into_iter()
            .filter_map(|(key, n)| key.map(|key| (key, n)))
            .collect();
        named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        named.truncate(SUMMARY_PEERS);
        Some(Unrecorded {
            refusals,
            since,
            top_peers: named,
            peers,
            senders: self.senders,
        })
    }

    /// Refusals not recorded one by one since the start.
    pub fn unrecorded_total(&self) -> u64 {
        self.lock().unrecorded_total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// True if a new peer can be tracked: there is room, or peers whose budget is full (who
    /// lose nothing by being forgotten) could be dropped to make some.
    fn make_room(&mut self, l: &BudgetLimits, now: OffsetDateTime) -> bool {
        if self.peers.len() < l.max_peers {
            return true;
        }
        self.peers.retain(|_, bucket| {
            bucket.refill(l.per_peer_burst, l.per_peer_every, now);
            bucket.tokens < l.per_peer_burst
        });
        self.peers.len() < l.max_peers
    }
}

impl fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refusal(s) {} from {} peer(s) not recorded one by one since {} (record budget spent)",
            self.refusals, self.senders, self.peers, self.since
        )?;
        for (i, (peer, n)) in self.top_peers.iter().enumerate() {
            write!(f, "{}{peer} {n}", if i == 0 { ": " } else { ", " })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(seconds)
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn limits() -> BudgetLimits {
        BudgetLimits {
            per_peer_burst: 3,
            per_peer_every: Duration::seconds(10),
            site_burst: 5,
            site_every: Duration::seconds(2),
            max_peers: 2,
        }
    }

    fn admitted(budget: &RecordBudget, from: &str, n: usize, now: OffsetDateTime) -> usize {
        (0..n).filter(|_| budget.admit(peer(from), now)).count()
    }

    #[test]
    fn one_peer_gets_its_burst_then_one_per_period() {
        let budget = RecordBudget::new(limits(), at(0));
        assert_eq!(admitted(&budget, "192.0.2.1:1000", 10, at(0)), 3);
        assert_eq!(admitted(&budget, "192.0.2.1:1001", 10, at(9)), 0);
        assert_eq!(admitted(&budget, "192.0.2.1:1002", 10, at(10)), 1);
        assert_eq!(admitted(&budget, "192.0.2.1:1003", 10, at(1_000)), 3);
        assert_eq!(budget.unrecorded_total(), 7 + 10 + 9 + 7);
        let summary = budget.take_unrecorded(at(1_000)).unwrap();
        assert_eq!(summary.refusals, 33);
        assert_eq!(summary.top_peers, vec![(PeerKey::V4([192, 0, 2, 1]), 33)]);
        assert!(summary.to_string().contains("192.0.2.1 33"), "{summary}");
        assert_eq!(budget.take_unrecorded(at(1_001)), None);
    }

    #[test]
    fn the_site_budget_bounds_all_peers_together() {
        let budget = RecordBudget::new(
            BudgetLimits {
                max_peers: 100,
                ..limits()
            },
            at(0),
        );
        let recorded: usize = (0..50)
            .map(|i| admitted(&budget, &format!("198.51.100.{i}:1"), 3, at(0)))
            .sum();
        assert_eq!(recorded, 5, "site burst");
        // One more every 2 s for the site, whoever asks.
        let recorded: usize = (0..50)
            .map(|i| admitted(&budget, &format!("198.51.100.{i}:1"), 3, at(4)))
            .sum();
        assert_eq!(recorded, 2);
        let summary = budget.take_unrecorded(at(4)).unwrap();
        assert_eq!(summary.refusals, 300 - 7);
        assert_eq!(summary.peers, 50);
        assert_eq!(summary.top_peers.len(), SUMMARY_PEERS);
    }

    #[test]
    fn memory_is_bounded_and_extra_peers_share_one_bucket() {
        let budget = RecordBudget::new(limits(), at(0));
        assert_eq!(admitted(&budget, "192.0.2.1:1", 1, at(0)), 1);
        assert_eq!(admitted(&budget, "192.0.2.2:1", 1, at(0)), 1);
        // The table holds two peers, neither with a full budget: the others share one.
        assert_eq!(admitted(&budget, "192.0.2.3:1", 5, at(0)), 3);
        assert_eq!(admitted(&budget, "192.0.2.4:1", 5, at(0)), 0);
        assert_eq!(budget.lock().peers.len(), 2);
        // Once a tracked peer's budget is full again it can be forgotten for a new one.
        assert_eq!(admitted(&budget, "192.0.2.5:1", 1, at(100)), 1);
        assert!(
            budget
                .lock()
                .peers
                .contains_key(&PeerKey::V4([192, 0, 2, 5]))
        );
        assert!(budget.lock().peers.len() <= 2);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_peer_and_mapped_ipv4_is_ipv4() {
        let budget = RecordBudget::new(limits(), at(0));
        let recorded = (0..6)
            .filter(|i| budget.admit(peer(&format!("[2001:db8:1:2::{i}]:443")), at(0)))
            .count();
        assert_eq!(recorded, 3);
        assert_eq!(
            PeerKey::of(peer("[::ffff:192.0.2.7]:1")),
            PeerKey::V4([192, 0, 2, 7])
        );
        assert_eq!(
            PeerKey::of(peer("[2001:db8:1:2::9]:1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(PeerKey::of(None).to_string(), "unknown");
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let budget = RecordBudget::new(limits(), at(100));
        assert_eq!(admitted(&budget, "192.0.2.1:1", 5, at(100)), 3);
        assert_eq!(admitted(&budget, "192.0.2.1:1", 5, at(0)), 0);
        assert_eq!(admitted(&budget, "192.0.2.1:1", 5, at(9)), 0);
        assert_eq!(admitted(&budget, "192.0.2.1:1", 5, at(10)), 1);
    }
}
