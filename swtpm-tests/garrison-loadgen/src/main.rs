//! `garrison-loadgen`: simulated agents against a site attestor; prints `key=value` figures.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use garrison_loadgen::run::{AttestorMode, Config};

/// Drive a Garrison site attestor with simulated TPM agents and report its cost.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Simulated agents (each has at most one exchange in flight).
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Length of each measured phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Add a mixed phase in which each operation is a renewal with this probability.
    #[arg(long)]
    renew_ratio: Option<f64>,
    /// Offer this many operations per second in total (open loop) instead of closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// The `garrison` binary (default: next to this executable).
    #[arg(long)]
    garrison_bin: Option<PathBuf>,
    /// Run the attestor inside this process (CPU summed over its threads; RSS is the
    /// whole process's).
    #[arg(long, conflicts_with = "garrison_bin")]
    in_process: bool,
    /// Drive an attestor that is already running at HOST:PORT, serving the site prepared in
    /// --site-dir by an earlier `--prepare-only` run (server CPU and memory print as nan).
    #[arg(long, conflicts_with_all = ["garrison_bin", "in_process"], requires = "site_dir")]
    attestor: Option<std::net::SocketAddr>,
    /// Only create the site in --site-dir (CAs, strict policy, EK CA, site.toml) and print the
    /// path of its site.toml, for `garrison attestor serve --config` and a later `--attestor`.
    #[arg(long, requires = "site_dir")]
    prepare_only: bool,
    /// Attestation log URL (default: SQLite in the site directory).
    #[arg(long)]
    database: Option<String>,
    /// Extra site.toml line(s), e.g. "max_pending_challenges = 200".
    #[arg(long, default_value = "")]
    site_extra: String,
    /// Create the site here (kept) instead of in a temporary directory.
    #[arg(long)]
    site_dir: Option<PathBuf>,
    /// Enrollments timed in-process for the crypto floor.
    #[arg(long, default_value_t = 300)]
    floor_iterations: usize,
    /// Only the storm: every agent enrolls once, all starting at the same moment; the timed
    /// phases are skipped (their figures print as 0 or nan).
    #[arg(long)]
    storm_only: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = Config {
        agents: args.agents,
        seconds: args.seconds,
        renew_ratio: args.renew_ratio,
        rate: args.rate,
        attestor: match (args.attestor, args.in_process) {
            (Some(address), _) => AttestorMode::External(address),
            (None, true) => AttestorMode::InProcess,
            (None, false) => AttestorMode::Child(args.garrison_bin),
        },
        database: args.database,
        site_extra: args.site_extra,
        site_dir: args.site_dir,
        floor_iterations: args.floor_iterations,
        storm_only: args.storm_only,
    };
    if args.prepare_only {
        return match garrison_loadgen::run::prepare_only(&config) {
            Ok((site_toml, listen)) => {
                println!("site_toml={}", site_toml.display());
                println!("listen={listen}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("garrison-loadgen: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match garrison_loadgen::run::run(&config) {
        Ok(report) => {
            for sample in report.phases.all().flat_map(|p| &p.error_samples) {
                eprintln!("error: {sample}");
            }
            print!("{}", garrison_loadgen::report::render(&report));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("garrison-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
