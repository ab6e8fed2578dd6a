//! Our SPIFFE ID validator and the `spiffe` crate's agree on what is valid, except where the
//! spec's lowercase rule makes us stricter (the crate accepts uppercase trust domains).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use garrison_ca::SpiffeId;

#[test]
fn both_validators_agree() {
    let valid = [
        "spiffe://example.org",
        "spiffe://example.org/site/a/node/n1",
        "spiffe://a-b_c.d/x.y-z_/A/0",
    ];
    let invalid = [
        "",
        "http://example.org/x",
        "spiffe://",
        "spiffe://example.org:80/x",
        "spiffe://u@example.org/x",
        "spiffe://example.org/a//b",
        "spiffe://example.org/a/./b",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/a/",
        "spiffe://example.org/a%41",
        "spiffe://example.org/a?q",
        "spiffe://example.org/a#f",
        "spiffe://example.org/a b",
    ];
    for id in valid {
        assert!(SpiffeId::parse(id).is_ok(), "{id}");
        assert!(spiffe::SpiffeId::new(id).is_ok(), "{id}");
    }
    for id in invalid {
        assert!(SpiffeId::parse(id).is_err(), "we accepted {id}");
        assert!(
            spiffe::SpiffeId::new(id).is_err(),
            "spiffe crate accepted {id}"
        );
    }
}
