//! Drafting allow-lists and inputs from a known-good machine's event log.
//!
//! Everything here treats every replayed PCR as verified: that is only sound for a log taken
//! from a machine the operator trusts (a golden image), never for evidence from the field,
//! where `BootClaims` must come from PCRs that matched a verified quote.

use std::collections::BTreeMap;

use garrison_eventlog::{BootClaims, EventLog, ReplayedPcrs, VerifiedPcrs};
use serde_json::{Value as Json, json};

/// Boot claims and PCRs of a trusted log, every replayed PCR taken as verified.
pub fn trusted_claims(log: &EventLog) -> (BootClaims, ReplayedPcrs) {
    let replayed = ReplayedPcrs::replay(log);
    let verified: VerifiedPcrs = replayed
        .iter()
        .map(|(alg, index, _)| (alg, index))
        .collect();
    (BootClaims::extract(log, &verified), replayed)
}

/// `pcrs` input section: bank → PCR index (decimal string) → hex value.
pub fn pcrs_section(replayed: &ReplayedPcrs) -> Json {
    let mut banks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (alg, index, value) in replayed.iter() {
        banks
            .entry(alg.name().to_owned())
            .or_default()
            .insert(index.to_string(), hex::encode(value));
    }
    json!(banks)
}

/// A draft `data.json` for the strict policy: this machine's boot applications and kernel
/// command lines as the allow-lists, its PCRs as golden-value candidates (not enforced until
/// moved into `golden_pcrs`), Secure Boot required.
pub fn draft_strict_data(claims: &BootClaims, replayed: &ReplayedPcrs) -> Json {
    let boot_applications: BTreeMap<String, String> = claims
        .boot_applications
        .iter()
        .map(|app| {
            let key = format!("{}:{}", app.bank.name(), app.digest);
            let note = app
                .device_path_unverified
                .clone()
                .unwrap_or_else(|| format!("event {}", app.event_index));
            (key, note)
        })
        .collect();
    let command_lines: BTreeMap<String, String> = claims
        .kernel_command_lines
        .iter()
        .map(|c| {
            (
                c.text.clone(),
                format!("event {} (PCR {})", c.event_index, c.pcr),
            )
        })
        .collect();
    let candidates: BTreeMap<String, BTreeMap<String, String>> = pcrs_for(replayed, 0..=7);
    json!({
        "strict": {
            "require_secure_boot": true,
            "trusted_ek_manufacturers": {},
            "boot_applications": boot_applications,
            "kernel_command_lines": command_lines,
            "golden_pcrs": {},
            "golden_pcrs_candidates": candidates,
            "ttl_seconds": 3600,
            "disconnected_ttl_seconds": 900
        }
    })
}

fn pcrs_for(
    replayed: &ReplayedPcrs,
    range: std::ops::RangeInclusive<u32>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut banks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (alg, index, value) in replayed.iter().filter(|(_, i, _)| range.contains(i)) {
        banks
            .entry(alg.name().to_owned())
            .or_default()
            .insert(index.to_string(), hex::encode(value));
    }
    banks
}

/// A complete, realistic policy input for this log: its boot claims and PCRs, with the
/// `tpm`, `node`, `site` and `request` sections filled with the placeholder values given.
/// For case files and benchmarks; the attestor builds real inputs from verified evidence.
pub fn sample_input(claims: &BootClaims, replayed: &ReplayedPcrs, site: &str, time: &str) -> Json {
    json!({
        "tpm": {
            "ek_sha256": "5f1b1e2a4c3d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "ek_cert_issuer": "CN=Example TPM Manufacturer CA",
            "ek_cert_serial": "0a1b2c3d",
            "manufacturer": "id:53544D20",
            "firmware_version": "1.38",
            "ak_algorithm": "ecc-nist-p256",
            "clock": 123456789,
            "reset_count": 4,
            "restart_count": 0
        },
        "pcrs": pcrs_section(replayed),
        "boot": claims,
        "node": { "asserted": { "hostname": "node-1", "serial": "SN-0001" } },
        "site": { "id": site, "connected": true, "bundle_sequence": 1 },
        "request": { "kind": "enroll", "time": time }
    })
}
