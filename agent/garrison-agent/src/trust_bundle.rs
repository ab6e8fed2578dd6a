//! The trust bundle the agent writes for its workloads (`bundle.pem`): the bootstrap anchors,
//! always, plus what the attestor sent that those anchors vouch for.
//!
//! The attestor is authenticated by the bootstrap bundle (the configured `trust_bundle` file,
//! as first provisioned), but a compromised attestor or a stolen site CA must not be able to
//! make this node's workloads trust roots of its choosing. So:
//!
//! * every bootstrap anchor is written, whatever the attestor sends, in the configured order;
//! * a certificate the attestor sends is added only if a bootstrap anchor issued it (its
//!   issuer name is the anchor's subject and its signature verifies under the anchor's key),
//!   it is a CA (basicConstraints cA) and it is valid now: a new root cross-signed by the
//!   current one, which is how a root rotation is announced;
//! * a certificate that states a CA role (`hub`, `policy`, `site/<name>`: see
//!   `garrison_ca::scope`) is an intermediate, never an anchor, and is not added: as an
//!   anchor it would answer for what only the path through it may (a hub CA could then
//!   vouch for a policy signer directly);
//! * nothing is added transitively: a CA issued by an added certificate is not added (an
//!   intermediate turned anchor would shed the path-length limits above it, so a site CA could
//!   mint anchors), and a self-signed certificate is never added on its own say-so;
//! * the new root's own self-signed certificate is added in place of its cross-signed one
//!   when it has exactly that certificate's name, key and basic constraints, signs itself,
//!   states no role and is valid now (the same anchor, in the form every verifier takes). A bootstrap anchor vouched for that name and key, and only the
//!   holder of that key can sign it. Verifiers such as OpenSSL need it: they build to a
//!   self-signed anchor and hold the old root's path length against a chain through the
//!   cross-signed certificate (root → cross-signed root → hub → site is one CA too many for a
//!   root with path length 2);
//! * everything else is ignored and returned in [`MergedBundle::ignored`], which the caller
//!   logs.
//!
//! Dropping or replacing a bootstrap anchor is the operator's act (re-provision the file),
//! never the attestor's.

use std::time::SystemTime;

use x509_parser::prelude::{FromDer as _, X509Certificate};

/// What the agent writes, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedBundle {
    /// DER certificates: the bootstrap anchors, then the accepted ones the attestor sent.
    pub anchors: Vec<Vec<u8>>,
    /// Certificates the attestor sent that were not accepted.
    pub ignored: Vec<IgnoredCertificate>,
}

/// A certificate from the attestor's trust bundle that the agent did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredCertificate {
    /// Its subject (RFC 4514), or `unparseable`.
    pub subject: String,
    /// Why it was ignored.
    pub reason: IgnoredBecause,
}

/// Why a certificate the attestor sent was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoredBecause {
    /// It is not DER X.509 we can parse.
    Unparseable,
    /// No bootstrap anchor issued it (names do not chain or no signature verifies).
    NotIssuedByAnAnchor,
    /// A bootstrap anchor issued it, but it is not a CA certificate.
    NotACa,
    /// A bootstrap anchor issued it, but it is not valid at the current time.
    NotValidNow,
    /// A bootstrap anchor issued it, but it states a CA role (or one we cannot read): an
    /// intermediate, not a root.
    StatesARole,
    /// A bootstrap anchor issued it, but it has not a root's path length (at least 2: room
    /// for a hub and a site CA below it), as the containment rule requires of a cross-signed
    /// root.
    NotRootShaped,
}

impl std::fmt::Display for IgnoredBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unparseable => "not a parseable certificate",
            Self::NotIssuedByAnAnchor => "not issued by a bootstrap trust anchor",
            Self::NotACa => "issued by a bootstrap anchor but not a CA certificate",
            Self::NotValidNow => "issued by a bootstrap anchor but not valid now",
            Self::StatesARole => {
                "issued by a bootstrap anchor but states a CA role: an intermediate, not a root"
            }
            Self::NotRootShaped => {
                "issued by a bootstrap anchor but without a root's path length (at least 2)"
            }
        })
    }
}

/// The bundle to write from the `bootstrap` anchors and the certificates the attestor `sent`
/// (all DER), judged at `now`.
pub fn merge(bootstrap: &[Vec<u8>], sent: &[Vec<u8>], now: SystemTime) -> MergedBundle {
    let anchors: Vec<X509Certificate<'_>> = bootstrap
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    let mut merged = MergedBundle {
        anchors: bootstrap.to_vec(),
        ignored: Vec::new(),
    };
    let mut cross_signed_der = Vec::new();
    let mut unvouched = Vec::new();
    for der in sent {
        if merged.anchors.contains(der) {
            continue;
        }
        match judge(der, &anchors, now) {
            Ok(()) => {
                merged.anchors.push(der.clone());
                cross_signed_der.push(der.clone());
            }
            Err(ignored) => unvouched.push((der, ignored)),
        }
    }
    let cross_signed: Vec<X509Certificate<'_>> = cross_signed_der
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect();
    let mut twins = Vec::new();
    for (der, ignored) in unvouched {
        if !merged.anchors.contains(der) && is_twin_of_one(der, &cross_signed, now) {
            twins.push(der.clone());
        } else {
            merged.ignored.push(ignored);
        }
    }
    // A cross-signed certificate whose self-signed twin is written is left out: it is the
    // same anchor (name and key), and OpenSSL, finding it first, would build through it to
    // the old root and hold that root's path length against the chain.
    let twin_keys: Vec<Vec<u8>> = twins
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok())
        .map(|(_, cert)| cert.public_key().raw.to_vec())
        .collect();
    let replaced: Vec<&Vec<u8>> = cross_signed_der
        .iter()
        .filter(|der| {
            X509Certificate::from_der(der).is_ok_and(|(_, cross)| {
                twin_keys
                    .iter()
                    .any(|key| key.as_slice() == cross.public_key().raw)
            })
        })
        .collect();
    merged.anchors.retain(|der| !replaced.contains(&der));
    merged.anchors.extend(twins);
    merged
}

/// Whether `der` is the self-signed form of one of the accepted cross-signed roots: the same
/// name, key and basic constraints, signed by itself, no role, valid at `now`.
fn is_twin_of_one(der: &[u8], cross_signed: &[X509Certificate<'_>], now: SystemTime) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    let constraints = |c: &X509Certificate<'_>| {
        c.basic_constraints()
            .ok()
            .flatten()
            .map(|bc| (bc.value.ca, bc.value.path_len_constraint))
    };
    issued_by(&cert, &cert)
        && cert.is_ca()
        && valid_at(&cert, now)
        && matches!(garrison_ca::CaRole::of_certificate(&cert), Ok(None))
        && cross_signed.iter().any(|cross| {
            cross.subject().as_raw() == cert.subject().as_raw()
                && cross.public_key().raw == cert.public_key().raw
                && constraints(cross) == constraints(&cert)
        })
}

/// Accepts `der` if an anchor issued it, it is a CA, valid at `now`, and states no CA role.
fn judge(
    der: &[u8],
    anchors: &[X509Certificate<'_>],
    now: SystemTime,
) -> Result<(), IgnoredCertificate> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Err(IgnoredCertificate {
            subject: "unparseable".to_owned(),
            reason: IgnoredBecause::Unparseable,
        });
    };
    let ignored = |reason| IgnoredCertificate {
        subject: cert.subject().to_string(),
        reason,
    };
    if !anchors.iter().any(|anchor| issued_by(&cert, anchor)) {
        return Err(ignored(IgnoredBecause::NotIssuedByAnAnchor));
    }
    if !cert.is_ca() {
        return Err(ignored(IgnoredBecause::NotACa));
    }
    if !valid_at(&cert, now) {
        return Err(ignored(IgnoredBecause::NotValidNow));
    }
    if !matches!(garrison_ca::CaRole::of_certificate(&cert), Ok(None)) {
        return Err(ignored(IgnoredBecause::StatesARole));
    }
    if !garrison_ca::is_root_shaped(&cert) {
        return Err(ignored(IgnoredBecause::NotRootShaped));
    }
    Ok(())
}

/// Whether `issuer` issued `cert`: names chain and the signature verifies under its key.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn valid_at(cert: &X509Certificate<'_>, now: SystemTime) -> bool {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => return false,
    };
    let validity = cert.validity();
    (validity.not_before.timestamp()..=validity.not_after.timestamp()).contains(&now)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2027-06-01 00:00 UTC);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.unix_timestamp().try_into().unwrap())
    }

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
    }

    fn params(name: &str, ca: bool) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Constrained(2))
        } else {
            IsCa::ExplicitNoCa
        };
        params.not_before = datetime!(2027-01-01 00:00 UTC);
        params.not_after = datetime!(2028-01-01 00:00 UTC);
        params
    }

    impl Ca {
        fn new(name: &str) -> Self {
            Self {
                params: params(name, true),
                key: KeyPair::generate().unwrap(),
            }
        }

        fn self_signed(&self) -> Vec<u8> {
            self.params.self_signed(&self.key).unwrap().der().to_vec()
        }

        /// `subject`'s certificate, signed by this CA.
        fn sign(&self, subject: &Ca) -> Vec<u8> {
            let issuer = Issuer::from_params(&self.params, &self.key);
            subject
                .params
                .signed_by(&subject.key, &issuer)
                .unwrap()
                .der()
                .to_vec()
        }
    }

    fn subjects(ignored: &[IgnoredCertificate]) -> Vec<(&str, IgnoredBecause)> {
        ignored
            .iter()
            .map(|i| (i.subject.as_str(), i.reason))
            .collect()
    }

    #[test]
    fn a_foreign_root_never_replaces_the_bootstrap_anchors() {
        let root = Ca::new("Garrison Root");
        let attacker = Ca::new("Garrison Root");
        let bootstrap = vec![root.self_signed()];
        let merged = merge(&bootstrap, &[attacker.self_signed()], now());
        assert_eq!(merged.anchors, bootstrap);
        assert_eq!(
            subjects(&merged.ignored),
            [("CN=Garrison Root", IgnoredBecause::NotIssuedByAnAnchor)]
        );
        // Nothing sent, or the bootstrap anchors echoed back: the bootstrap anchors, unchanged.
        assert_eq!(merge(&bootstrap, &[], now()).anchors, bootstrap);
        let echoed = merge(&bootstrap, &bootstrap, now());
        assert_eq!(echoed.anchors, bootstrap);
        assert!(echoed.ignored.is_empty());
    }

    #[test]
    fn only_certificates_an_anchor_issued_are_added() {
        let root = Ca::new("Root 1");
        let next_root = Ca::new("Root 2");
        let bootstrap = vec![root.self_signed()];
        let cross_signed = root.sign(&next_root);
        // The new root's own self-signed form: same name and key as the cross-signed one.
        let twin = next_root.self_signed();
        // A self-signed certificate with that name but another key: vouched for by nobody.
        let impostor = Ca::new("Root 2").self_signed();
        // A CA below the cross-signed root: not added transitively.
        let below = next_root.sign(&Ca::new("Site CA"));
        // A leaf the root issued, and an expired CA the root issued.
        let leaf = root.sign(&Ca {
            params: params("node", false),
            key: KeyPair::generate().unwrap(),
        });
        let mut old = Ca::new("Old Root");
        old.params.not_after = datetime!(2027-02-01 00:00 UTC);
        let expired = root.sign(&old);
        let sent = vec![
            bootstrap[0].clone(),
            twin.clone(),
            impostor,
            cross_signed.clone(),
            below,
            leaf,
            expired,
            b"junk".to_vec(),
        ];
        let merged = merge(&bootstrap, &sent, now());
        // The twin stands in for its cross-signed certificate (the same anchor).
        assert_eq!(merged.anchors, [bootstrap[0].clone(), twin.clone()]);
        let without_twin = merge(&bootstrap, std::slice::from_ref(&cross_signed), now());
        assert_eq!(
            without_twin.anchors,
            [bootstrap[0].clone(), cross_signed.clone()]
        );
        assert_eq!(
            subjects(&merged.ignored),
            [
                ("CN=Root 2", IgnoredBecause::NotIssuedByAnAnchor),
                ("CN=Site CA", IgnoredBecause::NotIssuedByAnAnchor),
                ("CN=node", IgnoredBecause::NotACa),
                ("CN=Old Root", IgnoredBecause::NotValidNow),
                ("unparseable", IgnoredBecause::Unparseable),
            ]
        );
    }

    #[test]
    fn a_ca_without_a_roots_path_length_is_not_a_new_root() {
        let root = Ca::new("Root 1");
        let mut short = Ca::new("Short");
        short.params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        let bootstrap = vec![root.self_signed()];
        let merged = merge(&bootstrap, &[root.sign(&short)], now());
        assert_eq!(merged.anchors, bootstrap);
        assert_eq!(
            subjects(&merged.ignored),
            [("CN=Short", IgnoredBecause::NotRootShaped)]
        );
    }

    #[test]
    fn a_self_signed_root_needs_its_cross_signed_twin_in_the_same_bundle() {
        let root = Ca::new("Root 1");
        let next_root = Ca::new("Root 2");
        let bootstrap = vec![root.self_signed()];
        let merged = merge(&bootstrap, &[next_root.self_signed()], now());
        assert_eq!(merged.anchors, bootstrap);
        assert_eq!(
            subjects(&merged.ignored),
            [("CN=Root 2", IgnoredBecause::NotIssuedByAnAnchor)]
        );
    }

    #[test]
    fn an_intermediate_with_a_role_is_never_added_as_an_anchor() {
        let root = Ca::new("Root 1");
        let bootstrap = vec![root.self_signed()];
        let mut hub = Ca::new("Hub CA");
        hub.params.distinguished_name.push(
            DnType::CustomDnType(vec![2, 5, 4, 72]),
            rcgen::DnValue::Utf8String("hub".into()),
        );
        let hub = root.sign(&hub);
        let merged = merge(&bootstrap, &[hub], now());
        assert_eq!(merged.anchors, bootstrap);
        assert_eq!(
            subjects(&merged.ignored)
                .into_iter()
                .map(|(_, why)| why)
                .collect::<Vec<_>>(),
            [IgnoredBecause::StatesARole]
        );
    }
}
