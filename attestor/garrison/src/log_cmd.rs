//! `garrison log query`: the attestation log as operators read it.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use garrison_log::{AttestationLog, Decision, LogConfig, Query, RecordKind, StoredRecord};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::duration::parse_duration;

/// Log commands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// List records matching every given filter, oldest first.
    Query(Box<QueryArgs>),
    /// Sign a checkpoint of the site's log now (the attestor also signs one every
    /// checkpoint_interval and when it stops); prints the signed checkpoint.
    Checkpoint(CheckpointArgs),
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The site attestor's configuration (site.toml): its log, CA and log key.
    #[arg(long)]
    config: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Log URL: sqlite:///path/to/log.db or postgres://...
    #[arg(long)]
    db: String,
    #[command(flatten)]
    filter: RecordFilter,
    /// At most this many records.
    #[arg(long)]
    limit: Option<u32>,
    /// Print JSON (an array of records) instead of one line per record.
    #[arg(long)]
    json: bool,
}

/// The record filters `garrison log query` and `garrison audit query` share.
#[derive(Debug, Args)]
pub struct RecordFilter {
    /// Node id (EK public-key SHA-256, hex).
    #[arg(long)]
    node: Option<String>,
    /// SPIFFE ID.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Only records at or after this time: RFC 3339, or an age such as 2h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only records before this time: RFC 3339, or an age such as 2h or 7d.
    #[arg(long)]
    until: Option<String>,
    /// Record kind: enroll, renew, reject, revoke, rotate, policy-update, node-reset.
    #[arg(long)]
    kind: Option<String>,
    /// Decision: allow or deny.
    #[arg(long)]
    decision: Option<String>,
    /// Policy bundle digest.
    #[arg(long)]
    policy_digest: Option<String>,
    /// Certificate serial (hex).
    #[arg(long)]
    serial: Option<String>,
    /// Only records after this sequence (the next page starts after the last one shown).
    #[arg(long)]
    after: Option<u64>,
}

impl RecordFilter {
    /// The log query these filters ask for, with at most `limit` records.
    pub fn to_query(&self, limit: Option<u32>) -> anyhow::Result<Query> {
        Ok(Query {
            node_id: self.node.clone(),
            since: self.since.as_deref().map(parse_since).transpose()?,
            until: self.until.as_deref().map(parse_since).transpose()?,
            kind: self
                .kind
                .as_deref()
                .map(str::parse::<RecordKind>)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--kind: {e}"))?,
            decision: self
                .decision
                .as_deref()
                .map(str::parse::<Decision>)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--decision: {e}"))?,
            spiffe_id: self.spiffe_id.clone(),
            policy_digest: self.policy_digest.clone(),
            cert_serial: self.serial.clone(),
            after_sequence: self.after,
            limit,
        })
    }
}

/// Run a log command.
pub async fn run(command: LogCommand) -> anyhow::Result<()> {
    let args = match command {
        LogCommand::Query(args) => *args,
        LogCommand::Checkpoint(args) => return checkpoint(args).await,
    };
    let query = args.filter.to_query(args.limit)?;
    if !args.db.starts_with("sqlite://") && !args.db.starts_with("postgres") {
        bail!("--db must be a sqlite:// or postgres:// URL");
    }
    // Read-only: a query never writes, and a path that does not exist is an error, never a
    // new empty database.
    let log = AttestationLog::open_read_only(&args.db, None)
        .await
        .with_context(|| format!("opening {} read-only", args.db))?;
    let records = log.query(&query).await.context("querying the log")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        records.iter().for_each(print_line);
        println!("{} record(s)", records.len());
    }
    log.close().await;
    Ok(())
}

async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let config = garrison_attestor::SiteConfig::load(&args.config)?;
    let ca = garrison_attestor::server::load_site_ca(&config)?.active();
    let origin = garrison_transparency::site_origin(ca.trust_domain().as_str(), &config.site);
    let log = AttestationLog::open(&LogConfig {
        url: config.database.clone(),
        origin: Some(origin.clone()),
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .with_context(|| format!("opening the attestation log {}", config.database))?;
    let now = OffsetDateTime::now_utc();
    let rng = ring::rand::SystemRandom::new();
    let signed = async {
        let signer = garrison_attestor::checkpoint::CheckpointSigner::start(
            log.clone(),
            &config.log_key,
            &ca,
            now,
            &rng,
        )
        .await?;
        signer.sign(now).await
    }
    .await;
    let latest = log.latest_checkpoint().await;
    log.close().await;
    match signed.context("signing a checkpoint")? {
        Some(checkpoint) => print!("{}", checkpoint.note),
        None => match latest.context("reading the latest checkpoint")? {
            Some(checkpoint) => {
                eprintln!("the latest checkpoint already covers every record");
                print!("{}", checkpoint.note);
            }
            None => bail!("no checkpoint"),
        },
    }
    Ok(())
}

pub(crate) fn parse_since(text: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let age = parse_duration(text).context("--since: an RFC 3339 time or an age such as 2h")?;
    Ok(OffsetDateTime::now_utc() - age)
}

pub(crate) fn print_line(stored: &StoredRecord) {
    let r = &stored.record;
    let time = r.time.format(&Rfc3339).unwrap_or_default();
    // The whole id: what `--node` takes.
    let node = r.node_id.as_deref().unwrap_or("-");
    println!(
        "#{:<5} {time} {:<7} {:<5} node {node:<16} {} {}",
        stored.sequence,
        r.kind.as_str(),
        r.decision.as_str(),
        r.spiffe_id.as_deref().unwrap_or("-"),
        if r.reasons.is_empty() {
            String::new()
        } else {
            format!("reasons: {}", r.reasons.join("; "))
        },
    );
}
