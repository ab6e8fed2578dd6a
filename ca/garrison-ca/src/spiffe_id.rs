//! SPIFFE IDs and trust domains, validated per the SPIFFE-ID specification.
//!
//! We validate ourselves rather than through the `spiffe` crate because issuance needs the
//! stricter reading (a trust domain must already be lowercase; the crate folds case) and one
//! specific error per rule. The `spiffe` crate is used in tests as an independent check that
//! both agree on what is valid.

use std::fmt;
use std::str::FromStr;

/// The longest SPIFFE ID URI accepted, in bytes (SPIFFE-ID spec §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// The longest trust domain name accepted, in bytes (SPIFFE-ID spec §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a valid SPIFFE ID or trust domain. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The whole URI is longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("SPIFFE ID is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The URI does not start with the lowercase scheme `spiffe://`.
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    WrongScheme,
    /// The trust domain part is empty.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain is {len} bytes long; at most {max} are allowed")]
    TrustDomainTooLong {
        /// Length of the trust domain in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The authority carries a port (`host:port`), which SPIFFE IDs must not.
    #[error("trust domain must not carry a port")]
    TrustDomainHasPort,
    /// The authority carries user info (`user@host`), which SPIFFE IDs must not.
    #[error("trust domain must not carry user info")]
    TrustDomainHasUserInfo,
    /// A trust domain character outside lowercase `a-z`, digits, `.`, `-`, `_`.
    #[error("trust domain character {ch:?} at byte {position} is not one of [a-z0-9.-_]")]
    BadTrustDomainChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// A path character outside `a-z`, `A-Z`, digits, `.`, `-`, `_`.
    #[error("path character {ch:?} at byte {position} is not one of [a-zA-Z0-9.-_]")]
    BadPathSegmentChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// Percent-encoding is not allowed anywhere in a SPIFFE ID.
    #[error("percent-encoding at byte {position} is not allowed in a SPIFFE ID")]
    PercentEncoded {
        /// Byte offset of the `%`.
        position: usize,
    },
    /// A query (`?`) or fragment (`#`) is not allowed in a SPIFFE ID.
    #[error("query or fragment at byte {position} is not allowed in a SPIFFE ID")]
    QueryOrFragment {
        /// Byte offset of the `?` or `#`.
        position: usize,
    },
    /// The path contains an empty segment (`//`).
    #[error("path contains an empty segment")]
    EmptySegment,
    /// The path contains a `.` or `..` segment.
    #[error("path contains the dot segment {segment:?}")]
    DotSegment {
        /// The segment, `.` or `..`.
        segment: String,
    },
    /// The path ends with `/`.
    #[error("path must not end with '/'")]
    TrailingSlash,
}

/// A SPIFFE trust domain name such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validate a bare trust domain name (no scheme).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(name, 0)?;
        Ok(TrustDomain(name.to_owned()))
    }

    /// The name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (no path).
    pub fn spiffe_id(&self) -> SpiffeId {
        SpiffeId {
            uri: format!("{SCHEME}{}", self.0),
            trust_domain_len: self.0.len(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::new(s)
    }
}

/// A validated SPIFFE ID, `spiffe://<trust domain><path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    trust_domain_len: usize,
}

impl SpiffeId {
    /// Parse and validate a SPIFFE ID URI.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong {
                len: input.len(),
                max: MAX_SPIFFE_ID_LEN,
            });
        }
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or(SpiffeIdError::WrongScheme)?;
        reject_uri_escapes(rest, SCHEME.len())?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        validate_trust_domain(authority, SCHEME.len())?;
        validate_path(path, SCHEME.len() + authority.len())?;
        Ok(SpiffeId {
            uri: input.to_owned(),
            trust_domain_len: authority.len(),
        })
    }

    /// Build `spiffe://<td><path>` from a trust domain and a path starting with `/`.
    pub fn from_path(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        SpiffeId::parse(&format!("{SCHEME}{}{path}", trust_domain.as_str()))
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// The trust domain name, borrowed.
    pub fn trust_domain_name(&self) -> &str {
        let end = SCHEME.len() + self.trust_domain_len;
        self.uri.get(SCHEME.len()..end).unwrap_or_default()
    }

    /// The path, empty for a trust domain's own ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        self.uri
            .get(SCHEME.len() + self.trust_domain_len..)
            .unwrap_or_default()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

fn reject_uri_escapes(rest: &str, offset: usize) -> Result<(), SpiffeIdError> {
    for (i, ch) in rest.char_indices() {
        match ch {
            '%' => {
                return Err(SpiffeIdError::PercentEncoded {
                    position: offset + i,
                });
            }
            '?' | '#' => {
                return Err(SpiffeIdError::QueryOrFragment {
                    position: offset + i,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_trust_domain(name: &str, offset: usize) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.contains('@') {
        return Err(SpiffeIdError::TrustDomainHasUserInfo);
    }
    if name.contains(':') {
        return Err(SpiffeIdError::TrustDomainHasPort);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong {
            len: name.len(),
            max: MAX_TRUST_DOMAIN_LEN,
        });
    }
    match name
        .char_indices()
        .find(|(_, ch)| !is_trust_domain_char(*ch))
    {
        Some((i, ch)) => Err(SpiffeIdError::BadTrustDomainChar {
            ch,
            position: offset + i,
        }),
        None => Ok(()),
    }
}

fn validate_path(path: &str, offset: usize) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    let mut segment_start = offset + 1;
    for segment in path.split('/').skip(1) {
        validate_segment(segment, segment_start)?;
        segment_start += segment.len() + 1;
    }
    Ok(())
}

fn validate_segment(segment: &str, offset: usize) -> Result<(), SpiffeIdError> {
    if segment.is_empty() {
        return Err(SpiffeIdError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdError::DotSegment {
            segment: segment.to_owned(),
        });
    }
    match segment.char_indices().find(|(_, ch)| !is_path_char(*ch)) {
        Some((i, ch)) => Err(SpiffeIdError::BadPathSegmentChar {
            ch,
            position: offset + i,
        }),
        None => Ok(()),
    }
}

fn is_trust_domain_char(ch: char) -> bool {
    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '-' | '_')
}

fn is_path_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> SpiffeIdError {
        SpiffeId::parse(input).expect_err(input)
    }

    #[test]
    fn accepts_valid_ids_and_splits_them() {
        let id = SpiffeId::parse("spiffe://example.org/site/a_1/node/N-2.x").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/site/a_1/node/N-2.x");
        let td = SpiffeId::parse("spiffe://td-1.example_x").unwrap();
        assert_eq!(td.path(), "");
        assert_eq!(td, TrustDomain::new("td-1.example_x").unwrap().spiffe_id());
    }

    #[test]
    fn each_rule_has_its_own_error() {
        assert_eq!(err(""), SpiffeIdError::Empty);
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert!(matches!(
            err(&long),
            SpiffeIdError::TooLong { max: 2048, .. }
        ));
        assert_eq!(err("https://example.org/x"), SpiffeIdError::WrongScheme);
        assert_eq!(err("SPIFFE://example.org/x"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:/example.org"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:///path"), SpiffeIdError::MissingTrustDomain);
        assert_eq!(
            err("spiffe://example.org:8443/x"),
            SpiffeIdError::TrustDomainHasPort
        );
        assert_eq!(
            err("spiffe://user@example.org/x"),
            SpiffeIdError::TrustDomainHasUserInfo
        );
        assert_eq!(
            err("spiffe://Example.org/x"),
            SpiffeIdError::BadTrustDomainChar {
                ch: 'E',
                position: 9
            }
        );
        assert_eq!(
            err("spiffe://exa mple.org"),
            SpiffeIdError::BadTrustDomainChar {
                ch: ' ',
                position: 12
            }
        );
        assert_eq!(
            err("spiffe://example.org/a/b$c"),
            SpiffeIdError::BadPathSegmentChar {
                ch: '$',
                position: 24
            }
        );
        assert_eq!(
            err("spiffe://example.org/a%20b"),
            SpiffeIdError::PercentEncoded { position: 22 }
        );
        assert_eq!(
            err("spiffe://example.org/a?x=1"),
            SpiffeIdError::QueryOrFragment { position: 22 }
        );
        assert_eq!(
            err("spiffe://example.org/a#frag"),
            SpiffeIdError::QueryOrFragment { position: 22 }
        );
        assert_eq!(
            err("spiffe://example.org/a//b"),
            SpiffeIdError::EmptySegment
        );
        assert_eq!(
            err("spiffe://example.org/a/./b"),
            SpiffeIdError::DotSegment {
                segment: ".".into()
            }
        );
        assert_eq!(
            err("spiffe://example.org/a/../b"),
            SpiffeIdError::DotSegment {
                segment: "..".into()
            }
        );
        assert_eq!(err("spiffe://example.org/a/"), SpiffeIdError::TrailingSlash);
        assert_eq!(err("spiffe://example.org/"), SpiffeIdError::TrailingSlash);
        let long_td = format!("spiffe://{}", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
        assert!(matches!(
            err(&long_td),
            SpiffeIdError::TrustDomainTooLong { .. }
        ));
    }

    #[test]
    fn exactly_2048_bytes_is_accepted() {
        let prefix = "spiffe://example.org/";
        let id = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(
            SpiffeId::parse(&id).unwrap().as_str().len(),
            MAX_SPIFFE_ID_LEN
        );
    }

    #[test]
    fn bare_trust_domain_rules() {
        assert!(TrustDomain::new("example.org").is_ok());
        assert_eq!(TrustDomain::new(""), Err(SpiffeIdError::MissingTrustDomain));
        assert!(matches!(
            TrustDomain::new("example.org/x"),
            Err(SpiffeIdError::BadTrustDomainChar { ch: '/', .. })
        ));
    }
}
