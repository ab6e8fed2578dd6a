//! The `Sync` gRPC service: who may call (a site attestor, for its own log only) and the one
//! mapping of hub errors to gRPC statuses.
//!
//! The caller's client certificate must chain to the trust domain's root, pass the
//! containment rule (a site's identity is issued by that site's CA under hub CAs only), and
//! be `spiffe://<td>/site/<site>/attestor`; the caller then speaks for the log
//! `garrison.<td>/site/<site>` and no other. Anyone else is refused with
//! `PERMISSION_DENIED` before anything is read.

use std::sync::Arc;

use garrison_attestor::Clock;
use garrison_attestor::tls::PeerCheck;
use garrison_proto::limits::SYNC_MAX_DIGESTS;
use garrison_proto::v1;
use garrison_proto::v1::sync_server::Sync;
use garrison_transparency::site_origin;
use tonic::{Request, Response, Status};

use crate::{Hub, HubError};

/// The Sync service over one hub.
#[derive(Clone)]
pub struct SyncService {
    hub: Arc<Hub>,
    peers: PeerCheck,
    clock: Arc<dyn Clock>,
    rejoin_window: Option<time::Duration>,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService").finish_non_exhaustive()
    }
}

impl SyncService {
    /// Serves `hub`, admitting site attestors whose SVIDs chain to `roots` (DER).
    pub fn new(hub: Arc<Hub>, roots: &[Vec<u8>], clock: Arc<dyn Clock>) -> Result<Self, String> {
        Ok(SyncService {
            hub,
            peers: PeerCheck::new(roots, Arc::clone(&clock))?,
            clock,
            rejoin_window: None,
        })
    }

    /// Also admit a site attestor whose credential expired at most `window` ago (see
    /// `HubConfig::rejoin_window`); `None`: never.
    pub fn with_rejoin_window(mut self, window: Option<time::Duration>) -> Self {
        self.rejoin_window = window;
        self
    }

    /// The checked caller: valid now, or, within the rejoin window, valid at its
    /// certificate's last second (with when its site CA expired).
    fn caller_identity<T>(&self, request: &Request<T>) -> Result<Caller, String> {
        let chain: Vec<Vec<u8>> = request
            .peer_certs()
            .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| "no client certificate".to_owned())?;
        let now = self.clock.now();
        let error = match self.peers.identity_and_issuer_at(leaf, intermediates, now) {
            Ok((id, issuer)) => {
                return Ok(Caller {
                    id,
                    issuer,
                    expired: None,
                });
            }
            Err(error) => error,
        };
        let window = self.rejoin_window.ok_or_else(|| error.clone())?;
        let above: Vec<&[u8]> = intermediates.iter().map(Vec::as_slice).collect();
        let at = garrison_attestor::tls::rejoin_time(leaf, &above, now, window).ok_or(error)?;
        let (id, issuer) = self.peers.identity_and_issuer_at(leaf, intermediates, at)?;
        Ok(Caller {
            id,
            issuer,
            expired: Some(at + time::Duration::seconds(1)),
        })
    }

    /// The log origin the caller speaks for, or the refusal.
    async fn caller_origin<T>(&self, request: &Request<T>) -> Result<String, Status> {
        self.caller_site(request).await.map(|(origin, _)| origin)
    }

    /// The log origin the caller speaks for and its site CA (from the verified path), or the
    /// refusal.
    async fn caller_site<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(String, Option<Vec<u8>>), Status> {
        let td = self.hub.trust_domain();
        let caller = self.caller_identity(request);
        let expired = caller.as_ref().ok().and_then(|c| c.expired);
        let checked = caller.and_then(|caller| {
            let id = &caller.id;
            let site = id
                .path()
                .strip_prefix("/site/")
                .and_then(|rest| rest.strip_suffix("/attestor"))
                .filter(|site| garrison_ca::is_site_name(site));
            match site {
                Some(site) if id.trust_domain_name() == td => {
                    Ok((site_origin(td, site), caller.issuer))
                }
                _ => Err(format!("{id} is not spiffe://{td}/site/<site>/attestor")),
            }
        });
        let (origin, issuer) = checked.map_err(|why| {
            tracing::warn!(why = %why, "Sync call refused");
            Status::permission_denied(format!("not a site attestor of {td}: {why}"))
        })?;
        if let Some(expired) = expired {
            self.hub
                .note_rejoin(&origin, expired, self.clock.now())
                .await;
        }
        Ok((origin, issuer))
    }
}

/// A checked caller.
struct Caller {
    id: garrison_ca::SpiffeId,
    /// The leaf's issuer on the verified path (the caller's site CA).
    issuer: Option<Vec<u8>>,
    /// When its site CA expired, for a caller admitted by the rejoin window.
    expired: Option<time::OffsetDateTime>,
}

#[tonic::async_trait]
impl Sync for SyncService {
    async fn status(
        &self,
        request: Request<v1::SyncStatusRequest>,
    ) -> Result<Response<v1::SyncStatus>, Status> {
        let origin = self.caller_origin(&request).await?;
        if request.get_ref().origin != origin {
            return Err(Status::permission_denied(format!(
                "this caller speaks for {origin} only"
            )));
        }
        let status = self.hub.status(&origin).await.map_err(status_of)?;
        Ok(Response::new(status))
    }

    async fn missing_evidence(
        &self,
        request: Request<v1::EvidenceDigests>,
    ) -> Result<Response<v1::EvidenceDigests>, Status> {
        self.caller_origin(&request).await?;
        let digests = &request.get_ref().digests;
        if digests.len() > SYNC_MAX_DIGESTS {
            return Err(Status::invalid_argument(format!(
                "at most {SYNC_MAX_DIGESTS} digests per call"
            )));
        }
        let missing = self
            .hub
            .missing_evidence(digests)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::EvidenceDigests { digests: missing }))
    }

    async fn push_log(
        &self,
        request: Request<v1::LogBatch>,
    ) -> Result<Response<v1::PushResult>, Status> {
        let origin = self.caller_origin(&request).await?;
        let result = self
            .hub
            .push(&origin, request.into_inner())
            .await
            .map_err(status_of)?;
        Ok(Response::new(result))
    }

    async fn pull(
        &self,
        request: Request<v1::PullRequest>,
    ) -> Result<Response<v1::PullResponse>, Status> {
        let origin = self.caller_origin(&request).await?;
        if request.get_ref().origin != origin {
            return Err(Status::permission_denied(format!(
                "this caller speaks for {origin} only"
            )));
        }
        let response = self.hub.pull(request.get_ref()).await.map_err(status_of)?;
        Ok(Response::new(response))
    }

    async fn request_intermediate(
        &self,
        request: Request<v1::IntermediateRequest>,
    ) -> Result<Response<v1::IntermediateResponse>, Status> {
        // The caller's site CA: the one on the path verified, not whatever it sent second.
        let (origin, caller_ca) = self.caller_site(&request).await?;
        let response = self
            .hub
            .certify_site_ca(&origin, request.get_ref(), caller_ca.as_deref())
            .await
            .map_err(status_of)?;
        Ok(Response::new(response))
    }
}

/// The one mapping of hub errors to statuses: a refusal's code leads its message; internal
/// failures say only that the hub cannot answer now (details go to the hub's log).
pub fn status_of(e: HubError) -> Status {
    match e {
        HubError::Refused(refusal) => {
            let message = refusal.to_string();
            match refusal.code {
                "wrong-origin" => Status::permission_denied(message),
                "gap" | "stale" | "hub-ca-expiring" | "too-early" | "successor-exists" => {
                    Status::failed_precondition(message)
                }
                _ => Status::invalid_argument(message),
            }
        }
        other => {
            // The error and its causes on one line, not a Debug dump.
            tracing::error!(error = %garrison_ops::error_chain(&other), "Sync call failed");
            Status::unavailable("the hub cannot answer now; retry later")
        }
    }
}
