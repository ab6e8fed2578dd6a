//! Strings boot loaders measure into PCRs 8 and 12, read in every form their digest can
//! take. The text is what the digest proves; a label in the data (`grub_cmd: `) is not
//! covered by it and is only reported.

use crate::HashAlg;
use crate::event::utf16_text;

/// GRUB commands that hand a command line to what they load (`linux PATH ARGS...`); their
/// arguments, as GRUB measured them, are a command line whatever the event is labelled.
/// `chainloader` is one too: on UEFI its arguments become the started image's LoadOptions,
/// which an EFI-stub kernel takes as its command line.
pub const GRUB_LOADER_COMMANDS: [&str; 18] = [
    "linux",
    "linux16",
    "linuxefi",
    "chainloader",
    "multiboot",
    "multiboot2",
    "module",
    "module2",
    "xen_hypervisor",
    "xen_module",
    "kfreebsd",
    "knetbsd",
    "kopenbsd",
    "xnu_kernel",
    "xnu_kernel64",
    "legacy_kernel",
    "appleloader",
    "plan9",
];

/// The label GRUB logs before a measured string (grub-core/commands/tpm.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrubLabel {
    Command,
    KernelCommandLine,
    ModuleCommandLine,
}

impl GrubLabel {
    const PREFIXES: [(&'static [u8], GrubLabel); 3] = [
        (b"grub_cmd: ", GrubLabel::Command),
        (b"kernel_cmdline: ", GrubLabel::KernelCommandLine),
        (b"module_cmdline: ", GrubLabel::ModuleCommandLine),
    ];

    pub(super) fn is_command_line(self) -> bool {
        matches!(self, Self::KernelCommandLine | Self::ModuleCommandLine)
    }
}

/// A measured string whose digest matched one of the forms below.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LoaderString {
    /// A GRUB string; `label` is `None` when the log gives none (GRUB 2.02 TPM patches).
    Grub {
        label: Option<GrubLabel>,
        text: String,
    },
    /// A systemd-boot / systemd-stub command line.
    SystemdBoot(String),
}

/// The string `data` states, if `digest` proves it: GRUB's forms in PCR 8, then
/// systemd-boot's UTF-16 in PCR 8 or 12. Each digest has at most one such text (a GRUB text
/// holds no NUL; a UTF-16 preimage ends in two), so trying every form is safe.
pub(super) fn read(pcr: u32, data: &[u8], bank: HashAlg, digest: &[u8]) -> Option<LoaderString> {
    let grub = if pcr == 8 {
        grub_string(data, bank, digest)
    } else {
        None
    };
    grub.or_else(|| systemd_command_line(data, bank, digest).map(LoaderString::SystemdBoot))
}

/// The arguments of a GRUB loader command (`linux /vmlinuz ro` → `/vmlinuz ro`), or `None`
/// if `text` runs any other command.
pub(super) fn loader_arguments(text: &str) -> Option<&str> {
    let (command, arguments) = text.split_once(' ').unwrap_or((text, ""));
    GRUB_LOADER_COMMANDS.contains(&command).then_some(arguments)
}

/// A labelled GRUB string (`grub_cmd: TEXT\0`), or else an unlabelled one (`TEXT\0`).
fn grub_string(data: &[u8], bank: HashAlg, digest: &[u8]) -> Option<LoaderString> {
    let labelled = GrubLabel::PREFIXES
        .iter()
        .find_map(|(prefix, label)| Some((Some(*label), data.strip_prefix(*prefix)?)));
    labelled
        .into_iter()
        .chain([(None, data)])
        .find_map(|(label, logged)| {
            let text = grub_text(logged, bank, digest)?;
            Some(LoaderString::Grub { label, text })
        })
}

/// The text GRUB logged as `logged` (the text and, usually, a NUL), if the digest is of the
/// text without the NUL (GRUB 2.04 and later) or with it (2.02 TPM patches, `grub_cmd`).
fn grub_text(logged: &[u8], bank: HashAlg, digest: &[u8]) -> Option<String> {
    let text = logged.strip_suffix(b"\0").unwrap_or(logged);
    if text.contains(&0) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let bytes = text.as_bytes();
    let proven = bank.digest(&[bytes]) == digest || bank.digest(&[bytes, b"\0"]) == digest;
    proven.then(|| text.to_owned())
}

/// systemd-boot / systemd-stub extend H(UTF-16LE text including its NUL); some versions log
/// one stray byte after it, so the text is re-encoded rather than hashed as logged.
fn systemd_command_line(data: &[u8], bank: HashAlg, digest: &[u8]) -> Option<String> {
    let text = utf16_text(data)?;
    let encoded: Vec<u8> = text
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    (bank.digest(&[&encoded]) == digest).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: HashAlg = HashAlg::Sha256;

    fn read8(data: &[u8], preimage: &[u8]) -> Option<LoaderString> {
        read(8, data, SHA256, &SHA256.digest(&[preimage]))
    }

    fn grub(label: Option<GrubLabel>, text: &str) -> Option<LoaderString> {
        Some(LoaderString::Grub {
            label,
            text: text.to_owned(),
        })
    }

    #[test]
    fn grub_forms() {
        let cmd = Some(GrubLabel::Command);
        assert_eq!(read8(b"grub_cmd: ls\0", b"ls"), grub(cmd, "ls"));
        assert_eq!(read8(b"grub_cmd: ls\0", b"ls\0"), grub(cmd, "ls"));
        assert_eq!(read8(b"grub_cmd: ls", b"ls"), grub(cmd, "ls"));
        assert_eq!(read8(b"ls\0", b"ls"), grub(None, "ls"));
        // The text is what the digest proves: here, an unlabelled string with a colon.
        assert_eq!(
            read8(b"grub_cmd: ls\0", b"grub_cmd: ls\0"),
            grub(None, "grub_cmd: ls")
        );
        assert_eq!(read8(b"grub_cmd: ls\0\0", b"ls\0"), None);
        assert_eq!(read8(b"grub_cmd: \xff\0", b"\xff"), None);
        // GRUB strings are PCR 8's only.
        assert_eq!(read(12, b"ls\0", SHA256, &SHA256.digest(&[b"ls"])), None);
    }

    #[test]
    fn systemd_form() {
        let utf16: Vec<u8> = "ro quiet\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut logged = utf16.clone();
        logged.push(0x41);
        let expected = Some(LoaderString::SystemdBoot("ro quiet".to_owned()));
        for pcr in [8, 12] {
            assert_eq!(
                read(pcr, &logged, SHA256, &SHA256.digest(&[&utf16])),
                expected
            );
        }
        assert_eq!(read8(&logged, b"ro quiet"), None);
    }

    #[test]
    fn loader_commands() {
        assert_eq!(loader_arguments("linux /vmlinuz ro"), Some("/vmlinuz ro"));
        assert_eq!(loader_arguments("linux"), Some(""));
        assert_eq!(loader_arguments("linuxx /vmlinuz"), None);
        assert_eq!(loader_arguments("initrd /initrd.img"), None);
        assert_eq!(
            loader_arguments("chainloader /vmlinuz init=/bin/sh"),
            Some("/vmlinuz init=/bin/sh")
        );
        assert_eq!(loader_arguments(" linux /vmlinuz"), None);
    }
}
