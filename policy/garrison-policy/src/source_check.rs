//! Refusing policies that could make a decision depend on anything but their input and data.
//!
//! The crate is built without regorus' `time`, `http`, `net`, `uuid` and `opa-runtime`
//! features, so those builtins do not exist and a policy calling them fails to compile. Some
//! non-deterministic builtins remain (`rand.intn` comes with `std`), so every module is also
//! scanned, outside comments and string literals, for references to the names below; a hit
//! refuses the bundle before it is compiled.

use crate::PolicyError;

/// Builtins (or builtin namespaces, ending in `.`) that read the clock, the network,
/// randomness or the runtime environment.
pub const FORBIDDEN_BUILTINS: &[&str] = &[
    "time.now_ns",
    "rand.",
    "uuid.",
    "http.",
    "net.lookup_ip_addr",
    "opa.runtime",
    "crypto.x509.parse_and_verify_certificates",
    "io.jwt.",
];

/// Refuse `rego` if it references a forbidden builtin.
pub fn check_module(file: &str, rego: &str) -> Result<(), PolicyError> {
    for word in dotted_words(rego) {
        if let Some(builtin) = forbidden(&word) {
            return Err(PolicyError::ForbiddenBuiltin {
                file: file.to_owned(),
                builtin: builtin.to_owned(),
            });
        }
    }
    Ok(())
}

fn forbidden(word: &str) -> Option<&'static str> {
    FORBIDDEN_BUILTINS.iter().copied().find(|name| {
        if let Some(namespace) = name.strip_suffix('.') {
            word == namespace || word.starts_with(name)
        } else {
            word == *name
        }
    })
}

/// Identifiers joined by dots (`a.b.c`), skipping comments and string literals.
fn dotted_words(rego: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = rego.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                flush(&mut current, &mut words);
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                flush(&mut current, &mut words);
                skip_string(&mut chars);
            }
            '`' => {
                flush(&mut current, &mut words);
                for skipped in chars.by_ref() {
                    if skipped == '`' {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => current.push(c),
            _ => flush(&mut current, &mut words),
        }
    }
    flush(&mut current, &mut words);
    words
}

fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return,
            _ => {}
        }
    }
}

fn flush(current: &mut String, words: &mut Vec<String>) {
    if !current.is_empty() {
        words.push(current.trim_matches('.').to_owned());
        current.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_but_not_comments_or_strings() {
        assert!(check_module("a", "x := rand.intn(\"k\", 3)").is_err());
        assert!(check_module("a", "x := time.now_ns()").is_err());
        assert!(check_module("a", "x := http.send({})").is_err());
        assert!(check_module("a", "# time.now_ns()\nx := \"rand.intn\"").is_ok());
        assert!(check_module("a", "x := input.request.time").is_ok());
        assert!(check_module("a", "x := `uuid.rfc4122`").is_ok());
        assert!(check_module("a", "x := data.operand.x").is_ok());
    }
}
