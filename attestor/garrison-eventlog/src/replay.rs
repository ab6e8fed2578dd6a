//! Replaying a log into PCR values, and comparing them with quoted PCRs.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::log::MAX_PCR_INDEX;
use crate::{Event, EventLog, EventLogError, HashAlg};

/// PCR values computed from a log: bank → PCR index → value. Only PCRs that at least one
/// event extends are present; the others still hold their reset value
/// ([`ReplayedPcrs::reset_value`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayedPcrs {
    startup_locality: u8,
    #[serde(serialize_with = "serialize_banks")]
    banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
}

impl ReplayedPcrs {
    /// Extend every event that is not EV_NO_ACTION into its PCR, in every bank the log
    /// carries and Garrison computes.
    pub fn replay(log: &EventLog) -> Self {
        let startup_locality = log.startup_locality().unwrap_or(0);
        let mut banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>> = log
            .banks()
            .into_iter()
            .map(|alg| (alg, BTreeMap::new()))
            .collect();
        for event in log.events().iter().filter(|e| e.is_extended()) {
            for (alg, bank) in &mut banks {
                let Some(digest) = event.digest(*alg) else {
                    continue;
                };
                let value = bank
                    .entry(event.pcr)
                    .or_insert_with(|| reset_value(*alg, event.pcr, startup_locality));
                *value = alg.extend(value, digest);
            }
        }
        Self {
            startup_locality,
            banks,
        }
    }

    /// The replayed value of PCR `index` in `alg`'s bank, if an event extended it.
    pub fn value(&self, alg: HashAlg, index: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(&index).map(Vec::as_slice)
    }

    /// The value the PCR holds after this log: the replayed value, or the reset value when
    /// no event extended it. `None` if the log has no such bank.
    pub fn value_or_reset(&self, alg: HashAlg, index: u32) -> Option<Vec<u8>> {
        let bank = self.banks.get(&alg)?;
        Some(match bank.get(&index) {
            Some(value) => value.clone(),
            None => reset_value(alg, index, self.startup_locality),
        })
    }

    /// The banks replayed.
    pub fn banks(&self) -> impl Iterator<Item = HashAlg> + '_ {
        self.banks.keys().copied()
    }

    /// Every replayed `(bank, index, value)`, by bank then index.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32, &[u8])> + '_ {
        self.banks.iter().flat_map(|(alg, bank)| {
            bank.iter()
                .map(|(index, value)| (*alg, *index, value.as_slice()))
        })
    }
}

/// The value of a PCR at TPM startup: all zero, except PCR 0's last byte holding the
/// startup locality, and PCRs 17–22 (DRTM, reset only by a dynamic launch) all 0xFF.
pub fn reset_value(alg: HashAlg, index: u32, startup_locality: u8) -> Vec<u8> {
    let len = alg.digest_len();
    if (17..=22).contains(&index) {
        return vec![0xFF; len];
    }
    let mut value = vec![0u8; len];
    if index == 0
        && let Some(last) = value.last_mut()
    {
        *last = startup_locality;
    }
    value
}

/// PCR values as quoted by a TPM (already checked against the quote's PCR digest by the
/// caller). Build with [`PcrValues::insert`], which checks lengths and indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrValues {
    values: BTreeMap<(HashAlg, u32), Vec<u8>>,
}

impl PcrValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the quoted value of PCR `index` in `alg`'s bank.
    pub fn insert(
        &mut self,
        alg: HashAlg,
        index: u32,
        value: Vec<u8>,
    ) -> Result<(), EventLogError> {
        if index > MAX_PCR_INDEX {
            return Err(EventLogError::QuotedPcrIndexOutOfRange { pcr: index });
        }
        if value.len() != alg.digest_len() {
            return Err(EventLogError::QuotedDigestLength {
                alg,
                pcr: index,
                expected: alg.digest_len(),
                got: value.len(),
            });
        }
        self.values.insert((alg, index), value);
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32, &[u8])> + '_ {
        self.values
            .iter()
            .map(|((alg, index), value)| (*alg, *index, value.as_slice()))
    }
}

/// The `(bank, PCR)` pairs whose quoted value the log replays to exactly. Only events in
/// these PCRs may be believed ([`crate::BootClaims::extract`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifiedPcrs(BTreeSet<(HashAlg, u32)>);

impl VerifiedPcrs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, alg: HashAlg, index: u32) {
        self.0.insert((alg, index));
    }

    pub fn contains(&self, alg: HashAlg, index: u32) -> bool {
        self.0.contains(&(alg, index))
    }

    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32)> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<(HashAlg, u32)> for VerifiedPcrs {
    fn from_iter<I: IntoIterator<Item = (HashAlg, u32)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Where the quoted value of a diverging PCR sits in the log's sequence of replay states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogPrefix {
    /// The log has no digests in this bank.
    BankNotInLog,
    /// The quoted value equals the PCR's state after event `event_index` (or its reset
    /// value when `event_index` is `None`): the log has `extra_events` more events for this
    /// PCR than the TPM saw (e.g. events logged after the quote was taken).
    MatchesAfterEvent {
        event_index: Option<usize>,
        extra_events: usize,
    },
    /// No state of the replay equals the quoted value: events are missing from the log, or
    /// the log or quote was altered.
    NoPrefixMatches,
}

/// One PCR whose quoted value the log does not replay to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrDivergence {
    pub alg: HashAlg,
    pub pcr: u32,
    #[serde(serialize_with = "serialize_hex")]
    pub quoted: Vec<u8>,
    /// `None` when the log has no digests in this bank.
    #[serde(serialize_with = "serialize_opt_hex")]
    pub replayed: Option<Vec<u8>>,
    /// Indices of the events that extended this PCR in this bank, in log order.
    pub extended_by: Vec<usize>,
    pub prefix: LogPrefix,
}

impl std::fmt::Display for PcrDivergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PCR {} ({}) diverges: quoted {}",
            self.pcr,
            self.alg,
            hex::encode(&self.quoted)
        )?;
        match &self.replayed {
            Some(replayed) => write!(f, ", log replays to {}", hex::encode(replayed))?,
            None => return write!(f, ", but the log has no {} digests", self.alg),
        }
        write!(
            f,
            " from {} events {:?}; ",
            self.extended_by.len(),
            self.extended_by
        )?;
        match &self.prefix {
            LogPrefix::BankNotInLog => write!(f, "the log has no {} digests", self.alg),
            LogPrefix::MatchesAfterEvent { event_index: Some(index), extra_events } => write!(
                f,
                "the quoted value is the state after event #{index}: the log has {extra_events} extra events after event #{index}"
            ),
            LogPrefix::MatchesAfterEvent { event_index: None, extra_events } => write!(
                f,
                "the quoted value is the reset value: the TPM saw none of the log's {extra_events} events"
            ),
            LogPrefix::NoPrefixMatches => f.write_str(
                "no prefix of the log's events matches the quoted value (events missing, or log or quote altered)",
            ),
        }
    }
}

/// The outcome of comparing a log with quoted PCR values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Quoted PCRs the log replays to exactly.
    pub verified: VerifiedPcrs,
    /// Quoted PCRs the log does not replay to, in bank then index order.
    pub divergences: Vec<PcrDivergence>,
}

impl ReplayReport {
    /// Compare `log` with every quoted PCR in `quoted`.
    pub fn compare(log: &EventLog, quoted: &PcrValues) -> Self {
        let banks = log.banks();
        let startup_locality = log.startup_locality().unwrap_or(0);
        let mut report = Self::default();
        for (alg, pcr, value) in quoted.iter() {
            if !banks.contains(&alg) {
                report.divergences.push(PcrDivergence {
                    alg,
                    pcr,
                    quoted: value.to_vec(),
                    replayed: None,
                    extended_by: Vec::new(),
                    prefix: LogPrefix::BankNotInLog,
                });
                continue;
            }
            let events: Vec<&Event> = log
                .events()
                .iter()
                .filter(|e| e.is_extended() && e.pcr == pcr && e.digest(alg).is_some())
                .collect();
            match compare_one(alg, pcr, value, &events, startup_locality) {
                None => report.verified.insert(alg, pcr),
                Some(divergence) => report.divergences.push(divergence),
            }
        }
        report
    }

    /// Whether every quoted PCR replayed exactly.
    pub fn all_match(&self) -> bool {
        self.divergences.is_empty()
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.divergences.is_empty() {
            return write!(
                f,
                "all {} quoted PCRs match the event log",
                self.verified.0.len()
            );
        }
        for divergence in &self.divergences {
            writeln!(f, "{divergence}")?;
        }
        Ok(())
    }
}

/// Replay one PCR's events, remembering the first state equal to `quoted`.
fn compare_one(
    alg: HashAlg,
    pcr: u32,
    quoted: &[u8],
    events: &[&Event],
    locality: u8,
) -> Option<PcrDivergence> {
    let mut state = reset_value(alg, pcr, locality);
    let mut first_match: Option<Option<usize>> = (state == quoted).then_some(None);
    let mut matched_after = if first_match.is_some() { Some(0) } else { None };
    for (count, event) in events.iter().enumerate() {
        let digest = event.digest(alg).unwrap_or_default();
        state = alg.extend(&state, digest);
        if first_match.is_none() && state == quoted {
            first_match = Some(Some(event.index));
            matched_after = Some(count.saturating_add(1));
        }
    }
    if state == quoted {
        return None;
    }
    let prefix = match (first_match, matched_after) {
        (Some(event_index), Some(consumed)) => LogPrefix::MatchesAfterEvent {
            event_index,
            extra_events: events.len().saturating_sub(consumed),
        },
        _ => LogPrefix::NoPrefixMatches,
    };
    Some(PcrDivergence {
        alg,
        pcr,
        quoted: quoted.to_vec(),
        replayed: Some(state),
        extended_by: events.iter().map(|e| e.index).collect(),
        prefix,
    })
}

fn serialize_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

fn serialize_opt_hex<S: serde::Serializer>(
    bytes: &Option<Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_some(&hex::encode(bytes)),
        None => serializer.serialize_none(),
    }
}

fn serialize_banks<S: serde::Serializer>(
    banks: &BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(banks.len()))?;
    for (alg, bank) in banks {
        let values: BTreeMap<String, String> = bank
            .iter()
            .map(|(index, value)| (index.to_string(), hex::encode(value)))
            .collect();
        map.serialize_entry(alg.name(), &values)?;
    }
    map.end()
}
