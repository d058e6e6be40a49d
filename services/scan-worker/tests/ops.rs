//! `scan-worker` as a process: health per dependency, metrics, SIGTERM, and the fate of
//! scan requests before the engine exists (dead-lettered with a reason, not lost).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use openwatch_common::domain::ScanTrigger;
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::headers;
use openwatch_common::messages::v1::ScanRequestedV1;
use openwatch_common::queues::QueueName;
use openwatch_mq::envelope::header_str;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{self, Dependency, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-scan-worker");

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    service::assert_healthy_with_metrics(BIN, "scan-worker", &["postgres", "rabbitmq", "redis"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_rabbitmq_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::RabbitMq, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_redis_still_gets_an_answer_within_two_seconds() {
    let error = service::assert_unhealthy_naming(BIN, Dependency::Redis, ProxyMode::Blackhole).await;
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_requests_are_dead_lettered_with_a_reason_until_scans_can_run_and_sigterm_exits_0() {
    let harness = ServiceHarness::new(BIN).await.env("OPENWATCH_QUEUES", "scans");
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
        .get_one(&broker.dead_queue(QueueName::Scans), Duration::from_secs(10))
        .await
        .expect("the request is kept in the dead-letter queue");
    assert_eq!(serde_json::from_slice::<ScanRequestedV1>(&body).unwrap(), request);
    let reason = header_str(&dead_headers, headers::DEAD_LETTER_REASON).unwrap_or_default();
    assert!(reason.contains("scan_requested"), "{reason}");
    service::assert_sigterm_exits_cleanly(&mut running).await;
}
