//! Human- and machine-readable summaries of certificates, for operators and auditors.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::CaError;

/// What an auditor wants to see of one certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// pathLenConstraint, if any.
    pub path_len: Option<u32>,
    /// Key usages, by name; `(critical)` is appended when the extension is critical.
    pub key_usage: Vec<String>,
    /// Extended key usages, by name.
    pub extended_key_usage: Vec<String>,
    /// URI SANs (SPIFFE IDs).
    pub uri_sans: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// Public key algorithm and size, e.g. `EC P-256`.
    pub public_key: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256_fingerprint: String,
}

impl CertificateSummary {
    /// Summarise one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|source| CaError::IssuerUnparseable { source })?;
        let constraints = cert.basic_constraints().ok().flatten().map(|ext| ext.value);
        Ok(CertificateSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex::encode(cert.raw_serial()),
            not_before: rfc3339(cert.validity().not_before.to_datetime()),
            not_after: rfc3339(cert.validity().not_after.to_datetime()),
            is_ca: constraints.is_some_and(|bc| bc.ca),
            path_len: constraints.and_then(|bc| bc.path_len_constraint),
            key_usage: key_usage(&cert),
            extended_key_usage: extended_key_usage(&cert),
            uri_sans: sans(&cert, |name| match name {
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            }),
            dns_sans: sans(&cert, |name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            }),
            public_key: public_key(&cert),
            sha256_fingerprint: hex::encode(ring::digest::digest(&ring::digest::SHA256, der)),
        })
    }

    /// A multi-line text rendering for terminals.
    pub fn to_text(&self) -> String {
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        let path_len = self
            .path_len
            .map_or_else(|| "none".to_owned(), |n| n.to_string());
        format!(
            "subject:     {}\nissuer:      {}\nserial:      {}\nvalid:       {} .. {}\n\
             CA:          {} (path length {})\nkey usage:   {}\next. usage:  {}\n\
             URI SANs:    {}\nDNS SANs:    {}\npublic key:  {}\nSHA-256:     {}\n",
            self.subject,
            self.issuer,
            self.serial,
            self.not_before,
            self.not_after,
            self.is_ca,
            path_len,
            list(&self.key_usage),
            list(&self.extended_key_usage),
            list(&self.uri_sans),
            list(&self.dns_sans),
            self.public_key,
            self.sha256_fingerprint,
        )
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn key_usage(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(ext) = cert.key_usage().ok().flatten() else {
        return Vec::new();
    };
    let ku = ext.value;
    let names = [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ];
    let mut out: Vec<String> = names
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    if ext.critical {
        out.push("(critical)".to_owned());
    }
    out
}

fn extended_key_usage(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(ext) = cert.extended_key_usage().ok().flatten() else {
        return Vec::new();
    };
    let eku = ext.value;
    let mut out: Vec<String> = [
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
        (eku.any, "anyExtendedKeyUsage"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| (*name).to_owned())
    .collect();
    out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    out
}

fn sans(
    cert: &X509Certificate<'_>,
    pick: impl Fn(&GeneralName<'_>) -> Option<String>,
) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.iter().filter_map(&pick).collect())
        .unwrap_or_default()
}

fn public_key(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => format!("EC P-{}", point.key_size()),
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(_) => "other".to_owned(),
        Err(_) => "unparseable".to_owned(),
    }
}
