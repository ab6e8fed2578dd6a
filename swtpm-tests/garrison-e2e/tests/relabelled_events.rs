//! Issue 12, item 1, end to end: a node whose TPM measured an unapproved boot application
//! (PCR 4) and an evil kernel command line (PCR 8) relabels those events EV_POST_CODE in
//! the log it sends. The event type is in no digest, so the log still replays to the TPM's
//! quoted PCRs; the claims must still show both events, and the strict policy refuse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_eventlog::{Event, EventDigest, EventLog, EventType};
use garrison_log::RecordKind;

const EVIL_APPLICATION: &[u8] = b"an EFI application no policy approved";

/// An event as a TPM measures it: `preimage` hashed in every bank of `log`.
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

/// A crypto-agile log: `original`'s Spec ID header event, then `events` (#1 on).
fn encode(original: &[u8], log: &EventLog, events: &[Event]) -> Vec<u8> {
    let mut out = original[..log.events()[1].offset].to_vec();
    for event in &events[1..] {
        out.extend(event.pcr.to_le_bytes());
        out.extend(event.event_type.0.to_le_bytes());
        out.extend(u32::try_from(event.digests.len()).unwrap().to_le_bytes());
        for digest in &event.digests {
            out.extend(digest.alg.tpm_alg_id().to_le_bytes());
            out.extend(&digest.digest);
        }
        out.extend(u32::try_from(event.data.len()).unwrap().to_le_bytes());
        out.extend(&event.data);
    }
    out
}

/// The approved RHEL boot, then an unapproved application and a second `linux` command with
/// `init=/bin/sh` (what the TPM measured); and the same log with the application and the
/// `kernel_cmdline` event labelled EV_POST_CODE (what the node sends). Also the evil line.
fn attack_logs() -> (Vec<u8>, Vec<u8>, String) {
    let good_log = garrison_testbed::GOOD_LOG;
    let log = EventLog::parse(good_log).unwrap();
    let cmdline = log
        .events()
        .iter()
        .find(|e| e.pcr == 8 && e.data.starts_with(b"kernel_cmdline: "))
        .unwrap();
    let approved = std::str::from_utf8(&cmdline.data[16..]).unwrap();
    let evil = format!("{} init=/bin/sh", approved.trim_end_matches('\0'));
    let mut events = log.events().to_vec();
    let application = EventType::EFI_BOOT_SERVICES_APPLICATION;
    events.push(measured(
        &log,
        4,
        application,
        EVIL_APPLICATION,
        b"\\EFI\\evil.efi",
    ));
    let command = format!("linux {evil}");
    let command_data = format!("grub_cmd: {command}\0");
    events.push(measured(
        &log,
        8,
        EventType::IPL,
        command.as_bytes(),
        command_data.as_bytes(),
    ));
    let line_data = format!("kernel_cmdline: {evil}\0");
    events.push(measured(
        &log,
        8,
        EventType::IPL,
        evil.as_bytes(),
        line_data.as_bytes(),
    ));
    let measured_log = encode(good_log, &log, &events);
    let count = events.len();
    events[count - 3].event_type = EventType::POST_CODE;
    events[count - 1].event_type = EventType::POST_CODE;
    (measured_log, encode(good_log, &log, &events), evil)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelled_measurements_are_refused_by_the_strict_policy() {
    let (measured_log, presented, evil) = attack_logs();
    let node = NodeSpec {
        name: "node-1",
        log: Box::leak(measured_log.into_boxed_slice()),
        ek_trusted: true,
    };
    let site = Running::start(&[node], "").await;
    // The TPM's PCRs hold the evil boot; the agent sends the relabelled log.
    let log_path = site.node("node-1").dir.join("binary_bios_measurements");
    std::fs::write(&log_path, &presented).unwrap();

    let err = garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .expect_err("a node that booted an unapproved application and command line");
    assert_eq!(reason(&err), "policy-deny");

    let records = site.records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0].record;
    assert_eq!(record.kind, RecordKind::Reject);
    assert!(record.cert_serial.is_none());
    let digest = hex::encode(garrison_eventlog::HashAlg::Sha256.digest(&[EVIL_APPLICATION]));
    let why = record.reasons.join("\n");
    assert!(
        why.contains(&format!("boot application sha256:{digest}")),
        "{why}"
    );
    assert!(
        why.contains(&format!("is not on the allow-list: {evil}")),
        "{why}"
    );
    site.stop().await;
}
