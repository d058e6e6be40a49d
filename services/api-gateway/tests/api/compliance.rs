//! Compliance views: a host's rules and posture, the fleet posture, history, as-of, drift
//! and rankings, over data written the way the pipeline writes it.
//!
//! Results are recorded with `scans::record_completed` and folded into `host_rule_state`
//! with the same upsert as the db crate's tests; snapshots and drift events are plain SQL
//! rows shaped like the result-processor's output. The seeding helpers here are shared
//! with `scans.rs` and `operations.rs`.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use diesel::sql_types::{Date, Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use openwatch_common::access::Role;
use openwatch_common::domain::{FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::{AsyncConnection, DbError};
use serde_json::Value;

use crate::helpers::TestApp;

// ----------------------------------------------------------------------------------------
// Shared seeding helpers
// ----------------------------------------------------------------------------------------

/// Runs `statement` (no result) on the test database.
pub(crate) async fn sql(app: &TestApp, statement: &str) {
    let mut conn = app.db.pool().get().await.unwrap();
    diesel::sql_query(statement).execute(&mut conn).await.unwrap();
}

/// The single `bigint` column `n` of `statement`.
pub(crate) async fn count(app: &TestApp, statement: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db.pool().get().await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(statement).load(&mut conn).await.unwrap();
    rows[0].n
}

/// Audit events with this action, resource id and outcome.
pub(crate) async fn audit_count(app: &TestApp, action: &str, resource_id: &str, outcome: &str) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) AS n FROM audit_events WHERE action = '{action}' \
             AND resource_id = '{resource_id}' AND outcome = '{outcome}'"
        ),
    )
    .await
}

/// One rule result with evidence and framework references.
pub(crate) fn result(
    rule: &str,
    status: FindingStatus,
    severity: Severity,
    frameworks: &[&str],
) -> RuleResultV1 {
    RuleResultV1 {
        rule_id: rule.to_owned(),
        status,
        severity,
        reason: (status == FindingStatus::Error).then(|| "probe failed".to_owned()),
        evidence: EvidenceV1 {
            source: format!("/etc/{rule}"),
            excerpt: format!("{rule} = x"),
            expected: Some("y".into()),
            actual: Some("x".into()),
        },
        frameworks: frameworks.iter().map(|f| ((*f).to_owned(), vec!["1.1".to_owned()])).collect(),
        duration_us: 7,
    }
}

/// Records `results` as the completed result of `scan` (queued or running) of `host`.
pub(crate) async fn complete_scan(app: &TestApp, scan: ScanId, host: HostId, results: Vec<RuleResultV1>) {
    let message = ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: Utc::now() - TimeDelta::seconds(3),
        finished_at: Utc::now(),
        failure_reason: None,
        platform: None,
        results,
    };
    let mut conn = app.db.pool().get().await.unwrap();
    conn.transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, &message).await)
        .await
        .unwrap();
}

/// A completed scheduled scan of `host` with `results`, folded into `host_rule_state` as
/// the result-processor does.
pub(crate) async fn scan_host(app: &TestApp, host: HostId, results: Vec<RuleResultV1>) -> ScanId {
    let scan = ScanId::new();
    let new_scan = NewScan {
        id: scan,
        host_id: host,
        trigger: ScanTrigger::Scheduled,
        framework: None,
        requested_by: None,
    };
    scans::insert_scan(&mut app.db.pool().get().await.unwrap(), &new_scan).await.unwrap();
    complete_scan(app, scan, host, results).await;
    let mut conn = app.db.pool().get().await.unwrap();
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
    .execute(&mut conn)
    .await
    .unwrap();
    scan
}

async fn insert_snapshot(app: &TestApp, host: HostId, date: NaiveDate, score: f64, passed: u32, failed: u32) {
    let per_severity = serde_json::json!({"high": {"passed": passed, "failed": failed}});
    let mut conn = app.db.pool().get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO posture_snapshots (host_id, snapshot_date, score, per_severity, rule_states) \
         VALUES ($1, $2, $3, $4::jsonb, '{\"r1\": \"pass\"}')",
    )
    .bind::<SqlUuid, _>(host.into_uuid())
    .bind::<Date, _>(date)
    .bind::<Double, _>(score)
    .bind::<Text, _>(per_severity.to_string())
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn insert_drift(
    app: &TestApp,
    host: HostId,
    rule: Option<&str>,
    statuses: (Option<&str>, Option<&str>),
    scores: (Option<f64>, Option<f64>),
    detected_at: DateTime<Utc>,
) {
    let mut conn = app.db.pool().get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO drift_events (id, host_id, rule_id, previous_status, current_status, severity, \
                                   previous_score, current_score, detected_at) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 IS NULL THEN NULL ELSE 'high' END, $6, $7, $8)",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
    .bind::<SqlUuid, _>(host.into_uuid())
    .bind::<Nullable<Text>, _>(rule)
    .bind::<Nullable<Text>, _>(statuses.0)
    .bind::<Nullable<Text>, _>(statuses.1)
    .bind::<Nullable<Double>, _>(scores.0)
    .bind::<Nullable<Double>, _>(scores.1)
    .bind::<Timestamptz, _>(detected_at)
    .execute(&mut conn)
    .await
    .unwrap();
}

fn rule_ids(items: &Value) -> Vec<&str> {
    items.as_array().unwrap().iter().map(|i| i["rule_id"].as_str().unwrap()).collect()
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

// ----------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn host_rules_and_posture_show_the_latest_result_per_rule() {
    use FindingStatus::{Error, Fail, NotApplicable, Pass};
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, guest) = app.user_with_token(Role::Guest).await;
    let web = app.db.insert_host("web", 22).await;
    let never = app.db.insert_host("never-scanned", 22).await;
    // The first scan's `ssh` pass is superseded by the second scan's fail.
    scan_host(&app, web, vec![result("ssh", Pass, Severity::Critical, &["cis-debian12"])]).await;
    let last = scan_host(
        &app,
        web,
        vec![
            result("ssh", Fail, Severity::Critical, &["cis-debian12"]),
            result("audit", Pass, Severity::High, &["cis-debian12", "pci-dss-4"]),
            result("tls", Pass, Severity::High, &["pci-dss-4"]),
            result("probe", Error, Severity::Medium, &[]),
            result("na", NotApplicable, Severity::Low, &[]),
        ],
    )
    .await;

    let rules = app.get(&format!("/api/hosts/{web}/rules"), &analyst).await;
    assert_eq!(rules.status, 200, "{:?}", rules.json);
    assert_eq!(rules.json["total"], 5);
    assert_eq!(rules.header("x-total-count"), Some("5"));
    assert_eq!(rule_ids(&rules.json["items"]), ["audit", "na", "probe", "ssh", "tls"]);
    let ssh = &rules.json["items"][3];
    assert_eq!(ssh["status"], "fail");
    assert_eq!(ssh["severity"], "critical");
    assert_eq!(ssh["last_scan_id"], last.to_string());
    assert_eq!(ssh["evidence"]["source"], "/etc/ssh");
    assert_eq!(ssh["excepted"], false);

    let failing = app.get(&format!("/api/hosts/{web}/rules?status=fail"), &analyst).await;
    assert_eq!(rule_ids(&failing.json["items"]), ["ssh"]);
    let high = app.get(&format!("/api/hosts/{web}/rules?severity=high&limit=1&offset=1"), &analyst).await;
    assert_eq!((high.json["total"].as_u64(), rule_ids(&high.json["items"])), (Some(2), vec!["tls"]));
    let one = app.get(&format!("/api/hosts/{web}/rules?rule_id=probe"), &analyst).await;
    assert_eq!(rule_ids(&one.json["items"]), ["probe"]);
    let bad = app.get(&format!("/api/hosts/{web}/rules?status=broken"), &analyst).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));
    let unknown = app.get(&format!("/api/hosts/{}/rules", HostId::new()), &analyst).await;
    assert_eq!((unknown.status, unknown.code()), (404, "host_not_found"));
    // Findings need `findings:read`, which a guest lacks; posture is open to guests.
    assert_eq!(app.get(&format!("/api/hosts/{web}/rules"), &guest).await.status, 403);

    let posture = app.get(&format!("/api/hosts/{web}/posture"), &guest).await;
    assert_eq!(posture.status, 200, "{:?}", posture.json);
    let p = &posture.json;
    assert_eq!(p["host_id"], web.to_string());
    assert_eq!((p["pass"].as_u64(), p["fail"].as_u64()), (Some(2), Some(1)));
    assert_eq!(
        (p["error"].as_u64(), p["not_applicable"].as_u64(), p["excepted"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    assert!(close(&p["score"], 200.0 / 3.0), "{p}");
    assert_eq!(p["per_severity"]["critical"]["fail"], 1);
    assert!(close(&p["per_severity"]["high"]["score"], 100.0));
    assert_eq!(
        (
            p["per_framework"]["cis-debian12"]["pass"].as_u64(),
            p["per_framework"]["cis-debian12"]["fail"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(p["per_framework"]["pci-dss-4"]["pass"], 2);

    let empty = app.get(&format!("/api/hosts/{never}/posture"), &guest).await;
    assert_eq!(
        (empty.status, empty.json["score"].clone(), empty.json["pass"].as_u64()),
        (200, Value::Null, Some(0))
    );
    let unknown = app.get(&format!("/api/hosts/{}/posture", HostId::new()), &guest).await;
    assert_eq!((unknown.status, unknown.code()), (404, "host_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_posture_pools_every_hosts_results() {
    use FindingStatus::{Fail, Manual, Pass};
    let app = TestApp::spawn().await;
    let (_, auditor) = app.user_with_token(Role::Auditor).await;
    let empty = app.get("/api/compliance/posture", &auditor).await;
    assert_eq!(
        (empty.status, empty.json["score"].clone(), empty.json["pass"].as_u64()),
        (200, Value::Null, Some(0))
    );
    assert!(empty.json.get("host_id").is_none());

    let a = app.db.insert_host("a", 22).await;
    let b = app.db.insert_host("b", 22).await;
    scan_host(
        &app,
        a,
        vec![result("ssh", Pass, Severity::High, &["cis-rhel9"]), result("fw", Fail, Severity::Low, &[])],
    )
    .await;
    scan_host(
        &app,
        b,
        vec![
            result("ssh", Pass, Severity::High, &["cis-rhel9"]),
            result("fw", Pass, Severity::Low, &[]),
            result("doc", Manual, Severity::Info, &[]),
        ],
    )
    .await;
    let fleet = app.get("/api/compliance/posture", &auditor).await;
    assert_eq!(fleet.status, 200, "{:?}", fleet.json);
    let f = &fleet.json;
    assert_eq!((f["pass"].as_u64(), f["fail"].as_u64(), f["manual"].as_u64()), (Some(3), Some(1), Some(1)));
    assert!(close(&f["score"], 75.0), "{f}");
    assert_eq!(
        (f["per_severity"]["low"]["pass"].as_u64(), f["per_severity"]["low"]["fail"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(close(&f["per_severity"]["low"]["score"], 50.0));
    assert_eq!(f["per_framework"]["cis-rhel9"]["pass"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_as_of_read_the_daily_snapshots() {
    let app = TestApp::spawn().await;
    let (_, guest) = app.user_with_token(Role::Guest).await;
    let web = app.db.insert_host("web", 22).await;
    let db = app.db.insert_host("db", 22).await;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    insert_snapshot(&app, web, day(1), 50.0, 5, 5).await;
    insert_snapshot(&app, web, day(2), 60.0, 6, 4).await;
    insert_snapshot(&app, db, day(2), 80.0, 8, 2).await;
    insert_snapshot(&app, web, day(5), 90.0, 9, 1).await;
    let today = Utc::now().date_naive();
    insert_snapshot(&app, web, today, 70.0, 7, 3).await;
    let old = app.db.insert_host("old", 22).await;
    insert_snapshot(&app, old, today - TimeDelta::days(30), 10.0, 1, 9).await;

    let host = app
        .get(&format!("/api/compliance/history?host_id={web}&from=2026-03-01&to=2026-03-04"), &guest)
        .await;
    assert_eq!(host.status, 200, "{:?}", host.json);
    assert_eq!(
        (host.json["from"].as_str(), host.json["to"].as_str()),
        (Some("2026-03-01"), Some("2026-03-04"))
    );
    let points: Vec<(String, f64, u64, u64, u64)> = host.json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap();
            (
                p["date"].as_str().unwrap().to_owned(),
                p["score"].as_f64().unwrap(),
                n("hosts"),
                n("passed"),
                n("failed"),
            )
        })
        .collect();
    assert_eq!(points, [("2026-03-01".into(), 50.0, 1, 5, 5), ("2026-03-02".into(), 60.0, 1, 6, 4)]);

    let fleet = app.get("/api/compliance/history?from=2026-03-01&to=2026-03-31", &guest).await;
    let fleet_points: Vec<(&str, f64, u64)> = fleet.json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["date"].as_str().unwrap(), p["score"].as_f64().unwrap(), p["hosts"].as_u64().unwrap()))
        .collect();
    assert_eq!(fleet_points, [("2026-03-01", 50.0, 1), ("2026-03-02", 70.0, 2), ("2026-03-05", 90.0, 1)]);

    // Default: the last 30 days, today included (the snapshot of 30 days ago is out).
    let recent = app.get("/api/compliance/history", &guest).await;
    assert_eq!(recent.json["to"], today.to_string());
    assert_eq!(recent.json["from"], (today - TimeDelta::days(29)).to_string());
    let points = recent.json["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(
        (points[0]["date"].as_str(), points[0]["score"].as_f64()),
        (Some(today.to_string().as_str()), Some(70.0))
    );

    for (query, code) in [
        ("from=2026-03-05&to=2026-03-01", "invalid_range"),
        ("from=2025-01-01&to=2026-03-01", "invalid_range"),
        ("from=2026-02-30", "invalid_query"),
        ("from=yesterday", "invalid_query"),
    ] {
        let resp = app.get(&format!("/api/compliance/history?{query}"), &guest).await;
        assert_eq!((resp.status, resp.code()), (400, code), "{query}");
    }
    let unknown = app.get(&format!("/api/compliance/history?host_id={}", HostId::new()), &guest).await;
    assert_eq!((unknown.status, unknown.code()), (404, "host_not_found"));

    let as_of = app.get(&format!("/api/compliance/as-of?host_id={web}&date=2026-03-04"), &guest).await;
    assert_eq!(as_of.status, 200, "{:?}", as_of.json);
    assert_eq!((as_of.json["date"].as_str(), as_of.json["score"].as_f64()), (Some("2026-03-02"), Some(60.0)));
    assert_eq!(as_of.json["rule_states"]["r1"], "pass");
    assert_eq!(as_of.json["per_severity"]["high"]["passed"], 6);
    let none = app.get(&format!("/api/compliance/as-of?host_id={db}&date=2026-03-01"), &guest).await;
    assert_eq!((none.status, none.code()), (404, "no_snapshot"));
    let unknown =
        app.get(&format!("/api/compliance/as-of?host_id={}&date=2026-03-01", HostId::new()), &guest).await;
    assert_eq!((unknown.status, unknown.code()), (404, "host_not_found"));
    let missing = app.get(&format!("/api/compliance/as-of?host_id={web}"), &guest).await;
    assert_eq!((missing.status, missing.code()), (400, "invalid_query"));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_listed_newest_first_with_filters() {
    let app = TestApp::spawn().await;
    let (_, auditor) = app.user_with_token(Role::Auditor).await;
    let web = app.db.insert_host("web", 22).await;
    let db = app.db.insert_host("db", 22).await;
    // At PostgreSQL's microsecond precision, so round trips compare equal.
    let t = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap() - TimeDelta::days(1);
    let at = |hours: i64| t + TimeDelta::hours(hours);
    insert_drift(&app, web, Some("ssh"), (Some("pass"), Some("fail")), (None, None), at(1)).await; // worse
    insert_drift(&app, web, Some("ssh"), (Some("fail"), Some("pass")), (None, None), at(2)).await; // better
    insert_drift(&app, web, Some("audit"), (None, Some("fail")), (None, None), at(3)).await; // worse
    insert_drift(&app, db, None, (None, None), (Some(80.0), Some(60.0)), at(4)).await; // worse
    insert_drift(&app, db, None, (None, None), (Some(60.0), Some(70.0)), at(5)).await; // better

    let detected = |resp: &crate::helpers::Resp| -> Vec<DateTime<Utc>> {
        resp.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["detected_at"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let all = app.get("/api/compliance/drift?limit=2", &auditor).await;
    assert_eq!(all.status, 200, "{:?}", all.json);
    assert_eq!((all.json["total"].as_u64(), detected(&all)), (Some(5), vec![at(5), at(4)]));
    assert_eq!(all.json["items"][1]["previous_score"], 80.0);
    assert_eq!(all.json["items"][1]["rule_id"], Value::Null);

    let worse = app.get("/api/compliance/drift?direction=worsened", &auditor).await;
    assert_eq!(detected(&worse), [at(4), at(3), at(1)]);
    let better = app.get("/api/compliance/drift?direction=improved", &auditor).await;
    assert_eq!(detected(&better), [at(5), at(2)]);
    let web_ssh = app.get(&format!("/api/compliance/drift?host_id={web}&rule_id=ssh"), &auditor).await;
    assert_eq!(detected(&web_ssh), [at(2), at(1)]);
    assert_eq!(
        (
            web_ssh.json["items"][1]["previous_status"].as_str(),
            web_ssh.json["items"][1]["current_status"].as_str()
        ),
        (Some("pass"), Some("fail"))
    );
    assert_eq!(web_ssh.json["items"][1]["severity"], "high");
    let window = app
        .get(&format!("/api/compliance/drift?since={}&until={}", rfc3339(at(2)), rfc3339(at(4))), &auditor)
        .await;
    assert_eq!(detected(&window), [at(3), at(2)]);

    let bad = app.get("/api/compliance/drift?direction=sideways", &auditor).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));
    let bad = app.get("/api/compliance/drift?limit=501", &auditor).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_limit"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rankings_order_failing_rules_and_priority_hosts() {
    use FindingStatus::{Fail, Pass};
    use Severity::{Critical, High, Low, Medium};
    let app = TestApp::spawn().await;
    let (_, guest) = app.user_with_token(Role::Guest).await;
    let a = app.db.insert_host("alpha", 22).await;
    let b = app.db.insert_host("bravo", 22).await;
    let c = app.db.insert_host("charlie", 22).await;
    scan_host(
        &app,
        a,
        vec![
            result("wide", Fail, Medium, &[]),
            result("crit", Fail, Critical, &[]),
            result("auth", Fail, High, &[]),
        ],
    )
    .await;
    scan_host(
        &app,
        b,
        vec![
            result("wide", Fail, Medium, &[]),
            result("auth", Fail, High, &[]),
            result("ok", Pass, Low, &[]),
        ],
    )
    .await;
    scan_host(
        &app,
        c,
        vec![result("wide", Fail, Medium, &[]), result("ok", Pass, Low, &[]), result("ok2", Pass, Low, &[])],
    )
    .await;

    let top = app.get("/api/compliance/top-failing-rules?limit=2", &guest).await;
    assert_eq!(top.status, 200, "{:?}", top.json);
    let rows: Vec<(&str, &str, u64)> = top
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule_id"].as_str().unwrap(),
                r["severity"].as_str().unwrap(),
                r["failing_hosts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("wide", "medium", 3), ("auth", "high", 2)]);
    assert_eq!(app.get("/api/compliance/top-failing-rules", &guest).await.json.as_array().unwrap().len(), 3);

    let hosts = app.get("/api/compliance/priority-hosts", &guest).await;
    assert_eq!(hosts.status, 200, "{:?}", hosts.json);
    let rows: Vec<(&str, u64, u64)> = hosts
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap(),
                h["critical_failures"].as_u64().unwrap(),
                h["high_failures"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("alpha", 1, 1), ("bravo", 0, 1), ("charlie", 0, 0)]);
    assert_eq!(hosts.json[0]["host_id"], a.to_string());
    assert!(close(&hosts.json[2]["score"], 200.0 / 3.0));
    assert_eq!(
        app.get("/api/compliance/priority-hosts?limit=1", &guest).await.json.as_array().unwrap().len(),
        1
    );

    for path in ["/api/compliance/top-failing-rules", "/api/compliance/priority-hosts"] {
        for limit in ["0", "101"] {
            let resp = app.get(&format!("{path}?limit={limit}"), &guest).await;
            assert_eq!((resp.status, resp.code()), (400, "invalid_limit"), "{path} {limit}");
        }
    }
}
