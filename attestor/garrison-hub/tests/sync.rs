//! A site and its hub, in one process but over real mutual TLS and gRPC, with a real site
//! attestor (its log, checkpoint signer and policy engine) and the hub's database on SQLite
//! and PostgreSQL: sync up and down, cosignatures, resends, forged input, two hub processes
//! on one database, and the air-gap round trip by files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use garrison_attestor::checkpoint::CheckpointSigner;
use garrison_attestor::site_sync::{self, SiteSync};
use garrison_attestor::sync_client::{self, HubClient};
use garrison_attestor::{Attestor, Clock, SystemClock};
use garrison_hub::{Hub, HubConfig, HubError};
use garrison_log::{AttestationLog, Decision, NewEntry, Record, RecordKind};
use garrison_proto::v1;
use garrison_testbed::{SITE, Site, TRUST_DOMAIN};
use garrison_transparency::{RevokedTarget, site_origin};
use ring::rand::SystemRandom;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// The hub's database for a test: SQLite in the test's directory, or a fresh PostgreSQL
/// database on the cluster `scripts/test.sh` starts.
async fn hub_database(dir: &Path, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}/hub.db", dir.display()));
    }
    let url = match std::env::var("GARRISON_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var("GARRISON_SKIP_POSTGRES").is_ok() => return None,
        Err(_) => panic!(
            "GARRISON_TEST_POSTGRES_URL is not set: run scripts/test.sh (or set GARRISON_SKIP_POSTGRES=1)"
        ),
    };
    let name = format!(
        "hub_{}",
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Some(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    testbed: Site,
    attestor: Arc<Attestor>,
    signer: Arc<CheckpointSigner>,
    sync: SiteSync,
    hub: Arc<Hub>,
    hub_config: HubConfig,
    stop_hub: Option<oneshot::Sender<()>>,
    clock: Arc<dyn Clock>,
}

/// A clock the test moves: hub and site read the same one.
#[derive(Debug)]
struct TestClock(std::sync::Mutex<OffsetDateTime>);

impl TestClock {
    fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl World {
    async fn new(postgres: bool) -> Option<World> {
        let now = OffsetDateTime::now_utc();
        let days = time::Duration::days;
        World::with(postgres, Arc::new(SystemClock), now, days(365), days(30)).await
    }

    /// A world on `clock` (now `now`), the hub CA living `hub_ttl` and the site CA `site_ttl`.
    async fn with(
        postgres: bool,
        clock: Arc<dyn Clock>,
        now: OffsetDateTime,
        hub_ttl: time::Duration,
        site_ttl: time::Duration,
    ) -> Option<World> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let testbed = Site::create_with(&path, now, hub_ttl, site_ttl).unwrap();
        let database = hub_database(&path, postgres).await?;
        let listen = garrison_testbed::free_local_address().unwrap();
        let ops = garrison_testbed::free_local_address().unwrap();
        std::fs::write(
            path.join("hub.toml"),
            format!(
                "listen = \"{listen}\"\nca_dir = \"ca/hub\"\ndatabase = \"{database}\"\n\
                 ops_listen = \"{ops}\"\n"
            ),
        )
        .unwrap();
        let hub_config = HubConfig::load(&path.join("hub.toml")).unwrap();
        let hub = Arc::new(
            garrison_hub::server::build(&hub_config, Arc::clone(&clock))
                .await
                .unwrap(),
        );
        let attestor = site_attestor(&testbed, &path, Arc::clone(&clock)).await;
        let signer = Arc::new(
            CheckpointSigner::start(
                attestor.log().clone(),
                &path.join("log-key.pem"),
                &testbed.site_ca,
                now,
                &SystemRandom::new(),
            )
            .await
            .unwrap(),
        );
        let sync = SiteSync::new(
            attestor.log().clone(),
            SITE,
            TRUST_DOMAIN,
            testbed.site_ca.roots().to_vec(),
        )
        .with_signer(Arc::clone(&signer));
        let mut world = World {
            _dir: dir,
            dir: path,
            testbed,
            attestor,
            signer,
            sync,
            hub,
            hub_config,
            stop_hub: None,
            clock,
        };
        world.start_hub().await;
        Some(world)
    }

    async fn start_hub(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let clock = Arc::clone(&self.clock);
        let identity =
            garrison_hub::server::hub_identity(&self.hub_config, Arc::clone(&clock)).unwrap();
        let config = self.hub_config.clone();
        let hub = Arc::clone(&self.hub);
        tokio::spawn(async move {
            garrison_hub::server::serve(&config, hub, identity, clock, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        self.stop_hub = Some(stop);
        // Serving once the listener accepts.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.hub_config.listen)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the hub never listened on {}", self.hub_config.listen);
    }

    /// Appends `n` enroll records (every third with evidence) and signs a checkpoint.
    async fn enroll(&self, n: usize) {
        let log = self.attestor.log();
        let base = log.tree_size().await.unwrap() as usize;
        for i in base..base + n {
            let evidence = (i % 3 == 0).then(|| format!("evidence {}", i % 9).into_bytes());
            log.append(NewEntry {
                record: record(i),
                evidence,
                node_update: None,
            })
            .await
            .unwrap();
        }
        self.signer.sign(OffsetDateTime::now_utc()).await.unwrap();
    }

    async fn round(&self) -> sync_client::RoundSummary {
        let tried = std::sync::atomic::AtomicU64::new(0);
        let mut last = None;
        for _ in 0..50 {
            let connected = HubClient::connect(
                &self.hub_config.listen.to_string(),
                &self.attestor.site_ca().active(),
                Arc::clone(&self.clock),
            );
            match connected {
                Ok(mut client) => {
                    match sync_client::round(&self.sync, &mut client, &self.attestor, &tried).await
                    {
                        Ok(summary) => return summary,
                        Err(e) => {
                            eprintln!("a round failed (retried): {e}");
                            last = Some(e.to_string());
                        }
                    }
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no round with the hub: {last:?}");
    }

    fn origin(&self) -> String {
        site_origin(TRUST_DOMAIN, SITE)
    }

    async fn replica(&self) -> AttestationLog {
        self.hub.log().replica(&self.origin()).await.unwrap()
    }
}

fn record(i: usize) -> Record {
    Record {
        time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + i as i64).unwrap(),
        site: SITE.to_owned(),
        kind: RecordKind::Enroll,
        node_id: Some(format!("{i:064x}")),
        spiffe_id: Some(format!("spiffe://{TRUST_DOMAIN}/site/{SITE}/node/{i}")),
        decision: Decision::Allow,
        reasons: vec![],
        policy_digest: None,
        evidence_digest: None,
        cert_serial: Some(format!("{:x}", 0x1000 + i)),
        cert_not_after: None,
    }
}

/// A real site attestor on the testbed's CA and policy, with its log in `dir/site.db`.
async fn site_attestor(testbed: &Site, dir: &Path, clock: Arc<dyn Clock>) -> Arc<Attestor> {
    let listen = garrison_testbed::free_local_address().unwrap();
    let config = testbed
        .write_config(
            listen,
            &format!("sqlite://{}/site.db", dir.display()),
            &[],
            &format!(
                "[insecure]\nallow_listed_ek_hashes = [\"{}\"]\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
    Arc::new(
        garrison_attestor::server::build(&config, clock)
            .await
            .unwrap(),
    )
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(false).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(true).await }
        }
    )*};
}

both!(
    large_evidence_travels_in_batches_that_fit,
    a_cosignature_the_site_never_kept_is_fetched_again,
    a_site_syncs_up_and_down_and_keeps_the_hubs_cosignature,
    forged_input_is_refused_recorded_and_stores_nothing,
    a_checkpoint_that_forks_the_witnessed_log_raises_an_alarm,
    two_hub_processes_store_one_push_once,
    the_air_gap_round_trip_by_files,
);

async fn a_site_syncs_up_and_down_and_keeps_the_hubs_cosignature(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    world.enroll(30).await;
    let site_log = world.attestor.log();
    // The attestor's own first record (the policy in force at start) and the 30.
    let n = site_log.tree_size().await.unwrap();
    assert_eq!(n, 31);
    let first = world.round().await;
    assert_eq!(first.held_size, n, "{first:?}");
    assert_eq!(first.cosigned_size, Some(n));
    let replica = world.replica().await;
    assert_eq!(
        replica.tree_root(n).await.unwrap(),
        site_log.tree_root(n).await.unwrap()
    );
    assert_eq!(
        replica.query(&Default::default()).await.unwrap(),
        site_log.query(&Default::default()).await.unwrap(),
        "the hub holds exactly the site's records"
    );
    // The site keeps the hub's cosignature; it verifies with the hub's witness key.
    let cosigned = site_log
        .latest_cosignature(world.hub.witness_name())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cosigned.size, n);
    let note = world
        .hub
        .latest_cosigned(&world.origin())
        .await
        .unwrap()
        .unwrap();
    world.hub.check_cosignature(&note).unwrap();
    assert!(note.ends_with(&format!("{}\n", cosigned.line)));

    // Nothing new: a round sends no records.
    let idle = world.round().await;
    assert_eq!((idle.held_size, idle.batches), (n, 0));

    // More records, a policy bundle and a revocation published at the hub.
    world.enroll(12).await;
    let bundle = world
        .testbed
        .resigned_policy(2, OffsetDateTime::now_utc())
        .unwrap();
    world.hub.publish_policy(&bundle).await.unwrap();
    let revoked_node = format!("{:064x}", 3);
    world
        .hub
        .revoke(&[RevokedTarget::Node(revoked_node.clone())])
        .await
        .unwrap();
    let second = world.round().await;
    // The round pulls first, so the revoke and policy-update records it writes go up in
    // the same round, under a checkpoint signed before the push.
    let now_size = site_log.tree_size().await.unwrap();
    assert_eq!(now_size, n + 12 + 2);
    assert_eq!(
        (second.held_size, second.cosigned_size),
        (now_size, Some(now_size))
    );
    assert_eq!(second.applied.revocation_sequence, Some(1));
    assert_eq!(second.applied.revoked, 1);
    assert_eq!(world.attestor.policy_in_force().0, 2, "{:?}", second.policy);
    assert!(site_log.is_node_revoked(&revoked_node).await.unwrap());
    // The revocation and the policy update are records of the site's log, and went up.
    let third = world.round().await;
    assert_eq!((third.held_size, third.batches), (now_size, 0));
    let kinds: Vec<RecordKind> = replica
        .query(&garrison_log::Query {
            after_sequence: Some(n + 11),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record.kind)
        .collect();
    assert!(kinds.contains(&RecordKind::Revoke), "{kinds:?} {third:?}");
    assert!(kinds.contains(&RecordKind::PolicyUpdate), "{kinds:?}");
    // An auditor's archive of the site's log carries the hub's cosignatures and the witness
    // key's certificate: they verify against the root, and against nothing else.
    let archive = world.dir.join("site-archive.db");
    let exported = site_log.export_sqlite(&archive).await.unwrap();
    assert!(exported.cosignatures >= 2, "{exported:?}");
    let archived = AttestationLog::open_read_only(&format!("sqlite://{}", archive.display()), None)
        .await
        .unwrap();
    let roots = world.testbed.site_ca.roots().to_vec();
    let witnessed = garrison_audit::check_cosignatures(&archived, &roots)
        .await
        .unwrap();
    assert_eq!(witnessed.witness_keys, 1);
    assert_eq!(witnessed.verified as u64, exported.cosignatures);
    assert_eq!(witnessed.latest_size, Some(now_size));
    assert!(witnessed.failed.is_empty(), "{witnessed:?}");
    let other_root = Site::create(&world.dir.join("elsewhere"), OffsetDateTime::now_utc()).unwrap();
    let refused = garrison_audit::check_cosignatures(&archived, other_root.site_ca.roots())
        .await
        .unwrap();
    assert_eq!((refused.witness_keys, refused.verified), (0, 0));
    assert_eq!(refused.failed.len() as u64, exported.cosignatures);
    // The same through a log source (what `garrison audit export --attestor` drives): the
    // cosignatures and the witness key chain come along.
    let through_source = world.dir.join("site-archive-through-source.db");
    let summary = garrison_audit::export(site_log, &through_source)
        .await
        .unwrap();
    assert_eq!(summary.cosignatures, exported.cosignatures);
    let archived_again =
        AttestationLog::open_read_only(&format!("sqlite://{}", through_source.display()), None)
            .await
            .unwrap();
    let witnessed_again = garrison_audit::check_cosignatures(&archived_again, &roots)
        .await
        .unwrap();
    assert_eq!(witnessed_again, witnessed);
    archived_again.close().await;
    // What a cosignature covers is read from the note it signs, not from the rows beside it:
    // the same line kept again under another witness name is refused and not counted twice,
    // and a cosignature moved with its checkpoint to another size is refused for the size
    // its note states.
    let tampered = world.dir.join("site-archive-tampered.db");
    std::fs::copy(&archive, &tampered).unwrap();
    let (moved, copied) = {
        use sqlx::{Connection as _, Row as _};
        let url = format!("sqlite://{}", tampered.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let sizes: Vec<i64> = sqlx::query("SELECT size FROM cosignatures ORDER BY size")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(sizes.len() >= 2, "{sizes:?}");
        let (moved, copied) = (sizes[0], sizes[sizes.len() - 1]);
        for statement in [
            "PRAGMA foreign_keys = OFF",
            "DROP TRIGGER checkpoints_append_only_update",
            "DROP TRIGGER cosignatures_append_only_update",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO cosignatures (log_id, size, witness, line, cosigned_us) \
             SELECT log_id, size, 'garrison.elsewhere.test/hub', line, cosigned_us \
             FROM cosignatures WHERE size = $1",
        )
        .bind(copied)
        .execute(&mut conn)
        .await
        .unwrap();
        for table in ["checkpoints", "cosignatures"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET size = size + 1000000 WHERE size = $1"
            )))
            .bind(moved)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
        (
            u64::try_from(moved).unwrap(),
            u64::try_from(copied).unwrap(),
        )
    };
    let tampered_log =
        AttestationLog::open_read_only(&format!("sqlite://{}", tampered.display()), None)
            .await
            .unwrap();
    let found = garrison_audit::check_cosignatures(&tampered_log, &roots)
        .await
        .unwrap();
    tampered_log.close().await;
    assert_eq!(found.verified, witnessed.verified - 1, "{found:?}");
    assert_eq!(found.latest_size, witnessed.latest_size);
    let failed: Vec<(u64, &str)> = found.failed.iter().map(|(s, w)| (*s, w.as_str())).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().any(|(size, why)| *size == copied
            && why.contains("kept under the witness name \"garrison.elsewhere.test/hub\"")),
        "{failed:?}"
    );
    let moved_why = format!(
        "kept as size {} but the checkpoint it cosigns has size {moved}",
        moved + 1_000_000
    );
    assert!(
        failed
            .iter()
            .any(|(size, why)| *size == moved + 1_000_000 && why.contains(&moved_why)),
        "{failed:?}"
    );
    // A valid hub line slipped into the kept checkpoint note does not vouch for a bogus
    // line kept in the cosignature row (one with another key ID, so both stand in the note).
    let slipped = world.dir.join("site-archive-slipped.db");
    std::fs::copy(&archive, &slipped).unwrap();
    {
        use sqlx::{Connection as _, Row as _};
        let url = format!("sqlite://{}", slipped.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let size = i64::try_from(copied).unwrap();
        let line: String = sqlx::query("SELECT line FROM cosignatures WHERE size = $1")
            .bind(size)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        let (name, payload) = line.rsplit_once(' ').unwrap();
        let first = if payload.starts_with('A') { "B" } else { "A" };
        let bogus = format!("{name} {first}{}", &payload[1..]);
        sqlx::query("DROP TRIGGER checkpoints_append_only_update")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER cosignatures_append_only_update")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE checkpoints SET note = note || $1 WHERE size = $2")
            .bind(format!("{line}\n"))
            .bind(size)
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE cosignatures SET line = $1 WHERE size = $2")
            .bind(bogus)
            .bind(size)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let slipped_log =
        AttestationLog::open_read_only(&format!("sqlite://{}", slipped.display()), None)
            .await
            .unwrap();
    let found = garrison_audit::check_cosignatures(&slipped_log, &roots)
        .await
        .unwrap();
    slipped_log.close().await;
    assert_eq!(found.verified, witnessed.verified - 1, "{found:?}");
    assert_eq!(
        found.failed,
        vec![(
            copied,
            "the line kept is not the hub's line that verifies".to_owned()
        )]
    );

    // An older policy bundle published later is refused at the hub.
    let old = world
        .testbed
        .resigned_policy(1, OffsetDateTime::now_utc())
        .unwrap();
    assert!(matches!(
        world.hub.publish_policy(&old).await,
        Err(HubError::Refused(r)) if r.code == "stale"
    ));
}

async fn large_evidence_travels_in_batches_that_fit(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    // 100 records, each with 200 KiB of evidence of its own: 20 MB, more than one message
    // may carry (16 MiB).
    let log = world.attestor.log();
    for i in 0..100 {
        let mut evidence = vec![u8::try_from(i).unwrap(); 200 * 1024];
        evidence.extend_from_slice(format!("record {i}").as_bytes());
        log.append(NewEntry {
            record: record(i),
            evidence: Some(evidence),
            node_update: None,
        })
        .await
        .unwrap();
    }
    let summary = world.round().await;
    let size = log.tree_size().await.unwrap();
    assert_eq!(summary.held_size, size, "{summary:?}");
    let replica = world.replica().await;
    for stored in log.query(&Default::default()).await.unwrap() {
        if let Some(digest) = &stored.record.evidence_digest {
            assert!(
                replica.evidence(digest).await.unwrap().is_some(),
                "the hub holds the evidence of #{}",
                stored.sequence
            );
        }
    }
    assert!(
        summary.batches >= 5,
        "cut into batches of at most 4 MiB: {summary:?}"
    );
    let (file, exported) =
        site_sync::export(&world.sync, Some(0), Vec::new(), OffsetDateTime::now_utc())
            .await
            .unwrap();
    assert!(exported.batches >= 5, "{exported:?}");
    let again = garrison_hub::files::import(&world.hub, file.as_slice())
        .await
        .unwrap();
    assert_eq!((again.records_added, again.held_size), (0, size));
}

async fn a_cosignature_the_site_never_kept_is_fetched_again(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    world.enroll(8).await;
    // The hub takes the batch and cosigns it, but the site never hears the answer (it was
    // killed): the hub says it holds and cosigned everything.
    let pushed = world
        .hub
        .push(&world.origin(), batch(&world, 0, 0).await)
        .await
        .unwrap();
    assert!(!pushed.cosigned_checkpoint.is_empty());
    assert_eq!(world.sync.cosigned_size().await.unwrap(), 0);
    let round = world.round().await;
    assert_eq!(round.cosigned_size, Some(pushed.held_size), "{round:?}");
    assert_eq!(world.sync.cosigned_size().await.unwrap(), pushed.held_size);
}

/// A batch of the whole site log as a file carries it.
async fn batch(world: &World, start: u64, proof_from: u64) -> v1::LogBatch {
    let (checkpoint, chain) = world
        .sync
        .checkpoint(OffsetDateTime::now_utc())
        .await
        .unwrap();
    world
        .sync
        .self_contained_batch(start, &checkpoint, &chain, proof_from)
        .await
        .unwrap()
}

async fn refused(world: &World, batch: v1::LogBatch, code: &str) {
    match world.hub.push(&world.origin(), batch).await {
        Err(HubError::Refused(refusal)) => assert_eq!(refusal.code, code, "{refusal}"),
        other => panic!("expected {code}, got {other:?}"),
    }
}

async fn forged_input_is_refused_recorded_and_stores_nothing(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    world.enroll(20).await;
    let good = batch(&world, 0, 0).await;

    let mut tampered = good.clone();
    let text = String::from_utf8(tampered.records[4].clone()).unwrap();
    tampered.records[4] = text
        .replace("\"decision\":\"allow\"", "\"decision\":\"deny\"")
        .into_bytes();
    refused(&world, tampered, "bad-proof").await;

    let mut bad_proof = batch(&world, 0, 0).await;
    bad_proof.records.truncate(10);
    bad_proof.proof_to_checkpoint = world
        .attestor
        .log()
        .consistency_proof(10, 21)
        .await
        .unwrap()
        .into_iter()
        .map(|mut h| {
            h[0] ^= 1;
            h.to_vec()
        })
        .collect();
    refused(&world, bad_proof, "bad-proof").await;

    let mut bad_signature = good.clone();
    bad_signature.checkpoint = bad_signature.checkpoint.replacen("\n21\n", "\n22\n", 1);
    assert_ne!(bad_signature.checkpoint, good.checkpoint);
    refused(&world, bad_signature, "bad-signature").await;

    let mut other_site = good.clone();
    other_site.origin = site_origin(TRUST_DOMAIN, "site-b");
    refused(&world, other_site, "wrong-origin").await;

    let mut wrong_key = good.clone();
    wrong_key.log_key_chain_pem =
        garrison_ca::certificates_to_pem(&[world.testbed.site_ca.certificate().to_vec()]);
    refused(&world, wrong_key, "bad-log-key").await;

    let mut bad_evidence = good.clone();
    bad_evidence.evidence[0].bytes.push(b'!');
    refused(&world, bad_evidence, "bad-evidence").await;

    let mut overflow = good.clone();
    overflow.first = u64::MAX;
    refused(&world, overflow, "malformed-batch").await;

    let replica = world.replica().await;
    assert_eq!(
        replica.tree_size().await.unwrap(),
        0,
        "nothing of a refused batch is stored"
    );
    let events = world.hub.events().await.unwrap();
    let kinds: Vec<(&str, u64)> = events.iter().map(|e| (e.kind.as_str(), e.count)).collect();
    for kind in [
        "bad-proof",
        "bad-signature",
        "wrong-origin",
        "bad-log-key",
        "bad-evidence",
    ] {
        assert!(
            kinds.iter().any(|(k, _)| *k == kind),
            "{kind} not recorded: {kinds:?}"
        );
    }
    assert!(kinds.contains(&("bad-proof", 2)), "{kinds:?}");

    // The good batch still lands (with bytes no record refers to, which are not kept), and
    // a resend is a no-op, whatever its certificate PEM looks like.
    let mut padded = good.clone();
    let parked = b"bytes no record refers to".to_vec();
    let parked_digest = garrison_log::evidence_digest(&parked);
    padded.evidence.push(v1::Evidence {
        digest: parked_digest.clone(),
        bytes: parked,
    });
    let done = world.hub.push(&world.origin(), padded).await.unwrap();
    assert_eq!(replica.evidence(&parked_digest).await.unwrap(), None);
    for n in 0..5 {
        let mut resend = good.clone();
        resend.log_key_chain_pem.push_str(&"\n".repeat(n + 1));
        world.hub.push(&world.origin(), resend).await.unwrap();
    }
    assert_eq!(replica.log_key_certificates().await.unwrap().len(), 1);
    assert_eq!(done.held_size, 21);
    assert!(!done.cosigned_checkpoint.is_empty());
    let again = world.hub.push(&world.origin(), good).await.unwrap();
    assert_eq!(again.held_size, 21);
    assert_eq!(
        again.cosigned_checkpoint, done.cosigned_checkpoint,
        "one cosignature per size"
    );
    assert_eq!(replica.query(&Default::default()).await.unwrap().len(), 21);

    // A batch that starts beyond what the hub holds is a gap, not stored.
    world.enroll(5).await;
    let ahead = batch(&world, 23, 21).await;
    refused(&world, ahead, "gap").await;
    assert_eq!(replica.tree_size().await.unwrap(), 21);
}

async fn a_checkpoint_that_forks_the_witnessed_log_raises_an_alarm(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    world.enroll(10).await;
    world.round().await;
    // The same site key signs a different history: a second database with other records.
    let fork_log = AttestationLog::open(&garrison_log::LogConfig {
        url: format!("sqlite://{}/fork.db", world.dir.display()),
        origin: Some(world.origin()),
        max_batch: 8,
        max_connections: 2,
    })
    .await
    .unwrap();
    for i in 0..15 {
        let mut r = record(i);
        r.reasons = vec!["the other history".to_owned()];
        fork_log
            .append(NewEntry {
                record: r,
                evidence: None,
                node_update: None,
            })
            .await
            .unwrap();
    }
    let fork_signer = CheckpointSigner::start(
        fork_log.clone(),
        &world.dir.join("log-key.pem"),
        &world.testbed.site_ca,
        OffsetDateTime::now_utc(),
        &SystemRandom::new(),
    )
    .await
    .unwrap();
    fork_signer.sign(OffsetDateTime::now_utc()).await.unwrap();
    let fork = SiteSync::new(
        fork_log,
        SITE,
        TRUST_DOMAIN,
        world.testbed.site_ca.roots().to_vec(),
    );
    let (checkpoint, chain) = fork.checkpoint(OffsetDateTime::now_utc()).await.unwrap();
    let forked = fork
        .self_contained_batch(10, &checkpoint, &chain, 10)
        .await
        .unwrap();
    refused(&world, forked, "fork").await;
    let alarm = world
        .hub
        .events()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "fork")
        .expect("a fork alarm");
    let (held, other) = alarm.notes.expect("both checkpoints kept");
    world.hub.check_cosignature(&held).unwrap();
    assert!(held.contains("\n11\n"), "{held}");
    assert_eq!(other, checkpoint.note);
    assert_eq!(world.replica().await.tree_size().await.unwrap(), 11);
}

async fn two_hub_processes_store_one_push_once(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    world.enroll(50).await;
    let second = garrison_hub::server::build(&world.hub_config, Arc::new(SystemClock))
        .await
        .unwrap();
    let good = batch(&world, 0, 0).await;
    let origin = world.origin();
    let (a, b) = tokio::join!(
        world.hub.push(&origin, good.clone()),
        second.push(&origin, good)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.held_size, b.held_size), (51, 51));
    world.hub.check_cosignature(&a.cosigned_checkpoint).unwrap();
    assert_eq!(
        a.cosigned_checkpoint, b.cosigned_checkpoint,
        "one cosignature kept"
    );
    let replica = world.replica().await;
    assert_eq!(replica.query(&Default::default()).await.unwrap().len(), 51);
    assert_eq!(replica.cosignatures().await.unwrap().len(), 1);
}

async fn the_air_gap_round_trip_by_files(postgres: bool) {
    let Some(world) = World::new(postgres).await else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    world.enroll(25).await;
    let (up, summary) = site_sync::export(&world.sync, None, Vec::new(), now)
        .await
        .unwrap();
    assert_eq!((summary.first, summary.checkpoint_size), (0, 26));
    let imported = garrison_hub::files::import(&world.hub, up.as_slice())
        .await
        .unwrap();
    assert_eq!((imported.records_added, imported.held_size), (26, 26));
    assert_eq!(imported.cosigned_size, Some(26));
    let twice = garrison_hub::files::import(&world.hub, up.as_slice())
        .await
        .unwrap();
    assert_eq!(
        (twice.records_added, twice.held_size),
        (0, 26),
        "importing twice changes nothing"
    );

    world
        .hub
        .revoke(&[RevokedTarget::Serial("1005".to_owned())])
        .await
        .unwrap();
    let bundle = world.testbed.resigned_policy(3, now).unwrap();
    world.hub.publish_policy(&bundle).await.unwrap();
    let older = garrison_hub::files::export(&world.hub, SITE, Vec::new(), 1)
        .await
        .unwrap();
    world
        .hub
        .revoke(&[RevokedTarget::Serial("1006".to_owned())])
        .await
        .unwrap();
    let down = garrison_hub::files::export(&world.hub, SITE, Vec::new(), 2)
        .await
        .unwrap();

    let applied = site_sync::import(&world.sync, down.as_slice(), now)
        .await
        .unwrap();
    assert_eq!(applied.revocation_sequence, Some(2));
    assert_eq!(applied.revoked, 2);
    assert_eq!(applied.policy_sequence, Some(3));
    assert_eq!(applied.cosigned_size, Some(26));
    let log = world.attestor.log();
    assert!(log.is_revoked("1005").await.unwrap() && log.is_revoked("1006").await.unwrap());
    // The attestor puts the imported bundle in force (as its pickup task does).
    let tried = std::sync::atomic::AtomicU64::new(0);
    sync_client::put_policy_in_force(&world.sync, &world.attestor, &tried).await;
    assert_eq!(world.attestor.policy_in_force().0, 3);

    let size = log.tree_size().await.unwrap();
    let again = site_sync::import(&world.sync, down.as_slice(), now)
        .await
        .unwrap();
    assert_eq!(
        (
            again.revocation_sequence,
            again.revoked,
            again.policy_sequence
        ),
        (None, 0, None)
    );
    let stale = site_sync::import(&world.sync, older.as_slice(), now)
        .await
        .unwrap();
    assert_eq!(
        (stale.revocation_sequence, stale.policy_sequence),
        (None, None)
    );
    assert_eq!(
        log.tree_size().await.unwrap(),
        size,
        "duplicate and stale files add no records"
    );
    let recorded: Vec<String> = log
        .sync_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        recorded.contains(&"stale-revocation-list".to_owned()),
        "{recorded:?}"
    );

    // A carried file whose policy bundle is not signed by a policy signer, or whose
    // revocation list is not signed by the hub, is refused and nothing of it is kept.
    let forged_policy = forged_down_file(&world, |pull| {
        pull.policy_bundle = b"not a signed bundle".to_vec();
        pull.policy_sequence = 999;
    })
    .await;
    assert!(
        site_sync::import(&world.sync, forged_policy.as_slice(), now)
            .await
            .is_err()
    );
    let forged_list = forged_down_file(&world, |pull| {
        pull.revocation_list = pull.revocation_list.replace("serial 1005", "serial 1007");
    })
    .await;
    assert!(
        site_sync::import(&world.sync, forged_list.as_slice(), now)
            .await
            .is_err()
    );
    assert_eq!(log.latest_policy_bundle().await.unwrap().unwrap().0, 3);
    assert_eq!(log.latest_revocation_list().await.unwrap().unwrap().0, 2);
    assert!(!log.is_revoked("1007").await.unwrap());
    let refused = log
        .sync_events()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "refused-from-hub")
        .expect("the forged files are recorded");
    assert_eq!(refused.count, 2);

    // A file for another site, and a file the wrong way round, are refused.
    let other = garrison_hub::files::export(&world.hub, "site-b", Vec::new(), 3)
        .await
        .unwrap();
    assert!(
        site_sync::import(&world.sync, other.as_slice(), now)
            .await
            .is_err()
    );
    assert!(
        garrison_hub::files::import(&world.hub, down.as_slice())
            .await
            .is_err()
    );

    // The site's next export starts where the hub's cosignature says and brings the new
    // records (the revokes and the policy update) up.
    world.signer.sign(OffsetDateTime::now_utc()).await.unwrap();
    let (up2, summary2) = site_sync::export(&world.sync, None, Vec::new(), now)
        .await
        .unwrap();
    assert_eq!(summary2.first, 26);
    let imported2 = garrison_hub::files::import(&world.hub, up2.as_slice())
        .await
        .unwrap();
    assert_eq!(imported2.held_size, log.tree_size().await.unwrap());
    assert_eq!(
        world
            .replica()
            .await
            .tree_root(imported2.held_size)
            .await
            .unwrap(),
        log.tree_root(imported2.held_size).await.unwrap()
    );
}

/// A Status call to the hub as the holder of `issued`, for `origin`.
async fn status_as(
    world: &World,
    issued: &garrison_ca::Issued,
    origin: &str,
) -> Result<v1::SyncStatus, tonic::Status> {
    let identity = garrison_attestor::tls::identity_from_issued(issued).unwrap();
    let hub_id =
        garrison_ca::SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/hub/sync")).unwrap();
    let bundle = garrison_ca::certificates_to_pem(world.testbed.site_ca.roots());
    let config =
        garrison_spiffe_tls::client_config(bundle.as_bytes(), hub_id, Some(identity)).unwrap();
    for _ in 0..50 {
        let channel = garrison_spiffe_tls::connect(
            &format!("https://{}", world.hub_config.listen),
            config.clone(),
        )
        .unwrap();
        let mut client = v1::sync_client::SyncClient::new(channel);
        let request = v1::SyncStatusRequest {
            origin: origin.to_owned(),
        };
        match client.status(request).await {
            // The hub's listener is still starting.
            Err(s) if s.code() == tonic::Code::Unknown => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other.map(tonic::Response::into_inner),
        }
    }
    panic!("the hub never answered");
}

/// The hub's export for the site with its pull part changed by `forge`.
async fn forged_down_file(world: &World, forge: impl FnOnce(&mut v1::PullResponse)) -> Vec<u8> {
    use garrison_proto::sync_file::{SyncFileReader, SyncFileWriter};
    use garrison_proto::v1::sync_file::Part;
    let honest = garrison_hub::files::export(&world.hub, SITE, Vec::new(), 9)
        .await
        .unwrap();
    let mut reader = SyncFileReader::new(honest.as_slice()).unwrap();
    let mut writer = SyncFileWriter::new(Vec::new(), reader.header().clone()).unwrap();
    let mut forge = Some(forge);
    while let Some(part) = reader.next_part().unwrap() {
        let part = match part {
            Part::Pull(mut pull) => {
                if let Some(forge) = forge.take() {
                    forge(&mut pull);
                }
                Part::Pull(pull)
            }
            other => other,
        };
        writer.push(part).unwrap();
    }
    writer.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_site_attestors_may_call_and_only_for_their_own_log() {
    let world = World::new(false).await.unwrap();
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let ca = &world.testbed.site_ca;
    // The site's attestor, for its own log: answered.
    let attestor = ca
        .issue_site_role_svid(
            garrison_ca::SiteRole::Attestor,
            time::Duration::hours(1),
            garrison_ca::SubjectKey::Generate(garrison_ca::KeyAlgorithm::EcdsaP256),
            now,
            &rng,
        )
        .unwrap();
    let own = status_as(&world, &attestor, &world.origin()).await.unwrap();
    assert_eq!(own.held_size, 0);
    // The same attestor asking about another site's log: refused.
    let other = status_as(&world, &attestor, &site_origin(TRUST_DOMAIN, "site-b"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    // A node SVID of the site: refused before anything is read.
    let node = ca
        .issue_svid(
            garrison_ca::SvidParams {
                spiffe_id: garrison_ca::SpiffeId::parse(&format!(
                    "spiffe://{TRUST_DOMAIN}/site/{SITE}/node/n1"
                ))
                .unwrap(),
                ttl: time::Duration::hours(1),
                max_ttl: time::Duration::hours(1),
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            now,
            &rng,
        )
        .unwrap();
    let refused = status_as(&world, &node, &world.origin()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not a site attestor"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_batches_are_refused_without_panicking() {
    let world = World::new(false).await.unwrap();
    world.enroll(3).await;
    let good = batch(&world, 0, 0).await;
    let roots = world.testbed.site_ca.roots().to_vec();
    let origin = world.origin();
    assert!(garrison_hub::push::check(good.clone(), &origin, &roots).is_ok());
    let record = good.records[1].clone();
    let mut checked = 0;
    for cut in 0..record.len() {
        let mut damaged = good.clone();
        damaged.records[1] = record[..cut].to_vec();
        assert!(garrison_hub::push::check(damaged, &origin, &roots).is_err());
        checked += 1;
    }
    for position in 0..record.len() {
        let mut damaged = good.clone();
        damaged.records[1][position] ^= 0x20;
        // A flip that keeps valid canonical JSON (a letter's case) passes the decoding;
        // its leaf then no longer leads to the signed root, which the hub's append refuses.
        let _ = garrison_hub::push::check(damaged, &origin, &roots);
        checked += 1;
    }
    let note = good.checkpoint.clone();
    for (cut, _) in note.char_indices() {
        let mut damaged = good.clone();
        damaged.checkpoint = note[..cut].to_owned();
        let text = damaged.checkpoint.clone();
        assert!(
            garrison_hub::push::check(damaged, &origin, &roots).is_err(),
            "{cut} of {}: {text:?}",
            note.len()
        );
        checked += 1;
    }
    assert!(checked > 500);
}

/// A site whose database holds its log from before a rename (another origin) that already
/// revoked a node: the hub's list naming that node is still recorded in the site's current
/// log (the revocation was enforced already; the new log, the hub's copy of it and its
/// auditors should say so too), and a node the current log already revoked is not recorded
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_revocation_is_recorded_in_the_current_log_after_a_rename() {
    let world = World::new(false).await.unwrap();
    let site_log = world.attestor.log();
    let (before_rename, current) = (format!("{:064x}", 41), format!("{:064x}", 42));
    let old = AttestationLog::open(&garrison_log::LogConfig {
        url: format!("sqlite://{}/site.db", world.dir.display()),
        origin: Some(site_origin(TRUST_DOMAIN, "old-name")),
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .unwrap();
    let revoke = |node: &str| garrison_log::Revocation {
        time: OffsetDateTime::now_utc(),
        site: SITE.into(),
        target: garrison_log::RevocationTarget::Node(node.to_owned()),
        reasons: vec!["operator".into()],
        policy_digest: None,
    };
    old.revoke(revoke(&before_rename)).await.unwrap();
    old.close().await;
    site_log.revoke(revoke(&current)).await.unwrap();
    assert!(site_log.is_node_revoked(&before_rename).await.unwrap());
    let size = site_log.tree_size().await.unwrap();

    world
        .hub
        .revoke(&[
            RevokedTarget::Node(before_rename.clone()),
            RevokedTarget::Node(current.clone()),
        ])
        .await
        .unwrap();
    let round = world.round().await;
    assert_eq!(round.applied.revocation_sequence, Some(1));
    assert_eq!(round.applied.revoked, 1, "{round:?}");
    let revokes = site_log
        .query(&garrison_log::Query {
            kind: Some(RecordKind::Revoke),
            ..Default::default()
        })
        .await
        .unwrap();
    let nodes: Vec<Option<String>> = revokes.iter().map(|r| r.record.node_id.clone()).collect();
    assert_eq!(nodes, vec![Some(current), Some(before_rename)]);
    assert_eq!(site_log.tree_size().await.unwrap(), size + 1);
}

/// Someone with the site's database un-revokes a node the hub revoked (its revocation row
/// deleted) and writes a bogus revocation list of a high sequence, so that the site would
/// ignore the hub's lists below it. The auditor's check of the kept list against what the
/// site enforces finds both; and the site, which goes by the newest kept list that
/// verifies, applies the hub's next list all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_hub_revocation_list_is_checked_against_what_the_site_enforces() {
    let world = World::new(false).await.unwrap();
    let site_log = world.attestor.log();
    let roots = world.testbed.site_ca.roots().to_vec();
    let (first, second) = (format!("{:064x}", 51), format!("{:064x}", 52));
    world
        .hub
        .revoke(&[
            RevokedTarget::Node(first.clone()),
            RevokedTarget::Serial("5151".to_owned()),
        ])
        .await
        .unwrap();
    let round = world.round().await;
    assert_eq!(round.applied.revocation_sequence, Some(1));
    let checked = garrison_audit::check_hub_revocations(site_log, &roots)
        .await
        .unwrap();
    assert!(checked.ok(), "{checked:?}");
    assert_eq!((checked.list_sequence, checked.entries), (Some(1), 2));
    // The serial un-revoked too: both kinds of entry are checked.

    let url = format!("sqlite://{}/site.db", world.dir.display());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM revocations WHERE node_id = '{first}' OR serial = '5151'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(!site_log.is_node_revoked(&first).await.unwrap());
    assert!(!site_log.is_revoked("5151").await.unwrap());
    let checked = garrison_audit::check_hub_revocations(site_log, &roots)
        .await
        .unwrap();
    assert_eq!(
        checked.not_enforced,
        [format!("node:{first}"), "serial:5151".to_owned()]
    );
    let mut report = garrison_audit::VerifyReport::default();
    report.add_hub_revocations(&checked);
    assert_eq!(
        report.problems,
        [
            garrison_audit::Problem::HubRevocationNotEnforced {
                list_sequence: 1,
                target: format!("node:{first}"),
            },
            garrison_audit::Problem::HubRevocationNotEnforced {
                list_sequence: 1,
                target: "serial:5151".to_owned(),
            },
        ]
    );

    // A bogus list of a high sequence (an insert: kept lists cannot be changed or deleted).
    sqlx::query(
        "INSERT INTO revocation_lists (sequence, note, stored_us) \
         VALUES (1000000, 'not a signed list', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // The site and the auditor go by the newest list that verifies, and the auditor names
    // the one above it.
    let checked = garrison_audit::check_hub_revocations(site_log, &roots)
        .await
        .unwrap();
    assert_eq!(checked.list_sequence, Some(1));
    let unverifiable: Vec<u64> = checked.unverifiable.iter().map(|(s, _)| *s).collect();
    assert_eq!(unverifiable, [1_000_000], "{checked:?}");
    assert_eq!(
        checked.not_enforced,
        [format!("node:{first}"), "serial:5151".to_owned()]
    );

    // The hub's next list is applied: both nodes revoked, and the site says what it passed
    // over.
    sqlx::Connection::close(conn).await.unwrap();
    world
        .hub
        .revoke(&[RevokedTarget::Node(second.clone())])
        .await
        .unwrap();
    let round = world.round().await;
    assert_eq!(round.applied.revocation_sequence, Some(2), "{round:?}");
    assert!(site_log.is_node_revoked(&first).await.unwrap());
    assert!(site_log.is_revoked("5151").await.unwrap());
    assert!(site_log.is_node_revoked(&second).await.unwrap());
    let events = site_log.sync_events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "revocation-list-unverifiable"),
        "{events:?}"
    );
}

/// A refusal whose event log did not replay to its quote keeps the log's digest only (its
/// bytes are the sender's choosing): the site has nothing to send for it, and the hub takes
/// the batch all the same. An allow's event log must come with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_kept_only_its_event_logs_digest_is_taken_by_the_hub() {
    let world = World::new(false).await.unwrap();
    let site_log = world.attestor.log();
    let evidence = |event_log: &[u8]| garrison_appraisal::EvidenceRecord {
        stage: garrison_appraisal::Stage::EnrollComplete,
        event_log_sha256: garrison_log::evidence_digest(event_log),
        ..Default::default()
    };
    let refusal = garrison_log::Record {
        time: OffsetDateTime::now_utc(),
        site: SITE.into(),
        kind: RecordKind::Enroll,
        node_id: Some(format!("{:064x}", 61)),
        spiffe_id: None,
        decision: garrison_log::Decision::Deny,
        reasons: vec!["event-log-mismatch".into()],
        policy_digest: None,
        evidence_digest: None,
        cert_serial: None,
        cert_not_after: None,
    };
    site_log
        .append(garrison_log::NewEntry {
            record: refusal,
            evidence: Some(evidence(b"bytes of the sender's choosing").to_bytes()),
            node_update: None,
        })
        .await
        .unwrap();
    let size = site_log.tree_size().await.unwrap();
    let round = world.round().await;
    assert_eq!(round.held_size, size, "{round:?}");
    let replica = world.replica().await;
    assert_eq!(replica.tree_size().await.unwrap(), size);
    replica.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_list_too_large_for_one_answer_is_not_signed() {
    let world = World::new(false).await.unwrap();
    world
        .hub
        .revoke(&[RevokedTarget::Serial("1001".to_owned())])
        .await
        .unwrap();
    let many: Vec<RevokedTarget> = (0..150_000u64)
        .map(|i| RevokedTarget::Node(format!("{i:064x}")))
        .collect();
    match world.hub.revoke(&many).await {
        Err(HubError::Refused(r)) => assert_eq!(r.code, "too-large", "{r}"),
        other => panic!("expected too-large, got {other:?}"),
    }
    let list = world.hub.revocation_list().await.unwrap().unwrap();
    assert_eq!(
        (list.sequence, list.entries.len()),
        (1, 1),
        "nothing was signed"
    );
    // What is signed fits in one Pull answer with room to spare.
    let pull = world
        .hub
        .pull(&v1::PullRequest {
            origin: world.origin(),
            policy_sequence: 0,
            revocation_sequence: 0,
        })
        .await
        .unwrap();
    assert!(pull.revocation_list.len() <= garrison_hub::MAX_REVOCATION_LIST_BYTES);
}

// ---- Site CA rotation across long partitions (injected clock; hub and site share it) ----

fn days(n: f64) -> time::Duration {
    time::Duration::seconds_f64(n * 86_400.0)
}

/// A world whose hub and site read one test clock, starting now.
async fn world_on_test_clock(
    postgres: bool,
    hub_ttl: time::Duration,
    site_ttl: time::Duration,
) -> Option<(World, Arc<TestClock>)> {
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(TestClock(std::sync::Mutex::new(start)));
    let world = World::with(postgres, clock.clone(), start, hub_ttl, site_ttl).await?;
    Some((world, clock))
}

/// A node SVID from the CA in force, as enrollment or renewal would issue it.
fn node_svid(world: &World, n: usize) -> Result<garrison_ca::Issued, garrison_ca::CaError> {
    let ca = world.attestor.site_ca().active();
    let params = garrison_ca::SvidParams {
        spiffe_id: garrison_ca::SpiffeId::parse(&format!(
            "spiffe://{TRUST_DOMAIN}/site/{SITE}/node/n{n}"
        ))
        .unwrap(),
        ttl: time::Duration::hours(1),
        max_ttl: time::Duration::hours(1),
        subject_key: garrison_ca::SubjectKey::Generate(garrison_ca::KeyAlgorithm::EcdsaP256),
    };
    ca.issue_svid(params, world.clock.now(), &SystemRandom::new())
}

/// The `rotate` records of the site's log: (decision, step).
async fn rotate_steps(world: &World) -> Vec<(Decision, String)> {
    let query = garrison_log::Query {
        kind: Some(RecordKind::Rotate),
        ..Default::default()
    };
    world
        .attestor
        .log()
        .query(&query)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.record.kind == RecordKind::Rotate)
        .map(|r| (r.record.decision, r.record.reasons[0].clone()))
        .collect()
}

/// Does the attestor's TLS layer (renewal) accept `svid` as a client certificate now?
fn renewal_accepts(world: &World, svid: &garrison_ca::Issued) -> Result<(), String> {
    use rustls::server::danger::ClientCertVerifier as _;
    let issuers = Arc::new(garrison_attestor::site_ca::SiteCaIssuers::new(
        Arc::clone(world.attestor.site_ca()),
        Arc::clone(&world.clock),
    ));
    let verifier = garrison_attestor::tls::RotatingClientVerifier::new(issuers).unwrap();
    let leaf = rustls_pki_types::CertificateDer::from(svid.chain[0].clone());
    let rest: Vec<_> = svid.chain[1..]
        .iter()
        .map(|c| rustls_pki_types::CertificateDer::from(c.clone()))
        .collect();
    let now = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        world.clock.now().unix_timestamp() as u64,
    ));
    verifier
        .verify_client_cert(&leaf, &rest, now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// 30 days cut off with a 45-day intermediate: the site issues throughout (every SVID within
/// its CA), prepares its next key at half life; on reconnection one round carries the whole
/// backlog and the CSR, the hub certifies it, and the schedule activates it at a sixth left;
/// SVIDs of the old CA keep renewing until they expire.
async fn a_30_day_partition_rotates_on_reconnection(postgres: bool) {
    let Some((world, clock)) = world_on_test_clock(postgres, days(365.0), days(45.0)).await else {
        return;
    };
    world.enroll(3).await;
    assert!(world.round().await.ca.is_empty(), "nothing due at day 0");
    let ca = world.attestor.site_ca();
    let provisioned = ca.active().certificate().to_vec();
    // Cut off for 30 days: no round. Every 6 hours an SVID and a record.
    for i in 0..120 {
        clock.advance(days(0.25));
        ca.tick(world.attestor.log(), clock.now()).await;
        let svid = node_svid(&world, i).unwrap();
        assert!(svid.not_after <= ca.active().not_after());
        assert!(!svid.capped_at_issuer_expiry, "a 1h SVID fits in the CA");
        world.enroll(1).await;
    }
    assert!(ca.pending_request().is_some(), "prepared at half life");
    assert_eq!(ca.active().certificate(), provisioned.as_slice());
    let config = garrison_attestor::SiteConfig::load(&world.dir.join("site.toml")).unwrap();
    let status = garrison_attestor::status::SiteStatus::read(&config, clock.now())
        .await
        .unwrap();
    assert_eq!(
        status.offline_budget_seconds,
        (ca.active().not_after() - clock.now()).whole_seconds()
    );
    assert_eq!(status.ca_generation, "gen-0");
    // Reconnection: one round, every record and the CSR.
    let size = world.attestor.log().tree_size().await.unwrap();
    let summary = world.round().await;
    assert_eq!(summary.ca, vec!["certified"]);
    assert_eq!(summary.batches, 1, "the backlog went up in one round");
    assert!(summary.held_size >= size);
    let again = world.round().await;
    assert_eq!(
        (again.batches, again.ca.len()),
        (0, 0),
        "nothing left to do"
    );
    // The CA in force has its successor: another key (a thief holding the CA key, say) is
    // refused one; the same key again is fine (a lost answer).
    let other_key = garrison_ca::PrivateKey::generate(
        garrison_ca::KeyAlgorithm::EcdsaP256,
        &SystemRandom::new(),
    )
    .unwrap();
    let request = |csr: Vec<u8>| v1::IntermediateRequest {
        origin: world.origin(),
        csr,
        lifetime_seconds: days(45.0).whole_seconds() as u64,
    };
    let refused = world
        .hub
        .certify_site_ca(
            &world.origin(),
            &request(other_key.csr_der("thief").unwrap()),
            Some(&provisioned),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("successor-exists"),
        "{refused}"
    );
    let pending_csr = garrison_ca::PrivateKey::from_pkcs8_pem(
        &std::fs::read_to_string(world.dir.join("ca/site/rotation/gen-1/key.pem")).unwrap(),
    )
    .unwrap()
    .csr_der("again")
    .unwrap();
    world
        .hub
        .certify_site_ca(&world.origin(), &request(pending_csr), Some(&provisioned))
        .await
        .unwrap();
    // Activation by the schedule, at a sixth of the old CA's life left (day 37.5).
    clock.advance(days(7.49));
    ca.tick(world.attestor.log(), clock.now()).await;
    assert_eq!(
        ca.active().certificate(),
        provisioned.as_slice(),
        "not yet due"
    );
    let old_svid = node_svid(&world, 1000).unwrap();
    clock.advance(days(0.02));
    ca.tick(world.attestor.log(), clock.now()).await;
    assert_ne!(
        ca.active().certificate(),
        provisioned.as_slice(),
        "activated"
    );
    let new_svid = node_svid(&world, 1001).unwrap();
    assert_eq!(new_svid.chain[1], ca.active().certificate());
    // Certified at reconnection (day 30) for 45 days.
    assert!(ca.active().not_after() > clock.now() + days(37.0));
    // Renewal accepts both: the old CA's SVIDs until they expire, and the new CA's.
    renewal_accepts(&world, &old_svid).unwrap();
    renewal_accepts(&world, &new_svid).unwrap();
    let steps: Vec<_> = rotate_steps(&world).await;
    assert_eq!(
        steps,
        vec![
            (Decision::Allow, "prepared".to_owned()),
            (Decision::Allow, "certified".to_owned()),
            (Decision::Allow, "activated".to_owned()),
        ]
    );
    let events = world.hub.events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "intermediate-issued" && e.count == 2),
        "{events:?}"
    );
}

/// 60 days cut off with the same intermediate: at its expiry the site fails closed
/// (`ca-unavailable`), no SVID outlives it, the log keeps taking records; when the link
/// returns it syncs within the hub's rejoin window, gets its next CA and issues again.
async fn a_60_day_partition_fails_closed_and_recovers(postgres: bool) {
    let Some((world, clock)) = world_on_test_clock(postgres, days(365.0), days(45.0)).await else {
        return;
    };
    world.round().await;
    let ca = world.attestor.site_ca();
    let expiry = ca.active().not_after();
    clock.advance(days(44.99));
    ca.tick(world.attestor.log(), clock.now()).await;
    let last = node_svid(&world, 1).unwrap();
    assert!(last.capped_at_issuer_expiry);
    assert_eq!(last.not_after, expiry, "no SVID outlives its CA");
    clock.advance(days(0.02));
    let refused = node_svid(&world, 2).unwrap_err();
    assert_eq!(
        garrison_attestor::Reason::of_ca_error(refused.kind()).code(),
        "ca-unavailable"
    );
    assert!(ca.state().offline_budget(clock.now()).is_zero());
    world.enroll(2).await; // the log keeps taking records
    let config = garrison_attestor::SiteConfig::load(&world.dir.join("site.toml")).unwrap();
    let status = garrison_attestor::status::SiteStatus::read(&config, clock.now())
        .await
        .unwrap();
    assert_eq!(status.offline_budget_seconds, 0);
    assert_eq!(status.ca_expires, expiry);
    assert_eq!(status.pending_rotation.as_deref(), Some("gen-1: requested"));
    assert!(status.to_text(clock.now()).contains("EXHAUSTED"));
    clock.advance(days(15.0));
    ca.tick(world.attestor.log(), clock.now()).await;
    // An attestor restarted now, its CA expired and no successor yet, still starts (its
    // server SVID and log key certificate dated at the CA's last minute): it must be running
    // to sync its way out.
    let config = garrison_attestor::SiteConfig::load(&world.dir.join("site.toml")).unwrap();
    let restarted = match garrison_attestor::server::build(&config, Arc::clone(&world.clock)).await
    {
        Ok(restarted) => restarted,
        Err(e) => panic!(
            "an attestor with an expired CA did not start: {e}: {:?}",
            std::error::Error::source(&e).map(ToString::to_string)
        ),
    };
    garrison_attestor::server::attestor_identity(
        &config,
        Arc::clone(restarted.site_ca()),
        Arc::clone(&world.clock),
    )
    .unwrap();
    drop(restarted);
    // The link is back, 15 days after the CA expired: within the hub's rejoin window (30
    // days) the site syncs with a certificate dated at its CA's expiry, and asks for its next
    // CA; one round, and it issues again.
    let size = world.attestor.log().tree_size().await.unwrap();
    let summary = world.round().await;
    assert_eq!(summary.ca, vec!["certified", "activated"]);
    assert!(summary.held_size >= size, "the backlog went up");
    let svid = node_svid(&world, 3).unwrap();
    assert!(!svid.capped_at_issuer_expiry);
    assert_eq!(svid.chain[1], ca.active().certificate());
    assert!(ca.active().not_after() > clock.now() + days(44.0));
    let events = world.hub.events().await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "rejoin-after-expiry"),
        "recorded at the hub: {events:?}"
    );
    // The retired CA's key is gone; its certificate stays.
    assert!(!world.dir.join("ca/site/key.pem").exists());
    assert!(world.dir.join("ca/site/cert.pem").exists());
    // A restart picks up the generation in force.
    let config = garrison_attestor::SiteConfig::load(&world.dir.join("site.toml")).unwrap();
    let reloaded = garrison_attestor::server::load_site_ca(&config).unwrap();
    assert_eq!(reloaded.active().certificate(), ca.active().certificate());
}

/// Cut off for longer than the CA's life plus the hub's rejoin window: the expired
/// credential is refused, and the hub's operator certifies the request the site prepared
/// at half life (`garrison hub certify-site` does this); installed, it is in force at once.
async fn beyond_the_rejoin_window_the_operator_certifies(postgres: bool) {
    let Some((world, clock)) = world_on_test_clock(postgres, days(365.0), days(45.0)).await else {
        return;
    };
    world.round().await;
    let ca = world.attestor.site_ca();
    clock.advance(days(23.0));
    ca.tick(world.attestor.log(), clock.now()).await;
    clock.advance(days(60.0)); // 38 days past expiry
    let connected = HubClient::connect(
        &world.hub_config.listen.to_string(),
        &ca.active(),
        Arc::clone(&world.clock),
    )
    .unwrap();
    let tried = std::sync::atomic::AtomicU64::new(0);
    let refused = sync_client::round(
        &world.sync,
        &mut connected.with_timeout(std::time::Duration::from_secs(10)),
        &world.attestor,
        &tried,
    )
    .await;
    assert!(refused.is_err(), "an expired credential past the window");
    let csr = ca.pending_request().expect("prepared before expiry");
    let request = v1::IntermediateRequest {
        origin: world.origin(),
        csr,
        lifetime_seconds: days(45.0).whole_seconds() as u64,
    };
    let answer = world
        .hub
        .certify_site_ca(&world.origin(), &request, None)
        .await
        .unwrap();
    let log = world.attestor.log();
    assert!(
        ca.install(log, answer.chain, clock.now(), &SystemRandom::new())
            .await
            .unwrap()
    );
    ca.tick(log, clock.now()).await;
    let svid = node_svid(&world, 3).unwrap();
    assert_eq!(svid.chain[1], ca.active().certificate());
    let summary = world.round().await;
    assert!(summary.held_size >= log.tree_size().await.unwrap() - 1);
}

/// The hub refuses to certify a site CA its own CA does not cover (recorded on both sides,
/// the push goes on); a certified CA too short to be useful is never put in force.
async fn rotation_refused_when_the_hub_ca_would_not_cover_it(postgres: bool) {
    let Some((world, clock)) = world_on_test_clock(postgres, days(50.0), days(45.0)).await else {
        return;
    };
    clock.advance(days(23.0));
    world.enroll(2).await;
    let summary = world.round().await;
    assert!(summary.ca.is_empty(), "{:?}", summary.ca);
    assert!(summary.held_size >= 2, "the push went on");
    let ca = world.attestor.site_ca();
    assert!(
        ca.pending_request().is_some(),
        "still waiting for a certificate"
    );
    let hub_events = world.hub.events().await.unwrap();
    let refused = hub_events
        .iter()
        .find(|e| e.kind == "hub-ca-expiring")
        .expect("recorded at the hub");
    assert!(refused.detail.contains("renewed"), "{}", refused.detail);
    let site_events = world.attestor.log().sync_events().await.unwrap();
    assert!(
        site_events.iter().any(|e| e.kind == "intermediate-refused"),
        "{site_events:?}"
    );
    let hub_ca = garrison_attestor::server::load_authority(&world.dir.join("ca/hub")).unwrap();
    let certify = |csr: Vec<u8>, ttl: time::Duration, now: OffsetDateTime| {
        hub_ca
            .issue_intermediate(
                garrison_ca::IntermediateParams {
                    name: SITE.into(),
                    role: garrison_ca::CaRole::Site(SITE.into()),
                    ttl,
                    path_len: garrison_ca::PathLen::OneBelowIssuer,
                    subject_key: garrison_ca::SubjectKey::Csr(
                        garrison_ca::VerifiedCsr::from_der(&csr).unwrap(),
                    ),
                },
                now,
                &SystemRandom::new(),
            )
            .unwrap()
            .chain
    };
    let log = world.attestor.log();
    let before = ca.active().certificate().to_vec();
    // Certified for 6 days: it would expire before the CA in force, so it could never be put
    // in force. Refused at install; the same key is asked for again.
    let csr = ca.pending_request().unwrap();
    let short = certify(csr.clone(), days(6.0), clock.now());
    assert!(
        ca.install(log, short, clock.now(), &SystemRandom::new())
            .await
            .is_err()
    );
    assert_eq!(
        ca.pending_request(),
        Some(csr.clone()),
        "the same key, asked for again"
    );
    // Certified to outlive the CA in force by 3 hours: fit now, but once the CA in force is
    // past its own activation point the new one is down to its last sixth: nearly expired.
    let outlive = ca.active().not_after() + time::Duration::hours(3) - clock.now();
    let barely = certify(csr.clone(), outlive, clock.now());
    assert!(
        ca.install(log, barely, clock.now(), &SystemRandom::new())
            .await
            .unwrap()
    );
    clock.advance(days(21.0)); // day 44: the CA in force is still valid
    let refused = ca.activate(log, clock.now()).await.unwrap_err();
    assert!(refused.to_string().contains("nearly expired"), "{refused}");
    assert_eq!(ca.active().certificate(), before.as_slice());
    // Its certificate is set aside, its key kept and asked for again; the refusal is
    // recorded once however often the schedule runs into it.
    assert_eq!(ca.pending_request(), Some(csr));
    ca.tick(log, clock.now()).await;
    ca.tick(log, clock.now()).await;
    let steps = rotate_steps(&world).await;
    assert!(steps.contains(&(Decision::Deny, "certificate-refused".to_owned())));
    assert_eq!(
        steps
            .iter()
            .filter(|(_, step)| step == "activation-refused")
            .count(),
        1,
        "{steps:?}"
    );
}

/// A CA lifetime below 6× the longest SVID TTL is refused when the attestor starts, with the
/// reason.
#[tokio::test]
async fn a_ca_too_short_for_the_svid_ttl_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let testbed = Site::create_with(dir.path(), now, days(365.0), days(5.0)).unwrap();
    let config = testbed
        .write_config(
            garrison_testbed::free_local_address().unwrap(),
            &format!("sqlite://{}/site.db", dir.path().display()),
            &[],
            "max_svid_ttl = \"24h\"\n[insecure]\nallow_listed_ek_hashes = [\"00\"]\n",
        )
        .unwrap();
    let Err(err) = garrison_attestor::server::build(&config, Arc::new(SystemClock)).await else {
        panic!("a 5-day CA with 24h SVIDs was accepted");
    };
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("at least 6x the longest SVID TTL"), "{text}");
}

both!(
    a_30_day_partition_rotates_on_reconnection,
    a_60_day_partition_fails_closed_and_recovers,
    beyond_the_rejoin_window_the_operator_certifies,
    rotation_refused_when_the_hub_ca_would_not_cover_it,
);

/// A root rotation from the hub down: the hub announces a new root (its cross-signed
/// certificate, then its own), refusing one no current root vouches for; the site takes both
/// at its next round and sends them to its agents from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_root_announced_at_the_hub_reaches_the_site() {
    let Some(world) = World::new(false).await else {
        return;
    };
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let old_root = garrison_attestor::server::load_authority(&world.dir.join("ca/root")).unwrap();
    let new_root = garrison_ca::Authority::new_root(
        &garrison_ca::RootParams {
            trust_domain: garrison_ca::TrustDomain::new(TRUST_DOMAIN).unwrap(),
            name: "Garrison Testbed Root 2".into(),
            ttl: days(7300.0),
            path_len: 2,
            key_algorithm: garrison_ca::KeyAlgorithm::EcdsaP256,
        },
        now,
        &rng,
    )
    .unwrap()
    .certificate;
    let cross = old_root
        .cross_sign(&new_root, now, &rng)
        .unwrap()
        .certificate;
    // A site CA asks for its successor no earlier than half through its life.
    let key =
        garrison_ca::PrivateKey::generate(garrison_ca::KeyAlgorithm::EcdsaP256, &rng).unwrap();
    let early = world
        .hub
        .certify_site_ca(
            &world.origin(),
            &v1::IntermediateRequest {
                origin: world.origin(),
                csr: key.csr_der("early").unwrap(),
                lifetime_seconds: 86_400,
            },
            Some(world.attestor.site_ca().active().certificate()),
        )
        .await
        .unwrap_err();
    assert!(early.to_string().contains("too-early"), "{early}");
    // The new root alone, before its cross-signed certificate: nobody vouches for it yet.
    assert!(world.hub.publish_root(&new_root).is_err());
    assert!(world.hub.publish_root(&cross).unwrap());
    assert!(world.hub.publish_root(&new_root).unwrap());
    assert!(!world.hub.publish_root(&cross).unwrap(), "announced once");
    let summary = world.round().await;
    assert_eq!(summary.roots_announced, 2);
    let bundle = world.attestor.trust_bundle();
    assert!(bundle.contains(&cross) && bundle.contains(&new_root));
    assert_eq!(world.round().await.roots_announced, 0, "taken once");
    // A root nobody vouches for, offered again and again, is refused and recorded once.
    let stranger = garrison_ca::Authority::new_root(
        &garrison_ca::RootParams {
            trust_domain: garrison_ca::TrustDomain::new(TRUST_DOMAIN).unwrap(),
            name: "Stranger".into(),
            ttl: days(100.0),
            path_len: 2,
            key_algorithm: garrison_ca::KeyAlgorithm::EcdsaP256,
        },
        now,
        &rng,
    )
    .unwrap()
    .certificate;
    let ca = world.attestor.site_ca();
    for _ in 0..3 {
        let taken = ca
            .accept_announced_roots(world.attestor.log(), std::slice::from_ref(&stranger), now)
            .await
            .unwrap();
        assert_eq!(taken, 0);
    }
    let refused = rotate_steps(&world)
        .await
        .iter()
        .filter(|(_, step)| step == "root-refused")
        .count();
    assert_eq!(refused, 1);
}

/// The operator's commands work beside a running attestor: `request-ca` and `install-ca`
/// (another process, here another holder of the same CA directory) prepare and install; the
/// running attestor picks both up and puts the new CA in force when due, without preparing a
/// second key of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_installed_by_another_process_is_picked_up() {
    let Some((world, clock)) = world_on_test_clock(false, days(365.0), days(45.0)).await else {
        return;
    };
    let config = garrison_attestor::SiteConfig::load(&world.dir.join("site.toml")).unwrap();
    let log = world.attestor.log();
    let running = world.attestor.site_ca();
    clock.advance(days(38.0));
    let cli = garrison_attestor::server::load_site_ca(&config).unwrap();
    let rng = SystemRandom::new();
    let csr = cli.prepare(log, clock.now(), &rng).await.unwrap();
    let request = v1::IntermediateRequest {
        origin: world.origin(),
        csr,
        lifetime_seconds: days(45.0).whole_seconds() as u64,
    };
    let answer = world
        .hub
        .certify_site_ca(&world.origin(), &request, None)
        .await
        .unwrap();
    assert!(
        cli.install(log, answer.chain, clock.now(), &rng)
            .await
            .unwrap()
    );
    let before = running.active().certificate().to_vec();
    running.tick(log, clock.now()).await;
    assert_ne!(
        running.active().certificate(),
        before.as_slice(),
        "put in force"
    );
    assert_eq!(running.state().active_name, "gen-1");
    assert!(
        !world.dir.join("ca/site/rotation/gen-2").exists(),
        "no second key"
    );
}

/// `GET path` over HTTP/1.0: (status code, body).
async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// The value of the sample `name` (with its labels, exactly as exposed).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_probes_metrics_and_health_follow_its_syncs() {
    let world = World::new(false).await.unwrap();
    let ops = world.hub_config.ops_listen.unwrap();
    assert_eq!(http_get(ops, "/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(
        http_get(ops, "/readyz").await,
        (200, "ready\nok database\nok ca\n".to_owned())
    );
    let (_, before) = http_get(ops, "/metrics").await;
    assert_eq!(
        sample(
            &before,
            &format!("garrison_hub_site_push_age_seconds{{site=\"{SITE}\"}}")
        ),
        None,
        "no push yet"
    );

    world.enroll(5).await;
    let summary = world.round().await;
    assert!(summary.batches > 0, "{summary:?}");
    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    let pushes = sample(
        &metrics,
        "garrison_hub_sync_calls_total{method=\"push_log\",result=\"ok\"}",
    )
    .unwrap();
    assert!(pushes >= 1.0, "{metrics}");
    let age = sample(
        &metrics,
        &format!("garrison_hub_site_push_age_seconds{{site=\"{SITE}\"}}"),
    )
    .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(sample(&metrics, "garrison_hub_pushes_in_flight"), Some(0.0));
    let ca_left = sample(&metrics, "garrison_hub_ca_expiry_seconds").unwrap();
    assert!(ca_left > 300.0 * 86_400.0, "{ca_left}");
    assert!(
        sample(
            &metrics,
            "garrison_hub_sync_call_duration_seconds_count{method=\"push_log\"}"
        )
        .unwrap()
            >= 1.0
    );

    // The gRPC health service on the Sync port, to a site attestor's client certificate.
    let issued = world
        .testbed
        .site_ca
        .issue_site_role_svid(
            garrison_ca::SiteRole::Attestor,
            time::Duration::hours(1),
            garrison_ca::SubjectKey::Generate(garrison_ca::KeyAlgorithm::EcdsaP256),
            OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
    let identity = garrison_attestor::tls::identity_from_issued(&issued).unwrap();
    let hub_id =
        garrison_ca::SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/hub/sync")).unwrap();
    let bundle = garrison_ca::certificates_to_pem(world.testbed.site_ca.roots());
    let config =
        garrison_spiffe_tls::client_config(bundle.as_bytes(), hub_id, Some(identity)).unwrap();
    let channel =
        garrison_spiffe_tls::connect(&format!("https://{}", world.hub_config.listen), config)
            .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "garrison.v1.Sync".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
