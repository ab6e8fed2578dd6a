//! The published input schema, checked by an independent validator (the `jsonschema` crate,
//! draft 2020-12, with `format` asserted). Shared by this crate's `tests/input_schema.rs`
//! and the attestor's tests (through `#[path]`), so every producer of policy inputs is held
//! to the one schema by a checker that is not ours.

use serde_json::Value as Json;

/// Every violation of `schema` by `instance`, as `"<JSON pointer>: <problem>"`. Panics if
/// `schema` itself is not a valid draft 2020-12 schema.
pub fn violations(schema: &Json, instance: &Json) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}
