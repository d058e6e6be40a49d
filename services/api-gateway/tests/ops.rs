//! `api-gateway` as a process: health per dependency, metrics, graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openwatch_test_support::http;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{self, Dependency, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-api-gateway");

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    service::assert_healthy_with_metrics(BIN, "api-gateway", &["postgres", "rabbitmq", "redis"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_postgres_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::Postgres, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_postgres_still_gets_an_answer_within_two_seconds() {
    let error = service::assert_unhealthy_naming(BIN, Dependency::Postgres, ProxyMode::Blackhole).await;
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_redis_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::Redis, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_rabbitmq_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::RabbitMq, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_complete_then_exits_0() {
    let harness = ServiceHarness::new(BIN).await;
    // With Redis swallowing connections, /health takes its full check timeout (1.5 s):
    // a request that is certainly in flight when the signal arrives.
    let mut running = harness.start_with(Dependency::Redis, ProxyMode::Blackhole).await;
    let addr = running.addr;
    let request = tokio::spawn(async move { http::get(addr, "/health").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    running.process.sigterm();
    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status, 503);
    let status = running.process.wait_exit(service::START_TIMEOUT).await;
    assert!(status.success(), "{status:?}\n{}", running.process.output());
}
