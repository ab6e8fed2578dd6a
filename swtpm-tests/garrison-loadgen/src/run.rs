//! A load run: pre-generate identities, time the crypto floor, start the attestor, enroll
//! every agent once, then drive clean enroll-only and renew-only phases (and a mixed one if
//! asked), reading the attestor's CPU time around each phase.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use garrison_ca::SpiffeId;
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::agent::{Agent, AgentContext, Jitter, OpError};
use crate::floor::CryptoFloor;
use crate::identity::{AgentIdentity, EkCa};
use crate::procfs::TICKS_PER_SECOND;
use crate::server::{Attestor, SiteFiles};

/// Where the attestor comes from.
#[derive(Debug, Clone)]
pub enum AttestorMode {
    /// `garrison attestor serve` as a child process (this binary, or found next to us).
    Child(Option<PathBuf>),
    /// Inside this process (smoke tests; CPU is summed over the attestor's threads).
    InProcess,
    /// Already running at this address, serving a site prepared with `--prepare-only`
    /// (given as `site_dir`); its CPU and memory are not measured.
    External(std::net::SocketAddr),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Simulated agents, each with one operation in flight at most.
    pub agents: usize,
    /// Length of each measured phase.
    pub seconds: f64,
    /// If set, a third, mixed phase where each operation is a renewal with this probability.
    pub renew_ratio: Option<f64>,
    /// Total operations per second to offer (paced, latency from the scheduled start);
    /// `None` is closed-loop: each agent starts its next operation as soon as one ends.
    pub rate: Option<f64>,
    /// How the attestor runs.
    pub attestor: AttestorMode,
    /// Attestation log URL (default: SQLite in the site directory).
    pub database: Option<String>,
    /// Extra `site.toml` lines (e.g. `max_pending_challenges = 100`).
    pub site_extra: String,
    /// Keep the site here instead of a temporary directory.
    pub site_dir: Option<PathBuf>,
    /// Enrollments timed in-process for the crypto floor.
    pub floor_iterations: usize,
    /// Stop after the first enrollment of every agent (a storm: all start at once).
    pub storm_only: bool,
}

/// The outcome of one phase.
#[derive(Debug, Default, Clone)]
pub struct PhaseStats {
    /// Completed enrollments.
    pub enrolls: u64,
    /// Completed renewals.
    pub renews: u64,
    /// Completed bare exchanges (a connection and an `UNIMPLEMENTED` call, nothing else).
    pub bare: u64,
    /// Failed operations (anything but shedding).
    pub errors: u64,
    /// Requests shed by the attestor (each retried after its hint, with jitter).
    pub shed: u64,
    /// Exchanges that could not reach the attestor (connection not admitted in time), each
    /// retried after a jittered backoff.
    pub unreachable: u64,
    /// Latencies of completed operations, microseconds.
    pub enroll_latency_us: Vec<u64>,
    /// Latencies of completed renewals, microseconds.
    pub renew_latency_us: Vec<u64>,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Attestor CPU ticks used during the phase, if measurable.
    pub server_ticks: Option<u64>,
    /// CPU ticks of the attestor's SQLite connection threads during the phase, if measurable.
    pub sqlite_ticks: Option<u64>,
    /// CPU ticks of the machine's PostgreSQL server processes during the phase (`None` if
    /// none runs): the server's side of the log when the attestor's database is PostgreSQL.
    pub postgres_ticks: Option<u64>,
    /// The generator's own CPU ticks during the phase (the attestor's threads excluded when
    /// it runs in-process).
    pub generator_ticks: Option<u64>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl PhaseStats {
    fn merge(&mut self, other: PhaseStats) {
        self.enrolls += other.enrolls;
        self.renews += other.renews;
        self.bare += other.bare;
        self.errors += other.errors;
        self.shed += other.shed;
        self.unreachable += other.unreachable;
        self.enroll_latency_us.extend(other.enroll_latency_us);
        self.renew_latency_us.extend(other.renew_latency_us);
        for sample in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(sample);
            }
        }
    }

    /// CPU microseconds the attestor spent per completed operation of this phase.
    pub fn server_cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_us_per_op(self.server_ticks?)
    }

    /// CPU microseconds the attestor's SQLite threads spent per completed operation.
    pub fn sqlite_cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_us_per_op(self.sqlite_ticks?)
    }

    /// CPU microseconds the machine's PostgreSQL processes spent per completed operation.
    pub fn postgres_cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_us_per_op(self.postgres_ticks?)
    }

    /// CPU microseconds the generator itself spent per completed operation of this phase.
    pub fn generator_cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_us_per_op(self.generator_ticks?)
    }

    fn cpu_us_per_op(&self, ticks: u64) -> Option<f64> {
        let ops = self.enrolls + self.renews + self.bare;
        (ops > 0).then(|| ticks as f64 * 1e6 / TICKS_PER_SECOND as f64 / ops as f64)
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Report {
    /// Agents simulated.
    pub agents: usize,
    /// Every phase's outcome.
    pub phases: Phases,
    /// The in-process crypto floor of one enrollment.
    pub floor: CryptoFloor,
    /// Attestor VmHWM, KiB, if measurable.
    pub server_peak_rss_kib: Option<u64>,
    /// Seconds spent pre-generating identities.
    pub pregen_seconds: f64,
}

/// What kind of operation an agent runs next.
#[derive(Debug, Clone, Copy)]
enum Mix {
    EnrollOnly,
    RenewOnly,
    Ratio(f64),
    /// Bare exchanges: a connection and one call the attestor does not serve.
    Bare {
        mtls: bool,
    },
}

/// The operation an agent runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Enroll,
    Renew,
    Bare { mtls: bool },
}

/// Run the whole measurement.
pub fn run(config: &Config) -> Result<Report> {
    if config.agents == 0 || config.seconds <= 0.0 {
        bail!("--agents and --seconds must be positive");
    }
    garrison_spiffe_tls::install_ring_provider();
    let now = OffsetDateTime::now_utc();
    let temp = tempfile::Builder::new()
        .prefix("garrison-loadgen-")
        .tempdir()?;
    let dir = config
        .site_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let (site, ek_ca) = match &config.attestor {
        AttestorMode::External(listen) => {
            if config.site_dir.is_none() {
                bail!("--attestor needs --site-dir: the site prepared for that attestor");
            }
            let site = crate::server::open_site(&dir, *listen)?;
            (site, EkCa::load(&dir.join(EK_CA_DIR))?)
        }
        _ => prepare_site(config, &dir, now)?,
    };
    let started = Instant::now();
    let mut identities = pregenerate(&ek_ca, config.agents, now)?;
    let pregen_seconds = started.elapsed().as_secs_f64();
    let event_log = garrison_testbed::GOOD_LOG.to_vec();
    let pcrs = crate::soft_tpm::pcrs_from_event_log(&event_log)?;
    let ca = garrison_attestor::server::load_authority(&site.site_ca_dir)?;
    let floor = crate::floor::measure(
        &mut identities,
        ek_ca.certificate_pem(),
        &ca,
        &pcrs,
        config.floor_iterations,
    )?;
    let mut attestor = start_attestor(config, &site, &dir)?;
    let ctx = Arc::new(AgentContext::new(
        format!("https://{}", site.listen),
        &site.bundle_pem,
        SpiffeId::parse(&site.attestor_id)?,
        event_log,
        pcrs,
    )?);
    let agents = identities
        .into_iter()
        .enumerate()
        .map(|(i, id)| Agent::new(i, id))
        .collect();
    let result = drive(config, &attestor, ctx, agents);
    let server_peak_rss_kib = attestor.peak_rss_kib();
    attestor.stop();
    Ok(Report {
        agents: config.agents,
        phases: result?,
        floor,
        server_peak_rss_kib,
        pregen_seconds,
    })
}

/// Where a site directory keeps the load generator's EK CA.
const EK_CA_DIR: &str = "ek-ca";

/// A new site under `dir` whose only EK root is a new EK CA, kept in `dir/ek-ca`.
fn prepare_site(
    config: &Config,
    dir: &std::path::Path,
    now: OffsetDateTime,
) -> Result<(crate::server::SiteFiles, EkCa)> {
    let ek_ca = EkCa::generate(now)?;
    let site = crate::server::create_site(
        dir,
        &ek_ca,
        config.database.as_deref(),
        &config.site_extra,
        now,
    )?;
    ek_ca.save(&dir.join(EK_CA_DIR))?;
    Ok((site, ek_ca))
}

/// Create a site in `config.site_dir` for an attestor started separately (`garrison
/// attestor serve --config <dir>/site.toml`, on this machine or another), then stop; a later
/// run with `--attestor ADDR --site-dir <dir>` drives it. Returns the `site.toml` path and
/// the address it configures the attestor to listen on.
pub fn prepare_only(config: &Config) -> Result<(std::path::PathBuf, std::net::SocketAddr)> {
    let dir = config
        .site_dir
        .clone()
        .context("--prepare-only needs --site-dir")?;
    let (site, _) = prepare_site(config, &dir, OffsetDateTime::now_utc())?;
    Ok((site.config, site.listen))
}

fn pregenerate(ca: &EkCa, count: usize, now: OffsetDateTime) -> Result<Vec<AgentIdentity>> {
    let rng = SystemRandom::new();
    (0..count)
        .map(|i| AgentIdentity::generate(ca, u64::try_from(i).unwrap_or(u64::MAX), now, &rng))
        .collect()
}

fn start_attestor(config: &Config, site: &SiteFiles, dir: &std::path::Path) -> Result<Attestor> {
    let mut attestor = match &config.attestor {
        AttestorMode::InProcess => Attestor::spawn_in_process(&site.config)?,
        AttestorMode::External(_) => Attestor::External,
        AttestorMode::Child(bin) => {
            let bin = match bin {
                Some(bin) => bin.clone(),
                None => crate::server::locate_garrison()?,
            };
            Attestor::spawn_child(&bin, &site.config, &dir.join("attestor.log"))?
        }
    };
    attestor.wait_ready(site.listen, Duration::from_secs(60))?;
    if let Attestor::Child(child) = &attestor {
        // For profilers: `perf record -p <pid>` during the phases.
        eprintln!("attestor pid={} listen={}", child.id(), site.listen);
    }
    Ok(attestor)
}

/// Every phase's outcome.
#[derive(Debug, Default)]
pub struct Phases {
    /// The initial enrollment of every agent (not in the rates).
    pub prime: PhaseStats,
    /// Enroll-only phase.
    pub enroll: PhaseStats,
    /// Renew-only phase.
    pub renew: PhaseStats,
    /// Mixed phase, if asked for.
    pub mixed: Option<PhaseStats>,
    /// Bare exchanges over TLS (no client certificate), as enrollments connect.
    pub bare: PhaseStats,
    /// Bare exchanges over mTLS with the agent's SVID, as renewals connect.
    pub bare_mtls: PhaseStats,
}

impl Phases {
    /// Every phase that ran, in order.
    pub fn all(&self) -> impl Iterator<Item = &PhaseStats> {
        [&self.prime, &self.enroll, &self.renew]
            .into_iter()
            .chain(&self.mixed)
            .chain([&self.bare, &self.bare_mtls])
    }
}

/// The bare-exchange phases last at most this long: they only price a connection.
const BARE_PHASE_MAX: Duration = Duration::from_secs(5);

fn drive(
    config: &Config,
    attestor: &Attestor,
    ctx: Arc<AgentContext>,
    agents: Vec<Agent>,
) -> Result<Phases> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("loadgen")
        .enable_all()
        .build()
        .context("load generator runtime")?;
    runtime.block_on(async {
        let seconds = Duration::from_secs_f64(config.seconds);
        let (agents, prime) = phase(attestor, &ctx, agents, Mix::EnrollOnly, None, None).await?;
        if prime.enrolls == 0 {
            bail!(
                "no agent could enroll; first errors: {:?}",
                prime.error_samples
            );
        }
        if config.storm_only {
            return Ok(Phases {
                prime,
                ..Phases::default()
            });
        }
        let (agents, enroll) = phase(
            attestor,
            &ctx,
            agents,
            Mix::EnrollOnly,
            Some(seconds),
            config.rate,
        )
        .await?;
        let (agents, renew) = phase(
            attestor,
            &ctx,
            agents,
            Mix::RenewOnly,
            Some(seconds),
            config.rate,
        )
        .await?;
        let (agents, mixed) = match config.renew_ratio {
            Some(ratio) => {
                let mix = Mix::Ratio(ratio.clamp(0.0, 1.0));
                let (agents, mixed) =
                    phase(attestor, &ctx, agents, mix, Some(seconds), config.rate).await?;
                (agents, Some(mixed))
            }
            None => (agents, None),
        };
        // Closed loop, whatever --rate says: these price a connection at full load.
        let bare_length = Some(seconds.min(BARE_PHASE_MAX));
        let bare_phase = |agents, mtls| {
            phase(
                attestor,
                &ctx,
                agents,
                Mix::Bare { mtls },
                bare_length,
                None,
            )
        };
        let (agents, bare) = bare_phase(agents, false).await?;
        let (_, bare_mtls) = bare_phase(agents, true).await?;
        Ok(Phases {
            prime,
            enroll,
            renew,
            mixed,
            bare,
            bare_mtls,
        })
    })
}

/// Run every agent until `length` has passed (or, without a length, for exactly one
/// operation each), reading the attestor's CPU time before and after.
async fn phase(
    attestor: &Attestor,
    ctx: &Arc<AgentContext>,
    agents: Vec<Agent>,
    mix: Mix,
    length: Option<Duration>,
    rate: Option<f64>,
) -> Result<(Vec<Agent>, PhaseStats)> {
    let count = agents.len();
    eprintln!("phase {mix:?} for {length:?}: {count} agents");
    let ticks_before = attestor.cpu_ticks();
    let sqlite_before = attestor.sqlite_cpu_ticks();
    let postgres_before = postgres_cpu_ticks();
    let generator_before = attestor.generator_cpu_ticks();
    let start = Instant::now();
    let mut seeds = vec![0u8; count.saturating_mul(8)];
    SystemRandom::new()
        .fill(&mut seeds)
        .map_err(|_| anyhow::anyhow!("RNG"))?;
    let mut tasks = Vec::with_capacity(count);
    for (agent, seed) in agents.into_iter().zip(seeds.chunks_exact(8)) {
        let plan = Plan {
            mix,
            deadline: length.map(|l| start + l),
            interval: rate.map(|r| Duration::from_secs_f64(count as f64 / r.max(1e-3))),
            jitter: Jitter::new(u64::from_le_bytes(seed.try_into().unwrap_or([1; 8]))),
        };
        tasks.push(tokio::spawn(agent_loop(agent, Arc::clone(ctx), plan)));
    }
    let mut stats = PhaseStats::default();
    let mut agents = Vec::with_capacity(count);
    for task in tasks {
        let (agent, agent_stats) = task.await.context("agent task")?;
        agents.push(agent);
        stats.merge(agent_stats);
    }
    stats.elapsed = start.elapsed();
    let difference = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    stats.server_ticks = difference(ticks_before, attestor.cpu_ticks());
    stats.sqlite_ticks = difference(sqlite_before, attestor.sqlite_cpu_ticks());
    stats.postgres_ticks = difference(postgres_before, postgres_cpu_ticks());
    stats.generator_ticks = difference(generator_before, attestor.generator_cpu_ticks());
    agents.sort_by_key(|a| a.index);
    Ok((agents, stats))
}

/// CPU ticks of the machine's PostgreSQL server processes (the postmaster, its backends and
/// auxiliary processes all carry the command name `postgres`).
fn postgres_cpu_ticks() -> Option<u64> {
    crate::procfs::processes_cpu_ticks(|name| name == "postgres")
}

/// How one agent runs within a phase.
struct Plan {
    mix: Mix,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    jitter: Jitter,
}

/// Most shed-and-retry rounds for one operation before it counts as an error.
const MAX_SHED_RETRIES: u32 = 50;
/// Wait (jittered ±50 %) before trying again an attestor that did not admit the connection.
const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(2);

async fn agent_loop(
    mut agent: Agent,
    ctx: Arc<AgentContext>,
    mut plan: Plan,
) -> (Agent, PhaseStats) {
    let mut stats = PhaseStats::default();
    // Spread the first operations over one interval so paced agents do not start in lock-step.
    let mut next = Instant::now()
        + plan
            .interval
            .map(|i| i.mul_f64(plan.jitter.unit()))
            .unwrap_or_default();
    loop {
        if plan.deadline.is_some_and(|d| next >= d) {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let op = match plan.mix {
            Mix::EnrollOnly => Op::Enroll,
            Mix::RenewOnly if agent.is_enrolled() => Op::Renew,
            Mix::Ratio(r) if agent.is_enrolled() && plan.jitter.unit() < r => Op::Renew,
            Mix::RenewOnly | Mix::Ratio(_) => Op::Enroll,
            Mix::Bare { mtls } => Op::Bare {
                mtls: mtls && agent.is_enrolled(),
            },
        };
        let scheduled = next;
        let outcome = one_operation(&mut agent, &ctx, op, &mut plan.jitter, &mut stats).await;
        let latency = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
        match (outcome, op) {
            (Ok(()), Op::Enroll) => {
                stats.enrolls += 1;
                stats.enroll_latency_us.push(latency);
            }
            (Ok(()), Op::Renew) => {
                stats.renews += 1;
                stats.renew_latency_us.push(latency);
            }
            (Ok(()), Op::Bare { .. }) => stats.bare += 1,
            (Err(e), _) => {
                stats.errors += 1;
                if stats.error_samples.len() < 5 {
                    stats.error_samples.push(format!("{e:#}"));
                }
            }
        }
        if plan.deadline.is_none() {
            break;
        }
        next = match plan.interval {
            // A fixed schedule: when behind, the next operation starts at once and its latency
            // still counts from when it was due (no coordinated omission).
            Some(interval) => scheduled + interval,
            None => Instant::now(),
        };
    }
    (agent, stats)
}

/// One operation, retried after the attestor's hint (with jitter) while it sheds.
async fn one_operation(
    agent: &mut Agent,
    ctx: &AgentContext,
    op: Op,
    jitter: &mut Jitter,
    stats: &mut PhaseStats,
) -> Result<()> {
    for _ in 0..MAX_SHED_RETRIES {
        let result = match op {
            Op::Enroll => agent.enroll(ctx).await,
            Op::Renew => agent.renew(ctx).await,
            Op::Bare { mtls } => agent.bare_exchange(ctx, mtls).await,
        };
        match result {
            Ok(()) => return Ok(()),
            Err(OpError::Shed(hint_ms)) => {
                stats.shed += 1;
                tokio::time::sleep(jitter.around(Duration::from_millis(hint_ms))).await;
            }
            Err(OpError::Unreachable(e)) => {
                stats.unreachable += 1;
                if stats.error_samples.len() < 5 && stats.unreachable == 1 {
                    stats.error_samples.push(format!("retried: {e:#}"));
                }
                tokio::time::sleep(jitter.around(UNREACHABLE_BACKOFF)).await;
            }
            Err(OpError::Failed(e)) => return Err(e),
        }
    }
    bail!("still shed or unreachable after {MAX_SHED_RETRIES} retries")
}
