//! Two `maintenance` processes on one database and broker prefix: due hosts are dispatched
//! exactly once between them (one scheduled scan and one `ScanRequestedV1` on
//! `compliance_scanning` per host), and an abandoned run is re-enqueued to its queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use openwatch_common::domain::ScanTrigger;
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::ScanRequestedV1;
use openwatch_common::queues::QueueName;
use openwatch_test_support::prometheus;
use openwatch_test_support::service::ServiceHarness;

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-maintenance");
const HOSTS: usize = 50;
const WAIT: Duration = Duration::from_secs(30);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).await.unwrap().n
}

/// Two instances with a short dispatch interval and small batches, so both take part.
fn harness_env(harness: ServiceHarness) -> ServiceHarness {
    harness
        .env("OPENWATCH_DISPATCH_INTERVAL_SECS", "1")
        .env("OPENWATCH_DISPATCH_BATCH", "3")
        .env("OPENWATCH_STALE_SCAN_INTERVAL_SECS", "1")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_dispatch_each_due_host_exactly_once() {
    let harness = harness_env(ServiceHarness::new(BIN).await);
    let first = harness.start_healthy().await;
    let second = harness.start_healthy().await;
    let db = harness.database();
    let mut conn = db.connect().await;

    // 50 never-scanned hosts, all due at once.
    diesel::sql_query(format!(
        "INSERT INTO hosts (id, name, address) \
         SELECT gen_random_uuid(), 'host-' || n, '127.0.0.1' FROM generate_series(1, {HOSTS}) n"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let queue = harness.broker().queue(QueueName::ComplianceScanning);
    let mut requests = Vec::new();
    let deadline = Instant::now() + WAIT;
    while requests.len() < HOSTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((body, _)) = harness.broker().get_one(&queue, left).await else {
            panic!(
                "only {} of {HOSTS} requests arrived\nfirst:\n{}\nsecond:\n{}",
                requests.len(),
                first.process.output(),
                second.process.output()
            );
        };
        let message: ScanRequestedV1 = serde_json::from_slice(&body).unwrap();
        requests.push(message);
    }

    let hosts: HashSet<HostId> = requests.iter().map(|m| m.host_id).collect();
    assert_eq!(hosts.len(), HOSTS, "one request per host");
    assert!(requests.iter().all(|m| m.trigger == ScanTrigger::Scheduled));
    let scans: HashSet<ScanId> = requests.iter().map(|m| m.scan_id).collect();
    assert_eq!(scans.len(), HOSTS);

    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM scans WHERE trigger = 'scheduled' AND status = 'queued'")
            .await,
        HOSTS as i64
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM (SELECT host_id FROM scans GROUP BY host_id HAVING count(*) > 1) d"
        )
        .await,
        0,
        "no host has two scans"
    );
    // Every claimed host is leased and busy: nothing more can be dispatched, so once the
    // outbox is drained the queue holds no extra request.
    let deadline = Instant::now() + WAIT;
    while count(&mut conn, "SELECT count(*) AS n FROM outbox").await > 0 {
        assert!(Instant::now() < deadline, "the outbox was not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(harness.broker().queue_depth(&queue).await, 0, "no duplicate request");

    // Both instances report what they dispatched; together, every host once.
    let dispatched = |samples: &[prometheus::Sample]| -> f64 {
        samples.iter().filter(|s| s.name == "openwatch_scans_dispatched_total").map(|s| s.value).sum()
    };
    let total = dispatched(&first.metrics().await) + dispatched(&second.metrics().await);
    assert_eq!(total, HOSTS as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_manual_run_is_requeued_to_scans() {
    let harness = harness_env(ServiceHarness::new(BIN).await);
    let db = harness.database();
    let mut conn = db.connect().await;
    // A manual scan whose worker vanished 1 minute ago (first attempt). The host is not due,
    // so the dispatcher leaves it alone.
    #[derive(diesel::QueryableByName)]
    struct Ids {
        #[diesel(sql_type = SqlUuid)]
        scan: uuid::Uuid,
        #[diesel(sql_type = SqlUuid)]
        host: uuid::Uuid,
    }
    let ids: Ids = diesel::sql_query(
        "WITH h AS (INSERT INTO hosts (id, name, address, next_scan_at) \
                    VALUES (gen_random_uuid(), 'h', '127.0.0.1', now() + interval '1 day') RETURNING id) \
         INSERT INTO scans (id, host_id, trigger, status, queued_at, started_at, attempts, lease_expires_at) \
         SELECT gen_random_uuid(), h.id, 'manual', 'running', now() - interval '20 minutes', \
                now() - interval '15 minutes', 1, now() - interval '1 minute' FROM h \
         RETURNING id AS scan, host_id AS host",
    )
    .get_result(&mut conn)
    .await
    .unwrap();

    let running = harness.start_healthy().await;
    let queue = harness.broker().queue(QueueName::Scans);
    let Some((body, _)) = harness.broker().get_one(&queue, WAIT).await else {
        panic!("no request re-sent\n{}", running.process.output());
    };
    let message: ScanRequestedV1 = serde_json::from_slice(&body).unwrap();
    assert_eq!((message.scan_id.into_uuid(), message.host_id.into_uuid()), (ids.scan, ids.host));
    assert_eq!(message.trigger, ScanTrigger::Manual);

    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let stored: Status = diesel::sql_query("SELECT status FROM scans WHERE id = $1")
        .bind::<SqlUuid, _>(ids.scan)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.status, "queued");
    let compliance_queue = harness.broker().queue(QueueName::ComplianceScanning);
    assert_eq!(harness.broker().queue_depth(&compliance_queue).await, 0, "nothing dispatched");
}
