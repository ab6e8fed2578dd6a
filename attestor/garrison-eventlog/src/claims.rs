//! Boot claims: facts about the boot that policy can rely on, taken only from events the
//! quoted PCRs vouch for.
//!
//! Two rules decide what is believed:
//! 1. An event counts only if its PCR is in [`VerifiedPcrs`] for a bank the event has a
//!    digest in (the strongest such bank is used: SHA-256, SHA-384, SHA-512, SM3, then SHA-1).
//!    Events in other PCRs are ignored entirely.
//! 2. Event data is believed only where the spec makes the digest a hash of that data, and
//!    `H(data) == digest` holds. Events of those types whose check fails are listed in
//!    [`BootClaims::unverifiable`] and contribute nothing else. Where the digest is a hash of
//!    something else (an image's Authenticode hash for EV_EFI_BOOT_SERVICES_APPLICATION and
//!    drivers), the digest is the claim and the data-derived text is in fields named
//!    `*_unverified`.

use serde::Serialize;

use crate::event::{Event, EventType, utf16_text};
use crate::replay::VerifiedPcrs;
use crate::uefi::{self, UefiVariable};
use crate::{EventLog, HashAlg};

/// Banks in the order claims prefer them: SHA-1 last, since its collisions are practical.
const BANK_PREFERENCE: [HashAlg; 5] = [
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
    HashAlg::Sm3_256,
    HashAlg::Sha1,
];
const GRUB_KERNEL_CMDLINE: &[u8] = b"kernel_cmdline: ";

/// What a verified event log says about the boot. Serialized as the `boot` object of the
/// admission policy input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootClaims {
    /// The SecureBoot variable as measured into PCR 7: `Some(true)` for 1, `Some(false)` for
    /// 0 or an empty variable, `None` when no verified, digest-checked measurement exists.
    pub secure_boot: Option<bool>,
    /// Other EV_EFI_VARIABLE_DRIVER_CONFIG variables (PK, KEK, db, dbx, ...).
    pub secure_boot_variables: Vec<SecureBootVariable>,
    /// EV_EFI_VARIABLE_AUTHORITY entries: what vouched for each loaded image.
    pub authorities: Vec<Authority>,
    /// EV_SEPARATOR events, in log order.
    pub separators: Vec<Separator>,
    /// PCRs 0–7 that are verified but have no verified separator.
    pub separators_missing: Vec<u32>,
    /// EV_EFI_BOOT_SERVICES_APPLICATION loads (boot loaders, shim, kernels via EFI stub).
    pub boot_applications: Vec<LoadedImage>,
    /// EV_EFI_BOOT_SERVICES_DRIVER / EV_EFI_RUNTIME_SERVICES_DRIVER loads (option ROMs,
    /// drivers).
    pub drivers: Vec<LoadedImage>,
    /// Kernel command lines measured by GRUB (`kernel_cmdline:` in PCR 8) or systemd-boot /
    /// systemd-stub (UTF-16 EV_IPL in PCR 8 or 12).
    pub kernel_command_lines: Vec<KernelCommandLine>,
    /// EV_EFI_ACTION and EV_ACTION strings.
    pub actions: Vec<Action>,
    /// Whether firmware reported "UEFI Debug Mode"; `None` when PCR 7 is not verified.
    pub debug_mode: Option<bool>,
    /// Whether firmware reported "DMA Protection Disabled"; `None` when PCR 7 is not verified.
    pub dma_protection_disabled: Option<bool>,
    /// Events in verified PCRs whose data should hash to their digest but does not.
    pub unverifiable: Vec<UnverifiableEvent>,
}

/// A UEFI variable measured with EV_EFI_VARIABLE_DRIVER_CONFIG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecureBootVariable {
    pub event_index: usize,
    pub name: String,
    pub vendor_guid: String,
    /// The bank whose digest was checked, and that digest (hex).
    pub bank: HashAlg,
    pub digest: String,
    /// SHA-256 of the variable's contents (hex), comparable across banks and machines.
    pub data_sha256: String,
    pub data_len: usize,
}

/// An EV_EFI_VARIABLE_AUTHORITY entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authority {
    pub event_index: usize,
    /// The variable the authority came from (`db`, `MokList`, `Shim`, `SbatLevel`, ...).
    pub variable: String,
    pub vendor_guid: String,
    pub data_sha256: String,
    /// The X.509 certificate in the entry, when it holds one.
    pub certificate: Option<CertificateSummary>,
}

/// An X.509 certificate named by its SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateSummary {
    /// SHA-256 of the certificate DER (hex).
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
}

/// What an EV_SEPARATOR says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeparatorKind {
    /// Data 0x00000000: the normal end of pre-OS measurements.
    Normal,
    /// Data 0xFFFFFFFF: firmware signalled an error.
    Error,
    /// Any other (digest-checked) data, e.g. Windows' "WBCL" in PCRs 12–14.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Separator {
    pub event_index: usize,
    pub pcr: u32,
    pub kind: SeparatorKind,
}

/// A loaded image. The digest is the image's Authenticode hash as extended, and is what the
/// PCR vouches for; the device path comes from event data no digest covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedImage {
    pub event_index: usize,
    pub pcr: u32,
    pub event_type: EventType,
    pub bank: HashAlg,
    pub digest: String,
    /// The UEFI device path from the event data, as text. Not covered by any digest.
    pub device_path_unverified: Option<String>,
}

/// Which loader measured a kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLineSource {
    Grub,
    SystemdBoot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelCommandLine {
    pub event_index: usize,
    pub pcr: u32,
    pub source: CommandLineSource,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub event_index: usize,
    pub pcr: u32,
    pub text: String,
}

/// An event whose data failed its digest check; none of its data is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnverifiableEvent {
    pub event_index: usize,
    pub pcr: u32,
    pub event_type: EventType,
    pub reason: &'static str,
}

impl BootClaims {
    /// Claims from the events of `log` whose PCR replayed to its quoted value in some bank.
    pub fn extract(log: &EventLog, verified: &VerifiedPcrs) -> Self {
        let mut claims = Self::default();
        let pcr7_verified = HashAlg::ALL.iter().any(|alg| verified.contains(*alg, 7));
        if pcr7_verified {
            claims.debug_mode = Some(false);
            claims.dma_protection_disabled = Some(false);
        }
        for event in log.events().iter().filter(|e| e.is_extended()) {
            if let Some((bank, digest)) = trusted_digest(event, verified) {
                claims.add_event(event, bank, digest);
            }
        }
        claims.separators_missing = (0..=7)
            .filter(|pcr| HashAlg::ALL.iter().any(|alg| verified.contains(*alg, *pcr)))
            .filter(|pcr| !claims.separators.iter().any(|s| s.pcr == *pcr))
            .collect();
        claims
    }

    fn add_event(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        match event.event_type {
            EventType::EFI_VARIABLE_DRIVER_CONFIG => self.add_driver_config(event, bank, digest),
            EventType::EFI_VARIABLE_AUTHORITY => self.add_authority(event, bank, digest),
            EventType::SEPARATOR => self.add_separator(event, bank, digest),
            EventType::EFI_BOOT_SERVICES_APPLICATION => {
                self.boot_applications
                    .push(loaded_image(event, bank, digest));
            }
            EventType::EFI_BOOT_SERVICES_DRIVER | EventType::EFI_RUNTIME_SERVICES_DRIVER => {
                self.drivers.push(loaded_image(event, bank, digest));
            }
            EventType::IPL => self.add_ipl(event, bank, digest),
            EventType::EFI_ACTION | EventType::ACTION => self.add_action(event, bank, digest),
            _ => {}
        }
    }

    fn unverifiable(&mut self, event: &Event, reason: &'static str) {
        self.unverifiable.push(UnverifiableEvent {
            event_index: event.index,
            pcr: event.pcr,
            event_type: event.event_type,
            reason,
        });
    }

    /// The digest of EV_EFI_VARIABLE_DRIVER_CONFIG is H(UEFI_VARIABLE_DATA); some firmware
    /// hashes only VariableData, which is accepted too since it equally vouches for it.
    fn add_driver_config(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        let Some(variable) = UefiVariable::parse(&event.data) else {
            return self.unverifiable(event, "data is not a UEFI_VARIABLE_DATA");
        };
        if !hashes_to(bank, &event.data, digest) && !hashes_to(bank, variable.data, digest) {
            return self.unverifiable(event, "digest is not the hash of the variable");
        }
        let is_secure_boot =
            variable.name == "SecureBoot" && variable.vendor_guid == uefi::EFI_GLOBAL_VARIABLE;
        if is_secure_boot {
            self.secure_boot = match variable.data {
                [] | [0] => Some(false),
                [1] => Some(true),
                _ => return self.unverifiable(event, "SecureBoot variable is neither 0 nor 1"),
            };
            return;
        }
        self.secure_boot_variables.push(SecureBootVariable {
            event_index: event.index,
            name: variable.name,
            vendor_guid: variable.vendor_guid,
            bank,
            digest: hex::encode(digest),
            data_sha256: hex::encode(HashAlg::Sha256.digest(&[variable.data])),
            data_len: variable.data.len(),
        });
    }

    /// EV_EFI_VARIABLE_AUTHORITY: H(UEFI_VARIABLE_DATA) per the spec; shim hashes only the
    /// VariableData, which is accepted too.
    fn add_authority(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        let Some(variable) = UefiVariable::parse(&event.data) else {
            return self.unverifiable(event, "data is not a UEFI_VARIABLE_DATA");
        };
        if !hashes_to(bank, &event.data, digest) && !hashes_to(bank, variable.data, digest) {
            return self.unverifiable(event, "digest is not the hash of the authority");
        }
        self.authorities.push(Authority {
            event_index: event.index,
            variable: variable.name,
            vendor_guid: variable.vendor_guid,
            data_sha256: hex::encode(HashAlg::Sha256.digest(&[variable.data])),
            certificate: certificate_in(variable.data),
        });
    }

    fn add_separator(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        if !hashes_to(bank, &event.data, digest) {
            return self.unverifiable(event, "separator digest is not the hash of its data");
        }
        let kind = match event.data.as_slice() {
            [0, 0, 0, 0] => SeparatorKind::Normal,
            [0xFF, 0xFF, 0xFF, 0xFF] => SeparatorKind::Error,
            _ => SeparatorKind::Other,
        };
        self.separators.push(Separator {
            event_index: event.index,
            pcr: event.pcr,
            kind,
        });
    }

    fn add_ipl(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        if let Some(payload) = event.data.strip_prefix(GRUB_KERNEL_CMDLINE) {
            // GRUB extends H(command line without its NUL) and logs it with a prefix.
            let payload = payload.strip_suffix(b"\0").unwrap_or(payload);
            match std::str::from_utf8(payload) {
                Ok(text) if hashes_to(bank, payload, digest) => {
                    self.push_cmdline(event, CommandLineSource::Grub, text.to_owned());
                }
                _ => self.unverifiable(
                    event,
                    "GRUB kernel_cmdline digest is not the hash of its text",
                ),
            }
            return;
        }
        let looks_utf16 = event.data.get(1) == Some(&0) && matches!(event.pcr, 8 | 12);
        if !looks_utf16 {
            return;
        }
        // systemd-boot/stub extend H(UTF-16LE text including its NUL); some versions log one
        // stray byte after it, so the text is re-encoded rather than hashed as logged.
        let Some(text) = utf16_text(&event.data) else {
            return self.unverifiable(event, "EV_IPL data is not UTF-16 text");
        };
        let encoded: Vec<u8> = text
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        if hashes_to(bank, &encoded, digest) {
            self.push_cmdline(event, CommandLineSource::SystemdBoot, text);
        } else {
            self.unverifiable(event, "UTF-16 EV_IPL digest is not the hash of its text");
        }
    }

    fn push_cmdline(&mut self, event: &Event, source: CommandLineSource, text: String) {
        self.kernel_command_lines.push(KernelCommandLine {
            event_index: event.index,
            pcr: event.pcr,
            source,
            text,
        });
    }

    fn add_action(&mut self, event: &Event, bank: HashAlg, digest: &[u8]) {
        if !hashes_to(bank, &event.data, digest) {
            return self.unverifiable(event, "action digest is not the hash of its text");
        }
        let text = String::from_utf8_lossy(&event.data)
            .trim_end_matches('\0')
            .to_owned();
        if event.pcr == 7 && text == "UEFI Debug Mode" {
            self.debug_mode = Some(true);
        }
        if event.pcr == 7 && text == "DMA Protection Disabled" {
            self.dma_protection_disabled = Some(true);
        }
        self.actions.push(Action {
            event_index: event.index,
            pcr: event.pcr,
            text,
        });
    }
}

/// The preferred verified bank for this event's PCR, with the event's digest in it.
fn trusted_digest<'e>(event: &'e Event, verified: &VerifiedPcrs) -> Option<(HashAlg, &'e [u8])> {
    BANK_PREFERENCE
        .into_iter()
        .filter(|alg| verified.contains(*alg, event.pcr))
        .find_map(|alg| event.digest(alg).map(|digest| (alg, digest)))
}

fn hashes_to(alg: HashAlg, data: &[u8], digest: &[u8]) -> bool {
    alg.digest(&[data]) == digest
}

fn loaded_image(event: &Event, bank: HashAlg, digest: &[u8]) -> LoadedImage {
    LoadedImage {
        event_index: event.index,
        pcr: event.pcr,
        event_type: event.event_type,
        bank,
        digest: hex::encode(digest),
        device_path_unverified: uefi::image_device_path(&event.data),
    }
}

/// The certificate in an authority entry: raw DER (shim) or an EFI_SIGNATURE_DATA whose
/// first 16 bytes are the owner GUID (db).
fn certificate_in(data: &[u8]) -> Option<CertificateSummary> {
    certificate_summary(data).or_else(|| certificate_summary(data.get(16..)?))
}

fn certificate_summary(der: &[u8]) -> Option<CertificateSummary> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let used = der.len().checked_sub(rest.len())?;
    Some(CertificateSummary {
        sha256: hex::encode(HashAlg::Sha256.digest(&[der.get(..used)?])),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    })
}
