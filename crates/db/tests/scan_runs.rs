//! The scan worker's queries against the real PostgreSQL: starting a run (and restarting a
//! redelivered one), leaving finished scans alone, and re-reading the status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use openwatch_common::domain::{ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::ScanCompletedV1;
use openwatch_db::queries::hosts::{self, NewHost};
use openwatch_db::queries::scan_runs::{self, RunTarget, StartOutcome};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::schema::scans as scans_table;
use openwatch_db::{AsyncConnection, DbError};
use openwatch_test_support::database::TestDatabase;

const LEASE: Duration = Duration::from_secs(600);

/// Now, at the microsecond precision PostgreSQL stores.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

async fn host_and_scan(db: &TestDatabase, framework: Option<&str>) -> (HostId, ScanId) {
    let mut conn = db.pool().get().await.unwrap();
    let host = HostId::new();
    hosts::insert_host(
        &mut conn,
        NewHost {
            id: host,
            name: format!("web-{}", host.0.simple()),
            address: "127.0.0.9".into(),
            port: 2222,
            tags: vec![],
        },
    )
    .await
    .unwrap();
    let scan = ScanId::new();
    scans::insert_scan(
        &mut conn,
        &NewScan {
            id: scan,
            host_id: host,
            trigger: ScanTrigger::Scheduled,
            framework: framework.map(str::to_owned),
            requested_by: None,
        },
    )
    .await
    .unwrap();
    (host, scan)
}

async fn start(db: &TestDatabase, scan: ScanId, at: DateTime<Utc>) -> StartOutcome {
    let mut conn = db.pool().get().await.unwrap();
    scan_runs::start_run(&mut conn, scan, at, LEASE).await.unwrap()
}

async fn lease_of(db: &TestDatabase, scan: ScanId) -> Option<DateTime<Utc>> {
    let mut conn = db.pool().get().await.unwrap();
    scans_table::table
        .find(scan.into_uuid())
        .select(scans_table::lease_expires_at)
        .first(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_scan_starts_with_its_host_and_a_restart_counts_the_attempt_and_keeps_started_at() {
    let db = TestDatabase::new().await;
    let (host, scan) = host_and_scan(&db, Some("cis-debian12")).await;
    let first_at = now();

    let StartOutcome::Started(run) = start(&db, scan, first_at).await else { panic!("not started") };
    assert_eq!(run.scan_id, scan);
    assert_eq!(run.host_id, host);
    assert_eq!(
        run.host,
        RunTarget { name: format!("web-{}", host.0.simple()), address: "127.0.0.9".into(), port: 2222 }
    );
    assert_eq!(run.trigger, ScanTrigger::Scheduled);
    assert_eq!(run.framework.as_deref(), Some("cis-debian12"));
    assert_eq!(run.started_at, first_at);
    assert_eq!(run.attempts, 1);
    assert_eq!(run.lease_expires_at, first_at + TimeDelta::seconds(600));

    let mut conn = db.pool().get().await.unwrap();
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!(stored.status, ScanStatus::Running);
    assert_eq!(stored.started_at, Some(first_at));
    assert_eq!(stored.attempts, 1);
    assert_eq!(lease_of(&db, scan).await, Some(first_at + TimeDelta::seconds(600)));
    assert_eq!(scan_runs::current_status(&mut conn, scan).await.unwrap(), Some(ScanStatus::Running));

    // The broker redelivers a request whose worker died: the run starts again.
    let second_at = first_at + TimeDelta::seconds(42);
    let StartOutcome::Started(again) = start(&db, scan, second_at).await else { panic!("not restarted") };
    assert_eq!(again.attempts, 2);
    assert_eq!(again.started_at, first_at, "the first start is kept");
    assert_eq!(again.lease_expires_at, second_at + TimeDelta::seconds(600));
    let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
    assert_eq!((stored.status, stored.attempts), (ScanStatus::Running, 2));
    assert_eq!(lease_of(&db, scan).await, Some(second_at + TimeDelta::seconds(600)));
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_scans_are_left_alone_and_unknown_scans_are_reported() {
    let db = TestDatabase::new().await;
    let (host, completed) = host_and_scan(&db, None).await;
    let (_, failed) = host_and_scan(&db, None).await;
    let (_, cancelled) = host_and_scan(&db, None).await;
    let mut conn = db.pool().get().await.unwrap();

    for (scan, outcome) in [(completed, ScanStatus::Completed), (failed, ScanStatus::Failed)] {
        let message = ScanCompletedV1 {
            scan_id: scan,
            host_id: host,
            outcome,
            started_at: now(),
            finished_at: now(),
            failure_reason: (outcome == ScanStatus::Failed).then(|| "connect_failed".to_owned()),
            platform: None,
            results: vec![],
        };
        conn.transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, &message).await)
            .await
            .unwrap();
    }
    scans::cancel_scan(&mut conn, cancelled, now()).await.unwrap();

    for (scan, status) in
        [(completed, ScanStatus::Completed), (failed, ScanStatus::Failed), (cancelled, ScanStatus::Cancelled)]
    {
        assert_eq!(start(&db, scan, now()).await, StartOutcome::AlreadyFinished(status));
        let stored = scans::get_scan_details(&mut conn, scan).await.unwrap();
        assert_eq!(stored.status, status, "unchanged");
        assert_eq!(stored.attempts, 0, "no attempt counted for {status}");
        assert_eq!(lease_of(&db, scan).await, None);
        assert_eq!(scan_runs::current_status(&mut conn, scan).await.unwrap(), Some(status));
    }

    let unknown = ScanId::new();
    assert_eq!(start(&db, unknown, now()).await, StartOutcome::UnknownScan);
    assert_eq!(scan_runs::current_status(&mut conn, unknown).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_cancelled_while_running_reads_back_as_cancelled() {
    let db = TestDatabase::new().await;
    let (_, scan) = host_and_scan(&db, None).await;
    assert!(matches!(start(&db, scan, now()).await, StartOutcome::Started(_)));
    let mut conn = db.pool().get().await.unwrap();
    scans::cancel_scan(&mut conn, scan, now()).await.unwrap();
    assert_eq!(scan_runs::current_status(&mut conn, scan).await.unwrap(), Some(ScanStatus::Cancelled));
    assert_eq!(start(&db, scan, now()).await, StartOutcome::AlreadyFinished(ScanStatus::Cancelled));
}
