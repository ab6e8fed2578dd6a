//! What the attestation log establishes about one decision: the input of an attestation
//! result.

use garrison_appraisal::Reason;
use serde_json::Value as Json;
use time::OffsetDateTime;

use crate::EarError;

/// How a decision ended, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An `enroll` record, decision allow.
    Enrolled,
    /// A `renew` record, decision allow.
    Renewed,
    /// A `reject` record, with the reason code it starts with.
    Refused(Reason),
    /// A `revoke` record naming the node (or the certificate its latest allow issued).
    Revoked,
}

/// How the node's EK was trusted when it enrolled (the `trust_basis` the attestor keeps
/// with the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkBasis {
    /// Its EK certificate chained to a configured TPM manufacturer CA.
    ManufacturerCertificate,
    /// INSECURE: its EK hash was on `insecure.allow_listed_ek_hashes`; no certificate checked.
    InsecureAllowList,
}

impl EkBasis {
    /// The basis as the attestor stores it (`format!("{:?}", EkTrustBasis)`), if known.
    pub fn from_stored(stored: &str) -> Option<EkBasis> {
        match stored {
            "ManufacturerCertificate" => Some(EkBasis::ManufacturerCertificate),
            "InsecureAllowList" => Some(EkBasis::InsecureAllowList),
            _ => None,
        }
    }

    /// The name shown in the EAR's verifier claims.
    pub fn name(self) -> &'static str {
        match self {
            EkBasis::ManufacturerCertificate => "manufacturer-certificate",
            EkBasis::InsecureAllowList => "insecure-allow-list",
        }
    }
}

/// The AR4SI claims a policy bundle says its allow establishes, declared by its author in the
/// bundle's signed `data.json`:
///
/// ```json
/// { "ear": { "appraises": ["configuration", "executables"] } }
/// ```
///
/// Garrison cannot see what a Rego policy checks; it takes the signed declaration as the
/// policy signer's word. Without one, an allow makes no claim about them (0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyClaims {
    /// The boot configuration is a known, approved one (e.g. Secure Boot on, debug off,
    /// allow-listed kernel command lines, golden PCR values).
    pub configuration: bool,
    /// Only approved executables were loaded during boot (allow-listed boot applications).
    pub executables: bool,
    /// Only approved files were found (Garrison measures no file system itself: only a policy
    /// over measurements it does not have could say so).
    pub file_system: bool,
}

impl PolicyClaims {
    /// The claim names a policy may declare, in order.
    pub const NAMES: [&'static str; 3] = ["configuration", "executables", "file-system"];

    /// The declaration in a bundle's `data.json` (the whole document). No `ear` key: nothing
    /// declared. Anything but the shape above is refused, never read in part.
    pub fn from_policy_data(data: &Json) -> Result<PolicyClaims, EarError> {
        let refuse = |reason: &str| EarError::PolicyDeclaration {
            reason: reason.to_owned(),
        };
        let Some(declaration) = data.get("ear") else {
            return Ok(PolicyClaims::default());
        };
        let object = declaration
            .as_object()
            .ok_or_else(|| refuse("`ear` is not an object"))?;
        if let Some(key) = object.keys().find(|k| k.as_str() != "appraises") {
            return Err(refuse(&format!("unknown key `ear.{key}`")));
        }
        let names = object
            .get("appraises")
            .and_then(Json::as_array)
            .ok_or_else(|| refuse("`ear.appraises` is not an array"))?;
        let mut claims = PolicyClaims::default();
        for name in names {
            match name.as_str() {
                Some("configuration") => claims.configuration = true,
                Some("executables") => claims.executables = true,
                Some("file-system") => claims.file_system = true,
                _ => {
                    return Err(refuse(&format!(
                        "`ear.appraises` holds {name}, not one of {:?}",
                        Self::NAMES
                    )));
                }
            }
        }
        Ok(claims)
    }

    /// The names declared, in [`Self::NAMES`] order.
    pub fn names(self) -> Vec<&'static str> {
        let [configuration, executables, file_system] = Self::NAMES;
        [
            (self.configuration, configuration),
            (self.executables, executables),
            (self.file_system, file_system),
        ]
        .into_iter()
        .filter_map(|(declared, name)| declared.then_some(name))
        .collect()
    }
}

/// One decision as the log holds it, with what else the log says about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFacts {
    /// The log's origin, `garrison.<td>/site/<site>`.
    pub origin: String,
    /// The record's sequence number in that log.
    pub sequence: u64,
    /// The record's RFC 6962 leaf hash.
    pub leaf_hash: [u8; 32],
    /// When the decision was made (the record's time): the EAR's `iat`.
    pub time: OffsetDateTime,
    /// How it ended.
    pub outcome: Outcome,
    /// The record's kind as logged (`enroll`, `renew`, `reject`, `revoke`).
    pub kind: String,
    /// The node (EK public key hash, hex).
    pub node_id: String,
    /// The SPIFFE ID decided, if any.
    pub spiffe_id: Option<String>,
    /// The record's reasons (a refusal's code, then its detail).
    pub reasons: Vec<String>,
    /// Digest of the policy bundle that decided, once policy ran.
    pub policy_digest: Option<String>,
    /// Serial (hex) of the certificate issued.
    pub cert_serial: Option<String>,
    /// How the node's EK was trusted, if known.
    pub ek_basis: Option<EkBasis>,
    /// What the deciding policy declares it appraises.
    pub policy_claims: PolicyClaims,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_policy_declares_claims_in_its_data_or_declares_none() {
        let declared = |data: Json| PolicyClaims::from_policy_data(&data);
        assert_eq!(
            declared(json!({"strict": {}})).unwrap(),
            PolicyClaims::default()
        );
        let both = declared(json!({"ear": {"appraises": ["executables", "configuration"]}}));
        assert_eq!(
            both.unwrap(),
            PolicyClaims {
                configuration: true,
                executables: true,
                file_system: false
            }
        );
        assert_eq!(
            declared(json!({"ear": {"appraises": ["file-system"]}}))
                .unwrap()
                .names(),
            ["file-system"]
        );
        for bad in [
            json!({"ear": []}),
            json!({"ear": {}}),
            json!({"ear": {"appraises": "executables"}}),
            json!({"ear": {"appraises": ["hardware"]}}),
            json!({"ear": {"appraises": [3]}}),
            json!({"ear": {"appraises": [], "values": {}}}),
        ] {
            assert!(
                matches!(
                    declared(bad.clone()),
                    Err(EarError::PolicyDeclaration { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ek_bases_read_back_as_the_attestor_stores_them() {
        // What garrison-appraisal stores: the evidence crate's basis, by Debug name.
        use garrison_evidence::EkTrustBasis as Stored;
        for (stored, basis) in [
            (
                Stored::ManufacturerCertificate,
                EkBasis::ManufacturerCertificate,
            ),
            (Stored::InsecureAllowList, EkBasis::InsecureAllowList),
        ] {
            assert_eq!(EkBasis::from_stored(&format!("{stored:?}")), Some(basis));
        }
        assert_eq!(EkBasis::from_stored("manufacturer-certificate"), None);
    }
}
