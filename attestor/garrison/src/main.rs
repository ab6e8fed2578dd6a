//! `garrison`: the Garrison server and operator CLI.
//!
//! `main` parses arguments into typed commands and hands them to the command modules; all
//! trust decisions live in the library crates.
#![forbid(unsafe_code)]

mod ca_cmd;
mod duration;
mod outdir;
mod policy_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Garrison: zero-trust enrollment and attestation for edge fleets.
#[derive(Debug, Parser)]
#[command(name = "garrison", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authority: root, intermediates, SVIDs, bundles, inspection.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Admission policy: test case files, evaluate, sign and verify bundles, draft allow-lists.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca(command) => ca_cmd::run(command),
        Command::Policy(command) => policy_cmd::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
