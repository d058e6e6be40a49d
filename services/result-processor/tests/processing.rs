//! `result-processor` as a process, fed through the real broker: a rule flipping
//! pass → fail → pass on one host produces drift both ways and a `rule_failed` alert that
//! opens and then resolves itself; a redelivered result changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use openwatch_common::domain::{ComplianceState, FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1};
use openwatch_common::queues::QueueName;
use openwatch_db::queries::alerts::{self, AlertFilter, AlertStatus};
use openwatch_db::queries::compliance::{self, DriftFilter};
use openwatch_db::queries::hosts;
use openwatch_db::queries::page::PageRequest;
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_test_support::database::TestDatabase;
use openwatch_test_support::prometheus;
use openwatch_test_support::service::{RunningService, ServiceHarness};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-result-processor");
const WAIT: Duration = Duration::from_secs(15);

fn results(ssh: FindingStatus) -> Vec<RuleResultV1> {
    let result = |rule: String, status, severity| RuleResultV1 {
        rule_id: rule,
        status,
        severity,
        reason: None,
        evidence: EvidenceV1 {
            source: "sshd -T".into(),
            excerpt: "permitrootlogin no".into(),
            expected: None,
            actual: None,
        },
        frameworks: [("cis".to_owned(), vec!["5.2.10".to_owned()])].into(),
        duration_us: 5,
    };
    let mut all: Vec<RuleResultV1> =
        (0..19).map(|i| result(format!("rule-{i:02}"), FindingStatus::Pass, Severity::Medium)).collect();
    all.push(result("ssh-root-login".into(), ssh, Severity::High));
    all
}

async fn queue_scan(db: &TestDatabase, host: HostId) -> ScanId {
    let scan = ScanId::new();
    let new_scan = NewScan {
        id: scan,
        host_id: host,
        trigger: ScanTrigger::Scheduled,
        framework: None,
        requested_by: None,
    };
    scans::insert_scan(&mut db.pool().get().await.unwrap(), &new_scan).await.unwrap();
    scan
}

fn completed(scan: ScanId, host: HostId, finished_at: DateTime<Utc>, ssh: FindingStatus) -> ScanCompletedV1 {
    ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: finished_at - TimeDelta::seconds(1),
        finished_at,
        failure_reason: None,
        platform: None,
        results: results(ssh),
    }
}

/// Polls until the scan is completed (the whole transaction committed).
async fn wait_completed(db: &TestDatabase, scan: ScanId, service: &mut RunningService) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = scans::get_scan(&mut db.pool().get().await.unwrap(), scan).await.unwrap().status;
        if status == ScanStatus::Completed {
            return;
        }
        assert!(Instant::now() < deadline, "scan {scan} still {status}\n{}", service.process.output());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `/metrics` until `results` messages acknowledged reach `n`.
async fn wait_acked(service: &RunningService, queue: &str, n: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let samples = service.metrics().await;
        let labels = [("queue", queue), ("outcome", "acked")];
        let acked =
            prometheus::value(&samples, "openwatch_mq_messages_consumed_total", &labels).unwrap_or(0.0);
        if acked >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {acked} of {n} results acknowledged");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_flip_drifts_both_ways_and_its_alert_opens_then_resolves() {
    let harness = ServiceHarness::new(BIN).await;
    let db = harness.database();
    let host = db.insert_host("web-1", 22).await;
    let mut service = harness.start_healthy().await;
    let publisher = harness.broker().publisher().await;
    let page = PageRequest::new(100, 0).unwrap();
    let start = Utc::now() - TimeDelta::minutes(30);

    // Baseline, then the flip to fail.
    let first = queue_scan(db, host).await;
    publisher.publish(&completed(first, host, start, FindingStatus::Pass)).await.unwrap();
    wait_completed(db, first, &mut service).await;
    let second = queue_scan(db, host).await;
    publisher
        .publish(&completed(second, host, start + TimeDelta::minutes(10), FindingStatus::Fail))
        .await
        .unwrap();
    wait_completed(db, second, &mut service).await;

    let mut conn = db.pool().get().await.unwrap();
    let drift_filter =
        DriftFilter { host_id: Some(host), rule_id: Some("ssh-root-login".into()), ..Default::default() };
    let drift = compliance::list_drift(&mut conn, &drift_filter, page).await.unwrap().items;
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(
        (drift[0].previous_status, drift[0].current_status),
        (Some(FindingStatus::Pass), Some(FindingStatus::Fail))
    );
    assert_eq!(drift[0].scan_id, Some(second));
    let alert_filter =
        AlertFilter { host_id: Some(host), alert_type: Some("rule_failed".into()), ..Default::default() };
    let alerts = alerts::list_alerts(&mut conn, &alert_filter, page).await.unwrap().items;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule_id.as_deref(), Some("ssh-root-login"));
    assert_eq!(alerts[0].status, AlertStatus::Open);
    let stored = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored.last_score, Some(95.0));
    assert_eq!(stored.compliance_state, ComplianceState::MostlyCompliant);

    // Back to pass: drift back, and the alert resolves itself.
    let third = queue_scan(db, host).await;
    let back = completed(third, host, start + TimeDelta::minutes(20), FindingStatus::Pass);
    publisher.publish(&back).await.unwrap();
    wait_completed(db, third, &mut service).await;
    let drift = compliance::list_drift(&mut conn, &drift_filter, page).await.unwrap().items;
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert_eq!(
        (drift[0].previous_status, drift[0].current_status),
        (Some(FindingStatus::Fail), Some(FindingStatus::Pass))
    );
    let alerts = alerts::list_alerts(&mut conn, &alert_filter, page).await.unwrap().items;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].status, AlertStatus::Resolved);

    // The same result delivered again is acknowledged and changes nothing.
    publisher.publish(&back).await.unwrap();
    wait_acked(&service, QueueName::Results.as_str(), 4.0).await;
    let all_drift = DriftFilter { host_id: Some(host), ..Default::default() };
    assert_eq!(
        compliance::list_drift(&mut conn, &all_drift, page).await.unwrap().total,
        4,
        "2 rule + 2 score drifts"
    );
    assert_eq!(scans::count_findings(&mut conn, third).await.unwrap(), 20);
    assert_eq!(alerts::list_alerts(&mut conn, &alert_filter, page).await.unwrap().items[0].occurrences, 1);
    assert_eq!(harness.broker().queue_depth(&harness.broker().dead_queue(QueueName::Results)).await, 0);

    let samples = service.metrics().await;
    assert_eq!(prometheus::value(&samples, "openwatch_findings_ingested_total", &[]), Some(60.0));
    let completed_scans = [("status", "completed"), ("trigger", "scheduled")];
    assert_eq!(prometheus::value(&samples, "openwatch_scans_total", &completed_scans), Some(3.0));
    assert_eq!(prometheus::value(&samples, "openwatch_drift_events_total", &[("kind", "rule")]), Some(2.0));
}
