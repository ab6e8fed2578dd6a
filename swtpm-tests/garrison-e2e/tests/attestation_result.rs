//! Attestation results for relying parties, from a real site: swtpm nodes enroll or are
//! refused through the real attestor, and an auditor fetches each node's latest decision as
//! an EAR JWT through the Audit service (mutual TLS, auditor SVID). Each JWT is checked by
//! verifiers that are not Garrison's: PyJWT (with `cryptography`) checks the EdDSA signature
//! with the key of the `x5c` leaf and `openssl verify` the `x5c` chain to the root; the
//! claims (profile, status, trust vector, pointer into the log) are checked on PyJWT's
//! output. A changed payload fails PyJWT. A node's SVID is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use garrison_log::RecordKind;
use garrison_proto::v1;
use garrison_proto::v1::attestation_result_request::Node;
use garrison_proto::v1::audit_client::AuditClient;
use serde_json::{Value as Json, json};

/// The independent verifier's packages, pinned.
const PYTHON_PACKAGES: [&str; 2] = ["PyJWT==2.10.1", "cryptography==44.0.2"];

/// PyJWT verifies the token with the public key of the `x5c` leaf (nothing else: PyJWT does
/// not build chains), prints the claims, and writes the `x5c` certificates as PEM for
/// `openssl verify`. Exits 1 with the error on any failure.
const PYTHON_VERIFIER: &str = r#"
import base64, json, sys
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
token = open(sys.argv[1]).read().strip()
out = sys.argv[2]
header = jwt.get_unverified_header(token)
if header.get("alg") != "EdDSA":
    sys.exit("alg is " + repr(header.get("alg")))
certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
try:
    claims = jwt.decode(token, key=certs[0].public_key(), algorithms=["EdDSA"])
except jwt.exceptions.InvalidTokenError as e:
    sys.exit("PyJWT refused it: " + type(e).__name__ + ": " + str(e))
open(out + "/leaf.pem", "wb").write(certs[0].public_bytes(Encoding.PEM))
open(out + "/untrusted.pem", "wb").write(b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]))
print(json.dumps(claims))
"#;

/// A virtualenv with the pinned packages, made once per target directory.
fn python_with_pyjwt() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-jwt");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    let wanted = PYTHON_PACKAGES.join(" ");
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
    assert!(status.success(), "python3 -m venv failed");
    let status = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES)
        .status()
        .unwrap();
    assert!(status.success(), "pip install {wanted} failed");
    std::fs::write(&ready, wanted).unwrap();
    python
}

/// PyJWT's verdict on `token`: the claims, or its error. The x5c certificates land in `dir`.
fn pyjwt_verify(python: &Path, token: &str, dir: &Path) -> Result<Json, String> {
    let file = dir.join("ear.jwt");
    std::fs::write(&file, token).unwrap();
    let out = std::process::Command::new(python)
        .args(["-c", PYTHON_VERIFIER])
        .arg(&file)
        .arg(dir)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `openssl verify` of the x5c leaf `pyjwt_verify` wrote in `dir`, against the root alone.
fn openssl_verifies_chain(dir: &Path, root: &Path) -> bool {
    let untrusted = dir.join("untrusted.pem");
    let mut command = std::process::Command::new("openssl");
    command.arg("verify").arg("-CAfile").arg(root);
    if std::fs::metadata(&untrusted).unwrap().len() > 0 {
        command.arg("-untrusted").arg(&untrusted);
    }
    let out = command.arg(dir.join("leaf.pem")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains(": OK")
}

/// An auditor's SVID, issued by the root.
fn auditor(site: &Running) -> garrison_spiffe_tls::Identity {
    let issued = site
        .site
        .root_ca
        .issue_svid(
            garrison_ca::SvidParams {
                spiffe_id: garrison_ca::SpiffeId::parse(&format!(
                    "spiffe://{}/auditor/relying-party-test",
                    garrison_testbed::TRUST_DOMAIN
                ))
                .unwrap(),
                ttl: time::Duration::hours(1),
                max_ttl: time::Duration::hours(1),
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            time::OffsetDateTime::now_utc(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    let key = issued.key.unwrap().to_pkcs8_pem();
    garrison_spiffe_tls::Identity::from_pem(
        garrison_ca::certificates_to_pem(&issued.chain).as_bytes(),
        key.expose().as_bytes(),
    )
    .unwrap()
}

/// An Audit client on `address`, presenting `identity`.
fn audit_client(
    site: &Running,
    address: std::net::SocketAddr,
    identity: garrison_spiffe_tls::Identity,
) -> AuditClient<tonic::transport::Channel> {
    let bundle = std::fs::read(site.site.bundle_pem()).unwrap();
    let id = garrison_ca::SpiffeId::parse(&site.site.attestor_id()).unwrap();
    let url = format!("https://{address}");
    let attestor = garrison_agent::client::Attestor {
        address: &url,
        spiffe_id: &id,
        bundle_pem: &bundle,
        timeout: RPC_TIMEOUT,
    };
    AuditClient::new(attestor.channel(Some(identity)).unwrap())
}

async fn fetch(
    client: &mut AuditClient<tonic::transport::Channel>,
    node: Node,
) -> Result<v1::AttestationResultResponse, tonic::Status> {
    client
        .get_attestation_result(v1::AttestationResultRequest { node: Some(node) })
        .await
        .map(tonic::Response::into_inner)
}

fn vector(claims: &Json) -> &Json {
    &claims["submods"]["node"]["ear_trustworthiness_vector"]
}

fn verifier_claims(claims: &Json) -> &Json {
    &claims["submods"]["node"]["ear_verifier_claims"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_results_verify_independently_for_an_admitted_and_a_refused_node() {
    let audit_address = garrison_testbed::free_local_address().unwrap();
    let site = Running::start(
        &[
            good("node-1"),
            NodeSpec {
                name: "node-2",
                log: garrison_testbed::INSECURE_BOOT_LOG,
                ek_trusted: true,
            },
        ],
        &format!("audit_listen = \"{audit_address}\"\n"),
    )
    .await;
    wait_for_port(audit_address).await;
    let node_1_config = site.agent_config("node-1");
    let enrolled = garrison_agent::enroll_once(&node_1_config).await.unwrap();
    let refused = garrison_agent::enroll_once(&site.agent_config("node-2"))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "policy-deny");
    let records = site.records().await;
    let admitted = records
        .iter()
        .find(|r| r.sequence == enrolled.log_sequence)
        .unwrap()
        .clone();
    let rejected = records
        .iter()
        .find(|r| r.record.kind == RecordKind::Reject)
        .expect("node-2's refusal is logged")
        .clone();
    let node_1 = admitted.record.node_id.clone().unwrap();
    let node_2 = rejected.record.node_id.clone().unwrap();

    let mut client = audit_client(&site, audit_address, auditor(&site));
    let by_id = fetch(&mut client, Node::NodeId(node_1.clone()))
        .await
        .unwrap();
    assert_eq!(by_id.log_sequence, enrolled.log_sequence);
    let spiffe_id = admitted.record.spiffe_id.clone().unwrap();
    let by_spiffe_id = fetch(&mut client, Node::SpiffeId(spiffe_id.clone()))
        .await
        .unwrap();
    assert_eq!(by_spiffe_id.log_sequence, enrolled.log_sequence);
    let of_refused = fetch(&mut client, Node::NodeId(node_2.clone()))
        .await
        .unwrap();
    assert_eq!(of_refused.log_sequence, rejected.sequence);
    let unknown = fetch(&mut client, Node::NodeId("00".repeat(32)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    // Evidence for many digests in one call answers as GetEvidence does for each.
    let evidence_of = |r: &garrison_log::StoredRecord| r.record.evidence_digest.clone().unwrap();
    let unknown_digest = "ab".repeat(32);
    let asked = vec![
        evidence_of(&admitted),
        unknown_digest.clone(),
        evidence_of(&rejected),
    ];
    let batch = client
        .get_evidence_batch(v1::GetEvidenceBatchRequest {
            digests: asked.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.missing, [unknown_digest]);
    assert!(batch.deferred.is_empty());
    assert_eq!(batch.found.len(), 2);
    for blob in &batch.found {
        let one = client
            .get_evidence(v1::GetEvidenceRequest {
                digest: blob.digest.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(one.found && one.bytes == blob.bytes, "{}", blob.digest);
    }
    for bad in [vec!["ab".repeat(32); 101], vec!["not hex".to_owned()]] {
        let refused = client
            .get_evidence_batch(v1::GetEvidenceBatchRequest { digests: bad })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }

    // A node's own SVID is not an auditor's.
    let svid_dir = &node_1_config.svid_dir;
    let node_identity = garrison_spiffe_tls::Identity::from_pem(
        &std::fs::read(svid_dir.join("svid.pem")).unwrap(),
        &std::fs::read(svid_dir.join("svid.key")).unwrap(),
    )
    .unwrap();
    let mut as_node = audit_client(&site, audit_address, node_identity);
    let denied = fetch(&mut as_node, Node::NodeId(node_1.clone()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let denied = as_node
        .get_evidence_batch(v1::GetEvidenceBatchRequest { digests: asked })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // Independent verification: PyJWT over the signature, openssl over the chain.
    let python = python_with_pyjwt();
    let root = site.site.bundle_pem();
    let work = tempfile::tempdir().unwrap();
    let policy_id = json!([format!(
        "sha256:{}",
        admitted.record.policy_digest.clone().unwrap()
    )]);

    let claims = pyjwt_verify(&python, &by_id.ear_jwt, work.path()).unwrap();
    assert!(openssl_verifies_chain(work.path(), &root));
    assert_eq!(claims["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
    assert_eq!(
        claims["iat"],
        admitted.record.time.unix_timestamp(),
        "iat is the decision's time"
    );
    assert_eq!(claims["ear_status"], "affirming");
    assert_eq!(claims["submods"]["node"]["ear_status"], "affirming");
    assert_eq!(
        vector(&claims),
        &json!({
            "instance-identity": 2, "configuration": 2, "executables": 3, "file-system": 0,
            "hardware": 2, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0
        })
    );
    assert_eq!(
        claims["submods"]["node"]["ear_appraisal_policy_ids"],
        policy_id
    );
    let pointer = verifier_claims(&claims);
    assert_eq!(pointer["garrison_log_sequence"], enrolled.log_sequence);
    assert_eq!(
        pointer["garrison_log_leaf_hash"],
        hex::encode(admitted.leaf_hash)
    );
    assert_eq!(
        pointer["garrison_log_origin"],
        format!(
            "garrison.{}/site/{}",
            garrison_testbed::TRUST_DOMAIN,
            garrison_testbed::SITE
        )
    );
    assert_eq!(pointer["garrison_node_id"], node_1);
    assert_eq!(pointer["garrison_spiffe_id"], spiffe_id);
    assert_eq!(pointer["garrison_ek_trust"], "manufacturer-certificate");
    assert_eq!(pointer["garrison_record_kind"], "enroll");

    let claims = pyjwt_verify(&python, &of_refused.ear_jwt, work.path()).unwrap();
    assert!(openssl_verifies_chain(work.path(), &root));
    assert_eq!(claims["ear_status"], "contraindicated");
    assert_eq!(claims["submods"]["node"]["ear_status"], "contraindicated");
    // The identity was proven before the policy refused; what the policy checks is not
    // vouched for. The hardware is not either: how an EK was trusted is kept with a node
    // when it enrolls, and node-2 never did.
    assert_eq!(
        vector(&claims),
        &json!({
            "instance-identity": 2, "configuration": 0, "executables": 0, "file-system": 0,
            "hardware": 0, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0
        })
    );
    assert_eq!(
        claims["submods"]["node"]["ear_appraisal_policy_ids"],
        policy_id
    );
    let pointer = verifier_claims(&claims);
    assert_eq!(pointer["garrison_log_sequence"], rejected.sequence);
    assert_eq!(pointer["garrison_record_kind"], "reject");
    assert_eq!(pointer["garrison_ek_trust"], "unknown");
    assert_eq!(pointer["garrison_reasons"][0], "policy-deny");
    assert!(
        pointer["garrison_reasons"][1]
            .as_str()
            .unwrap()
            .contains("Secure Boot is off"),
        "{pointer}"
    );

    // Garrison's own check (what `garrison audit ear` runs) agrees.
    let roots =
        garrison_ca::certificates_from_pem(&std::fs::read_to_string(&root).unwrap()).unwrap();
    let ours = garrison_ear::verify_jwt(&by_id.ear_jwt, &roots).unwrap();
    assert_eq!(ours.sequence, enrolled.log_sequence);

    // The refusal's payload made an allow: PyJWT refuses the signature.
    let parts: Vec<&str> = of_refused.ear_jwt.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let forged = payload.replace("contraindicated", "affirming");
    assert_ne!(forged, payload);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.as_bytes()),
        parts[2]
    );
    let refusal = pyjwt_verify(&python, &forged, work.path()).unwrap_err();
    assert!(refusal.contains("InvalidSignatureError"), "{refusal}");
    assert!(garrison_ear::verify_jwt(&forged, &roots).is_err());

    site.stop().await;
}
