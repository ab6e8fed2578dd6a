//! Drafting allow-lists and inputs from a known-good machine's event log.
//!
//! Everything here treats every replayed PCR as verified: that is only sound for a log taken
//! from a machine the operator trusts (a golden image), never for evidence from the field,
//! where `BootClaims` must come from PCRs that matched a verified quote.

use std::collections::BTreeMap;

use garrison_eventlog::{BootClaims, EventLog, ReplayedPcrs, VerifiedPcrs};
use serde_json::{Value as Json, json};
use time::OffsetDateTime;

use crate::{
    AkAlgorithm, EkFacts, FirmwareVersion, NodeFacts, PcrsSection, PolicyError, PolicyInput,
    RequestFacts, SiteFacts, TpmFacts,
};

/// Boot claims and PCRs of a trusted log, every replayed PCR taken as verified.
pub fn trusted_claims(log: &EventLog) -> (BootClaims, ReplayedPcrs) {
    let replayed = ReplayedPcrs::replay(log);
    let verified: VerifiedPcrs = replayed
        .iter()
        .map(|(alg, index, _)| (alg, index))
        .collect();
    (BootClaims::extract(log, &verified), replayed)
}

/// `pcrs` input section of a trusted log: every replayed PCR.
pub fn pcrs_section(replayed: &ReplayedPcrs) -> PcrsSection {
    PcrsSection::from_values(replayed.iter())
}

/// A draft `data.json` for the strict policy: this machine's boot applications and kernel
/// command lines as the allow-lists, its PCRs as golden-value candidates (not enforced until
/// moved into `golden_pcrs`), Secure Boot required. Its `ear` section declares what the
/// strict policy's allow vouches for in attestation results (`garrison-ear`): the boot
/// configuration (Secure Boot, debug mode, kernel command lines, golden PCRs) and the boot
/// executables (allow-listed boot applications).
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
        "ear": { "appraises": ["configuration", "executables"] },
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

/// The facts of a sample input: placeholder TPM facts (an ECC P-256 AK, firmware 1.38, an
/// EK certificate from `CN=Example TPM Manufacturer CA`, manufacturer `id:53544D20`), a node
/// asserting `node-1` / `SN-0001`, `site` without a hub (not connected, as every site is
/// until the hub exists), bundle sequence 1, an enrollment at `time`. Built with the same
/// types and constructors as the attestor's inputs, so formats cannot drift.
pub fn sample_facts(site: &str, time: OffsetDateTime) -> PolicyInput {
    PolicyInput {
        tpm: TpmFacts {
            ek: EkFacts {
                ek_sha256: "5f1b1e2a4c3d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
                    .to_owned(),
                ek_cert_issuer: Some("CN=Example TPM Manufacturer CA".to_owned()),
                ek_cert_serial: Some("0a1b2c3d".to_owned()),
                manufacturer: Some("id:53544D20".to_owned()),
            },
            firmware_version: FirmwareVersion(0x0001_0026_0000_0000),
            ak_algorithm: AkAlgorithm::EccNistP256,
            clock: 123_456_789,
            reset_count: 4,
            restart_count: 0,
        },
        node: NodeFacts {
            asserted: BTreeMap::from([
                ("hostname".to_owned(), "node-1".to_owned()),
                ("serial".to_owned(), "SN-0001".to_owned()),
            ]),
        },
        site: SiteFacts::without_hub(site, 1),
        request: RequestFacts::enroll(time),
    }
}

/// A complete, realistic policy input for this log: its boot claims and PCRs with
/// [`sample_facts`]. For case files and benchmarks; the attestor builds real inputs from
/// verified evidence with the same types.
pub fn sample_input(
    claims: &BootClaims,
    replayed: &ReplayedPcrs,
    site: &str,
    time: OffsetDateTime,
) -> Result<Json, PolicyError> {
    sample_facts(site, time).with_boot(claims, &pcrs_section(replayed))
}
