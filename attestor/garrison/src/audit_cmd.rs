//! `garrison audit`: the auditor's commands. Each reads a log database directly (SQLite or
//! PostgreSQL, opened read-only) or an archive written by `garrison audit export` (a SQLite
//! file: give its path).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use garrison_log::{AttestationLog, Query};
use garrison_transparency::{InclusionProof, LogKeyCertificate, leaf_hash_of, verify_checkpoint};

use garrison_attestor::FIELD_LIMITS;
use garrison_audit::Outcome;
use time::format_description::well_known::Rfc3339;

use crate::log_cmd::{RecordFilter, parse_since, print_line};

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List records matching every given filter, oldest first, a page at a time.
    Query(QueryArgs),
    /// Verify the whole log against the root certificate: every record's leaf and evidence,
    /// every checkpoint's signature and root, the log key's certificate chain. Exits 1 and
    /// names the first bad record if anything is wrong.
    Verify(VerifyArgs),
    /// Write the inclusion proof of one record in the latest signed checkpoint (C2SP
    /// tlog-proof, with the record's canonical bytes as its extra data).
    Prove(ProveArgs),
    /// Check a tlog-proof offline: the checkpoint's signature with a log key certified under
    /// the root, and the record's inclusion.
    CheckProof(CheckProofArgs),
    /// Write a self-contained archive of the log (a SQLite file) that every audit command
    /// reads.
    Export(ExportArgs),
    /// Re-run the appraisal over every decision record's stored evidence, with the policy
    /// bundle then in force, and show that each verdict is reproduced (exits 1 if one is
    /// not). With --policy, a what-if: the nodes whose decision that bundle would change.
    Replay(ReplayArgs),
    /// A node's latest decision as an attestation result for relying parties: an EAR
    /// (draft-ietf-rats-ear) JWT signed by the attestor's log key, fetched through the Audit
    /// service and checked against --root before it is printed. A database or an archive
    /// holds no signing key: there, --unsigned prints the claims the attestor would sign.
    Ear(EarArgs),
}

#[derive(Debug, Args)]
pub struct Source {
    /// The log: sqlite:///path, postgres://..., or the path of an exported archive.
    #[arg(
        long,
        required_unless_present = "attestor",
        conflicts_with = "attestor"
    )]
    db: Option<String>,
    /// The log's origin (garrison.<td>/site/<site>), when the database holds several.
    #[arg(long)]
    origin: Option<String>,
    /// Read through the attestor's Audit service instead: https://host:port.
    #[arg(long, requires_all = ["attestor_id", "svid", "key", "bundle"])]
    attestor: Option<String>,
    /// The attestor's SPIFFE ID (spiffe://<td>/site/<site>/attestor).
    #[arg(long)]
    attestor_id: Option<String>,
    /// The auditor's SVID chain (PEM, leaf first): spiffe://<td>/auditor/<name>.
    #[arg(long)]
    svid: Option<PathBuf>,
    /// The auditor's private key (PKCS#8 PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The trust domain's root certificate(s), PEM, to authenticate the attestor.
    #[arg(long)]
    bundle: Option<PathBuf>,
}

/// A log opened for an audit command.
pub enum Opened {
    Local(AttestationLog),
    Remote(crate::audit_remote::RemoteLog),
}

impl Opened {
    async fn close(self) {
        if let Opened::Local(log) = self {
            log.close().await;
        }
    }
}

impl garrison_audit::LogSource for Opened {
    fn origin(&self) -> Option<String> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::origin(log),
            Opened::Remote(log) => log.origin(),
        }
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<garrison_log::StoredRecord>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => log.records_after(after, limit).await,
            Opened::Remote(log) => log.records_after(after, limit).await,
        }
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::evidence(log, digest).await,
            Opened::Remote(log) => log.evidence(digest).await,
        }
    }

    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::evidence_many(log, digests).await,
            Opened::Remote(log) => log.evidence_many(digests).await,
        }
    }

    async fn checkpoints(
        &self,
    ) -> Result<Vec<garrison_log::StoredCheckpoint>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::checkpoints(log).await,
            Opened::Remote(log) => log.checkpoints().await,
        }
    }

    async fn log_key_certificates(&self) -> Result<Vec<String>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::log_key_certificates(log).await,
            Opened::Remote(log) => log.log_key_certificates().await,
        }
    }

    async fn stated_size(&self) -> Result<Option<u64>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::stated_size(log).await,
            Opened::Remote(log) => log.stated_size().await,
        }
    }

    async fn cosignatures(
        &self,
    ) -> Result<Vec<garrison_log::StoredCosignature>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::cosignatures(log).await,
            Opened::Remote(log) => log.cosignatures().await,
        }
    }

    async fn witness_certificates(&self) -> Result<Vec<String>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::witness_certificates(log).await,
            Opened::Remote(log) => log.witness_certificates().await,
        }
    }

    async fn stored_tree_hashes(
        &self,
        first: u64,
        end: u64,
    ) -> Result<Option<garrison_audit::StoredTreeHashes>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => {
                garrison_audit::LogSource::stored_tree_hashes(log, first, end).await
            }
            Opened::Remote(log) => log.stored_tree_hashes(first, end).await,
        }
    }

    async fn enforced_revocations(
        &self,
    ) -> Result<Option<garrison_audit::EnforcedRevocations>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::enforced_revocations(log).await,
            Opened::Remote(log) => log.enforced_revocations().await,
        }
    }

    async fn node_states(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<garrison_log::KeptNodeState>>, garrison_audit::AuditError> {
        match self {
            Opened::Local(log) => garrison_audit::LogSource::node_states(log, after, limit).await,
            Opened::Remote(log) => log.node_states(after, limit).await,
        }
    }
}

impl Source {
    async fn open_any(&self) -> anyhow::Result<Opened> {
        let Some(address) = &self.attestor else {
            return Ok(Opened::Local(self.open().await?));
        };
        let read = |path: &Option<PathBuf>, what: &str| -> anyhow::Result<Vec<u8>> {
            let path = path
                .as_ref()
                .with_context(|| format!("--{what} is required with --attestor"))?;
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let identity = garrison_spiffe_tls::Identity::from_pem(
            &read(&self.svid, "svid")?,
            &read(&self.key, "key")?,
        )
        .context("the auditor's SVID and key")?;
        let attestor_id = self
            .attestor_id
            .as_deref()
            .context("--attestor-id is required with --attestor")?;
        let remote = crate::audit_remote::RemoteLog::connect(
            address,
            attestor_id,
            &read(&self.bundle, "bundle")?,
            identity,
        )
        .await
        .with_context(|| format!("connecting to the Audit service at {address}"))?;
        Ok(Opened::Remote(remote))
    }

    async fn open(&self) -> anyhow::Result<AttestationLog> {
        let db = self
            .db
            .as_deref()
            .context("this command reads a database or archive: give --db")?;
        let url = if db.contains("://") {
            db.to_owned()
        } else {
            if !std::path::Path::new(db).is_file() {
                bail!("{db}: no such file");
            }
            format!("sqlite://{db}")
        };
        AttestationLog::open_read_only(&url, self.origin.as_deref())
            .await
            .with_context(|| format!("opening {db} read-only"))
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    filter: RecordFilter,
    /// Records per page (at most 10000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// JSON (an array of records) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// The trust domain's root certificate(s), PEM: the only thing trusted.
    #[arg(long)]
    root: PathBuf,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
    /// The source is a site's own database (not a copy of its log): the attestor's
    /// enforcement state (node states, revocations) must be there, and is checked against
    /// the log. Without it, a database whose node and revocation rows were all deleted
    /// reads like a copy, whose state is not checked.
    #[arg(long)]
    site_database: bool,
    /// A signed checkpoint of this log seen before (a file holding its note, or a tlog-proof
    /// whose checkpoint is taken; from an earlier verify, a proof, or the hub): the log must
    /// still reproduce it. Finds a log cut back or rewritten with every checkpoint kept with
    /// it. May be given more than once.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[command(flatten)]
    source: Source,
    /// The record's sequence.
    #[arg(long)]
    sequence: u64,
    /// Write the proof here instead of to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckProofArgs {
    /// The tlog-proof file.
    proof: PathBuf,
    /// The trust domain's root certificate(s), PEM.
    #[arg(long)]
    root: PathBuf,
    /// Where the log key certificates come from: the log or an archive.
    #[command(flatten)]
    source: Source,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: Source,
    /// The archive to write (a new SQLite file; never overwritten).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    source: Source,
    /// The trust domain's root certificate(s), PEM: policy bundles are verified against it.
    #[arg(long)]
    root: PathBuf,
    /// A proposed signed policy bundle: decide every record with it instead ("what would
    /// this policy have decided?"), and list the decisions it would change.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Records at or after this time: RFC 3339, or an age such as 2h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Records before this time: RFC 3339, or an age such as 2h or 7d.
    #[arg(long)]
    until: Option<String>,
    /// Only this node's records (EK public-key SHA-256, hex).
    #[arg(long)]
    node: Option<String>,
    /// The site's PCR selection (its site.toml `pcrs`), which the log does not hold.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7,8,9")]
    pcrs: Vec<u32>,
    /// The site's max_svid_ttl (caps lifetimes only; never changes a verdict).
    #[arg(long, default_value = "24h")]
    max_svid_ttl: String,
    /// The site accepts SHA-1 AK signatures (its insecure.allow_sha1_ak).
    #[arg(long)]
    insecure_allow_sha1_ak: bool,
    /// JSON ({"summary", "records"}) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct EarArgs {
    #[command(flatten)]
    source: Source,
    /// The node: its id (EK public-key SHA-256, hex).
    #[arg(
        long,
        required_unless_present = "spiffe_id",
        conflicts_with = "spiffe_id"
    )]
    node: Option<String>,
    /// The node by a SPIFFE ID a decision gave it.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// The trust domain's root certificate(s), PEM: the EAR's x5c chain must lead to it
    /// (and, with --unsigned, policy bundles are verified against it).
    #[arg(long)]
    root: PathBuf,
    /// Print the verified claims (JSON) instead of the JWT.
    #[arg(long)]
    claims: bool,
    /// With --db: print the claims the attestor would sign, unsigned (JSON).
    #[arg(long)]
    unsigned: bool,
}

/// Most records one query returns.
const MAX_PAGE: u32 = 10_000;

/// Run an audit command. `Ok(false)`: the command ran and found the log (or proof) bad.
pub async fn run(command: AuditCommand) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Query(args) => query(args).await.map(|()| true),
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Prove(args) => prove(args).await.map(|()| true),
        AuditCommand::CheckProof(args) => check_proof(args).await,
        AuditCommand::Export(args) => export(args).await.map(|()| true),
        AuditCommand::Replay(args) => replay(args).await,
        AuditCommand::Ear(args) => attestation_result(args).await.map(|()| true),
    }
}

async fn attestation_result(args: EarArgs) -> anyhow::Result<()> {
    let roots = read_roots(&args.root)?;
    let node = match (args.node, args.spiffe_id) {
        (Some(id), _) => garrison_audit::NodeRef::NodeId(id),
        (None, Some(id)) => garrison_audit::NodeRef::SpiffeId(id),
        (None, None) => bail!("give --node or --spiffe-id"),
    };
    match args.source.open_any().await? {
        Opened::Remote(remote) => {
            let token = fetch_attestation_result(&remote, &node).await?;
            let verified = garrison_ear::verify_jwt(&token, &roots)
                .context("the attestation result the attestor sent does not verify")?;
            if args.claims {
                println!("{}", serde_json::to_string_pretty(&verified.claims)?);
            } else {
                println!("{token}");
            }
            Ok(())
        }
        Opened::Local(log) => {
            if !args.unsigned {
                log.close().await;
                bail!(
                    "an attestation result is signed by the attestor's log key, which a \
                     database or an archive does not hold: fetch it with --attestor, or print \
                     the claims the attestor would sign with --unsigned"
                );
            }
            let facts = garrison_audit::decision_facts(&log, &node, &roots).await;
            log.close().await;
            let ear =
                garrison_ear::attestation_result(&facts.context("the node's latest decision")?)?;
            println!("{}", serde_json::to_string_pretty(&ear)?);
            Ok(())
        }
    }
}

async fn fetch_attestation_result(
    remote: &crate::audit_remote::RemoteLog,
    node: &garrison_audit::NodeRef,
) -> anyhow::Result<String> {
    use garrison_proto::v1::attestation_result_request::Node;
    let node = match node {
        garrison_audit::NodeRef::NodeId(id) => Node::NodeId(id.clone()),
        garrison_audit::NodeRef::SpiffeId(id) => Node::SpiffeId(id.clone()),
    };
    let response = remote
        .client()
        .get_attestation_result(garrison_proto::v1::AttestationResultRequest { node: Some(node) })
        .await
        .map_err(|s| anyhow::anyhow!("the Audit service: {}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().ear_jwt)
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    if args.limit == 0 || args.limit > MAX_PAGE {
        bail!("--limit must be between 1 and {MAX_PAGE}");
    }
    let filter = args.filter.to_query(Some(args.limit))?;
    let records = match args.source.open_any().await? {
        Opened::Local(log) => {
            let records = log.query(&filter).await;
            log.close().await;
            records.context("querying the log")?
        }
        Opened::Remote(remote) => remote_query(&remote, &filter).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        records.iter().for_each(print_line);
        match records.last() {
            Some(last) if records.len() == args.limit as usize => {
                println!(
                    "{} record(s); more may follow: --after {}",
                    records.len(),
                    last.sequence
                )
            }
            _ => println!("{} record(s)", records.len()),
        }
    }
    Ok(())
}

fn read_roots(path: &PathBuf) -> anyhow::Result<Vec<Vec<u8>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let roots =
        garrison_ca::certificates_from_pem(&text).with_context(|| format!("{}", path.display()))?;
    if roots.is_empty() {
        bail!("{}: no certificate", path.display());
    }
    Ok(roots)
}

/// The signed checkpoint notes in `files`: each a note, or a tlog-proof (its checkpoint).
fn given_checkpoints(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    files
        .iter()
        .map(|path| {
            // A checkpoint note is well under a kilobyte, a proof a few; anything far larger
            // is not one (and is not read whole).
            const MAX_BYTES: u64 = 64 * 1024;
            let size = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            if size > MAX_BYTES {
                bail!(
                    "{}: {size} bytes, more than a checkpoint or a proof ({MAX_BYTES} at most)",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if text.starts_with("c2sp.org/tlog-proof@") {
                let proof = garrison_transparency::InclusionProof::parse(&text)
                    .with_context(|| format!("{}: not a tlog-proof", path.display()))?;
                Ok(proof.checkpoint)
            } else {
                Ok(text)
            }
        })
        .collect()
}

async fn verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let roots = read_roots(&args.root)?;
    let log = args.source.open_any().await?;
    if args.site_database && matches!(log, Opened::Remote(_)) {
        log.close().await;
        bail!("--site-database needs --db: the Audit service serves no enforcement state");
    }
    let given = match given_checkpoints(&args.checkpoints) {
        Ok(given) => given,
        Err(e) => {
            log.close().await;
            return Err(e);
        }
    };
    let report = garrison_audit::verify_against(&log, &roots, &given).await;
    // The hub's cosignatures, from the database, the archive or the Audit service.
    let witnessed = garrison_audit::check_cosignatures(&log, &roots).await;
    // A site's database may hold its log from before a rename: the site enforces that log's
    // revocations too, so an auditor verifies it as well.
    let other_origins = match (&log, args.site_database) {
        (Opened::Local(local), true) => local.origins().await.map(|origins| {
            let own = local.origin().map(str::to_owned);
            origins
                .into_iter()
                .filter(|o| Some(o) != own.as_ref())
                .collect::<Vec<_>>()
        }),
        _ => Ok(Vec::new()),
    };
    // The hub's revocation list the site keeps, against what it enforces.
    let hub_revocations = match (&log, args.site_database) {
        (Opened::Local(local), true) => {
            Some(garrison_audit::check_hub_revocations(local, &roots).await)
        }
        _ => None,
    };
    let kept = match &log {
        Opened::Local(_) => "kept",
        Opened::Remote(_) => "served",
    };
    log.close().await;
    let mut report = report.context("verifying the log")?;
    if args.site_database {
        report.expect_enforcement_state();
    }
    let hub_revocations = hub_revocations
        .transpose()
        .context("checking the hub's revocation list")?;
    if let Some(checked) = &hub_revocations {
        report.add_hub_revocations(checked);
    }
    let w = witnessed.context("checking the hub's cosignatures")?;
    let other_origins = other_origins.context("listing the database's logs")?;
    if args.json {
        // The report's fields, and the cosignatures' check beside them.
        let mut json = serde_json::to_value(&report)?;
        if let Some(object) = json.as_object_mut() {
            object.insert("hub_cosignatures".into(), serde_json::to_value(&w)?);
            if args.site_database {
                object.insert(
                    "other_origins".into(),
                    serde_json::to_value(&other_origins)?,
                );
                object.insert(
                    "hub_revocations".into(),
                    serde_json::to_value(&hub_revocations)?,
                );
            }
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(report.ok() && w.failed.is_empty());
    }
    println!("log {}", report.origin);
    println!("records: {}", report.records);
    println!(
        "log key certificates verified against the root: {}",
        report.certified_keys
    );
    println!(
        "signed checkpoints verified: {} (records 0..{} proven as signed; {} after the last checkpoint)",
        report.checkpoints_verified, report.verified_size, report.unsigned_tail
    );
    if report.checkpoints_given > 0 {
        println!(
            "checkpoints given with --checkpoint: {} (each must be reproduced by the log)",
            report.checkpoints_given
        );
    }
    match report.revocations_checked {
        Some(n) => println!("revocations the attestor enforces, checked against the log: {n}"),
        None => println!(
            "revocations the attestor enforces: no enforcement state in this source (not checked)"
        ),
    }
    if let Some(n) = report.node_states_checked {
        println!("node states the attestor keeps, checked against the log: {n}");
        if report.node_states_not_derived > 0 {
            println!(
                "  of which {} without AK, identity or counters derivable from their evidence (those not compared)",
                report.node_states_not_derived
            );
        }
        if report.nodes_without_state_count > 0 {
            println!(
                "  nodes the log allowed with no state kept: {}{}",
                report.nodes_without_state_count,
                if args.site_database {
                    ""
                } else {
                    " (a problem on a site's own database: --site-database)"
                }
            );
        }
    }
    if let Some(checked) = &hub_revocations {
        match checked.list_sequence {
            Some(sequence) => println!(
                "hub revocation list #{sequence} kept: {} entries, {} not enforced",
                checked.entries, checked.not_enforced_count
            ),
            None => println!("hub revocation list: none kept"),
        }
    }
    if !other_origins.is_empty() {
        println!(
            "the database also holds the logs of: {} (the site enforces their revocations too: \
             verify each with --origin)",
            other_origins.join(", ")
        );
    }
    for problem in &report.problems {
        println!("PROBLEM: {}", serde_json::to_string(problem)?);
    }
    if report.problems_not_listed > 0 {
        println!("... and {} more problems", report.problems_not_listed);
    }
    if let Some(sequence) = report.first_bad_sequence {
        if report.first_bad_exact {
            println!("FIRST BAD RECORD: #{sequence}");
        } else {
            println!(
                "FIRST RECORD IN DOUBT: #{sequence} (a signed checkpoint after it is not what the \
                 records give: records from here on were changed together with their leaf \
                 hashes, or the checkpoint is of a forked tree)"
            );
        }
    }
    match w.latest_size {
        Some(size) => println!(
            "hub cosignatures verified against the root: {} (witnessed up to size {size})",
            w.verified
        ),
        None if w.failed.is_empty() => println!("hub cosignatures: none {kept}"),
        None => {}
    }
    for (size, why) in &w.failed {
        println!("PROBLEM: the cosignature of checkpoint {size} does not verify: {why}");
    }
    let witnessed_ok = w.failed.is_empty();
    if report.ok() && !witnessed_ok {
        println!("NOT OK: a hub cosignature does not verify");
        return Ok(false);
    }
    if report.ok() {
        println!("OK: every record matches the signed checkpoints");
    } else if report.checkpoints_verified == 0 && report.problems.is_empty() {
        println!("NOT VERIFIED: no signed checkpoint verified");
    } else if report.checkpoints_verified > 0
        && report.problems_not_listed == 0
        && report
            .problems
            .iter()
            .all(|p| matches!(p, garrison_audit::Problem::AllowAfterRevocation { .. }))
    {
        println!(
            "NOT OK: no record was found altered, but the site allowed nodes it had revoked: see the problems above"
        );
    } else {
        println!("TAMPERED: see the problems above");
    }
    Ok(report.ok())
}

async fn prove(args: ProveArgs) -> anyhow::Result<()> {
    let text = match args.source.open_any().await? {
        Opened::Local(log) => {
            let proof = garrison_audit::prove(&log, args.sequence).await;
            log.close().await;
            proof
                .with_context(|| format!("proving record #{}", args.sequence))?
                .to_text()
        }
        Opened::Remote(remote) => {
            remote
                .client()
                .inclusion_proof(garrison_proto::v1::InclusionProofRequest {
                    sequence: args.sequence,
                })
                .await
                .map_err(|s| {
                    anyhow::anyhow!(
                        "proving record #{}: {}: {}",
                        args.sequence,
                        s.code(),
                        s.message()
                    )
                })?
                .into_inner()
                .tlog_proof
        }
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn check_proof(args: CheckProofArgs) -> anyhow::Result<bool> {
    let roots = read_roots(&args.root)?;
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("reading {}", args.proof.display()))?;
    let proof = InclusionProof::parse(&text).context("parsing the proof")?;
    let log = args.source.open_any().await?;
    let origin = garrison_audit::LogSource::origin(&log);
    let chains = garrison_audit::LogSource::log_key_certificates(&log).await;
    log.close().await;
    let origin = origin.context("the log has no origin")?;
    let mut keys = Vec::new();
    for chain in chains.context("reading the log key certificates")? {
        let mut certs = garrison_ca::certificates_from_pem(&chain)?.into_iter();
        let Some(certificate) = certs.next() else {
            continue;
        };
        let cert = LogKeyCertificate {
            certificate,
            intermediates: certs.collect(),
        };
        match cert.verify(&roots, &origin) {
            Ok(key) => keys.push(key),
            Err(e) => eprintln!("a log key certificate is refused: {e}"),
        }
    }
    let Some(checkpoint) = keys
        .iter()
        .find_map(|key| verify_checkpoint(&proof.checkpoint, &origin, key).ok())
    else {
        println!("BAD: the proof's checkpoint is not signed by a log key certified under the root");
        return Ok(false);
    };
    let Some(extra) = &proof.extra else {
        bail!("the proof carries no record (no extra line): nothing to check it against");
    };
    let leaf = leaf_hash_of(extra);
    match garrison_transparency::verify_inclusion(
        &leaf,
        proof.index,
        checkpoint.size,
        &proof.hashes,
        &checkpoint.root,
    ) {
        Ok(()) => {
            println!(
                "OK: record #{} is in {} at size {} (signed checkpoint verified against the root)",
                proof.index, origin, checkpoint.size
            );
            println!("record: {}", String::from_utf8_lossy(extra));
            Ok(true)
        }
        Err(e) => {
            println!("BAD: {e}");
            Ok(false)
        }
    }
}

/// A query through the Audit service (one page, like the local one).
async fn remote_query(
    remote: &crate::audit_remote::RemoteLog,
    filter: &Query,
) -> anyhow::Result<Vec<garrison_log::StoredRecord>> {
    let micros = |t: time::OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1000).ok();
    let response = remote
        .client()
        .query_records(garrison_proto::v1::QueryRecordsRequest {
            node_id: filter.node_id.clone(),
            spiffe_id: filter.spiffe_id.clone(),
            since_us: filter.since.and_then(micros),
            until_us: filter.until.and_then(micros),
            kind: filter.kind.map(|k| k.as_str().to_owned()),
            decision: filter.decision.map(|d| d.as_str().to_owned()),
            policy_digest: filter.policy_digest.clone(),
            cert_serial: filter.cert_serial.clone(),
            after_sequence: filter.after_sequence,
            limit: filter.limit.unwrap_or(0),
        })
        .await
        .map_err(|s| anyhow::anyhow!("Audit service: {}: {}", s.code(), s.message()))?
        .into_inner();
    response
        .records
        .into_iter()
        .map(|r| crate::audit_remote::stored_record(r).map_err(anyhow::Error::from))
        .collect()
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let summary = match args.source.open_any().await? {
        Opened::Local(log) => {
            let summary = log.export_sqlite(&args.out).await;
            log.close().await;
            summary.map_err(anyhow::Error::from)
        }
        // Through the Audit service: records, evidence, checkpoints with the hub's
        // cosignatures, witness and log key certificates, as served.
        Opened::Remote(remote) => garrison_audit::export(&remote, &args.out)
            .await
            .map_err(anyhow::Error::from),
    };
    let summary = summary.with_context(|| format!("exporting to {}", args.out.display()))?;
    println!(
        "wrote {}: {} records, {} evidence blobs, {} tree hashes, {} checkpoints, {} log key certificates, {} hub cosignatures",
        args.out.display(),
        summary.records,
        summary.evidence,
        summary.tree_hashes,
        summary.checkpoints,
        summary.key_certificates,
        summary.cosignatures
    );
    Ok(())
}

async fn replay(args: ReplayArgs) -> anyhow::Result<bool> {
    let roots = read_roots(&args.root)?;
    let mut options =
        garrison_audit::ReplayOptions::new(time::OffsetDateTime::now_utc(), FIELD_LIMITS);
    options.policy = match &args.policy {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    options.since = args.since.as_deref().map(parse_since).transpose()?;
    options.until = args.until.as_deref().map(parse_since).transpose()?;
    options.node = args.node.clone();
    options.pcrs = args.pcrs.clone();
    options.max_svid_ttl =
        crate::duration::parse_duration(&args.max_svid_ttl).context("--max-svid-ttl")?;
    options.ak_policy.insecure_allow_sha1_signatures = args.insecure_allow_sha1_ak;
    let what_if = args.policy.is_some();
    let log = args.source.open_any().await?;
    let mut shown = Vec::new();
    let mut sink = |done: garrison_audit::RecordReplay| {
        let listed = !what_if || matches!(done.outcome, Outcome::Differs { .. });
        if !listed {
            return;
        }
        if args.json {
            shown.push(done);
        } else if what_if {
            print_change(&done);
        } else {
            print_replayed(&done);
        }
    };
    if !args.json && what_if {
        println!(
            "{:<16} {:<7} {:<20} {:<24} {:<24}",
            "NODE", "RECORD", "TIME", "THEN", "NOW"
        );
    }
    let summary = garrison_audit::replay(&log, &roots, &options, &mut sink).await;
    log.close().await;
    let summary = summary.context("replaying the log")?;
    if args.json {
        let out = serde_json::json!({ "summary": summary, "records": shown });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(replay_ok(what_if, &summary));
    }
    print_summary(&summary);
    Ok(replay_ok(what_if, &summary))
}

/// A replay passes when every replayable decision was reproduced (a what-if replay: when
/// it ran; its changes are its answer), and no decision's stored evidence was tampered with.
fn replay_ok(what_if: bool, summary: &garrison_audit::ReplaySummary) -> bool {
    summary.evidence_altered == 0 && (what_if || summary.reproduced())
}

fn short(node: Option<&str>) -> &str {
    node.map(|n| n.get(..16).unwrap_or(n)).unwrap_or("-")
}

fn print_replayed(done: &garrison_audit::RecordReplay) {
    let time = done.time.format(&Rfc3339).unwrap_or_default();
    let (word, replayed, note) = match &done.outcome {
        Outcome::Matched { replayed } => ("matched", replayed.summary(), String::new()),
        Outcome::Differs {
            replayed,
            differences,
            ..
        } => ("DIFFERS", replayed.summary(), differences.join(",")),
        Outcome::NotReplayable { why, detail } => (
            "not-replayable",
            "-".to_owned(),
            format!("{}: {detail}", why.code()),
        ),
    };
    println!(
        "#{:<5} {time} {:<6} node {:<16} logged {:<28} replayed {:<28} {word} {note}",
        done.sequence,
        done.kind.as_str(),
        short(done.node_id.as_deref()),
        done.logged.summary(),
        replayed,
    );
}

fn print_change(done: &garrison_audit::RecordReplay) {
    if let Outcome::Differs { replayed, .. } = &done.outcome {
        let time = done.time.format(&Rfc3339).unwrap_or_default();
        println!(
            "{:<16} #{:<6} {time:<27} {:<24} {}",
            short(done.node_id.as_deref()),
            done.sequence,
            done.logged.summary(),
            replayed.summary()
        );
    }
}

fn print_summary(summary: &garrison_audit::ReplaySummary) {
    for policy in summary.policies.iter().filter(|p| p.problem.is_some()) {
        println!(
            "policy-update #{}: {}",
            policy.sequence,
            policy.problem.as_deref().unwrap_or_default()
        );
    }
    println!(
        "{} decision record(s) of {} read: {} matched, {} differ, {} not replayable",
        summary.decisions,
        summary.records_read,
        summary.matched,
        summary.differs,
        summary.not_replayable
    );
    if summary.evidence_altered > 0 {
        println!(
            "NOT OK: the stored evidence of {} decision(s) is missing or altered: see the \
             records above marked stored-evidence-altered, and the allows not replayable for \
             want of their evidence (an answer of the record's kind, its event log)",
            summary.evidence_altered
        );
    }
    match &summary.what_if {
        Some(digest) => println!(
            "what-if policy {digest}: {} decision(s) would change",
            summary.differs
        ),
        None if summary.reproduced() => {
            println!("OK: every replayable decision is reproduced by the policy then in force")
        }
        None if summary.differs > 0 => println!("DIFFERS: see the records marked DIFFERS above"),
        None => {}
    }
}
