//! [`export`]: a log read through any [`LogSource`] (the attestor's Audit service, for an
//! auditor without access to the site's database) written into a self-contained archive,
//! the same kind [`garrison_log::AttestationLog::export_sqlite`] writes from the database.

use std::collections::BTreeSet;
use std::path::Path;

use garrison_log::{ArchiveWriter, ExportSummary, StoredCosignature};
use garrison_transparency::LogKeyCertificate;

use crate::source::Pages;
use crate::{AuditError, LogSource};

/// Records read per page. Small, because a page's evidence is held at once: up to this many
/// evidence records and the event logs they name (each up to the transport's 1 MiB).
const PAGE: u32 = 100;

/// Writes the log `source` reads into a new archive at `path` (which must not exist).
///
/// Nothing is checked here: everything is kept as read, for `verify` to judge on the
/// archive (a record whose leaf disagrees with it, a missing record, evidence that does not
/// hash to its digest, evidence the source did not have, a log key certificate that does
/// not parse, the hub's cosignatures and witness key chains). The checkpoints are read
/// first, so that a log still growing leaves no checkpoint in the archive beyond the records
/// it holds. Evidence is fetched page by page: each record's, then the event logs it names
/// (one level: what those name is not followed, so a source cannot keep the export
/// fetching), each digest once.
///
/// The records written are those below the size the source states after its checkpoints
/// were read (at least every checkpoint's size, from an honest source), in increasing order
/// and at most a page at a time ([`LogSource::stated_size`]): a service serving records
/// beyond what it stated cannot make the export write on without end. (It can still state
/// a size as large as it likes.)
///
/// On failure nothing is left at `path`: a partial archive is removed.
pub async fn export<S: LogSource>(source: &S, path: &Path) -> Result<ExportSummary, AuditError> {
    let origin = source.origin().ok_or(AuditError::NoOrigin)?;
    // Each read bounds the next: a checkpoint is stored before its cosignatures, and records
    // before the checkpoints over them, so what is read first has what it refers to read
    // after it. (A cosignature whose checkpoint was deleted is written as served, for
    // `verify` to report.)
    let cosignatures = source.cosignatures().await?;
    let witness_chains = source.witness_certificates().await?;
    let checkpoints = source.checkpoints().await?;
    let chains = source.log_key_certificates().await?;
    let pages = Pages::start(source, PAGE).await?;
    let archive = ArchiveWriter::create(path, &origin)
        .await
        .map_err(AuditError::Log)?;
    let witnessed = Witnessed {
        cosignatures: &cosignatures,
        chains: &witness_chains,
    };
    let written = fill(source, archive, pages, &checkpoints, &chains, witnessed).await;
    if written.is_err() {
        garrison_log::remove_archive(path);
    }
    written
}

async fn fill<S: LogSource>(
    source: &S,
    mut archive: ArchiveWriter,
    mut pages: Pages,
    checkpoints: &[garrison_log::StoredCheckpoint],
    chains: &[String],
    witnessed: Witnessed<'_>,
) -> Result<ExportSummary, AuditError> {
    loop {
        let page = pages.next(source).await?;
        if page.is_empty() {
            break;
        }
        let mut wanted: BTreeSet<String> = page
            .iter()
            .filter_map(|r| r.record.evidence_digest.as_deref())
            .map(str::to_ascii_lowercase)
            .collect();
        // The records' evidence, then what it names: two rounds, no more. What the archive
        // holds already (evidence a fleet shares, named on an earlier page) is not fetched
        // again; the archive is asked, so that memory does not grow with the log.
        for _round in 0..2 {
            let ask = archive
                .evidence_not_held(std::mem::take(&mut wanted).into_iter().collect())
                .await
                .map_err(AuditError::Log)?;
            if ask.is_empty() {
                break;
            }
            for (digest, bytes) in source.evidence_many(&ask).await? {
                let named = archive
                    .add_evidence(&digest, &bytes)
                    .await
                    .map_err(AuditError::Log)?;
                wanted.extend(named);
            }
        }
        archive.add_records(&page).await.map_err(AuditError::Log)?;
    }
    for checkpoint in checkpoints {
        archive
            .add_checkpoint(checkpoint)
            .await
            .map_err(AuditError::Log)?;
    }
    for chain in chains {
        // Kept even when it states no key: `verify` reports such a chain.
        let key = LogKeyCertificate::from_pem(chain)
            .and_then(|c| c.stated_key())
            .ok();
        archive
            .add_log_key_certificate(key.as_ref(), chain)
            .await
            .map_err(AuditError::Log)?;
    }
    for cosignature in witnessed.cosignatures {
        archive
            .add_cosignature(cosignature)
            .await
            .map_err(AuditError::Log)?;
    }
    for chain in witnessed.chains {
        archive
            .add_witness_certificate(chain)
            .await
            .map_err(AuditError::Log)?;
    }
    archive.finish().await.map_err(AuditError::Log)
}

/// The hub's cosignatures of the checkpoints, and the witness key chains to check them with.
#[derive(Clone, Copy)]
struct Witnessed<'a> {
    cosignatures: &'a [StoredCosignature],
    chains: &'a [String],
}
