//! The hub's side of air-gap sync: `garrison hub import FILE` takes what a site exported,
//! `garrison hub export --site SITE --out FILE` writes what the site should import.
//!
//! A file carries the same messages as a connection and is checked the same way
//! ([`Hub::push`]); what vouches for its contents is their signatures (the site's
//! checkpoint and log key certificate, the hub's cosignature and revocation list, the policy
//! signer's), not the file or whoever carried it. So importing a file twice, or an older
//! file, changes nothing, and a batch for another site than the header names is refused.

use std::io::{Read, Write};

use garrison_proto::sync_file::{
    HUB_TO_SITE, SITE_TO_HUB, SyncFileError, SyncFileReader, SyncFileWriter,
};
use garrison_proto::v1::{self, SyncFileHeader, sync_file::Part};
use garrison_transparency::{parse_site_origin, site_origin};

use crate::{Hub, HubError, Refusal};

/// Why a sync file could not be imported or exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file is damaged or not a sync file.
    #[error("sync file")]
    File(#[from] SyncFileError),
    /// The file is not one for this end, or not for this trust domain.
    #[error("{0}")]
    WrongFile(String),
    /// The hub refused or failed on part of it.
    #[error("hub")]
    Hub(#[from] HubError),
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub origin: String,
    pub batches: u64,
    /// Records the hub did not hold before.
    pub records_added: u64,
    /// Records of the site the hub holds now.
    pub held_size: u64,
    /// The checkpoint the hub cosigned, if the file brought its whole tree.
    pub cosigned_size: Option<u64>,
}

/// Imports a site's export (see the module docs). Stops at the first refused batch; what
/// was stored before it stays (each batch lands whole or not at all).
pub async fn import(hub: &Hub, input: impl Read) -> Result<ImportSummary, FileError> {
    let mut reader = SyncFileReader::new(input)?;
    let header = reader.header().clone();
    let origin = check_header(hub, &header, SITE_TO_HUB)?;
    let mut summary = ImportSummary {
        origin: origin.clone(),
        ..Default::default()
    };
    let before = hub.status(&origin).await?.held_size;
    while let Some(part) = reader.next_part()? {
        let Part::LogBatch(batch) = part else {
            return Err(FileError::WrongFile(
                "a site export holds log batches only".to_owned(),
            ));
        };
        let result = hub.push(&origin, batch).await?;
        summary.batches += 1;
        summary.held_size = result.held_size;
        // The cosigned checkpoint's size is its second line.
        if let Some(size) = result
            .cosigned_checkpoint
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
        {
            summary.cosigned_size = Some(size);
        }
    }
    summary.records_added = summary.held_size.saturating_sub(before);
    Ok(summary)
}

fn check_header(hub: &Hub, header: &SyncFileHeader, direction: &str) -> Result<String, FileError> {
    if header.direction != direction {
        return Err(FileError::WrongFile(format!(
            "this is a {:?} file; expected {direction}",
            header.direction
        )));
    }
    match parse_site_origin(&header.origin) {
        Some((td, site)) if td == hub.trust_domain() => Ok(site_origin(td, site)),
        _ => Err(FileError::WrongFile(format!(
            "the file is for log {:?}, not a site of {}",
            header.origin,
            hub.trust_domain()
        ))),
    }
}

/// Writes what `site` should import: the newest policy bundle and revocation list, the
/// witness key's certificate chain, and the hub's newest cosigned checkpoint of the site's
/// log. Returns the writer.
pub async fn export<W: Write>(
    hub: &Hub,
    site: &str,
    out: W,
    written_unix: u64,
) -> Result<W, FileError> {
    if !garrison_ca::is_site_name(site) {
        return Err(FileError::WrongFile(format!("{site:?} is not a site name")));
    }
    let origin = site_origin(hub.trust_domain(), site);
    let pull = hub
        .pull(&v1::PullRequest {
            origin: origin.clone(),
            policy_sequence: 0,
            revocation_sequence: 0,
        })
        .await?;
    let cosigned = hub.latest_cosigned(&origin).await?;
    let header = SyncFileHeader {
        direction: HUB_TO_SITE.to_owned(),
        origin,
        written_unix,
    };
    let mut writer = SyncFileWriter::new(out, header)?;
    writer.push(Part::Pull(pull))?;
    if let Some(note) = cosigned {
        writer.push(Part::CosignedCheckpoint(note))?;
    }
    Ok(writer.finish()?)
}

impl From<Refusal> for FileError {
    fn from(refusal: Refusal) -> Self {
        FileError::Hub(HubError::Refused(refusal))
    }
}
