//! `result-processor` as a process: health per dependency, metrics, recording a result,
//! and SIGTERM while a result is being recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use openwatch_common::domain::{FindingStatus, ScanStatus, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1};
use openwatch_common::queues::QueueName;
use openwatch_db::queries::scans;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{self, Dependency, HeldLock, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-result-processor");

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    service::assert_healthy_with_metrics(BIN, "result-processor", &["postgres", "rabbitmq"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_postgres_still_gets_an_answer_within_two_seconds() {
    let error = service::assert_unhealthy_naming(BIN, Dependency::Postgres, ProxyMode::Blackhole).await;
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_rabbitmq_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::RabbitMq, ProxyMode::Refuse).await;
}

fn completed(host: HostId, scan: ScanId) -> ScanCompletedV1 {
    let result = |rule: &str, status| RuleResultV1 {
        rule_id: rule.into(),
        status,
        severity: Severity::High,
        reason: None,
        evidence: EvidenceV1 { source: "sshd -T".into(), excerpt: "x".into(), expected: None, actual: None },
        frameworks: BTreeMap::new(),
        duration_us: 5,
    };
    ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        failure_reason: None,
        platform: None,
        results: vec![result("a", FindingStatus::Pass), result("b", FindingStatus::Fail)],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_result_is_being_recorded_lets_it_finish_then_exits_0() {
    let harness = ServiceHarness::new(BIN).await;
    let db = harness.database();
    let (host, scan) = db.insert_queued_scan().await;
    let mut running = harness.start_healthy().await;

    let mut lock =
        HeldLock::acquire(db, &format!("SELECT 1 FROM scans WHERE id = '{scan}' FOR UPDATE")).await;
    harness.broker().publisher().await.publish(&completed(host, scan)).await.unwrap();
    lock.wait_for_waiter(db).await;
    service::assert_sigterm_finishes_in_flight_work(&mut running, lock).await;

    let mut conn = db.pool().get().await.unwrap();
    let stored = scans::get_scan(&mut conn, scan).await.unwrap();
    assert_eq!(stored.status, ScanStatus::Completed);
    assert_eq!(stored.score, Some(50.0));
    assert_eq!(scans::count_findings(&mut conn, scan).await.unwrap(), 2);
    let broker = harness.broker();
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.queue_depth(&broker.queue(QueueName::Results)).await > 0 {
        assert!(Instant::now() < deadline, "the finished message was not acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(broker.queue_depth(&broker.dead_queue(QueueName::Results)).await, 0);
}
