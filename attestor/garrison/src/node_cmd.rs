//! `garrison node`: an operator's acts on a node's stored state, each logged.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use garrison_attestor::SiteConfig;
use garrison_log::{AttestationLog, LogConfig};
use time::OffsetDateTime;

/// Node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Accept that a node's TPM was cleared (TPM2_Clear): a node-reset record, then its
    /// counters, clock, AK binding and current certificate are forgotten and it may enroll
    /// again. Only after checking the machine: a rolled-back TPM looks the same.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The site's attestor configuration (TOML): the site name and log database are read
    /// from it. The attestor may keep running.
    #[arg(long)]
    config: PathBuf,
    /// Node id (EK public-key SHA-256, hex), as `garrison log query` shows it.
    #[arg(long)]
    node: String,
    /// Why, for the record: who checked the machine and what they found.
    #[arg(long)]
    reason: String,
}

/// Run a node command.
pub async fn run(command: NodeCommand) -> anyhow::Result<()> {
    let NodeCommand::Reset(args) = command;
    let config = SiteConfig::load(&args.config)?;
    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .with_context(|| format!("opening the attestation log {}", config.database))?;
    let result = garrison_attestor::node_admin::reset_node(
        &log,
        &config.site,
        &args.node,
        &args.reason,
        OffsetDateTime::now_utc(),
    )
    .await;
    log.close().await;
    let appended = result.with_context(|| format!("resetting node {}", args.node))?;
    println!(
        "node-reset record #{}: node {} may enroll again",
        appended.sequence,
        args.node.trim().to_ascii_lowercase()
    );
    Ok(())
}
