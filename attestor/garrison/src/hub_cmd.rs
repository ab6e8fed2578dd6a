//! `garrison hub …`: run a hub, and an operator's acts at the hub (import and export files
//! for air-gapped sites, publish a policy bundle, revoke, see refusals and alarms).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use garrison_attestor::SystemClock;
use garrison_hub::{Hub, HubConfig};

use crate::outdir::NewFile;

/// Hub commands.
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Serve the Sync service to sites until SIGINT or SIGTERM.
    Serve(ConfigArg),
    /// Take a site's export file (`garrison site export`): its records, checked and stored
    /// once, and its checkpoint cosigned.
    Import(ImportArgs),
    /// Write the file an air-gapped site imports (`garrison site import`): the newest
    /// policy bundle, revocation list and the hub's cosignature of the site's log.
    Export(ExportArgs),
    /// Publish a signed policy bundle to every site (verified against the roots first).
    PublishPolicy(PublishArgs),
    /// Refusals and alarms (forks first) recorded at the hub, per site and kind.
    Events(ConfigArg),
    /// Every site log the hub holds, how far, and how far it cosigned; what it publishes.
    Status(ConfigArg),
    /// Certify a site's next intermediate CA from its CSR (`garrison attestor request-ca`):
    /// for an air-gapped site, or one whose CA expired before it could reach the hub (an
    /// expired CA cannot authenticate the site). The same checks and record as over Sync.
    CertifySite(CertifySiteArgs),
    /// Announce a new root to every site (a root rotation): its certificate cross-signed by
    /// the current root (`garrison ca cross-sign`), checked against the hub's roots. Sites add
    /// it at their next sync and send it on to their agents.
    PublishRoot(PublishRootArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Hub configuration (TOML); see the README for the keys.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long)]
    config: PathBuf,
    /// The file a site exported.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long)]
    config: PathBuf,
    /// The site the file is for.
    #[arg(long)]
    site: String,
    /// Where to write it (must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublishRootArgs {
    #[arg(long)]
    config: PathBuf,
    /// The new root cross-signed by the current one (`garrison ca cross-sign` output), and
    /// the new root's own certificate (PEM, one file or concatenated).
    certificate: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertifySiteArgs {
    #[arg(long)]
    config: PathBuf,
    /// The site the CA is for (its CA will vouch only for spiffe://<td>/site/<site>/…).
    #[arg(long)]
    site: String,
    /// The site's CSR (PEM), as `garrison attestor request-ca` wrote it.
    #[arg(long)]
    csr: PathBuf,
    /// Lifetime: 45d, ... (refused if the hub CA does not cover it).
    #[arg(long)]
    ttl: String,
    /// Where to write the certified chain (PEM: the new CA first, not the root).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[arg(long)]
    config: PathBuf,
    /// The signed bundle (`garrison policy sign` output).
    bundle: PathBuf,
}

/// Run a hub command.
pub async fn run(command: HubCommand) -> anyhow::Result<()> {
    match command {
        HubCommand::Serve(args) => {
            let config = HubConfig::load(&args.config)?;
            garrison_hub::server::run(
                config,
                Arc::new(SystemClock),
                crate::attestor_cmd::shutdown_signal(),
            )
            .await
            .context("hub")
        }
        HubCommand::Import(args) => import(args).await,
        HubCommand::Export(args) => export(args).await,
        HubCommand::PublishPolicy(args) => {
            let hub = open(&args.config).await?;
            let bytes = std::fs::read(&args.bundle)
                .with_context(|| format!("reading {}", args.bundle.display()))?;
            let (sequence, digest) = hub.publish_policy(&bytes).await?;
            println!("policy bundle #{sequence} ({digest}) published to every site");
            hub.log().clone().close().await;
            Ok(())
        }
        HubCommand::Events(args) => events(args).await,
        HubCommand::Status(args) => status(args).await,
        HubCommand::CertifySite(args) => certify_site(args).await,
        HubCommand::PublishRoot(args) => {
            let hub = open(&args.config).await?;
            let text = std::fs::read_to_string(&args.certificate)
                .with_context(|| format!("reading {}", args.certificate.display()))?;
            let mut added = 0;
            // In whatever order they come: the new root's self-signed certificate is taken
            // once its cross-signed one is.
            let mut pending = garrison_ca::certificates_from_pem(&text)?;
            while !pending.is_empty() {
                let before = pending.len();
                let mut refused = None;
                let mut left = Vec::new();
                for der in pending {
                    match hub.publish_root(&der) {
                        Ok(new) => added += usize::from(new),
                        Err(e) => {
                            refused = Some(e);
                            left.push(der);
                        }
                    }
                }
                if let Some(e) = refused.filter(|_| left.len() == before) {
                    hub.log().clone().close().await;
                    return Err(e).context("announcing the new root");
                }
                pending = left;
            }
            hub.log().clone().close().await;
            println!("{added} new root(s) announced to every site");
            Ok(())
        }
    }
}

async fn certify_site(args: CertifySiteArgs) -> anyhow::Result<()> {
    let hub = open(&args.config).await?;
    let text = std::fs::read_to_string(&args.csr)
        .with_context(|| format!("reading {}", args.csr.display()))?;
    let csr = pem::parse(&text)
        .context("the CSR is not PEM")?
        .into_contents();
    println!(
        "certifying key fingerprint {} for site {} (compare it with what the site's operator read out)",
        crate::attestor_cmd::key_fingerprint(&csr)?,
        args.site
    );
    let ttl = garrison_attestor::config::parse_duration("ttl", &args.ttl)?;
    let request = garrison_proto::v1::IntermediateRequest {
        origin: garrison_transparency::site_origin(hub.trust_domain(), &args.site),
        csr,
        lifetime_seconds: ttl.whole_seconds().max(0).unsigned_abs(),
    };
    // The operator's act: no caller CA to hold it to (the fingerprint is the check).
    let answer = hub.certify_site_ca(&request.origin, &request, None).await;
    hub.log().clone().close().await;
    let answer = answer.context("certifying the site CA")?;
    let pem = garrison_ca::certificates_to_pem(&answer.chain);
    crate::outdir::write_new_file(&args.out, pem.as_bytes())?;
    println!(
        "{}: site CA for {} certified; carry it to the site and run `garrison attestor install-ca`",
        args.out.display(),
        args.site
    );
    Ok(())
}

/// The hub as its CLI commands use it (no serving).
pub async fn open(config: &std::path::Path) -> anyhow::Result<Hub> {
    let config = HubConfig::load(config)?;
    garrison_hub::server::build(&config, Arc::new(SystemClock))
        .await
        .context("opening the hub")
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let hub = open(&args.config).await?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let outcome = garrison_hub::files::import(&hub, std::io::BufReader::new(file)).await;
    hub.log().clone().close().await;
    let summary = outcome.with_context(|| format!("importing {}", args.file.display()))?;
    println!(
        "{}: {} new records in {} batches; the hub holds {}{}",
        summary.origin,
        summary.records_added,
        summary.batches,
        summary.held_size,
        summary
            .cosigned_size
            .map_or_else(String::new, |size| format!("; checkpoint {size} cosigned"))
    );
    Ok(())
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let hub = open(&args.config).await?;
    let (file, writer) = NewFile::create(&args.out)?;
    let now = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .max(0)
        .unsigned_abs();
    let written = garrison_hub::files::export(&hub, &args.site, writer, now).await;
    hub.log().clone().close().await;
    let writer = written.with_context(|| format!("exporting for site {}", args.site))?;
    file.commit(writer)?;
    println!("{}: written for site {}", args.out.display(), args.site);
    Ok(())
}

async fn status(args: ConfigArg) -> anyhow::Result<()> {
    let hub = open(&args.config).await?;
    let sites = hub.sites().await;
    let list = hub.revocation_list().await;
    let policy = hub.log().latest_policy_bundle().await;
    hub.log().clone().close().await;
    for (origin, held, cosigned) in sites? {
        println!("{origin}: {held} records held, cosigned up to {cosigned}");
    }
    match policy? {
        Some((sequence, digest, _)) => println!("policy bundle published: #{sequence} ({digest})"),
        None => println!("policy bundle published: none"),
    }
    match list? {
        Some(list) => println!(
            "revocation list: #{} with {} entries",
            list.sequence,
            list.entries.len()
        ),
        None => println!("revocation list: none"),
    }
    Ok(())
}

async fn events(args: ConfigArg) -> anyhow::Result<()> {
    let hub = open(&args.config).await?;
    let events = hub.events().await;
    hub.log().clone().close().await;
    let mut events = events?;
    events.sort_by_key(|e| (e.kind != "fork", e.origin.clone(), e.kind.clone()));
    if events.is_empty() {
        println!("no refusals or alarms recorded");
        return Ok(());
    }
    let mut forks = 0;
    for e in &events {
        if e.kind == "fork" {
            forks += 1;
        }
        println!(
            "{}{} {} ×{} (first {}, last {}): {}",
            if e.kind == "fork" { "ALARM " } else { "" },
            e.origin,
            e.kind,
            e.count,
            e.first,
            e.last,
            e.detail
        );
        if let Some((held, other)) = &e.notes {
            println!("  checkpoint the hub witnessed:\n{}", indent(held));
            println!("  checkpoint that contradicts it:\n{}", indent(other));
        }
    }
    if forks > 0 {
        bail!("{forks} site log(s) forked: see above");
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
