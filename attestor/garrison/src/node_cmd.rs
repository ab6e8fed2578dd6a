//! `garrison node`: an operator's acts on a node's stored state, each logged.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use garrison_attestor::SiteConfig;
use garrison_log::{AttestationLog, LogConfig, Revocation, RevocationTarget};
use time::OffsetDateTime;

/// Node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Accept that a node's TPM was cleared (TPM2_Clear): a node-reset record, then its
    /// counters, clock, AK binding and current certificate are forgotten and it may enroll
    /// again. Only after checking the machine: a rolled-back TPM looks the same.
    Reset(ResetArgs),
    /// Every node the site knows: id, SPIFFE ID, current certificate, revoked or not.
    List(SiteArgs),
    /// One node: its state, whether it is revoked, and its latest records.
    Show(ShowArgs),
    /// Revoke a node (every certificate it holds or will hold) or one certificate: at a
    /// site (works while cut off; the record syncs up with the log) or at the hub (signs a
    /// new revocation list that every site applies when it next syncs).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct SiteArgs {
    /// The site's attestor configuration (TOML).
    #[arg(long, required_unless_present = "db", conflicts_with = "db")]
    config: Option<PathBuf>,
    /// The log database instead of --config: sqlite:///path/to/log.db or postgres://...
    #[arg(long)]
    db: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    site: SiteArgs,
    /// Node id (EK public-key SHA-256, hex).
    #[arg(long)]
    node: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("at").required(true).args(["config", "db", "hub_config"])))]
#[command(group(clap::ArgGroup::new("what").required(true).args(["node", "serial"])))]
pub struct RevokeArgs {
    /// Revoke at this site (its attestor configuration).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Revoke in this site log database.
    #[arg(long)]
    db: Option<String>,
    /// Revoke at the hub (its configuration): every site, once it syncs.
    #[arg(long)]
    hub_config: Option<PathBuf>,
    /// Node id (EK public-key SHA-256, hex).
    #[arg(long)]
    node: Option<String>,
    /// Certificate serial (hex).
    #[arg(long)]
    serial: Option<String>,
    /// Why, for the record.
    #[arg(long)]
    reason: Option<String>,
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
    match command {
        NodeCommand::Reset(args) => reset(args).await,
        NodeCommand::List(args) => list(args).await,
        NodeCommand::Show(args) => show(args).await,
        NodeCommand::Revoke(args) => revoke(args).await,
    }
}

/// The site database, from --config or --db.
struct SiteDatabase {
    url: String,
    /// The site's configuration (--config).
    config: Option<SiteConfig>,
}

fn site_database(config: Option<&PathBuf>, db: Option<&String>) -> anyhow::Result<SiteDatabase> {
    match (config, db) {
        (Some(path), _) => {
            let config = SiteConfig::load(path)?;
            Ok(SiteDatabase {
                url: config.database.clone(),
                config: Some(config),
            })
        }
        (None, Some(db)) => {
            if !db.starts_with("sqlite://") && !db.starts_with("postgres") {
                bail!("--db must be a sqlite:// or postgres:// URL");
            }
            Ok(SiteDatabase {
                url: db.clone(),
                config: None,
            })
        }
        (None, None) => bail!("give --config site.toml or --db URL"),
    }
}

impl SiteDatabase {
    /// The site's name (from --config).
    fn site(&self) -> Option<String> {
        self.config.as_ref().map(|c| c.site.clone())
    }

    /// Of a database's several logs (the site's log from before a rename beside its current
    /// one), the site's own: the one whose origin names the configured site, and if that is
    /// not one (a trust domain changed), the one the site CA in force names (read as
    /// `check-config` reads it, deleting nothing; it needs the CA directory's permissions).
    /// Without --config there is no telling: the error lists the origins.
    fn own_origin(&self, origins: Vec<String>) -> anyhow::Result<String> {
        let Some(config) = &self.config else {
            return Err(garrison_log::LogError::OriginRequired { origins })
                .with_context(|| format!("opening the attestation log {}", self.url));
        };
        let named: Vec<&String> = origins
            .iter()
            .filter(|o| {
                garrison_transparency::parse_site_origin(o).is_some_and(|(_, s)| s == config.site)
            })
            .collect();
        if let [only] = named.as_slice() {
            return Ok((*only).clone());
        }
        let ca = garrison_attestor::server::open_site_ca(config)?.active();
        Ok(garrison_transparency::site_origin(
            ca.trust_domain().as_str(),
            &config.site,
        ))
    }

    /// The database's only log, or the site's own among several ([`Self::own_origin`]).
    async fn open(&self) -> anyhow::Result<AttestationLog> {
        let config = |origin: Option<String>| LogConfig {
            url: self.url.clone(),
            origin,
            max_batch: 1,
            max_connections: 2,
        };
        let opened = match AttestationLog::open(&config(None)).await {
            Err(garrison_log::LogError::OriginRequired { origins }) => {
                AttestationLog::open(&config(Some(self.own_origin(origins)?))).await
            }
            other => other,
        };
        opened.with_context(|| format!("opening the attestation log {}", self.url))
    }

    /// [`Self::open`], read-only.
    async fn open_read_only(&self) -> anyhow::Result<AttestationLog> {
        let opened = match AttestationLog::open_read_only(&self.url, None).await {
            Err(garrison_log::LogError::OriginRequired { origins }) => {
                let origin = self.own_origin(origins)?;
                AttestationLog::open_read_only(&self.url, Some(&origin)).await
            }
            other => other,
        };
        opened.with_context(|| format!("opening the attestation log {}", self.url))
    }
}

async fn list(args: SiteArgs) -> anyhow::Result<()> {
    let log = site_database(args.config.as_ref(), args.db.as_ref())?
        .open_read_only()
        .await?;
    let mut after: Option<String> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let page = log.nodes(after.as_deref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.node_id.clone());
        for node in &page {
            let revoked = log.is_node_revoked(&node.node_id).await?;
            let line = format!(
                "{}  {}  serial {}  {}{}\n",
                node.node_id,
                node.spiffe_id,
                node.current_serial.as_deref().unwrap_or("-"),
                rfc3339(node.updated),
                if revoked { "  REVOKED" } else { "" }
            );
            if std::io::Write::write_all(&mut out, line.as_bytes()).is_err() {
                return Ok(()); // a closed pipe (`| head`) ends the listing
            }
        }
    }
    log.close().await;
    Ok(())
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let log = site_database(args.site.config.as_ref(), args.site.db.as_ref())?
        .open_read_only()
        .await?;
    let node_id = args.node.trim().to_ascii_lowercase();
    let status = log.node_status(&node_id).await?;
    let Some(node) = status.node else {
        bail!("node {node_id} is not in this site's log");
    };
    println!("node        {}", node.node_id);
    println!("spiffe id   {}", node.spiffe_id);
    println!(
        "serial      {}",
        node.current_serial.as_deref().unwrap_or("-")
    );
    println!("updated     {}", rfc3339(node.updated));
    println!("revoked     {}", if status.revoked { "yes" } else { "no" });
    let records = log
        .query(&garrison_log::Query {
            node_id: Some(node_id),
            ..Default::default()
        })
        .await?;
    println!("records     {} (latest last):", records.len());
    for r in records.iter().rev().take(10).rev() {
        println!(
            "  #{} {} {} {} {}",
            r.sequence,
            rfc3339(r.record.time),
            r.record.kind,
            r.record.decision,
            r.record.reasons.join(", ")
        );
    }
    log.close().await;
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    if let Some(hub_config) = &args.hub_config {
        let target = match (&args.node, &args.serial) {
            (Some(node), _) => {
                garrison_transparency::RevokedTarget::Node(node.trim().to_ascii_lowercase())
            }
            (None, Some(serial)) => {
                garrison_transparency::RevokedTarget::Serial(serial.trim().to_ascii_lowercase())
            }
            (None, None) => bail!("give --node or --serial"),
        };
        let hub = crate::hub_cmd::open(hub_config).await?;
        let outcome = hub.revoke(&[target]).await;
        hub.log().clone().close().await;
        let sequence = outcome?;
        println!(
            "revocation list #{sequence} signed at the hub; every site applies it when it next syncs"
        );
        return Ok(());
    }
    let database = site_database(args.config.as_ref(), args.db.as_ref())?;
    let target = match (&args.node, &args.serial) {
        (Some(node), _) => RevocationTarget::Node(node.trim().to_ascii_lowercase()),
        (None, Some(serial)) => RevocationTarget::Serial(serial.trim().to_ascii_lowercase()),
        (None, None) => bail!("give --node or --serial"),
    };
    let log = database.open().await?;
    let site = match (database.site(), &target) {
        (Some(site), _) => site,
        (None, RevocationTarget::Node(node)) => log
            .node(node)
            .await?
            .and_then(|n| {
                n.spiffe_id
                    .split("/site/")
                    .nth(1)
                    .and_then(|s| s.split('/').next())
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        (None, RevocationTarget::Serial(_)) => String::new(),
    };
    let reasons = vec![
        "operator".to_owned(),
        args.reason.unwrap_or_else(|| "no reason given".to_owned()),
    ];
    let appended = log
        .revoke(Revocation {
            time: OffsetDateTime::now_utc(),
            site,
            target,
            reasons,
            policy_digest: None,
        })
        .await;
    log.close().await;
    let appended = appended.context("revoking")?;
    println!(
        "revoke record #{}: renewals of it are refused with `revoked` from now on",
        appended.sequence
    );
    Ok(())
}

async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let database = site_database(args.config.as_ref(), args.db.as_ref())?;
    let site = args.site.clone().or(database.site());
    let log = database.open().await?;
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
