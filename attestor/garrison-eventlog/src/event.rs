//! One measured-boot event and its type, as parsed from the log.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

use crate::HashAlg;

/// The event type field (TCG PC Client PFP, section 10.4.1).
///
/// Not covered by any digest: firmware vouches only for the digests, so the type is a hint
/// about how to read the data, never evidence by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

impl EventType {
    pub const PREBOOT_CERT: Self = Self(0x0);
    pub const POST_CODE: Self = Self(0x1);
    pub const UNUSED: Self = Self(0x2);
    pub const NO_ACTION: Self = Self(0x3);
    pub const SEPARATOR: Self = Self(0x4);
    pub const ACTION: Self = Self(0x5);
    pub const EVENT_TAG: Self = Self(0x6);
    pub const S_CRTM_CONTENTS: Self = Self(0x7);
    pub const S_CRTM_VERSION: Self = Self(0x8);
    pub const CPU_MICROCODE: Self = Self(0x9);
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0xA);
    pub const TABLE_OF_DEVICES: Self = Self(0xB);
    pub const COMPACT_HASH: Self = Self(0xC);
    pub const IPL: Self = Self(0xD);
    pub const IPL_PARTITION_DATA: Self = Self(0xE);
    pub const NONHOST_CODE: Self = Self(0xF);
    pub const NONHOST_CONFIG: Self = Self(0x10);
    pub const NONHOST_INFO: Self = Self(0x11);
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x12);
    pub const POST_CODE2: Self = Self(0x13);
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    pub const EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    pub const EFI_GPT_EVENT: Self = Self(0x8000_0006);
    pub const EFI_ACTION: Self = Self(0x8000_0007);
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    pub const EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000A);
    pub const EFI_HANDOFF_TABLES2: Self = Self(0x8000_000B);
    pub const EFI_VARIABLE_BOOT2: Self = Self(0x8000_000C);
    pub const EFI_GPT_EVENT2: Self = Self(0x8000_000D);
    pub const EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00E0);
    pub const EFI_SPDM_FIRMWARE_BLOB: Self = Self(0x8000_00E1);
    pub const EFI_SPDM_FIRMWARE_CONFIG: Self = Self(0x8000_00E2);

    const NAMES: [(EventType, &'static str); 37] = [
        (Self::PREBOOT_CERT, "EV_PREBOOT_CERT"),
        (Self::POST_CODE, "EV_POST_CODE"),
        (Self::UNUSED, "EV_UNUSED"),
        (Self::NO_ACTION, "EV_NO_ACTION"),
        (Self::SEPARATOR, "EV_SEPARATOR"),
        (Self::ACTION, "EV_ACTION"),
        (Self::EVENT_TAG, "EV_EVENT_TAG"),
        (Self::S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS"),
        (Self::S_CRTM_VERSION, "EV_S_CRTM_VERSION"),
        (Self::CPU_MICROCODE, "EV_CPU_MICROCODE"),
        (Self::PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS"),
        (Self::TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES"),
        (Self::COMPACT_HASH, "EV_COMPACT_HASH"),
        (Self::IPL, "EV_IPL"),
        (Self::IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA"),
        (Self::NONHOST_CODE, "EV_NONHOST_CODE"),
        (Self::NONHOST_CONFIG, "EV_NONHOST_CONFIG"),
        (Self::NONHOST_INFO, "EV_NONHOST_INFO"),
        (Self::OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS"),
        (Self::POST_CODE2, "EV_POST_CODE2"),
        (
            Self::EFI_VARIABLE_DRIVER_CONFIG,
            "EV_EFI_VARIABLE_DRIVER_CONFIG",
        ),
        (Self::EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"),
        (
            Self::EFI_BOOT_SERVICES_APPLICATION,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
        ),
        (
            Self::EFI_BOOT_SERVICES_DRIVER,
            "EV_EFI_BOOT_SERVICES_DRIVER",
        ),
        (
            Self::EFI_RUNTIME_SERVICES_DRIVER,
            "EV_EFI_RUNTIME_SERVICES_DRIVER",
        ),
        (Self::EFI_GPT_EVENT, "EV_EFI_GPT_EVENT"),
        (Self::EFI_ACTION, "EV_EFI_ACTION"),
        (
            Self::EFI_PLATFORM_FIRMWARE_BLOB,
            "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        ),
        (Self::EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES"),
        (
            Self::EFI_PLATFORM_FIRMWARE_BLOB2,
            "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        ),
        (Self::EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"),
        (Self::EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"),
        (Self::EFI_GPT_EVENT2, "EV_EFI_GPT_EVENT2"),
        (Self::EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT"),
        (Self::EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY"),
        (Self::EFI_SPDM_FIRMWARE_BLOB, "EV_EFI_SPDM_FIRMWARE_BLOB"),
        (
            Self::EFI_SPDM_FIRMWARE_CONFIG,
            "EV_EFI_SPDM_FIRMWARE_CONFIG",
        ),
    ];

    /// The spec name (`EV_...`), or `None` for a type the spec does not define.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(ty, _)| *ty == self)
            .map(|(_, name)| *name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "EV_UNKNOWN({:#010x})", self.0),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One digest of an event, in a bank Garrison can compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    pub alg: HashAlg,
    pub digest: Vec<u8>,
}

/// One event of the log (TCG_PCR_EVENT or TCG_PCR_EVENT2).
///
/// Only the digests are vouched for by the PCRs; `event_type` and `data` are whatever the log
/// says and must be checked against a digest before being believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log, counting the Spec ID header event as #0.
    pub index: usize,
    /// Byte offset of the event header in the log.
    pub offset: usize,
    pub pcr: u32,
    pub event_type: EventType,
    /// Digests in the banks Garrison computes; digests of other algorithms were skipped.
    pub digests: Vec<EventDigest>,
    pub data: Vec<u8>,
}

impl Event {
    /// This event's digest in `alg`'s bank, if it carries one.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == alg)
            .map(|d| d.digest.as_slice())
    }

    /// Whether replay extends a PCR with this event (everything but EV_NO_ACTION).
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::NO_ACTION
    }

    /// The data decoded as text, when it is printable UTF-8 or UTF-16LE (trailing NULs
    /// dropped). A display aid only: the text is not verified against any digest.
    pub fn text(&self) -> Option<String> {
        printable_text(&self.data)
    }
}

/// JSON view of an event for `--json` output.
#[derive(Serialize)]
struct EventJson {
    index: usize,
    offset: usize,
    pcr: u32,
    #[serde(rename = "type")]
    event_type: EventType,
    type_id: u32,
    digests: BTreeMap<&'static str, String>,
    data_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventJson {
            index: self.index,
            offset: self.offset,
            pcr: self.pcr,
            event_type: self.event_type,
            type_id: self.event_type.0,
            digests: self
                .digests
                .iter()
                .map(|d| (d.alg.name(), hex::encode(&d.digest)))
                .collect(),
            data_hex: hex::encode(&self.data),
            text: self.text(),
        }
        .serialize(serializer)
    }
}

/// `bytes` as text if it is printable UTF-8, or else printable ASCII encoded as UTF-16LE
/// (binary data too often decodes to "printable" UTF-16 otherwise).
pub(crate) fn printable_text(bytes: &[u8]) -> Option<String> {
    utf8_text(bytes).or_else(|| utf16_text(bytes).filter(|text| text.is_ascii()))
}

fn is_printable(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\t' || c == '\r')
}

fn utf8_text(bytes: &[u8]) -> Option<String> {
    let trimmed = trim_trailing(bytes, |b| *b == 0);
    let text = std::str::from_utf8(trimmed).ok()?;
    is_printable(text).then(|| text.to_owned())
}

/// UTF-16LE text up to the first NUL code unit (an odd trailing byte is ignored).
pub(crate) fn utf16_text(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| {
            u16::from_le_bytes([
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|unit| *unit != 0)
        .collect();
    let text = String::from_utf16(&units).ok()?;
    is_printable(&text).then_some(text)
}

fn trim_trailing(bytes: &[u8], drop: impl Fn(&u8) -> bool) -> &[u8] {
    let keep = bytes
        .iter()
        .rposition(|b| !drop(b))
        .map_or(0, |last| last + 1);
    bytes.get(..keep).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_types() {
        assert_eq!(EventType::SEPARATOR.to_string(), "EV_SEPARATOR");
        assert_eq!(
            EventType(0x8000_00E0).to_string(),
            "EV_EFI_VARIABLE_AUTHORITY"
        );
        assert_eq!(EventType(0x1234).to_string(), "EV_UNKNOWN(0x00001234)");
    }

    #[test]
    fn text_decoding() {
        assert_eq!(
            printable_text(b"grub_cmd: ls\0").as_deref(),
            Some("grub_cmd: ls")
        );
        assert_eq!(printable_text(b"a\0b\0\0\0").as_deref(), Some("ab"));
        assert_eq!(printable_text(&[0, 0, 0, 0]), None);
        assert_eq!(printable_text(&[0xff, 0xfe, 0x01]), None);
    }
}
