//! `maintenance` as a process: health per dependency, metrics, its housekeeping round
//! (outbox → relay → queue → job), and SIGTERM while a job runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{self, Dependency, HeldLock, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-maintenance");

#[tokio::test(flavor = "multi_thread")]
async fn healthy_with_every_dependency_up_and_metrics_parse() {
    service::assert_healthy_with_metrics(BIN, "maintenance", &["postgres", "rabbitmq", "rabbitmq_outbox"])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_rabbitmq_is_named_in_a_503() {
    service::assert_unhealthy_naming(BIN, Dependency::RabbitMq, ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_postgres_still_gets_an_answer_within_two_seconds() {
    let error = service::assert_unhealthy_naming(BIN, Dependency::Postgres, ProxyMode::Blackhole).await;
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_startup_round_expires_due_exceptions_and_sigterm_waits_for_the_running_job() {
    let harness = ServiceHarness::new(BIN).await;
    let db = harness.database();
    // An approved exception that expired an hour ago (requester and approver differ).
    let seed = HeldLock::acquire(
        db,
        "WITH requester AS (INSERT INTO users (id, username, password_hash, role) \
                VALUES (gen_random_uuid(), 'alice', 'x', 'security_analyst') RETURNING id), \
              approver AS (INSERT INTO users (id, username, password_hash, role) \
                VALUES (gen_random_uuid(), 'bob', 'x', 'security_admin') RETURNING id), \
              host AS (INSERT INTO hosts (id, name, address, port) \
                VALUES (gen_random_uuid(), 'h', '127.0.0.1', 22) RETURNING id) \
         INSERT INTO exceptions (id, host_id, rule_id, reason, status, requested_by, requested_at, decided_by, \
                                 decided_at, expires_at) \
         SELECT gen_random_uuid(), host.id, 'rule', 'accepted risk', 'approved', requester.id, \
                now() - interval '3 hours', approver.id, now() - interval '2 hours', now() - interval '1 hour' \
         FROM requester, approver, host",
    )
    .await;
    seed.release().await;

    // The job's UPDATE will wait behind this lock: work in flight for as long as we hold it.
    let mut lock = HeldLock::acquire(db, "LOCK TABLE exceptions IN EXCLUSIVE MODE").await;
    let mut running = harness.start_healthy().await;
    lock.wait_for_waiter(db).await;
    service::assert_sigterm_finishes_in_flight_work(&mut running, lock).await;

    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let mut conn = db.connect().await;
    let row: Status = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT status FROM exceptions WHERE rule_id = 'rule'"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(row.status, "expired", "the in-flight job finished before the service exited");
}
