//! Did the hub witness what the site showed? The hub's cosignatures (C2SP `cosignature/v1`)
//! on a log's checkpoints, checked with witness keys certified under the root.
//!
//! A database or an archive keeps the hub's cosignature lines beside the checkpoints they
//! sign, and the certificate chains of the witness keys. Each chain must lead to the root
//! through hub CAs (`garrison_transparency::WitnessKeyCertificate`); each cosignature must
//! verify with one of those keys over its checkpoint's note.

use std::collections::{HashMap, HashSet};

use garrison_log::AttestationLog;
use garrison_transparency::{
    RevokedTarget, WitnessKeyCertificate, add_cosignature_line, hub_witness_name,
    newest_verified_list, parse_site_origin, verify_cosignature,
};
use serde::Serialize;

use crate::{AuditError, LogSource};

/// As many kept lists as the site looks at for the one it goes by.
const KEPT_LISTS_LOOKED_AT: u32 = 64;

/// What the check of a log's cosignatures found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WitnessReport {
    /// Witness key certificates that chain to the root.
    pub witness_keys: usize,
    /// Cosignatures that verified, each counted once however often it is kept or served.
    pub verified: usize,
    /// The largest checkpoint size a verified cosignature covers, as the cosigned note
    /// states it.
    pub latest_size: Option<u64>,
    /// Cosignatures that did not verify, by checkpoint size, with why.
    pub failed: Vec<(u64, String)>,
}

/// Checks every cosignature kept for `log` (a database, an archive, or the attestor's Audit
/// service) against the witness keys certified under `roots`. What a cosignature covers is
/// read from the note it signs, not from what is stored beside it: one kept under another
/// size than its note's, under another witness name than the hub's, or over another log's
/// checkpoint is a failure, and a line kept twice counts once.
pub async fn check_cosignatures<S: LogSource>(
    log: &S,
    roots: &[Vec<u8>],
) -> Result<WitnessReport, AuditError> {
    let origin = log.origin().unwrap_or_default();
    let Some((trust_domain, _)) = parse_site_origin(&origin) else {
        return Ok(WitnessReport::default());
    };
    let name = hub_witness_name(trust_domain);
    let keys = witness_keys(log, roots, trust_domain).await?;
    let mut report = WitnessReport {
        witness_keys: keys.len(),
        ..WitnessReport::default()
    };
    let cosignatures = log.cosignatures().await?;
    if cosignatures.is_empty() {
        return Ok(report);
    }
    let checkpoints: HashMap<u64, String> = log
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.size, c.note))
        .collect();
    let mut counted = HashSet::new();
    for cosignature in cosignatures {
        let size = cosignature.size;
        let mut fail = |why: String| report.failed.push((size, why));
        if cosignature.witness != name {
            fail(format!(
                "it is kept under the witness name {:?}; the hub signs as {name:?}",
                cosignature.witness
            ));
            continue;
        }
        let Some(checkpoint) = checkpoints.get(&size) else {
            fail("no checkpoint of that size is kept (removed, or the log rolled back)".to_owned());
            continue;
        };
        let note = match add_cosignature_line(checkpoint, &cosignature.line) {
            Ok(note) => note,
            Err(e) => {
                fail(e.to_string());
                continue;
            }
        };
        let Some(verified) = keys
            .iter()
            .find_map(|key| verify_cosignature(&note, &name, key).ok())
        else {
            fail("no witness key certified under the root verifies it".to_owned());
            continue;
        };
        // The line that verified must be the one kept: a note edited to carry another
        // valid hub line must not vouch for a bogus one kept beside it.
        if verified.line != cosignature.line {
            fail("the line kept is not the hub's line that verifies".to_owned());
            continue;
        }
        if verified.origin != origin {
            fail(format!(
                "it cosigns a checkpoint of another log ({:?})",
                verified.origin
            ));
            continue;
        }
        if verified.size != size {
            fail(format!(
                "it is kept as size {size} but the checkpoint it cosigns has size {}",
                verified.size
            ));
            continue;
        }
        if counted.insert((verified.size, verified.line)) {
            report.verified += 1;
            report.latest_size = report.latest_size.max(Some(verified.size));
        }
    }
    Ok(report)
}

/// What the check of the hub's revocation list a site keeps found
/// ([`check_hub_revocations`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HubRevocationsReport {
    /// The sequence of the newest list the site keeps that verifies with a witness key
    /// certified under the root (the one the site goes by), if any.
    pub list_sequence: Option<u64>,
    /// Its entries.
    pub entries: usize,
    /// Lists kept above it, of this trust domain, that do not verify: (sequence, why).
    /// The site passes over them; someone wrote them.
    pub unverifiable: Vec<(u64, String)>,
    /// Its entries the site does not enforce (`node:<id>` or `serial:<hex>`), the first 100.
    pub not_enforced: Vec<String>,
    /// How many there are.
    pub not_enforced_count: usize,
}

impl HubRevocationsReport {
    /// Nothing wrong found.
    pub fn ok(&self) -> bool {
        self.unverifiable.is_empty() && self.not_enforced_count == 0
    }
}

/// Checks the hub revocation list a site's database goes by (the newest kept that verifies,
/// as the site finds it: [`KEPT_LISTS_LOOKED_AT`]) against what the site enforces. The site applies a list's entries (a revocation of each, in its log) before it
/// keeps the list, and ignores any list of a sequence not above the one kept; so every entry
/// of the kept list must be revoked in the database. One that is not was un-revoked by
/// someone with database access (the log's end rolled back with its revocation rows, say),
/// and stays so until the hub publishes a newer list. A kept list that does not verify would
/// make the site ignore the hub's lists up to its sequence.
pub async fn check_hub_revocations(
    log: &AttestationLog,
    roots: &[Vec<u8>],
) -> Result<HubRevocationsReport, AuditError> {
    let mut report = HubRevocationsReport::default();
    let kept = log
        .newest_revocation_lists(KEPT_LISTS_LOOKED_AT)
        .await
        .map_err(AuditError::Log)?;
    let Some((newest, _)) = kept.first() else {
        return Ok(report);
    };
    let origin = LogSource::origin(log).unwrap_or_default();
    let Some((trust_domain, _)) = parse_site_origin(&origin) else {
        report.unverifiable = vec![(
            *newest,
            format!("the log's origin {origin:?} names no trust domain"),
        )];
        return Ok(report);
    };
    let keys = witness_keys(log, roots, trust_domain).await?;
    let newest = newest_verified_list(&kept, trust_domain, &keys);
    report.unverifiable = newest.unverifiable;
    let Some(list) = newest.held else {
        return Ok(report);
    };
    report.list_sequence = Some(list.sequence);
    report.entries = list.entries.len();
    for entry in &list.entries {
        let (enforced, named) = match entry {
            RevokedTarget::Node(node) => (
                log.is_node_revoked(node).await.map_err(AuditError::Log)?,
                format!("node:{node}"),
            ),
            RevokedTarget::Serial(serial) => (
                log.is_revoked(serial).await.map_err(AuditError::Log)?,
                format!("serial:{serial}"),
            ),
        };
        if !enforced {
            report.not_enforced_count += 1;
            if report.not_enforced.len() < 100 {
                report.not_enforced.push(named);
            }
        }
    }
    Ok(report)
}

async fn witness_keys<S: LogSource>(
    log: &S,
    roots: &[Vec<u8>],
    trust_domain: &str,
) -> Result<Vec<[u8; 32]>, AuditError> {
    let mut keys = Vec::new();
    for chain_pem in log.witness_certificates().await? {
        let key = WitnessKeyCertificate::from_pem(&chain_pem)
            .and_then(|certificate| certificate.verify(roots, trust_domain));
        if let Ok(key) = key {
            keys.push(key);
        }
    }
    Ok(keys)
}
