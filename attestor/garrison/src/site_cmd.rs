//! `garrison site export|import`: the site's side of air-gap sync, by files an operator
//! carries. The attestor may keep running: both work on its database.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use garrison_attestor::SiteConfig;
use garrison_attestor::checkpoint::CheckpointSigner;
use garrison_attestor::site_sync::{self, SiteSync};
use garrison_log::{AttestationLog, LogConfig};
use time::OffsetDateTime;

use crate::outdir::NewFile;

/// Site commands.
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Write the site's log (from where the hub stands) for `garrison hub import`.
    Export(ExportArgs),
    /// Apply a file written by `garrison hub export`: revocations at once, a newer policy
    /// bundle put in force by the attestor, the hub's cosignature kept.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The site's attestor configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Where to write the file (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// First record to export (default: the end of the newest checkpoint the hub cosigned,
    /// which the hub holds).
    #[arg(long)]
    from: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The site's attestor configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// The file the hub exported for this site.
    file: PathBuf,
}

/// Run a site command.
pub async fn run(command: SiteCommand) -> anyhow::Result<()> {
    match command {
        SiteCommand::Export(args) => export(args).await,
        SiteCommand::Import(args) => import(args).await,
    }
}

/// The site's sync state; `sign` also loads the log key, so that an export covers every
/// record (a checkpoint is signed first, as the attestor does).
async fn open(config: &std::path::Path, sign: bool) -> anyhow::Result<SiteSync> {
    let config = SiteConfig::load(config)?;
    // The site CA in force (after a rotation, not the provisioned one).
    let ca = garrison_attestor::server::load_site_ca(&config)?.active();
    let td = ca.trust_domain().as_str().to_owned();
    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: Some(garrison_transparency::site_origin(&td, &config.site)),
        max_batch: 64,
        max_connections: 2,
    })
    .await
    .with_context(|| format!("opening the attestation log {}", config.database))?;
    let sync = SiteSync::new(log.clone(), &config.site, &td, ca.roots().to_vec());
    if !sign {
        return Ok(sync);
    }
    let signer = CheckpointSigner::start(
        log,
        &config.log_key,
        &ca,
        OffsetDateTime::now_utc(),
        &ring::rand::SystemRandom::new(),
    )
    .await
    .context("loading the log key")?;
    Ok(sync.with_signer(std::sync::Arc::new(signer)))
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let sync = open(&args.config, true).await?;
    let (file, writer) = NewFile::create(&args.out)?;
    let written = site_sync::export(&sync, args.from, writer, OffsetDateTime::now_utc()).await;
    sync.log().clone().close().await;
    let (writer, summary) = written.context("exporting the site's log")?;
    file.commit(writer)?;
    println!(
        "{}: records {}..{} of {} in {} batches, up to its checkpoint of size {}",
        args.out.display(),
        summary.first,
        summary.checkpoint_size,
        sync.origin(),
        summary.batches,
        summary.checkpoint_size
    );
    Ok(())
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let sync = open(&args.config, false).await?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let applied = site_sync::import(
        &sync,
        std::io::BufReader::new(file),
        OffsetDateTime::now_utc(),
    )
    .await;
    sync.log().clone().close().await;
    let applied = applied.with_context(|| format!("importing {}", args.file.display()))?;
    let mut said = false;
    if let Some(sequence) = applied.revocation_sequence {
        println!(
            "revocation list #{sequence} in force: {} node(s) or certificate(s) newly revoked",
            applied.revoked
        );
        said = true;
    }
    if let Some(sequence) = applied.policy_sequence {
        println!(
            "policy bundle #{sequence} kept: the attestor puts it in force within 30 s (verified, recorded as policy-update)"
        );
        said = true;
    }
    if let Some(size) = applied.cosigned_size {
        println!("the hub's cosignature of checkpoint {size} kept");
        said = true;
    }
    if !said {
        println!("nothing new in {}", args.file.display());
    }
    Ok(())
}
