//! The scheduled-scan dispatcher and the stale-scan reaper against the real PostgreSQL:
//! which hosts are due and in what order, the lease, the outbox rows, concurrent
//! dispatchers and reapers never handling the same host or scan twice, and stale scans
//! re-enqueued once and then failed `abandoned`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use openwatch_common::domain::{ComplianceState, MonitoringState, ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::Message;
use openwatch_common::messages::v1::ScanRequestedV1;
use openwatch_common::outbox::OutboxMessage;
use openwatch_common::queues::QueueName;
use openwatch_db::queries::dispatch::{self, ABANDONED, ReapedScan, StaleAction, StalePolicy};
use openwatch_db::queries::hosts::{self, NewHost};
use openwatch_db::queries::maintenance_windows::{self, NewMaintenanceWindow};
use openwatch_db::queries::scan_runs::{self, StartOutcome};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::queries::{outbox, scheduler};
use openwatch_db::schema::{hosts as hosts_table, outbox as outbox_table, scans as scans_table};
use openwatch_db::{AsyncPgConnection, PooledConnection};
use openwatch_test_support::database::TestDatabase;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(900);
const WORKER_LEASE: Duration = Duration::from_secs(600);

/// Now, at the microsecond precision PostgreSQL stores.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

async fn conn(db: &TestDatabase) -> PooledConnection {
    db.pool().get().await.unwrap()
}

/// A host named `name`, in compliance state `state`, due at `next_scan_at`.
async fn host(
    conn: &mut AsyncPgConnection,
    name: &str,
    state: ComplianceState,
    next_scan_at: DateTime<Utc>,
) -> HostId {
    let id = HostId::new();
    hosts::insert_host(
        conn,
        NewHost { id, name: name.to_owned(), address: "127.0.0.1".into(), port: 22, tags: vec![] },
    )
    .await
    .unwrap();
    diesel::update(hosts_table::table.find(id.into_uuid()))
        .set((hosts_table::compliance_state.eq(state.as_str()), hosts_table::next_scan_at.eq(next_scan_at)))
        .execute(conn)
        .await
        .unwrap();
    id
}

async fn queue_scan(conn: &mut AsyncPgConnection, host: HostId, trigger: ScanTrigger) -> ScanId {
    let id = ScanId::new();
    scans::insert_scan(conn, &NewScan { id, host_id: host, trigger, framework: None, requested_by: None })
        .await
        .unwrap();
    id
}

async fn next_scan_at(conn: &mut AsyncPgConnection, host: HostId) -> DateTime<Utc> {
    hosts::get_host(conn, host).await.unwrap().next_scan_at
}

async fn dispatch(conn: &mut AsyncPgConnection, at: DateTime<Utc>, limit: u32) -> Vec<HostId> {
    dispatch::dispatch_due_scans(conn, at, limit, LEASE, None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.host_id)
        .collect()
}

/// Every outbox row, decoded.
async fn outbox_requests(conn: &mut AsyncPgConnection) -> Vec<(OutboxMessage, ScanRequestedV1)> {
    outbox::lock_batch(conn, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            assert_eq!(row.message_type, ScanRequestedV1::TYPE);
            assert_eq!(row.version, ScanRequestedV1::VERSION);
            let message: ScanRequestedV1 = serde_json::from_slice(&row.payload).unwrap();
            (row, message)
        })
        .collect()
}

async fn clear_outbox(conn: &mut AsyncPgConnection) {
    diesel::delete(outbox_table::table).execute(conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn due_hosts_are_claimed_by_priority_then_most_overdue_and_the_lease_moves_their_next_scan() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    // Inserted in an order unrelated to the expected one.
    let compliant = host(&mut conn, "compliant", ComplianceState::Compliant, t - minutes(500)).await;
    let partial = host(&mut conn, "partial", ComplianceState::Partial, t - minutes(400)).await;
    let critical_recent = host(&mut conn, "critical-recent", ComplianceState::Critical, t - minutes(1)).await;
    let mostly = host(&mut conn, "mostly", ComplianceState::MostlyCompliant, t - minutes(300)).await;
    let unknown = host(&mut conn, "unknown", ComplianceState::Unknown, t).await;
    let low = host(&mut conn, "low", ComplianceState::Low, t - minutes(200)).await;
    let critical_overdue =
        host(&mut conn, "critical-overdue", ComplianceState::Critical, t - minutes(30)).await;
    let later = host(&mut conn, "critical-later", ComplianceState::Critical, t + minutes(1)).await;

    let first = dispatch::dispatch_due_scans(&mut conn, t, 3, LEASE, None).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.host_id).collect::<Vec<_>>(),
        [critical_overdue, critical_recent, unknown],
        "critical first (most overdue first), then never-scanned hosts"
    );
    assert_eq!(
        first.iter().map(|d| d.compliance_state).collect::<Vec<_>>(),
        [ComplianceState::Critical, ComplianceState::Critical, ComplianceState::Unknown]
    );
    assert_eq!(first[0].due_at, t - minutes(30));
    for claimed in [critical_overdue, critical_recent, unknown] {
        assert_eq!(next_scan_at(&mut conn, claimed).await, t + TimeDelta::seconds(900), "leased");
    }
    assert_eq!(next_scan_at(&mut conn, low).await, t - minutes(200), "unclaimed hosts keep their time");

    let rest = dispatch(&mut conn, t, 10).await;
    assert_eq!(rest, [low, partial, mostly, compliant]);
    assert!(dispatch(&mut conn, t, 10).await.is_empty(), "nothing is due twice");
    assert_eq!(next_scan_at(&mut conn, later).await, t + minutes(1), "not yet due: untouched");

    // Once its time comes the last host is dispatched too.
    assert_eq!(dispatch(&mut conn, t + minutes(2), 10).await, [later]);
    // Zero asks for nothing.
    assert!(dispatch(&mut conn, t + minutes(60), 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_down_and_busy_hosts_are_skipped() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let due = t - minutes(5);
    let state = ComplianceState::Partial;
    let mut expected = HashSet::new();

    let paused = host(&mut conn, "paused", state, due).await;
    hosts::set_maintenance_until(&mut conn, paused, Some(t + minutes(10))).await.unwrap();
    let pause_over = host(&mut conn, "pause-over", state, due).await;
    hosts::set_maintenance_until(&mut conn, pause_over, Some(t)).await.unwrap();
    expected.insert(pause_over);

    let window = |host: HostId, from: DateTime<Utc>, to: DateTime<Utc>| NewMaintenanceWindow {
        id: Uuid::now_v7(),
        host_id: host,
        starts_at: from,
        ends_at: to,
        reason: None,
        created_by: None,
    };
    let in_window = host(&mut conn, "in-window", state, due).await;
    maintenance_windows::insert(&mut conn, window(in_window, t - minutes(1), t + minutes(1))).await.unwrap();
    let window_over = host(&mut conn, "window-over", state, due).await;
    maintenance_windows::insert(&mut conn, window(window_over, t - minutes(10), t)).await.unwrap();
    expected.insert(window_over);
    let window_ahead = host(&mut conn, "window-ahead", state, due).await;
    maintenance_windows::insert(&mut conn, window(window_ahead, t + minutes(1), t + minutes(10)))
        .await
        .unwrap();
    expected.insert(window_ahead);

    let down = host(&mut conn, "down", state, due).await;
    hosts::record_liveness(&mut conn, down, MonitoringState::Down, t, t).await.unwrap();
    let degraded = host(&mut conn, "degraded", state, due).await;
    hosts::record_liveness(&mut conn, degraded, MonitoringState::Degraded, t, t).await.unwrap();
    expected.insert(degraded);

    let with_queued = host(&mut conn, "with-queued-manual", state, due).await;
    queue_scan(&mut conn, with_queued, ScanTrigger::Manual).await;
    let with_running = host(&mut conn, "with-running", state, due).await;
    let running = queue_scan(&mut conn, with_running, ScanTrigger::Scheduled).await;
    assert!(matches!(
        scan_runs::start_run(&mut conn, running, t, WORKER_LEASE).await.unwrap(),
        StartOutcome::Started(_)
    ));
    let with_cancelled = host(&mut conn, "with-cancelled", state, due).await;
    let cancelled = queue_scan(&mut conn, with_cancelled, ScanTrigger::Manual).await;
    scans::cancel_scan(&mut conn, cancelled, t).await.unwrap();
    expected.insert(with_cancelled);

    let claimed: HashSet<HostId> = dispatch(&mut conn, t, 100).await.into_iter().collect();
    assert_eq!(names_of(&mut conn, &claimed).await, names_of(&mut conn, &expected).await);
    for skipped in [paused, in_window, down, with_queued, with_running] {
        assert_eq!(next_scan_at(&mut conn, skipped).await, due, "a skipped host keeps its time");
    }
}

/// The hosts' names, sorted (for readable assertion failures).
async fn names_of(conn: &mut AsyncPgConnection, ids: &HashSet<HostId>) -> Vec<String> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.into_uuid()).collect();
    hosts_table::table
        .filter(hosts_table::id.eq_any(ids))
        .select(hosts_table::name)
        .order(hosts_table::name)
        .load(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_dispatched_host_gets_a_queued_scheduled_scan_and_a_request_on_compliance_scanning() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let a = host(&mut conn, "a", ComplianceState::Low, t - minutes(3)).await;
    let b = host(&mut conn, "b", ComplianceState::Unknown, t).await;

    let dispatched = dispatch::dispatch_due_scans(
        &mut conn,
        t,
        10,
        LEASE,
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    .await
    .unwrap();
    assert_eq!(dispatched.len(), 2);
    for d in &dispatched {
        let scan = scans::get_scan_details(&mut conn, d.scan_id).await.unwrap();
        assert_eq!(scan.host_id, d.host_id);
        assert_eq!(scan.trigger, ScanTrigger::Scheduled);
        assert_eq!(scan.status, ScanStatus::Queued);
        assert_eq!(scan.queued_at, t);
        assert_eq!(scan.requested_by, None);
        assert_eq!(scan.framework, None);
    }

    let requests = outbox_requests(&mut conn).await;
    assert_eq!(requests.len(), 2);
    let mut by_host = HashMap::new();
    for (row, message) in requests {
        assert_eq!(row.queue, QueueName::ComplianceScanning, "scheduled scans go to compliance_scanning");
        assert_eq!(
            row.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(message.trigger, ScanTrigger::Scheduled);
        assert_eq!(message.requested_at, t);
        assert_eq!(message.requested_by, None);
        by_host.insert(message.host_id, message.scan_id);
    }
    for d in &dispatched {
        assert_eq!(by_host.get(&d.host_id), Some(&d.scan_id), "one request per scan, naming it");
    }
    assert!(by_host.contains_key(&a) && by_host.contains_key(&b));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_dispatchers_never_claim_a_host_twice() {
    const HOSTS: usize = 600;
    const DISPATCHERS: usize = 4;
    let db = TestDatabase::new().await;
    let t = now();
    {
        let mut conn = conn(&db).await;
        diesel::sql_query(format!(
            "INSERT INTO hosts (id, name, address, next_scan_at, compliance_state) \
             SELECT gen_random_uuid(), 'h' || n, '127.0.0.1', $1 - n * interval '1 second', \
                    (ARRAY['unknown','critical','low','partial','mostly_compliant','compliant'])[1 + n % 6] \
               FROM generate_series(1, {HOSTS}) AS n"
        ))
        .bind::<diesel::sql_types::Timestamptz, _>(t)
        .execute(&mut conn)
        .await
        .unwrap();
    }

    // Each dispatcher has its own connection and claims small batches until none are due,
    // all starting together, with the same `now` (one scheduling window).
    let barrier = Arc::new(tokio::sync::Barrier::new(DISPATCHERS));
    let mut tasks = Vec::new();
    for _ in 0..DISPATCHERS {
        let mut conn = db.connect().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let batch = dispatch::dispatch_due_scans(&mut conn, t, 7, LEASE, None).await.unwrap();
                let done = batch.len() < 7;
                mine.extend(batch.into_iter().map(|d| d.host_id));
                if done {
                    break mine;
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    let mut busy_dispatchers = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        busy_dispatchers += usize::from(!mine.is_empty());
        claimed.extend(mine);
    }
    let distinct: HashSet<HostId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), HOSTS, "every host claimed, none twice");
    assert_eq!(distinct.len(), HOSTS);
    assert!(
        busy_dispatchers >= 2,
        "the dispatchers really ran side by side ({busy_dispatchers} claimed hosts)"
    );

    let mut conn = conn(&db).await;
    let per_host: Vec<i64> = scans_table::table
        .group_by(scans_table::host_id)
        .select(diesel::dsl::count_star())
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(per_host.len(), HOSTS);
    assert!(per_host.iter().all(|n| *n == 1), "exactly one scan per host");
    let requests: i64 = outbox_table::table
        .filter(outbox_table::queue.eq(QueueName::ComplianceScanning.as_str()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(requests, HOSTS as i64);
    // Later in the same window nothing is due: every host is leased and has its scan.
    assert!(dispatch(&mut conn, t + minutes(1), 100).await.is_empty());
}

fn policy() -> StalePolicy {
    StalePolicy { max_attempts: 2, queued_timeout: Duration::from_secs(3_600), batch: 100 }
}

async fn reap(conn: &mut AsyncPgConnection, at: DateTime<Utc>) -> Vec<ReapedScan> {
    dispatch::reap_stale_scans(conn, at, &policy(), None).await.unwrap()
}

async fn lease_of(conn: &mut AsyncPgConnection, scan: ScanId) -> Option<DateTime<Utc>> {
    scans_table::table.find(scan.into_uuid()).select(scans_table::lease_expires_at).first(conn).await.unwrap()
}

async fn start(conn: &mut AsyncPgConnection, scan: ScanId, at: DateTime<Utc>) {
    let outcome = scan_runs::start_run(conn, scan, at, WORKER_LEASE).await.unwrap();
    assert!(matches!(outcome, StartOutcome::Started(_)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_run_is_requeued_once_then_failed_abandoned_and_its_host_backs_off() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let host_id = host(&mut conn, "h", ComplianceState::Critical, t).await;
    let scan = queue_scan(&mut conn, host_id, ScanTrigger::Manual).await;
    start(&mut conn, scan, t).await;

    // Within its lease nothing happens.
    assert!(reap(&mut conn, t + minutes(9)).await.is_empty());

    // The worker died: the lease passes.
    let first = t + minutes(11);
    let reaped = reap(&mut conn, first).await;
    assert_eq!(
        reaped,
        [ReapedScan {
            scan_id: scan,
            host_id,
            trigger: ScanTrigger::Manual,
            was: ScanStatus::Running,
            action: StaleAction::Requeued
        }]
    );
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!((stored.status, stored.attempts, stored.finished_at), (ScanStatus::Queued, 1, None));
    assert_eq!(lease_of(&mut conn, scan).await, Some(first + minutes(60)), "redelivery deadline");
    let requests = outbox_requests(&mut conn).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0.queue, QueueName::Scans, "a manual scan goes back to `scans`");
    assert_eq!(requests[0].1.scan_id, scan);
    assert_eq!(requests[0].1.trigger, ScanTrigger::Manual);
    assert!(reap(&mut conn, first + minutes(1)).await.is_empty(), "re-enqueued once, not every round");
    assert_eq!(outbox_requests(&mut conn).await.len(), 1);

    // A worker takes the re-sent request (attempt 2) and is lost again.
    let second_start = first + minutes(2);
    start(&mut conn, scan, second_start).await;
    let second = second_start + minutes(11);
    let reaped = reap(&mut conn, second).await;
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].was, reaped[0].action), (ScanStatus::Running, StaleAction::Failed));
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!(stored.status, ScanStatus::Failed);
    assert_eq!(stored.failure_reason.as_deref(), Some(ABANDONED));
    assert_eq!(stored.finished_at, Some(second));
    assert_eq!(lease_of(&mut conn, scan).await, None);
    assert_eq!(outbox_requests(&mut conn).await.len(), 1, "no request for a failed scan");
    assert!(reap(&mut conn, second + minutes(120)).await.is_empty(), "a failed scan is never reaped again");

    // The host backs off like after any failed scan.
    let config = scheduler::get(&mut conn).await.unwrap();
    let stored_host = hosts::get_host(&mut conn, host_id).await.unwrap();
    assert_eq!(stored_host.scan_failures, 1);
    assert_eq!(stored_host.next_scan_at, second + config.backoff_for(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_request_is_resent_once_to_the_queue_of_its_trigger_then_failed() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let host_id = host(&mut conn, "h", ComplianceState::Partial, t).await;
    let dispatched = dispatch::dispatch_due_scans(&mut conn, t, 10, LEASE, None).await.unwrap();
    let scan = dispatched[0].scan_id;
    clear_outbox(&mut conn).await; // the relay published the first request; it was lost

    assert!(reap(&mut conn, t + minutes(59)).await.is_empty(), "not stale yet");
    let late = t + minutes(61);
    let reaped = reap(&mut conn, late).await;
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (reaped[0].scan_id, reaped[0].was, reaped[0].action),
        (scan, ScanStatus::Queued, StaleAction::Requeued)
    );
    let requests = outbox_requests(&mut conn).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0.queue, QueueName::ComplianceScanning);
    assert_eq!(
        requests[0].1,
        ScanRequestedV1 {
            scan_id: scan,
            host_id,
            trigger: ScanTrigger::Scheduled,
            framework: None,
            requested_by: None,
            requested_at: t,
        },
        "the original request again"
    );
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!((stored.status, stored.queued_at), (ScanStatus::Queued, t), "history kept");
    assert!(reap(&mut conn, late + minutes(59)).await.is_empty(), "re-sent once only");

    // No worker ever took it: after another timeout it fails.
    let reaped = reap(&mut conn, late + minutes(61)).await;
    assert_eq!((reaped.len(), reaped[0].action), (1, StaleAction::Failed));
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!(stored.status, ScanStatus::Failed);
    assert_eq!(stored.failure_reason.as_deref(), Some(ABANDONED));
    assert_eq!(outbox_requests(&mut conn).await.len(), 1);
    assert_eq!(hosts::get_host(&mut conn, host_id).await.unwrap().scan_failures, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resent_request_that_a_worker_takes_gets_the_running_rules() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let host_id = host(&mut conn, "h", ComplianceState::Partial, t).await;
    let scan = queue_scan(&mut conn, host_id, ScanTrigger::Scheduled).await;
    diesel::update(scans_table::table.find(scan.into_uuid()))
        .set(scans_table::queued_at.eq(t - minutes(61)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(reap(&mut conn, t).await[0].action, StaleAction::Requeued);
    // The re-sent request is taken: the run's lease replaces the redelivery deadline.
    start(&mut conn, scan, t + minutes(1)).await;
    assert_eq!(lease_of(&mut conn, scan).await, Some(t + minutes(11)));
    // The run is abandoned on its first attempt: it is retried, not failed.
    let reaped = reap(&mut conn, t + minutes(12)).await;
    assert_eq!((reaped[0].was, reaped[0].action), (ScanStatus::Running, StaleAction::Requeued));
    let requests = outbox_requests(&mut conn).await;
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|(row, _)| row.queue == QueueName::ComplianceScanning));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_and_finished_scans_are_left_alone() {
    let db = TestDatabase::new().await;
    let mut conn = conn(&db).await;
    let t = now();
    let h = host(&mut conn, "h", ComplianceState::Partial, t).await;
    let fresh = queue_scan(&mut conn, h, ScanTrigger::Manual).await;
    let running = queue_scan(&mut conn, h, ScanTrigger::Manual).await;
    start(&mut conn, running, t).await;
    let cancelled = queue_scan(&mut conn, h, ScanTrigger::Manual).await;
    scans::cancel_scan(&mut conn, cancelled, t - minutes(120)).await.unwrap();
    diesel::update(scans_table::table.find(cancelled.into_uuid()))
        .set(scans_table::queued_at.eq(t - minutes(180)))
        .execute(&mut conn)
        .await
        .unwrap();

    assert!(reap(&mut conn, t + minutes(5)).await.is_empty());
    for (scan, status) in
        [(fresh, ScanStatus::Queued), (running, ScanStatus::Running), (cancelled, ScanStatus::Cancelled)]
    {
        assert_eq!(scans::get_scan_details(&mut conn, scan).await.unwrap().status, status);
    }
    assert!(outbox_requests(&mut conn).await.is_empty());
    assert_eq!(hosts::get_host(&mut conn, h).await.unwrap().scan_failures, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reapers_handle_each_stale_scan_once() {
    const SCANS: usize = 300;
    let db = TestDatabase::new().await;
    let t = now();
    {
        let mut conn = conn(&db).await;
        diesel::sql_query(format!(
            "WITH h AS (INSERT INTO hosts (id, name, address) \
                        SELECT gen_random_uuid(), 'h' || n, '127.0.0.1' FROM generate_series(1, {SCANS}) n \
                        RETURNING id) \
             INSERT INTO scans (id, host_id, trigger, status, queued_at, started_at, attempts, lease_expires_at) \
             SELECT gen_random_uuid(), h.id, 'scheduled', 'running', $1 - interval '1 hour', \
                    $1 - interval '1 hour', 1, $1 - interval '1 minute' FROM h"
        ))
        .bind::<diesel::sql_types::Timestamptz, _>(t)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let small = StalePolicy { batch: 9, ..policy() };
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut conn = db.connect().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let batch = dispatch::reap_stale_scans(&mut conn, t, &small, None).await.unwrap();
                let done = batch.len() < small.batch as usize;
                mine.extend(batch);
                if done {
                    break mine;
                }
            }
        }));
    }
    let mut reaped = Vec::new();
    for task in tasks {
        reaped.extend(task.await.unwrap());
    }
    let distinct: HashSet<ScanId> = reaped.iter().map(|r| r.scan_id).collect();
    assert_eq!((reaped.len(), distinct.len()), (SCANS, SCANS), "each scan handled exactly once");
    assert!(reaped.iter().all(|r| r.action == StaleAction::Requeued));
    let mut conn = conn(&db).await;
    let requests = outbox_requests(&mut conn).await;
    assert_eq!(requests.len(), SCANS, "one re-sent request per scan");
    let scans_requested: HashSet<ScanId> = requests.iter().map(|(_, m)| m.scan_id).collect();
    assert_eq!(scans_requested, distinct);
}
