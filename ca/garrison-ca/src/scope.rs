//! What a CA may vouch for: its place in the hierarchy.
//!
//! Site intermediates are online at exposed sites, so one must be assumed stolen some day.
//! What a stolen site CA can do is bounded by this rule, which every Garrison verifier
//! enforces (agent, attestor, policy bundle check) and which [`crate::Authority`] enforces
//! when it issues:
//!
//! * Every intermediate CA states its **role** in its subject, as the X.520 `role` attribute
//!   (OID 2.5.4.72, a UTF8String): `hub`, `policy`, or `site/<name>`. SPIFFE verifiers ignore
//!   subject attributes, and the X.509-SVID specification forbids a path in a signing
//!   certificate's SPIFFE ID, so this is where the role lives. The root (the trust anchor)
//!   has no role; an intermediate without one vouches for nothing.
//! * A leaf under `/site/<name>/` must be issued by the `site/<name>` CA, and every CA above
//!   that one (up to the anchor) must be a `hub` CA.
//! * A leaf under `/policy/` (a policy signer) chains to the root through `policy` CAs only,
//!   or directly: never through a site or hub CA.
//! * Any other leaf (`/hub/…`, `/auditor/…`) chains to the root through `hub` CAs only.
//! * Which CA may issue which: root and hub issue `hub` and `site/…` CAs; root and policy CAs
//!   issue `policy` CAs; a site CA issues no CA at all.
//! * **Role identities are reserved.** `/site/<name>/attestor` and `/site/<name>/log` (and
//!   anything below them) are never issued through [`crate::Authority::issue_svid`], the path
//!   node SVIDs take; the site's own services get theirs from
//!   [`crate::Authority::issue_site_role_svid`] only. Likewise `/hub/witness` (the key that
//!   cosigns every site's checkpoints and signs the revocation list) comes from
//!   [`crate::Authority::issue_hub_role_svid`], by a hub CA, and from nowhere else.

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::CaError;
use crate::spiffe_id::SpiffeId;

/// The X.520 `role` attribute type (id-at-role).
pub(crate) const ROLE_ATTRIBUTE_OID: [u64; 4] = [2, 5, 4, 72];
const ROLE_ATTRIBUTE_OID_TEXT: &str = "2.5.4.72";

/// Path segments that name a site's own services. No node SVID may start with one of them.
pub const RESERVED_SITE_ROLES: [&str; 2] = ["attestor", "log"];

/// Path segments under `/hub/` that name the hub's own services. No SVID from
/// [`crate::Authority::issue_svid`] may start with one of them.
pub const RESERVED_HUB_ROLES: [&str; 1] = ["witness"];

/// The role of an intermediate CA.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaRole {
    /// The hub intermediate: issues site intermediates and hub-level leaves.
    Hub,
    /// A site intermediate: issues leaves under `/site/<name>/` only.
    Site(String),
    /// A policy CA: issues policy signers (`/policy/…`) and further policy CAs only.
    Policy,
}

/// A service of a site that holds a reserved identity under `/site/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SiteRole {
    /// The site attestor's server certificate: `/site/<name>/attestor`.
    Attestor,
    /// The key that signs the site's attestation-log checkpoints: `/site/<name>/log`.
    Log,
}

impl SiteRole {
    /// The path segment after `/site/<name>/`.
    pub fn segment(self) -> &'static str {
        match self {
            SiteRole::Attestor => "attestor",
            SiteRole::Log => "log",
        }
    }
}

/// A service of the hub that holds a reserved identity under `/hub/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubRole {
    /// The hub's witness key: it cosigns the site checkpoints it accepts and signs the
    /// revocation list, `/hub/witness`. Its certificate certifies an Ed25519 key
    /// ([`crate::SubjectKey::LogKey`]).
    Witness,
}

impl HubRole {
    /// The path segment after `/hub/`.
    pub fn segment(self) -> &'static str {
        match self {
            HubRole::Witness => "witness",
        }
    }
}

impl CaRole {
    /// Parse the text form (`hub`, `policy`, `site/<name>`).
    pub fn parse(text: &str) -> Result<Self, CaError> {
        match text {
            "hub" => Ok(CaRole::Hub),
            "policy" => Ok(CaRole::Policy),
            _ => match text.strip_prefix("site/") {
                Some(site) if is_site_name(site) => Ok(CaRole::Site(site.to_owned())),
                _ => Err(CaError::BadCaRole {
                    role: text.chars().take(80).collect(),
                }),
            },
        }
    }

    /// The site this CA serves, for a site CA.
    pub fn site(&self) -> Option<&str> {
        match self {
            CaRole::Site(site) => Some(site),
            CaRole::Hub | CaRole::Policy => None,
        }
    }

    /// The role a certificate states, `None` when it states none (a root, or a CA made
    /// before roles existed). More than one role, or one we cannot read, is an error.
    pub fn of_certificate(cert: &X509Certificate<'_>) -> Result<Option<Self>, CaError> {
        Self::of_name(cert.subject())
    }

    /// The role a trust anchor states, from its subject as webpki's `TrustAnchor` keeps it:
    /// the contents of the Name, without its SEQUENCE tag and length.
    pub fn of_anchor_subject(contents: &[u8]) -> Result<Option<Self>, CaError> {
        let too_long = || CaError::BadCaRole {
            role: "trust anchor subject too long".to_owned(),
        };
        let mut der = vec![0x30];
        match u8::try_from(contents.len()) {
            Ok(short) if short < 0x80 => der.push(short),
            _ => {
                let bytes: Vec<u8> = contents
                    .len()
                    .to_be_bytes()
                    .into_iter()
                    .skip_while(|b| *b == 0)
                    .collect();
                der.push(0x80 | u8::try_from(bytes.len()).map_err(|_| too_long())?);
                der.extend(bytes);
            }
        }
        der.extend_from_slice(contents);
        let (rest, name) =
            x509_parser::x509::X509Name::from_der(&der).map_err(|_| CaError::BadCaRole {
                role: "trust anchor subject does not parse".to_owned(),
            })?;
        if !rest.is_empty() {
            return Err(CaError::BadCaRole {
                role: "trust anchor subject has trailing bytes".to_owned(),
            });
        }
        Self::of_name(&name)
    }

    fn of_name(name: &x509_parser::x509::X509Name<'_>) -> Result<Option<Self>, CaError> {
        let mut roles = name
            .iter_attributes()
            .filter(|attr| attr.attr_type().to_id_string() == ROLE_ATTRIBUTE_OID_TEXT);
        let Some(first) = roles.next() else {
            return Ok(None);
        };
        if roles.next().is_some() {
            return Err(CaError::BadCaRole {
                role: "more than one role attribute".to_owned(),
            });
        }
        let text = first.as_str().map_err(|_| CaError::BadCaRole {
            role: "role attribute is not a string".to_owned(),
        })?;
        CaRole::parse(text).map(Some)
    }

    /// [`CaRole::of_certificate`] for DER bytes.
    pub fn of_der(der: &[u8]) -> Result<Option<Self>, CaError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|source| CaError::IssuerUnparseable { source })?;
        CaRole::of_certificate(&cert)
    }

    /// May a CA of role `issuer` (`None`: the root) issue a CA of role `self`?
    pub fn may_be_issued_by(&self, issuer: Option<&CaRole>) -> bool {
        matches!(
            (self, issuer),
            (CaRole::Hub | CaRole::Site(_), None | Some(CaRole::Hub))
                | (CaRole::Policy, None | Some(CaRole::Policy))
        )
    }
}

impl fmt::Display for CaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaRole::Hub => f.write_str("hub"),
            CaRole::Policy => f.write_str("policy"),
            CaRole::Site(site) => write!(f, "site/{site}"),
        }
    }
}

/// A site name: one SPIFFE path segment of letters, digits, `.`, `-`, `_`, 1 to 64 bytes,
/// not `.` or `..`.
pub fn is_site_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Which CA roles may stand above a leaf with this identity.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeafClass<'a> {
    Site(&'a str),
    Policy,
    Other,
}

/// The one SPIFFE ID (`spiffe://` URI SAN) of an X.509-SVID, or `None` if it has none,
/// several, or more than one SAN extension. Not checked as a SPIFFE ID: parse it with
/// [`SpiffeId::parse`](crate::SpiffeId::parse).
pub fn spiffe_uri(cert: &X509Certificate<'_>) -> Option<String> {
    let mut sans = cert
        .extensions()
        .iter()
        .filter_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        });
    let san = sans.next()?;
    let mut ids = san.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some((*uri).to_owned())
        }
        _ => None,
    });
    let id = ids.next()?;
    // An SVID carries exactly one SPIFFE ID, in exactly one SAN extension.
    (ids.next().is_none() && sans.next().is_none()).then_some(id)
}

/// The site an identity belongs to: `<s>` of `/site/<s>/...`, `None` outside `/site/`.
pub fn site_of(id: &SpiffeId) -> Option<&str> {
    let rest = id.path().strip_prefix("/site/")?;
    rest.split('/').next().filter(|site| !site.is_empty())
}

fn leaf_class(id: &SpiffeId) -> LeafClass<'_> {
    if let Some(site) = site_of(id) {
        return LeafClass::Site(site);
    }
    let path = id.path();
    if path.starts_with("/site/") {
        return LeafClass::Site("");
    }
    if path.starts_with("/policy/") {
        return LeafClass::Policy;
    }
    LeafClass::Other
}

/// The role identity of a site's service, or `None` for an ordinary (node) identity.
/// `/site/<s>/attestor`, `/site/<s>/log` and anything below them are role identities.
pub fn reserved_site_role(id: &SpiffeId) -> Option<&'static str> {
    let LeafClass::Site(site) = leaf_class(id) else {
        return None;
    };
    let rest = id.path().get("/site/".len() + site.len()..)?;
    let first = rest.strip_prefix('/')?.split('/').next()?;
    RESERVED_SITE_ROLES.into_iter().find(|role| *role == first)
}

/// The hub role identity an ID names, or `None` for any other identity. `/hub/witness` and
/// anything below it are role identities.
pub fn reserved_hub_role(id: &SpiffeId) -> Option<&'static str> {
    let first = id.path().strip_prefix("/hub/")?.split('/').next()?;
    RESERVED_HUB_ROLES.into_iter().find(|role| *role == first)
}

/// Check that the CAs between a leaf and the trust anchor may vouch for the leaf's ID.
///
/// `issuers` are the roles of the intermediates actually on the verified path, the leaf's
/// issuer first and the CA just below the anchor last (empty when the anchor issued the leaf
/// directly). Use the path a verifier built, never the list a peer sent.
pub fn check_leaf_scope(id: &SpiffeId, issuers: &[Option<CaRole>]) -> Result<(), CaError> {
    let refuse = |why: &'static str| CaError::OutOfScope {
        id: id.to_string(),
        chain: issuers
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or_else(|| "no role".to_owned(), |r| r.to_string())
            })
            .collect::<Vec<_>>()
            .join(" < "),
        why,
    };
    match leaf_class(id) {
        LeafClass::Site(site) => {
            let Some((first, above)) = issuers.split_first() else {
                return Err(refuse("a site identity must be issued by that site's CA"));
            };
            if first.as_ref().and_then(CaRole::site) != Some(site) {
                return Err(refuse("a site identity must be issued by that site's CA"));
            }
            if !above.iter().all(|r| r == &Some(CaRole::Hub)) {
                return Err(refuse("only hub CAs may stand above a site CA"));
            }
        }
        LeafClass::Policy => {
            if !issuers.iter().all(|r| r == &Some(CaRole::Policy)) {
                return Err(refuse(
                    "a policy signer chains to the root through policy CAs only",
                ));
            }
        }
        LeafClass::Other => {
            if !issuers.iter().all(|r| r == &Some(CaRole::Hub)) {
                return Err(refuse(
                    "identities outside /site/ and /policy/ chain through hub CAs only",
                ));
            }
        }
    }
    Ok(())
}

/// [`check_leaf_scope`] over DER certificates (the leaf's issuer first, the anchor excluded).
pub fn check_leaf_scope_der<'a>(
    id: &SpiffeId,
    issuers: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), CaError> {
    check_path_scope_der(id, issuers, None)
}

/// [`check_leaf_scope_der`] for a path a verifier built, with the role of the trust anchor
/// it ended at (`None` for a root, which states none). An anchor that states a role (a site
/// CA as the anchor of the attestor's client verifier, or an intermediate someone put in a
/// trust bundle) is held to it like an intermediate just below the root: a hub CA made an
/// anchor still cannot vouch for a policy signer, nor a site CA for another site.
pub fn check_path_scope_der<'a>(
    id: &SpiffeId,
    issuers: impl IntoIterator<Item = &'a [u8]>,
    anchor: Option<CaRole>,
) -> Result<(), CaError> {
    let issuers: Vec<&[u8]> = issuers.into_iter().collect();
    // Roots cross-signed by the anchor (a root rotation), at the top of the path, stand for
    // the new root they certify: they are not counted as intermediates.
    let below_roots = issuers
        .iter()
        .rposition(|der| !is_cross_signed_root(der))
        .map_or(0, |last| last + 1);
    let mut roles = issuers
        .iter()
        .take(below_roots)
        .map(|der| CaRole::of_der(der))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(role) = anchor {
        roles.push(Some(role));
    }
    check_leaf_scope(id, &roles)
}

/// A CA with a root's path length: at least 2, room for a hub and a site CA below it. What
/// a cross-signed root must be, for the containment rule, for hubs and sites announcing it,
/// and for agents taking it.
pub fn is_root_shaped(cert: &X509Certificate<'_>) -> bool {
    cert.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca && bc.value.path_len_constraint.is_some_and(|n| n >= 2))
}

/// A root's certificate issued by another root (`Authority::cross_sign`): a CA that states no
/// role, is not self-signed, and has the path length of a root (at least 2: room for a hub
/// and a site CA below it). A CA without a role and a shorter path length is an intermediate
/// that vouches for nothing, and stays refused wherever it appears.
fn is_cross_signed_root(der: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    is_root_shaped(&cert)
        && cert.subject() != cert.issuer()
        && matches!(CaRole::of_certificate(&cert), Ok(None))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(path: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap()
    }

    fn site(name: &str) -> Option<CaRole> {
        Some(CaRole::Site(name.to_owned()))
    }

    #[test]
    fn roles_round_trip_through_text() {
        for role in [CaRole::Hub, CaRole::Policy, CaRole::Site("a-1.b_c".into())] {
            assert_eq!(CaRole::parse(&role.to_string()).unwrap(), role);
        }
        for bad in [
            "", "site/", "site/..", "site/a/b", "Hub", "site/a b", "root",
        ] {
            assert!(CaRole::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_site_leaf_needs_its_own_site_ca_under_hubs() {
        let node = id("/site/a/node/n1");
        assert!(check_leaf_scope(&node, &[site("a")]).is_ok());
        assert!(check_leaf_scope(&node, &[site("a"), Some(CaRole::Hub)]).is_ok());
        assert!(check_leaf_scope(&node, &[site("b"), Some(CaRole::Hub)]).is_err());
        assert!(check_leaf_scope(&node, &[Some(CaRole::Hub)]).is_err());
        assert!(check_leaf_scope(&node, &[]).is_err());
        assert!(check_leaf_scope(&node, &[None]).is_err());
        assert!(check_leaf_scope(&node, &[site("a"), site("a")]).is_err());
        assert!(check_leaf_scope(&node, &[site("a"), None]).is_err());
        // "/site/ab" is not under "/site/a/".
        assert!(check_leaf_scope(&id("/site/ab/node/n"), &[site("a")]).is_err());
    }

    #[test]
    fn a_policy_signer_never_chains_through_a_site_or_hub_ca() {
        let signer = id("/policy/ops");
        assert!(check_leaf_scope(&signer, &[]).is_ok());
        assert!(check_leaf_scope(&signer, &[Some(CaRole::Policy)]).is_ok());
        assert!(check_leaf_scope(&signer, &[site("a")]).is_err());
        assert!(check_leaf_scope(&signer, &[site("a"), Some(CaRole::Hub)]).is_err());
        assert!(check_leaf_scope(&signer, &[Some(CaRole::Hub)]).is_err());
        assert!(check_leaf_scope(&signer, &[Some(CaRole::Policy), None]).is_err());
    }

    #[test]
    fn other_identities_chain_through_hubs_only() {
        let auditor = id("/auditor/alice");
        assert!(check_leaf_scope(&auditor, &[]).is_ok());
        assert!(check_leaf_scope(&auditor, &[Some(CaRole::Hub)]).is_ok());
        assert!(check_leaf_scope(&auditor, &[site("a")]).is_err());
        assert!(check_leaf_scope(&auditor, &[Some(CaRole::Policy)]).is_err());
    }

    #[test]
    fn role_identities_are_recognised_and_node_identities_are_not() {
        assert_eq!(
            reserved_site_role(&id("/site/a/attestor")),
            Some("attestor")
        );
        assert_eq!(
            reserved_site_role(&id("/site/a/attestor/x")),
            Some("attestor")
        );
        assert_eq!(reserved_site_role(&id("/site/a/log")), Some("log"));
        assert_eq!(reserved_site_role(&id("/site/a/node/attestor")), None);
        assert_eq!(reserved_site_role(&id("/site/a/attestors")), None);
        assert_eq!(reserved_site_role(&id("/site/attestor")), None);
        assert_eq!(reserved_site_role(&id("/hub/attestor")), None);
    }

    #[test]
    fn hub_role_identities_are_recognised_and_others_are_not() {
        assert_eq!(reserved_hub_role(&id("/hub/witness")), Some("witness"));
        assert_eq!(reserved_hub_role(&id("/hub/witness/x")), Some("witness"));
        assert_eq!(reserved_hub_role(&id("/hub/witnesses")), None);
        assert_eq!(reserved_hub_role(&id("/hub/server")), None);
        assert_eq!(reserved_hub_role(&id("/hubs/witness")), None);
        assert_eq!(reserved_hub_role(&id("/site/a/hub/witness")), None);
        assert_eq!(reserved_hub_role(&id("/witness")), None);
        assert_eq!(
            format!("/hub/{}", HubRole::Witness.segment()),
            "/hub/witness"
        );
        assert!(RESERVED_HUB_ROLES.contains(&HubRole::Witness.segment()));
    }

    #[test]
    fn which_ca_may_issue_which() {
        let s = CaRole::Site("a".into());
        assert!(CaRole::Hub.may_be_issued_by(None));
        assert!(CaRole::Hub.may_be_issued_by(Some(&CaRole::Hub)));
        assert!(s.may_be_issued_by(None));
        assert!(s.may_be_issued_by(Some(&CaRole::Hub)));
        assert!(!s.may_be_issued_by(Some(&s)));
        assert!(!CaRole::Hub.may_be_issued_by(Some(&s)));
        assert!(!CaRole::Policy.may_be_issued_by(Some(&s)));
        assert!(!CaRole::Policy.may_be_issued_by(Some(&CaRole::Hub)));
        assert!(CaRole::Policy.may_be_issued_by(None));
        assert!(CaRole::Policy.may_be_issued_by(Some(&CaRole::Policy)));
        assert!(!s.may_be_issued_by(Some(&CaRole::Policy)));
    }
}
