//! `garrison evidence …`: check TPM evidence by hand, from the files the standard toolchain
//! (tpm2-tools) writes, with the same verifier the attestor uses.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use garrison_eventlog::{BootClaims, EventLog, ReplayedPcrs, VerifiedPcrs};
use garrison_evidence::{AkPolicy, EvidenceError, PcrValues, QuoteVerdict, Tpm2ToolsPcrFile};
use serde_json::{Value, json};

/// Evidence commands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Parse a measured-boot event log: events, replayed PCRs per bank, boot claims.
    Eventlog(EventlogArgs),
    /// Verify a TPM quote (tpm2_quote -m/-s/-o files) against an AK public area, a nonce and,
    /// optionally, an event log. Exit 0 only when every check passes.
    VerifyQuote(VerifyQuoteArgs),
}

#[derive(Debug, Args)]
pub struct EventlogArgs {
    /// A binary_bios_measurements file (SHA-1 or crypto-agile format).
    file: PathBuf,
    /// Print JSON; PCRs are lowercase hex under pcrs.<bank>.<index>.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyQuoteArgs {
    /// AK public area, TPM2B_PUBLIC (as written by `tpm2_createak -u`).
    #[arg(long)]
    ak_public: PathBuf,
    /// The quoted TPMS_ATTEST (`tpm2_quote -m`).
    #[arg(long)]
    message: PathBuf,
    /// The TPMT_SIGNATURE (`tpm2_quote -s`).
    #[arg(long)]
    signature: PathBuf,
    /// The PCR values (`tpm2_quote -o`).
    #[arg(long)]
    pcrs: PathBuf,
    /// The nonce (qualifying data) the quote must carry, hex.
    #[arg(long)]
    nonce: String,
    /// A measured-boot event log that must replay to the quoted PCRs.
    #[arg(long)]
    eventlog: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// INSECURE: accept AKs that sign with RSASSA-SHA1 (some older fleets create them).
    #[arg(long)]
    insecure_allow_sha1_ak: bool,
}

/// Run one evidence command. `Ok(false)` means the evidence was checked and refused.
pub fn run(command: EvidenceCommand) -> anyhow::Result<bool> {
    match command {
        EvidenceCommand::Eventlog(args) => eventlog(&args).map(|()| true),
        EvidenceCommand::VerifyQuote(args) => verify_quote(&args),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn eventlog(args: &EventlogArgs) -> anyhow::Result<()> {
    let bytes = read(&args.file)?;
    let log =
        EventLog::parse(&bytes).with_context(|| format!("event log {}", args.file.display()))?;
    let replayed = log.replay();
    // Without a quote nothing vouches for the log, so claims are derived as if every replayed
    // PCR were verified, and labelled as such.
    let all: VerifiedPcrs = replayed.iter().map(|(alg, pcr, _)| (alg, pcr)).collect();
    let claims = BootClaims::extract(&log, &all);
    if args.json {
        let doc = json!({
            "format": format!("{:?}", log.format()),
            "events": log.events(),
            "pcrs": pcrs_json(&replayed),
            "boot_claims": claims,
            "claims_basis": "log only: not checked against a TPM quote",
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_eventlog_text(&log, &replayed, &claims)
}

fn pcrs_json(replayed: &ReplayedPcrs) -> Value {
    let mut banks = serde_json::Map::new();
    for (alg, index, value) in replayed.iter() {
        let bank = banks
            .entry(alg.name())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(map) = bank {
            map.insert(index.to_string(), Value::String(hex::encode(value)));
        }
    }
    Value::Object(banks)
}

fn print_eventlog_text(
    log: &EventLog,
    replayed: &ReplayedPcrs,
    claims: &BootClaims,
) -> anyhow::Result<()> {
    println!("format: {:?}, {} events", log.format(), log.events().len());
    for event in log.events() {
        let text = event.text().map(|t| format!("  {t}")).unwrap_or_default();
        println!(
            "#{:<4} PCR {:<2} {}{}",
            event.index,
            event.pcr,
            event.event_type,
            truncate(&text, 100)
        );
    }
    println!("\nreplayed PCRs:");
    for (alg, index, value) in replayed.iter() {
        println!("  {alg:<7} {index:>2}  {}", hex::encode(value));
    }
    println!("\nboot claims (log only: not checked against a TPM quote):");
    println!("{}", serde_json::to_string_pretty(claims)?);
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// One named check and its outcome.
struct Check {
    name: &'static str,
    outcome: Result<String, String>,
}

fn verify_quote(args: &VerifyQuoteArgs) -> anyhow::Result<bool> {
    let nonce = hex::decode(args.nonce.trim()).context("--nonce must be hex")?;
    let ak_bytes = read(&args.ak_public)?;
    let attest = read(&args.message)?;
    let signature = read(&args.signature)?;
    let pcr_file = read(&args.pcrs)?;
    let log = args.eventlog.as_deref().map(read).transpose()?;

    let policy = AkPolicy {
        insecure_allow_sha1_signatures: args.insecure_allow_sha1_ak,
    };
    if args.insecure_allow_sha1_ak {
        eprintln!("warning: --insecure-allow-sha1-ak: accepting an AK that signs with SHA-1");
    }
    let mut checks = Vec::new();
    let verdict = quote_checks(
        &mut checks,
        &ak_bytes,
        &policy,
        &attest,
        &signature,
        &nonce,
        &pcr_file,
    );
    if let (Some((_, pcrs)), Some(log)) = (&verdict, &log) {
        checks.push(Check {
            name: "eventlog-replay",
            outcome: replay_check(log, pcrs),
        });
    }
    let ok = checks.iter().all(|c| c.outcome.is_ok());
    report(args.json, ok, &checks, verdict.as_ref().map(|(v, _)| v))?;
    Ok(ok)
}

fn quote_checks(
    checks: &mut Vec<Check>,
    ak_bytes: &[u8],
    policy: &AkPolicy,
    attest: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcr_file: &[u8],
) -> Option<(QuoteVerdict, PcrValues)> {
    let ak = match garrison_evidence::check_ak(ak_bytes, policy) {
        Ok(ak) => {
            checks.push(Check {
                name: "ak",
                outcome: Ok(format!("name {}", ak.name().to_hex())),
            });
            ak
        }
        Err(err) => {
            checks.push(failed(&err));
            return None;
        }
    };
    let pcrs = match Tpm2ToolsPcrFile::parse(pcr_file) {
        Ok(file) => file.values,
        Err(err) => {
            checks.push(Check {
                name: "pcr-file",
                outcome: Err(err.to_string()),
            });
            return None;
        }
    };
    match garrison_evidence::verify_quote(&ak, attest, signature, nonce, &pcrs) {
        Ok(verdict) => {
            let detail = format!(
                "{} PCRs, digest {}",
                verdict.selection.len(),
                verdict.pcr_digest_alg
            );
            checks.push(Check {
                name: "quote",
                outcome: Ok(detail),
            });
            Some((verdict, pcrs))
        }
        Err(err) => {
            checks.push(failed(&err));
            None
        }
    }
}

fn failed(err: &EvidenceError) -> Check {
    Check {
        name: err.check(),
        outcome: Err(err.to_string()),
    }
}

fn replay_check(log_bytes: &[u8], pcrs: &PcrValues) -> Result<String, String> {
    let log = EventLog::parse(log_bytes).map_err(|e| format!("event log does not parse: {e}"))?;
    let mut quoted = garrison_eventlog::PcrValues::new();
    for (alg, index, value) in pcrs.iter() {
        quoted
            .insert(alg, index, value.to_vec())
            .map_err(|e| e.to_string())?;
    }
    let report = garrison_eventlog::ReplayReport::compare(&log, &quoted);
    if report.all_match() {
        Ok(format!(
            "{} events replay to all {} quoted PCRs",
            log.events().len(),
            pcrs.len()
        ))
    } else {
        Err(report.to_string())
    }
}

fn report(
    json: bool,
    ok: bool,
    checks: &[Check],
    verdict: Option<&QuoteVerdict>,
) -> anyhow::Result<()> {
    if json {
        let doc = json!({
            "verified": ok,
            "failed_check": checks.iter().find(|c| c.outcome.is_err()).map(|c| c.name),
            "checks": checks.iter().map(|c| match &c.outcome {
                Ok(detail) => json!({"check": c.name, "ok": true, "detail": detail}),
                Err(error) => json!({"check": c.name, "ok": false, "error": error}),
            }).collect::<Vec<_>>(),
            "quote": verdict.map(|v| json!({
                "clock": v.clock, "reset_count": v.reset_count, "restart_count": v.restart_count,
                "safe": v.safe, "firmware_version": v.firmware_version,
                "qualified_signer": hex::encode(&v.qualified_signer),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for check in checks {
        match &check.outcome {
            Ok(detail) => println!("ok      {:<16} {detail}", check.name),
            Err(error) => println!("FAILED  {:<16} {error}", check.name),
        }
    }
    if let Some(v) = verdict {
        println!(
            "clock {} ms, resetCount {}, restartCount {}, safe {}, firmware {:#x}",
            v.clock, v.reset_count, v.restart_count, v.safe, v.firmware_version
        );
    }
    println!("{}", if ok { "verified" } else { "NOT verified" });
    Ok(())
}
