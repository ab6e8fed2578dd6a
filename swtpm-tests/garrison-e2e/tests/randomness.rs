//! A failed random draw refuses the request: no challenge, secret or certificate is ever made
//! from bytes that were not drawn, the client gets `random-unavailable` (UNAVAILABLE: retry)
//! and the refusal is recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use garrison_attestor::{RandomFailed, RandomSource};
use garrison_log::{Decision, RecordKind};

/// The system generator, until told how many more draws may succeed.
#[derive(Debug, Default)]
struct Breakable {
    /// `None`: every draw succeeds. `Some(n)`: `n` more draws succeed, then every one fails.
    draws_left: Mutex<Option<usize>>,
}

impl Breakable {
    fn fail_after(&self, draws: Option<usize>) {
        *self.draws_left.lock().unwrap() = draws;
    }
}

impl RandomSource for Breakable {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed> {
        let mut left = self.draws_left.lock().unwrap();
        match left.as_mut() {
            Some(0) => return Err(RandomFailed),
            Some(n) => *n -= 1,
            None => {}
        }
        ring::rand::SystemRandom::new().fill(dest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_random_draw_refuses_the_request_and_issues_nothing() {
    let random = Arc::new(Breakable::default());
    let site = Running::start_with_random(&[good("node-1")], "", random.clone()).await;
    let config = site.agent_config("node-1");
    garrison_agent::enroll_once(&config).await.unwrap();

    // Enrollment draws a credential secret, a nonce and a challenge id; renewal a nonce and
    // a challenge id. Whichever draw fails, the request is refused.
    for draws in 0..3 {
        random.fail_after(Some(draws));
        let err = garrison_agent::enroll_once(&config).await.unwrap_err();
        assert_eq!(reason(&err), "random-unavailable", "after {draws} draws");
    }
    for draws in 0..2 {
        random.fail_after(Some(draws));
        let err = garrison_agent::renew_once(&config).await.unwrap_err();
        assert_eq!(reason(&err), "random-unavailable", "after {draws} draws");
    }

    let records = site.records().await;
    let issued = records
        .iter()
        .filter(|r| r.record.cert_serial.is_some())
        .count();
    assert_eq!(issued, 1, "only the first enrollment issued: {records:?}");
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.record.reasons.first().map(String::as_str) == Some("random-unavailable"))
        .collect();
    assert_eq!(refused.len(), 5, "every refusal is recorded: {records:?}");
    assert!(
        refused
            .iter()
            .all(|r| (r.record.kind, r.record.decision) == (RecordKind::Reject, Decision::Deny))
    );

    // Once the generator works again, so does the site.
    random.fail_after(None);
    garrison_agent::renew_once(&config).await.unwrap();
    site.stop().await;
}
