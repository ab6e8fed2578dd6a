//! The input contract (see `policy/README.md` and `policy/input.schema.json`), checked before
//! any policy sees the input.
//!
//! Only the shape the host relies on is enforced: the top-level sections are objects,
//! `request.kind` is `enroll` or `renew`, and `request.time` is an RFC 3339 time. The host then
//! sets `request.time_unix` (seconds) from `request.time`, since policies have no clock or
//! time-parsing builtins.

use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PolicyError;

/// Sections that must be present and objects.
const REQUIRED_OBJECTS: [&str; 4] = ["tpm", "boot", "site", "request"];
/// Sections that may be absent but must be objects when present.
const OPTIONAL_OBJECTS: [&str; 2] = ["pcrs", "node"];

/// Check the input's shape and add `request.time_unix`.
pub fn check_input(input: Json) -> Result<Json, PolicyError> {
    let Json::Object(mut top) = input else {
        return Err(PolicyError::InputContract {
            field: "input",
            expected: "an object",
        });
    };
    for field in REQUIRED_OBJECTS {
        if !top.get(field).is_some_and(Json::is_object) {
            return Err(PolicyError::InputContract {
                field,
                expected: "an object",
            });
        }
    }
    for field in OPTIONAL_OBJECTS {
        if top.get(field).is_some_and(|v| !v.is_object()) {
            return Err(PolicyError::InputContract {
                field,
                expected: "an object when present",
            });
        }
    }
    if let Some(Json::Object(request)) = top.get_mut("request") {
        check_request(request)?;
    }
    Ok(Json::Object(top))
}

fn check_request(request: &mut Map<String, Json>) -> Result<(), PolicyError> {
    match request.get("kind").and_then(Json::as_str) {
        Some("enroll" | "renew") => {}
        _ => {
            return Err(PolicyError::InputContract {
                field: "request.kind",
                expected: "\"enroll\" or \"renew\"",
            });
        }
    }
    let time = request
        .get("time")
        .and_then(Json::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or(PolicyError::InputContract {
            field: "request.time",
            expected: "an RFC 3339 time",
        })?;
    request.insert("time_unix".to_owned(), Json::from(time.unix_timestamp()));
    Ok(())
}
