//! `scan-worker` as a process: health per dependency, metrics, refusing to start without a
//! rule corpus, dead-lettering requests for unknown scans, and SIGTERM (a scan in flight
//! still publishes its result before the process exits 0).
//!
//! The shared checks of `openwatch_test_support::service` start the binary without extra
//! environment; this worker needs `OPENWATCH_RULES_DIR` (tests do not run from the
//! repository root), so the same checks are made here on a harness that sets it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use openwatch_common::domain::{ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::headers;
use openwatch_common::messages::v1::{ScanCompletedV1, ScanRequestedV1};
use openwatch_common::queues::QueueName;
use openwatch_mq::envelope::header_str;
use openwatch_test_support::process::ServiceProcess;
use openwatch_test_support::prometheus;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{
    self, Dependency, HeldLock, START_TIMEOUT, ServiceHarness, TEST_MASTER_KEY,
};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-scan-worker");
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");

async fn harness() -> ServiceHarness {
    ServiceHarness::new(BIN).await.env("OPENWATCH_RULES_DIR", RULES_DIR)
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    let harness = harness().await;
    let running = harness.start_healthy().await;
    let (status, body) = running.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["service"], "scan-worker", "{body}");
    let checks = body["checks"].as_object().expect("checks object");
    let mut names: Vec<&str> = checks.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["postgres", "rabbitmq", "redis"], "{body}");
    assert!(checks.values().all(|c| c["status"] == "ok"), "{body}");
    let samples = running.metrics().await;
    assert_eq!(prometheus::value(&samples, "openwatch_build_info", &[("service", "scan-worker")]), Some(1.0));
    for check in ["postgres", "rabbitmq", "redis"] {
        assert_eq!(
            prometheus::value(&samples, "openwatch_dependency_up", &[("dependency", check)]),
            Some(1.0)
        );
    }
}

/// Starts the worker with `broken` behind a proxy in `mode` and returns the error of its
/// failing check once the other dependencies are healthy (503 throughout).
async fn failing_check(broken: Dependency, mode: ProxyMode) -> String {
    let harness = harness().await;
    let running = harness.start_with(broken, mode).await;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let (status, body) = running.health().await;
        assert_eq!(status, 503, "{body}");
        let checks = body["checks"].as_object().expect("checks object");
        let (failing, healthy): (Vec<_>, Vec<_>) =
            checks.iter().partition(|(name, _)| name.starts_with(broken.check_prefix()));
        assert_eq!(failing.len(), 1, "{body}");
        assert_eq!(failing[0].1["status"], "error", "{body}");
        if healthy.iter().all(|(_, check)| check["status"] == "ok") {
            return failing[0].1["error"].as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "other dependencies never became healthy: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_rabbitmq_is_named_in_a_503() {
    failing_check(Dependency::RabbitMq, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_redis_still_gets_an_answer_within_two_seconds() {
    let error = failing_check(Dependency::Redis, ProxyMode::Blackhole).await;
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_rule_corpus_or_a_bad_master_key_stops_the_start() {
    for (name, value, expected) in [
        ("OPENWATCH_RULES_DIR", "/nonexistent/rules", "OPENWATCH_RULES_DIR=/nonexistent/rules"),
        ("OPENWATCH_MASTER_KEY", "not-a-key", "OPENWATCH_MASTER_KEY"),
    ] {
        let mut env = vec![
            // Nothing connects before the corpus and the key are checked.
            ("OPENWATCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused"),
            ("OPENWATCH_HTTP_ADDR", "127.0.0.1:0"),
            ("OPENWATCH_MASTER_KEY", TEST_MASTER_KEY),
            ("OPENWATCH_RULES_DIR", RULES_DIR),
        ];
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
        let mut process = ServiceProcess::spawn(BIN, &env);
        let status = process.wait_exit(START_TIMEOUT).await;
        let output = process.output();
        assert!(!status.success(), "started with {name}={value}:\n{output}");
        assert!(output.contains(expected), "{output}");
        assert!(!output.contains(TEST_MASTER_KEY), "no key in the error: {output}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_an_unknown_scan_is_dead_lettered_with_a_reason() {
    let harness = harness().await.env("OPENWATCH_QUEUES", "scans");
    let mut running = harness.start_healthy().await;
    let broker = harness.broker();
    let request = ScanRequestedV1 {
        scan_id: ScanId::new(),
        host_id: HostId::new(),
        trigger: ScanTrigger::Manual,
        framework: None,
        requested_by: None,
        requested_at: Utc::now(),
    };
    broker.publisher().await.publish(&request).await.unwrap();
    let (body, dead_headers) = broker
        .get_one(&broker.dead_queue(QueueName::Scans), Duration::from_secs(30))
        .await
        .expect("the request is kept in the dead-letter queue");
    assert_eq!(serde_json::from_slice::<ScanRequestedV1>(&body).unwrap(), request);
    let reason = header_str(&dead_headers, headers::DEAD_LETTER_REASON).unwrap_or_default();
    assert!(reason.contains(&format!("scan {} does not exist", request.scan_id)), "{reason}");
    assert_eq!(broker.queue_depth(&broker.queue(QueueName::Results)).await, 0);
    service::assert_sigterm_exits_cleanly(&mut running).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_scan_in_flight_finish_and_publish() {
    let harness = harness().await;
    let mut running = harness.start_healthy().await;
    let db = harness.database();
    let (host, scan) = db.insert_queued_scan().await;
    // The worker blocks on starting the scan while this transaction holds its row.
    let mut lock =
        HeldLock::acquire(db, &format!("SELECT 1 FROM scans WHERE id = '{scan}' FOR UPDATE")).await;
    let request = ScanRequestedV1 {
        scan_id: scan,
        host_id: host,
        trigger: ScanTrigger::Manual,
        framework: None,
        requested_by: None,
        requested_at: Utc::now(),
    };
    harness.broker().publisher().await.publish(&request).await.unwrap();
    lock.wait_for_waiter(db).await;

    service::assert_sigterm_finishes_in_flight_work(&mut running, lock).await;
    let broker = harness.broker();
    let (body, _) = broker
        .get_one(&broker.queue(QueueName::Results), Duration::from_secs(5))
        .await
        .expect("the scan in flight published its result before the process exited");
    let result: ScanCompletedV1 = serde_json::from_slice(&body).unwrap();
    assert_eq!(result.scan_id, scan);
    assert_eq!(result.outcome, ScanStatus::Failed);
    assert_eq!(result.failure_reason.as_deref(), Some("no_credential"));
}
