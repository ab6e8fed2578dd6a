//! The event type (and any label inside event data) is covered by no digest, so relabelling
//! an event must never hide it from the claims: real logs from `testdata/` edited the way an
//! attacker with root on the node can edit them (the PCRs still replay), and logs built by
//! hand for the forms real fixtures do not show.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "clippy.toml exempts #[test] fns but not these helpers; a broken fixture should fail loudly"
)]

use std::collections::BTreeMap;

use garrison_eventlog::{
    BootClaims, Event, EventDigest, EventLog, EventType, HashAlg, LogFormat, PcrValues,
    ReplayReport,
};
use serde_json::Value;

const GOOD: &str = "tpm2tools-event-moklisttrusted.bin";
const SECURE_BOOT_OFF: &str = "tpm2tools-event-gce-ubuntu-2104-log.bin";
/// PCRs whose events the claims are built from (see the `claims` module docs).
const CLAIM_PCRS: [u32; 5] = [2, 4, 7, 8, 12];

fn testdata(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(testdata(&format!("eventlogs/{name}"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(testdata("eventlogs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    names
}

/// The PCR values expected-pcrs.json lists for a fixture (what its TPM quoted).
fn quoted_from_expected(name: &str) -> PcrValues {
    let text = std::fs::read_to_string(testdata("eventlogs/expected-pcrs.json")).unwrap();
    let all: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
    let mut quoted = PcrValues::new();
    for (bank, pcrs) in all[name]["pcrs"].as_object().unwrap() {
        let alg = HashAlg::from_name(bank).unwrap();
        for (index, value) in pcrs.as_object().unwrap() {
            let value = hex::decode(value.as_str().unwrap()).unwrap();
            quoted.insert(alg, index.parse().unwrap(), value).unwrap();
        }
    }
    quoted
}

/// What a TPM that measured exactly `log` would quote: every PCR the log extends.
fn quote_of(log: &EventLog) -> PcrValues {
    let mut quoted = PcrValues::new();
    for (alg, index, value) in log.replay().iter() {
        quoted.insert(alg, index, value.to_vec()).unwrap();
    }
    quoted
}

/// Claims of `presented`, verified against `quoted`; every quoted PCR must replay.
fn claims_against(presented: &EventLog, quoted: &PcrValues) -> BootClaims {
    let report = ReplayReport::compare(presented, quoted);
    assert!(report.all_match(), "{report}");
    BootClaims::extract(presented, &report.verified)
}

/// Re-encode a log in its own format: its first event as read, then `events` (from #1 on).
/// Only for logs whose every digest algorithm Garrison computes (all fixtures used here).
fn encode(original: &[u8], log: &EventLog, events: &[Event]) -> Vec<u8> {
    if let Some(spec) = log.spec_id() {
        assert_eq!(spec.algorithms.len(), log.banks().len(), "unknown bank");
    }
    let header_end = log.events()[1].offset;
    let mut out = original[..header_end].to_vec();
    for event in events.iter().filter(|e| e.index != 0) {
        out.extend(event.pcr.to_le_bytes());
        out.extend(event.event_type.0.to_le_bytes());
        if log.format() == LogFormat::CryptoAgile {
            out.extend(u32::try_from(event.digests.len()).unwrap().to_le_bytes());
            for digest in &event.digests {
                out.extend(digest.alg.tpm_alg_id().to_le_bytes());
                out.extend(&digest.digest);
            }
        } else {
            out.extend(event.digest(HashAlg::Sha1).unwrap());
        }
        out.extend(u32::try_from(event.data.len()).unwrap().to_le_bytes());
        out.extend(&event.data);
    }
    out
}

/// `log` with `edit` applied to its events, re-encoded and parsed again.
fn edited(original: &[u8], edit: impl FnOnce(&mut Vec<Event>)) -> EventLog {
    let log = EventLog::parse(original).unwrap();
    let mut events = log.events().to_vec();
    edit(&mut events);
    EventLog::parse(&encode(original, &log, &events)).unwrap()
}

/// An event as a TPM measures it: `preimage` hashed in every bank of `log`, `data` logged.
fn measured(
    log: &EventLog,
    pcr: u32,
    event_type: EventType,
    preimage: &[u8],
    data: &[u8],
) -> Event {
    Event {
        index: usize::MAX,
        offset: 0,
        pcr,
        event_type,
        digests: log
            .banks()
            .into_iter()
            .map(|alg| EventDigest {
                alg,
                digest: alg.digest(&[preimage]),
            })
            .collect(),
        data: data.to_vec(),
    }
}

/// UEFI_VARIABLE_DATA for EFI_GLOBAL_VARIABLE `name` holding `value`.
fn global_variable(name: &str, value: &[u8]) -> Vec<u8> {
    let mut data = vec![
        0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b,
        0x8c,
    ];
    data.extend(
        u64::try_from(name.encode_utf16().count())
            .unwrap()
            .to_le_bytes(),
    );
    data.extend(u64::try_from(value.len()).unwrap().to_le_bytes());
    data.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
    data.extend(value);
    data
}

fn index_of(log: &EventLog, pcr: u32, data_prefix: &[u8]) -> usize {
    log.events()
        .iter()
        .find(|e| e.pcr == pcr && e.is_extended() && e.data.starts_with(data_prefix))
        .unwrap_or_else(|| panic!("no PCR {pcr} event starting {data_prefix:?}"))
        .index
}

/// The claims as JSON with every `event_type` (the relabelled field) removed.
fn without_event_types(claims: &BootClaims) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("event_type");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(claims).unwrap();
    strip(&mut value);
    value
}

/// A command line's source as policy sees it (`grub`, `systemd_boot`, ...).
fn source(source: impl serde::Serialize) -> String {
    serde_json::to_value(source)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether some claim names event `index`.
fn mentions(claims: &BootClaims, index: usize) -> bool {
    fn find(value: &Value, index: usize) -> bool {
        match value {
            Value::Object(map) => {
                map.get("event_index").and_then(Value::as_u64) == Some(index as u64)
                    || map.values().any(|v| find(v, index))
            }
            Value::Array(items) => items.iter().any(|v| find(v, index)),
            _ => false,
        }
    }
    find(&serde_json::to_value(claims).unwrap(), index)
}

/// The attack of issue 12: the TPM measured an unapproved boot application (PCR 4) and a
/// kernel command line (PCR 8); the log presents both as EV_POST_CODE. The PCRs replay as
/// before, and both events must still be in the claims.
#[test]
fn relabelled_application_and_command_line_still_count() {
    let original = fixture(GOOD);
    let log = EventLog::parse(&original).unwrap();
    let app = log
        .events()
        .iter()
        .rfind(|e| e.pcr == 4 && e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap()
        .index;
    let cmdline = index_of(&log, 8, b"kernel_cmdline: ");
    let presented = edited(&original, |events| {
        events[app].event_type = EventType::POST_CODE;
        events[cmdline].event_type = EventType::POST_CODE;
    });
    let before = claims_against(&log, &quoted_from_expected(GOOD));
    let after = claims_against(&presented, &quoted_from_expected(GOOD));
    let relabelled = after
        .boot_applications
        .iter()
        .find(|a| a.event_index == app)
        .expect("the relabelled PCR 4 event is a boot application");
    assert_eq!(relabelled.event_type, EventType::POST_CODE);
    assert!(
        after
            .kernel_command_lines
            .iter()
            .any(|c| c.event_index == cmdline && source(c.source) == "grub"),
        "{:?}",
        after.kernel_command_lines
    );
    assert_eq!(without_event_types(&after), without_event_types(&before));
}

/// Every event of every claim PCR of every fixture, relabelled as EV_POST_CODE (or, if it is
/// one, as a type no spec defines): the claims either name the event or are exactly what they
/// were (a GRUB command that loads nothing is verified and adds no claim).
#[test]
fn relabelling_any_event_of_a_claim_pcr_hides_nothing() {
    let mut relabelled = 0;
    for name in fixture_names() {
        let original = fixture(&name);
        let log = EventLog::parse(&original).unwrap();
        if log
            .spec_id()
            .is_some_and(|s| s.algorithms.len() != log.banks().len())
        {
            continue;
        }
        let quoted = quote_of(&log);
        let before = without_event_types(&claims_against(&log, &quoted));
        let targets: Vec<(usize, EventType)> = log
            .events()
            .iter()
            .filter(|e| e.is_extended() && CLAIM_PCRS.contains(&e.pcr))
            .map(|e| (e.index, e.event_type))
            .collect();
        for (index, event_type) in targets {
            let label = if event_type == EventType::POST_CODE {
                EventType(0x7FFF_0000)
            } else {
                EventType::POST_CODE
            };
            let presented = edited(&original, |events| events[index].event_type = label);
            let after = claims_against(&presented, &quoted);
            assert!(
                mentions(&after, index) || without_event_types(&after) == before,
                "{name}: event {index} ({event_type}) relabelled as {label} disappears from the claims"
            );
            relabelled += 1;
        }
    }
    assert!(relabelled > 400, "{relabelled}");
}

/// An image's digest is H(its Authenticode bytes), so a log can present an image whose bytes
/// are the event data as a "verified" action or separator. In PCR 4 only the fixed
/// separator values and boot-manager strings are not images.
#[test]
fn an_image_posing_as_an_action_or_separator_is_a_boot_application() {
    let base = EventLog::parse(&fixture(GOOD)).unwrap();
    let image = b"MZ\x90\x00 a small unapproved EFI application".to_vec();
    let other = b"MZ\x90\x00 another one".to_vec();
    let calling = b"Calling EFI Application from Boot Option";
    let events = vec![
        measured(&base, 4, EventType::EFI_ACTION, calling, calling),
        measured(&base, 4, EventType::EFI_ACTION, &image, &image),
        measured(&base, 4, EventType::SEPARATOR, &other, &other),
        measured(&base, 4, EventType::SEPARATOR, &[0; 4], &[0; 4]),
    ];
    let original = fixture(GOOD);
    let presented = edited(&original, |all| {
        all.truncate(1);
        all.extend(events);
    });
    let claims = claims_against(&presented, &quote_of(&presented));
    let apps: Vec<usize> = claims
        .boot_applications
        .iter()
        .map(|a| a.event_index)
        .collect();
    assert_eq!(apps, [2, 3], "{:?}", claims.boot_applications);
    let digest = hex::encode(HashAlg::Sha256.digest(&[&image]));
    assert_eq!(claims.boot_applications[0].digest, digest);
    let actions: Vec<&str> = claims.actions.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(actions, ["Calling EFI Application from Boot Option"]);
    let separators: Vec<usize> = claims.separators.iter().map(|s| s.event_index).collect();
    assert_eq!(separators, [4]);
    assert!(claims.unverifiable.is_empty(), "{:?}", claims.unverifiable);
}

/// GRUB measures strings into PCR 8: `grub_cmd: `, `kernel_cmdline: `, `module_cmdline: `
/// before the text in the log, the digest of the text alone with (older builds) or without
/// its NUL; GRUB 2.02 with the TPM patches logs no prefix at all. Every form is checked, and
/// a PCR 8 event in none of them is unverifiable.
#[test]
fn grub_strings_are_checked_in_every_form() {
    let base = EventLog::parse(&fixture(GOOD)).unwrap();
    let ipl = EventType::IPL;
    let events = vec![
        // 1: a command that loads nothing: verified, no claim.
        measured(
            &base,
            8,
            ipl,
            b"set timeout=5",
            b"grub_cmd: set timeout=5\0",
        ),
        // 2: the kernel command line through the command that loads the kernel, NUL hashed.
        measured(
            &base,
            8,
            ipl,
            b"linux /vmlinuz ro quiet\0",
            b"grub_cmd: linux /vmlinuz ro quiet\0",
        ),
        // 3: the same line as GRUB states it, NUL hashed.
        measured(
            &base,
            8,
            ipl,
            b"/vmlinuz ro quiet\0",
            b"kernel_cmdline: /vmlinuz ro quiet\0",
        ),
        // 4: GRUB 2.02 (TPM patches): no prefix.
        measured(
            &base,
            8,
            ipl,
            b"linux /vmlinuz single",
            b"linux /vmlinuz single\0",
        ),
        // 5: a module command line (Xen dom0).
        measured(
            &base,
            8,
            ipl,
            b"/xen-dom0 console=hvc0",
            b"module_cmdline: /xen-dom0 console=hvc0\0",
        ),
        // 6: a command line whose digest is of something else.
        measured(
            &base,
            8,
            ipl,
            b"/vmlinuz init=/bin/sh",
            b"kernel_cmdline: /vmlinuz ro quiet\0",
        ),
        // 7: binary data, labelled as something no claim reads.
        measured(&base, 8, EventType::POST_CODE, b"\x01\x02\x03", b"\x01\x02"),
        // 8: a NUL inside the text.
        measured(&base, 8, ipl, b"set a\0b", b"grub_cmd: set a\0b\0"),
    ];
    let original = fixture(GOOD);
    let presented = edited(&original, |all| {
        all.truncate(1);
        all.extend(events);
    });
    let claims = claims_against(&presented, &quote_of(&presented));
    let lines: Vec<(usize, String, &str)> = claims
        .kernel_command_lines
        .iter()
        .map(|c| (c.event_index, source(c.source), c.text.as_str()))
        .collect();
    let loader = "grub_loader_command".to_owned();
    assert_eq!(
        lines,
        [
            (2, loader.clone(), "/vmlinuz ro quiet"),
            (3, "grub".to_owned(), "/vmlinuz ro quiet"),
            (4, loader, "/vmlinuz single"),
            (5, "grub".to_owned(), "/xen-dom0 console=hvc0"),
        ]
    );
    let unverifiable: Vec<usize> = claims.unverifiable.iter().map(|u| u.event_index).collect();
    assert_eq!(unverifiable, [6, 7, 8], "{:?}", claims.unverifiable);
    assert!(claims.unverifiable.iter().all(|u| u.pcr == 8));
}

/// The prefix GRUB logs before a string is not covered by the digest either. A grub.cfg line
/// that is the approved command line (an unknown command, but measured before GRUB looks it
/// up) relabelled `kernel_cmdline: `, and the real one relabelled `grub_cmd: `, must not hide
/// the command line the kernel got: the `linux` command that loaded it says so whatever its
/// label.
#[test]
fn swapped_grub_labels_do_not_hide_the_kernel_command_line() {
    let original = fixture(GOOD);
    let log = EventLog::parse(&original).unwrap();
    let loader = index_of(&log, 8, b"grub_cmd: linux ");
    let cmdline = index_of(&log, 8, b"kernel_cmdline: ");
    let good = String::from_utf8(log.events()[cmdline].data[16..].to_vec()).unwrap();
    let good = good.trim_end_matches('\0').to_owned();
    let evil = format!("{good} init=/bin/sh");
    let grub = |label: &str, text: &str| {
        measured(
            &log,
            8,
            EventType::IPL,
            text.as_bytes(),
            format!("{label}{text}\0").as_bytes(),
        )
    };
    // What the TPM saw: the approved line run as a command, then the evil kernel loaded.
    let measured_log = edited(&original, |events| {
        events[loader] = grub("grub_cmd: ", &format!("linux {evil}"));
        events[cmdline] = grub("kernel_cmdline: ", &evil);
        events.insert(loader, grub("grub_cmd: ", &good));
    });
    let quoted = quote_of(&measured_log);
    let measured_bytes = encode(&original, &log, measured_log.events());
    // What the log says: the labels of the approved line and the real command line swapped.
    let presented = edited(&measured_bytes, |events| {
        events[loader].data = format!("kernel_cmdline: {good}\0").into_bytes();
        events[cmdline + 1].data = format!("grub_cmd: {evil}\0").into_bytes();
    });
    let claims = claims_against(&presented, &quoted);
    let texts: Vec<&str> = claims
        .kernel_command_lines
        .iter()
        .map(|c| c.text.as_str())
        .collect();
    assert!(texts.contains(&evil.as_str()), "{texts:?}");
}

/// Root on a Secure-Boot-off machine extends a `SecureBoot = 1` configuration event into
/// PCR 7 after boot and appends it to the log: it is after the separator, so it is not
/// configuration, and the claim stays off.
#[test]
fn secure_boot_configuration_after_the_separator_is_not_configuration() {
    let original = fixture(SECURE_BOOT_OFF);
    let log = EventLog::parse(&original).unwrap();
    assert_eq!(
        claims_against(&log, &quoted_from_expected(SECURE_BOOT_OFF)).secure_boot,
        Some(false)
    );
    let on = global_variable("SecureBoot", &[1]);
    let presented = edited(&original, |events| {
        events.push(measured(
            &log,
            7,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &on,
            &on,
        ));
    });
    let appended = presented.events().len() - 1;
    let claims = claims_against(&presented, &quote_of(&presented));
    assert_eq!(claims.secure_boot, Some(false));
    assert!(
        claims
            .unverifiable
            .iter()
            .any(|u| u.event_index == appended && u.pcr == 7),
        "{:?}",
        claims.unverifiable
    );
    assert!(
        !claims
            .secure_boot_variables
            .iter()
            .any(|v| v.event_index == appended)
    );
}

/// A second SecureBoot measurement before the separator: neither value wins.
#[test]
fn a_second_secure_boot_measurement_makes_the_state_unknown() {
    let original = fixture(SECURE_BOOT_OFF);
    let log = EventLog::parse(&original).unwrap();
    let first = index_of(&log, 7, &global_variable("SecureBoot", &[0])[..24]);
    let on = global_variable("SecureBoot", &[1]);
    let presented = edited(&original, |events| {
        let second = measured(&log, 7, EventType::EFI_VARIABLE_DRIVER_CONFIG, &on, &on);
        events.insert(first + 1, second);
    });
    let claims = claims_against(&presented, &quote_of(&presented));
    assert_eq!(claims.secure_boot, None);
    assert!(
        claims
            .unverifiable
            .iter()
            .any(|u| u.event_index == first + 1 && u.pcr == 7),
        "{:?}",
        claims.unverifiable
    );
}

/// A PCR 7 event of a type PCR 7 does not hold (an authority relabelled) is unverifiable, not
/// skipped: it could be configuration.
#[test]
fn an_unknown_event_in_pcr7_is_unverifiable() {
    let original = fixture(GOOD);
    let log = EventLog::parse(&original).unwrap();
    let authority = log
        .events()
        .iter()
        .find(|e| e.pcr == 7 && e.event_type == EventType::EFI_VARIABLE_AUTHORITY)
        .unwrap()
        .index;
    let presented = edited(&original, |events| {
        events[authority].event_type = EventType::POST_CODE;
    });
    let claims = claims_against(&presented, &quoted_from_expected(GOOD));
    assert!(
        claims
            .unverifiable
            .iter()
            .any(|u| u.event_index == authority && u.event_type == EventType::POST_CODE),
        "{:?}",
        claims.unverifiable
    );
}

/// Several PCR 7 events relabelled at once, on a Secure-Boot-off machine: the real separator
/// as an EV_EFI_ACTION (so configuration would never end), the real `SecureBoot=0` as an
/// authority (so it would not count), and a forged `SecureBoot=1` configuration event
/// extended by root afterwards. Content decides, not labels: the separator still ends the
/// configuration, the relabelled variable still counts, and Secure Boot is never reported on.
#[test]
fn relabelling_the_pcr7_separator_and_secure_boot_variable_together_hides_nothing() {
    let original = fixture(SECURE_BOOT_OFF);
    let log = EventLog::parse(&original).unwrap();
    let real = index_of(&log, 7, &global_variable("SecureBoot", &[0])[..24]);
    let separator = log
        .events()
        .iter()
        .find(|e| e.pcr == 7 && e.event_type == EventType::SEPARATOR)
        .unwrap()
        .index;
    let on = global_variable("SecureBoot", &[1]);
    let presented = edited(&original, |events| {
        events[real].event_type = EventType::EFI_VARIABLE_AUTHORITY;
        events[separator].event_type = EventType::EFI_ACTION;
        events.push(measured(
            &log,
            7,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            &on,
            &on,
        ));
    });
    let forged = presented.events().len() - 1;
    let claims = claims_against(&presented, &quote_of(&presented));
    assert_ne!(claims.secure_boot, Some(true), "{claims:?}");
    assert_eq!(claims.secure_boot, None, "a relabelled SecureBoot variable");
    for index in [real, forged] {
        assert!(
            claims
                .unverifiable
                .iter()
                .any(|u| u.event_index == index && u.pcr == 7),
            "event {index}: {:?}",
            claims.unverifiable
        );
    }
    assert!(
        claims
            .separators
            .iter()
            .any(|s| s.event_index == separator && s.pcr == 7),
        "the relabelled separator still ends the configuration: {:?}",
        claims.separators
    );
}

/// Without a proven PCR 7 separator the configuration never ended: Secure Boot is unknown.
#[test]
fn without_a_pcr7_separator_secure_boot_is_unknown() {
    let original = fixture(SECURE_BOOT_OFF);
    let presented = edited(&original, |events| {
        events.retain(|e| !(e.pcr == 7 && e.event_type == EventType::SEPARATOR));
    });
    let claims = claims_against(&presented, &quote_of(&presented));
    assert_eq!(claims.secure_boot, None, "{claims:?}");
    assert!(claims.separators_missing.contains(&7));
}
