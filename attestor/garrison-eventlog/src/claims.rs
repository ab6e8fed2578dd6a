//! Boot claims: facts about the boot that policy can rely on, taken only from events the
//! quoted PCRs vouch for.
//!
//! # What is believed
//! 1. An event counts only if its PCR is in [`VerifiedPcrs`] for a bank the event has a
//!    digest in (the strongest such bank is used: SHA-256, SHA-384, SHA-512, SM3, then SHA-1).
//!    Events in other PCRs are ignored entirely.
//! 2. Event data is believed only where the spec makes the digest a hash of that data, and
//!    `H(data) == digest` holds. Where the digest is a hash of something else (an image's
//!    Authenticode hash), the digest is the claim and the data-derived text is in fields
//!    named `*_unverified`.
//! 3. **Every event counts.** The event type, and any label inside event data (GRUB's
//!    `kernel_cmdline: `), is covered by no digest: a log can present any event under any
//!    type and label and still replay. So in the PCRs a claim is built from (2, 4, 7, 8, 12)
//!    an event is read by its PCR and by what its digest proves, never by its label alone,
//!    and every event there ends up in a claim or in [`BootClaims::unverifiable`]. A label
//!    can move an event from one list to another (each list keeps the label as
//!    `event_type`) but cannot make it disappear.
//!
//! # The rule per PCR
//! A *proven separator* is an event whose data is `00000000` or `FFFFFFFF` and whose digest
//! is the hash of that data, whatever its type says.
//!
//! * **PCR 2** (option ROMs, drivers): a proven separator, or else code: a driver in
//!   [`BootClaims::drivers`] (in [`BootClaims::boot_applications`] if labelled
//!   EV_EFI_BOOT_SERVICES_APPLICATION). EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_POST_CODE or any
//!   other label in PCR 2 is listed as a driver with that `event_type`.
//! * **PCR 4** (the boot path): a proven separator; or a boot-manager action, if its digest
//!   is the hash of its data and the data (trailing NULs aside) is exactly one of
//!   [`BOOT_MANAGER_ACTIONS`] (EV_EFI_ACTION, EV_ACTION and EV_OMIT_BOOT_DEVICE_EVENTS
//!   strings), listed in [`BootClaims::actions`]; or else a loaded image in
//!   [`BootClaims::boot_applications`], whatever its label (EV_IPL boot code, a driver, an
//!   EV_POST_CODE). An image's digest is the hash of its own bytes, so "digest = H(data)"
//!   alone proves nothing here: only fixed contents do.
//! * **PCR 7** (Secure Boot policy), content first, each kind digest-checked:
//!   - a proven separator ends the configuration, whatever its label;
//!   - a `SecureBoot` variable (EFI global GUID) whose digest proves it is a SecureBoot
//!     measurement whatever its label: configuration ([`BootClaims::secure_boot`]) if
//!     labelled EV_EFI_VARIABLE_DRIVER_CONFIG before the separator; unverifiable otherwise
//!     (after the separator root can extend PCR 7 on a running machine; under another label
//!     it was relabelled, and `secure_boot` becomes unknown);
//!   - the rest by label: EV_EFI_VARIABLE_DRIVER_CONFIG before the separator →
//!     [`BootClaims::secure_boot_variables`], after it unverifiable;
//!     EV_EFI_VARIABLE_AUTHORITY → [`BootClaims::authorities`]; EV_EFI_ACTION →
//!     [`BootClaims::actions`] (and `debug_mode`, `dma_protection_disabled`). Anything
//!     else, including an EV_SEPARATOR that is not a proven one, is unverifiable.
//!
//!   `secure_boot` is known only when PCR 7 has a proven separator and exactly one
//!   `SecureBoot` variable was measured before it; a second one is unverifiable and leaves
//!   it unknown (`None`), as does a log whose PCR 7 never reaches a separator.
//! * **PCR 8** (GRUB's strings; systemd-boot up to v250): each event is either a GRUB
//!   string, a systemd-boot command line, a proven separator, or unverifiable:
//!   - GRUB logs `grub_cmd: `, `kernel_cmdline: ` or `module_cmdline: ` and the text, with
//!     a NUL; GRUB 2.02 with the TPM patches logs the text alone. The digest is of the text
//!     without the NUL (GRUB 2.04 and later, every fixture in `testdata/`) or with it (the
//!     2.02 patches hash `grub_cmd` strings with their NUL). All these forms are tried; the
//!     text may hold no NUL and must be UTF-8. A text labelled `kernel_cmdline` or
//!     `module_cmdline` is a command line ([`CommandLineSource::Grub`]).
//!   - The label is not covered either, and a grub.cfg line is measured before GRUB looks
//!     its command up: any text can be measured as a `grub_cmd` and relabelled. So a GRUB
//!     text that runs a loader command ([`GRUB_LOADER_COMMANDS`], e.g. `linux`) states the
//!     command line of what it loads, whatever its label: its arguments are a command line
//!     too ([`CommandLineSource::GrubLoaderCommand`]). Hiding the real `kernel_cmdline`
//!     event therefore hides nothing: the `linux` command that set it is still there.
//!   - Other GRUB commands load nothing: their digests are checked, they add no claim.
//!   - systemd-boot logs UTF-16LE text; its digest is of that text with its NUL
//!     ([`CommandLineSource::SystemdBoot`]).
//! * **PCR 12** (systemd-stub): each event is a systemd-boot command line (as in PCR 8), a
//!   proven separator, or unverifiable.
//! * **Every other PCR**: no claim depends on it. Separators, actions and events labelled
//!   as images there are listed for information; a policy that cares about these PCRs pins
//!   their values (`golden_pcrs`).
//!
//! # What a running node can add
//! Root on a running node can extend PCRs 0–15 and append matching events to the log; they
//! replay like the rest. Such events can only add entries: a rule that every boot
//! application or command line be approved holds, a rule that something be *present* (an
//! authority, a separator) does not. That is why `secure_boot` is read only before the
//! PCR 7 separator, which firmware measures before any OS code runs.

use serde::Serialize;

use crate::event::{Event, EventType};
use crate::replay::VerifiedPcrs;
use crate::uefi::{self, UefiVariable};
use crate::{EventLog, HashAlg};

mod command_line;

pub use command_line::GRUB_LOADER_COMMANDS;
use command_line::{GrubLabel, LoaderString};

/// Banks in the order claims prefer them: SHA-1 last, since its collisions are practical.
const BANK_PREFERENCE: [HashAlg; 5] = [
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
    HashAlg::Sm3_256,
    HashAlg::Sha1,
];
/// The strings a PCR 4 event may hold without being a loaded image (PFP 3.3.4.5, 10.4.4,
/// 10.4.1: EV_EFI_ACTION, EV_ACTION of a legacy BIOS, EV_OMIT_BOOT_DEVICE_EVENTS).
pub const BOOT_MANAGER_ACTIONS: [&str; 6] = [
    "Calling EFI Application from Boot Option",
    "Returning from EFI Application from Boot Option",
    "Calling INT 19h",
    "Returned INT 19h",
    "Return via INT 18h",
    "BOOT ATTEMPTS OMITTED",
];

/// What a verified event log says about the boot. Serialized as the `boot` object of the
/// admission policy input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootClaims {
    /// The SecureBoot variable as measured into PCR 7 before its separator: `Some(true)` for
    /// 1, `Some(false)` for 0 or an empty variable, `None` unless exactly one verified,
    /// digest-checked measurement exists there.
    pub secure_boot: Option<bool>,
    /// Other EV_EFI_VARIABLE_DRIVER_CONFIG variables (PK, KEK, db, dbx, ...) measured into
    /// PCR 7 before its separator.
    pub secure_boot_variables: Vec<SecureBootVariable>,
    /// EV_EFI_VARIABLE_AUTHORITY entries in PCR 7: what vouched for each loaded image.
    pub authorities: Vec<Authority>,
    /// EV_SEPARATOR events, in log order.
    pub separators: Vec<Separator>,
    /// PCRs 0–7 that are verified but have no verified separator.
    pub separators_missing: Vec<u32>,
    /// Every PCR 4 event that is not a proven separator or boot-manager action, whatever its
    /// label (boot loaders, shim, kernels via EFI stub), and events labelled
    /// EV_EFI_BOOT_SERVICES_APPLICATION in other PCRs.
    pub boot_applications: Vec<LoadedImage>,
    /// Every PCR 2 event that is not a proven separator or labelled as an application
    /// (option ROMs, drivers, firmware blobs), and EV_EFI_BOOT_SERVICES_DRIVER /
    /// EV_EFI_RUNTIME_SERVICES_DRIVER events in PCRs other than 4.
    pub drivers: Vec<LoadedImage>,
    /// Kernel (and module) command lines: GRUB's `kernel_cmdline` / `module_cmdline` texts
    /// and the arguments of its loader commands in PCR 8, systemd-boot / systemd-stub UTF-16
    /// text in PCR 8 or 12 (see the module docs for every form).
    pub kernel_command_lines: Vec<KernelCommandLine>,
    /// Digest-checked action strings: EV_EFI_ACTION / EV_ACTION in PCRs other than 2 and 4,
    /// and the boot-manager actions of PCR 4.
    pub actions: Vec<Action>,
    /// Whether firmware reported "UEFI Debug Mode"; `None` when PCR 7 is not verified.
    pub debug_mode: Option<bool>,
    /// Whether firmware reported "DMA Protection Disabled"; `None` when PCR 7 is not verified.
    pub dma_protection_disabled: Option<bool>,
    /// Events in verified PCRs that cannot be believed: data that should hash to the digest
    /// but does not, or an event the rule for its PCR cannot read (see the module docs).
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
/// PCR vouches for; the type and device path come from the log, which no digest covers (a
/// PCR 4 event the log calls EV_POST_CODE is listed here with that `event_type`).
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

/// Which measurement states a kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLineSource {
    /// A GRUB string labelled `kernel_cmdline` or `module_cmdline`.
    Grub,
    /// The arguments of a GRUB loader command (`linux ...`), whatever its label.
    GrubLoaderCommand,
    /// systemd-boot or systemd-stub (UTF-16 text).
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

/// An event that cannot be believed; none of its data is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnverifiableEvent {
    pub event_index: usize,
    pub pcr: u32,
    pub event_type: EventType,
    pub reason: &'static str,
}

impl BootClaims {
    /// Claims from the events of `log` whose PCR replayed to its quoted value in some bank,
    /// by the rule for each PCR in the module docs.
    pub fn extract(log: &EventLog, verified: &VerifiedPcrs) -> Self {
        let mut extraction = Extraction::default();
        let pcr7_verified = HashAlg::ALL.iter().any(|alg| verified.contains(*alg, 7));
        if pcr7_verified {
            extraction.claims.debug_mode = Some(false);
            extraction.claims.dma_protection_disabled = Some(false);
        }
        for event in log.events().iter().filter(|e| e.is_extended()) {
            if let Some((bank, digest)) = trusted_digest(event, verified) {
                extraction.add(Measured {
                    event,
                    bank,
                    digest,
                });
            }
        }
        extraction.finish(verified)
    }
}

/// An event of a verified PCR, with the digest of the bank that vouches for it.
#[derive(Clone, Copy)]
struct Measured<'e> {
    event: &'e Event,
    bank: HashAlg,
    digest: &'e [u8],
}

impl<'e> Measured<'e> {
    fn data_hashes_to_digest(&self) -> bool {
        hashes_to(self.bank, &self.event.data, self.digest)
    }

    /// The separator this event is, if its data is a separator value and its digest the
    /// hash of it (whatever its type says).
    fn proven_separator(&self) -> Option<SeparatorKind> {
        let kind = match self.event.data.as_slice() {
            [0, 0, 0, 0] => SeparatorKind::Normal,
            [0xFF, 0xFF, 0xFF, 0xFF] => SeparatorKind::Error,
            _ => return None,
        };
        self.data_hashes_to_digest().then_some(kind)
    }

    /// The value of the SecureBoot variable (EFI global variable GUID) this event's data
    /// is, if its digest proves it (the hash of the UEFI_VARIABLE_DATA, or of the value as
    /// some firmware measures it), whatever its type says.
    fn secure_boot_variable(&self) -> Option<&'e [u8]> {
        let variable = UefiVariable::parse(&self.event.data)?;
        if variable.name != "SecureBoot" || variable.vendor_guid != uefi::EFI_GLOBAL_VARIABLE {
            return None;
        }
        let proven =
            self.data_hashes_to_digest() || hashes_to(self.bank, variable.data, self.digest);
        proven.then_some(variable.data)
    }

    /// The boot-manager action this event is, if its data is one of
    /// [`BOOT_MANAGER_ACTIONS`] and its digest the hash of it (whatever its type says).
    fn proven_boot_manager_action(&self) -> Option<&'static str> {
        let text = trim_trailing_nuls(&self.event.data);
        let action = BOOT_MANAGER_ACTIONS
            .into_iter()
            .find(|known| known.as_bytes() == text)?;
        self.data_hashes_to_digest().then_some(action)
    }
}

/// Claims being built, and what the PCR 7 rule needs to remember on the way.
#[derive(Default)]
struct Extraction {
    claims: BootClaims,
    /// Whether PCR 7's proven separator has been seen: configuration ends there.
    pcr7_separated: bool,
    /// Every SecureBoot value measured before that separator (`None`: neither 0 nor 1).
    secure_boot_measurements: Vec<Option<bool>>,
}

impl Extraction {
    fn add(&mut self, measured: Measured<'_>) {
        match measured.event.pcr {
            2 => self.add_pcr2(measured),
            4 => self.add_pcr4(measured),
            7 => self.add_pcr7(measured),
            8 | 12 => self.add_command_line_pcr(measured),
            _ => self.add_informational(measured),
        }
    }

    fn finish(mut self, verified: &VerifiedPcrs) -> BootClaims {
        // Known only if the configuration ended with a proven separator (else anything
        // after it could be configuration extended by root) and SecureBoot was measured
        // exactly once in it.
        self.claims.secure_boot = match self.secure_boot_measurements.as_slice() {
            [only] if self.pcr7_separated => *only,
            _ => None,
        };
        self.claims.separators_missing = (0..=7)
            .filter(|pcr| HashAlg::ALL.iter().any(|alg| verified.contains(*alg, *pcr)))
            .filter(|pcr| !self.claims.separators.iter().any(|s| s.pcr == *pcr))
            .collect();
        self.claims
    }

    /// PCR 2: proven separators; everything else is code.
    fn add_pcr2(&mut self, measured: Measured<'_>) {
        if let Some(kind) = measured.proven_separator() {
            return self.push_separator(measured.event, kind);
        }
        let image = loaded_image(measured);
        if measured.event.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION {
            self.claims.boot_applications.push(image);
        } else {
            self.claims.drivers.push(image);
        }
    }

    /// PCR 4: proven separators and boot-manager actions; everything else is a loaded image.
    fn add_pcr4(&mut self, measured: Measured<'_>) {
        if let Some(kind) = measured.proven_separator() {
            return self.push_separator(measured.event, kind);
        }
        if let Some(action) = measured.proven_boot_manager_action() {
            return self.push_action(measured.event, action.to_owned());
        }
        self.claims.boot_applications.push(loaded_image(measured));
    }

    /// PCR 7: configuration before the separator, authorities and actions anywhere.
    fn add_pcr7(&mut self, measured: Measured<'_>) {
        let event = measured.event;
        // Content before label: no digest covers the label. A proven separator ends the
        // configuration whatever it is labelled (else relabelling it would keep the
        // configuration open for root to extend), and a SecureBoot variable counts as one
        // whatever it is labelled (else relabelling the real one would hide it).
        if let Some(kind) = measured.proven_separator() {
            self.pcr7_separated = true;
            return self.push_separator(event, kind);
        }
        if let Some(value) = measured.secure_boot_variable() {
            if self.pcr7_separated {
                return self.unverifiable(
                    event,
                    "SecureBoot variable measured after the PCR 7 separator",
                );
            }
            if event.event_type != EventType::EFI_VARIABLE_DRIVER_CONFIG {
                self.secure_boot_measurements.push(None);
                return self.unverifiable(
                    event,
                    "SecureBoot variable measured under a type other than \
                     EV_EFI_VARIABLE_DRIVER_CONFIG",
                );
            }
            return self.add_secure_boot(event, value);
        }
        match event.event_type {
            EventType::SEPARATOR => {
                self.unverifiable(event, "PCR 7 separator is not a proven 0 or -1");
            }
            EventType::EFI_VARIABLE_DRIVER_CONFIG if self.pcr7_separated => self.unverifiable(
                event,
                "Secure Boot configuration measured after the PCR 7 separator",
            ),
            EventType::EFI_VARIABLE_DRIVER_CONFIG => self.add_driver_config(measured),
            EventType::EFI_VARIABLE_AUTHORITY => self.add_authority(measured),
            EventType::EFI_ACTION => self.add_action(measured),
            _ => self.unverifiable(event, "PCR 7 holds no events of this type"),
        }
    }

    /// PCRs 8 and 12: every event is a loader string its digest proves, or unverifiable.
    fn add_command_line_pcr(&mut self, measured: Measured<'_>) {
        let event = measured.event;
        if let Some(kind) = measured.proven_separator() {
            return self.push_separator(event, kind);
        }
        let read = command_line::read(event.pcr, &event.data, measured.bank, measured.digest);
        match read {
            Some(LoaderString::Grub { label, text }) => self.add_grub_string(event, label, text),
            Some(LoaderString::SystemdBoot(text)) => {
                self.push_command_line(event, CommandLineSource::SystemdBoot, text);
            }
            None if event.pcr == 8 => self.unverifiable(
                event,
                "PCR 8 event is no GRUB string or systemd-boot command line its digest proves",
            ),
            None => self.unverifiable(
                event,
                "PCR 12 event is no systemd command line its digest proves",
            ),
        }
    }

    /// PCRs no claim depends on: labelled separators, actions and images, for information.
    fn add_informational(&mut self, measured: Measured<'_>) {
        match measured.event.event_type {
            EventType::SEPARATOR => self.add_separator(measured),
            EventType::EFI_ACTION | EventType::ACTION => self.add_action(measured),
            EventType::EFI_BOOT_SERVICES_APPLICATION => {
                self.claims.boot_applications.push(loaded_image(measured));
            }
            EventType::EFI_BOOT_SERVICES_DRIVER | EventType::EFI_RUNTIME_SERVICES_DRIVER => {
                self.claims.drivers.push(loaded_image(measured));
            }
            _ => {}
        }
    }

    fn unverifiable(&mut self, event: &Event, reason: &'static str) {
        self.claims.unverifiable.push(UnverifiableEvent {
            event_index: event.index,
            pcr: event.pcr,
            event_type: event.event_type,
            reason,
        });
    }

    /// The digest of EV_EFI_VARIABLE_DRIVER_CONFIG is H(UEFI_VARIABLE_DATA); some firmware
    /// hashes only VariableData, which is accepted too since it equally vouches for it.
    fn add_driver_config(&mut self, measured: Measured<'_>) {
        let event = measured.event;
        let Some(variable) = UefiVariable::parse(&event.data) else {
            return self.unverifiable(event, "data is not a UEFI_VARIABLE_DATA");
        };
        if !measured.data_hashes_to_digest()
            && !hashes_to(measured.bank, variable.data, measured.digest)
        {
            return self.unverifiable(event, "digest is not the hash of the variable");
        }
        self.claims.secure_boot_variables.push(SecureBootVariable {
            event_index: event.index,
            name: variable.name,
            vendor_guid: variable.vendor_guid,
            bank: measured.bank,
            digest: hex::encode(measured.digest),
            data_sha256: hex::encode(HashAlg::Sha256.digest(&[variable.data])),
            data_len: variable.data.len(),
        });
    }

    /// One SecureBoot measurement before the separator; a second leaves the state unknown.
    fn add_secure_boot(&mut self, event: &Event, value: &[u8]) {
        let value = match value {
            [] | [0] => Some(false),
            [1] => Some(true),
            _ => None,
        };
        self.secure_boot_measurements.push(value);
        if value.is_none() {
            self.unverifiable(event, "SecureBoot variable is neither 0 nor 1");
        } else if self.secure_boot_measurements.len() > 1 {
            self.unverifiable(
                event,
                "SecureBoot measured again before the PCR 7 separator",
            );
        }
    }

    /// EV_EFI_VARIABLE_AUTHORITY: H(UEFI_VARIABLE_DATA) per the spec; shim hashes only the
    /// VariableData, which is accepted too.
    fn add_authority(&mut self, measured: Measured<'_>) {
        let event = measured.event;
        let Some(variable) = UefiVariable::parse(&event.data) else {
            return self.unverifiable(event, "data is not a UEFI_VARIABLE_DATA");
        };
        if !measured.data_hashes_to_digest()
            && !hashes_to(measured.bank, variable.data, measured.digest)
        {
            return self.unverifiable(event, "digest is not the hash of the authority");
        }
        self.claims.authorities.push(Authority {
            event_index: event.index,
            variable: variable.name,
            vendor_guid: variable.vendor_guid,
            data_sha256: hex::encode(HashAlg::Sha256.digest(&[variable.data])),
            certificate: certificate_in(variable.data),
        });
    }

    /// A labelled separator in a PCR no claim depends on: any digest-checked data.
    fn add_separator(&mut self, measured: Measured<'_>) {
        if !measured.data_hashes_to_digest() {
            return self.unverifiable(
                measured.event,
                "separator digest is not the hash of its data",
            );
        }
        let kind = measured.proven_separator().unwrap_or(SeparatorKind::Other);
        self.push_separator(measured.event, kind);
    }

    fn push_separator(&mut self, event: &Event, kind: SeparatorKind) {
        self.claims.separators.push(Separator {
            event_index: event.index,
            pcr: event.pcr,
            kind,
        });
    }

    /// A GRUB string: a command line if labelled one, the arguments of a loader command
    /// whatever its label, and otherwise a command that loads nothing (no claim).
    fn add_grub_string(&mut self, event: &Event, label: Option<GrubLabel>, text: String) {
        if label.is_some_and(GrubLabel::is_command_line) {
            return self.push_command_line(event, CommandLineSource::Grub, text);
        }
        if let Some(arguments) = command_line::loader_arguments(&text) {
            let arguments = arguments.to_owned();
            self.push_command_line(event, CommandLineSource::GrubLoaderCommand, arguments);
        }
    }

    fn push_command_line(&mut self, event: &Event, source: CommandLineSource, text: String) {
        self.claims.kernel_command_lines.push(KernelCommandLine {
            event_index: event.index,
            pcr: event.pcr,
            source,
            text,
        });
    }

    fn add_action(&mut self, measured: Measured<'_>) {
        if !measured.data_hashes_to_digest() {
            return self.unverifiable(measured.event, "action digest is not the hash of its text");
        }
        let text = String::from_utf8_lossy(&measured.event.data)
            .trim_end_matches('\0')
            .to_owned();
        self.push_action(measured.event, text);
    }

    fn push_action(&mut self, event: &Event, text: String) {
        if event.pcr == 7 && text == "UEFI Debug Mode" {
            self.claims.debug_mode = Some(true);
        }
        if event.pcr == 7 && text == "DMA Protection Disabled" {
            self.claims.dma_protection_disabled = Some(true);
        }
        self.claims.actions.push(Action {
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

fn trim_trailing_nuls(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    bytes.get(..end).unwrap_or_default()
}

/// A loaded image: the digest is the claim, the label and device path are as logged.
fn loaded_image(measured: Measured<'_>) -> LoadedImage {
    let event = measured.event;
    LoadedImage {
        event_index: event.index,
        pcr: event.pcr,
        event_type: event.event_type,
        bank: measured.bank,
        digest: hex::encode(measured.digest),
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
