//! `garrison policy …`: test, evaluate, sign and verify admission policy bundles, and draft
//! allow-lists from a known-good machine's event log. Thin shell around `garrison-policy`:
//! reads files and directories, passes the clock and RNG in.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use garrison_policy::cases::Case;
use garrison_policy::{
    BundleFiles, BundleLimits, BundleSigner, EvalLimits, PolicyEngine, PolicyTrust, decode_archive,
    encode_archive, golden, verify_bundle,
};
use ring::rand::SystemRandom;
use serde_json::Value as Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the case files in DIR/cases against the policy source in DIR; exit 1 on any failure.
    Test(TestArgs),
    /// Evaluate a signed bundle (or, with --unsigned, a policy directory) on one input.
    Eval(EvalArgs),
    /// Sign the .rego files and data.json in a directory into a one-file bundle.
    Sign(SignArgs),
    /// Verify a bundle (archive file or signed directory) offline against a root.
    Verify(VerifyArgs),
    /// Draft a strict-policy data.json (or a sample input) from a KNOWN-GOOD machine's event log.
    Golden(GoldenArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policy directory: *.rego, data.json, cases/*.json.
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Bundle archive or signed directory.
    #[arg(long)]
    bundle: PathBuf,
    /// Root certificate(s), PEM, the bundle signer must chain to.
    #[arg(long, required_unless_present = "unsigned")]
    bundle_root: Option<PathBuf>,
    /// Treat --bundle as an unsigned policy directory (development only).
    #[arg(long)]
    unsigned: bool,
    /// Input document (JSON).
    #[arg(long)]
    input: PathBuf,
    /// Also print every rule of data.garrison.admission.
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Directory with the .rego files and data.json.
    #[arg(long)]
    dir: PathBuf,
    /// Signer private key, PKCS#8 PEM (ECDSA P-256/P-384 or Ed25519).
    #[arg(long)]
    key: PathBuf,
    /// Signer certificate chain, PEM, signer first (e.g. an SVID's chain.pem).
    #[arg(long)]
    cert: PathBuf,
    /// Bundle sequence; must be higher than the one in force where it is loaded.
    #[arg(long)]
    sequence: u64,
    /// Bundle name (default: the directory name).
    #[arg(long)]
    name: Option<String>,
    /// Output archive file (must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Bundle archive or signed directory.
    bundle: PathBuf,
    /// Root certificate(s), PEM.
    #[arg(long)]
    bundle_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// Event log (binary_bios_measurements) of a machine you trust. Every replayed PCR is
    /// taken as verified: never use this on evidence from the field.
    #[arg(long)]
    eventlog: PathBuf,
    /// Print a sample policy input for this log instead of a data.json draft.
    #[arg(long)]
    input: bool,
    /// Site id for --input.
    #[arg(long, default_value = "site-a")]
    site: String,
    /// Request time (RFC 3339) for --input; default now. A fixed time makes the output
    /// reproducible (the shipped `policy/policies/inputs` use 2025-06-01T12:00:00Z).
    #[arg(long)]
    time: Option<String>,
}

/// Run a policy command.
pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Test(args) => test(&args),
        PolicyCommand::Eval(args) => eval(&args),
        PolicyCommand::Sign(args) => sign(&args),
        PolicyCommand::Verify(args) => verify(&args),
        PolicyCommand::Golden(args) => golden_draft(&args),
    }
}

fn test(args: &TestArgs) -> anyhow::Result<()> {
    let name = dir_name(&args.dir);
    let engine = PolicyEngine::from_source(&name, &read_source(&args.dir)?, EvalLimits::default())
        .with_context(|| format!("compiling {}", args.dir.display()))?;
    let cases = case_paths(&args.dir.join("cases"))?;
    let mut failed = 0usize;
    for path in &cases {
        match run_case(&engine, path) {
            Ok(()) => println!("ok    {}", case_name(path)),
            Err(diffs) => {
                failed += 1;
                println!("FAIL  {}", case_name(path));
                for diff in diffs {
                    println!("      {diff}");
                }
            }
        }
    }
    println!(
        "{} cases: {} passed, {failed} failed",
        cases.len(),
        cases.len() - failed
    );
    if failed > 0 {
        bail!("{failed} case(s) failed");
    }
    Ok(())
}

fn run_case(engine: &PolicyEngine, path: &Path) -> Result<(), Vec<String>> {
    let case = fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| Case::parse(&bytes))
        .map_err(|e| vec![e])?;
    let base = match &case.base {
        Some(base) => Some(
            read_json(&path.parent().unwrap_or(Path::new(".")).join(base))
                .map_err(|e| vec![format!("{e:#}")])?,
        ),
        None => None,
    };
    case.check(engine, case.build_input(base))
}

fn case_paths(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no case files (*.json) in {}", dir.display());
    }
    Ok(paths)
}

fn case_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let engine = if args.unsigned {
        eprintln!("warning: evaluating an UNSIGNED policy directory (development only)");
        PolicyEngine::from_source(
            &dir_name(&args.bundle),
            &read_source(&args.bundle)?,
            EvalLimits::default(),
        )?
    } else {
        let root = args
            .bundle_root
            .as_deref()
            .context("--bundle-root is required")?;
        let verified = verify_bundle(
            &read_bundle(&args.bundle)?,
            &read_trust(root)?,
            OffsetDateTime::now_utc(),
            &BundleLimits::default(),
        )?;
        PolicyEngine::from_verified(&verified, EvalLimits::default())?
    };
    let input =
        fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let decision = engine.evaluate_json(&input)?;
    let mut out = serde_json::Map::new();
    out.insert("decision".to_owned(), serde_json::to_value(&decision)?);
    if args.explain {
        let parsed: Json = serde_json::from_slice(&input)?;
        out.insert("explain".to_owned(), engine.explain(parsed)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn sign(args: &SignArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!("refusing to overwrite {}", args.out.display());
    }
    let key =
        fs::read_to_string(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let cert = fs::read_to_string(&args.cert)
        .with_context(|| format!("reading {}", args.cert.display()))?;
    let signer = BundleSigner::from_pem(&key, &cert)?;
    let source = read_source(&args.dir)?;
    let name = args.name.clone().unwrap_or_else(|| dir_name(&args.dir));
    // Refuse to sign what would not load.
    PolicyEngine::from_source(&name, &source, EvalLimits::default())
        .with_context(|| format!("{} does not compile", args.dir.display()))?;
    let signed = signer.sign(
        &source,
        &name,
        args.sequence,
        OffsetDateTime::now_utc(),
        &SystemRandom::new(),
    )?;
    fs::write(&args.out, encode_archive(&signed))
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "signed {name} sequence {} → {}",
        args.sequence,
        args.out.display()
    );
    Ok(())
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let files = read_bundle(&args.bundle)?;
    let verified = verify_bundle(
        &files,
        &read_trust(&args.bundle_root)?,
        OffsetDateTime::now_utc(),
        &BundleLimits::default(),
    )?;
    PolicyEngine::from_verified(&verified, EvalLimits::default())
        .context("bundle verifies but does not compile")?;
    let m = &verified.manifest;
    println!(
        "OK {} sequence {} created {}",
        m.name, m.sequence, m.created
    );
    println!("digest  {}", verified.digest);
    println!("signer  {}", verified.signer);
    for (file, digest) in &m.files {
        println!("  {digest}  {file}");
    }
    Ok(())
}

fn golden_draft(args: &GoldenArgs) -> anyhow::Result<()> {
    let bytes =
        fs::read(&args.eventlog).with_context(|| format!("reading {}", args.eventlog.display()))?;
    let log = garrison_eventlog::EventLog::parse(&bytes).context("parsing the event log")?;
    let (claims, replayed) = golden::trusted_claims(&log);
    let out = if args.input {
        let time = match &args.time {
            Some(text) => OffsetDateTime::parse(text, &Rfc3339)
                .with_context(|| format!("--time {text:?} is not an RFC 3339 time"))?,
            None => OffsetDateTime::now_utc(),
        };
        golden::sample_input(&claims, &replayed, &args.site, time)?
    } else {
        eprintln!(
            "note: every replayed PCR is taken as verified; use only a log from a known-good machine"
        );
        golden::draft_strict_data(&claims, &replayed)
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `*.rego` and `data.json` of a policy directory.
fn read_source(dir: &Path) -> anyhow::Result<BundleFiles> {
    let files = read_dir_files(dir)?;
    Ok(files
        .into_iter()
        .filter(|(n, _)| n.ends_with(".rego") || n == garrison_policy::DATA_FILE)
        .collect())
}

/// A bundle from an archive file or a signed directory.
fn read_bundle(path: &Path) -> anyhow::Result<BundleFiles> {
    if path.is_dir() {
        return read_dir_files(path);
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(decode_archive(&bytes, &BundleLimits::default())?)
}

fn read_dir_files(dir: &Path) -> anyhow::Result<BundleFiles> {
    let mut files = BundleFiles::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.insert(
            name,
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    Ok(files)
}

fn read_trust(path: &Path) -> anyhow::Result<PolicyTrust> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(PolicyTrust::from_pem(&text)?)
}

fn read_json(path: &Path) -> anyhow::Result<Json> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn dir_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "policy".to_owned())
}
