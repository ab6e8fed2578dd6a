//! `garrison attestor status`: what an operator at a site needs to know about its autonomy,
//! read from the CA directory and the database (the attestor need not be running): the hub
//! link, the site CA and the time until the site fails closed, the rotation in progress, the
//! policy in force and the revocation list held.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::SiteConfig;
use crate::site_ca::{SiteCa, human};

/// Sync events that record the hub link's state on the site (`sync_client::spawn`).
pub const LINK_UP: &str = "link-up";
/// See [`LINK_UP`]: the first failed round after a good one.
pub const LINK_DOWN: &str = "link-down";

/// The site's state, as `garrison attestor status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteStatus {
    /// The site.
    pub site: String,
    /// The hub's address, if the site syncs over the network.
    pub hub: Option<String>,
    /// The last good round with the hub.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync: Option<OffsetDateTime>,
    /// Since when rounds fail (none: connected, or never tried).
    #[serde(with = "time::serde::rfc3339::option")]
    pub disconnected_since: Option<OffsetDateTime>,
    /// The generation of the site CA in force (`gen-0`: as provisioned).
    pub ca_generation: String,
    /// Its notAfter: the site fails closed then, unless a new intermediate arrives.
    #[serde(with = "time::serde::rfc3339")]
    pub ca_expires: OffsetDateTime,
    /// Seconds until the site fails closed (0: it has, and refuses with `ca-unavailable`).
    pub offline_budget_seconds: i64,
    /// The rotation in progress: none, `requested` or `certified`.
    pub pending_rotation: Option<String>,
    /// When a certified successor is put in force (a sixth of the current CA's life left).
    #[serde(with = "time::serde::rfc3339::option")]
    pub activates_at: Option<OffsetDateTime>,
    /// Old CAs still trusted for renewal, with their notAfter.
    pub old_cas: Vec<String>,
    /// The policy bundle in force: (sequence, manifest digest).
    pub policy: Option<(u64, String)>,
    /// The sequence of the newest revocation list held (0: none).
    pub revocation_list: u64,
    /// Records in the log.
    pub records: u64,
    /// The largest checkpoint the hub cosigned.
    pub cosigned_size: u64,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The CA directory.
    #[error(transparent)]
    Ca(#[from] crate::site_ca::SiteCaError),
    /// The database.
    #[error("the attestation log")]
    Log(#[from] garrison_log::LogError),
    /// The policy floor.
    #[error("the policy in force")]
    Policy(#[from] crate::policy_update::PolicyFloorError),
}

impl SiteStatus {
    /// Reads the status of the site `config` describes, at `now`. The database is opened
    /// read-only.
    pub async fn read(config: &SiteConfig, now: OffsetDateTime) -> Result<Self, StatusError> {
        let ca = SiteCa::open(&config.ca_dir, &config.site, config.max_svid_ttl)?;
        let state = ca.state();
        let origin =
            garrison_transparency::site_origin(state.active.trust_domain().as_str(), &config.site);
        let log =
            garrison_log::AttestationLog::open_read_only(&config.database, Some(&origin)).await?;
        let events = log.sync_events().await?;
        let last = |kind: &str| events.iter().find(|e| e.kind == kind).map(|e| e.last);
        let (up, down) = (last(LINK_UP), last(LINK_DOWN));
        let disconnected_since = match (up, down) {
            (Some(up), Some(down)) if down > up => Some(down),
            (None, Some(down)) => Some(down),
            _ => None,
        };
        let (pending_rotation, activates_at) = match &state.prepared {
            None => (None, None),
            Some(p) if p.certified.is_none() => (Some(format!("{}: requested", p.name)), None),
            Some(p) => (
                Some(format!("{}: certified", p.name)),
                Some(state.active.validity().activate_at()),
            ),
        };
        let policy = crate::policy_update::PolicyFloor::read(&log)
            .await?
            .map(|floor| (floor.bundle.sequence, floor.bundle.digest));
        let status = SiteStatus {
            site: config.site.clone(),
            hub: config.hub.as_ref().map(|h| h.address.clone()),
            last_sync: up,
            disconnected_since,
            ca_generation: state.active_name.clone(),
            ca_expires: state.active.not_after(),
            offline_budget_seconds: state.offline_budget(now).whole_seconds(),
            pending_rotation,
            activates_at,
            old_cas: state
                .old
                .iter()
                .filter(|o| o.validity.not_after >= now)
                .map(|o| format!("trusted until {}", o.validity.not_after))
                .collect(),
            policy,
            revocation_list: log.latest_revocation_list().await?.map_or(0, |(s, _)| s),
            records: log.tree_size().await?,
            cosigned_size: log
                .latest_cosignature(&garrison_transparency::hub_witness_name(
                    state.active.trust_domain().as_str(),
                ))
                .await?
                .map_or(0, |c| c.size),
        };
        log.close().await;
        Ok(status)
    }

    /// The operator's view, one fact per line.
    pub fn to_text(&self, now: OffsetDateTime) -> String {
        let ago = |t: OffsetDateTime| format!("{t} ({} ago)", human(now - t));
        let link = match (&self.hub, self.last_sync, self.disconnected_since) {
            (None, _, _) => "none configured (sync by files)".to_owned(),
            (Some(hub), _, Some(since)) => format!("{hub}: NOT CONNECTED since {}", ago(since)),
            (Some(hub), Some(_), None) => format!("{hub}: connected"),
            (Some(hub), None, None) => format!("{hub}: no round yet"),
        };
        let budget = if self.offline_budget_seconds <= 0 {
            "EXHAUSTED: the site CA has expired; issuing is refused (ca-unavailable) until a \
             new intermediate arrives"
                .to_owned()
        } else {
            format!(
                "{} (fails closed at {})",
                human(time::Duration::seconds(self.offline_budget_seconds)),
                self.ca_expires
            )
        };
        let rotation = match (&self.pending_rotation, self.activates_at) {
            (None, _) => "none pending".to_owned(),
            (Some(p), Some(at)) => format!("{p}, activates at {at}"),
            (Some(p), None) => format!("{p} (waiting for the hub)"),
        };
        let mut lines = vec![
            format!("site:            {}", self.site),
            format!("hub:             {link}"),
            format!(
                "last sync:       {}",
                self.last_sync.map_or_else(|| "never".to_owned(), ago)
            ),
            format!(
                "site CA:         {} expires {}",
                self.ca_generation, self.ca_expires
            ),
            format!("offline budget:  {budget}"),
            format!("rotation:        {rotation}"),
        ];
        for old in &self.old_cas {
            lines.push(format!("old CA:          {old}"));
        }
        lines.push(format!(
            "policy:          {}",
            self.policy.as_ref().map_or_else(
                || "none recorded".to_owned(),
                |(s, d)| format!("sequence {s}, digest {d}")
            )
        ));
        lines.push(format!("revocations:     list {}", self.revocation_list));
        lines.push(format!(
            "log:             {} records, {} cosigned by the hub",
            self.records, self.cosigned_size
        ));
        lines.join("\n") + "\n"
    }
}
