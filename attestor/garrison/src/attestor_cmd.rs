//! `garrison attestor serve`: run a site attestor.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use garrison_attestor::{SiteConfig, SystemClock};

/// Attestor commands.
#[derive(Debug, Subcommand)]
pub enum AttestorCommand {
    /// Serve enrollment and renewal over gRPC/TLS until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check everything `serve` checks before it serves (configuration, site CA and chain,
    /// CA lifetime rule, EK roots, policy bundle and its signature, the log database and its
    /// lock, log key, TLS), and the warnings it would log, without binding a port, serving or
    /// writing a record. Prints each check; exits 0 when `serve` would start and issue, 1 when
    /// it would refuse to start, 2 when it would start but issue nothing agents accept (a CA
    /// expired, not yet valid, or whose chain does not verify).
    CheckConfig(ServeArgs),
    /// Show the site's autonomy: the hub link, last sync, the site CA's expiry and the time
    /// until the site fails closed (its offline budget), the rotation in progress, the policy
    /// in force and the revocation list held. Reads the CA directory and the database; the
    /// attestor need not be running. Exits 2 when the budget is exhausted.
    Status(StatusArgs),
    /// Write the CSR of the site's next CA (prepared now if none is pending: a new key,
    /// generated and kept in the CA directory) for `garrison hub certify-site`.
    RequestCa(RequestCaArgs),
    /// Install the certified chain of the site's next CA (`garrison hub certify-site`):
    /// checked against the prepared key and the roots, recorded; the attestor puts it in
    /// force when due, or at once if its CA has expired.
    InstallCa(InstallCaArgs),
}

#[derive(Debug, Args)]
pub struct RequestCaArgs {
    /// Site configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Where to write the CSR (PEM).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct InstallCaArgs {
    /// Site configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// The certified chain (PEM).
    chain: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Site configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Site configuration (TOML); see the README for the keys.
    #[arg(long)]
    config: PathBuf,
}

/// Run an attestor command.
pub async fn run(command: AttestorCommand) -> anyhow::Result<()> {
    match command {
        AttestorCommand::Serve(args) => {
            let config = SiteConfig::load(&args.config)?;
            garrison_attestor::server::run(config, Arc::new(SystemClock), shutdown_signal())
                .await
                .context("attestor")
        }
        AttestorCommand::CheckConfig(args) => {
            let code = check_config(&args.config).await;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        AttestorCommand::Status(args) => {
            let config = SiteConfig::load(&args.config)?;
            let now = time::OffsetDateTime::now_utc();
            let status = garrison_attestor::status::SiteStatus::read(&config, now)
                .await
                .context("reading the site's status")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.to_text(now));
            }
            if status.offline_budget_seconds <= 0 {
                std::process::exit(2);
            }
            Ok(())
        }
        AttestorCommand::RequestCa(args) => {
            let (config, ca, log) = open_ca(&args.config).await?;
            let now = time::OffsetDateTime::now_utc();
            let csr = ca
                .prepare(&log, now, &ring::rand::SystemRandom::new())
                .await;
            log.close().await;
            let csr = csr?;
            let fingerprint = key_fingerprint(&csr)?;
            let text = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr));
            crate::outdir::write_new_file(&args.out, text.as_bytes())?;
            println!(
                "{}: CSR of site {}'s next CA; certify it with `garrison hub certify-site --ttl {}`",
                args.out.display(),
                config.site,
                duration_arg(ca.requested_lifetime())
            );
            println!(
                "key fingerprint {fingerprint} (tell it to the hub's operator by another channel; \
                 certify-site prints the fingerprint of the request it certifies)"
            );
            Ok(())
        }
        AttestorCommand::InstallCa(args) => {
            let (_, ca, log) = open_ca(&args.config).await?;
            let text = std::fs::read_to_string(&args.chain)
                .with_context(|| format!("reading {}", args.chain.display()))?;
            let chain = garrison_ca::certificates_from_pem(&text)?;
            let now = time::OffsetDateTime::now_utc();
            let installed = ca
                .install(&log, chain, now, &ring::rand::SystemRandom::new())
                .await;
            log.close().await;
            if installed? {
                println!(
                    "installed; the attestor puts it in force when due (at once if its CA has expired)"
                );
            } else {
                anyhow::bail!(
                    "no request is waiting for a certificate (see `garrison attestor status`)"
                );
            }
            Ok(())
        }
    }
}

/// `check-config`: prints each check and its outcome, and a summary; returns the exit code.
async fn check_config(path: &std::path::Path) -> i32 {
    use garrison_attestor::startup::Outcome;
    let config = match SiteConfig::load(path) {
        Ok(config) => config,
        Err(e) => {
            println!("FAILED   config            {:#}", anyhow::Error::from(e));
            println!("1 problem: serve would refuse to start");
            return 1;
        }
    };
    println!(
        "ok       config            {}: site {}",
        path.display(),
        config.site
    );
    let report = garrison_attestor::startup::check_config(&config, Arc::new(SystemClock)).await;
    for finding in report.findings() {
        let (label, text) = match &finding.outcome {
            Outcome::Passed(detail) => ("ok", detail.clone()),
            Outcome::Warned(warning) => ("warning", warning.to_string()),
            Outcome::Failed(error) => ("FAILED", error.clone()),
        };
        println!("{label:<8} {:<17} {text}", finding.check);
    }
    let problems = report.failures();
    let warnings = report.warnings().count();
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let counts = format!(
        "{}, {}",
        plural(problems, "problem"),
        plural(warnings, "warning")
    );
    if problems > 0 {
        println!("{counts}: serve would refuse to start");
        1
    } else if report.warnings().any(|w| w.stops_issuance()) {
        println!("{counts}: serve would start, but issue nothing agents accept");
        2
    } else {
        println!("{counts}: serve would start");
        0
    }
}

/// A duration as `garrison` options take it: whole days, hours or seconds.
fn duration_arg(d: time::Duration) -> String {
    let s = d.whole_seconds().max(1);
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// SHA-256 of a CSR's subject public key, hex: what the two operators compare.
pub fn key_fingerprint(csr_der: &[u8]) -> anyhow::Result<String> {
    let csr = garrison_ca::VerifiedCsr::from_der(csr_der)?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        csr.public_key_der(),
    )))
}

/// The site CA holder and the log, for the CA commands.
async fn open_ca(
    path: &std::path::Path,
) -> anyhow::Result<(
    SiteConfig,
    garrison_attestor::site_ca::SiteCa,
    garrison_log::AttestationLog,
)> {
    let config = SiteConfig::load(path)?;
    let ca = garrison_attestor::server::load_site_ca(&config)?;
    let origin =
        garrison_transparency::site_origin(ca.active().trust_domain().as_str(), &config.site);
    let log = garrison_log::AttestationLog::open(&garrison_log::LogConfig {
        url: config.database.clone(),
        origin: Some(origin),
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .with_context(|| format!("opening the attestation log {}", config.database))?;
    Ok((config, ca, log))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
