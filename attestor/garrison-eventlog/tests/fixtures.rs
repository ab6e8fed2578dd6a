//! Data-driven tests over real event logs in `testdata/`.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "clippy.toml exempts #[test] fns but not these helpers; a broken fixture should fail loudly"
)]

use std::collections::BTreeMap;

use base64::Engine as _;
use garrison_eventlog::claims::{CommandLineSource, SeparatorKind};
use garrison_eventlog::{
    BootClaims, EventLog, EventLogError, HashAlg, LogFormat, LogPrefix, PcrValues, ReplayReport,
    VerifiedPcrs,
};
use serde_json::Value;

fn testdata(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(testdata(&format!("eventlogs/{name}"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(testdata("eventlogs/expected-pcrs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(testdata("eventlogs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(names.len() >= 14, "fixtures missing: {names:?}");
    names
}

/// The PCR values expected-pcrs.json lists for a log (from tpm2_eventlog or the machine's TPM).
fn quoted_from_expected(name: &str) -> PcrValues {
    let mut quoted = PcrValues::new();
    let all = expected();
    let banks = all[name]["pcrs"].as_object().unwrap();
    for (bank, pcrs) in banks {
        let alg = HashAlg::from_name(bank).unwrap();
        for (index, value) in pcrs.as_object().unwrap() {
            let value = hex::decode(value.as_str().unwrap()).unwrap();
            quoted.insert(alg, index.parse().unwrap(), value).unwrap();
        }
    }
    quoted
}

fn verified_claims(name: &str) -> BootClaims {
    let log = EventLog::parse(&fixture(name)).unwrap();
    let report = ReplayReport::compare(&log, &quoted_from_expected(name));
    assert!(report.all_match(), "{name}: {report}");
    BootClaims::extract(&log, &report.verified)
}

#[test]
fn every_fixture_replays_to_expected_pcrs() {
    let expected = expected();
    let mut checked = 0;
    for name in fixture_names() {
        let entry = expected
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no entry in expected-pcrs.json"));
        let log = EventLog::parse(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let replayed = log.replay();
        let Some(banks) = entry.get("pcrs").and_then(Value::as_object) else {
            continue;
        };
        for (bank, pcrs) in banks {
            let alg = HashAlg::from_name(bank).unwrap();
            for (index, value) in pcrs.as_object().unwrap() {
                let got = replayed.value(alg, index.parse().unwrap()).map(hex::encode);
                assert_eq!(got.as_deref(), value.as_str(), "{name} {bank} PCR {index}");
                checked += 1;
            }
            // A tpm2_eventlog replay lists every PCR the log extends; a TPM quote may list fewer.
            let from_replay = entry["source"]
                .as_str()
                .unwrap()
                .starts_with("tpm2_eventlog");
            assert!(
                !from_replay
                    || replayed.iter().filter(|(a, _, _)| *a == alg).count()
                        == pcrs.as_object().unwrap().len(),
                "{name} {bank}"
            );
        }
        // tpm2_eventlog 5.4 reports 0 events for SHA-1 format logs; it counts every event,
        // Spec ID header included, for crypto-agile ones.
        match entry.get("events").and_then(Value::as_u64) {
            Some(0) => assert_eq!(log.format(), LogFormat::Sha1, "{name}"),
            Some(count) => assert_eq!(log.events().len() as u64, count, "{name}"),
            None => {}
        }
    }
    assert!(checked >= 222, "only {checked} PCR values checked");
}

#[test]
fn banks_follow_the_spec_id_header() {
    let log = EventLog::parse(&fixture("tpm2tools-event-gce-ubuntu-2104-log.bin")).unwrap();
    assert_eq!(log.format(), LogFormat::CryptoAgile);
    assert_eq!(
        log.banks(),
        vec![HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384]
    );
    assert_eq!(log.spec_id().unwrap().uintn_size, 2);
    let log = EventLog::parse(&fixture("tpm2tools-event-uefi-sha1-log.bin")).unwrap();
    assert_eq!(
        (log.format(), log.banks()),
        (LogFormat::Sha1, vec![HashAlg::Sha1])
    );
}

#[test]
fn short_no_action_stub_parses_as_a_startup_locality() {
    let log = EventLog::parse(&fixture("goattest-short_no_action_eventlog.bin")).unwrap();
    assert_eq!(log.events().len(), 1);
    assert_eq!(log.format(), LogFormat::Sha1);
    assert_eq!(log.startup_locality(), Some(3));
    let replayed = log.replay();
    assert_eq!(
        replayed.iter().count(),
        0,
        "EV_NO_ACTION must not be extended"
    );
    let mut pcr0 = vec![0u8; 20];
    pcr0[19] = 3;
    assert_eq!(replayed.value_or_reset(HashAlg::Sha1, 0), Some(pcr0));
}

#[test]
fn no_action_event_with_pcr_index_ffffffff_is_accepted() {
    let log = EventLog::parse(&fixture("goattest-option_rom_eventlog.bin")).unwrap();
    assert!(
        log.events()
            .iter()
            .any(|e| e.pcr == u32::MAX && !e.is_extended())
    );
}

#[test]
fn windows_quote_log_replays_to_all_24_quoted_sha1_pcrs() {
    let text =
        std::fs::read_to_string(testdata("quotes/goattest-windows_gcp_shielded_vm.json")).unwrap();
    let quote: Value = serde_json::from_str(&text).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(quote["Log"]["Raw"].as_str().unwrap()).unwrap();
    let log = EventLog::parse(&raw).unwrap();
    let mut quoted = PcrValues::new();
    for pcr in quote["Log"]["PCRs"].as_array().unwrap() {
        assert_eq!(pcr["DigestAlg"], 3, "Go crypto.SHA1");
        let value = b64.decode(pcr["Digest"].as_str().unwrap()).unwrap();
        quoted
            .insert(HashAlg::Sha1, pcr["Index"].as_u64().unwrap() as u32, value)
            .unwrap();
    }
    let report = ReplayReport::compare(&log, &quoted);
    assert!(report.all_match(), "{report}");
    assert_eq!(report.verified.iter().count(), 24);
}

#[test]
fn divergence_names_the_event_after_which_the_log_runs_on() {
    let name = "tpm2tools-event-gce-ubuntu-2104-log.bin";
    let bytes = fixture(name);
    let log = EventLog::parse(&bytes).unwrap();
    let pcr8: Vec<_> = log
        .events()
        .iter()
        .filter(|e| e.pcr == 8 && e.is_extended())
        .collect();
    assert!(pcr8.len() > 4);
    // A TPM that saw only the log up to the third PCR 8 event.
    let cut = pcr8[3].offset;
    let shorter = EventLog::parse(&bytes[..cut]).unwrap();
    let mut quoted = quoted_from_expected(name);
    let early = shorter.replay().value(HashAlg::Sha256, 8).unwrap().to_vec();
    quoted.insert(HashAlg::Sha256, 8, early).unwrap();
    quoted.insert(HashAlg::Sha384, 9, vec![0x42; 48]).unwrap();

    let report = ReplayReport::compare(&log, &quoted);
    assert_eq!(report.divergences.len(), 2, "{report}");
    let pcr8_div = &report.divergences[0];
    assert_eq!((pcr8_div.alg, pcr8_div.pcr), (HashAlg::Sha256, 8));
    assert_eq!(
        pcr8_div.prefix,
        LogPrefix::MatchesAfterEvent {
            event_index: Some(pcr8[2].index),
            extra_events: pcr8.len() - 3
        }
    );
    assert_eq!(
        pcr8_div.extended_by,
        pcr8.iter().map(|e| e.index).collect::<Vec<_>>()
    );
    let text = pcr8_div.to_string();
    assert!(
        text.contains("PCR 8 (sha256)")
            && text.contains(&format!("after event #{}", pcr8[2].index)),
        "{text}"
    );
    assert_eq!(report.divergences[1].prefix, LogPrefix::NoPrefixMatches);
    assert!(report.divergences[1].to_string().contains("no prefix"));
    assert!(!report.verified.contains(HashAlg::Sha256, 8));
    assert!(report.verified.contains(HashAlg::Sha1, 8));
}

#[test]
fn quoted_bank_missing_from_log_diverges() {
    let log = EventLog::parse(&fixture("tpm2tools-event-sd-boot-fedora37.bin")).unwrap();
    let mut quoted = PcrValues::new();
    quoted.insert(HashAlg::Sha1, 0, vec![0; 20]).unwrap();
    let report = ReplayReport::compare(&log, &quoted);
    assert_eq!(report.divergences[0].prefix, LogPrefix::BankNotInLog);
    assert!(matches!(
        quoted.insert(HashAlg::Sha256, 0, vec![0; 20]),
        Err(EventLogError::QuotedDigestLength {
            expected: 32,
            got: 20,
            ..
        })
    ));
    assert!(matches!(
        quoted.insert(HashAlg::Sha1, 24, vec![0; 20]),
        Err(EventLogError::QuotedPcrIndexOutOfRange { .. })
    ));
}

#[test]
fn every_prefix_parses_only_at_event_boundaries() {
    for name in [
        "tpm2tools-event-sd-boot-fedora37.bin",
        "goattest-sb_cert_eventlog.bin",
        "tpm2tools-event-uefi-sha1-log.bin",
    ] {
        let bytes = fixture(name);
        let log = EventLog::parse(&bytes).unwrap();
        let boundaries: Vec<usize> = log
            .events()
            .iter()
            .skip(1)
            .map(|e| e.offset)
            .chain([bytes.len()])
            .collect();
        for len in 0..bytes.len() {
            match EventLog::parse(&bytes[..len]) {
                Ok(prefix) => {
                    assert!(boundaries.contains(&len), "{name}: prefix {len} parsed");
                    prefix.replay();
                }
                Err(EventLogError::Empty) => assert_eq!(len, 0),
                Err(EventLogError::Truncated {
                    offset,
                    needed,
                    available,
                    ..
                }) => {
                    assert!(
                        !boundaries.contains(&len),
                        "{name}: boundary {len} rejected"
                    );
                    assert!(
                        needed > available && offset + available == len,
                        "{name} {len}"
                    );
                }
                Err(other) => panic!("{name}: prefix {len}: unexpected {other}"),
            }
        }
    }
}

/// Flip bits and overwrite length fields across every fixture; the parser must return an
/// error or a log, and replay and claims must then run, without panicking.
#[test]
fn mutated_fixtures_never_panic() {
    let mut parsed = 0usize;
    let mut rejected = 0usize;
    for name in fixture_names() {
        let bytes = fixture(&name);
        let verify_all: VerifiedPcrs = HashAlg::ALL
            .into_iter()
            .flat_map(|alg| (0..24).map(move |pcr| (alg, pcr)))
            .collect();
        let mut run = |mutated: &[u8]| match EventLog::parse(mutated) {
            Ok(log) => {
                log.replay();
                BootClaims::extract(&log, &verify_all);
                parsed += 1;
            }
            Err(_) => rejected += 1,
        };
        let positions = (0..bytes.len().min(300)).chain((300..bytes.len()).step_by(101));
        for position in positions {
            let mut mutated = bytes.clone();
            mutated[position] ^= 1 << (position % 8);
            run(&mutated);
        }
        for position in (0..bytes.len().saturating_sub(4)).step_by(211) {
            for value in [0xFFFF_FFFFu32, 0x7FFF_FFFF, 0x0010_0001, 0] {
                let mut mutated = bytes.clone();
                mutated[position..position + 4].copy_from_slice(&value.to_le_bytes());
                run(&mutated);
            }
        }
    }
    assert!(
        parsed > 500 && rejected > 500,
        "parsed {parsed}, rejected {rejected}"
    );
}

#[test]
fn huge_declared_sizes_are_rejected_before_allocation() {
    let bytes = fixture("tpm2tools-event-gce-ubuntu-2104-log.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let second = &log.events()[1];
    // pcr(4) type(4) count(4) then sha1, sha256, sha384 digests with their alg ids.
    let size_field = second.offset + 12 + (2 + 20) + (2 + 32) + (2 + 48);
    let mut mutated = bytes.clone();
    mutated[size_field..size_field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        EventLog::parse(&mutated),
        Err(EventLogError::EventTooLarge {
            event_index: 1,
            size: 0xFFFF_FFFF,
            ..
        })
    ));
    let mut mutated = bytes.clone();
    mutated[second.offset + 8..second.offset + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        EventLog::parse(&mutated),
        Err(EventLogError::DigestCountMismatch {
            expected: 3,
            got: u32::MAX,
            ..
        })
    ));
    let mut mutated = bytes;
    mutated[second.offset + 12..second.offset + 14].copy_from_slice(&0x0027u16.to_le_bytes());
    assert!(matches!(
        EventLog::parse(&mutated),
        Err(EventLogError::UnknownDigestAlgorithm { alg_id: 0x27, .. })
    ));
}

#[test]
fn limits_are_enforced() {
    let bytes = fixture("tpm2tools-event-bootorder.bin");
    assert_eq!(EventLog::parse(&[]), Err(EventLogError::Empty));
    let limits = garrison_eventlog::Limits {
        max_log_bytes: 1000,
        ..Default::default()
    };
    assert!(matches!(
        EventLog::parse_with_limits(&bytes, &limits),
        Err(EventLogError::LogTooLarge { .. })
    ));
    let limits = garrison_eventlog::Limits {
        max_events: 10,
        ..Default::default()
    };
    assert_eq!(
        EventLog::parse_with_limits(&bytes, &limits),
        Err(EventLogError::TooManyEvents { limit: 10 })
    );
    let limits = garrison_eventlog::Limits {
        max_event_data_bytes: 100,
        ..Default::default()
    };
    assert!(matches!(
        EventLog::parse_with_limits(&bytes, &limits),
        Err(EventLogError::EventTooLarge { .. })
    ));
    let limits = garrison_eventlog::Limits {
        max_algorithms: 1,
        ..Default::default()
    };
    assert!(matches!(
        EventLog::parse_with_limits(&bytes, &limits),
        Err(EventLogError::SpecIdTooManyAlgorithms { count: 2, limit: 1 })
    ));
}

/// pcrIndex, eventType, digests as (TPM_ALG_ID, bytes), data.
type RawEvent<'a> = (u32, u32, &'a [(u16, Vec<u8>)], &'a [u8]);

/// A crypto-agile log built by hand: Spec ID header with `algorithms`, then `events`.
fn agile_log(algorithms: &[(u16, u16)], events: &[RawEvent<'_>]) -> Vec<u8> {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend(0u32.to_le_bytes()); // platformClass
    spec.extend([0, 2, 0, 2]); // minor, major, errata, uintnSize
    spec.extend((algorithms.len() as u32).to_le_bytes());
    for (id, size) in algorithms {
        spec.extend(id.to_le_bytes());
        spec.extend(size.to_le_bytes());
    }
    spec.push(0); // vendorInfoSize
    let mut log = Vec::new();
    log.extend(0u32.to_le_bytes());
    log.extend(3u32.to_le_bytes());
    log.extend([0u8; 20]);
    log.extend((spec.len() as u32).to_le_bytes());
    log.extend(spec);
    for (pcr, event_type, digests, data) in events {
        log.extend(pcr.to_le_bytes());
        log.extend(event_type.to_le_bytes());
        log.extend((digests.len() as u32).to_le_bytes());
        for (id, digest) in *digests {
            log.extend(id.to_le_bytes());
            log.extend(digest);
        }
        log.extend((data.len() as u32).to_le_bytes());
        log.extend(*data);
    }
    log
}

#[test]
fn unknown_algorithms_are_skipped_by_their_header_size() {
    let digest = HashAlg::Sha256.digest(&[b"x"]);
    let digests = [(0x0027u16, vec![0xAA; 32]), (0x000B, digest.clone())];
    let bytes = agile_log(&[(0x0027, 32), (0x000B, 32)], &[(4, 0xD, &digests, b"x")]);
    let log = EventLog::parse(&bytes).unwrap();
    assert_eq!(log.banks(), vec![HashAlg::Sha256]);
    assert_eq!(log.events()[1].digests.len(), 1);
    let replayed = log.replay();
    assert_eq!(
        replayed.value(HashAlg::Sha256, 4),
        Some(HashAlg::Sha256.extend(&[0; 32], &digest).as_slice())
    );
    assert_eq!(replayed.banks().collect::<Vec<_>>(), vec![HashAlg::Sha256]);
}

#[test]
fn malformed_spec_id_headers_are_rejected() {
    let no_algs = agile_log(&[], &[]);
    assert_eq!(
        EventLog::parse(&no_algs),
        Err(EventLogError::SpecIdNoAlgorithms)
    );
    let wrong_size = agile_log(&[(0x000B, 20)], &[]);
    assert!(matches!(
        EventLog::parse(&wrong_size),
        Err(EventLogError::SpecIdDigestSizeMismatch { got: 20, .. })
    ));
    let dup = agile_log(&[(0x000B, 32), (0x000B, 32)], &[]);
    assert_eq!(
        EventLog::parse(&dup),
        Err(EventLogError::SpecIdDuplicateAlgorithm { alg_id: 0x0B })
    );
}

#[test]
fn extended_events_beyond_pcr_23_are_rejected() {
    let digests = [(0x000Bu16, vec![0; 32])];
    let bytes = agile_log(&[(0x000B, 32)], &[(24, 0xD, &digests, b"")]);
    assert!(matches!(
        EventLog::parse(&bytes),
        Err(EventLogError::PcrIndexOutOfRange {
            pcr: 24,
            event_index: 1,
            ..
        })
    ));
    let bytes = agile_log(&[(0x000B, 32)], &[(u32::MAX, 3, &digests, b"")]);
    assert!(
        EventLog::parse(&bytes).is_ok(),
        "EV_NO_ACTION is never extended"
    );
}

#[test]
fn startup_locality_sets_pcr0_start_value() {
    let digest = vec![0x11; 32];
    let mut locality = b"StartupLocality\0".to_vec();
    locality.push(3);
    let none: [(u16, Vec<u8>); 1] = [(0x000B, vec![0; 32])];
    let ext = [(0x000Bu16, digest.clone())];
    let bytes = agile_log(
        &[(0x000B, 32)],
        &[(0, 3, &none, &locality), (0, 8, &ext, b"v")],
    );
    let log = EventLog::parse(&bytes).unwrap();
    let mut start = vec![0u8; 32];
    start[31] = 3;
    assert_eq!(
        log.replay().value(HashAlg::Sha256, 0),
        Some(HashAlg::Sha256.extend(&start, &digest).as_slice())
    );
    let late = agile_log(
        &[(0x000B, 32)],
        &[(0, 8, &ext, b"v"), (0, 3, &none, &locality)],
    );
    assert_eq!(
        EventLog::parse(&late),
        Err(EventLogError::StartupLocalityAfterPcr0Extend { event_index: 2 })
    );
}

#[test]
fn claims_coreos_without_secure_boot() {
    let claims = verified_claims("goattest-coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
    assert_eq!(claims.secure_boot, Some(false));
    let names: Vec<&str> = claims
        .secure_boot_variables
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["PK", "KEK", "db", "dbx"]);
    assert!(
        claims
            .secure_boot_variables
            .iter()
            .all(|v| v.bank == HashAlg::Sha256 && v.digest.len() == 64)
    );
    // The `linux` command (event 69) and GRUB's `kernel_cmdline` (event 71) state the same
    // command line.
    let sources: Vec<(usize, u32, CommandLineSource)> = claims
        .kernel_command_lines
        .iter()
        .map(|c| (c.event_index, c.pcr, c.source))
        .collect();
    assert_eq!(
        sources,
        [
            (69, 8, CommandLineSource::GrubLoaderCommand),
            (71, 8, CommandLineSource::Grub)
        ]
    );
    let cmdline = &claims.kernel_command_lines[1];
    assert!(cmdline.text.contains("ostree="), "{}", cmdline.text);
    assert_eq!(claims.kernel_command_lines[0].text, cmdline.text);
    assert!(
        claims.separators_missing.is_empty(),
        "{:?}",
        claims.separators_missing
    );
    assert!(
        claims
            .separators
            .iter()
            .filter(|s| s.pcr <= 7)
            .all(|s| s.kind == SeparatorKind::Normal)
    );
    assert_eq!(claims.separators.iter().filter(|s| s.pcr <= 7).count(), 8);
    assert!(!claims.boot_applications.is_empty());
    assert_eq!(
        (claims.debug_mode, claims.dma_protection_disabled),
        (Some(false), Some(false))
    );
    assert!(
        claims
            .actions
            .iter()
            .any(|a| a.text == "Exit Boot Services Invocation")
    );
    assert!(claims.unverifiable.is_empty(), "{:?}", claims.unverifiable);
}

#[test]
fn claims_secure_boot_authorities_carry_certificates() {
    let claims = verified_claims("goattest-sb_cert_eventlog.bin");
    assert_eq!(claims.secure_boot, Some(true));
    assert!(!claims.authorities.is_empty());
    let db = claims
        .authorities
        .iter()
        .find(|a| a.variable == "db")
        .expect("db authority");
    let cert = db
        .certificate
        .as_ref()
        .expect("db authority is a certificate");
    assert!(cert.subject.contains("Microsoft"), "{}", cert.subject);
    assert_eq!(cert.sha256.len(), 64);
    // This shim's "Shim" vendor-certificate events do not hash to their logged data (neither
    // the whole UEFI_VARIABLE_DATA nor the certificate), so they are reported, not believed.
    assert!(claims.authorities.iter().all(|a| a.variable != "Shim"));
    let unverifiable: Vec<usize> = claims.unverifiable.iter().map(|u| u.event_index).collect();
    assert_eq!(unverifiable, [12, 14], "{:?}", claims.unverifiable);
    assert!(
        claims
            .unverifiable
            .iter()
            .all(|u| u.pcr == 7 && u.reason.contains("authority"))
    );
}

#[test]
fn claims_option_rom_log_lists_driver_loads() {
    let claims = verified_claims("goattest-option_rom_eventlog.bin");
    assert_eq!(claims.secure_boot, Some(true));
    assert!(!claims.drivers.is_empty());
    assert!(
        claims
            .drivers
            .iter()
            .all(|d| d.pcr == 2 && d.bank == HashAlg::Sha1 && d.digest.len() == 40)
    );
    assert!(
        claims
            .drivers
            .iter()
            .any(|d| d.device_path_unverified.is_some()),
        "{:?}",
        claims.drivers
    );
}

#[test]
fn claims_systemd_boot_command_lines() {
    let claims = verified_claims("tpm2tools-event-sd-boot-fedora37.bin");
    assert!(
        claims
            .kernel_command_lines
            .iter()
            .all(|c| c.source == CommandLineSource::SystemdBoot && c.pcr == 12)
    );
    assert_eq!(
        claims.kernel_command_lines[0].text,
        " console=ttyS0 console=tty0 efi=debug "
    );
    let claims = verified_claims("tpm2tools-event-arch-linux.bin");
    assert!(
        claims.kernel_command_lines[0]
            .text
            .contains("cryptdevice=UUID="),
        "{:?}",
        claims.kernel_command_lines
    );
}

#[test]
fn claims_boot_application_paths_are_decoded() {
    let claims = verified_claims("tpm2tools-event-gce-ubuntu-2104-log.bin");
    let paths: Vec<&str> = claims
        .boot_applications
        .iter()
        .filter_map(|a| a.device_path_unverified.as_deref())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("\\EFI\\ubuntu\\grubx64.efi")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.contains("HD(15,")), "{paths:?}");
}

#[test]
fn claims_need_verified_pcrs() {
    let log = EventLog::parse(&fixture("goattest-sb_cert_eventlog.bin")).unwrap();
    assert_eq!(
        BootClaims::extract(&log, &VerifiedPcrs::new()),
        BootClaims::default()
    );
    // A diverging PCR 7 (quote from another machine) yields no PCR 7 claims.
    let mut quoted = quoted_from_expected("goattest-sb_cert_eventlog.bin");
    for alg in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384] {
        quoted.insert(alg, 7, vec![7; alg.digest_len()]).unwrap();
    }
    let report = ReplayReport::compare(&log, &quoted);
    let claims = BootClaims::extract(&log, &report.verified);
    assert_eq!((claims.secure_boot, claims.debug_mode), (None, None));
    assert!(claims.authorities.is_empty() && !claims.boot_applications.is_empty());
}

#[test]
fn tampered_event_data_is_not_believed() {
    // Flip the SecureBoot variable's value byte: the digest, and so the replay, is unchanged.
    let name = "goattest-coreos_36_shielded_vm_no_secure_boot_eventlog.bin";
    let mut bytes = fixture(name);
    let log = EventLog::parse(&bytes).unwrap();
    let event = log
        .events()
        .iter()
        .find(|e| e.data.ends_with(b"S\0e\0c\0u\0r\0e\0B\0o\0o\0t\0\0"))
        .unwrap();
    let end = log.events()[event.index + 1].offset;
    bytes[end - 1] = 1;
    let tampered = EventLog::parse(&bytes).unwrap();
    let report = ReplayReport::compare(&tampered, &quoted_from_expected(name));
    assert!(report.all_match(), "data is not covered by the PCRs");
    let claims = BootClaims::extract(&tampered, &report.verified);
    assert_eq!(claims.secure_boot, None);
    assert_eq!(claims.unverifiable[0].event_index, event.index);
}

#[test]
fn events_serialize_for_json_output() {
    let log = EventLog::parse(&fixture("tpm2tools-event-sd-boot-fedora37.bin")).unwrap();
    let json = serde_json::to_value(log.events()).unwrap();
    let ebs = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["text"] == "Exit Boot Services Invocation")
        .unwrap();
    assert_eq!(ebs["type"], "EV_EFI_ACTION");
    assert_eq!(ebs["digests"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(json[0]["type"], "EV_NO_ACTION");
    let claims =
        serde_json::to_value(verified_claims("tpm2tools-event-sd-boot-fedora37.bin")).unwrap();
    assert_eq!(claims["kernel_command_lines"][0]["source"], "systemd_boot");
}
