//! Recording scan results against the real PostgreSQL: bulk findings, score, and
//! idempotency of a duplicated `ScanCompletedV1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::Utc;
use openwatch_common::domain::{FindingStatus, ScanStatus, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::{EvidenceV1, PlatformV1, RuleResultV1, ScanCompletedV1};
use openwatch_db::queries::hosts;
use openwatch_db::queries::scans::{self, RecordOutcome};
use openwatch_db::{AsyncConnection, DbError, Pool};
use openwatch_test_support::database::TestDatabase;

fn result(rule: usize, status: FindingStatus) -> RuleResultV1 {
    RuleResultV1 {
        rule_id: format!("rule_{rule:05}"),
        status,
        severity: Severity::Medium,
        reason: None,
        evidence: EvidenceV1 { source: "/etc/x".into(), excerpt: "x".into(), expected: None, actual: None },
        frameworks: BTreeMap::from([("cis-debian12".to_string(), vec!["1.1".to_string()])]),
        duration_us: 1,
    }
}

fn completed(host: HostId, scan: ScanId, results: Vec<RuleResultV1>) -> ScanCompletedV1 {
    ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        failure_reason: None,
        platform: Some(PlatformV1 { family: "debian".into(), version: "12".into() }),
        results,
    }
}

async fn record(pool: &Pool, message: &ScanCompletedV1) -> RecordOutcome {
    let mut conn = pool.get().await.unwrap();
    conn.transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, message).await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn results_are_stored_in_bulk_with_their_score_and_a_duplicate_changes_nothing() {
    let db = TestDatabase::new().await;
    let (host, scan) = db.insert_queued_scan().await;
    // More than one INSERT statement's worth, with every status present.
    let statuses = [
        FindingStatus::Pass,
        FindingStatus::Pass,
        FindingStatus::Pass,
        FindingStatus::Fail,
        FindingStatus::Error,
        FindingStatus::NotApplicable,
        FindingStatus::Manual,
    ];
    let results: Vec<_> = (0..4_900).map(|i| result(i, statuses[i % statuses.len()])).collect();
    let message = completed(host, scan, results);

    assert_eq!(
        record(&db.pool(), &message).await,
        RecordOutcome::Recorded { findings: 4_900, score: Some(75.0) }
    );
    assert_eq!(
        record(&db.pool(), &message).await,
        RecordOutcome::AlreadyFinished(ScanStatus::Completed),
        "a redelivered result is ignored"
    );

    let mut conn = db.pool().get().await.unwrap();
    assert_eq!(scans::count_findings(&mut conn, scan).await.unwrap(), 4_900);
    let summary = scans::get_scan(&mut conn, scan).await.unwrap();
    assert_eq!(summary.status, ScanStatus::Completed);
    assert_eq!(summary.rules_total, 4_900);
    assert_eq!(summary.score, Some(75.0));
    let stored_host = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored_host.last_score, Some(75.0));
    assert_eq!(stored_host.os_family.as_deref(), Some("debian"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_scan_keeps_its_reason_and_has_no_score() {
    let db = TestDatabase::new().await;
    let (host, scan) = db.insert_queued_scan().await;
    let mut message = completed(host, scan, vec![]);
    message.outcome = ScanStatus::Failed;
    message.failure_reason = Some("host_key_mismatch".into());
    message.platform = None;

    assert_eq!(record(&db.pool(), &message).await, RecordOutcome::Recorded { findings: 0, score: None });
    let mut conn = db.pool().get().await.unwrap();
    let summary = scans::get_scan(&mut conn, scan).await.unwrap();
    assert_eq!(summary.status, ScanStatus::Failed);
    assert_eq!(summary.failure_reason.as_deref(), Some("host_key_mismatch"));
    assert_eq!(hosts::get_host(&mut conn, host).await.unwrap().last_score, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_scans_and_non_terminal_outcomes_are_refused() {
    let db = TestDatabase::new().await;
    let (host, scan) = db.insert_queued_scan().await;
    assert_eq!(record(&db.pool(), &completed(host, ScanId::new(), vec![])).await, RecordOutcome::UnknownScan);

    let mut message = completed(host, scan, vec![]);
    message.outcome = ScanStatus::Running;
    let mut conn = db.pool().get().await.unwrap();
    let err = conn
        .transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, &message).await)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::InvalidData(_)), "{err}");
    assert_eq!(scans::get_scan(&mut conn, scan).await.unwrap().status, ScanStatus::Queued);
}
