//! The attestor's Audit service as a [`LogSource`]: what `garrison audit --attestor` reads.

use std::collections::HashMap;

use garrison_audit::{AuditError, LogSource};
use garrison_log::{
    Decision, Record, RecordKind, StoredCheckpoint, StoredCosignature, StoredRecord,
};
use garrison_proto::v1;
use garrison_proto::v1::audit_client::AuditClient;
use time::OffsetDateTime;
use tonic::transport::Channel;

/// A connected Audit client and the origin the attestor reports.
pub struct RemoteLog {
    client: AuditClient<Channel>,
    origin: String,
    /// The checkpoints and cosignatures as first read (see `served`); boxed, so that a
    /// client stays about the size of a database handle.
    served: Box<tokio::sync::OnceCell<Served>>,
}

/// What the service served of the log's checkpoints, read once per client.
struct Served {
    checkpoints: Vec<v1::SignedCheckpoint>,
    /// Cosignatures with no checkpoint of their size (`LogInfo`): each is a problem the
    /// cosignature check reports.
    unattached: Vec<v1::UnattachedCosignature>,
}

/// Checkpoints a log may gain while a client pages through them.
const CHECKPOINT_SLACK: u64 = 4_096;

impl RemoteLog {
    /// Connects to `address` (`https://host:port`), authenticating the attestor as
    /// `attestor_id` under `bundle_pem` and presenting the auditor's SVID.
    pub async fn connect(
        address: &str,
        attestor_id: &str,
        bundle_pem: &[u8],
        identity: garrison_spiffe_tls::Identity,
    ) -> anyhow::Result<Self> {
        let expected = garrison_ca::SpiffeId::parse(attestor_id)?;
        let config = garrison_spiffe_tls::client_config(bundle_pem, expected, Some(identity))?;
        let channel = garrison_spiffe_tls::connect(address, config)?;
        let mut client = AuditClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
        let info = client
            .log_info(v1::LogInfoRequest::default())
            .await
            .map_err(|s| anyhow::anyhow!("Audit service: {}: {}", s.code(), s.message()))?
            .into_inner();
        Ok(RemoteLog {
            client,
            origin: info.origin,
            served: Box::default(),
        })
    }

    /// The client, for calls that are not part of [`LogSource`].
    pub fn client(&self) -> AuditClient<Channel> {
        self.client.clone()
    }
}

fn remote(status: tonic::Status) -> AuditError {
    AuditError::Remote(format!("{}: {}", status.code(), status.message()))
}

fn time(us: i64) -> Result<OffsetDateTime, AuditError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| AuditError::Remote(format!("time {us} out of range")))
}

/// A record as the service sent it (parsed, not trusted: `verify` recomputes its leaf).
pub fn stored_record(r: v1::AuditRecord) -> Result<StoredRecord, AuditError> {
    let bad = |what: &str| AuditError::Remote(format!("record #{}: bad {what}", r.sequence));
    Ok(StoredRecord {
        sequence: r.sequence,
        leaf_hash: <[u8; 32]>::try_from(r.leaf_hash.as_slice()).map_err(|_| bad("leaf hash"))?,
        record: Record {
            time: time(r.time_us)?,
            site: r.site.clone(),
            kind: r.kind.parse::<RecordKind>().map_err(|_| bad("kind"))?,
            node_id: r.node_id.clone(),
            spiffe_id: r.spiffe_id.clone(),
            decision: r
                .decision
                .parse::<Decision>()
                .map_err(|_| bad("decision"))?,
            reasons: r.reasons.clone(),
            policy_digest: r.policy_digest.clone(),
            evidence_digest: r.evidence_digest.clone(),
            cert_serial: r.cert_serial.clone(),
            cert_not_after: r.cert_not_after_us.map(time).transpose()?,
        },
    })
}

/// Digests per `GetEvidenceBatch` call (the service's limit).
const EVIDENCE_BATCH: usize = 100;

impl RemoteLog {
    /// One `GetEvidence` per digest: for attestors older than `GetEvidenceBatch`.
    async fn evidence_one_by_one(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, AuditError> {
        let mut found = HashMap::with_capacity(digests.len());
        for digest in digests {
            if let Some(bytes) = self.evidence(digest).await? {
                found.insert(digest.clone(), bytes);
            }
        }
        Ok(found)
    }
}

impl RemoteLog {
    async fn info(&self) -> Result<v1::LogInfoResponse, AuditError> {
        self.info_with(false).await
    }

    /// `LogInfo`, with the cosignatures that lost their checkpoint if `unattached`.
    async fn info_with(&self, unattached: bool) -> Result<v1::LogInfoResponse, AuditError> {
        let info = self
            .client
            .clone()
            .log_info(v1::LogInfoRequest {
                unattached_cosignatures: unattached,
            })
            .await
            .map_err(remote)?;
        Ok(info.into_inner())
    }

    /// Every checkpoint the service serves, with its cosignatures (and those it says have
    /// no checkpoint), read once per client: `verify` checks the checkpoints against the
    /// records and the cosignature check reads the same notes, so a service cannot show one
    /// tree to the first and the tree the hub cosigned to the second. None is dropped,
    /// whatever size it states (`verify` reports a checkpoint beyond the records). A log of
    /// `size` records has at most `size + 1` checkpoints: a service serving more than that
    /// (and some slack for a log growing meanwhile) is refused rather than read without end.
    async fn served(&self) -> Result<&Served, AuditError> {
        self.served
            .get_or_try_init(|| async {
                let info = self.info_with(true).await?;
                let size = info.size;
                let most = size.saturating_add(1 + CHECKPOINT_SLACK);
                let mut all = Vec::new();
                let mut after_size = None;
                loop {
                    let page = self.checkpoint_page(after_size).await?;
                    for c in page.checkpoints {
                        after_size = Some(c.size);
                        all.push(c);
                    }
                    if all.len() as u64 > most {
                        return Err(AuditError::Remote(format!(
                            "more than {most} checkpoints served for a log of {size} records"
                        )));
                    }
                    if !page.more {
                        return Ok(Served {
                            checkpoints: all,
                            unattached: info.unattached_cosignatures,
                        });
                    }
                }
            })
            .await
    }

    /// One page of checkpoints after `after_size`. A page that does not go forward is
    /// refused, so a misbehaving service cannot keep the client asking.
    async fn checkpoint_page(
        &self,
        after_size: Option<u64>,
    ) -> Result<v1::CheckpointsResponse, AuditError> {
        let page = self
            .client
            .clone()
            .checkpoints(v1::CheckpointsRequest {
                after_size,
                limit: 0,
            })
            .await
            .map_err(remote)?
            .into_inner();
        let mut previous = after_size;
        for c in &page.checkpoints {
            if previous.is_some_and(|p| c.size <= p) {
                return Err(AuditError::Remote(format!(
                    "checkpoint of size {} served after size {}",
                    c.size,
                    previous.unwrap_or_default()
                )));
            }
            previous = Some(c.size);
        }
        if page.more && page.checkpoints.is_empty() {
            return Err(AuditError::Remote(
                "an empty page of checkpoints said there were more".into(),
            ));
        }
        Ok(page)
    }
}

impl LogSource for RemoteLog {
    fn origin(&self) -> Option<String> {
        (!self.origin.is_empty()).then(|| self.origin.clone())
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        let response = self
            .client
            .clone()
            .query_records(v1::QueryRecordsRequest {
                after_sequence: after,
                limit,
                ..Default::default()
            })
            .await
            .map_err(remote)?
            .into_inner();
        response.records.into_iter().map(stored_record).collect()
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, AuditError> {
        let response = self
            .client
            .clone()
            .get_evidence(v1::GetEvidenceRequest {
                digest: digest.to_owned(),
            })
            .await
            .map_err(remote)?
            .into_inner();
        Ok(response.found.then_some(response.bytes))
    }

    /// `GetEvidenceBatch` calls of up to 100 digests, one after another (an auditor's calls
    /// in parallel would compete with the attestor's own work for its database), asking
    /// again for what an answer deferred. An attestor without that call (`UNIMPLEMENTED`)
    /// is asked one `GetEvidence` per digest instead.
    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, AuditError> {
        let mut found = HashMap::with_capacity(digests.len());
        let distinct: Vec<String> = digests
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        for chunk in distinct.chunks(EVIDENCE_BATCH) {
            let mut ask = chunk.to_vec();
            while !ask.is_empty() {
                let answer = match self
                    .client
                    .clone()
                    .get_evidence_batch(v1::GetEvidenceBatchRequest {
                        digests: ask.clone(),
                    })
                    .await
                {
                    Ok(answer) => answer.into_inner(),
                    Err(status) if status.code() == tonic::Code::Unimplemented => {
                        return self.evidence_one_by_one(&distinct).await;
                    }
                    Err(status) => return Err(remote(status)),
                };
                // Each round must settle at least one digest, and defer only what was asked.
                if answer.deferred.len() >= ask.len()
                    || !answer.deferred.iter().all(|d| ask.contains(d))
                {
                    return Err(AuditError::Remote(
                        "GetEvidenceBatch deferred everything, or what was not asked".into(),
                    ));
                }
                for blob in answer.found {
                    if !ask.contains(&blob.digest) {
                        return Err(AuditError::Remote(format!(
                            "GetEvidenceBatch answered {:?}, which was not asked",
                            blob.digest
                        )));
                    }
                    found.insert(blob.digest, blob.bytes);
                }
                ask = answer.deferred;
            }
        }
        Ok(found)
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        self.served()
            .await?
            .checkpoints
            .iter()
            .map(|c| {
                Ok(StoredCheckpoint {
                    size: c.size,
                    root_hash: <[u8; 32]>::try_from(c.root_hash.as_slice()).map_err(|_| {
                        AuditError::Remote("checkpoint root is not 32 bytes".into())
                    })?,
                    signed: time(c.signed_us)?,
                    note: c.note.clone(),
                })
            })
            .collect()
    }

    async fn log_key_certificates(&self) -> Result<Vec<String>, AuditError> {
        Ok(self.info().await?.log_key_certificates)
    }

    async fn stated_size(&self) -> Result<Option<u64>, AuditError> {
        Ok(Some(self.info().await?.size))
    }

    async fn cosignatures(&self) -> Result<Vec<StoredCosignature>, AuditError> {
        let served = self.served().await?;
        let attached = served
            .checkpoints
            .iter()
            .flat_map(|c| c.cosignatures.iter().map(move |k| (c.size, Some(k))));
        let unattached = served
            .unattached
            .iter()
            .map(|u| (u.size, u.cosignature.as_ref()));
        let mut all = Vec::new();
        for (size, k) in attached.chain(unattached) {
            let k = k.ok_or_else(|| {
                AuditError::Remote(format!("a cosignature of size {size} without its line"))
            })?;
            all.push(StoredCosignature {
                size,
                witness: k.witness.clone(),
                line: k.line.clone(),
                cosigned: time(k.cosigned_us)?,
            });
        }
        Ok(all)
    }

    async fn witness_certificates(&self) -> Result<Vec<String>, AuditError> {
        Ok(self.info().await?.witness_certificates)
    }

    /// Not served: the service serves proofs made from the stored hashes, and the auditor
    /// checks those against the signed checkpoints.
    async fn stored_tree_hashes(
        &self,
        _first: u64,
        _end: u64,
    ) -> Result<Option<garrison_audit::StoredTreeHashes>, AuditError> {
        Ok(None)
    }

    /// Not served: the attestor's operational state is checked on its database.
    async fn enforced_revocations(
        &self,
    ) -> Result<Option<garrison_audit::EnforcedRevocations>, AuditError> {
        Ok(None)
    }

    /// Not served either.
    async fn node_states(
        &self,
        _after: Option<&str>,
        _limit: u32,
    ) -> Result<Option<Vec<garrison_log::KeptNodeState>>, AuditError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! A service that shows a different log to each call: the client reads the checkpoints
    //! (and the cosignatures carried with them) once per command, so that `verify` and the
    //! cosignature check judge the same notes.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use garrison_proto::v1::audit_server::{Audit, AuditServer};
    use tonic::{Request, Response, Status};

    use super::*;

    /// Serves, on its n-th `Checkpoints` call, a checkpoint whose note and cosignature say
    /// "view n", and counts the calls.
    #[derive(Clone, Default)]
    struct SplitView {
        checkpoint_calls: Arc<AtomicU64>,
        info_calls: Arc<AtomicU64>,
    }

    fn unused<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }

    #[tonic::async_trait]
    impl Audit for SplitView {
        async fn query_records(
            &self,
            _: Request<v1::QueryRecordsRequest>,
        ) -> Result<Response<v1::QueryRecordsResponse>, Status> {
            unused()
        }
        async fn get_evidence(
            &self,
            _: Request<v1::GetEvidenceRequest>,
        ) -> Result<Response<v1::GetEvidenceResponse>, Status> {
            unused()
        }
        async fn get_evidence_batch(
            &self,
            _: Request<v1::GetEvidenceBatchRequest>,
        ) -> Result<Response<v1::GetEvidenceBatchResponse>, Status> {
            unused()
        }
        async fn log_info(
            &self,
            request: Request<v1::LogInfoRequest>,
        ) -> Result<Response<v1::LogInfoResponse>, Status> {
            let n = self.info_calls.fetch_add(1, Ordering::SeqCst) + 1;
            let unattached = if request.get_ref().unattached_cosignatures {
                vec![v1::UnattachedCosignature {
                    size: 1000 + n,
                    cosignature: Some(v1::Cosignature {
                        witness: "hub".into(),
                        line: format!("unattached, view {n}"),
                        cosigned_us: 0,
                    }),
                }]
            } else {
                Vec::new()
            };
            Ok(Response::new(v1::LogInfoResponse {
                origin: "garrison.example.org/site/a".into(),
                size: 10,
                unattached_cosignatures: unattached,
                ..Default::default()
            }))
        }
        async fn checkpoints(
            &self,
            _: Request<v1::CheckpointsRequest>,
        ) -> Result<Response<v1::CheckpointsResponse>, Status> {
            let n = self.checkpoint_calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Response::new(v1::CheckpointsResponse {
                checkpoints: vec![v1::SignedCheckpoint {
                    size: n,
                    root_hash: vec![0; 32],
                    signed_us: 0,
                    note: format!("view {n}"),
                    cosignatures: vec![v1::Cosignature {
                        witness: "hub".into(),
                        line: format!("cosigned, view {n}"),
                        cosigned_us: 0,
                    }],
                }],
                more: false,
            }))
        }
        async fn inclusion_proof(
            &self,
            _: Request<v1::InclusionProofRequest>,
        ) -> Result<Response<v1::InclusionProofResponse>, Status> {
            unused()
        }
        async fn consistency_proof(
            &self,
            _: Request<v1::ConsistencyProofRequest>,
        ) -> Result<Response<v1::ConsistencyProofResponse>, Status> {
            unused()
        }
        async fn get_attestation_result(
            &self,
            _: Request<v1::AttestationResultRequest>,
        ) -> Result<Response<v1::AttestationResultResponse>, Status> {
            unused()
        }
    }

    #[tokio::test]
    async fn a_service_showing_each_call_another_log_is_read_once() {
        let service = SplitView::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AuditServer::new(service.clone()))
                .serve_with_incoming(incoming),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let log = RemoteLog {
            client: AuditClient::new(channel),
            origin: "garrison.example.org/site/a".into(),
            served: Box::default(),
        };
        // What `garrison audit verify` reads (the checkpoints, for the records), then what
        // the cosignature check reads (the cosignatures and the checkpoints again).
        let for_verify = log.checkpoints().await.unwrap();
        let cosignatures = log.cosignatures().await.unwrap();
        let for_cosignatures = log.checkpoints().await.unwrap();
        assert_eq!(for_verify, for_cosignatures, "one view for both checks");
        assert_eq!(for_verify.len(), 1);
        assert_eq!(for_verify[0].note, "view 1");
        let lines: Vec<&str> = cosignatures.iter().map(|k| k.line.as_str()).collect();
        assert_eq!(
            lines,
            ["cosigned, view 1", "unattached, view 1"],
            "the cosignatures of the same view, unattached ones from the same LogInfo"
        );
        assert_eq!(service.checkpoint_calls.load(Ordering::SeqCst), 1);
        assert_eq!(service.info_calls.load(Ordering::SeqCst), 1);
        server.abort();
    }
}
