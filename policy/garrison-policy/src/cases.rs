//! Case files: an input and the decision it must produce (`garrison policy test`).
//!
//! ```json
//! { "description": "...",
//!   "base": "../../inputs/x.json",          // optional: input file, relative to the case file
//!   "input": { ... },                        // or/and: merged over base (RFC 7396 merge patch)
//!   "want": { "allow": false, "reasons": ["..."], "spiffe_path": "...", "ttl_seconds": 60 } }
//! ```
//! `want.allow` is required; `reasons` (compared as a sorted list), `spiffe_path` and
//! `ttl_seconds` are compared when present. `"want": {"error": "..."}` expects evaluation to
//! fail with an error whose text contains the given string.

use serde::Deserialize;
use serde_json::Value as Json;

use crate::{Decision, PolicyEngine};

/// One parsed case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub description: String,
    /// Input file to start from, relative to the case file (the caller reads it).
    #[serde(default)]
    pub base: Option<String>,
    /// Merge patch over the base, or the whole input when there is no base.
    #[serde(default)]
    pub input: Option<Json>,
    pub want: Want,
}

/// The expected outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    #[serde(default)]
    pub allow: Option<bool>,
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
    #[serde(default)]
    pub spiffe_path: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

impl Case {
    /// Parse a case file.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("case file is malformed: {e}"))
    }

    /// The input: `base` (already read by the caller) with `input` merged over it.
    pub fn build_input(&self, base: Option<Json>) -> Json {
        let mut doc = base.unwrap_or(Json::Null);
        if let Some(patch) = &self.input {
            merge_patch(&mut doc, patch);
        }
        doc
    }

    /// Evaluate and compare; `Err` lists every mismatch.
    pub fn check(&self, engine: &PolicyEngine, input: Json) -> Result<(), Vec<String>> {
        let outcome = engine.evaluate(input);
        match (&self.want.error, outcome) {
            (Some(want), Err(err)) if err.to_string().contains(want.as_str()) => Ok(()),
            (Some(want), other) => Err(vec![format!(
                "want error containing {want:?}, got {other:?}"
            )]),
            (None, Err(err)) => Err(vec![format!("evaluation failed: {err}")]),
            (None, Ok(decision)) => self.compare(&decision),
        }
    }

    fn compare(&self, got: &Decision) -> Result<(), Vec<String>> {
        let mut diffs = Vec::new();
        let want = &self.want;
        if want.allow != Some(got.allow) {
            diffs.push(format!("allow: want {:?}, got {}", want.allow, got.allow));
        }
        if let Some(reasons) = &want.reasons {
            let mut want_sorted = reasons.clone();
            want_sorted.sort();
            let mut got_sorted = got.reasons.clone();
            got_sorted.sort();
            if want_sorted != got_sorted {
                diffs.push(format!("reasons: want {want_sorted:?}, got {got_sorted:?}"));
            }
        }
        if want.spiffe_path.is_some() && want.spiffe_path != got.spiffe_path {
            diffs.push(format!(
                "spiffe_path: want {:?}, got {:?}",
                want.spiffe_path, got.spiffe_path
            ));
        }
        if want.ttl_seconds.is_some() && want.ttl_seconds != got.ttl_seconds {
            diffs.push(format!(
                "ttl_seconds: want {:?}, got {:?}",
                want.ttl_seconds, got.ttl_seconds
            ));
        }
        if diffs.is_empty() { Ok(()) } else { Err(diffs) }
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    let Json::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(serde_json::Map::new());
    }
    if let Json::Object(fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Json::Null), value);
            }
        }
    }
}
