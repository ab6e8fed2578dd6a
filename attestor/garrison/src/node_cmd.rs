//! `garrison node`: an operator's acts on a node's stored state, each logged.

use std::path::PathBuf;

use anyhow::{Context, bail};
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
    #[arg(long, required_unless_present = "db", conflicts_with = "db")]
    config: Option<PathBuf>,
    /// The log database instead of --config: sqlite:///path/to/log.db or postgres://...
    #[arg(long)]
    db: Option<String>,
    /// The site named in the record (default: from --config, else the node's SPIFFE ID).
    #[arg(long)]
    site: Option<String>,
    /// Node id (EK public-key SHA-256, hex), as `garrison log query` shows it.
    #[arg(long)]
    node: String,
    /// Why, for the record: who checked the machine and what they found. Without it the
    /// record says that no reason was given.
    #[arg(long)]
    reason: Option<String>,
}

/// Run a node command.
pub async fn run(command: NodeCommand) -> anyhow::Result<()> {
    let NodeCommand::Reset(args) = command;
    let (url, config_site) = match (&args.config, &args.db) {
        (Some(path), _) => {
            let config = SiteConfig::load(path)?;
            (config.database, Some(config.site))
        }
        (None, Some(db)) => {
            if !db.starts_with("sqlite://") && !db.starts_with("postgres") {
                bail!("--db must be a sqlite:// or postgres:// URL");
            }
            (db.clone(), None)
        }
        (None, None) => bail!("give --config site.toml or --db URL"),
    };
    let site = args.site.clone().or(config_site);
    let log = AttestationLog::open(&LogConfig {
        url: url.clone(),
        origin: None,
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .with_context(|| format!("opening the attestation log {url}"))?;
    let result = garrison_attestor::node_admin::reset_node(
        &log,
        site.as_deref(),
        &args.node,
        args.reason.as_deref(),
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
