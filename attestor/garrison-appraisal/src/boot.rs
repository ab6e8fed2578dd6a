//! What a measured-boot event log establishes, computed once per distinct (log, quoted PCRs)
//! pair and shared.
//!
//! Replaying a log against the quoted PCRs and extracting its boot claims is a pure function
//! of the log bytes and the quoted PCR values, and so is the policy input built from them. A
//! fleet of identical machines sends identical logs (and, booted the same way, quotes the same
//! PCR values), so after the first node the attestor only hashes the log. The key is a SHA-256
//! over both inputs, so a cached result is only ever reused for exactly the bytes it was
//! computed from. Refusals (a log that does not parse or does not replay) are never cached.
//! The cache is bounded: at most `capacity` entries, oldest evicted first. It is memoisation
//! only (a result is the same with or without it); a caller without one, such as an
//! auditor's replay, passes [`BootCache::none`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use garrison_eventlog::{BootClaims, EventLog, ReplayReport};
use garrison_evidence::PcrValues;
use garrison_policy::{InputSection, PcrsSection};
use ring::digest::{Context, SHA256, digest};
use serde_json::Value as Json;

use crate::refusal::{Reason, Refusal};

/// Largest policy-input section built from one log (bytes of JSON, lower bound). Logs are
/// already bounded by `limits::MAX_EVENT_LOG`; this bounds what the claims expand to.
const MAX_SECTION_BYTES: usize = 1024 * 1024;

/// The appraisal of one event log against one set of quoted PCR values.
#[derive(Debug)]
pub struct AppraisedBoot {
    /// `input.boot`: the claims of the PCRs that replayed.
    pub boot: InputSection,
    /// `input.pcrs`: `{bank: {index: hex}}` of the quoted values.
    pub pcrs: InputSection,
    /// Set once a committed log record carried the log's bytes: later records need only
    /// refer to them by digest. The host's bookkeeping, kept here so that it lives exactly as
    /// long as the cached appraisal; nothing in this crate reads it.
    log_stored: AtomicBool,
}

impl AppraisedBoot {
    /// True once the log's bytes are known to be committed to the attestation log.
    pub fn log_stored(&self) -> bool {
        self.log_stored.load(Ordering::Acquire)
    }

    /// Call after a record that carried the log's bytes was committed.
    pub fn mark_log_stored(&self) {
        self.log_stored.store(true, Ordering::Release);
    }
}

/// Bounded map from (log digest, PCR values) to their appraisal.
pub struct BootCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<[u8; 32], Arc<AppraisedBoot>>,
    order: VecDeque<[u8; 32]>,
    hits: u64,
    misses: u64,
}

impl BootCache {
    /// A cache of at most `capacity` appraisals (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// No cache: every appraisal is computed.
    pub fn none() -> Self {
        Self::new(0)
    }

    /// The appraisal of `event_log` against `pcrs`: from the cache, or computed (and cached
    /// when it succeeds).
    /// `log_digest` is [`sha256`] of `event_log`.
    pub fn appraise(
        &self,
        event_log: &[u8],
        log_digest: [u8; 32],
        pcrs: &PcrValues,
    ) -> Result<Arc<AppraisedBoot>, Refusal> {
        let key = cache_key(&log_digest, pcrs);
        if let Some(found) = self.lookup(&key) {
            return Ok(found);
        }
        let claims = boot_claims(event_log, pcrs)?;
        let appraised = Arc::new(AppraisedBoot {
            boot: section(&serde_json::to_value(&claims).unwrap_or(Json::Null))?,
            pcrs: section(&pcrs_json(pcrs))?,
            log_stored: AtomicBool::new(false),
        });
        self.insert(key, Arc::clone(&appraised));
        Ok(appraised)
    }

    /// (hits, misses) so far.
    #[cfg(test)]
    fn stats(&self) -> (u64, u64) {
        self.inner
            .lock()
            .map(|e| (e.hits, e.misses))
            .unwrap_or_default()
    }

    fn lookup(&self, key: &[u8; 32]) -> Option<Arc<AppraisedBoot>> {
        let mut entries = self.inner.lock().ok()?;
        let found = entries.map.get(key).cloned();
        if found.is_some() {
            entries.hits = entries.hits.saturating_add(1);
        } else {
            entries.misses = entries.misses.saturating_add(1);
        }
        found
    }

    fn insert(&self, key: [u8; 32], value: Arc<AppraisedBoot>) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.inner.lock() else {
            return;
        };
        if entries.map.insert(key, value).is_some() {
            return;
        }
        entries.order.push_back(key);
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.map.remove(&oldest);
            }
        }
    }
}

/// SHA-256 of `bytes` (an event log's digest: its cache key part and its evidence key).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// SHA-256 over a domain tag, the log digest and every quoted (bank, index, value), each
/// length-prefixed so that no two different inputs share an encoding.
fn cache_key(log_digest: &[u8; 32], pcrs: &PcrValues) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"garrison boot appraisal v1\0");
    ctx.update(log_digest);
    for (alg, index, value) in pcrs.iter() {
        ctx.update(&alg.tpm_alg_id().to_be_bytes());
        ctx.update(&index.to_be_bytes());
        ctx.update(&u64::try_from(value.len()).unwrap_or(u64::MAX).to_be_bytes());
        ctx.update(value);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn section(json: &Json) -> Result<InputSection, Refusal> {
    InputSection::from_json(json, MAX_SECTION_BYTES)
        .map_err(|e| Refusal::new(Reason::MalformedEvidence, format!("policy input: {e}")))
}

/// Replay the log against the quoted PCRs; claims only from PCRs that replay. An empty log
/// (a node without one) gives no claims, which policy sees as unknown boot state.
pub(crate) fn boot_claims(event_log: &[u8], pcrs: &PcrValues) -> Result<BootClaims, Refusal> {
    if event_log.is_empty() {
        return Ok(BootClaims::default());
    }
    let log = EventLog::parse(event_log)
        .map_err(|e| Refusal::new(Reason::MalformedEvidence, format!("event log: {e}")))?;
    let mut quoted = garrison_eventlog::PcrValues::new();
    for (alg, index, value) in pcrs.iter() {
        quoted
            .insert(alg, index, value.to_vec())
            .map_err(|e| Refusal::new(Reason::MalformedEvidence, e.to_string()))?;
    }
    let report = ReplayReport::compare(&log, &quoted);
    // PCRs the log never touches replay to their reset value; only a PCR the log extends and
    // the quote disagrees with is a lie.
    if !report.all_match() {
        return Err(Refusal::new(Reason::EventLogReplay, report.to_string()));
    }
    Ok(BootClaims::extract(&log, &report.verified))
}

/// `input.pcrs` of the quoted values, by the policy input's one producer.
pub(crate) fn pcrs_json(pcrs: &PcrValues) -> Json {
    PcrsSection::from_values(pcrs.iter()).to_json()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use garrison_evidence::HashAlg;

    fn pcrs(value: u8) -> PcrValues {
        let mut pcrs = PcrValues::new();
        pcrs.insert(HashAlg::Sha256, 0, vec![value; 32]).unwrap();
        pcrs
    }

    #[test]
    fn a_result_is_reused_only_for_the_same_log_and_pcrs() {
        let cache = BootCache::new(8);
        let first = cache.appraise(b"", sha256(b""), &pcrs(0)).unwrap();
        let again = cache.appraise(b"", sha256(b""), &pcrs(0)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = cache.appraise(b"", sha256(b""), &pcrs(1)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(cache.stats(), (1, 2));
    }

    #[test]
    fn refusals_are_not_cached_and_capacity_is_kept() {
        let cache = BootCache::new(2);
        for _ in 0..2 {
            let err = cache
                .appraise(b"not an event log", sha256(b"not an event log"), &pcrs(0))
                .unwrap_err();
            assert_eq!(err.reason, Reason::MalformedEvidence);
        }
        assert_eq!(cache.stats(), (0, 2));
        for v in 0..5 {
            cache.appraise(b"", sha256(b""), &pcrs(v)).unwrap();
        }
        let entries = cache.inner.lock().unwrap();
        assert_eq!(entries.map.len(), 2);
        assert_eq!(entries.order.len(), 2);
    }
}
