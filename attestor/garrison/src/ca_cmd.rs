//! `garrison ca …`: the operator's view of the CA hierarchy. Thin shell around `garrison-ca`:
//! reads files, passes the clock and RNG in, writes output directories atomically.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use garrison_ca::{
    Authority, BundleMetadata, CaRole, CertificateSummary, IntermediateParams, Issued,
    KeyAlgorithm, PathLen, PrivateKey, RootParams, SpiffeId, SubjectKey, SvidParams, TrustBundle,
    TrustDomain, VerifiedCsr, certificates_from_pem, certificates_to_pem,
};
use ring::rand::SystemRandom;
use time::OffsetDateTime;

use crate::duration::parse_duration;
use crate::outdir::{OutFile, write_all_or_nothing};

/// CA commands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed root CA (the trust anchor) in a new directory.
    InitRoot(InitRoot),
    /// Issue a hub or site intermediate CA from an issuer directory.
    IssueIntermediate(IssueIntermediate),
    /// Issue a leaf X.509-SVID from an issuer directory.
    IssueSvid(IssueSvid),
    /// Print an issuer's trust bundle (its roots) as PEM or as a SPIFFE bundle (JWKS).
    Bundle(BundleArgs),
    /// Announce a new root: certify its subject and key with the current root (a
    /// cross-signed certificate). Publish it with `garrison hub publish-root`; sites send it
    /// to agents, which add it to the bundle they write (see the README's root rotation).
    CrossSign(CrossSign),
    /// Summarise the certificates in a PEM or DER file.
    Inspect(Inspect),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Curve {
    /// ECDSA P-256
    P256,
    /// ECDSA P-384
    P384,
}

#[derive(Debug, Args)]
pub struct InitRoot {
    /// Trust domain, e.g. example.org (lowercase).
    #[arg(long)]
    trust_domain: String,
    /// Output directory (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Lifetime: 30d, 12h, ...
    #[arg(long, default_value = "3650d")]
    ttl: String,
    /// Subject common name.
    #[arg(long, default_value = "Garrison Root CA")]
    name: String,
    /// pathLenConstraint; 2 allows root → hub → site → leaf.
    #[arg(long, default_value_t = 2)]
    path_len: u8,
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "p256")]
    curve: Curve,
}

#[derive(Debug, Args)]
pub struct IssueIntermediate {
    /// Issuer directory (cert.pem, key.pem, chain.pem, bundle.pem).
    #[arg(long)]
    issuer: PathBuf,
    /// Subject common name of the new CA, e.g. hub or site-a.
    #[arg(long)]
    name: String,
    /// What the new CA may vouch for: `hub`, `policy` or `site/<name>` (a site CA issues only
    /// `spiffe://<td>/site/<name>/…`; a policy CA only policy signers). Written into its subject.
    #[arg(long)]
    role: String,
    /// Certify the key in this PKCS#10 CSR (PEM) instead of generating one.
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Lifetime; refused if it would outlive the issuer.
    #[arg(long)]
    ttl: String,
    /// pathLenConstraint; default one below the issuer's.
    #[arg(long)]
    path_len: Option<u8>,
    /// Key algorithm when generating.
    #[arg(long, value_enum, default_value = "p256")]
    curve: Curve,
    /// Output directory (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct IssueSvid {
    /// Issuer directory (normally a site intermediate).
    #[arg(long)]
    issuer: PathBuf,
    /// The SPIFFE ID, e.g. spiffe://example.org/site/a/node/n1.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime; capped at the issuer's expiry (reported when that happens).
    #[arg(long)]
    ttl: String,
    /// Longest lifetime accepted; longer requests are refused.
    #[arg(long, default_value = "24h")]
    max_ttl: String,
    /// Certify the key in this PKCS#10 CSR (PEM); its subject and SANs are ignored.
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Key algorithm when generating.
    #[arg(long, value_enum, default_value = "p256")]
    curve: Curve,
    /// Output directory (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BundleFormat {
    /// Concatenated PEM certificates.
    Pem,
    /// SPIFFE bundle: JWKS with use "x509-svid".
    Spiffe,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Directory whose bundle.pem holds the roots.
    #[arg(long)]
    issuer: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: BundleFormat,
    /// spiffe_sequence (SPIFFE format only).
    #[arg(long, default_value_t = 1)]
    sequence: u64,
    /// spiffe_refresh_hint in seconds (SPIFFE format only).
    #[arg(long, default_value_t = 3600)]
    refresh_hint: u64,
}

#[derive(Debug, Args)]
pub struct Inspect {
    /// A PEM (one or more certificates) or DER certificate file.
    file: PathBuf,
    /// Print JSON (an array, one object per certificate) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CrossSign {
    /// The current root's directory (cert.pem, key.pem).
    #[arg(long)]
    issuer: PathBuf,
    /// The new root's certificate (PEM), e.g. new-root/cert.pem.
    #[arg(long)]
    new_root: PathBuf,
    /// Where to write the cross-signed certificate (PEM; must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// Run one CA command with the current time and the system RNG.
pub fn run(command: CaCommand) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let rng = SystemRandom::new();
    match command {
        CaCommand::InitRoot(args) => init_root(args, now, &rng),
        CaCommand::IssueIntermediate(args) => issue_intermediate(args, now, &rng),
        CaCommand::IssueSvid(args) => issue_svid(args, now, &rng),
        CaCommand::Bundle(args) => bundle(args),
        CaCommand::Inspect(args) => inspect(args),
        CaCommand::CrossSign(args) => cross_sign(args, now, &rng),
    }
}

fn cross_sign(args: CrossSign, now: OffsetDateTime, rng: &SystemRandom) -> anyhow::Result<()> {
    let issuer = load_authority(&args.issuer)?;
    let new_root = certificates_from_pem(&read_text(&args.new_root)?)?
        .into_iter()
        .next()
        .context("no certificate in the new root's file")?;
    let issued = issuer.cross_sign(&new_root, now, rng)?;
    let pem = certificates_to_pem(std::slice::from_ref(&issued.certificate));
    crate::outdir::write_new_file(&args.out, pem.as_bytes())?;
    report("the cross-signed new root", &args.out, &issued)
}

fn key_algorithm(curve: Curve) -> KeyAlgorithm {
    match curve {
        Curve::P256 => KeyAlgorithm::EcdsaP256,
        Curve::P384 => KeyAlgorithm::EcdsaP384,
    }
}

fn init_root(args: InitRoot, now: OffsetDateTime, rng: &SystemRandom) -> anyhow::Result<()> {
    let params = RootParams {
        trust_domain: TrustDomain::new(&args.trust_domain).context("--trust-domain")?,
        name: args.name,
        ttl: parse_duration(&args.ttl).context("--ttl")?,
        path_len: args.path_len,
        key_algorithm: key_algorithm(args.curve),
    };
    let issued = Authority::new_root(&params, now, rng)?;
    write_issued(&args.out, &issued)?;
    report("root CA", &args.out, &issued)
}

fn issue_intermediate(
    args: IssueIntermediate,
    now: OffsetDateTime,
    rng: &SystemRandom,
) -> anyhow::Result<()> {
    let issuer = load_authority(&args.issuer)?;
    let params = IntermediateParams {
        name: args.name,
        role: CaRole::parse(&args.role).context("--role")?,
        ttl: parse_duration(&args.ttl).context("--ttl")?,
        path_len: args
            .path_len
            .map_or(PathLen::OneBelowIssuer, PathLen::Exactly),
        subject_key: subject_key(args.csr.as_deref(), args.curve)?,
    };
    let issued = issuer.issue_intermediate(params, now, rng)?;
    write_issued(&args.out, &issued)?;
    report("intermediate CA", &args.out, &issued)
}

fn issue_svid(args: IssueSvid, now: OffsetDateTime, rng: &SystemRandom) -> anyhow::Result<()> {
    let issuer = load_authority(&args.issuer)?;
    let params = SvidParams {
        spiffe_id: SpiffeId::parse(&args.spiffe_id).context("--spiffe-id")?,
        ttl: parse_duration(&args.ttl).context("--ttl")?,
        max_ttl: parse_duration(&args.max_ttl).context("--max-ttl")?,
        subject_key: subject_key(args.csr.as_deref(), args.curve)?,
    };
    let issued = issuer.issue_svid(params, now, rng)?;
    write_issued(&args.out, &issued)?;
    if issued.capped_at_issuer_expiry {
        eprintln!(
            "note: lifetime capped at the issuer's expiry ({}); renew the issuer for longer SVIDs",
            issued.not_after
        );
    }
    report("X.509-SVID", &args.out, &issued)
}

fn subject_key(csr: Option<&Path>, curve: Curve) -> anyhow::Result<SubjectKey> {
    match csr {
        None => Ok(SubjectKey::Generate(key_algorithm(curve))),
        Some(path) => {
            let text = read_text(path)?;
            let csr =
                VerifiedCsr::from_pem(&text).with_context(|| format!("CSR {}", path.display()))?;
            Ok(SubjectKey::Csr(csr))
        }
    }
}

fn load_authority(dir: &Path) -> anyhow::Result<Authority> {
    let cert = certificates_from_pem(&read_text(&dir.join("cert.pem"))?)?;
    let Some(cert) = cert.into_iter().next() else {
        bail!("{}/cert.pem holds no certificate", dir.display());
    };
    let key = PrivateKey::from_pkcs8_pem(&read_text(&dir.join("key.pem"))?)
        .with_context(|| format!("{}/key.pem", dir.display()))?;
    let chain = certificates_from_pem(&read_text(&dir.join("chain.pem"))?)?;
    let roots = certificates_from_pem(&read_text(&dir.join("bundle.pem"))?)?;
    Authority::new(cert, key, chain, roots)
        .with_context(|| format!("issuer {} cannot issue", dir.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_issued(dir: &Path, issued: &Issued) -> anyhow::Result<()> {
    let cert = certificates_to_pem(std::slice::from_ref(&issued.certificate));
    let chain = certificates_to_pem(&issued.chain);
    let bundle = certificates_to_pem(&issued.roots);
    let key = issued.key.as_ref().map(PrivateKey::to_pkcs8_pem);
    let mut files = vec![
        OutFile {
            name: "cert.pem",
            contents: cert.as_bytes(),
            secret: false,
        },
        OutFile {
            name: "chain.pem",
            contents: chain.as_bytes(),
            secret: false,
        },
        OutFile {
            name: "bundle.pem",
            contents: bundle.as_bytes(),
            secret: false,
        },
    ];
    if let Some(key) = &key {
        files.push(OutFile {
            name: "key.pem",
            contents: key.expose().as_bytes(),
            secret: true,
        });
    }
    write_all_or_nothing(dir, &files)
}

fn report(what: &str, dir: &Path, issued: &Issued) -> anyhow::Result<()> {
    let summary = CertificateSummary::from_der(&issued.certificate)?;
    println!("wrote {what} to {}", dir.display());
    print!("{}", summary.to_text());
    Ok(())
}

fn bundle(args: BundleArgs) -> anyhow::Result<()> {
    let roots = certificates_from_pem(&read_text(&args.issuer.join("bundle.pem"))?)?;
    let bundle = TrustBundle::new(roots)?;
    match args.format {
        BundleFormat::Pem => print!("{}", bundle.to_pem()),
        BundleFormat::Spiffe => println!(
            "{}",
            bundle.to_spiffe_json(BundleMetadata {
                sequence: args.sequence,
                refresh_hint_seconds: args.refresh_hint,
            })?
        ),
    }
    Ok(())
}

fn inspect(args: Inspect) -> anyhow::Result<()> {
    let bytes = fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let ders = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => certificates_from_pem(text)?,
        _ => vec![bytes],
    };
    let summaries = ders
        .iter()
        .map(|der| CertificateSummary::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a certificate", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
    } else {
        let texts: Vec<String> = summaries.iter().map(CertificateSummary::to_text).collect();
        print!("{}", texts.join("\n"));
    }
    Ok(())
}
