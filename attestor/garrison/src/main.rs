//! `garrison`: the Garrison server and operator CLI.
//!
//! `main` parses arguments into typed commands and hands them to the command modules; all
//! trust decisions live in the library crates.
#![forbid(unsafe_code)]

mod ca_cmd;
mod duration;
mod evidence_cmd;
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
    /// TPM evidence: event logs and quotes, checked with the attestor's verifier.
    #[command(subcommand)]
    Evidence(evidence_cmd::EvidenceCommand),
    /// Admission policy: test case files, evaluate, sign and verify bundles, draft allow-lists.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca(command) => ca_cmd::run(command),
        Command::Evidence(command) => match evidence_cmd::run(command) {
            Ok(true) => Ok(()),
            // The evidence was read and refused: the report already says which check failed.
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
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
