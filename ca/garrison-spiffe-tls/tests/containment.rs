//! A site CA speaks only for its own site: the server verifier refuses a certificate whose
//! SPIFFE ID is right and whose chain verifies to the root, when the CA that issued it may
//! not vouch for that ID. The forged certificates are signed with rcgen directly, as a thief
//! holding a site CA key would, bypassing the issuance checks of `garrison-ca`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use garrison_ca::{
    Authority, CaRole, Issued, KeyAlgorithm, PathLen, RootParams, SpiffeId, SubjectKey,
    TrustDomain, certificates_to_pem,
};
use garrison_spiffe_tls::SpiffeServerVerifier;
use ring::rand::SystemRandom;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

struct Ca {
    authority: Authority,
    key_pem: String,
}

fn ca(issued: Issued) -> Ca {
    let key_pem = issued
        .key
        .as_ref()
        .unwrap()
        .to_pkcs8_pem()
        .expose()
        .to_owned();
    Ca {
        authority: Authority::from_issued(issued).unwrap(),
        key_pem,
    }
}

fn intermediate(issuer: &Authority, role: CaRole, now: OffsetDateTime) -> Ca {
    ca(issuer
        .issue_intermediate(
            garrison_ca::IntermediateParams {
                name: role.to_string().replace('/', "-"),
                role,
                ttl: Duration::days(30),
                path_len: PathLen::OneBelowIssuer,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &SystemRandom::new(),
        )
        .unwrap())
}

/// A leaf for `id` signed by `issuer`'s key with no questions asked.
fn forged_leaf(issuer: &Ca, id: &str, now: OffsetDateTime) -> Vec<u8> {
    let issuer_key = rcgen::KeyPair::from_pem(&issuer.key_pem).unwrap();
    let issuer_cert = issuer.authority.certificate().to_vec();
    let signer =
        rcgen::Issuer::from_ca_cert_der(&issuer_cert.as_slice().into(), &issuer_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.to_owned().try_into().unwrap())];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::hours(1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params.signed_by(&key, &signer).unwrap().der().to_vec()
}

struct World {
    now: OffsetDateTime,
    root: Authority,
    hub: Ca,
    site_a: Ca,
}

fn world() -> World {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "root".into(),
                ttl: Duration::days(365),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &SystemRandom::new(),
        )
        .unwrap(),
    )
    .unwrap();
    let hub = intermediate(&root, CaRole::Hub, now);
    let site_a = intermediate(&hub.authority, CaRole::Site("site-a".into()), now);
    World {
        now,
        root,
        hub,
        site_a,
    }
}

fn verify(w: &World, leaf: &[u8], chain: &[&Ca], expected: &str) -> Result<(), rustls::Error> {
    let bundle = certificates_to_pem(w.root.roots());
    let verifier =
        SpiffeServerVerifier::new(bundle.as_bytes(), SpiffeId::parse(expected).unwrap()).unwrap();
    let intermediates: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.authority.certificate().to_vec()))
        .collect();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &intermediates,
            &ServerName::try_from("attestor").unwrap(),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(w.now.unix_timestamp()).unwrap(),
            )),
        )
        .map(|_| ())
}

const SITE_A_ATTESTOR: &str = "spiffe://example.org/site/site-a/attestor";
const SITE_B_ATTESTOR: &str = "spiffe://example.org/site/site-b/attestor";

#[test]
fn a_site_attestor_issued_by_its_own_site_ca_is_accepted() {
    let w = world();
    let leaf = forged_leaf(&w.site_a, SITE_A_ATTESTOR, w.now);
    verify(&w, &leaf, &[&w.site_a, &w.hub], SITE_A_ATTESTOR).unwrap();
}

#[test]
fn a_site_ca_cannot_act_as_another_sites_attestor() {
    let w = world();
    let leaf = forged_leaf(&w.site_a, SITE_B_ATTESTOR, w.now);
    let err = verify(&w, &leaf, &[&w.site_a, &w.hub], SITE_B_ATTESTOR).unwrap_err();
    assert!(format!("{err:?}").contains("OutOfScope"), "{err}");
}

#[test]
fn a_hub_cannot_act_as_a_site_attestor_directly() {
    let w = world();
    let leaf = forged_leaf(&w.hub, SITE_A_ATTESTOR, w.now);
    let err = verify(&w, &leaf, &[&w.hub], SITE_A_ATTESTOR).unwrap_err();
    assert!(format!("{err:?}").contains("OutOfScope"), "{err}");
}

#[test]
fn a_sub_ca_minted_under_a_stolen_site_ca_is_refused() {
    // The thief gives itself a "site-b" CA below site-a's (signed with site-a's key: rcgen does
    // not ask about roles or path lengths).
    let w = world();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 72]),
        "site/site-b",
    );
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org".to_owned().try_into().unwrap(),
    )];
    params.not_before = w.now - Duration::minutes(5);
    params.not_after = w.now + Duration::days(1);
    let site_a_key = rcgen::KeyPair::from_pem(&w.site_a.key_pem).unwrap();
    let site_a_cert = w.site_a.authority.certificate().to_vec();
    let signer =
        rcgen::Issuer::from_ca_cert_der(&site_a_cert.as_slice().into(), &site_a_key).unwrap();
    let fake_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let fake_der = params.signed_by(&fake_key, &signer).unwrap().der().to_vec();
    let fake = Ca {
        authority: Authority::new(
            fake_der.clone(),
            garrison_ca::PrivateKey::from_pkcs8_pem(&fake_key.serialize_pem()).unwrap(),
            vec![fake_der],
            w.root.roots().to_vec(),
        )
        .unwrap(),
        key_pem: fake_key.serialize_pem(),
    };
    let leaf = forged_leaf(&fake, SITE_B_ATTESTOR, w.now);
    // webpki already refuses the path length (site CAs have pathLen 0); the role rule would
    // refuse it even without that.
    assert!(verify(&w, &leaf, &[&fake, &w.site_a, &w.hub], SITE_B_ATTESTOR).is_err());
    let roles = [
        Some(CaRole::Site("site-b".into())),
        Some(CaRole::Site("site-a".into())),
        Some(CaRole::Hub),
    ];
    assert!(
        garrison_ca::check_leaf_scope(&SpiffeId::parse(SITE_B_ATTESTOR).unwrap(), &roles).is_err()
    );
}

/// `verify` with `anchors` as the bundle instead of the root (an intermediate someone put in
/// a trust bundle, or the site CA the attestor's client verifier anchors at).
fn verify_under(
    w: &World,
    anchors: &[&Ca],
    leaf: &[u8],
    expected: &str,
) -> Result<(), rustls::Error> {
    let certs: Vec<Vec<u8>> = anchors
        .iter()
        .map(|c| c.authority.certificate().to_vec())
        .collect();
    let bundle = certificates_to_pem(&certs);
    let verifier =
        SpiffeServerVerifier::new(bundle.as_bytes(), SpiffeId::parse(expected).unwrap()).unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &ServerName::try_from("attestor").unwrap(),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(w.now.unix_timestamp()).unwrap(),
            )),
        )
        .map(|_| ())
}

/// A CA that states a role is held to it when it is the trust anchor too: a site CA as
/// anchor vouches for its own site only, a hub CA as anchor for no site leaf directly.
#[test]
fn an_anchor_that_states_a_role_is_held_to_it() {
    let w = world();
    let own = forged_leaf(&w.site_a, SITE_A_ATTESTOR, w.now);
    verify_under(&w, &[&w.site_a], &own, SITE_A_ATTESTOR).unwrap();
    let other = forged_leaf(&w.site_a, SITE_B_ATTESTOR, w.now);
    let err = verify_under(&w, &[&w.site_a], &other, SITE_B_ATTESTOR).unwrap_err();
    assert!(format!("{err:?}").contains("OutOfScope"), "{err}");
    let from_hub = forged_leaf(&w.hub, SITE_A_ATTESTOR, w.now);
    let err = verify_under(&w, &[&w.hub], &from_hub, SITE_A_ATTESTOR).unwrap_err();
    assert!(format!("{err:?}").contains("OutOfScope"), "{err}");
    // Without the anchor's role the path would be empty, which is what a root may issue: a
    // hub CA in a bundle could then vouch for a policy signer.
    let signer = "spiffe://example.org/policy/signer";
    let from_hub = forged_leaf(&w.hub, signer, w.now);
    let err = verify_under(&w, &[&w.hub], &from_hub, signer).unwrap_err();
    assert!(format!("{err:?}").contains("OutOfScope"), "{err}");
}
