//! The decision contract: what `data.garrison.admission` must produce, read deny-by-default.

use serde::Serialize;
use serde_json::Value as Json;

/// The rules of `data.garrison.admission` a decision is read from.
pub const DECISION_RULES: [&str; 4] = ["allow", "spiffe_path", "ttl_seconds", "reasons"];
/// Longest SPIFFE ID path a policy may return.
pub const MAX_SPIFFE_PATH_LEN: usize = 2048;
/// Most reasons kept from one decision; the rest are summarised.
pub const MAX_REASONS: usize = 64;
/// Longest reason kept (longer ones are cut).
pub const MAX_REASON_LEN: usize = 512;

/// An admission decision. `allow` is true only when the policy said exactly `allow = true`,
/// gave a valid `spiffe_path` and a positive integer `ttl_seconds`, and no reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// A SPIFFE ID path (`/site/a/node/x`), present only on allow.
    pub spiffe_path: Option<String>,
    /// Requested SVID lifetime, present only on allow.
    pub ttl_seconds: Option<u64>,
    /// Why the request was denied: the policy's reasons, then any contract violations
    /// (prefixed `decision:`).
    pub reasons: Vec<String>,
    /// Hex SHA-256 of the bundle manifest that decided.
    pub bundle_digest: String,
}

impl Decision {
    /// Read the host wrapper's output `{rule: [value]}` (an empty array = rule undefined).
    pub(crate) fn from_output(output: &Json, bundle_digest: &str) -> Self {
        let field = |name: &str| -> Option<&Json> {
            match output.get(name)?.as_array()?.as_slice() {
                [value] => Some(value),
                _ => None,
            }
        };
        let mut violations = Vec::new();
        let allow = read_allow(field("allow"), &mut violations);
        let reasons = read_reasons(field("reasons"), &mut violations);
        let (spiffe_path, ttl_seconds) = if allow {
            (
                read_spiffe_path(field("spiffe_path"), &mut violations),
                read_ttl(field("ttl_seconds"), &mut violations),
            )
        } else {
            (None, None)
        };
        if allow && !reasons.is_empty() {
            violations.push("decision: allow is true but reasons are present".to_owned());
        }
        let allowed = allow && violations.is_empty() && reasons.is_empty();
        let mut all_reasons = reasons;
        all_reasons.extend(violations);
        if !allowed && all_reasons.is_empty() {
            all_reasons.push("decision: denied without a reason".to_owned());
        }
        Decision {
            allow: allowed,
            spiffe_path: spiffe_path.filter(|_| allowed),
            ttl_seconds: ttl_seconds.filter(|_| allowed),
            reasons: all_reasons,
            bundle_digest: bundle_digest.to_owned(),
        }
    }
}

fn read_allow(value: Option<&Json>, violations: &mut Vec<String>) -> bool {
    match value {
        Some(Json::Bool(b)) => *b,
        None => {
            violations.push("decision: allow is undefined".to_owned());
            false
        }
        Some(_) => {
            violations.push("decision: allow is not a boolean".to_owned());
            false
        }
    }
}

fn read_reasons(value: Option<&Json>, violations: &mut Vec<String>) -> Vec<String> {
    let Some(value) = value else {
        violations.push("decision: reasons is undefined".to_owned());
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        violations.push("decision: reasons is not an array (or set) of strings".to_owned());
        return Vec::new();
    };
    let mut reasons = Vec::new();
    for item in items {
        match item.as_str() {
            Some(text) => reasons.push(cut(text)),
            None => {
                violations.push("decision: reasons contains a non-string".to_owned());
                return Vec::new();
            }
        }
    }
    if reasons.len() > MAX_REASONS {
        let more = reasons.len() - MAX_REASONS;
        reasons.truncate(MAX_REASONS);
        reasons.push(format!("decision: {more} more reasons not shown"));
    }
    reasons
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_LEN) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
    }
}

fn read_spiffe_path(value: Option<&Json>, violations: &mut Vec<String>) -> Option<String> {
    match value.and_then(Json::as_str) {
        Some(path) if valid_spiffe_path(path) => Some(path.to_owned()),
        Some(_) => {
            violations.push("decision: spiffe_path is not a valid SPIFFE ID path".to_owned());
            None
        }
        None => {
            violations.push("decision: spiffe_path is undefined or not a string".to_owned());
            None
        }
    }
}

fn read_ttl(value: Option<&Json>, violations: &mut Vec<String>) -> Option<u64> {
    match value.and_then(Json::as_u64) {
        Some(ttl) if ttl > 0 => Some(ttl),
        _ => {
            violations.push("decision: ttl_seconds is not a positive integer".to_owned());
            None
        }
    }
}

/// A SPIFFE ID path: `/seg(/seg)*`, segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`.
pub fn valid_spiffe_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= MAX_SPIFFE_PATH_LEN
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(output: Json) -> Decision {
        Decision::from_output(&output, "d")
    }

    #[test]
    fn allow_needs_every_field_well_typed() {
        let ok = decide(
            json!({"allow": [true], "reasons": [[]], "spiffe_path": ["/n/1"], "ttl_seconds": [60]}),
        );
        assert!(ok.allow);
        let ttl_string = decide(
            json!({"allow": [true], "reasons": [[]], "spiffe_path": ["/n/1"], "ttl_seconds": ["60"]}),
        );
        assert!(!ttl_string.allow);
        assert_eq!(
            ttl_string.reasons,
            ["decision: ttl_seconds is not a positive integer"]
        );
        let allow_string = decide(json!({"allow": ["true"], "reasons": [[]]}));
        assert!(!allow_string.allow);
        let missing = decide(json!({}));
        assert!(!missing.allow);
        assert!(
            missing
                .reasons
                .contains(&"decision: allow is undefined".to_owned())
        );
        let bad_path = decide(
            json!({"allow": [true], "reasons": [[]], "spiffe_path": ["/a/../b"], "ttl_seconds": [60]}),
        );
        assert!(!bad_path.allow);
        let float_ttl = decide(
            json!({"allow": [true], "reasons": [[]], "spiffe_path": ["/a"], "ttl_seconds": [1.5]}),
        );
        assert!(!float_ttl.allow);
    }
}
