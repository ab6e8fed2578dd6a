//! The agent against a small in-test attestor (tonic + TLS, garrison-ca issuing, the pure
//! verifier judging) and a real swtpm: enrollment, renewal over mTLS with the enrolled AK,
//! refusals with reason codes, load shedding, an unreachable attestor, the run loop's
//! renewal and fallback to enrollment, and the CLI.
//!
//! The mock is deliberately minimal (no policy, no log, no EK chain check) — it exists to
//! exercise the agent's side of the protocol until the real attestor's tests take over.
//! Run with `TSS2_LOG=all+none`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use garrison_agent::schedule::{Backoff, Clock, SeededEntropy};
use garrison_agent::{Agent, AgentConfig, AgentError, Disposition};
use garrison_ca::{
    Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole, SpiffeId,
    SubjectKey, SvidParams, TrustDomain, VerifiedCsr,
};
use garrison_evidence::{
    AkPolicy, HashAlg, PcrValues, TpmPublic, check_ak, make_credential, verify_activation,
    verify_quote,
};
use garrison_proto::v1::enrollment_server::{Enrollment, EnrollmentServer};
use garrison_proto::v1::renewal_server::{Renewal, RenewalServer};
use garrison_proto::v1::{
    BeginRenewalRequest, BeginRequest, BeginResponse, Challenge, CompleteRenewalRequest,
    CompleteRequest, PcrSelection, Quote, SvidResponse,
};
use garrison_swtpm::{Swtpm, SwtpmOptions};
use garrison_tpm::{EkSource, KeyAlgorithm as AkAlgorithm};
use ring::rand::{SecureRandom as _, SystemRandom};
use time::OffsetDateTime;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const ATTESTOR_ID: &str = "spiffe://example.org/site/site-a/attestor";
const NODE_ID: &str = "spiffe://example.org/site/site-a/node/test-node";
const PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

// ---------------------------------------------------------------------------------------
// The mock attestor
// ---------------------------------------------------------------------------------------

/// A PKI: root → site intermediate; the attestor's server SVID.
struct Pki {
    root_pem: String,
    /// The root's private key (PKCS#8 PEM), to cross-sign a new root in a test.
    root_key_pem: String,
    root: Authority,
    site: Authority,
    server_chain_pem: String,
    server_key_pem: String,
}

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

impl Pki {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let now = OffsetDateTime::now_utc();
        let root = Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "root".into(),
                ttl: time::Duration::days(2),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap();
        let root_pem = pem(&root.certificate);
        let root_key_pem = root
            .key
            .as_ref()
            .unwrap()
            .to_pkcs8_pem()
            .expose()
            .to_owned();
        let root = Authority::from_issued(root).unwrap();
        let site = root
            .issue_intermediate(
                IntermediateParams {
                    name: "site-a".into(),
                    role: CaRole::Site("site-a".into()),
                    ttl: time::Duration::days(1),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            )
            .unwrap();
        let site = Authority::from_issued(site).unwrap();
        let server = site
            .issue_site_role_svid(
                SiteRole::Attestor,
                time::Duration::hours(1),
                SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                now,
                &rng,
            )
            .unwrap();
        let server_chain_pem = server.chain.iter().map(|der| pem(der)).collect();
        let server_key_pem = server.key.unwrap().to_pkcs8_pem().expose().to_owned();
        Self {
            root_pem,
            root_key_pem,
            root,
            site,
            server_chain_pem,
            server_key_pem,
        }
    }
}

/// One outstanding challenge.
struct Pending {
    nonce: Vec<u8>,
    secret: Option<Vec<u8>>,
    ak_public: Vec<u8>,
}

/// What the mock remembers and what the tests steer.
#[derive(Default)]
struct State {
    pending: HashMap<Vec<u8>, Pending>,
    /// AK public area bound at enrollment.
    bound_ak: Option<Vec<u8>>,
    /// Serial numbers of SVIDs issued (renewal needs one of them).
    issued: HashSet<Vec<u8>>,
    begins: u32,
    enrollments: u32,
    renewals: u32,
    log_sequence: u64,
    /// Refuse the next `n` Begin calls with this status.
    refuse_begin: Option<(u32, Status)>,
    /// Pretend to have forgotten every SVID (renewal → unknown-svid).
    forget_svids: bool,
    /// Asserted facts seen at the last Begin.
    asserted: BTreeMap<String, String>,
    /// Send this as the trust bundle instead of the root.
    trust_bundle: Option<Vec<Vec<u8>>>,
}

#[derive(Clone)]
struct Mock {
    state: Arc<Mutex<State>>,
    pki: Arc<Pki>,
}

fn refusal(code: Code, reason: &str) -> Status {
    let mut status = Status::new(code, format!("refused: {reason}"));
    status
        .metadata_mut()
        .insert("garrison-reason", reason.parse().unwrap());
    status
}

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

impl Mock {
    fn challenge(&self, nonce: Vec<u8>, secret: Option<Vec<u8>>, ak_public: Vec<u8>) -> Challenge {
        let challenge_id = random(16);
        let challenge = Challenge {
            challenge_id: challenge_id.clone(),
            nonce: nonce.clone(),
            pcr_selection: vec![PcrSelection {
                hash_alg: 0x000B,
                pcrs: PCRS.to_vec(),
            }],
            expires_at_unix: 0,
        };
        self.state.lock().unwrap().pending.insert(
            challenge_id,
            Pending {
                nonce,
                secret,
                ak_public,
            },
        );
        challenge
    }

    fn take_pending(&self, id: &[u8]) -> Result<Pending, Status> {
        self.state
            .lock()
            .unwrap()
            .pending
            .remove(id)
            .ok_or_else(|| refusal(Code::FailedPrecondition, "challenge-unknown"))
    }

    fn check_quote(&self, pending: &Pending, quote: Option<&Quote>) -> Result<(), Status> {
        let quote = quote.ok_or_else(|| refusal(Code::InvalidArgument, "malformed-request"))?;
        let ak = check_ak(&pending.ak_public, &AkPolicy::default())
            .map_err(|_| refusal(Code::PermissionDenied, "ak-attributes"))?;
        let values = PcrValues::from_entries(
            quote
                .pcrs
                .iter()
                .map(|v| (HashAlg::Sha256, v.index, v.digest.as_slice())),
        )
        .map_err(|_| refusal(Code::InvalidArgument, "malformed-evidence"))?;
        verify_quote(
            &ak,
            &quote.attest,
            &quote.signature,
            &pending.nonce,
            &values,
        )
        .map_err(|e| refusal(Code::PermissionDenied, e.check()))?;
        Ok(())
    }

    fn issue(&self, csr: &[u8]) -> Result<SvidResponse, Status> {
        let csr = VerifiedCsr::from_der(csr).map_err(|_| refusal(Code::InvalidArgument, "csr"))?;
        let issued = self
            .pki
            .site
            .issue_svid(
                SvidParams {
                    spiffe_id: SpiffeId::parse(NODE_ID).unwrap(),
                    ttl: time::Duration::hours(1),
                    max_ttl: time::Duration::hours(1),
                    subject_key: SubjectKey::Csr(csr),
                },
                OffsetDateTime::now_utc(),
                &SystemRandom::new(),
            )
            .map_err(|_| refusal(Code::Unavailable, "ca-unavailable"))?;
        let mut state = self.state.lock().unwrap();
        state.issued.insert(issued.serial.clone());
        state.log_sequence += 1;
        Ok(SvidResponse {
            certificate_chain: issued.chain,
            trust_bundle: state.trust_bundle.clone().unwrap_or(issued.roots),
            spiffe_id: NODE_ID.to_owned(),
            expires_at_unix: issued.not_after.unix_timestamp().try_into().unwrap(),
            log_sequence: state.log_sequence,
        })
    }

    /// The serial of the client certificate, if it is one we issued and still know.
    fn known_client<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| refusal(Code::Unauthenticated, "client-certificate-required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| refusal(Code::Unauthenticated, "client-certificate-required"))?;
        let (_, cert) = X509Certificate::from_der(leaf).unwrap();
        let serial = cert.raw_serial().to_vec();
        let state = self.state.lock().unwrap();
        if state.forget_svids || !state.issued.contains(&serial) {
            return Err(refusal(Code::Unauthenticated, "unknown-svid"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Enrollment for Mock {
    async fn begin(
        &self,
        request: Request<BeginRequest>,
    ) -> Result<Response<BeginResponse>, Status> {
        let request = request.into_inner();
        {
            let mut state = self.state.lock().unwrap();
            state.begins += 1;
            state.asserted = request.asserted.clone().into_iter().collect();
            if let Some((left, status)) = state.refuse_begin.take() {
                if left > 1 {
                    state.refuse_begin = Some((left - 1, status.clone()));
                }
                return Err(status);
            }
        }
        let ek = TpmPublic::from_tpm2b(&request.ek_public)
            .map_err(|_| refusal(Code::InvalidArgument, "malformed-evidence"))?;
        let ak = check_ak(&request.ak_public, &AkPolicy::default())
            .map_err(|_| refusal(Code::PermissionDenied, "ak-attributes"))?;
        let secret = random(32);
        let credential = make_credential(&ek, ak.name(), &secret, &SystemRandom::new()).unwrap();
        let challenge = self.challenge(random(32), Some(secret), request.ak_public);
        Ok(Response::new(BeginResponse {
            challenge: Some(challenge),
            id_object: credential.id_object_contents().to_vec(),
            encrypted_secret: credential.encrypted_secret_contents().to_vec(),
        }))
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<SvidResponse>, Status> {
        let request = request.into_inner();
        let pending = self.take_pending(&request.challenge_id)?;
        let secret = pending.secret.as_deref().unwrap_or_default();
        verify_activation(secret, &request.activated_secret)
            .map_err(|_| refusal(Code::PermissionDenied, "credential-activation"))?;
        self.check_quote(&pending, request.quote.as_ref())?;
        let response = self.issue(&request.csr)?;
        let mut state = self.state.lock().unwrap();
        state.bound_ak = Some(pending.ak_public);
        state.enrollments += 1;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl Renewal for Mock {
    async fn begin_renewal(
        &self,
        request: Request<BeginRenewalRequest>,
    ) -> Result<Response<Challenge>, Status> {
        self.known_client(&request)?;
        let bound = self
            .state
            .lock()
            .unwrap()
            .bound_ak
            .clone()
            .unwrap_or_default();
        Ok(Response::new(self.challenge(random(32), None, bound)))
    }

    async fn complete_renewal(
        &self,
        request: Request<CompleteRenewalRequest>,
    ) -> Result<Response<SvidResponse>, Status> {
        self.known_client(&request)?;
        let request = request.into_inner();
        let pending = self.take_pending(&request.challenge_id)?;
        if request.ak_public != pending.ak_public {
            return Err(refusal(Code::PermissionDenied, "ak-mismatch"));
        }
        self.check_quote(&pending, request.quote.as_ref())?;
        let response = self.issue(&request.csr)?;
        self.state.lock().unwrap().renewals += 1;
        Ok(Response::new(response))
    }
}

/// A running mock attestor and its own swtpm; dropped with the test.
struct Site {
    mock: Mock,
    address: String,
    swtpm: Swtpm,
    dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Site {
    async fn start() -> Self {
        let pki = Arc::new(Pki::new());
        let mock = Mock {
            state: Arc::default(),
            pki: Arc::clone(&pki),
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &pki.server_chain_pem,
                &pki.server_key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&pki.root_pem))
            .client_auth_optional(true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let router = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(EnrollmentServer::new(mock.clone()))
            .add_service(RenewalServer::new(mock.clone()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(async move {
            router.serve_with_incoming(incoming).await.unwrap();
        });
        let swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.pem"), &pki.root_pem).unwrap();
        Self {
            mock,
            address,
            swtpm,
            dir,
            _server: server,
        }
    }

    fn config(&self) -> AgentConfig {
        let dir = self.dir.path();
        AgentConfig {
            attestor: self.address.clone(),
            attestor_spiffe_id: SpiffeId::parse(ATTESTOR_ID).unwrap(),
            trust_bundle: dir.join("bundle.pem"),
            tcti: self.swtpm.tcti(),
            ek: EkSource::Persistent {
                handle: 0x8101_0001,
            },
            ek_certificate_nv: 0x01c0_0002,
            ek_chain: vec![],
            ak_algorithm: AkAlgorithm::EccP256,
            event_log: dir.join("no-event-log"),
            state_dir: dir.join("state"),
            svid_dir: dir.join("svid"),
            asserted: BTreeMap::from([("hostname".to_owned(), "node-1".to_owned())]),
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
            rpc_timeout: Duration::from_secs(10),
            workload_api: None,
            post_rotate_command: None,
            post_rotate_timeout: Duration::from_secs(60),
            ops_listen: None,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.mock.state.lock().unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn leaf_serial(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let der = pem::parse_many(&text).unwrap().remove(0).into_contents();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.raw_serial().to_vec()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn enroll_then_renew_over_mtls_with_the_same_ak() {
    let site = Site::start().await;
    let config = site.config();

    let enrolled = garrison_agent::enroll_once(&config).await.unwrap();
    assert_eq!(enrolled.spiffe_id, NODE_ID);
    assert_eq!(enrolled.log_sequence, 1);
    assert!(enrolled.not_after > SystemTime::now() + Duration::from_secs(3000));
    assert_eq!(
        site.state().asserted.get("hostname").map(String::as_str),
        Some("node-1")
    );
    let files = &enrolled.files;
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(mode(&config.ak_blob_path()), 0o600);
    // The files form a usable TLS identity, and the bundle is the root.
    garrison_spiffe_tls::Identity::from_pem(
        &std::fs::read(&files.svid).unwrap(),
        &std::fs::read(&files.key).unwrap(),
    )
    .unwrap();
    let ders = |path: &Path| {
        garrison_agent::files::certificates_from_pem(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(ders(&files.bundle), ders(&config.trust_bundle));
    let first_serial = leaf_serial(&files.svid);
    let first_key = std::fs::read(&files.key).unwrap();

    let renewed = garrison_agent::renew_once(&config).await.unwrap();
    assert_eq!(renewed.spiffe_id, NODE_ID);
    assert_eq!(renewed.log_sequence, 2);
    assert_ne!(leaf_serial(&files.svid), first_serial, "a new certificate");
    assert_ne!(std::fs::read(&files.key).unwrap(), first_key, "a new key");
    assert_eq!(mode(&files.key), 0o600);
    let state = site.state();
    assert_eq!((state.enrollments, state.renewals), (1, 1));
    let leftovers: Vec<_> = std::fs::read_dir(&config.svid_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_without_a_known_svid_asks_for_reenrollment() {
    let site = Site::start().await;
    let config = site.config();
    // No SVID on disk at all.
    let error = garrison_agent::renew_once(&config).await.unwrap_err();
    assert!(
        matches!(error, AgentError::NoCurrentSvid { .. }),
        "{error:?}"
    );
    assert_eq!(error.disposition(), Disposition::Reenroll);

    garrison_agent::enroll_once(&config).await.unwrap();
    site.state().forget_svids = true;
    let error = garrison_agent::renew_once(&config).await.unwrap_err();
    assert_eq!(error.reason_code(), Some("unknown-svid"));
    assert_eq!(error.disposition(), Disposition::Reenroll);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusal_stops_once_mode_with_the_reason_code() {
    let site = Site::start().await;
    site.state().refuse_begin = Some((u32::MAX, refusal(Code::PermissionDenied, "policy-deny")));
    let mut agent = Agent::system(site.config());
    let error = agent.enroll_with_retry(Some(5)).await.unwrap_err();
    assert_eq!(error.reason_code(), Some("policy-deny"));
    assert_eq!(error.disposition(), Disposition::Refused);
    assert_eq!(
        site.state().begins,
        1,
        "a refusal is not retried in once mode"
    );
    assert!(!site.config().svid_dir.join("svid.key").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn load_shedding_hint_is_waited_out() {
    let site = Site::start().await;
    let mut overloaded = refusal(Code::ResourceExhausted, "overloaded");
    overloaded
        .metadata_mut()
        .insert("retry-after-ms", "400".parse().unwrap());
    site.state().refuse_begin = Some((1, overloaded));
    let mut agent = Agent::system(site.config());
    let started = Instant::now();
    let enrolled = agent.enroll_with_retry(Some(3)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(enrolled.spiffe_id, NODE_ID);
    assert_eq!(site.state().begins, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_load_shedding_hint_is_capped() {
    let site = Site::start().await;
    let mut overloaded = refusal(Code::ResourceExhausted, "overloaded");
    overloaded
        .metadata_mut()
        .insert("retry-after-ms", u64::MAX.to_string().parse().unwrap());
    site.state().refuse_begin = Some((1, overloaded));
    let mut agent = Agent::system(site.config());
    // One attempt: the agent gives up without waiting, and says how long it would have.
    let error = agent.enroll_with_retry(Some(1)).await.unwrap_err();
    assert!(
        matches!(error, AgentError::RetriesExhausted { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.disposition(),
        Disposition::Retry {
            not_before: Some(garrison_agent::MAX_RETRY_AFTER)
        }
    );
}

/// A new root (no role, a key of its own) cross-signed by `pki`'s root, as a root rotation
/// announces it.
fn cross_signed_root(pki: &Pki, name: &str) -> Vec<u8> {
    let root_key = rcgen::KeyPair::from_pem(&pki.root_key_pem).unwrap();
    let root_cert = pki.root.certificate().to_vec();
    let signer = rcgen::Issuer::from_ca_cert_der(&root_cert.as_slice().into(), &root_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(2));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params.signed_by(&key, &signer).unwrap().der().to_vec()
}

/// A CA certificate for a new key named `name`, issued by `issuer`.
fn ca_issued_by(issuer: &Authority, name: &str) -> Vec<u8> {
    issuer
        .issue_intermediate(
            IntermediateParams {
                name: name.into(),
                ttl: time::Duration::hours(12),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                role: CaRole::Hub,
            },
            OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap()
        .certificate
}

#[tokio::test(flavor = "multi_thread")]
async fn the_attestor_cannot_replace_the_bootstrap_trust_anchors() {
    let site = Site::start().await;
    let config = site.config();
    let bootstrap =
        garrison_agent::files::certificates_from_pem(&std::fs::read(&config.trust_bundle).unwrap())
            .unwrap();
    // An attacker's root, a CA under it, a new root cross-signed by the real root, and a hub
    // CA the real root issued (an intermediate: never an anchor).
    let attacker = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "root".into(),
                ttl: time::Duration::days(2),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap(),
    )
    .unwrap();
    let attacker_root = attacker.certificate().to_vec();
    let attacker_ca = ca_issued_by(&attacker, "attacker-ca");
    let cross_signed = cross_signed_root(&site.mock.pki, "root-2");
    let hub = ca_issued_by(&site.mock.pki.root, "hub");

    // Only foreign roots sent: the bootstrap anchors are written, nothing else.
    site.state().trust_bundle = Some(vec![attacker_root.clone(), attacker_ca.clone()]);
    let enrolled = garrison_agent::enroll_once(&config).await.unwrap();
    let written = |path: &Path| {
        garrison_agent::files::certificates_from_pem(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(written(&enrolled.files.bundle), bootstrap);

    // A renewal that also announces a root cross-signed by the bootstrap root: added.
    site.state().trust_bundle = Some(vec![
        attacker_root,
        bootstrap[0].clone(),
        cross_signed.clone(),
        hub,
        attacker_ca,
    ]);
    let renewed = garrison_agent::renew_once(&config).await.unwrap();
    assert_eq!(
        written(&renewed.files.bundle),
        [bootstrap[0].clone(), cross_signed]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_attestor_is_retried_then_given_up() {
    let site = Site::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = AgentConfig {
        attestor: format!("https://127.0.0.1:{port}"),
        ..site.config()
    };
    let mut agent = Agent::system(config);
    let error = agent.enroll_with_retry(Some(3)).await.unwrap_err();
    match &error {
        AgentError::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(
                matches!(
                    **last,
                    AgentError::Rpc {
                        code: Code::Unavailable,
                        ..
                    }
                ),
                "{last:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error.reason_code(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_attestor_identity_is_never_trusted() {
    let site = Site::start().await;
    let config = AgentConfig {
        attestor_spiffe_id: SpiffeId::parse("spiffe://example.org/site/site-b/attestor").unwrap(),
        ..site.config()
    };
    let error = garrison_agent::enroll_once(&config).await.unwrap_err();
    assert!(matches!(error, AgentError::Rpc { .. }), "{error:?}");
    assert_eq!(site.state().begins, 0, "nothing reached the server");
}

/// A clock running ahead, so the SVID just issued is already past half-life.
struct AheadClock(Duration);

impl Clock for AheadClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_enrolls_renews_and_falls_back_to_enrollment() {
    let site = Site::start().await;
    let state = Arc::clone(&site.mock.state);
    let mut agent = Agent::new(
        site.config(),
        Box::new(AheadClock(Duration::from_secs(40 * 60))),
        Box::new(SeededEntropy::new(5)),
    );
    let shutdown = async move {
        let wait_for = |what: fn(&State) -> bool| {
            let state = Arc::clone(&state);
            async move {
                while !what(&state.lock().unwrap()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(|s| s.enrollments == 1 && s.renewals >= 2).await;
        state.lock().unwrap().forget_svids = true;
        wait_for(|s| s.enrollments >= 2).await;
    };
    tokio::time::timeout(Duration::from_secs(60), agent.run(shutdown))
        .await
        .expect("run loop made progress")
        .unwrap();
    let state = site.state();
    assert!(state.enrollments >= 2 && state.renewals >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_enroll_once_prints_identity_or_reason() {
    let site = Site::start().await;
    let config = site.config();
    let toml_path = site.dir.path().join("agent.toml");
    std::fs::write(
        &toml_path,
        format!(
            r#"attestor = "{}"
attestor_spiffe_id = "{ATTESTOR_ID}"
trust_bundle = "{}"
tcti = "{}"
ek = "persistent:0x81010001"
ek_certificate_nv = 0x01c00002
event_log = "{}"
state_dir = "{}"
svid_dir = "{}"
[asserted]
hostname = "node-1"
[backoff]
base_ms = 20
cap_ms = 100
"#,
            config.attestor,
            config.trust_bundle.display(),
            config.tcti,
            config.event_log.display(),
            config.state_dir.display(),
            config.svid_dir.display(),
        ),
    )
    .unwrap();
    let agent = |args: &[&str]| {
        let toml_path = toml_path.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
                .args(&args)
                .arg("--config")
                .arg(&toml_path)
                .env("TSS2_LOG", "all+none")
                .output()
                .await
                .unwrap()
        }
    };

    let ok = agent(&["enroll", "--once"]).await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains(&format!("spiffe_id: {NODE_ID}")),
        "{stdout}"
    );
    assert!(stdout.contains("log_sequence: 1"), "{stdout}");
    assert!(stdout.contains("expires: "), "{stdout}");

    // `| head -1`: the reader goes after the first line; the agent ends quietly, exit 0.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
        .args(["enroll", "--once", "--config"])
        .arg(&toml_path)
        .env("TSS2_LOG", "all+none")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(closed.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    site.state().refuse_begin = Some((u32::MAX, refusal(Code::PermissionDenied, "ek-trust")));
    let refused = agent(&["enroll", "--once", "--attempts", "3"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused: ek-trust"), "{stderr}");
}

#[test]
fn cli_help_is_available_everywhere() {
    for args in [&["--help"][..], &["run", "--help"], &["enroll", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
        .args(["enroll", "--config", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--once is required");
}

/// The uid of this process, from /proc.
fn own_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_each_new_svid_to_open_workload_api_streams_and_runs_the_hook() {
    use tokio_stream::StreamExt as _;
    let site = Site::start().await;
    let socket = site.dir.path().join("run/workload.sock");
    let hook_log = site.dir.path().join("rotations.log");
    let hook = site.dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$GARRISON_SPIFFE_ID $GARRISON_SVID_EXPIRES $(basename \
             \"$GARRISON_SVID\")\" >> {}\n",
            hook_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = AgentConfig {
        workload_api: Some(garrison_agent::workload_api::WorkloadApiConfig {
            socket: socket.clone(),
            allowed_uids: vec![own_uid()],
            allowed_gids: vec![],
        }),
        post_rotate_command: Some(vec![hook.display().to_string()]),
        ..site.config()
    };
    // 40 minutes ahead: every 1-hour SVID is past its renewal time at once, so the agent
    // renews back to back and each new SVID must reach the open stream.
    let mut agent = Agent::new(
        config,
        Box::new(AheadClock(Duration::from_secs(40 * 60))),
        Box::new(SeededEntropy::new(7)),
    );
    let endpoint = format!("unix://{}", socket.display());
    let watcher = async move {
        let client = loop {
            if let Ok(client) = spiffe::WorkloadApiClient::connect_to(&endpoint).await
                && client.fetch_x509_svid().await.is_ok()
            {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stream = client.stream_x509_svids().await.unwrap();
        let mut leaves = Vec::new();
        while leaves.len() < 3 {
            let svid = stream.next().await.unwrap().unwrap();
            assert_eq!(svid.spiffe_id().to_string(), NODE_ID);
            let leaf = svid.leaf().as_ref().to_vec();
            if leaves.last() != Some(&leaf) {
                leaves.push(leaf);
            }
        }
        leaves
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let leaves = watcher.await;
        let _ = done.send(leaves);
    };
    tokio::time::timeout(Duration::from_secs(60), agent.run(shutdown))
        .await
        .expect("three SVIDs reached the stream")
        .unwrap();
    let leaves = finished.await.unwrap();
    assert_eq!(leaves.len(), 3);
    // Every leaf the stream carried is one the attestor issued to this node.
    for leaf in &leaves {
        let (_, cert) = X509Certificate::from_der(leaf).unwrap();
        assert!(site.state().issued.contains(cert.raw_serial()));
    }
    assert!(
        !socket.exists(),
        "the socket is removed when the agent stops"
    );
    // The hook ran after each rotation (the last one may have been cut short by the stop).
    let hooks = std::fs::read_to_string(&hook_log).unwrap();
    let lines: Vec<&str> = hooks.lines().collect();
    assert!(lines.len() >= 2, "{hooks}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(NODE_ID) && l.ends_with("svid.pem")),
        "{hooks}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_to_start_on_a_socket_another_agent_serves() {
    let site = Site::start().await;
    let socket = site.dir.path().join("workload.sock");
    let _other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let config = AgentConfig {
        workload_api: Some(garrison_agent::workload_api::WorkloadApiConfig {
            socket: socket.clone(),
            allowed_uids: vec![own_uid()],
            allowed_gids: vec![],
        }),
        ..site.config()
    };
    let mut agent = Agent::new(
        config,
        Box::new(garrison_agent::schedule::SystemClock),
        Box::new(SeededEntropy::new(1)),
    );
    let error = agent.run(std::future::pending()).await.unwrap_err();
    assert!(error.to_string().contains("another process"), "{error}");
    assert_eq!(error.disposition(), Disposition::Fatal);
    assert_eq!(
        site.state().begins,
        0,
        "nothing was attempted before the socket was bound"
    );
}

/// `GET path` over HTTP/1.0: (status code, body).
async fn http_get(address: &str, path: &str) -> (u16, String) {
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

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_metrics_and_grpc_health_follow_the_svid() {
    let site = Site::start().await;
    // Refused at first: not ready, and the refusal is counted.
    site.state().refuse_begin = Some((2, refusal(Code::PermissionDenied, "ek-trust")));
    let socket = site.dir.path().join("workload.sock");
    let ops = free_port();
    let config = AgentConfig {
        workload_api: Some(garrison_agent::workload_api::WorkloadApiConfig {
            socket: socket.clone(),
            allowed_uids: vec![own_uid()],
            allowed_gids: vec![],
        }),
        ops_listen: Some(ops.clone()),
        ..site.config()
    };
    let mut agent = Agent::new(
        config,
        Box::new(garrison_agent::schedule::SystemClock),
        Box::new(SeededEntropy::new(3)),
    );
    let state = Arc::clone(&site.mock.state);
    let observe = async move {
        let wait_for_http = async {
            loop {
                if tokio::net::TcpStream::connect(&ops).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        wait_for_http.await;
        let (status, body) = http_get(&ops, "/livez").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        // Before the first SVID: not ready, with the reason.
        if state.lock().unwrap().enrollments == 0 {
            let (status, body) = http_get(&ops, "/readyz").await;
            if state.lock().unwrap().enrollments == 0 {
                assert_eq!(status, 503, "{body}");
                assert!(body.starts_with("not ready\nfail svid: "), "{body}");
            }
        }
        loop {
            let (status, body) = http_get(&ops, "/readyz").await;
            if status == 200 {
                assert_eq!(body, "ready\nok svid\n");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, metrics) = http_get(&ops, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains("garrison_agent_exchanges_total{exchange=\"enroll\",result=\"ok\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "garrison_agent_exchanges_total{exchange=\"enroll\",result=\"refused\"} 2"
            ),
            "{metrics}"
        );
        let expiry: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("garrison_agent_svid_expiry_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(expiry > 3000.0 && expiry <= 3600.0, "{expiry}");
        assert!(metrics.contains("garrison_agent_exchange_duration_seconds_bucket"));
        assert!(metrics.contains("# TYPE garrison_agent_workload_api_streams gauge"));

        // gRPC health on the Workload API socket: SERVING.
        let path = socket.clone();
        let channel = tonic::transport::Endpoint::from_static("http://agent.invalid")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        let mut status = 0;
        for _ in 0..100 {
            status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "SpiffeWorkloadAPI".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if status == serving {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, serving);
    };
    tokio::time::timeout(Duration::from_secs(60), agent.run(observe))
        .await
        .expect("the agent became ready")
        .unwrap();
}

#[test]
fn logs_are_json_lines_on_request_and_never_carry_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bundle.pem"), "").unwrap();
    let config = dir.path().join("agent.toml");
    // An attestor nobody listens on: the attempt fails and the agent says so in its log.
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "attestor = \"https://{port}\"\nattestor_spiffe_id = \"{ATTESTOR_ID}\"\n\
             trust_bundle = \"{}\"\ntcti = \"swtpm:host=127.0.0.1,port=1\"\n\
             ek = \"persistent:0x81010001\"\nstate_dir = \"{}\"\nsvid_dir = \"{}\"\n",
            dir.path().join("bundle.pem").display(),
            dir.path().join("state").display(),
            dir.path().join("svid").display(),
        ),
    )
    .unwrap();
    let run = |format: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"));
        if let Some(format) = format {
            command.args(["--log-format", format]);
        }
        command
            .args(["enroll", "--once", "--attempts", "1", "--config"])
            .arg(&config)
            .env_remove("GARRISON_LOG_FORMAT")
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap()
    };
    let text = run(None);
    let text = String::from_utf8(text.stderr).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes off a terminal: {text}"
    );
    assert!(text.contains("WARN") || text.contains("ERROR"), "{text}");
    let json = run(Some("json"));
    let json = String::from_utf8(json.stderr).unwrap();
    // Every line the log writes is one JSON object (the final error report, printed by the
    // binary itself after the log, is plain text and starts with the program's name).
    let lines: Vec<&str> = json
        .lines()
        .filter(|line| !line.starts_with("garrison-agent: "))
        .collect();
    assert!(!lines.is_empty(), "{json}");
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        assert!(object["level"].is_string(), "{line}");
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["fields"].is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")),
        "{json}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
        .args(["--log-format", "xml", "enroll", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected text or json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_past_its_time_is_killed_with_what_it_started() {
    let site = Site::start().await;
    let pid_file = site.dir.path().join("grandchild.pid");
    let hook = site.dir.path().join("hang.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = AgentConfig {
        post_rotate_command: Some(vec![hook.display().to_string()]),
        post_rotate_timeout: Duration::from_millis(500),
        ..site.config()
    };
    let agent = Agent::new(
        config,
        Box::new(garrison_agent::schedule::SystemClock),
        Box::new(SeededEntropy::new(2)),
    );
    let started = Instant::now();
    let enrolled = agent.enroll_once().await.unwrap();
    assert_eq!(
        enrolled.spiffe_id, NODE_ID,
        "the hook's failure does not fail the enrollment"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    // The hook's own child is gone too (or a zombie waiting for init to reap it).
    let mut gone = false;
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => gone = true,
            Ok(stat) => {
                gone = stat
                    .split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z'))
            }
        }
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the hook's child {pid} survived");
}
