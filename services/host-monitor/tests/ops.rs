//! `host-monitor` as a process: health per dependency, metrics, liveness probes recorded,
//! and SIGTERM while a check is in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use openwatch_common::domain::MonitoringState;
use openwatch_common::ids::HostId;
use openwatch_common::messages::v1::HostCheckRequestedV1;
use openwatch_db::queries::hosts;
use openwatch_test_support::database::TestDatabase;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{self, Dependency, HeldLock, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-host-monitor");

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    service::assert_healthy_with_metrics(BIN, "host-monitor", &["postgres", "rabbitmq"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_postgres_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::Postgres, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_rabbitmq_still_gets_an_answer_within_two_seconds() {
    service::assert_unhealthy_naming(BIN, Dependency::RabbitMq, ProxyMode::Blackhole).await;
}

async fn state_of(db: &TestDatabase, host: HostId) -> MonitoringState {
    hosts::get_host(&mut db.pool().get().await.unwrap(), host).await.unwrap().monitoring_state
}

async fn wait_for_state(db: &TestDatabase, host: HostId, expected: MonitoringState) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while state_of(db, host).await != expected {
        assert!(Instant::now() < deadline, "host {host} never became {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listening_port_is_online_and_a_closed_one_is_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let harness = ServiceHarness::new(BIN).await.env("OPENWATCH_PROBE_TIMEOUT_MS", "2000");
    let db = harness.database();
    let up = db.insert_host("up", listener.local_addr().unwrap().port()).await;
    let down = db.insert_host("down", closed_port).await;
    let _running = harness.start_healthy().await;

    let publisher = harness.broker().publisher().await;
    for host_id in [up, down] {
        publisher.publish(&HostCheckRequestedV1 { host_id, requested_at: Utc::now() }).await.unwrap();
    }
    wait_for_state(db, up, MonitoringState::Online).await;
    wait_for_state(db, down, MonitoringState::Down).await;
    let checked = hosts::get_host(&mut db.pool().get().await.unwrap(), up).await.unwrap();
    assert!(checked.last_check_at.is_some());
    assert!(checked.next_check_at > Utc::now(), "the next check is scheduled after this one");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_check_lets_it_finish_then_exits_0() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let harness = ServiceHarness::new(BIN).await;
    let db = harness.database();
    let host = db.insert_host("busy", listener.local_addr().unwrap().port()).await;
    let mut running = harness.start_healthy().await;

    let mut lock =
        HeldLock::acquire(db, &format!("SELECT 1 FROM hosts WHERE id = '{host}' FOR UPDATE")).await;
    let check = HostCheckRequestedV1 { host_id: host, requested_at: Utc::now() };
    harness.broker().publisher().await.publish(&check).await.unwrap();
    lock.wait_for_waiter(db).await;
    service::assert_sigterm_finishes_in_flight_work(&mut running, lock).await;
    assert_eq!(state_of(db, host).await, MonitoringState::Online, "the in-flight check was recorded");
}
