//! `results::process_scan_result` against a real PostgreSQL: the rule state, scores,
//! compliance state and schedule, drift, alerts and snapshots one `ScanCompletedV1`
//! produces, and what a duplicate, cancelled, failed or out-of-order result does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{ExceptionId, HostId, ScanId, UserId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1};
use openwatch_db::DbError;
use openwatch_db::queries::alerts::{self, Alert, AlertFilter, AlertStatus};
use openwatch_db::queries::compliance::{self, DriftEvent, DriftFilter, RuleStateFilter};
use openwatch_db::queries::exceptions::{self, NewException};
use openwatch_db::queries::hosts;
use openwatch_db::queries::page::PageRequest;
use openwatch_db::queries::results::{
    self, HOST_BELOW_THRESHOLD, HOST_KEY_MISMATCH, MASS_DRIFT, ProcessOutcome, ProcessReport, RULE_FAILED,
    ResultPolicy, SCAN_FAILED, SCORE_DROPPED,
};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_test_support::database::TestDatabase;

use FindingStatus::{Error, Fail, NotApplicable, Pass};

// ----------------------------------------------------------------------------------------
// Fixtures
// ----------------------------------------------------------------------------------------

/// `minutes` from today's noon (UTC): whole seconds (round trips compare equal) and far
/// enough from midnight that every test's scans of "today" share one date.
fn at(minutes: i64) -> DateTime<Utc> {
    let noon = Utc::now().date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    noon + TimeDelta::minutes(minutes)
}

fn page() -> PageRequest {
    PageRequest::new(500, 0).unwrap()
}

fn result(rule: &str, status: FindingStatus, severity: Severity, frameworks: &[&str]) -> RuleResultV1 {
    RuleResultV1 {
        rule_id: rule.to_owned(),
        status,
        severity,
        reason: None,
        evidence: EvidenceV1 {
            source: format!("/etc/{rule}"),
            excerpt: format!("{rule}={status}"),
            expected: None,
            actual: None,
        },
        frameworks: frameworks.iter().map(|f| ((*f).to_owned(), vec!["1.1".to_owned()])).collect(),
        duration_us: 3,
    }
}

/// `n` medium rules `r00…` passing, with `overrides` applied (rule id → status).
fn rules(n: usize, overrides: &[(&str, FindingStatus)]) -> Vec<RuleResultV1> {
    let overrides: BTreeMap<&str, FindingStatus> = overrides.iter().copied().collect();
    (0..n)
        .map(|i| {
            let id = format!("r{i:02}");
            let status = overrides.get(id.as_str()).copied().unwrap_or(Pass);
            result(&id, status, Severity::Medium, &["cis"])
        })
        .collect()
}

async fn queue_scan(conn: &mut AsyncPgConnection, host: HostId) -> ScanId {
    let scan = ScanId::new();
    let new_scan = NewScan {
        id: scan,
        host_id: host,
        trigger: ScanTrigger::Scheduled,
        framework: None,
        requested_by: None,
    };
    scans::insert_scan(conn, &new_scan).await.unwrap();
    scan
}

fn message(
    scan: ScanId,
    host: HostId,
    outcome: ScanStatus,
    finished_at: DateTime<Utc>,
    results: Vec<RuleResultV1>,
) -> ScanCompletedV1 {
    ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome,
        started_at: finished_at - TimeDelta::seconds(2),
        finished_at,
        failure_reason: (outcome == ScanStatus::Failed).then(|| "connect_failed".to_owned()),
        platform: None,
        results,
    }
}

async fn process(conn: &mut AsyncPgConnection, message: &ScanCompletedV1) -> ProcessReport {
    match results::process_scan_result(conn, message, &ResultPolicy::default()).await.unwrap() {
        ProcessOutcome::Processed(report) => report,
        other => panic!("expected the result to be processed, got {other:?}"),
    }
}

/// Queues a scan of `host` and processes its completion at `finished_at`.
async fn complete(
    conn: &mut AsyncPgConnection,
    host: HostId,
    finished_at: DateTime<Utc>,
    results: Vec<RuleResultV1>,
) -> ProcessReport {
    let scan = queue_scan(conn, host).await;
    process(conn, &message(scan, host, ScanStatus::Completed, finished_at, results)).await
}

/// Queues a scan of `host` and processes its failure (with `reason`) at `finished_at`.
async fn fail(
    conn: &mut AsyncPgConnection,
    host: HostId,
    finished_at: DateTime<Utc>,
    reason: &str,
) -> ProcessReport {
    let scan = queue_scan(conn, host).await;
    let mut failed = message(scan, host, ScanStatus::Failed, finished_at, vec![]);
    failed.failure_reason = Some(reason.to_owned());
    process(conn, &failed).await
}

async fn drift(conn: &mut AsyncPgConnection, host: HostId) -> Vec<DriftEvent> {
    let filter = DriftFilter { host_id: Some(host), ..DriftFilter::default() };
    let mut events = compliance::list_drift(conn, &filter, page()).await.unwrap().items;
    events.reverse(); // oldest first
    events
}

async fn host_alerts(conn: &mut AsyncPgConnection, host: HostId) -> Vec<Alert> {
    let filter = AlertFilter { host_id: Some(host), ..AlertFilter::default() };
    alerts::list_alerts(conn, &filter, page()).await.unwrap().items
}

fn of_type<'a>(alerts: &'a [Alert], alert_type: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.alert_type == alert_type).collect()
}

async fn count(conn: &mut AsyncPgConnection, sql: &str, host: HostId) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).bind::<SqlUuid, _>(host.into_uuid()).get_result::<Count>(conn).await.unwrap().n
}

async fn insert_user(conn: &mut AsyncPgConnection, name: &str) -> UserId {
    let id = UserId::new();
    diesel::sql_query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'security_admin')",
    )
    .bind::<SqlUuid, _>(id.into_uuid())
    .bind::<Text, _>(name)
    .execute(conn)
    .await
    .unwrap();
    id
}

async fn approve_exception(conn: &mut AsyncPgConnection, host: HostId, rule: &str) {
    let requester = insert_user(conn, &format!("req-{rule}")).await;
    let approver = insert_user(conn, &format!("app-{rule}")).await;
    let id = ExceptionId::new();
    let new = NewException {
        id,
        host_id: host,
        rule_id: rule.to_owned(),
        reason: "compensating control".into(),
        requested_by: requester,
        expires_at: Utc::now() + TimeDelta::days(30),
    };
    exceptions::request_exception(conn, new).await.unwrap();
    exceptions::decide(conn, id, approver, true, None, Utc::now()).await.unwrap();
}

// ----------------------------------------------------------------------------------------
// Completed scans
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_first_scan_writes_state_score_schedule_and_snapshot_but_no_drift() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let finished = at(0);
    let report = complete(
        &mut conn,
        host,
        finished,
        vec![
            result("a", Pass, Severity::High, &["cis"]),
            result("b", Fail, Severity::Medium, &["cis", "stig"]),
            result("c", Error, Severity::Critical, &["cis"]),
            result("d", Pass, Severity::Low, &[]),
            result("e", NotApplicable, Severity::Low, &[]),
        ],
    )
    .await;

    let expected_score = 200.0 / 3.0;
    assert_eq!(report.findings, 5);
    assert_eq!(report.host_score, Some(expected_score));
    assert_eq!(report.compliance_state, Some(ComplianceState::Partial));
    assert_eq!((report.rule_drifts, report.score_drift), (0, false), "a first result is no drift");

    let stored = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored.last_score, Some(expected_score));
    assert_eq!(stored.compliance_state, ComplianceState::Partial);
    assert_eq!(stored.scan_failures, 0);
    assert_eq!(stored.next_scan_at, finished + TimeDelta::hours(6), "partial: 6 h by default");

    let states = compliance::host_now(&mut conn, host, &RuleStateFilter::default(), page()).await.unwrap();
    assert_eq!(states.total, 5);
    assert!(states.items.iter().all(|s| s.changed_at == finished && s.evaluated_at == finished));
    let b = states.items.iter().find(|s| s.rule_id == "b").unwrap();
    assert_eq!((b.status, b.severity), (Fail, Severity::Medium));
    assert_eq!(b.evidence["excerpt"], "b=fail");
    assert!(drift(&mut conn, host).await.is_empty());

    let snapshot = compliance::posture_as_of(&mut conn, host, finished.date_naive()).await.unwrap().unwrap();
    assert_eq!(snapshot.date, finished.date_naive());
    assert_eq!(snapshot.score, expected_score);
    assert_eq!(snapshot.per_framework["cis"]["passed"], 1);
    assert_eq!(snapshot.per_framework["cis"]["failed"], 1);
    assert_eq!(snapshot.per_framework["stig"]["failed"], 1);
    assert_eq!(snapshot.per_severity["high"]["passed"], 1);
    assert_eq!(snapshot.per_severity["medium"]["failed"], 1);
    assert!(snapshot.per_severity.get("critical").is_none(), "an error counts neither way");
    assert_eq!(snapshot.rule_states["c"], "error");
    assert_eq!(snapshot.rule_states.as_object().unwrap().len(), 5);
    // The same figures the posture API computes from the state.
    let posture = compliance::host_posture(&mut conn, host).await.unwrap();
    assert_eq!(posture.score, Some(expected_score));

    // Medium failure: no rule alert; 66.7 < 80: below threshold.
    let alerts = host_alerts(&mut conn, host).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert_type, HOST_BELOW_THRESHOLD);
    assert_eq!(alerts[0].severity, Severity::Medium);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_drifts_both_ways_and_its_alert_opens_then_resolves() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let mut all = rules(19, &[]);
    all.push(result("ssh", Pass, Severity::High, &["cis"]));
    let flip = |status| {
        let mut results = all.clone();
        results.last_mut().unwrap().status = status;
        results
    };
    let (t1, t2, t3) = (at(-20), at(-10), at(0));

    complete(&mut conn, host, t1, flip(Pass)).await;
    let second = complete(&mut conn, host, t2, flip(Fail)).await;
    assert_eq!((second.rule_drifts, second.score_drift), (1, true), "100 → 95 moves 5 points");
    assert_eq!(second.host_score, Some(95.0));
    let events = drift(&mut conn, host).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let rule = events.iter().find(|e| e.rule_id.is_some()).unwrap();
    assert_eq!(rule.rule_id.as_deref(), Some("ssh"));
    assert_eq!((rule.previous_status, rule.current_status), (Some(Pass), Some(Fail)));
    assert_eq!(rule.severity, Some(Severity::High));
    assert_eq!(rule.detected_at, t2);
    let score = events.iter().find(|e| e.rule_id.is_none()).unwrap();
    assert_eq!((score.previous_score, score.current_score), (Some(100.0), Some(95.0)));

    let states = compliance::host_now(&mut conn, host, &RuleStateFilter::default(), page()).await.unwrap();
    let ssh = states.items.iter().find(|s| s.rule_id == "ssh").unwrap();
    assert_eq!((ssh.changed_at, ssh.evaluated_at), (t2, t2), "changed_at moves with the status");
    let other = states.items.iter().find(|s| s.rule_id == "r00").unwrap();
    assert_eq!((other.changed_at, other.evaluated_at), (t1, t2), "changed_at stays without a change");

    let alerts = host_alerts(&mut conn, host).await;
    let failed = of_type(&alerts, RULE_FAILED);
    assert_eq!(failed.len(), 1, "{alerts:?}");
    assert_eq!((failed[0].rule_id.as_deref(), failed[0].status), (Some("ssh"), AlertStatus::Open));
    assert_eq!(failed[0].severity, Severity::High);
    assert!(of_type(&alerts, MASS_DRIFT).is_empty(), "1 of 20 rules is 5 %");

    let third = complete(&mut conn, host, t3, flip(Pass)).await;
    assert_eq!(third.rule_drifts, 1);
    assert_eq!(third.alerts_resolved, 1);
    let events = drift(&mut conn, host).await;
    let back: Vec<_> = events.iter().filter(|e| e.rule_id.is_some()).collect();
    assert_eq!(back.len(), 2);
    assert_eq!((back[1].previous_status, back[1].current_status), (Some(Fail), Some(Pass)));
    let alerts = host_alerts(&mut conn, host).await;
    let failed = of_type(&alerts, RULE_FAILED);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, AlertStatus::Resolved);
    assert!(failed[0].resolved_at.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_deduplicated_across_scans_while_unresolved() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let scan = |status| {
        vec![
            result("crit", status, Severity::Critical, &[]),
            result("p1", Pass, Severity::Low, &[]),
            result("f1", Fail, Severity::Low, &[]),
        ]
    };
    complete(&mut conn, host, at(-30), scan(Fail)).await;
    // fail → error (not a pass: the alert stays open) → fail again: raised again, deduplicated.
    complete(&mut conn, host, at(-20), scan(Error)).await;
    let third = complete(&mut conn, host, at(-10), scan(Fail)).await;
    assert!(third.alerts_raised.iter().any(|a| a.alert_type == RULE_FAILED && !a.opened), "{third:?}");

    let alerts = host_alerts(&mut conn, host).await;
    let failed = of_type(&alerts, RULE_FAILED);
    assert_eq!(failed.len(), 1, "{alerts:?}");
    assert_eq!((failed[0].occurrences, failed[0].status), (2, AlertStatus::Open));
    assert_eq!(failed[0].severity, Severity::Critical);
    let below = of_type(&alerts, HOST_BELOW_THRESHOLD);
    assert_eq!(below.len(), 1, "{alerts:?}");
    assert_eq!(below[0].occurrences, 3, "one alert raised by all three scans");
    assert_eq!(below[0].severity, Severity::Critical, "a failing critical rule makes the host critical");

    // Once the score is back above the threshold the alert resolves; a later drop opens a new one.
    let healthy = vec![
        result("crit", Pass, Severity::Critical, &[]),
        result("p1", Pass, Severity::Low, &[]),
        result("f1", Pass, Severity::Low, &[]),
    ];
    complete(&mut conn, host, at(-5), healthy).await;
    complete(&mut conn, host, at(0), scan(Pass)).await;
    let alerts = host_alerts(&mut conn, host).await;
    let below = of_type(&alerts, HOST_BELOW_THRESHOLD);
    assert_eq!(below.len(), 2, "{alerts:?}");
    assert_eq!(below.iter().filter(|a| a.status == AlertStatus::Resolved).count(), 1);
    assert_eq!(of_type(&alerts, RULE_FAILED)[0].status, AlertStatus::Resolved);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_excepted_rule_counts_neither_in_the_score_nor_for_alerts() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    approve_exception(&mut conn, host, "telnet").await;
    let report = complete(
        &mut conn,
        host,
        at(0),
        vec![
            result("telnet", Fail, Severity::Critical, &["cis"]),
            result("a", Pass, Severity::High, &["cis"]),
            result("b", Pass, Severity::Low, &["cis"]),
        ],
    )
    .await;
    assert_eq!(report.host_score, Some(100.0));
    assert_eq!(
        report.compliance_state,
        Some(ComplianceState::Compliant),
        "the waived critical failure does not count"
    );
    assert_eq!(report.scan_score, Some(200.0 / 3.0), "the scan's own score is the raw one");
    assert!(host_alerts(&mut conn, host).await.is_empty());
    let snapshot =
        compliance::posture_as_of(&mut conn, host, Utc::now().date_naive()).await.unwrap().unwrap();
    assert_eq!(snapshot.score, 100.0);
    assert_eq!(snapshot.per_framework["cis"]["failed"], 0);
    assert_eq!(snapshot.rule_states["telnet"], "fail", "the rule's state is still recorded");
    assert_eq!(compliance::host_posture(&mut conn, host).await.unwrap().score, Some(100.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_a_scan_did_not_evaluate_keep_counting_in_the_host_score() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    complete(
        &mut conn,
        host,
        at(-10),
        vec![result("a", Pass, Severity::High, &["cis"]), result("b", Fail, Severity::High, &["stig"])],
    )
    .await;
    // A framework-filtered scan evaluating only `a`.
    let report = complete(&mut conn, host, at(0), vec![result("a", Pass, Severity::High, &["cis"])]).await;
    assert_eq!(report.host_score, Some(50.0));
    let snapshot =
        compliance::posture_as_of(&mut conn, host, Utc::now().date_naive()).await.unwrap().unwrap();
    assert_eq!(snapshot.per_framework["stig"]["failed"], 1, "framework of the carried rule: {snapshot:?}");
    assert_eq!(snapshot.rule_states.as_object().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_score_drop_is_measured_against_the_previous_scan_and_yesterday() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let failing = |n: usize| {
        let overrides: Vec<(String, FindingStatus)> = (0..n).map(|i| (format!("r{i:02}"), Fail)).collect();
        let overrides: Vec<(&str, FindingStatus)> = overrides.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        rules(20, &overrides)
    };
    let today = at(0);
    complete(&mut conn, host, today - TimeDelta::days(1), failing(0)).await; // yesterday: 100
    complete(&mut conn, host, today - TimeDelta::minutes(20), failing(2)).await; // 90
    let report = complete(&mut conn, host, today, failing(5)).await; // 75: 15 below 90, 25 below yesterday
    let dropped: Vec<_> = report.alerts_raised.iter().filter(|a| a.alert_type == SCORE_DROPPED).collect();
    assert_eq!(dropped.len(), 1, "{report:?}");
    let alerts = host_alerts(&mut conn, host).await;
    let alert = of_type(&alerts, SCORE_DROPPED)[0];
    assert_eq!(alert.details["reference_score"], 100.0);
    assert_eq!(alert.details["score"], 75.0);

    // Without a high reference, a 15-point drop is not alerted.
    let other = db.insert_host("web-2", 22).await;
    complete(&mut conn, other, today - TimeDelta::minutes(20), failing(2)).await;
    let report = complete(&mut conn, other, today, failing(5)).await;
    assert!(report.alerts_raised.iter().all(|a| a.alert_type != SCORE_DROPPED), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_rules_changing_at_once_raise_mass_drift() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    complete(&mut conn, host, at(-10), rules(10, &[])).await;
    let report = complete(&mut conn, host, at(0), rules(10, &[("r01", Fail), ("r02", Error)])).await;
    assert_eq!(report.rule_drifts, 2);
    let alerts = host_alerts(&mut conn, host).await;
    let mass = of_type(&alerts, MASS_DRIFT);
    assert_eq!(mass.len(), 1, "{alerts:?}");
    assert_eq!(mass[0].details["changed"], 2);
    assert_eq!(mass[0].details["evaluated"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_are_upserted_once_per_host_and_day() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let today = at(0);
    complete(&mut conn, host, today - TimeDelta::days(1), rules(4, &[])).await;
    complete(&mut conn, host, today - TimeDelta::minutes(5), rules(4, &[("r00", Fail)])).await;
    complete(&mut conn, host, today, rules(4, &[("r00", Fail), ("r01", Fail)])).await;
    let sql = "SELECT count(*) AS n FROM posture_snapshots WHERE host_id = $1";
    assert_eq!(count(&mut conn, sql, host).await, 2);
    let latest = compliance::posture_as_of(&mut conn, host, today.date_naive()).await.unwrap().unwrap();
    assert_eq!(latest.score, 50.0, "the day's last scan wins");
    assert_eq!(latest.rule_states["r01"], "fail");
    assert_eq!(latest.per_severity["medium"]["failed"], 2);
    let yesterday = (today - TimeDelta::days(1)).date_naive();
    let earlier = compliance::posture_as_of(&mut conn, host, yesterday).await.unwrap().unwrap();
    assert_eq!((earlier.date, earlier.score), (yesterday, 100.0));
}

// ----------------------------------------------------------------------------------------
// Failed, cancelled, duplicate and out-of-order results
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn failed_scans_back_off_exponentially_capped_and_alert_then_a_success_resets() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let start = at(-2000);
    // Compliant: the back-off is capped by its 24 h interval.
    complete(&mut conn, host, start, rules(3, &[])).await;
    let mut delays = Vec::new();
    for n in 1..=11_i64 {
        let finished = start + TimeDelta::minutes(n);
        let reason = if n == 2 { "host_key_mismatch" } else { "connect_failed" };
        let report = fail(&mut conn, host, finished, reason).await;
        let stored = hosts::get_host(&mut conn, host).await.unwrap();
        assert_eq!(stored.scan_failures, u32::try_from(n).unwrap());
        assert_eq!(report.next_scan_at, Some(stored.next_scan_at));
        delays.push((stored.next_scan_at - finished).num_minutes());
        let alerts = host_alerts(&mut conn, host).await;
        let expected_scan_failed = usize::from(n >= 3);
        assert_eq!(of_type(&alerts, SCAN_FAILED).len(), expected_scan_failed, "after {n} failures");
        assert_eq!(stored.compliance_state, ComplianceState::Compliant, "a failure keeps the state");
        assert_eq!(stored.last_score, Some(100.0), "a failure keeps the score");
    }
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 1440, 1440]);

    let alerts = host_alerts(&mut conn, host).await;
    let mismatch = of_type(&alerts, HOST_KEY_MISMATCH);
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0].severity, Severity::Critical);
    assert_eq!(of_type(&alerts, SCAN_FAILED)[0].occurrences, 9);

    let report = complete(&mut conn, host, start + TimeDelta::minutes(30), rules(3, &[])).await;
    assert_eq!(report.scan_failures, Some(0));
    let stored = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored.scan_failures, 0);
    assert_eq!(stored.next_scan_at, start + TimeDelta::minutes(30) + TimeDelta::hours(24));
    let alerts = host_alerts(&mut conn, host).await;
    assert_eq!(of_type(&alerts, SCAN_FAILED)[0].status, AlertStatus::Resolved);
    assert_eq!(of_type(&alerts, HOST_KEY_MISMATCH)[0].status, AlertStatus::Open, "left for a human");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_never_scanned_host_backs_off_up_to_the_maximum_interval() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let start = at(0);
    let mut delays = Vec::new();
    for n in 1..=12 {
        let finished = start + TimeDelta::minutes(n);
        let report = fail(&mut conn, host, finished, "auth_failed").await;
        delays.push((report.next_scan_at.unwrap() - finished).num_minutes());
    }
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 2880, 2880]);
    let stored = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored.compliance_state, ComplianceState::Unknown);
    assert!(of_type(&host_alerts(&mut conn, host).await, HOST_KEY_MISMATCH).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_scan_touches_nothing_but_its_own_row() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    complete(&mut conn, host, at(-10), rules(5, &[("r00", Fail)])).await;
    let before_host = hosts::get_host(&mut conn, host).await.unwrap();
    let before_states =
        compliance::host_now(&mut conn, host, &RuleStateFilter::default(), page()).await.unwrap();
    let before_alerts = host_alerts(&mut conn, host).await;
    let before_snapshot = compliance::posture_as_of(&mut conn, host, Utc::now().date_naive()).await.unwrap();

    let scan = queue_scan(&mut conn, host).await;
    let cancelled =
        message(scan, host, ScanStatus::Cancelled, at(0), rules(5, &[("r01", Fail), ("r02", Fail)]));
    let report = process(&mut conn, &cancelled).await;
    assert_eq!((report.host_score, report.next_scan_at, report.rule_drifts), (None, None, 0));

    assert_eq!(scans::get_scan(&mut conn, scan).await.unwrap().status, ScanStatus::Cancelled);
    let after_host = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(
        (
            after_host.last_score,
            after_host.compliance_state,
            after_host.scan_failures,
            after_host.next_scan_at
        ),
        (
            before_host.last_score,
            before_host.compliance_state,
            before_host.scan_failures,
            before_host.next_scan_at
        )
    );
    let after_states =
        compliance::host_now(&mut conn, host, &RuleStateFilter::default(), page()).await.unwrap();
    assert_eq!(after_states, before_states);
    assert!(drift(&mut conn, host).await.is_empty());
    assert_eq!(host_alerts(&mut conn, host).await, before_alerts);
    let after_snapshot = compliance::posture_as_of(&mut conn, host, Utc::now().date_naive()).await.unwrap();
    assert_eq!(after_snapshot, before_snapshot);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_message_adds_no_findings_drift_or_alerts() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let mut first = rules(5, &[]);
    first.push(result("ssh", Pass, Severity::Critical, &[]));
    complete(&mut conn, host, at(-10), first.clone()).await;
    let scan = queue_scan(&mut conn, host).await;
    first.last_mut().unwrap().status = Fail;
    let flipped = message(scan, host, ScanStatus::Completed, at(0), first);
    let report = process(&mut conn, &flipped).await;
    assert_eq!(report.rule_drifts, 1);
    assert!(!report.alerts_raised.is_empty());

    let findings = "SELECT count(*) AS n FROM scan_findings WHERE host_id = $1";
    let drifts = "SELECT count(*) AS n FROM drift_events WHERE host_id = $1";
    let occurrences = "SELECT coalesce(sum(occurrences), 0)::bigint AS n FROM alerts WHERE host_id = $1";
    let before = (
        count(&mut conn, findings, host).await,
        count(&mut conn, drifts, host).await,
        count(&mut conn, occurrences, host).await,
    );
    let host_before = hosts::get_host(&mut conn, host).await.unwrap();

    let again = results::process_scan_result(&mut conn, &flipped, &ResultPolicy::default()).await.unwrap();
    assert_eq!(again, ProcessOutcome::AlreadyFinished(ScanStatus::Completed));
    let after = (
        count(&mut conn, findings, host).await,
        count(&mut conn, drifts, host).await,
        count(&mut conn, occurrences, host).await,
    );
    assert_eq!(after, before);
    assert_eq!(hosts::get_host(&mut conn, host).await.unwrap().updated_at, host_before.updated_at);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_result_arriving_late_is_kept_as_history_only() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let mut conn = db.connect().await;
    let old_scan = queue_scan(&mut conn, host).await;
    complete(&mut conn, host, at(0), rules(4, &[])).await;
    let late = message(old_scan, host, ScanStatus::Completed, at(-30), rules(4, &[("r00", Fail)]));
    let report = process(&mut conn, &late).await;
    assert!(report.stale);
    assert_eq!(scans::get_scan(&mut conn, old_scan).await.unwrap().status, ScanStatus::Completed);
    let stored = hosts::get_host(&mut conn, host).await.unwrap();
    assert_eq!(stored.last_score, Some(100.0), "the newer score stays");
    let states = compliance::host_now(&mut conn, host, &RuleStateFilter::default(), page()).await.unwrap();
    assert!(states.items.iter().all(|s| s.status == Pass));
    assert!(drift(&mut conn, host).await.is_empty());
    assert!(host_alerts(&mut conn, host).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_naming_another_host_or_an_unknown_scan_writes_nothing() {
    let db = TestDatabase::new().await;
    let host = db.insert_host("web-1", 22).await;
    let other = db.insert_host("web-2", 22).await;
    let mut conn = db.connect().await;
    let scan = queue_scan(&mut conn, host).await;
    let wrong = message(scan, other, ScanStatus::Completed, at(0), rules(3, &[]));
    let error = results::process_scan_result(&mut conn, &wrong, &ResultPolicy::default()).await.unwrap_err();
    assert!(matches!(error, DbError::InvalidData(_)), "{error:?}");
    assert_eq!(scans::get_scan(&mut conn, scan).await.unwrap().status, ScanStatus::Queued);
    assert_eq!(scans::count_findings(&mut conn, scan).await.unwrap(), 0);

    let unknown = message(ScanId::new(), host, ScanStatus::Completed, at(0), rules(3, &[]));
    let outcome = results::process_scan_result(&mut conn, &unknown, &ResultPolicy::default()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::UnknownScan);
}
