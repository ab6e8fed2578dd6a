//! The site's sync client: rounds of pull-then-push with the hub, opened by the site.
//!
//! A round ([`round`]): ask where the hub stands, pull what it publishes (revocations
//! applied at once; a newer policy bundle put in force through the attestor's own reload),
//! then push the log from where the hub stands to the newest signed checkpoint, batch by
//! batch, and keep the hub's cosignature when it comes. An interrupted round resumes where
//! the hub says next time; a resend is a no-op at the hub.
//!
//! [`spawn`] runs rounds every `sync_interval` while the hub answers, and backs off
//! exponentially with jitter (up to `max_backoff`) while it does not. It runs beside the
//! attestor's serving and never holds anything the attestor waits on: enrollment and
//! renewal go on whatever the link does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use garrison_ca::{Authority, KeyAlgorithm, SiteRole, SpiffeId, SubjectKey};
use garrison_proto::limits::MAX_SYNC_MESSAGE;
use garrison_proto::v1;
use garrison_proto::v1::sync_client::SyncClient;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::transport::Channel;

use crate::Attestor;
use crate::config::HubLink;
use crate::site_sync::{EvidenceFilter, SiteSync, SyncError};

/// A connection to the hub's Sync service.
pub struct HubClient {
    client: SyncClient<Channel>,
    /// Each call's limit.
    timeout: Duration,
}

impl HubClient {
    /// Connects to `address` as this site's attestor (an SVID issued now from the site CA),
    /// accepting only the hub's server identity `spiffe://<td>/hub/sync` chaining to the
    /// roots. Both certificates are judged at `clock`'s time.
    pub fn connect(
        address: &str,
        ca: &Authority,
        clock: Arc<dyn crate::Clock>,
    ) -> Result<Self, SyncError> {
        Self::connect_with(address, ca, &[], clock)
    }

    /// [`HubClient::connect`], also trusting the new roots `announced` (cross-signed by a
    /// current root): a hub whose CA moved under a new root during a root rotation.
    pub fn connect_with(
        address: &str,
        ca: &Authority,
        announced: &[Vec<u8>],
        clock: Arc<dyn crate::Clock>,
    ) -> Result<Self, SyncError> {
        let now = clock.now();
        let connect_err = |e: String| SyncError::Connect(e);
        let rng = SystemRandom::new();
        // A CA that has expired issues nothing new; to ask the hub for its successor the site
        // presents a certificate dated at its CA's last minute, which a hub accepts only
        // within its rejoin window (`HubConfig::rejoin_window`), and records.
        let expired = now >= ca.not_after();
        let issued_at = if expired {
            tracing::warn!(expired = %ca.not_after(), "the site CA has expired: connecting to the hub with a certificate dated at its expiry");
            ca.not_after() - time::Duration::minutes(1)
        } else {
            now
        };
        let issued = ca
            .issue_site_role_svid(
                SiteRole::Attestor,
                time::Duration::hours(1),
                SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                issued_at,
                &rng,
            )
            .map_err(|e| connect_err(e.to_string()))?;
        let identity =
            crate::tls::identity_from_issued(&issued).map_err(|e| connect_err(e.to_string()))?;
        let hub = SpiffeId::from_path(ca.trust_domain(), "/hub/sync")
            .map_err(|e| connect_err(e.to_string()))?;
        let bundle = garrison_ca::certificates_to_pem(&attestor_anchors(ca, announced));
        let verifier = garrison_spiffe_tls::SpiffeServerVerifier::new(bundle.as_bytes(), hub)
            .map_err(|e| connect_err(e.to_string()))?;
        let config = garrison_spiffe_tls::client_config_at(
            Arc::new(verifier),
            Some(identity),
            Arc::new(crate::tls::ClockTime(clock)),
        )
        .map_err(|e| connect_err(e.to_string()))?;
        // `host:port` as configured; the channel wants a URI.
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("https://{address}")
        };
        let channel =
            garrison_spiffe_tls::connect(&uri, config).map_err(|e| connect_err(e.to_string()))?;
        Ok(HubClient {
            client: SyncClient::new(channel)
                .max_decoding_message_size(MAX_SYNC_MESSAGE)
                .max_encoding_message_size(MAX_SYNC_MESSAGE),
            timeout: Duration::from_secs(30),
        })
    }

    /// Each call (connecting included) gives up after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, SyncError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(SyncError::Connect(format!(
                "{what}: no answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    pub(crate) async fn missing(&mut self, digests: Vec<String>) -> Result<Vec<String>, SyncError> {
        let mut lacking = Vec::new();
        for chunk in digests.chunks(garrison_proto::limits::SYNC_MAX_DIGESTS) {
            let mut client = self.client.clone();
            let request = v1::EvidenceDigests {
                digests: chunk.to_vec(),
            };
            let answer = self
                .call("MissingEvidence", client.missing_evidence(request))
                .await?;
            lacking.extend(answer.digests);
        }
        Ok(lacking)
    }
}

/// The roots and the announced new roots, as trust anchors.
fn attestor_anchors(ca: &Authority, announced: &[Vec<u8>]) -> Vec<Vec<u8>> {
    ca.roots().iter().chain(announced).cloned().collect()
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundSummary {
    /// Records the hub holds after the round.
    pub held_size: u64,
    /// Batches pushed.
    pub batches: u64,
    /// The checkpoint the hub cosigned in this round.
    pub cosigned_size: Option<u64>,
    /// What came down.
    pub applied: crate::site_sync::Applied,
    /// A line saying what happened to a policy bundle that came down.
    pub policy: Option<String>,
    /// What the round did for the site CA's rotation (`certified`, `activated`).
    pub ca: Vec<&'static str>,
    /// New roots the hub announced that the site took (a root rotation).
    pub roots_announced: usize,
}

/// One round with the hub (see the module docs). `attestor` puts a pulled policy bundle in
/// force.
pub async fn round(
    sync: &SiteSync,
    client: &mut HubClient,
    attestor: &Attestor,
    tried: &AtomicU64,
) -> Result<RoundSummary, SyncError> {
    let now = attestor.clock().now();
    let origin = sync.origin().to_owned();
    let mut calls = client.client.clone();
    let request = v1::SyncStatusRequest {
        origin: origin.clone(),
    };
    let status = client.call("Status", calls.status(request)).await?;
    let held_list = sync.held_revocation_sequence(None, now).await?;
    let request = v1::PullRequest {
        origin,
        policy_sequence: attestor.policy_in_force().0,
        revocation_sequence: held_list,
    };
    let pull = client.call("Pull", calls.pull(request)).await?;
    let mut summary = RoundSummary::default();
    // What comes down never holds up what goes up: a refused list or bundle is recorded and
    // the log is pushed all the same.
    match sync.apply_pull(&pull, now).await {
        Ok(applied) => summary.applied = applied,
        Err(e) => {
            sync.record("refused-from-hub", e.to_string(), now).await;
        }
    }
    summary.policy = put_policy_in_force(sync, attestor, tried).await;
    match attestor
        .site_ca()
        .accept_announced_roots(attestor.log(), &pull.cross_signed_roots, now)
        .await
    {
        Ok(added) => summary.roots_announced = added,
        Err(e) => sync.record("refused-from-hub", e.to_string(), now).await,
    }
    rotate(sync, client, attestor, now, &mut summary).await?;
    let witness = if pull.witness_chain_pem.is_empty() {
        None
    } else {
        sync.witness_key(&pull.witness_chain_pem).ok()
    };
    push(sync, client, &status, witness, now, &mut summary).await?;
    Ok(summary)
}

/// The site CA's part of a round: the schedule's work ([`crate::site_ca::SiteCa::tick`]:
/// a successor prepared when due, its key generated here), then the successor's CSR sent
/// until the hub certifies it, the certificate installed, and activated when due (at once if
/// the CA in force has expired). A refusal by the hub (its own CA expiring, say)
/// is recorded and retried next round; it never holds up the push. A connection failure
/// ends the round like any other call.
async fn rotate(
    sync: &SiteSync,
    client: &mut HubClient,
    attestor: &Attestor,
    now: time::OffsetDateTime,
    summary: &mut RoundSummary,
) -> Result<(), SyncError> {
    let ca = attestor.site_ca();
    let log = attestor.log();
    let rng = SystemRandom::new();
    let before = ca.state().epoch;
    ca.tick(log, now).await;
    if let Some(csr) = ca.pending_request() {
        let request = v1::IntermediateRequest {
            origin: sync.origin().to_owned(),
            csr,
            lifetime_seconds: ca
                .requested_lifetime()
                .whole_seconds()
                .max(0)
                .unsigned_abs(),
        };
        let mut calls = client.client.clone();
        let answer = client
            .call("RequestIntermediate", calls.request_intermediate(request))
            .await;
        match answer {
            Ok(response) => match ca.install(log, response.chain, now, &rng).await {
                Ok(true) => summary.ca.push("certified"),
                Ok(false) => {}
                Err(e) => {
                    sync.record("intermediate-refused", e.to_string(), now)
                        .await
                }
            },
            Err(SyncError::Hub { code, message }) if code != tonic::Code::Unavailable => {
                sync.record("intermediate-refused", message, now).await;
            }
            Err(e) => return Err(e),
        }
    }
    ca.tick(log, now).await;
    if ca.state().epoch != before {
        summary.ca.push("activated");
    }
    Ok(())
}

async fn push(
    sync: &SiteSync,
    client: &mut HubClient,
    status: &v1::SyncStatus,
    witness: Option<[u8; 32]>,
    now: time::OffsetDateTime,
    summary: &mut RoundSummary,
) -> Result<(), SyncError> {
    let (checkpoint, chain) = sync.checkpoint(now).await?;
    let mut held = status.held_size;
    summary.held_size = held;
    // The site's own record of the hub's cosignature, not the hub's word: a cosignature the
    // site never received (it was killed before keeping it) is asked for again.
    if held >= checkpoint.size && sync.cosigned_size().await? >= checkpoint.size {
        return Ok(());
    }
    loop {
        // Each batch starts where the hub stands and proves the checkpoint from there.
        let start = held.min(checkpoint.size);
        let batch = sync
            .batch(
                start,
                &checkpoint,
                &chain,
                start,
                EvidenceFilter::Hub(client),
            )
            .await?;
        let mut calls = client.client.clone();
        let result = client.call("PushLog", calls.push_log(batch)).await?;
        summary.batches += 1;
        if result.held_size <= held && result.held_size < checkpoint.size {
            return Err(SyncError::Refused(format!(
                "the hub holds {} records after a batch from {start}: no progress",
                result.held_size
            )));
        }
        held = result.held_size;
        summary.held_size = held;
        if !result.cosigned_checkpoint.is_empty() {
            let key = witness.ok_or_else(|| {
                SyncError::Refused("a cosignature without the hub's witness key".to_owned())
            })?;
            summary.cosigned_size = sync
                .keep_cosignature(&result.cosigned_checkpoint, &key, now)
                .await?;
        }
        if held >= checkpoint.size {
            return Ok(());
        }
    }
}

/// If the database keeps a policy bundle newer than the one in force (pulled now, or
/// imported from a file), puts it in force through the attestor's reload: verified like a
/// local bundle, refused (and recorded) if it rolls back. Each kept bundle is tried once per
/// process (`tried` holds the last sequence tried), so a bad one is recorded once, not at
/// every round.
pub async fn put_policy_in_force(
    sync: &SiteSync,
    attestor: &Attestor,
    tried: &AtomicU64,
) -> Option<String> {
    let (in_force, _) = attestor.policy_in_force();
    let kept = match sync.log().latest_policy_bundle().await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::error!(error = %e, "reading kept policy bundles failed");
            return None;
        }
    };
    let (sequence, _, bundle) = kept.filter(|(sequence, _, _)| {
        *sequence > in_force && *sequence > tried.load(Ordering::Relaxed)
    })?;
    tried.store(sequence, Ordering::Relaxed);
    let outcome = attestor.reload_policy(&bundle).await;
    let line = match outcome {
        Ok(line) => {
            tracing::info!("{line}");
            line
        }
        Err(line) => {
            tracing::error!(sequence, "{line}");
            line
        }
    };
    Some(line)
}

/// Runs rounds until the returned handle is aborted (see the module docs).
pub fn spawn(
    sync: SiteSync,
    attestor: Arc<Attestor>,
    link: HubLink,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let rng = SystemRandom::new();
        let tried = AtomicU64::new(0);
        let interval = seconds(link.sync_interval);
        let max_backoff = seconds(link.max_backoff).max(interval);
        let mut failures = 0u32;
        loop {
            let limit = seconds(link.timeout);
            // Each call (the connection's first included) is given up after `timeout`: a
            // black-holed hub costs one timeout, and a large backlog moves batch by batch.
            let ca = attestor.site_ca().active();
            let announced = attestor.site_ca().state().announced_roots.clone();
            let connected =
                HubClient::connect_with(&link.address, &ca, &announced, attestor.clock());
            let outcome = match connected {
                Ok(client) => {
                    round(&sync, &mut client.with_timeout(limit), &attestor, &tried).await
                }
                Err(e) => Err(e),
            };
            let now = attestor.clock().now();
            let wait = match outcome {
                Ok(summary) => {
                    if failures > 0 {
                        tracing::info!(after_failures = failures, "hub reachable again");
                    }
                    failures = 0;
                    attestor.metrics().synced(std::time::SystemTime::from(now));
                    // The link's state for `garrison attestor status`: one row, updated.
                    sync.note(crate::status::LINK_UP, format!("{summary:?}"), now)
                        .await;
                    tracing::debug!(?summary, "sync round done");
                    interval
                }
                Err(SyncError::Busy { retry_after }) => {
                    // The hub answers but sheds: wait its hint, jittered up to twice it, so
                    // sites shed together spread out. Not a failure of the link.
                    let wait = retry_after + retry_after.mul_f64(jitter(&rng));
                    tracing::info!(
                        retry_in_ms = wait.as_millis(),
                        "the hub is busy; pushing the rest later"
                    );
                    wait
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    attestor.metrics().link_down();
                    if failures == 1 {
                        // The first failure after a good round marks when the link went down.
                        sync.note(crate::status::LINK_DOWN, e.to_string(), now)
                            .await;
                    }
                    let wait = backoff(interval, max_backoff, failures, jitter(&rng));
                    tracing::warn!(error = %e, failures, retry_in_s = wait.as_secs(), "sync with the hub failed");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

/// Without a hub link: every `interval`, puts in force a policy bundle imported from a file
/// (see [`put_policy_in_force`]).
pub fn spawn_policy_pickup(
    sync: SiteSync,
    attestor: Arc<Attestor>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tried = AtomicU64::new(0);
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            put_policy_in_force(&sync, &attestor, &tried).await;
        }
    })
}

fn seconds(d: time::Duration) -> Duration {
    Duration::from_secs(d.whole_seconds().max(1).unsigned_abs())
}

/// `interval × 2^(failures-1)`, at most `max`, jittered over its upper half by `jitter`
/// (0 to 1), so that sites cut off together do not come back in step.
pub fn backoff(interval: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let base = interval.saturating_mul(1u32 << exponent).min(max);
    base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A fraction from 0 to 1. A failed random draw gives 1 (the longest wait, no jitter),
/// never a zero wait.
fn jitter(rng: &dyn SecureRandom) -> f64 {
    let mut bytes = [0u8; 2];
    match rng.fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_be_bytes(bytes)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_the_upper_half() {
        let interval = Duration::from_secs(30);
        let max = Duration::from_secs(600);
        let top = |failures| backoff(interval, max, failures, 1.0);
        let bottom = |failures| backoff(interval, max, failures, 0.0);
        assert_eq!(top(1), Duration::from_secs(30));
        assert_eq!(bottom(1), Duration::from_secs(15));
        assert_eq!(top(2), Duration::from_secs(60));
        assert_eq!(top(5), Duration::from_secs(480));
        assert_eq!(top(6), Duration::from_secs(600), "capped");
        assert_eq!(top(1000), Duration::from_secs(600), "no overflow");
        assert_eq!(bottom(1000), Duration::from_secs(300));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod busy_tests {
    use super::*;

    #[test]
    fn a_shed_push_is_busy_with_the_hubs_hint_and_other_refusals_are_not() {
        let mut status = tonic::Status::resource_exhausted("busy");
        status.metadata_mut().insert(
            crate::RETRY_AFTER_METADATA_KEY,
            tonic::metadata::MetadataValue::from(2000u64),
        );
        assert!(matches!(
            SyncError::from(status),
            SyncError::Busy { retry_after } if retry_after == Duration::from_secs(2)
        ));
        let mut absurd = tonic::Status::resource_exhausted("busy");
        absurd.metadata_mut().insert(
            crate::RETRY_AFTER_METADATA_KEY,
            tonic::metadata::MetadataValue::from(u64::MAX),
        );
        assert!(matches!(
            SyncError::from(absurd),
            SyncError::Busy { retry_after } if retry_after == Duration::from_secs(600)
        ));
        let refused = tonic::Status::invalid_argument("bad-proof: ...");
        assert!(matches!(SyncError::from(refused), SyncError::Hub { .. }));
        let no_hint = tonic::Status::resource_exhausted("busy");
        assert!(matches!(SyncError::from(no_hint), SyncError::Hub { .. }));
    }
}
