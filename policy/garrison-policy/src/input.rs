//! The input contract (see `policy/README.md` and `policy/input.schema.json`), checked before
//! any policy sees the input, and the conversion of the input into the VM's values.
//!
//! Only the shape the host relies on is enforced: the top-level sections are objects,
//! `request.kind` is `enroll` or `renew`, and `request.time` is an RFC 3339 time. The host then
//! sets `request.time_unix` (seconds) from `request.time`, since policies have no clock or
//! time-parsing builtins.
//!
//! The conversion walks the caller's JSON by reference and builds regorus values directly
//! (no clone of the input, no serde round trip through regorus' deserializer, which was two
//! thirds of a decision's cost). It also bounds the input: at most [`MAX_INPUT_DEPTH`] levels
//! of nesting, and a lower bound of its JSON size within `EvalLimits::max_input_bytes`, so a
//! value handed in directly meets the same limit as raw bytes.

use std::collections::BTreeMap;

use regorus::Value;
use serde_json::{Map, Number, Value as Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PolicyError;

/// Sections that must be present and objects.
const REQUIRED_OBJECTS: [&str; 4] = ["tpm", "boot", "site", "request"];
/// Sections that may be absent but must be objects when present.
const OPTIONAL_OBJECTS: [&str; 2] = ["pcrs", "node"];
/// The field the host adds to `request`.
const TIME_UNIX: &str = "time_unix";
/// Deepest nesting of arrays and objects accepted in an input (serde_json's parser stops at
/// 128 too, so this only matters for values built in memory).
pub const MAX_INPUT_DEPTH: usize = 128;

/// Check the input's shape and add `request.time_unix`.
pub fn check_input(mut input: Json) -> Result<Json, PolicyError> {
    let time_unix = check_shape(&input)?;
    if let Some(Json::Object(request)) = input.get_mut("request") {
        request.insert(TIME_UNIX.to_owned(), Json::from(time_unix));
    }
    Ok(input)
}

/// Check the input's shape; returns the `request.time_unix` to add.
pub(crate) fn check_shape(input: &Json) -> Result<i64, PolicyError> {
    check_shape_with(input, &[])
}

/// [`check_shape`] for an input whose `sections` are given apart from `input` (already
/// converted). A section may not also appear in `input`.
pub(crate) fn check_shape_with(
    input: &Json,
    sections: &[(&str, &InputSection)],
) -> Result<i64, PolicyError> {
    let Json::Object(top) = input else {
        return Err(PolicyError::InputContract {
            field: "input",
            expected: "an object",
        });
    };
    for (i, (name, _)) in sections.iter().enumerate() {
        let repeated = sections.iter().take(i).any(|(earlier, _)| earlier == name);
        if repeated || top.contains_key(*name) || !is_section_name(name) {
            return Err(PolicyError::InputMalformed {
                reason: format!(
                    "section {name:?} is given twice, or is not a section that may be given apart"
                ),
            });
        }
    }
    // Whether a top-level field is an object, wherever it was given.
    let object = |field: &str| -> Option<bool> {
        sections
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, section)| section.is_object())
            .or_else(|| top.get(field).map(Json::is_object))
    };
    for field in REQUIRED_OBJECTS {
        if object(field) != Some(true) {
            return Err(PolicyError::InputContract {
                field,
                expected: "an object",
            });
        }
    }
    for field in OPTIONAL_OBJECTS {
        if object(field) == Some(false) {
            return Err(PolicyError::InputContract {
                field,
                expected: "an object when present",
            });
        }
    }
    let request = top.get("request").and_then(Json::as_object);
    match request.and_then(|r| r.get("kind")).and_then(Json::as_str) {
        Some("enroll" | "renew") => {}
        _ => {
            return Err(PolicyError::InputContract {
                field: "request.kind",
                expected: "\"enroll\" or \"renew\"",
            });
        }
    }
    request
        .and_then(|r| r.get("time"))
        .and_then(Json::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(OffsetDateTime::unix_timestamp)
        .ok_or(PolicyError::InputContract {
            field: "request.time",
            expected: "an RFC 3339 time",
        })
}

/// The checked input as the VM's value, with `request.time_unix` set (replacing any given).
/// `input` must have passed [`check_shape`]; `max_bytes` bounds its JSON size.
#[cfg(test)]
pub(crate) fn to_rego(
    input: &Json,
    time_unix: i64,
    max_bytes: usize,
) -> Result<Value, PolicyError> {
    to_rego_with(input, &[], time_unix, max_bytes)
}

/// [`to_rego`] with converted `sections` added at the top level (their sizes count towards
/// `max_bytes` too). `input` and `sections` must have passed [`check_shape_with`].
pub(crate) fn to_rego_with(
    input: &Json,
    sections: &[(&str, &InputSection)],
    time_unix: i64,
    max_bytes: usize,
) -> Result<Value, PolicyError> {
    let mut converter = Converter {
        used: 0,
        limit: max_bytes,
    };
    let Json::Object(top) = input else {
        return converter.value(input, 0);
    };
    converter.charge(2)?;
    let mut out = BTreeMap::new();
    for (name, section) in sections {
        converter.charge(
            name.len()
                .saturating_add(3)
                .saturating_add(section.json_bytes),
        )?;
        out.insert(Value::from(*name), section.value.clone());
    }
    for (key, value) in top {
        converter.charge(key.len().saturating_add(3))?;
        let converted = match value {
            Json::Object(request) if key == "request" => {
                converter.object(request, 1, Some((TIME_UNIX, Value::from(time_unix))))?
            }
            other => converter.value(other, 1)?,
        };
        out.insert(Value::from(key.as_str()), converted);
    }
    Ok(Value::from(out))
}

/// Top-level fields that may be given as an [`InputSection`]: any section but `request`,
/// which the host reads (`kind`, `time`) and extends (`time_unix`) for every decision.
fn is_section_name(name: &str) -> bool {
    name != "request" && (REQUIRED_OBJECTS.contains(&name) || OPTIONAL_OBJECTS.contains(&name))
}

/// One top-level section of a policy input (`boot`, `pcrs`, ...), converted once into the
/// VM's representation so that many decisions can share it: a fleet sends the same event
/// log, so the attestor converts its boot claims and PCRs once per distinct log instead of
/// once per request. Cloning is a reference-count increment. It meets the same depth limit
/// as any input, and its JSON size counts towards the input size limit of every decision it
/// is part of.
#[derive(Clone)]
pub struct InputSection {
    value: Value,
    json_bytes: usize,
}

impl InputSection {
    /// Convert `json`; refused when deeper than [`MAX_INPUT_DEPTH`] or larger than
    /// `max_bytes` of JSON.
    pub fn from_json(json: &Json, max_bytes: usize) -> Result<Self, PolicyError> {
        let mut converter = Converter {
            used: 0,
            limit: max_bytes,
        };
        let value = converter.value(json, 1)?;
        Ok(Self {
            value,
            json_bytes: converter.used,
        })
    }

    /// A lower bound of the section's size as compact JSON.
    pub fn json_bytes(&self) -> usize {
        self.json_bytes
    }

    fn is_object(&self) -> bool {
        matches!(self.value, Value::Object(_))
    }
}

impl std::fmt::Debug for InputSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSection")
            .field("json_bytes", &self.json_bytes)
            .finish_non_exhaustive()
    }
}

/// Builds regorus values from JSON, counting a lower bound of the JSON's size: string
/// contents plus quotes, key contents plus quotes and colon, brackets, and one byte per number
/// (`true`/`null` 4, `false` 5). Separators and escapes are not counted, so an input is never
/// refused that would fit the limit as compact JSON.
struct Converter {
    used: usize,
    limit: usize,
}

impl Converter {
    fn charge(&mut self, bytes: usize) -> Result<(), PolicyError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(PolicyError::InputTooLarge {
                limit: self.limit,
                got: self.used,
            });
        }
        Ok(())
    }

    fn value(&mut self, json: &Json, depth: usize) -> Result<Value, PolicyError> {
        Ok(match json {
            Json::Null => {
                self.charge(4)?;
                Value::Null
            }
            Json::Bool(b) => {
                self.charge(if *b { 4 } else { 5 })?;
                Value::from(*b)
            }
            Json::Number(n) => {
                self.charge(1)?;
                number(n)
            }
            Json::String(s) => {
                self.charge(s.len().saturating_add(2))?;
                Value::from(s.as_str())
            }
            Json::Array(items) => {
                self.nest(depth)?;
                self.charge(2)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.value(item, depth.saturating_add(1))?);
                }
                Value::from(out)
            }
            Json::Object(map) => self.object(map, depth, None)?,
        })
    }

    fn object(
        &mut self,
        map: &Map<String, Json>,
        depth: usize,
        extra: Option<(&str, Value)>,
    ) -> Result<Value, PolicyError> {
        self.nest(depth)?;
        self.charge(2)?;
        let mut out = BTreeMap::new();
        for (key, value) in map {
            self.charge(key.len().saturating_add(3))?;
            out.insert(
                Value::from(key.as_str()),
                self.value(value, depth.saturating_add(1))?,
            );
        }
        if let Some((key, value)) = extra {
            out.insert(Value::from(key), value);
        }
        Ok(Value::from(out))
    }

    fn nest(&self, depth: usize) -> Result<(), PolicyError> {
        if depth >= MAX_INPUT_DEPTH {
            return Err(PolicyError::InputMalformed {
                reason: format!("nested deeper than {MAX_INPUT_DEPTH} levels"),
            });
        }
        Ok(())
    }
}

/// The same number regorus' own reader makes from a `serde_json::Value` (u64, i64, else f64;
/// serde_json never holds a non-finite float).
fn number(n: &Number) -> Value {
    if let Some(u) = n.as_u64() {
        Value::from(u)
    } else if let Some(i) = n.as_i64() {
        Value::from(i)
    } else {
        Value::from(n.as_f64().unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    fn sample() -> Json {
        json!({
            "tpm": {"ek_sha256": "ab", "clock": 18_446_744_073_709_551_615_u64, "neg": -5,
                    "f": 1.5, "tiny": 1e-300, "big": 1e300},
            "boot": {"apps": [{"bank": "sha256", "digest": "00"}, [], {}], "sb": null,
                     "on": true, "off": false, "uni": "é\u{0}\"\\"},
            "site": {"id": "a"},
            "request": {"kind": "enroll", "time": "2025-06-01T12:00:00Z", "time_unix": "fake"},
        })
    }

    #[test]
    fn conversion_matches_regorus_reading_the_checked_json() {
        let input = sample();
        let time_unix = check_shape(&input).unwrap();
        let direct = to_rego(&input, time_unix, usize::MAX).unwrap();
        let via_serde = Value::from(check_input(input).unwrap());
        assert_eq!(direct, via_serde);
        assert_eq!(
            direct["request"]["time_unix"],
            Value::from(1_748_779_200_i64)
        );
    }

    #[test]
    fn shipped_inputs_convert_like_regorus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/inputs");
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let input: Json = serde_json::from_slice(&bytes).unwrap();
            let time_unix = check_shape(&input).unwrap();
            let direct = to_rego(&input, time_unix, bytes.len()).unwrap();
            assert_eq!(direct, Value::from(check_input(input).unwrap()));
        }
    }

    #[test]
    fn size_estimate_is_a_lower_bound_and_enforced() {
        let input = sample();
        let compact = serde_json::to_vec(&check_input(input.clone()).unwrap()).unwrap();
        let time_unix = check_shape(&input).unwrap();
        // Fits at its compact size...
        to_rego(&input, time_unix, compact.len()).unwrap();
        // ...and a large string does not fit a small limit.
        let mut big = input.clone();
        big["boot"]["pad"] = Json::from("x".repeat(4096));
        let err = to_rego(&big, time_unix, 4096).unwrap_err();
        assert!(matches!(
            err,
            PolicyError::InputTooLarge { limit: 4096, .. }
        ));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut deep = Json::from(1);
        for _ in 0..MAX_INPUT_DEPTH + 5 {
            deep = Json::Array(vec![deep]);
        }
        let mut input = sample();
        input["boot"]["deep"] = deep;
        let time_unix = check_shape(&input).unwrap();
        let err = to_rego(&input, time_unix, usize::MAX).unwrap_err();
        assert!(matches!(err, PolicyError::InputMalformed { .. }), "{err}");
    }
}
