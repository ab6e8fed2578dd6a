//! A site's signed log for audit tests: a real CA hierarchy (root → hub → site), a log key
//! certified by the site CA, records with evidence, and checkpoints signed along the way.

#![allow(dead_code)]

use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole, SubjectKey,
    TrustDomain, certificates_to_pem,
};
use garrison_log::{
    AttestationLog, Decision, LogConfig, NewEntry, Record, RecordKind, StoredCheckpoint,
};
use garrison_transparency::LogKey;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

pub const SITE: &str = "s1";

pub fn origin() -> String {
    garrison_transparency::site_origin("example.org", SITE)
}

pub struct Site {
    pub root: Authority,
    pub hub: Authority,
    pub site_ca: Authority,
    pub key: LogKey,
    pub now: OffsetDateTime,
}

fn intermediate(issuer: &Authority, name: &str, role: CaRole, now: OffsetDateTime) -> Authority {
    let issued = issuer
        .issue_intermediate(
            IntermediateParams {
                name: name.into(),
                role,
                ttl: Duration::days(300),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &SystemRandom::new(),
        )
        .expect("intermediate");
    Authority::from_issued(issued).expect("authority")
}

impl Site {
    pub fn new() -> Site {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("now");
        let root = Authority::from_issued(
            Authority::new_root(
                &RootParams {
                    trust_domain: TrustDomain::new("example.org").expect("td"),
                    name: "Audit Test Root".into(),
                    ttl: Duration::days(3650),
                    path_len: 2,
                    key_algorithm: KeyAlgorithm::EcdsaP256,
                },
                now,
                &SystemRandom::new(),
            )
            .expect("root"),
        )
        .expect("root authority");
        let hub = intermediate(&root, "hub", CaRole::Hub, now);
        let site_ca = intermediate(&hub, SITE, CaRole::Site(SITE.into()), now);
        let pkcs8 = LogKey::generate_pkcs8(&SystemRandom::new()).expect("key");
        let key = LogKey::from_pkcs8(&origin(), &pkcs8).expect("log key");
        Site {
            root,
            hub,
            site_ca,
            key,
            now,
        }
    }

    pub fn root_pem(&self) -> String {
        certificates_to_pem(&[self.root.certificate().to_vec()])
    }

    pub fn roots(&self) -> Vec<Vec<u8>> {
        vec![self.root.certificate().to_vec()]
    }

    /// The CA of another site under the same hub.
    pub fn other_site_ca(&self, name: &str) -> Authority {
        intermediate(&self.hub, name, CaRole::Site(name.into()), self.now)
    }

    /// Certifies the log key with `ca` and keeps the chain in `log`.
    pub async fn certify(&self, log: &AttestationLog, ca: &Authority, key: &LogKey) {
        let issued = ca
            .issue_site_role_svid(
                SiteRole::Log,
                Duration::days(30),
                SubjectKey::LogKey(key.public_key()),
                self.now,
                &SystemRandom::new(),
            )
            .expect("log key certificate");
        log.add_log_key_certificate(
            &key.public_key(),
            &certificates_to_pem(&issued.chain),
            self.now,
        )
        .await
        .expect("keep certificate");
    }

    /// Signs and keeps a checkpoint of the log as it is.
    pub async fn checkpoint(&self, log: &AttestationLog) -> StoredCheckpoint {
        let size = log.tree_size().await.expect("size");
        let root = log.tree_root(size).await.expect("root");
        let checkpoint = StoredCheckpoint {
            size,
            root_hash: root,
            signed: self.now,
            note: self.key.sign_checkpoint(size, &root).expect("sign"),
        };
        log.store_checkpoint(&checkpoint).await.expect("store");
        checkpoint
    }

    /// A log of `n` records (every third with evidence, an event-log-style JSON naming a
    /// blob), certified, with a checkpoint after every 10 records and one at the end.
    pub async fn build_log(&self, config: LogConfig, n: u64) -> AttestationLog {
        let log = AttestationLog::open(&LogConfig {
            origin: Some(origin()),
            ..config
        })
        .await
        .expect("open");
        self.certify(&log, &self.site_ca, &self.key).await;
        // An attestor's first start signs the empty tree.
        self.checkpoint(&log).await;
        for i in 0..n {
            log.append(entry(i, self.now)).await.expect("append");
            if (i + 1).is_multiple_of(10) {
                self.checkpoint(&log).await;
            }
        }
        self.checkpoint(&log).await;
        log
    }
}

/// Record `i`, with evidence on every third.
pub fn entry(i: u64, now: OffsetDateTime) -> NewEntry {
    NewEntry {
        record: record(i, now),
        evidence: i
            .is_multiple_of(3)
            .then(|| format!("{{\"stage\":\"enroll-complete\",\"n\":{i}}}").into_bytes()),
        node_update: None,
    }
}

pub fn record(i: u64, now: OffsetDateTime) -> Record {
    Record {
        time: now + Duration::seconds(i as i64),
        site: SITE.into(),
        kind: if i % 5 == 4 {
            RecordKind::Renew
        } else {
            RecordKind::Enroll
        },
        node_id: Some(format!("{:064x}", i % 7)),
        spiffe_id: Some(format!("spiffe://example.org/site/{SITE}/node/{}", i % 7)),
        decision: if i % 4 == 3 {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reasons: if i % 4 == 3 {
            vec!["policy-deny".into()]
        } else {
            vec![]
        },
        policy_digest: Some("ab".repeat(32)),
        evidence_digest: None,
        cert_serial: (i % 4 != 3).then(|| format!("{:032x}", i + 1000)),
        cert_not_after: None,
    }
}
