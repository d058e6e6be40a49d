//! Scans, findings, posture, drift, alerts, exceptions and the scheduler configuration
//! against a real PostgreSQL.
//!
//! Results are written the way production writes them (`scans::record_completed`); the
//! per-rule "now" view (`host_rule_state`), the daily snapshots and drift events have no
//! writer in this crate yet, so the tests fill them with plain SQL shaped like the
//! result-processor's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::sql_types::{Date, Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{ExceptionId, HostId, ScanId, UserId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1, ScanRequestedV1};
use openwatch_db::queries::alerts::{self, AlertFilter, AlertStatus, NewAlert};
use openwatch_db::queries::compliance::{
    self, DriftDirection, DriftFilter, FailingRule, PassFail, RuleStateFilter,
};
use openwatch_db::queries::exceptions::{self, ExceptionFilter, ExceptionStatus, NewException};
use openwatch_db::queries::page::{PageRequest, SortOrder};
use openwatch_db::queries::scans::{self, FindingFilter, NewScan, ScanFilter};
use openwatch_db::queries::scheduler::{self, SchedulerConfigChangeset};
use openwatch_db::queries::{hosts, outbox};
use openwatch_db::{AsyncConnection, DbError};
use openwatch_test_support::database::TestDatabase;

// ----------------------------------------------------------------------------------------
// Fixtures
// ----------------------------------------------------------------------------------------

/// `now` at PostgreSQL's precision, so round trips compare equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn page(limit: u32, offset: u64) -> PageRequest {
    PageRequest::new(limit, offset).unwrap()
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

fn result(rule: &str, status: FindingStatus, severity: Severity, frameworks: &[&str]) -> RuleResultV1 {
    RuleResultV1 {
        rule_id: rule.to_owned(),
        status,
        severity,
        reason: (status == FindingStatus::Error).then(|| "probe failed".to_owned()),
        evidence: EvidenceV1 {
            source: format!("/etc/{rule}"),
            excerpt: "x".into(),
            expected: None,
            actual: None,
        },
        frameworks: frameworks.iter().map(|f| ((*f).to_owned(), vec!["1.1".to_owned()])).collect(),
        duration_us: 7,
    }
}

/// A completed scan of `host` recorded with `record_completed`, then folded into
/// `host_rule_state` as the result-processor does (upsert per rule, `changed_at` kept when
/// the status did not change).
async fn scan_host(conn: &mut AsyncPgConnection, host: HostId, results: Vec<RuleResultV1>) -> ScanId {
    let scan = ScanId::new();
    let new_scan = NewScan {
        id: scan,
        host_id: host,
        trigger: ScanTrigger::Scheduled,
        framework: None,
        requested_by: None,
    };
    scans::insert_scan(conn, &new_scan).await.unwrap();
    let message = ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        failure_reason: None,
        platform: None,
        results,
    };
    conn.transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, &message).await)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO host_rule_state (host_id, rule_id, status, severity, last_scan_id, changed_at, \
                                      evaluated_at, evidence) \
         SELECT host_id, rule_id, status, severity, scan_id, now(), now(), evidence \
         FROM scan_findings WHERE scan_id = $1 \
         ON CONFLICT (host_id, rule_id) DO UPDATE SET \
             changed_at = CASE WHEN host_rule_state.status = EXCLUDED.status \
                               THEN host_rule_state.changed_at ELSE EXCLUDED.changed_at END, \
             status = EXCLUDED.status, severity = EXCLUDED.severity, \
             last_scan_id = EXCLUDED.last_scan_id, evaluated_at = EXCLUDED.evaluated_at, \
             evidence = EXCLUDED.evidence",
    )
    .bind::<SqlUuid, _>(scan.into_uuid())
    .execute(conn)
    .await
    .unwrap();
    scan
}

/// An approved exception for (host, rule), requested by `requester`, approved by `approver`.
async fn approved_exception(
    conn: &mut AsyncPgConnection,
    host: HostId,
    rule: &str,
    requester: UserId,
    approver: UserId,
) -> ExceptionId {
    let id = ExceptionId::new();
    exceptions::request_exception(
        conn,
        NewException {
            id,
            host_id: host,
            rule_id: rule.to_owned(),
            reason: "compensating control".into(),
            requested_by: requester,
            expires_at: Utc::now() + TimeDelta::days(30),
        },
    )
    .await
    .unwrap();
    exceptions::decide(conn, id, approver, true, Some("ok".into()), Utc::now()).await.unwrap();
    id
}

/// Moves an exception's dates into the past so that it has lapsed (still `approved`: the
/// expiry job has not run).
async fn lapse(conn: &mut AsyncPgConnection, id: ExceptionId) {
    diesel::sql_query(
        "UPDATE exceptions SET requested_at = now() - interval '3 days', \
                               decided_at = now() - interval '2 days', \
                               expires_at = now() - interval '1 day' WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id.into_uuid())
    .execute(conn)
    .await
    .unwrap();
}

async fn set_compliance_state(
    conn: &mut AsyncPgConnection,
    host: HostId,
    state: ComplianceState,
    next_scan_at: DateTime<Utc>,
) {
    diesel::sql_query("UPDATE hosts SET compliance_state = $2, next_scan_at = $3 WHERE id = $1")
        .bind::<SqlUuid, _>(host.into_uuid())
        .bind::<Text, _>(state.as_str())
        .bind::<Timestamptz, _>(next_scan_at)
        .execute(conn)
        .await
        .unwrap();
}

// ----------------------------------------------------------------------------------------
// Scans
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn manual_scan_requests_write_scans_outbox_rows_and_schedule_atomically() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = insert_user(&mut conn, "operator").await;
    let compliant = db.insert_host("compliant", 22).await;
    let critical = db.insert_host("critical", 22).await;
    let fresh = db.insert_host("fresh", 22).await;
    let t0 = now();
    set_compliance_state(&mut conn, compliant, ComplianceState::Compliant, t0 - TimeDelta::minutes(5)).await;
    // Already scheduled later than now + 60 min: must not move earlier.
    set_compliance_state(&mut conn, critical, ComplianceState::Critical, t0 + TimeDelta::days(10)).await;
    let fresh_before = hosts::get_host(&mut conn, fresh).await.unwrap().next_scan_at;

    // A request that is rolled back leaves nothing behind.
    let rolled_back = conn
        .transaction::<(), DbError, _>(async |conn| {
            let ids = scans::request_manual_scans(conn, &[compliant, critical], None, user, t0).await?;
            assert_eq!(ids.len(), 2);
            Err(DbError::NotFound)
        })
        .await;
    assert!(matches!(rolled_back, Err(DbError::NotFound)));
    let all =
        scans::list_scans(&mut conn, &ScanFilter::default(), page(10, 0), SortOrder::Asc).await.unwrap();
    assert_eq!(all.total, 0);
    assert_eq!(outbox::pending_count(&mut conn).await.unwrap(), 0);
    assert_eq!(
        hosts::get_host(&mut conn, compliant).await.unwrap().next_scan_at,
        t0 - TimeDelta::minutes(5),
        "the schedule change was rolled back too"
    );

    // An unknown host refuses the whole request.
    let unknown = HostId::new();
    let err =
        scans::request_manual_scans(&mut conn, &[compliant, unknown], None, user, t0).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, message }
            if constraint == "scans_host_id_fkey" && message.contains(&unknown.to_string())),
        "{err:?}"
    );
    assert_eq!(outbox::pending_count(&mut conn).await.unwrap(), 0);
    assert_eq!(
        hosts::get_host(&mut conn, compliant).await.unwrap().next_scan_at,
        t0 - TimeDelta::minutes(5),
        "a refused request does not touch the schedule"
    );

    // The real request: a duplicate host id counts once.
    let ids = conn
        .transaction::<_, DbError, _>(async |conn| {
            scans::request_manual_scans(
                conn,
                &[compliant, critical, fresh, compliant],
                Some("cis-debian12".into()),
                user,
                t0,
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);

    let listed =
        scans::list_scans(&mut conn, &ScanFilter::default(), page(10, 0), SortOrder::Asc).await.unwrap();
    assert_eq!(listed.total, 3);
    for scan in &listed.items {
        assert!(ids.contains(&scan.id));
        assert_eq!(scan.status, ScanStatus::Queued);
        assert_eq!(scan.trigger, ScanTrigger::Manual);
        assert_eq!(scan.framework.as_deref(), Some("cis-debian12"));
        assert_eq!(scan.requested_by, Some(user));
        assert_eq!(scan.queued_at, t0);
    }

    // One outbox row per scan, each a ScanRequestedV1 for the scans queue.
    assert_eq!(outbox::pending_count(&mut conn).await.unwrap(), 3);
    let messages =
        conn.transaction::<_, DbError, _>(async |conn| outbox::lock_batch(conn, 10).await).await.unwrap();
    let mut requested: Vec<(ScanId, HostId)> = messages
        .iter()
        .map(|m| {
            assert_eq!(m.queue.as_str(), "scans");
            assert_eq!((m.message_type.as_str(), m.version), ("scan_requested", 1));
            let payload: ScanRequestedV1 = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(payload.trigger, ScanTrigger::Manual);
            assert_eq!(payload.requested_by, Some(user));
            assert_eq!(payload.framework.as_deref(), Some("cis-debian12"));
            assert_eq!(payload.requested_at, t0);
            (payload.scan_id, payload.host_id)
        })
        .collect();
    requested.sort();
    let mut expected: Vec<(ScanId, HostId)> = ids.iter().copied().zip([compliant, critical, fresh]).collect();
    expected.sort();
    assert_eq!(requested, expected);

    // The next automatic scan moved to now + the state's interval, never earlier.
    let config = scheduler::get(&mut conn).await.unwrap();
    assert_eq!(
        hosts::get_host(&mut conn, compliant).await.unwrap().next_scan_at,
        t0 + config.interval_for(ComplianceState::Compliant)
    );
    assert_eq!(hosts::get_host(&mut conn, critical).await.unwrap().next_scan_at, t0 + TimeDelta::days(10));
    assert_eq!(hosts::get_host(&mut conn, fresh).await.unwrap().next_scan_at, fresh_before.max(t0));

    // Nothing to do for an empty request.
    assert!(scans::request_manual_scans(&mut conn, &[], None, user, t0).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_wide_request_spans_several_insert_statements() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = insert_user(&mut conn, "operator").await;
    // More hosts than one multi-row INSERT carries.
    diesel::sql_query(
        "INSERT INTO hosts (id, name, address) \
         SELECT gen_random_uuid(), 'fleet-' || g, '127.0.0.1' FROM generate_series(1, 5003) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: uuid::Uuid,
    }
    let hosts: Vec<HostId> = diesel::sql_query("SELECT id FROM hosts")
        .load::<Id>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| HostId(row.id))
        .collect();

    let ids = scans::request_manual_scans(&mut conn, &hosts, None, user, now()).await.unwrap();
    assert_eq!(ids.len(), 5003);
    let listed =
        scans::list_scans(&mut conn, &ScanFilter::default(), page(1, 0), SortOrder::Asc).await.unwrap();
    assert_eq!(listed.total, 5003);
    assert_eq!(outbox::pending_count(&mut conn).await.unwrap(), 5003);
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_are_listed_with_filters_and_only_active_ones_cancel() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = insert_user(&mut conn, "operator").await;
    let web = db.insert_host("web", 22).await;
    let dbh = db.insert_host("db", 22).await;
    let t0 = now() - TimeDelta::hours(3);
    let first = scans::request_manual_scans(&mut conn, &[web], None, user, t0).await.unwrap()[0];
    let second = scans::request_manual_scans(&mut conn, &[web], None, user, t0 + TimeDelta::hours(1))
        .await
        .unwrap()[0];
    let third = scans::request_manual_scans(&mut conn, &[dbh], None, user, t0 + TimeDelta::hours(2))
        .await
        .unwrap()[0];
    let completed =
        scan_host(&mut conn, web, vec![result("r1", FindingStatus::Pass, Severity::Low, &[])]).await;

    let desc =
        scans::list_scans(&mut conn, &ScanFilter::default(), page(2, 0), SortOrder::Desc).await.unwrap();
    assert_eq!(desc.total, 4);
    assert_eq!(desc.items.iter().map(|s| s.id).collect::<Vec<_>>(), [completed, third]);
    let asc = scans::list_scans(&mut conn, &ScanFilter::default(), page(2, 1), SortOrder::Asc).await.unwrap();
    assert_eq!(asc.items.iter().map(|s| s.id).collect::<Vec<_>>(), [second, third]);

    let web_manual =
        ScanFilter { host_id: Some(web), trigger: Some(ScanTrigger::Manual), ..Default::default() };
    let listed = scans::list_scans(&mut conn, &web_manual, page(10, 0), SortOrder::Asc).await.unwrap();
    assert_eq!(listed.items.iter().map(|s| s.id).collect::<Vec<_>>(), [first, second]);
    let window = ScanFilter {
        since: Some(t0 + TimeDelta::minutes(30)),
        until: Some(t0 + TimeDelta::hours(2)),
        ..Default::default()
    };
    let listed = scans::list_scans(&mut conn, &window, page(10, 0), SortOrder::Asc).await.unwrap();
    assert_eq!((listed.total, listed.items[0].id), (1, second));
    let done = ScanFilter { status: Some(ScanStatus::Completed), ..Default::default() };
    let listed = scans::list_scans(&mut conn, &done, page(10, 0), SortOrder::Asc).await.unwrap();
    assert_eq!(listed.items.iter().map(|s| (s.id, s.rules_total)).collect::<Vec<_>>(), [(completed, 1)]);

    // Queued → cancelled.
    let cancelled_at = now();
    let cancelled = scans::cancel_scan(&mut conn, first, cancelled_at).await.unwrap();
    assert_eq!(cancelled.status, ScanStatus::Cancelled);
    assert_eq!(cancelled.finished_at, Some(cancelled_at));
    assert_eq!(cancelled.failure_reason.as_deref(), Some(scans::CANCELLED_BY_USER));
    assert_eq!(scans::get_scan_details(&mut conn, first).await.unwrap(), cancelled);

    // Running → cancelled.
    diesel::sql_query("UPDATE scans SET status = 'running', started_at = now() WHERE id = $1")
        .bind::<SqlUuid, _>(second.into_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(scans::cancel_scan(&mut conn, second, now()).await.unwrap().status, ScanStatus::Cancelled);

    // Terminal scans are refused; unknown ones are not found.
    for terminal in [completed, first] {
        let err = scans::cancel_scan(&mut conn, terminal, now()).await.unwrap_err();
        assert!(
            matches!(&err, DbError::Constraint { constraint, .. } if constraint == "scan_not_cancellable"),
            "{err:?}"
        );
    }
    assert_eq!(scans::get_scan(&mut conn, completed).await.unwrap().status, ScanStatus::Completed);
    assert!(matches!(scans::cancel_scan(&mut conn, ScanId::new(), now()).await, Err(DbError::NotFound)));
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_are_filtered_and_flag_only_active_exceptions() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = insert_user(&mut conn, "alice").await;
    let bob = insert_user(&mut conn, "bob").await;
    let host = db.insert_host("web", 22).await;
    let scan = scan_host(
        &mut conn,
        host,
        vec![
            result("active", FindingStatus::Fail, Severity::High, &["cis"]),
            result("lapsed", FindingStatus::Fail, Severity::High, &["cis"]),
            result("pending", FindingStatus::Fail, Severity::Medium, &[]),
            result("passing", FindingStatus::Pass, Severity::High, &["cis", "nist"]),
            result("broken", FindingStatus::Error, Severity::Low, &[]),
        ],
    )
    .await;
    approved_exception(&mut conn, host, "active", alice, bob).await;
    let lapsed = approved_exception(&mut conn, host, "lapsed", alice, bob).await;
    lapse(&mut conn, lapsed).await;
    exceptions::request_exception(
        &mut conn,
        NewException {
            id: ExceptionId::new(),
            host_id: host,
            rule_id: "pending".into(),
            reason: "waiting".into(),
            requested_by: alice,
            expires_at: Utc::now() + TimeDelta::days(1),
        },
    )
    .await
    .unwrap();

    let all = scans::list_findings(&mut conn, scan, &FindingFilter::default(), page(10, 0)).await.unwrap();
    assert_eq!(all.total, 5);
    let flags: BTreeMap<&str, bool> = all.items.iter().map(|f| (f.rule_id.as_str(), f.excepted)).collect();
    assert_eq!(
        flags,
        BTreeMap::from([
            ("active", true),
            ("broken", false),
            ("lapsed", false),
            ("passing", false),
            ("pending", false)
        ])
    );
    let broken = all.items.iter().find(|f| f.rule_id == "broken").unwrap();
    assert_eq!(
        (broken.status, broken.reason.as_deref(), broken.duration_us),
        (FindingStatus::Error, Some("probe failed"), 7)
    );
    assert_eq!(broken.evidence["source"], "/etc/broken");
    let passing = all.items.iter().find(|f| f.rule_id == "passing").unwrap();
    assert_eq!(passing.frameworks["nist"], serde_json::json!(["1.1"]));

    let failing_high = FindingFilter {
        status: Some(FindingStatus::Fail),
        severity: Some(Severity::High),
        ..Default::default()
    };
    let listed = scans::list_findings(&mut conn, scan, &failing_high, page(1, 1)).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(), ["lapsed"]);
    let one = FindingFilter { rule_id: Some("pending".into()), ..Default::default() };
    assert_eq!(scans::list_findings(&mut conn, scan, &one, page(10, 0)).await.unwrap().total, 1);

    // No match on a known scan is an empty page; an unknown scan is not found.
    let none = FindingFilter { status: Some(FindingStatus::Manual), ..Default::default() };
    let empty = scans::list_findings(&mut conn, scan, &none, page(10, 0)).await.unwrap();
    assert_eq!((empty.total, empty.items.len()), (0, 0));
    assert!(matches!(
        scans::list_findings(&mut conn, ScanId::new(), &FindingFilter::default(), page(10, 0)).await,
        Err(DbError::NotFound)
    ));
}

// ----------------------------------------------------------------------------------------
// Posture
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn posture_scores_per_severity_and_framework_exclude_waived_results() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = insert_user(&mut conn, "alice").await;
    let bob = insert_user(&mut conn, "bob").await;
    let web = db.insert_host("web", 22).await;
    let app = db.insert_host("app", 22).await;
    let never = db.insert_host("never-scanned", 22).await;

    // An older scan whose frameworks must not count: `ssh` is re-evaluated below.
    scan_host(&mut conn, web, vec![result("ssh", FindingStatus::Pass, Severity::Critical, &["old"])]).await;
    scan_host(
        &mut conn,
        web,
        vec![
            result("ssh", FindingStatus::Fail, Severity::Critical, &["cis"]),
            result("audit", FindingStatus::Pass, Severity::High, &["cis", "nist"]),
            result("waived", FindingStatus::Fail, Severity::High, &["nist"]),
            result("probe", FindingStatus::Error, Severity::Medium, &["cis"]),
            result("na", FindingStatus::NotApplicable, Severity::Low, &[]),
            result("review", FindingStatus::Manual, Severity::Info, &[]),
        ],
    )
    .await;
    approved_exception(&mut conn, web, "waived", alice, bob).await;
    // A lapsed exception no longer waives anything.
    scan_host(
        &mut conn,
        app,
        vec![
            result("ssh", FindingStatus::Pass, Severity::Critical, &["cis"]),
            result("audit", FindingStatus::Pass, Severity::High, &["cis", "nist"]),
            result("waived", FindingStatus::Fail, Severity::High, &["nist"]),
        ],
    )
    .await;
    let lapsed = approved_exception(&mut conn, app, "waived", alice, bob).await;
    lapse(&mut conn, lapsed).await;

    let posture = compliance::host_posture(&mut conn, web).await.unwrap();
    assert_eq!(posture.score, Some(50.0));
    assert_eq!(
        (posture.pass, posture.fail, posture.error, posture.not_applicable, posture.manual, posture.excepted),
        (1, 1, 1, 1, 1, 1)
    );
    assert_eq!(
        posture.per_severity,
        BTreeMap::from([
            (Severity::Critical, PassFail { pass: 0, fail: 1, score: Some(0.0) }),
            (Severity::High, PassFail { pass: 1, fail: 0, score: Some(100.0) }),
        ])
    );
    assert_eq!(
        posture.per_framework,
        BTreeMap::from([
            ("cis".to_owned(), PassFail { pass: 1, fail: 1, score: Some(50.0) }),
            ("nist".to_owned(), PassFail { pass: 1, fail: 0, score: Some(100.0) }),
        ])
    );

    // app: 2 pass, 1 fail (its exception lapsed).
    let app_posture = compliance::host_posture(&mut conn, app).await.unwrap();
    assert_eq!((app_posture.pass, app_posture.fail, app_posture.excepted), (2, 1, 0));

    // The fleet pools both hosts: 3 pass, 2 fail.
    let fleet = compliance::fleet_posture(&mut conn).await.unwrap();
    assert_eq!((fleet.pass, fleet.fail, fleet.excepted, fleet.error), (3, 2, 1, 1));
    assert_eq!(fleet.score, Some(60.0));
    assert_eq!(fleet.per_framework["cis"], PassFail { pass: 3, fail: 1, score: Some(75.0) });
    assert_eq!(fleet.per_framework["nist"], PassFail { pass: 2, fail: 1, score: Some(200.0 / 3.0) });
    assert_eq!(fleet.per_severity[&Severity::Critical], PassFail { pass: 1, fail: 1, score: Some(50.0) });
    assert!(!fleet.per_framework.contains_key("old"));

    // Never scanned: no score; unknown host: not found.
    let empty = compliance::host_posture(&mut conn, never).await.unwrap();
    assert_eq!((empty.score, empty.pass, empty.per_framework.len()), (None, 0, 0));
    assert!(matches!(compliance::host_posture(&mut conn, HostId::new()).await, Err(DbError::NotFound)));

    // The "now" view carries evidence and the same excepted flags.
    let now_view =
        compliance::host_now(&mut conn, web, &RuleStateFilter::default(), page(10, 0)).await.unwrap();
    assert_eq!(now_view.total, 6);
    let waived = now_view.items.iter().find(|s| s.rule_id == "waived").unwrap();
    assert!(waived.excepted);
    assert_eq!(waived.evidence["source"], "/etc/waived");
    assert_eq!(now_view.items.iter().filter(|s| s.excepted).count(), 1);
    let ssh = now_view.items.iter().find(|s| s.rule_id == "ssh").unwrap();
    assert_eq!((ssh.status, ssh.severity), (FindingStatus::Fail, Severity::Critical));
    let failing = RuleStateFilter { status: Some(FindingStatus::Fail), ..Default::default() };
    let listed = compliance::host_now(&mut conn, web, &failing, page(10, 0)).await.unwrap();
    assert_eq!(listed.items.iter().map(|s| s.rule_id.as_str()).collect::<Vec<_>>(), ["ssh", "waived"]);
    let high_audit = RuleStateFilter {
        severity: Some(Severity::High),
        rule_id: Some("audit".into()),
        ..Default::default()
    };
    assert_eq!(compliance::host_now(&mut conn, web, &high_audit, page(10, 0)).await.unwrap().total, 1);
    assert_eq!(compliance::host_now(&mut conn, never, &failing, page(10, 0)).await.unwrap().total, 0);
    assert!(matches!(
        compliance::host_now(&mut conn, HostId::new(), &failing, page(10, 0)).await,
        Err(DbError::NotFound)
    ));
}

async fn insert_snapshot(
    conn: &mut AsyncPgConnection,
    host: HostId,
    date: NaiveDate,
    score: f64,
    passed: u32,
    failed: u32,
) {
    let per_severity = serde_json::json!({
        "high": {"passed": passed, "failed": failed},
        "low": {"passed": 0, "failed": 0},
    });
    diesel::sql_query(
        "INSERT INTO posture_snapshots (host_id, snapshot_date, score, per_severity, rule_states) \
         VALUES ($1, $2, $3, $4::jsonb, '{\"r1\": \"pass\"}')",
    )
    .bind::<SqlUuid, _>(host.into_uuid())
    .bind::<Date, _>(date)
    .bind::<Double, _>(score)
    .bind::<Text, _>(per_severity.to_string())
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn history_averages_hosts_per_day_and_as_of_takes_the_latest_earlier_snapshot() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let web = db.insert_host("web", 22).await;
    let app = db.insert_host("app", 22).await;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    insert_snapshot(&mut conn, web, day(1), 50.0, 5, 5).await;
    insert_snapshot(&mut conn, web, day(2), 60.0, 6, 4).await;
    insert_snapshot(&mut conn, app, day(2), 80.0, 8, 2).await;
    insert_snapshot(&mut conn, web, day(5), 90.0, 9, 1).await;

    let web_history = compliance::posture_history(&mut conn, Some(web), day(1), day(4)).await.unwrap();
    assert_eq!(
        web_history.iter().map(|p| (p.date, p.score, p.hosts, p.passed, p.failed)).collect::<Vec<_>>(),
        [(day(1), 50.0, 1, 5, 5), (day(2), 60.0, 1, 6, 4)]
    );
    let fleet = compliance::posture_history(&mut conn, None, day(1), day(31)).await.unwrap();
    assert_eq!(
        fleet.iter().map(|p| (p.date, p.score, p.hosts, p.passed, p.failed)).collect::<Vec<_>>(),
        [(day(1), 50.0, 1, 5, 5), (day(2), 70.0, 2, 14, 6), (day(5), 90.0, 1, 9, 1)]
    );
    assert!(compliance::posture_history(&mut conn, None, day(5), day(1)).await.unwrap().is_empty());

    let as_of = compliance::posture_as_of(&mut conn, web, day(4)).await.unwrap().unwrap();
    assert_eq!((as_of.host_id, as_of.date, as_of.score), (web, day(2), 60.0));
    assert_eq!(as_of.rule_states["r1"], "pass");
    assert_eq!(compliance::posture_as_of(&mut conn, web, day(5)).await.unwrap().unwrap().score, 90.0);
    assert_eq!(compliance::posture_as_of(&mut conn, app, day(1)).await.unwrap(), None);
}

#[allow(clippy::too_many_arguments)]
async fn insert_drift(
    conn: &mut AsyncPgConnection,
    host: HostId,
    rule: Option<&str>,
    previous: Option<&str>,
    current: Option<&str>,
    scores: (Option<f64>, Option<f64>),
    detected_at: DateTime<Utc>,
) {
    diesel::sql_query(
        "INSERT INTO drift_events (id, host_id, rule_id, previous_status, current_status, severity, \
                                   previous_score, current_score, detected_at) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 IS NULL THEN NULL ELSE 'high' END, $6, $7, $8)",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
    .bind::<SqlUuid, _>(host.into_uuid())
    .bind::<Nullable<Text>, _>(rule)
    .bind::<Nullable<Text>, _>(previous)
    .bind::<Nullable<Text>, _>(current)
    .bind::<Nullable<Double>, _>(scores.0)
    .bind::<Nullable<Double>, _>(scores.1)
    .bind::<Timestamptz, _>(detected_at)
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_listed_newest_first_and_filtered_by_host_rule_time_and_direction() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let web = db.insert_host("web", 22).await;
    let app = db.insert_host("app", 22).await;
    let t = now() - TimeDelta::days(1);
    let at = |hours: i64| t + TimeDelta::hours(hours);
    insert_drift(&mut conn, web, Some("ssh"), Some("pass"), Some("fail"), (None, None), at(1)).await; // worse
    insert_drift(&mut conn, web, Some("ssh"), Some("fail"), Some("pass"), (None, None), at(2)).await; // better
    insert_drift(&mut conn, web, Some("audit"), None, Some("fail"), (None, None), at(3)).await; // worse
    insert_drift(&mut conn, web, Some("probe"), Some("pass"), Some("error"), (None, None), at(4)).await; // worse
    insert_drift(&mut conn, app, None, None, None, (Some(80.0), Some(60.0)), at(5)).await; // worse
    insert_drift(&mut conn, app, None, None, None, (Some(60.0), Some(70.0)), at(6)).await; // better
    insert_drift(&mut conn, app, Some("ssh"), Some("error"), Some("pass"), (None, None), at(7)).await; // better

    let key = |e: &compliance::DriftEvent| (e.host_id, e.rule_id.clone(), e.detected_at);
    let all = compliance::list_drift(&mut conn, &DriftFilter::default(), page(3, 0)).await.unwrap();
    assert_eq!(all.total, 7);
    assert_eq!(all.items.iter().map(|e| e.detected_at).collect::<Vec<_>>(), [at(7), at(6), at(5)]);

    let worsened = DriftFilter { direction: Some(DriftDirection::Worsened), ..Default::default() };
    let listed = compliance::list_drift(&mut conn, &worsened, page(10, 0)).await.unwrap();
    assert_eq!(listed.items.iter().map(|e| e.detected_at).collect::<Vec<_>>(), [at(5), at(4), at(3), at(1)]);
    let improved = DriftFilter { direction: Some(DriftDirection::Improved), ..Default::default() };
    let listed = compliance::list_drift(&mut conn, &improved, page(10, 0)).await.unwrap();
    assert_eq!(listed.items.iter().map(|e| e.detected_at).collect::<Vec<_>>(), [at(7), at(6), at(2)]);

    let web_ssh = DriftFilter { host_id: Some(web), rule_id: Some("ssh".into()), ..Default::default() };
    let listed = compliance::list_drift(&mut conn, &web_ssh, page(10, 0)).await.unwrap();
    assert_eq!(
        listed.items.iter().map(key).collect::<Vec<_>>(),
        [(web, Some("ssh".to_owned()), at(2)), (web, Some("ssh".to_owned()), at(1))]
    );
    assert_eq!(listed.items[1].previous_status, Some(FindingStatus::Pass));
    assert_eq!(listed.items[1].current_status, Some(FindingStatus::Fail));
    assert_eq!(listed.items[1].severity, Some(Severity::High));

    let window = DriftFilter {
        host_id: Some(app),
        since: Some(at(5)),
        until: Some(at(7)),
        direction: Some(DriftDirection::Improved),
        ..Default::default()
    };
    let listed = compliance::list_drift(&mut conn, &window, page(10, 0)).await.unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!((listed.items[0].previous_score, listed.items[0].current_score), (Some(60.0), Some(70.0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_rankings_order_failing_rules_and_priority_hosts() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = insert_user(&mut conn, "alice").await;
    let bob = insert_user(&mut conn, "bob").await;
    let (a, b, c, d) = (
        db.insert_host("a", 22).await,
        db.insert_host("b", 22).await,
        db.insert_host("c", 22).await,
        db.insert_host("d", 22).await,
    );
    use FindingStatus::{Fail, Pass};
    use Severity::{Critical, High, Low, Medium};
    // wide: medium, fails on a, b, c. crit: critical, fails on a and b (waived on b).
    // auth: high, fails on a and b. tls: high, fails on c only.
    scan_host(
        &mut conn,
        a,
        vec![
            result("wide", Fail, Medium, &[]),
            result("crit", Fail, Critical, &[]),
            result("auth", Fail, High, &[]),
        ],
    )
    .await;
    scan_host(
        &mut conn,
        b,
        vec![
            result("wide", Fail, Medium, &[]),
            result("crit", Fail, Critical, &[]),
            result("auth", Fail, High, &[]),
            result("ok", Pass, Low, &[]),
        ],
    )
    .await;
    scan_host(
        &mut conn,
        c,
        vec![result("wide", Fail, Medium, &[]), result("ok", Pass, Low, &[]), result("ok2", Pass, Low, &[])],
    )
    .await;
    scan_host(&mut conn, d, vec![result("wide", Pass, Medium, &[]), result("low", Fail, Low, &[])]).await;
    approved_exception(&mut conn, b, "crit", alice, bob).await;

    let top = compliance::top_failing_rules(&mut conn, 3).await.unwrap();
    assert_eq!(
        top,
        [
            FailingRule { rule_id: "wide".into(), severity: Medium, failing_hosts: 3 },
            FailingRule { rule_id: "auth".into(), severity: High, failing_hosts: 2 },
            // Ties at one host: the critical rule first, then by rule id.
            FailingRule { rule_id: "crit".into(), severity: Critical, failing_hosts: 1 },
        ]
    );
    assert_eq!(compliance::top_failing_rules(&mut conn, 10).await.unwrap().len(), 4);

    let priority = compliance::priority_hosts(&mut conn, 10).await.unwrap();
    let summary: Vec<_> =
        priority.iter().map(|h| (h.name.as_str(), h.critical_failures, h.high_failures, h.score)).collect();
    assert_eq!(
        summary,
        [
            ("a", 1, 1, Some(0.0)),
            // b's critical failure is waived; it has one high failure.
            ("b", 0, 1, Some(100.0 / 3.0)),
            // c and d tie on critical and high: lower score first.
            ("d", 0, 0, Some(50.0)),
            ("c", 0, 0, Some(200.0 / 3.0)),
        ]
    );
    assert_eq!(priority[0].host_id, a);
    assert_eq!(compliance::priority_hosts(&mut conn, 1).await.unwrap().len(), 1);
}

// ----------------------------------------------------------------------------------------
// Alerts
// ----------------------------------------------------------------------------------------

fn new_alert(host: HostId, rule: Option<&str>, severity: Severity) -> NewAlert {
    NewAlert {
        alert_type: "rule_failed".into(),
        host_id: host,
        rule_id: rule.map(str::to_owned),
        severity,
        title: format!("{rule:?} failed"),
        details: serde_json::json!({"rule": rule}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_deduplicate_while_unresolved_and_follow_their_life_cycle() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = insert_user(&mut conn, "operator").await;
    let web = db.insert_host("web", 22).await;
    let app = db.insert_host("app", 22).await;

    let (first, opened) =
        alerts::raise(&mut conn, new_alert(web, Some("ssh"), Severity::Medium)).await.unwrap();
    assert!(opened);
    let (again, opened) =
        alerts::raise(&mut conn, new_alert(web, Some("ssh"), Severity::High)).await.unwrap();
    assert_eq!((again, opened), (first, false));
    let alert = alerts::get_alert(&mut conn, first).await.unwrap();
    assert_eq!((alert.occurrences, alert.status, alert.severity), (2, AlertStatus::Open, Severity::High));
    assert!(alert.last_seen_at >= alert.opened_at);
    // Another rule, a host-level alert and another host are separate alerts.
    let (other_rule, opened) =
        alerts::raise(&mut conn, new_alert(web, Some("audit"), Severity::Low)).await.unwrap();
    assert!(opened && other_rule != first);
    let (host_level, _) = alerts::raise(&mut conn, new_alert(web, None, Severity::Critical)).await.unwrap();
    let (host_level_again, opened) =
        alerts::raise(&mut conn, new_alert(web, None, Severity::Critical)).await.unwrap();
    assert_eq!((host_level_again, opened), (host_level, false));
    let (app_alert, _) =
        alerts::raise(&mut conn, new_alert(app, Some("ssh"), Severity::Medium)).await.unwrap();
    let bad = NewAlert { alert_type: "Bad Type".into(), ..new_alert(web, None, Severity::Low) };
    assert!(matches!(alerts::raise(&mut conn, bad).await, Err(DbError::Constraint { .. })));

    // open → acknowledged → resolved; every other move is refused.
    let acked_at = now();
    let acked = alerts::acknowledge(&mut conn, first, user, acked_at).await.unwrap();
    assert_eq!(
        (acked.status, acked.acknowledged_by, acked.acknowledged_at),
        (AlertStatus::Acknowledged, Some(user), Some(acked_at))
    );
    let not_open = |err: DbError| matches!(&err, DbError::Constraint { constraint, .. } if constraint == "alert_not_open");
    assert!(not_open(alerts::acknowledge(&mut conn, first, user, now()).await.unwrap_err()));
    // Raising an acknowledged alert bumps it and keeps it acknowledged.
    let (bumped, opened) =
        alerts::raise(&mut conn, new_alert(web, Some("ssh"), Severity::High)).await.unwrap();
    assert_eq!((bumped, opened), (first, false));
    let alert = alerts::get_alert(&mut conn, first).await.unwrap();
    assert_eq!((alert.occurrences, alert.status), (3, AlertStatus::Acknowledged));

    let resolved_at = now();
    let resolved = alerts::resolve(&mut conn, first, resolved_at).await.unwrap();
    assert_eq!((resolved.status, resolved.resolved_at), (AlertStatus::Resolved, Some(resolved_at)));
    let err = alerts::resolve(&mut conn, first, now()).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint == "alert_already_resolved"),
        "{err:?}"
    );
    assert!(not_open(alerts::acknowledge(&mut conn, first, user, now()).await.unwrap_err()));
    // An open alert resolves directly.
    assert_eq!(alerts::resolve(&mut conn, other_rule, now()).await.unwrap().status, AlertStatus::Resolved);
    assert!(matches!(
        alerts::acknowledge(&mut conn, alerts_id_unknown(), user, now()).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(alerts::get_alert(&mut conn, alerts_id_unknown()).await, Err(DbError::NotFound)));

    // After resolution the same problem opens a new alert.
    let (reopened, opened) =
        alerts::raise(&mut conn, new_alert(web, Some("ssh"), Severity::High)).await.unwrap();
    assert!(opened && reopened != first);
    assert_eq!(alerts::get_alert(&mut conn, reopened).await.unwrap().occurrences, 1);

    // Lists: newest first, filtered.
    let all = alerts::list_alerts(&mut conn, &AlertFilter::default(), page(10, 0)).await.unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(all.items[0].id, reopened);
    assert!(all.items.windows(2).all(|w| w[0].opened_at >= w[1].opened_at));
    let open = AlertFilter { status: Some(AlertStatus::Open), ..Default::default() };
    let mut open_ids: Vec<_> = alerts::list_alerts(&mut conn, &open, page(10, 0))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.id)
        .collect();
    open_ids.sort();
    let mut expected = vec![host_level, app_alert, reopened];
    expected.sort();
    assert_eq!(open_ids, expected);
    let resolved_filter = AlertFilter { status: Some(AlertStatus::Resolved), ..Default::default() };
    assert_eq!(alerts::list_alerts(&mut conn, &resolved_filter, page(10, 0)).await.unwrap().total, 2);
    let app_only = AlertFilter {
        host_id: Some(app),
        severity: Some(Severity::Medium),
        alert_type: Some("rule_failed".into()),
        ..Default::default()
    };
    let listed = alerts::list_alerts(&mut conn, &app_only, page(10, 0)).await.unwrap();
    assert_eq!(listed.items.iter().map(|a| a.id).collect::<Vec<_>>(), [app_alert]);
    let other_type = AlertFilter { alert_type: Some("host_down".into()), ..Default::default() };
    assert_eq!(alerts::list_alerts(&mut conn, &other_type, page(10, 0)).await.unwrap().total, 0);
}

fn alerts_id_unknown() -> openwatch_common::ids::AlertId {
    openwatch_common::ids::AlertId::new()
}

// ----------------------------------------------------------------------------------------
// Exceptions
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn exceptions_need_four_eyes_are_decided_once_and_can_be_revoked() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = insert_user(&mut conn, "alice").await;
    let bob = insert_user(&mut conn, "bob").await;
    let host = db.insert_host("web", 22).await;
    let request = |rule: &str, expires_at: DateTime<Utc>| NewException {
        id: ExceptionId::new(),
        host_id: host,
        rule_id: rule.to_owned(),
        reason: "vendor appliance".into(),
        requested_by: alice,
        expires_at,
    };
    let in_a_week = Utc::now() + TimeDelta::days(7);

    let requested = exceptions::request_exception(&mut conn, request("ssh", in_a_week)).await.unwrap();
    assert_eq!(
        (requested.status, requested.requested_by, requested.decided_by),
        (ExceptionStatus::Requested, Some(alice), None)
    );
    assert!(!requested.is_active(Utc::now()));
    let dup = exceptions::request_exception(&mut conn, request("ssh", in_a_week)).await.unwrap_err();
    assert!(
        matches!(&dup, DbError::Conflict { constraint } if constraint == "exceptions_one_open_key"),
        "{dup:?}"
    );
    let empty_reason = NewException { reason: String::new(), ..request("other", in_a_week) };
    assert!(matches!(
        exceptions::request_exception(&mut conn, empty_reason).await,
        Err(DbError::Constraint { .. })
    ));
    let past =
        exceptions::request_exception(&mut conn, request("other", Utc::now() - TimeDelta::hours(1))).await;
    assert!(matches!(past, Err(DbError::Constraint { .. })), "{past:?}");

    // Four eyes: the requester cannot decide, in either direction.
    for approve in [true, false] {
        let err =
            exceptions::decide(&mut conn, requested.id, alice, approve, None, Utc::now()).await.unwrap_err();
        assert!(
            matches!(&err, DbError::Constraint { constraint, .. } if constraint == "exceptions_four_eyes"),
            "{err:?}"
        );
    }
    let decided_at = now();
    let approved =
        exceptions::decide(&mut conn, requested.id, bob, true, Some("accepted risk".into()), decided_at)
            .await
            .unwrap();
    assert_eq!(
        (approved.status, approved.decided_by, approved.decided_at, approved.decision_note.as_deref()),
        (ExceptionStatus::Approved, Some(bob), Some(decided_at), Some("accepted risk"))
    );
    assert!(approved.is_active(Utc::now()));
    assert_eq!(exceptions::get_exception(&mut conn, requested.id).await.unwrap(), approved);
    // A decision is made once.
    let err = exceptions::decide(&mut conn, requested.id, bob, false, None, Utc::now()).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint == "exception_not_requested"),
        "{err:?}"
    );
    // Still one open per host and rule while approved.
    assert!(matches!(
        exceptions::request_exception(&mut conn, request("ssh", in_a_week)).await,
        Err(DbError::Conflict { .. })
    ));

    let revoked = exceptions::revoke(&mut conn, requested.id, alice, Utc::now()).await.unwrap();
    assert_eq!((revoked.status, revoked.decided_by), (ExceptionStatus::Revoked, Some(bob)));
    let err = exceptions::revoke(&mut conn, requested.id, alice, Utc::now()).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint == "exception_not_approved"),
        "{err:?}"
    );

    // Revoked frees the slot; a rejection is final and not revocable.
    let second = exceptions::request_exception(&mut conn, request("ssh", in_a_week)).await.unwrap();
    let rejected = exceptions::decide(&mut conn, second.id, bob, false, None, Utc::now()).await.unwrap();
    assert_eq!(rejected.status, ExceptionStatus::Rejected);
    assert!(matches!(
        exceptions::revoke(&mut conn, second.id, bob, Utc::now()).await,
        Err(DbError::Constraint { .. })
    ));

    // Approving a lapsed request is refused.
    let short = exceptions::request_exception(&mut conn, request("audit", Utc::now() + TimeDelta::hours(1)))
        .await
        .unwrap();
    let err = exceptions::decide(&mut conn, short.id, bob, true, None, Utc::now() + TimeDelta::hours(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint == "exception_already_expired"),
        "{err:?}"
    );
    assert!(matches!(
        exceptions::decide(&mut conn, ExceptionId::new(), bob, true, None, Utc::now()).await,
        Err(DbError::NotFound)
    ));

    // Lists, newest request first.
    let all = exceptions::list_exceptions(&mut conn, &ExceptionFilter::default(), page(10, 0)).await.unwrap();
    assert_eq!(all.items.iter().map(|e| e.id).collect::<Vec<_>>(), [short.id, second.id, requested.id]);
    let ssh = ExceptionFilter { host_id: Some(host), rule_id: Some("ssh".into()), ..Default::default() };
    assert_eq!(exceptions::list_exceptions(&mut conn, &ssh, page(10, 0)).await.unwrap().total, 2);
    let revoked_only = ExceptionFilter { status: Some(ExceptionStatus::Revoked), ..Default::default() };
    let listed = exceptions::list_exceptions(&mut conn, &revoked_only, page(10, 0)).await.unwrap();
    assert_eq!(listed.items.iter().map(|e| e.id).collect::<Vec<_>>(), [requested.id]);

    // The expiry job still works on what decide wrote.
    let third = approved_exception(&mut conn, host, "ssh", alice, bob).await;
    assert_eq!(exceptions::expire_due(&mut conn, Utc::now() + TimeDelta::days(60)).await.unwrap(), 1);
    assert_eq!(exceptions::get_exception(&mut conn, third).await.unwrap().status, ExceptionStatus::Expired);
}

// ----------------------------------------------------------------------------------------
// Scheduler
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_updates_are_partial_recorded_and_bounded() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let admin = insert_user(&mut conn, "admin").await;

    let defaults = scheduler::get(&mut conn).await.unwrap();
    assert_eq!(
        (
            defaults.interval_critical_minutes,
            defaults.interval_compliant_minutes,
            defaults.max_interval_minutes
        ),
        (60, 1440, 2880)
    );
    assert_eq!(defaults.updated_by, None);

    let changes = SchedulerConfigChangeset {
        interval_critical_minutes: Some(30),
        max_interval_minutes: Some(1440),
        ..Default::default()
    };
    let updated = scheduler::update(&mut conn, &changes, admin).await.unwrap();
    assert_eq!(updated.interval_critical_minutes, 30);
    assert_eq!(updated.max_interval_minutes, 1440);
    assert_eq!(updated.interval_low_minutes, defaults.interval_low_minutes, "untouched fields stay");
    assert_eq!(updated.updated_by, Some(admin));
    assert!(updated.updated_at >= defaults.updated_at);
    assert_eq!(scheduler::get(&mut conn).await.unwrap(), updated);
    assert_eq!(updated.interval_for(ComplianceState::Critical), TimeDelta::minutes(30));

    // Out of bounds: refused with the field named, nothing written.
    let refused = [
        (
            SchedulerConfigChangeset { interval_low_minutes: Some(1441), ..Default::default() },
            "interval_low_minutes",
        ),
        // Lowering the cap below an existing interval (compliant = 1440).
        (
            SchedulerConfigChangeset { max_interval_minutes: Some(600), ..Default::default() },
            "interval_mostly_compliant_minutes",
        ),
        (
            SchedulerConfigChangeset { max_interval_minutes: Some(2881), ..Default::default() },
            "max_interval_minutes",
        ),
        (
            SchedulerConfigChangeset { max_interval_minutes: Some(0), ..Default::default() },
            "max_interval_minutes",
        ),
        (
            SchedulerConfigChangeset { failure_backoff_base_minutes: Some(0), ..Default::default() },
            "failure_backoff_base_minutes",
        ),
        (
            SchedulerConfigChangeset { interval_unknown_minutes: Some(u32::MAX), ..Default::default() },
            "interval_unknown_minutes",
        ),
    ];
    for (changes, field) in refused {
        let err = scheduler::update(&mut conn, &changes, admin).await.unwrap_err();
        assert!(
            matches!(&err, DbError::Constraint { constraint, message }
                if constraint == &format!("scheduler_config_{field}_range") && message.contains(field)),
            "{field}: {err:?}"
        );
    }
    assert_eq!(scheduler::get(&mut conn).await.unwrap(), updated);

    // The table's own CHECKs agree with the bounds (the backstop behind `update`).
    let direct = diesel::sql_query("UPDATE scheduler_config SET interval_partial_minutes = 5000")
        .execute(&mut conn)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(matches!(direct, DbError::Constraint { .. }), "{direct:?}");
}
