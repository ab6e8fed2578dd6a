//! What an operator's probes and dashboards see of a running attestor: `/livez`, `/readyz`
//! (log writable, CA valid, policy in force), `/metrics` after real enrollments (one
//! admitted, one refused by policy) and the gRPC health service on the attestor's port; then
//! readiness and health turning to "not serving" once the site CA has expired (injected
//! clock, no waiting for real time).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `GET path` over HTTP/1.0: (status code, body).
async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// The value of the sample `name` (with its labels, exactly as exposed).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} not exposed:\n{metrics}"))
        .parse()
        .unwrap()
}

async fn health(site: &Running, service: &str) -> i32 {
    HealthClient::new(site.channel(None))
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_health_follow_the_attestor() {
    let ops = garrison_testbed::free_local_address().unwrap();
    let site = Running::start(
        &[
            good("node-1"),
            NodeSpec {
                name: "node-2",
                log: garrison_testbed::INSECURE_BOOT_LOG,
                ek_trusted: true,
            },
        ],
        &format!("ops_listen = \"{ops}\"\n"),
    )
    .await;
    wait_for_port(ops).await;

    assert_eq!(http_get(ops, "/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(
        http_get(ops, "/readyz").await,
        (200, "ready\nok log\nok ca\nok policy\n".to_owned())
    );
    for service in ["", "garrison.v1.Enrollment", "garrison.v1.Renewal"] {
        assert_eq!(health(&site, service).await, ServingStatus::Serving as i32);
    }

    garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap();
    let refused = garrison_agent::enroll_once(&site.agent_config("node-2"))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "policy-deny");

    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    let decision = |labels: &str| {
        sample(
            &metrics,
            &format!("garrison_attestor_decisions_total{{{labels}}}"),
        )
    };
    assert_eq!(
        decision("kind=\"enroll\",decision=\"allow\",reason=\"none\""),
        1.0
    );
    assert_eq!(
        decision("kind=\"enroll\",decision=\"deny\",reason=\"policy-deny\""),
        1.0
    );
    let calls = |method: &str| {
        sample(
            &metrics,
            &format!("garrison_attestor_request_duration_seconds_count{{method=\"{method}\"}}"),
        )
    };
    assert_eq!((calls("begin"), calls("complete")), (2.0, 2.0));
    assert_eq!(
        sample(&metrics, "garrison_attestor_requests_in_flight"),
        0.0
    );
    assert_eq!(
        sample(&metrics, "garrison_attestor_requests_shed_total"),
        0.0
    );
    // Both decisions were logged (the refusal with its evidence).
    assert!(
        sample(
            &metrics,
            "garrison_attestor_log_append_duration_seconds_count"
        ) >= 2.0
    );
    let ca_left = sample(&metrics, "garrison_attestor_site_ca_expiry_seconds");
    let budget = sample(&metrics, "garrison_attestor_offline_budget_seconds");
    assert!(
        ca_left > 3600.0 && budget > 0.0 && budget <= ca_left + 1.0,
        "{ca_left} {budget}"
    );
    // No hub configured: no hub-link gauges.
    assert!(!metrics.contains("garrison_attestor_hub_connected"));

    // Past the site CA's expiry: not ready, named; health follows within its interval.
    site.clock
        .advance(time::Duration::seconds(ca_left as i64 + 60));
    // Readiness is evaluated at most once a second; the next evaluation sees the expiry.
    let mut answer = http_get(ops, "/readyz").await;
    for _ in 0..50 {
        if answer.0 != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = http_get(ops, "/readyz").await;
    }
    let (status, body) = answer;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready\nok log\nfail ca: the site CA expired at "),
        "{body}"
    );
    let (_, metrics) = http_get(ops, "/metrics").await;
    assert!(sample(&metrics, "garrison_attestor_site_ca_expiry_seconds") < 0.0);
    assert_eq!(
        sample(&metrics, "garrison_attestor_offline_budget_seconds"),
        0.0
    );
    let mut serving = ServingStatus::Serving as i32;
    for _ in 0..100 {
        serving = health(&site, "").await;
        if serving == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serving, ServingStatus::NotServing as i32);
}
