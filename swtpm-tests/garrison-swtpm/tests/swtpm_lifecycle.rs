//! The swtpm harness itself: provisioning, private local CA, restart, kill, parallel starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use garrison_swtpm::{Swtpm, SwtpmOptions};

#[test]
fn start_provisions_private_local_ca_and_answers() {
    let swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    assert!(swtpm.tcti().starts_with("swtpm:host=127.0.0.1,port="));
    let ca = swtpm.manufacturer_ca_pem().unwrap();
    assert_eq!(
        ca.matches("BEGIN CERTIFICATE").count(),
        2,
        "intermediate + root"
    );
    assert!(swtpm.state_dir().join("localca/signkey.pem").is_file());
    assert!(swtpm.state_dir().join("tpm/tpm2-00.permall").is_file());
}

#[test]
fn restart_keeps_state_and_kill_stops_process() {
    let mut swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    let root_before = swtpm.manufacturer_root_pem().unwrap();
    swtpm.restart().unwrap();
    assert!(swtpm.pid().is_some());
    assert_eq!(swtpm.manufacturer_root_pem().unwrap(), root_before);
    swtpm.kill().unwrap();
    assert!(swtpm.pid().is_none());
    swtpm.restart().unwrap();
    assert!(swtpm.pid().is_some());
}

#[test]
fn keep_dir_is_reused_without_reprovisioning() {
    let dir = tempfile::tempdir().unwrap();
    let options = SwtpmOptions::keep_dir(dir.path().join("tpm-node"));
    let root_first = {
        let swtpm = Swtpm::start(&options).unwrap();
        swtpm.manufacturer_root_pem().unwrap()
    };
    let swtpm = Swtpm::start(&options).unwrap();
    assert_eq!(swtpm.manufacturer_root_pem().unwrap(), root_first);
    assert_eq!(swtpm.state_dir(), dir.path().join("tpm-node"));
}

#[test]
fn parallel_instances_get_distinct_ports() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| Swtpm::start(&SwtpmOptions::default()).unwrap()))
        .collect();
    let tpms: Vec<Swtpm> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = tpms.iter().map(Swtpm::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
}
