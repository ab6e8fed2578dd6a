//! The reference of a configuration file, rendered as Markdown from the JSON Schema of the
//! type it is parsed into. One Markdown table per TOML table: key, type, default, description.

use schemars::Schema;
use serde_json::{Map, Value};

/// The schema keyword that names a key's type as an operator writes it (`duration`, `path`,
/// `socket address`) where the JSON type alone (`string`) would not say. Set on a field with
/// `#[schemars(extend("x-toml-type" = "duration"))]`.
pub const TYPE_EXTENSION: &str = "x-toml-type";

/// Why a reference could not be written. Each names the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The key has no description: its field has no doc comment.
    #[error("{file}: key `{key}` has no description (give its field a doc comment)")]
    Undocumented {
        /// The configuration file.
        file: String,
        /// The key, dotted (`hub.address`).
        key: String,
    },
    /// The key's schema is not one this renderer knows how to name.
    #[error("{file}: key `{key}`: no type name for the schema {schema}")]
    UnknownType {
        /// The configuration file.
        file: String,
        /// The key, dotted.
        key: String,
        /// The schema, as JSON.
        schema: String,
    },
    /// The schema of the file itself is not a table with keys.
    #[error("{file}: the schema is not a table of keys")]
    NotATable {
        /// The configuration file.
        file: String,
    },
}

/// The Markdown reference of the configuration file `file`, parsed into a type whose schema
/// (`schemars::schema_for!`) is `schema`: a `##` section for the file, a `###` section for
/// each table in it.
///
/// Keys are listed required first, then alphabetically: serde_json keeps no field order
/// unless its `preserve_order` feature is on, which would change every JSON output of the
/// workspace.
pub fn config_reference(file: &str, schema: &Schema) -> Result<String, ReferenceError> {
    let not_a_table = || ReferenceError::NotATable {
        file: file.to_owned(),
    };
    let root = schema.as_object().ok_or_else(not_a_table)?;
    if !is_table(root) {
        return Err(not_a_table());
    }
    let mut renderer = Renderer {
        file,
        defs: root.get("$defs").and_then(Value::as_object),
        out: format!("## `{file}`\n\n"),
    };
    let intro = sentence(&[&description(root, root), unknown_keys(root)]);
    if !intro.is_empty() {
        renderer.out.push_str(&intro);
        renderer.out.push_str("\n\n");
    }
    renderer.table(&[], root)?;
    Ok(renderer.out)
}

struct Renderer<'a> {
    file: &'a str,
    /// The schemas of the types that fields refer to (`$ref: "#/$defs/Name"`).
    defs: Option<&'a Map<String, Value>>,
    out: String,
}

/// A key's schema: `outer` carries what the field says (description, default); `inner` is
/// the value's own schema once an optional wrapper (`anyOf [X, null]`) is taken off.
struct Key<'a> {
    name: &'a str,
    outer: &'a Map<String, Value>,
    inner: &'a Map<String, Value>,
    required: bool,
}

impl<'a> Renderer<'a> {
    /// Writes the rows of one table, then a section for each of its sub-tables.
    fn table(
        &mut self,
        path: &[&str],
        table: &'a Map<String, Value>,
    ) -> Result<(), ReferenceError> {
        let keys = self.keys(path, table)?;
        let (subtables, values): (Vec<_>, Vec<_>) =
            keys.into_iter().partition(|key| is_table(key.inner));
        if !values.is_empty() {
            self.out
                .push_str("| key | type | default | description |\n|---|---|---|---|\n");
        }
        for key in &values {
            self.row(path, key)?;
        }
        self.out.push('\n');
        for key in subtables {
            let sub_path: Vec<&str> = path.iter().copied().chain([key.name]).collect();
            let dotted = dotted(path, key.name);
            let text = description(key.outer, key.inner);
            if text.is_empty() {
                return Err(self.undocumented(&dotted));
            }
            let presence = if key.required {
                "Required table."
            } else {
                "Optional table."
            };
            let intro = sentence(&[&text, presence, unknown_keys(key.inner)]);
            self.out
                .push_str(&format!("### `[{dotted}]`\n\n{intro}\n\n"));
            self.table(&sub_path, key.inner)?;
        }
        Ok(())
    }

    fn row(&mut self, path: &[&str], key: &Key<'_>) -> Result<(), ReferenceError> {
        let dotted = dotted(path, key.name);
        let text = description(key.outer, key.inner);
        if text.is_empty() {
            return Err(self.undocumented(&dotted));
        }
        let type_name =
            type_name(key.outer, key.inner).ok_or_else(|| ReferenceError::UnknownType {
                file: self.file.to_owned(),
                key: dotted.clone(),
                schema: Value::Object(key.outer.clone()).to_string(),
            })?;
        let default = if key.required {
            "required".to_owned()
        } else {
            match key
                .outer
                .get("default")
                .or_else(|| key.inner.get("default"))
            {
                Some(Value::Null) | None => "unset".to_owned(),
                Some(value) => format!("`{}`", toml_literal(value)),
            }
        };
        self.out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            key.name,
            cell(&type_name),
            cell(&default),
            cell(&text)
        ));
        Ok(())
    }

    /// The keys of a table: required first, then the rest, each alphabetically.
    fn keys(
        &self,
        path: &[&str],
        table: &'a Map<String, Value>,
    ) -> Result<Vec<Key<'a>>, ReferenceError> {
        let required: Vec<&str> = table
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = table.get("properties").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::with_capacity(properties.len());
        for (name, schema) in properties {
            // A schema that is `true` or `false` (any value, no value) has no type to name.
            let outer = schema
                .as_object()
                .ok_or_else(|| ReferenceError::UnknownType {
                    file: self.file.to_owned(),
                    key: dotted(path, name),
                    schema: schema.to_string(),
                })?;
            keys.push(Key {
                name,
                outer,
                inner: self.resolve(without_null(outer)),
                required: required.contains(&name.as_str()),
            });
        }
        keys.sort_by_key(|key| (!key.required, key.name));
        Ok(keys)
    }

    /// The schema a `$ref` names, else the schema itself.
    fn resolve(&self, schema: &'a Map<String, Value>) -> &'a Map<String, Value> {
        schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|path| path.strip_prefix("#/$defs/"))
            .and_then(|name| self.defs?.get(name)?.as_object())
            .unwrap_or(schema)
    }

    fn undocumented(&self, key: &str) -> ReferenceError {
        ReferenceError::Undocumented {
            file: self.file.to_owned(),
            key: key.to_owned(),
        }
    }
}

/// `table.key`, or `key` at the top.
fn dotted(path: &[&str], key: &str) -> String {
    path.iter()
        .copied()
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

/// `X` out of `anyOf: [X, {"type": "null"}]` (an `Option<X>` field); the schema itself otherwise.
fn without_null(schema: &Map<String, Value>) -> &Map<String, Value> {
    let Some(Value::Array(choices)) = schema.get("anyOf") else {
        return schema;
    };
    let mut not_null = choices
        .iter()
        .filter_map(Value::as_object)
        .filter(|choice| choice.get("type").and_then(Value::as_str) != Some("null"));
    match (not_null.next(), not_null.next()) {
        (Some(only), None) if choices.len() == 2 => only,
        _ => schema,
    }
}

/// A table of named keys (a struct), as opposed to a map of any keys (`additionalProperties`
/// with a schema, e.g. `asserted`).
fn is_table(schema: &Map<String, Value>) -> bool {
    json_types(schema).contains(&"object") && schema.contains_key("properties")
}

fn unknown_keys(table: &Map<String, Value>) -> &'static str {
    match table.get("additionalProperties") {
        Some(Value::Bool(false)) => "Unknown keys are refused.",
        _ => "",
    }
}

/// The field's doc comment, else its type's, on one line. (`title` is left out: schemars
/// fills it with the type's name at the root, or a doc comment's `# heading`.)
fn description(outer: &Map<String, Value>, inner: &Map<String, Value>) -> String {
    [outer, inner]
        .iter()
        .find_map(|schema| schema.get("description").and_then(Value::as_str))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words joined by single spaces, empty ones left out.
fn sentence(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The JSON `type` keyword, as a list (`"string"` or `["string", "null"]`).
fn json_types(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// What an operator writes: the `x-toml-type` a field names, else the JSON type (arrays and
/// maps by their items).
fn type_name(outer: &Map<String, Value>, inner: &Map<String, Value>) -> Option<String> {
    if let Some(named) = [outer, inner]
        .iter()
        .find_map(|schema| schema.get(TYPE_EXTENSION).and_then(Value::as_str))
    {
        return Some(named.to_owned());
    }
    let types: Vec<&str> = json_types(inner)
        .into_iter()
        .filter(|t| *t != "null")
        .collect();
    match types.as_slice() {
        ["string"] => Some("string".to_owned()),
        ["integer"] => Some("integer".to_owned()),
        ["boolean"] => Some("boolean".to_owned()),
        ["number"] => Some("number".to_owned()),
        ["array"] => {
            let items = inner.get("items")?.as_object()?;
            Some(format!(
                "array of {}",
                type_name(items, without_null(items))?
            ))
        }
        ["object"] => {
            let values = inner.get("additionalProperties")?.as_object()?;
            Some(format!(
                "table of any keys, {} values",
                type_name(values, without_null(values))?
            ))
        }
        _ => None,
    }
}

/// A default as TOML writes it. Large integers (NV indices, handles) also in hex.
fn toml_literal(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_u64() {
            Some(big) if big > 0xffff => format!("{big} ({big:#010x})"),
            _ => n.to_string(),
        },
        // A JSON string literal is a TOML basic string literal.
        Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_literal(v)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
