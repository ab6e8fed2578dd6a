//! The EAR as a JWT: JWS compact serialization (RFC 7515), `alg: EdDSA` (RFC 8037) with the
//! site's log key, the key's certificate chain (site CA certificate and above, without the
//! root) in `x5c` (RFC 7515 §4.1.6: standard base64 of each DER certificate, the key's
//! first). A relying party holding only the trust domain's root can check it: the chain to
//! the root, that the certificate is the log key of the site log the EAR names, the
//! signature.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ear::Ear;
use garrison_transparency::{LogKey, LogKeyCertificate};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Value as Json, json};

use crate::EarError;
use crate::result::SUBMOD;

/// The one algorithm Garrison signs EARs with (the log key's).
const ALG: &str = "EdDSA";

/// `ear` as a JWT signed by `key`, whose certificate chain (the key's certificate first, then
/// the CAs above it, the root left out) is `chain` (DER).
pub fn sign_jwt(ear: &Ear, key: &LogKey, chain: &[Vec<u8>]) -> Result<String, EarError> {
    let x5c: Vec<String> = chain.iter().map(|der| STANDARD.encode(der)).collect();
    let header = json!({"alg": ALG, "typ": "JWT", "x5c": x5c});
    let header = serde_json::to_vec(&header).map_err(EarError::Encode)?;
    let payload = serde_json::to_vec(ear).map_err(EarError::Encode)?;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign_jws(&input).map_err(EarError::Sign)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// A JWT that [`verify_jwt`] accepted.
#[derive(Debug)]
pub struct VerifiedResult {
    /// The EAR.
    pub ear: Ear,
    /// The claims as sent (JSON), for display.
    pub claims: Json,
    /// The log the EAR points into, whose log key signed it.
    pub origin: String,
    /// The record's sequence in that log.
    pub sequence: u64,
}

/// Checks an EAR JWT against the trust domain's `roots` (DER): `alg` is EdDSA, the `x5c`
/// chain certifies (at its notBefore, as for checkpoints; with the containment rule) the log
/// key of the site log that the EAR's `garrison_log_origin` names, and the signature verifies
/// with that key. Then the payload must be an EAR.
pub fn verify_jwt(token: &str, roots: &[Vec<u8>]) -> Result<VerifiedResult, EarError> {
    let malformed = |reason: &str| EarError::Malformed {
        reason: reason.to_owned(),
    };
    let mut parts = token.trim().split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three '.'-separated parts"));
    };
    let (_, header) = decode_json(header_b64, "header")?;
    let alg = header.get("alg").and_then(Json::as_str).unwrap_or_default();
    if alg != ALG {
        return Err(EarError::Algorithm {
            expected: ALG,
            got: alg.to_owned(),
        });
    }
    let chain = x5c(&header)?;
    let (payload, claims) = decode_json(payload_b64, "payload")?;
    let origin = verifier_claim(&claims, "garrison_log_origin")
        .and_then(Json::as_str)
        .ok_or_else(|| malformed("no garrison_log_origin verifier claim"))?
        .to_owned();
    let sequence = verifier_claim(&claims, "garrison_log_sequence")
        .and_then(Json::as_u64)
        .ok_or_else(|| malformed("no garrison_log_sequence verifier claim"))?;
    let public = chain
        .verify(roots, &origin)
        .map_err(EarError::Certificate)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| malformed("the signature is not base64url"))?;
    let input = format!("{header_b64}.{payload_b64}");
    UnparsedPublicKey::new(&ED25519, public)
        .verify(input.as_bytes(), &signature)
        .map_err(|_| EarError::Signature)?;
    // From the bytes: the ear crate's decoder borrows its keys from the input.
    let ear: Ear = serde_json::from_slice(&payload).map_err(EarError::Claims)?;
    Ok(VerifiedResult {
        ear,
        claims,
        origin,
        sequence,
    })
}

/// A JWS part's bytes and their JSON.
fn decode_json(part: &str, what: &str) -> Result<(Vec<u8>, Json), EarError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| EarError::Malformed {
            reason: format!("the {what} is not base64url"),
        })?;
    let json = serde_json::from_slice(&bytes).map_err(|_| EarError::Malformed {
        reason: format!("the {what} is not JSON"),
    })?;
    Ok((bytes, json))
}

fn x5c(header: &Json) -> Result<LogKeyCertificate, EarError> {
    let malformed = |reason: &str| EarError::Malformed {
        reason: reason.to_owned(),
    };
    let entries = header
        .get("x5c")
        .and_then(Json::as_array)
        .ok_or_else(|| malformed("no x5c header"))?;
    let mut chain = entries
        .iter()
        .map(|e| {
            e.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| malformed("an x5c entry is not base64 DER"))
        })
        .collect::<Result<Vec<Vec<u8>>, EarError>>()?
        .into_iter();
    let certificate = chain.next().ok_or_else(|| malformed("x5c is empty"))?;
    Ok(LogKeyCertificate {
        certificate,
        intermediates: chain.collect(),
    })
}

fn verifier_claim<'a>(claims: &'a Json, name: &str) -> Option<&'a Json> {
    claims
        .get("submods")?
        .get(SUBMOD)?
        .get("ear_verifier_claims")?
        .get(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use garrison_ca::{
        Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SiteRole,
        SubjectKey, TrustDomain,
    };
    use ring::rand::SystemRandom;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::facts::{DecisionFacts, EkBasis, Outcome, PolicyClaims};
    use crate::result::attestation_result;

    fn authority(issuer: Option<&Authority>, role: CaRole, now: OffsetDateTime) -> Authority {
        let rng = SystemRandom::new();
        let days = if role == CaRole::Hub { 20 } else { 10 };
        let issued = match issuer {
            None => Authority::new_root(
                &RootParams {
                    trust_domain: TrustDomain::new("example.org").unwrap(),
                    name: "root".into(),
                    ttl: Duration::days(30),
                    path_len: 2,
                    key_algorithm: KeyAlgorithm::EcdsaP256,
                },
                now,
                &rng,
            ),
            Some(issuer) => issuer.issue_intermediate(
                IntermediateParams {
                    name: "ca".into(),
                    role,
                    ttl: Duration::days(days),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            ),
        };
        Authority::from_issued(issued.unwrap()).unwrap()
    }

    /// A site `site`'s CA under a root and hub, its log key and the key's chain.
    fn site(site: &str) -> (Authority, LogKey, Vec<Vec<u8>>) {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let root = authority(None, CaRole::Hub, now);
        let hub = authority(Some(&root), CaRole::Hub, now);
        let site_ca = authority(Some(&hub), CaRole::Site(site.into()), now);
        let origin = garrison_transparency::site_origin("example.org", site);
        let pkcs8 = LogKey::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = LogKey::from_pkcs8(&origin, &pkcs8).unwrap();
        let issued = site_ca
            .issue_site_role_svid(
                SiteRole::Log,
                Duration::days(5),
                SubjectKey::LogKey(key.public_key()),
                now,
                &SystemRandom::new(),
            )
            .unwrap();
        (root, key, issued.chain)
    }

    fn facts() -> DecisionFacts {
        DecisionFacts {
            origin: "garrison.example.org/site/s1".into(),
            sequence: 3,
            leaf_hash: [1; 32],
            time: OffsetDateTime::now_utc() - Duration::minutes(5),
            outcome: Outcome::Enrolled,
            kind: "enroll".into(),
            node_id: "ab".repeat(32),
            spiffe_id: None,
            reasons: vec![],
            policy_digest: None,
            cert_serial: None,
            ek_basis: Some(EkBasis::ManufacturerCertificate),
            policy_claims: PolicyClaims::default(),
        }
    }

    #[test]
    fn a_signed_ear_verifies_against_the_root_alone_and_tampering_fails() {
        let (root, key, chain) = site("s1");
        let roots = vec![root.certificate().to_vec()];
        let ear = attestation_result(&facts()).unwrap();
        let token = sign_jwt(&ear, &key, &chain).unwrap();
        let verified = verify_jwt(&token, &roots).unwrap();
        assert_eq!(verified.ear, ear);
        assert_eq!(verified.sequence, 3);
        assert_eq!(verified.origin, "garrison.example.org/site/s1");

        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            panic!("three parts")
        };
        // The payload changed (a refusal made an allow, here: another sequence).
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let forged = claims.replace("\"garrison_log_sequence\":3", "\"garrison_log_sequence\":4");
        assert_ne!(forged, claims);
        let forged = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(forged.as_bytes())
        );
        assert!(matches!(
            verify_jwt(&forged, &roots),
            Err(EarError::Signature)
        ));
        // Another root, another site's log key, another algorithm: refused.
        let (other_root, other_key, other_chain) = site("s1");
        assert!(matches!(
            verify_jwt(&token, &[other_root.certificate().to_vec()]),
            Err(EarError::Certificate(_))
        ));
        let resigned = sign_jwt(&ear, &other_key, &chain).unwrap();
        assert!(matches!(
            verify_jwt(&resigned, &roots),
            Err(EarError::Signature)
        ));
        let (_, s2_key, s2_chain) = site("s2");
        let _ = other_chain;
        let by_s2 = sign_jwt(&ear, &s2_key, &s2_chain).unwrap();
        assert!(matches!(
            verify_jwt(&by_s2, &roots),
            Err(EarError::Certificate(_))
        ));
        let none = format!(
            "{}.{payload}.{signature}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        );
        assert!(matches!(
            verify_jwt(&none, &roots),
            Err(EarError::Algorithm { .. })
        ));
        for junk in ["", "a.b", "a.b.c.d", "!.!.!"] {
            assert!(verify_jwt(junk, &roots).is_err(), "{junk:?}");
        }
    }
}
