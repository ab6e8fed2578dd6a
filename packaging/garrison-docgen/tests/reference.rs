//! The configuration reference, rendered from a small config type like the real ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use garrison_docgen::{ReferenceError, config_reference};
use schemars::JsonSchema;
use serde::Deserialize;

/// The example service's configuration file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Example {
    /// Where to listen.
    #[schemars(extend("x-toml-type" = "socket address"))]
    listen: String,
    /// How long to wait.
    ///
    /// A second paragraph | with a pipe.
    #[serde(default = "thirty")]
    #[schemars(extend("x-toml-type" = "duration"))]
    timeout: String,
    /// PCRs to quote.
    #[serde(default = "pcrs")]
    pcrs: Vec<u32>,
    /// An NV index.
    #[serde(default = "nv")]
    nv: u32,
    /// Files to read.
    #[serde(default)]
    files: Vec<PathBuf>,
    /// Left unset unless given.
    #[serde(default)]
    limit: Option<usize>,
    /// Facts about the node.
    #[serde(default)]
    facts: BTreeMap<String, String>,
    /// The upstream to sync with.
    #[serde(default)]
    upstream: Option<Upstream>,
    /// Switches that weaken security.
    #[serde(default)]
    insecure: Insecure,
}

/// Upstream link.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Upstream {
    /// host:port.
    address: String,
    /// Seconds between rounds.
    #[serde(default = "sixty")]
    interval: u64,
}

#[derive(Default, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Insecure {
    /// Accept anything.
    #[serde(default)]
    anything: bool,
}

fn thirty() -> String {
    "30s".to_owned()
}
fn pcrs() -> Vec<u32> {
    vec![0, 7]
}
fn nv() -> u32 {
    0x01c0_0002
}
fn sixty() -> u64 {
    60
}

#[test]
fn every_key_with_type_default_and_description() {
    let text = config_reference("example.toml", &schemars::schema_for!(Example)).unwrap();
    let want = "\
## `example.toml`

The example service's configuration file. Unknown keys are refused.

| key | type | default | description |
|---|---|---|---|
| `listen` | socket address | required | Where to listen. |
| `facts` | table of any keys, string values | `{}` | Facts about the node. |
| `files` | array of string | `[]` | Files to read. |
| `limit` | integer | unset | Left unset unless given. |
| `nv` | integer | `29360130 (0x01c00002)` | An NV index. |
| `pcrs` | array of integer | `[0, 7]` | PCRs to quote. |
| `timeout` | duration | `\"30s\"` | How long to wait. A second paragraph \\| with a pipe. |

### `[insecure]`

Switches that weaken security. Optional table.

| key | type | default | description |
|---|---|---|---|
| `anything` | boolean | `false` | Accept anything. |

### `[upstream]`

The upstream to sync with. Optional table. Unknown keys are refused.

| key | type | default | description |
|---|---|---|---|
| `address` | string | required | host:port. |
| `interval` | integer | `60` | Seconds between rounds. |

";
    assert_eq!(text, want, "\n{text}");
}

/// A key without a doc comment is an error naming it, never an empty cell.
#[test]
fn an_undocumented_key_is_refused() {
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Undocumented {
        /// Documented.
        fine: String,
        #[serde(default)]
        forgotten: bool,
    }
    let error = config_reference("u.toml", &schemars::schema_for!(Undocumented)).unwrap_err();
    assert!(
        matches!(&error, ReferenceError::Undocumented { key, .. } if key == "forgotten"),
        "{error}"
    );
}

#[test]
fn an_undocumented_nested_key_is_named_with_its_table() {
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        /// A table.
        inner: Inner,
    }
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        forgotten: u8,
    }
    let error = config_reference("o.toml", &schemars::schema_for!(Outer)).unwrap_err();
    assert!(
        matches!(&error, ReferenceError::Undocumented { key, .. } if key == "inner.forgotten"),
        "{error}"
    );
}
