//! An issuing certificate authority and the rules it signs by.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::csr::VerifiedCsr;
use crate::error::CaError;
use crate::key::{KeyAlgorithm, PrivateKey};
use crate::scope::{self, CaRole, HubRole, ROLE_ATTRIBUTE_OID, SiteRole};
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// How far notBefore is backdated to tolerate clock skew between issuer and relying parties.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// The organisation written into every subject Garrison issues.
const ORGANIZATION: &str = "Garrison";

/// Where the subject's public key comes from.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubjectKey {
    /// Generate a new key pair; the private key is returned with the certificate.
    Generate(KeyAlgorithm),
    /// Certify the key of a verified CSR; no private key is returned.
    Csr(VerifiedCsr),
    /// Certify this Ed25519 public key (32 bytes): a signing key of a transparency log or
    /// witness, which signs notes (checkpoints, cosignatures, revocation lists), not TLS.
    /// Only [`Authority::issue_site_role_svid`] with [`SiteRole::Log`] (the site's log key)
    /// and [`Authority::issue_hub_role_svid`] with [`HubRole::Witness`] (the hub's witness
    /// key) take it.
    LogKey([u8; 32]),
}

/// Path length of a new intermediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathLen {
    /// One less than the issuer's (root → hub → site needs this at each step).
    OneBelowIssuer,
    /// Exactly this value, which must be below the issuer's.
    Exactly(u8),
}

/// What a new root CA should be. Every field is explicit: there are no default lifetimes.
#[derive(Debug, Clone)]
pub struct RootParams {
    /// The trust domain the root anchors (written as the `spiffe://<td>` URI SAN).
    pub trust_domain: TrustDomain,
    /// Subject common name.
    pub name: String,
    /// Lifetime from now.
    pub ttl: Duration,
    /// pathLenConstraint; 2 allows root → hub → site → leaf.
    pub path_len: u8,
    /// Key algorithm of the root key.
    pub key_algorithm: KeyAlgorithm,
}

/// What a new intermediate (hub, site or policy) CA should be.
#[derive(Debug)]
pub struct IntermediateParams {
    /// Subject common name, e.g. `site-a`.
    pub name: String,
    /// What the new CA may vouch for (see [`crate::scope`]); written into its subject.
    pub role: CaRole,
    /// Lifetime from now; refused, not truncated, if it would outlive the issuer.
    pub ttl: Duration,
    /// pathLenConstraint of the new CA.
    pub path_len: PathLen,
    /// Its public key.
    pub subject_key: SubjectKey,
}

/// What a new leaf X.509-SVID should be.
#[derive(Debug)]
pub struct SvidParams {
    /// The identity; must have a path and be in the issuer's trust domain.
    pub spiffe_id: SpiffeId,
    /// Requested lifetime from now; capped at the issuer's notAfter.
    pub ttl: Duration,
    /// The longest lifetime this issuer hands out; a longer request is refused.
    pub max_ttl: Duration,
    /// Its public key.
    pub subject_key: SubjectKey,
}

/// A freshly issued certificate with everything needed to use or store it.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// The private key, when it was generated here.
    pub key: Option<PrivateKey>,
    /// This certificate followed by its issuers, excluding the root (empty for a root).
    pub chain: Vec<Vec<u8>>,
    /// The trust anchors (root certificates), DER.
    pub roots: Vec<Vec<u8>>,
    /// notBefore as written.
    pub not_before: OffsetDateTime,
    /// notAfter as written.
    pub not_after: OffsetDateTime,
    /// Serial number bytes (positive, 128 random bits).
    pub serial: Vec<u8>,
    /// True when the requested lifetime was cut to the issuer's notAfter (leaves only).
    pub capped_at_issuer_expiry: bool,
}

/// What the authority knows about its own certificate.
#[derive(Debug, Clone)]
struct CaFacts {
    subject: String,
    trust_domain: TrustDomain,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    path_len: Option<u8>,
}

/// A CA certificate with its private key, able to issue intermediates and SVIDs.
#[derive(Debug)]
pub struct Authority {
    certificate: Vec<u8>,
    key: PrivateKey,
    chain: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
    facts: CaFacts,
    /// The roles of this CA and of each CA above it, up to but excluding the root (empty for
    /// a root).
    chain_roles: Vec<Option<CaRole>>,
}

impl Authority {
    /// Create a self-signed root CA.
    pub fn new_root(
        params: &RootParams,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        check_ttl(params.ttl)?;
        let key = PrivateKey::generate(params.key_algorithm, rng)?;
        let mut cert = ca_params(&params.name, &params.trust_domain, params.path_len)?;
        cert.not_before = now - CLOCK_SKEW_ALLOWANCE;
        cert.not_after = now + params.ttl;
        let serial = random_serial(rng)?;
        cert.serial_number = Some(SerialNumber::from_slice(&serial));
        let der = cert
            .self_signed(key.key_pair())
            .map_err(|source| CaError::Signing { source })?
            .der()
            .to_vec();
        Ok(Issued {
            roots: vec![der.clone()],
            certificate: der,
            key: Some(key),
            chain: Vec::new(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            serial,
            capped_at_issuer_expiry: false,
        })
    }

    /// Load an issuer from its certificate, key, chain (itself up to but excluding the root;
    /// empty for a root) and roots, checking that it is fit to sign certificates.
    pub fn new(
        certificate: Vec<u8>,
        key: PrivateKey,
        chain: Vec<Vec<u8>>,
        roots: Vec<Vec<u8>>,
    ) -> Result<Self, CaError> {
        let facts = ca_facts(&certificate, &key)?;
        let chain_roles = chain
            .iter()
            .map(|der| CaRole::of_der(der))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authority {
            certificate,
            key,
            chain,
            roots,
            facts,
            chain_roles,
        })
    }

    /// Turn an issued CA certificate (with its generated key) into an issuer.
    pub fn from_issued(issued: Issued) -> Result<Self, CaError> {
        let key = issued.key.ok_or(CaError::KeyUnparseable)?;
        Authority::new(issued.certificate, key, issued.chain, issued.roots)
    }

    /// Issue an intermediate CA below this one.
    pub fn issue_intermediate(
        &self,
        params: IntermediateParams,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        self.check_valid_at(now)?;
        check_ttl(params.ttl)?;
        let path_len = self.child_path_len(params.path_len)?;
        let issuer_role = self.role()?;
        if !params.role.may_be_issued_by(issuer_role)
            || matches!(params.subject_key, SubjectKey::LogKey(_))
        {
            return Err(CaError::RoleNotIssuable {
                requested: params.role.to_string(),
                issuer: issuer_role.map_or_else(|| "root".to_owned(), ToString::to_string),
            });
        }
        let requested_not_after = now + params.ttl;
        if requested_not_after > self.facts.not_after {
            return Err(CaError::TtlExceedsIssuer {
                requested_not_after,
                issuer_not_after: self.facts.not_after,
            });
        }
        let mut cert = ca_params(&params.name, &self.facts.trust_domain, path_len)?;
        cert.distinguished_name.push(
            DnType::CustomDnType(ROLE_ATTRIBUTE_OID.to_vec()),
            params.role.to_string(),
        );
        cert.not_before = self.backdated(now);
        cert.not_after = requested_not_after;
        self.sign(cert, params.subject_key, rng, false)
    }

    /// Cross-sign a new root: a CA certificate with the subject, key and path length of the
    /// self-signed root `new_root` (DER), issued by this root. Holders of this root only
    /// (agents' bootstrap bundles) can then verify chains that end at the new root, which is
    /// how a root rotation is announced; the overlap lasts until this certificate's notAfter,
    /// the earlier of the two roots' expiry. Only a root cross-signs, only a root of its own
    /// trust domain, and never itself.
    pub fn cross_sign(
        &self,
        new_root: &[u8],
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        self.check_valid_at(now)?;
        if self.role()?.is_some() {
            return Err(self.refuse_role("a cross-signed root".to_owned()));
        }
        let (_, cert) = X509Certificate::from_der(new_root)
            .map_err(|source| CaError::IssuerUnparseable { source })?;
        let subject = cert.subject().to_string();
        let refuse = |why: &str| CaError::RoleNotIssuable {
            requested: format!("a cross-signed root ({why}): {subject}"),
            issuer: "root".to_owned(),
        };
        if cert.subject() != cert.issuer() || new_root == self.certificate.as_slice() {
            return Err(refuse("not a self-signed root other than this one"));
        }
        let constraints = cert
            .basic_constraints()
            .ok()
            .flatten()
            .map(|ext| ext.value)
            .filter(|bc| bc.ca)
            .ok_or_else(|| refuse("not a CA"))?;
        if ca_trust_domain(&cert).as_ref() != Some(&self.facts.trust_domain) {
            return Err(refuse("another trust domain"));
        }
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| refuse("no common name"))?
            .to_owned();
        let path_len = constraints
            .path_len_constraint
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| refuse("no path length"))?;
        let mut params = ca_params(&name, &self.facts.trust_domain, path_len)?;
        params.not_before = self.backdated(now);
        params.not_after = cert
            .validity()
            .not_after
            .to_datetime()
            .min(self.facts.not_after);
        let serial = random_serial(rng)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let issuer =
            Issuer::from_ca_cert_der(&self.certificate.as_slice().into(), self.key.key_pair())
                .map_err(|source| CaError::Signing { source })?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(cert.public_key().raw).map_err(|_| {
            CaError::CsrKeyUnacceptable {
                reason: "the new root's public key is not one we certify",
            }
        })?;
        let der = params
            .signed_by(&spki, &issuer)
            .map_err(|source| CaError::Signing { source })?
            .der()
            .to_vec();
        Ok(Issued {
            chain: vec![der.clone()],
            roots: self.roots.clone(),
            certificate: der,
            key: None,
            not_before: params.not_before,
            not_after: params.not_after,
            serial,
            capped_at_issuer_expiry: false,
        })
    }

    /// Issue a leaf X.509-SVID for `params.spiffe_id`.
    ///
    /// notAfter is the earlier of now + TTL and the issuer's notAfter; [`Issued`] says when
    /// the issuer's expiry was the limit. The ID must be one this CA may vouch for
    /// ([`scope::check_leaf_scope`]) and must not be a role identity of a site
    /// ([`scope::reserved_site_role`]) or of the hub ([`scope::reserved_hub_role`]): those
    /// come from [`Authority::issue_site_role_svid`] and [`Authority::issue_hub_role_svid`].
    pub fn issue_svid(
        &self,
        params: SvidParams,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        if matches!(params.subject_key, SubjectKey::LogKey(_)) {
            return Err(CaError::RoleNotIssuable {
                requested: "SVID for a transparency-log key".to_owned(),
                issuer: self.role_text(),
            });
        }
        check_not_reserved(&params.spiffe_id)?;
        self.issue_leaf(params, now, rng)
    }

    /// Issue the SVID of one of this site's own services (`/site/<site>/<role>`). Only a site
    /// CA can, and only for its own site; node SVIDs never take this path.
    pub fn issue_site_role_svid(
        &self,
        role: SiteRole,
        ttl: Duration,
        subject_key: SubjectKey,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        if matches!(subject_key, SubjectKey::LogKey(_)) != (role == SiteRole::Log) {
            return Err(self.refuse_role(format!("{} with this kind of key", role.segment())));
        }
        let site = self
            .role()?
            .and_then(CaRole::site)
            .ok_or_else(|| self.refuse_role(role.segment().to_owned()))?;
        let path = format!("/site/{site}/{}", role.segment());
        self.issue_role_leaf(&path, ttl, subject_key, now, rng)
    }

    /// Issue the SVID of one of the hub's own services (`/hub/<role>`). Only a hub CA can:
    /// the root and site or policy CAs are refused. [`HubRole::Witness`] certifies an Ed25519
    /// key and nothing else ([`SubjectKey::LogKey`]).
    pub fn issue_hub_role_svid(
        &self,
        role: HubRole,
        ttl: Duration,
        subject_key: SubjectKey,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        let needs_note_key = match role {
            HubRole::Witness => true,
        };
        if matches!(subject_key, SubjectKey::LogKey(_)) != needs_note_key {
            return Err(self.refuse_role(format!("hub/{} with this kind of key", role.segment())));
        }
        if self.role()? != Some(&CaRole::Hub) {
            return Err(self.refuse_role(format!("hub/{}", role.segment())));
        }
        let path = format!("/hub/{}", role.segment());
        self.issue_role_leaf(&path, ttl, subject_key, now, rng)
    }

    /// A role identity's SVID at `path`, for exactly `ttl` (no separate maximum: the role
    /// paths are called by the CA's own services with their configured lifetime).
    fn issue_role_leaf(
        &self,
        path: &str,
        ttl: Duration,
        subject_key: SubjectKey,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        let params = SvidParams {
            spiffe_id: SpiffeId::from_path(&self.facts.trust_domain, path)?,
            ttl,
            max_ttl: ttl,
            subject_key,
        };
        self.issue_leaf(params, now, rng)
    }

    fn refuse_role(&self, requested: String) -> CaError {
        CaError::RoleNotIssuable {
            requested,
            issuer: self.role_text(),
        }
    }

    fn issue_leaf(
        &self,
        params: SvidParams,
        now: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<Issued, CaError> {
        self.check_valid_at(now)?;
        check_ttl(params.ttl)?;
        if params.ttl > params.max_ttl {
            return Err(CaError::TtlTooLong {
                requested_seconds: params.ttl.whole_seconds(),
                max_seconds: params.max_ttl.whole_seconds(),
            });
        }
        self.check_svid_id(&params.spiffe_id)?;
        let wanted_not_after = now + params.ttl;
        let capped = wanted_not_after > self.facts.not_after;
        let mut cert = svid_params(&params.spiffe_id)?;
        cert.not_before = self.backdated(now);
        cert.not_after = wanted_not_after.min(self.facts.not_after);
        self.sign(cert, params.subject_key, rng, capped)
    }

    /// The trust domain this authority issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.facts.trust_domain
    }

    /// The CA certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The chain from this CA up to but excluding the root.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The trust anchors.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// The CA certificate's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.facts.not_after
    }

    /// The CA certificate's validity period.
    pub fn validity(&self) -> crate::lifecycle::Validity {
        crate::lifecycle::Validity {
            not_before: self.facts.not_before,
            not_after: self.facts.not_after,
        }
    }

    /// The CA certificate's subject distinguished name.
    pub fn subject(&self) -> &str {
        &self.facts.subject
    }

    /// The CA's pathLenConstraint (`None`: unconstrained).
    pub fn path_len(&self) -> Option<u8> {
        self.facts.path_len
    }

    /// This CA's role: `None` for a root. An intermediate without a role is an error: it
    /// vouches for nothing, so it may not issue.
    pub fn role(&self) -> Result<Option<&CaRole>, CaError> {
        match self.chain_roles.first() {
            None => Ok(None),
            Some(Some(role)) => Ok(Some(role)),
            Some(None) => Err(CaError::IssuerWithoutRole {
                subject: self.facts.subject.clone(),
            }),
        }
    }

    fn role_text(&self) -> String {
        match self.chain_roles.first() {
            None => "root".to_owned(),
            Some(None) => "no role".to_owned(),
            Some(Some(role)) => role.to_string(),
        }
    }

    fn check_valid_at(&self, now: OffsetDateTime) -> Result<(), CaError> {
        if now > self.facts.not_after {
            return Err(CaError::IssuerExpired {
                not_after: self.facts.not_after,
                now,
            });
        }
        if now < self.facts.not_before {
            return Err(CaError::IssuerNotYetValid {
                not_before: self.facts.not_before,
                now,
            });
        }
        Ok(())
    }

    fn child_path_len(&self, wanted: PathLen) -> Result<u8, CaError> {
        match (self.facts.path_len, wanted) {
            (Some(0), _) => Err(CaError::PathLengthExhausted { issuer_path_len: 0 }),
            (Some(issuer), PathLen::OneBelowIssuer) => Ok(issuer - 1),
            (Some(issuer), PathLen::Exactly(requested)) if requested >= issuer => {
                Err(CaError::PathLengthNotDecreasing {
                    requested,
                    issuer_path_len: issuer,
                })
            }
            (_, PathLen::Exactly(requested)) => Ok(requested),
            (None, PathLen::OneBelowIssuer) => Err(CaError::PathLengthRequired),
        }
    }

    fn check_svid_id(&self, id: &SpiffeId) -> Result<(), CaError> {
        if id.path().is_empty() {
            return Err(CaError::SvidWithoutPath { id: id.to_string() });
        }
        if id.trust_domain_name() != self.facts.trust_domain.as_str() {
            return Err(CaError::TrustDomainMismatch {
                requested: id.trust_domain_name().to_owned(),
                issuer: self.facts.trust_domain.to_string(),
            });
        }
        scope::check_leaf_scope(id, &self.chain_roles)
    }

    fn backdated(&self, now: OffsetDateTime) -> OffsetDateTime {
        (now - CLOCK_SKEW_ALLOWANCE).max(self.facts.not_before)
    }

    fn sign(
        &self,
        mut cert: CertificateParams,
        subject_key: SubjectKey,
        rng: &dyn SecureRandom,
        capped_at_issuer_expiry: bool,
    ) -> Result<Issued, CaError> {
        let serial = random_serial(rng)?;
        cert.serial_number = Some(SerialNumber::from_slice(&serial));
        let issuer =
            Issuer::from_ca_cert_der(&self.certificate.as_slice().into(), self.key.key_pair())
                .map_err(|source| CaError::Signing { source })?;
        let (der, key) =
            match subject_key {
                SubjectKey::Generate(alg) => {
                    let key = PrivateKey::generate(alg, rng)?;
                    let der = cert.signed_by(key.key_pair(), &issuer);
                    (der, Some(key))
                }
                SubjectKey::Csr(csr) => {
                    let spki = rcgen::SubjectPublicKeyInfo::from_der(csr.public_key_der())
                        .map_err(|_| CaError::CsrKeyUnacceptable {
                            reason: "public key algorithm not supported for issuance",
                        })?;
                    (cert.signed_by(&spki, &issuer), None)
                }
                SubjectKey::LogKey(public) => {
                    let spki = rcgen::SubjectPublicKeyInfo::from_der(&ed25519_spki(&public))
                        .map_err(|_| CaError::CsrKeyUnacceptable {
                            reason: "Ed25519 public key not accepted for issuance",
                        })?;
                    (cert.signed_by(&spki, &issuer), None)
                }
            };
        let der = der
            .map_err(|source| CaError::Signing { source })?
            .der()
            .to_vec();
        Ok(Issued {
            chain: self.child_chain(&der),
            roots: self.roots.clone(),
            certificate: der,
            key,
            not_before: cert.not_before,
            not_after: cert.not_after,
            serial,
            capped_at_issuer_expiry,
        })
    }

    fn child_chain(&self, child: &[u8]) -> Vec<Vec<u8>> {
        std::iter::once(child.to_vec())
            .chain(self.chain.iter().cloned())
            .collect()
    }
}

/// Refuse the role identities of a site or of the hub: they have their own issuance paths.
fn check_not_reserved(id: &SpiffeId) -> Result<(), CaError> {
    let reserved = scope::reserved_site_role(id)
        .map(|role| ("site", role))
        .or_else(|| scope::reserved_hub_role(id).map(|role| ("hub", role)));
    match reserved {
        Some((holder, role)) => Err(CaError::ReservedIdentity {
            id: id.to_string(),
            holder,
            role,
        }),
        None => Ok(()),
    }
}

fn check_ttl(ttl: Duration) -> Result<(), CaError> {
    if ttl.is_positive() {
        Ok(())
    } else {
        Err(CaError::TtlNotPositive {
            seconds: ttl.whole_seconds(),
        })
    }
}

fn ca_params(name: &str, td: &TrustDomain, path_len: u8) -> Result<CertificateParams, CaError> {
    let chars = name.chars().count();
    if chars == 0 || chars > 64 {
        return Err(CaError::BadCaName { len: chars });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(Some(name));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![uri_san(td.spiffe_id().as_str())?];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn svid_params(id: &SpiffeId) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(None);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = vec![uri_san(id.as_str())?];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn distinguished_name(common_name: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

fn uri_san(uri: &str) -> Result<SanType, CaError> {
    let ia5 = uri
        .to_owned()
        .try_into()
        .map_err(|source| CaError::Signing { source })?;
    Ok(SanType::URI(ia5))
}

/// 16 random bytes with the top bit cleared: a positive 128-bit-long serial number.
fn random_serial(rng: &dyn SecureRandom) -> Result<Vec<u8>, CaError> {
    let mut serial = [0u8; 16];
    rng.fill(&mut serial).map_err(|_| CaError::Random)?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial.to_vec())
}

fn ca_facts(der: &[u8], key: &PrivateKey) -> Result<CaFacts, CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| CaError::IssuerUnparseable { source })?;
    let subject = cert.subject().to_string();
    let constraints = cert
        .basic_constraints()
        .ok()
        .flatten()
        .map(|ext| ext.value)
        .filter(|bc| bc.ca)
        .ok_or_else(|| CaError::IssuerNotCa {
            subject: subject.clone(),
        })?;
    let can_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign());
    if !can_sign {
        return Err(CaError::IssuerLacksKeyCertSign { subject });
    }
    if cert.public_key().raw != key.public_key_der().as_slice() {
        return Err(CaError::IssuerKeyMismatch);
    }
    Ok(CaFacts {
        trust_domain: ca_trust_domain(&cert).ok_or_else(|| CaError::IssuerWithoutTrustDomain {
            subject: subject.clone(),
        })?,
        subject,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        path_len: constraints
            .path_len_constraint
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
    })
}

/// Checks a cross-signed root ([`Authority::cross_sign`]) against the current `roots` at
/// `now`: issued by one of them (names chain and its signature verifies), a CA stating no CA
/// role (a root's certificate, not an intermediate's), of the same trust domain, valid now.
/// What a hub publishes and a site accepts before announcing a new root to its agents.
pub fn verify_cross_signed(
    der: &[u8],
    roots: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| CaError::IssuerUnparseable { source })?;
    let subject = cert.subject().to_string();
    let refuse = |why: &str| CaError::RoleNotIssuable {
        requested: format!("{subject} as a new root ({why})"),
        issuer: "the current roots".to_owned(),
    };
    if !scope::is_root_shaped(&cert) || CaRole::of_der(der)?.is_some() {
        return Err(refuse(
            "not a root CA certificate with path length 2 or more",
        ));
    }
    if !valid_at(&cert, now) {
        return Err(refuse("not valid now"));
    }
    let td = ca_trust_domain(&cert).ok_or_else(|| refuse("no trust domain"))?;
    let issued_by_a_root = roots.iter().any(|root| {
        X509Certificate::from_der(root).is_ok_and(|(_, root)| {
            root.subject() == cert.issuer()
                && ca_trust_domain(&root).as_ref() == Some(&td)
                && cert.verify_signature(Some(root.public_key())).is_ok()
        })
    });
    if !issued_by_a_root {
        return Err(refuse("no current root of its trust domain issued it"));
    }
    Ok(())
}

/// Checks the self-signed certificate of a new root against the cross-signed ones already
/// accepted (`cross_signed`, DER): the same name, key and basic constraints as one of them,
/// signed by its own key, no role, valid at `now`. Verifiers that build to a self-signed
/// anchor (OpenSSL) need it beside the cross-signed one.
pub fn verify_root_twin(
    der: &[u8],
    cross_signed: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| CaError::IssuerUnparseable { source })?;
    let refuse = |why: &str| CaError::RoleNotIssuable {
        requested: format!("{} as a new root ({why})", cert.subject()),
        issuer: "the current roots".to_owned(),
    };
    if !valid_at(&cert, now) {
        return Err(refuse("not valid now"));
    }
    if cert.subject() != cert.issuer()
        || cert.verify_signature(None).is_err()
        || CaRole::of_der(der)?.is_some()
    {
        return Err(refuse("not a self-signed root"));
    }
    let constraints = |c: &X509Certificate<'_>| {
        c.basic_constraints()
            .ok()
            .flatten()
            .map(|bc| (bc.value.ca, bc.value.path_len_constraint))
    };
    let twin = cross_signed.iter().any(|other| {
        X509Certificate::from_der(other).is_ok_and(|(_, other)| {
            other.subject() == cert.subject()
                && other.public_key().raw == cert.public_key().raw
                && constraints(&other) == constraints(&cert)
        })
    });
    if !twin {
        return Err(refuse(
            "no cross-signed certificate with its name, key and constraints",
        ));
    }
    Ok(())
}

/// Whether `now` is within the certificate's validity period.
fn valid_at(cert: &X509Certificate<'_>, now: OffsetDateTime) -> bool {
    let validity = cert.validity();
    validity.not_before.to_datetime() <= now && now <= validity.not_after.to_datetime()
}

/// The validity period of a DER certificate.
pub fn validity_of_der(der: &[u8]) -> Result<crate::lifecycle::Validity, CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| CaError::IssuerUnparseable { source })?;
    Ok(crate::lifecycle::Validity {
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

fn ca_trust_domain(cert: &X509Certificate<'_>) -> Option<TrustDomain> {
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => SpiffeId::parse(uri)
            .ok()
            .filter(|id| id.path().is_empty())
            .map(|id| id.trust_domain()),
        _ => None,
    })
}

/// DER SubjectPublicKeyInfo of an Ed25519 public key (RFC 8410 §4): the algorithm
/// identifier 1.3.101.112 with no parameters, then the 32 key bytes.
fn ed25519_spki(public: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(public);
    der
}
