//! Parsing a whole log: format detection, the Spec ID header, and the event records.

use serde::Serialize;

use crate::event::{Event, EventDigest, EventType};
use crate::reader::Reader;
use crate::{EventLogError, HashAlg};

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
const SHA1_DIGEST_LEN: usize = 20;
/// The highest PCR index of a PC Client TPM.
pub const MAX_PCR_INDEX: u32 = 23;

/// Hard limits on untrusted input. Every allocation is checked against these and against the
/// bytes actually left in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted log. Real logs are tens of KiB; default 16 MiB.
    pub max_log_bytes: usize,
    /// Most events accepted. Real logs have hundreds; default 100 000.
    pub max_events: usize,
    /// Largest event data. The biggest real events (dbx, Windows boot config) are tens of
    /// KiB; default 1 MiB.
    pub max_event_data_bytes: usize,
    /// Most algorithms in the Spec ID header; default 16 (TPMs implement at most a handful).
    pub max_algorithms: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_log_bytes: 16 * 1024 * 1024,
            max_events: 100_000,
            max_event_data_bytes: 1024 * 1024,
            max_algorithms: 16,
        }
    }
}

/// Which record format the log uses, detected from its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// TCG_PCR_EVENT records with one SHA-1 digest each (TPM 1.2 style, older TPM 2.0
    /// firmware).
    Sha1,
    /// A TCG_PCR_EVENT carrying "Spec ID Event03", then TCG_PCR_EVENT2 records.
    CryptoAgile,
}

/// One `{algorithmId, digestSize}` entry of the Spec ID header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlgorithmDigestSize {
    pub alg_id: u16,
    pub digest_size: u16,
}

/// The TCG_EfiSpecIDEvent structure at the start of a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecIdHeader {
    pub platform_class: u32,
    pub spec_version_major: u8,
    pub spec_version_minor: u8,
    pub spec_errata: u8,
    pub uintn_size: u8,
    /// Every algorithm the log's events carry, including ones Garrison skips.
    pub algorithms: Vec<AlgorithmDigestSize>,
    #[serde(serialize_with = "serialize_hex")]
    pub vendor_info: Vec<u8>,
}

impl SpecIdHeader {
    /// The banks of this log that Garrison can compute, in header order.
    pub fn banks(&self) -> Vec<HashAlg> {
        self.algorithms
            .iter()
            .filter_map(|a| HashAlg::from_tpm_alg_id(a.alg_id))
            .collect()
    }
}

/// A parsed event log. Construct with [`EventLog::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLog {
    format: LogFormat,
    spec_id: Option<SpecIdHeader>,
    startup_locality: Option<u8>,
    events: Vec<Event>,
}

impl EventLog {
    /// Parse a log with the default [`Limits`].
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        Self::parse_with_limits(bytes, &Limits::default())
    }

    /// Parse a log, rejecting anything over `limits`.
    pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<Self, EventLogError> {
        if bytes.is_empty() {
            return Err(EventLogError::Empty);
        }
        if bytes.len() > limits.max_log_bytes {
            return Err(EventLogError::LogTooLarge {
                size: bytes.len(),
                limit: limits.max_log_bytes,
            });
        }
        let mut parser = Parser {
            reader: Reader::new(bytes),
            limits,
            events: Vec::new(),
            startup_locality: None,
        };
        let first = parser.sha1_event()?;
        let spec_id = spec_id_of(&first, limits)?;
        parser.push(first)?;
        match &spec_id {
            Some(header) => parser.agile_events(header)?,
            None => parser.sha1_events()?,
        }
        Ok(Self {
            format: if spec_id.is_some() {
                LogFormat::CryptoAgile
            } else {
                LogFormat::Sha1
            },
            spec_id,
            startup_locality: parser.startup_locality,
            events: parser.events,
        })
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// The Spec ID header of a crypto-agile log.
    pub fn spec_id(&self) -> Option<&SpecIdHeader> {
        self.spec_id.as_ref()
    }

    /// The locality from a StartupLocality event, if the log has one.
    pub fn startup_locality(&self) -> Option<u8> {
        self.startup_locality
    }

    /// Every event, including EV_NO_ACTION ones and the Spec ID header event (#0).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The banks this log can be replayed in.
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec_id {
            Some(header) => header.banks(),
            None => vec![HashAlg::Sha1],
        }
    }
}

struct Parser<'a, 'l> {
    reader: Reader<'a>,
    limits: &'l Limits,
    events: Vec<Event>,
    startup_locality: Option<u8>,
}

impl Parser<'_, '_> {
    fn sha1_events(&mut self) -> Result<(), EventLogError> {
        while !self.reader.is_empty() {
            let event = self.sha1_event()?;
            self.push(event)?;
        }
        Ok(())
    }

    fn agile_events(&mut self, header: &SpecIdHeader) -> Result<(), EventLogError> {
        while !self.reader.is_empty() {
            let event = self.agile_event(header)?;
            self.push(event)?;
        }
        Ok(())
    }

    /// A TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, eventSize, event.
    fn sha1_event(&mut self) -> Result<Event, EventLogError> {
        let offset = self.reader.offset();
        let pcr = self.reader.u32("pcrIndex")?;
        let event_type = EventType(self.reader.u32("eventType")?);
        let digest = self.reader.take(SHA1_DIGEST_LEN, "SHA-1 digest")?.to_vec();
        let data = self.event_data(offset)?;
        Ok(Event {
            index: self.events.len(),
            offset,
            pcr,
            event_type,
            digests: vec![EventDigest {
                alg: HashAlg::Sha1,
                digest,
            }],
            data,
        })
    }

    /// A TCG_PCR_EVENT2: pcrIndex, eventType, TPML_DIGEST_VALUES, eventSize, event.
    fn agile_event(&mut self, header: &SpecIdHeader) -> Result<Event, EventLogError> {
        let offset = self.reader.offset();
        let index = self.events.len();
        let pcr = self.reader.u32("pcrIndex")?;
        let event_type = EventType(self.reader.u32("eventType")?);
        let count = self.reader.u32("digest count")?;
        if usize::try_from(count).ok() != Some(header.algorithms.len()) {
            return Err(EventLogError::DigestCountMismatch {
                event_index: index,
                offset,
                expected: header.algorithms.len(),
                got: count,
            });
        }
        let mut seen: Vec<u16> = Vec::with_capacity(header.algorithms.len());
        let mut digests = Vec::with_capacity(header.algorithms.len());
        for _ in 0..count {
            let alg_id = self.reader.u16("hashAlg")?;
            let size = header
                .algorithms
                .iter()
                .find(|a| a.alg_id == alg_id)
                .map(|a| usize::from(a.digest_size))
                .ok_or(EventLogError::UnknownDigestAlgorithm {
                    event_index: index,
                    offset,
                    alg_id,
                })?;
            if seen.contains(&alg_id) {
                return Err(EventLogError::DuplicateDigestAlgorithm {
                    event_index: index,
                    offset,
                    alg_id,
                });
            }
            seen.push(alg_id);
            let digest = self.reader.take(size, "digest")?;
            // Algorithms we cannot compute are skipped by their header size and never replayed.
            if let Some(alg) = HashAlg::from_tpm_alg_id(alg_id) {
                digests.push(EventDigest {
                    alg,
                    digest: digest.to_vec(),
                });
            }
        }
        let data = self.event_data(offset)?;
        Ok(Event {
            index,
            offset,
            pcr,
            event_type,
            digests,
            data,
        })
    }

    /// eventSize and event, checked against the limit and the bytes left before copying.
    fn event_data(&mut self, event_offset: usize) -> Result<Vec<u8>, EventLogError> {
        let size = self.reader.u32("eventSize")?;
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        if len > self.limits.max_event_data_bytes {
            return Err(EventLogError::EventTooLarge {
                event_index: self.events.len(),
                offset: event_offset,
                size: u64::from(size),
                limit: self.limits.max_event_data_bytes,
            });
        }
        Ok(self.reader.take(len, "event data")?.to_vec())
    }

    /// Check an event that is complete, note StartupLocality, and keep it.
    fn push(&mut self, event: Event) -> Result<(), EventLogError> {
        if self.events.len() >= self.limits.max_events {
            return Err(EventLogError::TooManyEvents {
                limit: self.limits.max_events,
            });
        }
        if event.is_extended() && event.pcr > MAX_PCR_INDEX {
            return Err(EventLogError::PcrIndexOutOfRange {
                event_index: event.index,
                offset: event.offset,
                pcr: event.pcr,
            });
        }
        if let Some(locality) = self.startup_locality_of(&event)? {
            self.startup_locality = Some(locality);
        }
        self.events.push(event);
        Ok(())
    }

    /// The locality of a StartupLocality event (EV_NO_ACTION on PCR 0, PFP 10.4.5.3).
    fn startup_locality_of(&self, event: &Event) -> Result<Option<u8>, EventLogError> {
        let Some(rest) = event
            .data
            .strip_prefix(STARTUP_LOCALITY_SIGNATURE.as_slice())
        else {
            return Ok(None);
        };
        if event.event_type != EventType::NO_ACTION || event.pcr != 0 {
            return Ok(None);
        }
        let event_index = event.index;
        let [locality] = rest else {
            return Err(EventLogError::StartupLocalityMalformed {
                event_index,
                size: event.data.len(),
            });
        };
        if self.startup_locality.is_some() {
            return Err(EventLogError::StartupLocalityRepeated { event_index });
        }
        if self.events.iter().any(|e| e.pcr == 0 && e.is_extended()) {
            return Err(EventLogError::StartupLocalityAfterPcr0Extend { event_index });
        }
        Ok(Some(*locality))
    }
}

/// The Spec ID header, if `first` is the EV_NO_ACTION event that opens a crypto-agile log.
fn spec_id_of(first: &Event, limits: &Limits) -> Result<Option<SpecIdHeader>, EventLogError> {
    if first.event_type != EventType::NO_ACTION || !first.data.starts_with(SPEC_ID_SIGNATURE) {
        return Ok(None);
    }
    let mut reader = Reader::new(&first.data);
    reader.take(SPEC_ID_SIGNATURE.len(), "Spec ID signature")?;
    let platform_class = reader.u32("platformClass")?;
    let spec_version_minor = reader.u8("specVersionMinor")?;
    let spec_version_major = reader.u8("specVersionMajor")?;
    let spec_errata = reader.u8("specErrata")?;
    let uintn_size = reader.u8("uintnSize")?;
    if !matches!(uintn_size, 1 | 2) {
        return Err(EventLogError::SpecIdUintnSize { got: uintn_size });
    }
    let algorithms = spec_id_algorithms(&mut reader, limits)?;
    let vendor_len = reader.u8("vendorInfoSize")?;
    let vendor_info = reader.take(usize::from(vendor_len), "vendorInfo")?.to_vec();
    if !reader.is_empty() {
        return Err(EventLogError::SpecIdTrailingBytes {
            extra: reader.remaining(),
        });
    }
    Ok(Some(SpecIdHeader {
        platform_class,
        spec_version_major,
        spec_version_minor,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    }))
}

fn spec_id_algorithms(
    reader: &mut Reader<'_>,
    limits: &Limits,
) -> Result<Vec<AlgorithmDigestSize>, EventLogError> {
    let count = reader.u32("numberOfAlgorithms")?;
    if count == 0 {
        return Err(EventLogError::SpecIdNoAlgorithms);
    }
    let too_many = EventLogError::SpecIdTooManyAlgorithms {
        count,
        limit: limits.max_algorithms,
    };
    let count = usize::try_from(count).map_err(|_| too_many.clone())?;
    if count > limits.max_algorithms {
        return Err(too_many);
    }
    let mut algorithms: Vec<AlgorithmDigestSize> = Vec::with_capacity(count);
    for _ in 0..count {
        let alg_id = reader.u16("algorithmId")?;
        let digest_size = reader.u16("digestSize")?;
        if algorithms.iter().any(|a| a.alg_id == alg_id) {
            return Err(EventLogError::SpecIdDuplicateAlgorithm { alg_id });
        }
        if let Some(alg) = HashAlg::from_tpm_alg_id(alg_id)
            && alg.digest_len() != usize::from(digest_size)
        {
            {
                return Err(EventLogError::SpecIdDigestSizeMismatch {
                    alg,
                    expected: alg.digest_len(),
                    got: digest_size,
                });
            }
        }
        algorithms.push(AlgorithmDigestSize {
            alg_id,
            digest_size,
        });
    }
    Ok(algorithms)
}

fn serialize_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}
