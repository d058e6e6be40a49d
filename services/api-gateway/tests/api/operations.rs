//! Alerts (triage transitions) and exceptions (four-eyes approval, waiving results in
//! findings and scores, revocation).

use chrono::{SecondsFormat, TimeDelta, Utc};
use openwatch_common::access::Role;
use openwatch_common::domain::{FindingStatus, Severity};
use openwatch_common::ids::{AlertId, ExceptionId, HostId};
use openwatch_db::queries::alerts::{self, NewAlert};
use serde_json::{Value, json};

use crate::compliance::{audit_count, count, result, scan_host};
use crate::helpers::TestApp;

async fn raise(
    app: &TestApp,
    alert_type: &str,
    host: HostId,
    rule: Option<&str>,
    severity: Severity,
) -> AlertId {
    let mut conn = app.db.pool().get().await.unwrap();
    let alert = NewAlert {
        alert_type: alert_type.into(),
        host_id: host,
        rule_id: rule.map(str::to_owned),
        severity,
        title: format!("{alert_type} on {host}"),
        details: json!({"why": alert_type}),
    };
    alerts::raise(&mut conn, alert).await.unwrap().0
}

fn in_days(days: i64) -> String {
    (Utc::now() + TimeDelta::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_listed_filtered_and_triaged_once() {
    let app = TestApp::spawn().await;
    let (analyst, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, auditor) = app.user_with_token(Role::Auditor).await;
    let web = app.db.insert_host("web", 22).await;
    let db = app.db.insert_host("db", 22).await;
    let failed = raise(&app, "rule_failed", web, Some("ssh"), Severity::Critical).await;
    let dropped = raise(&app, "score_dropped", db, None, Severity::High).await;
    // A repeated occurrence is folded into the open alert.
    assert_eq!(raise(&app, "rule_failed", web, Some("ssh"), Severity::Critical).await, failed);

    let all = app.get("/api/alerts", &auditor).await;
    assert_eq!(all.status, 200, "{:?}", all.json);
    assert_eq!((all.json["total"].as_u64(), all.header("x-total-count")), (Some(2), Some("2")));
    let one = app.get(&format!("/api/alerts/{failed}"), &auditor).await;
    let a = &one.json;
    assert_eq!(
        (a["alert_type"].as_str(), a["rule_id"].as_str(), a["severity"].as_str()),
        (Some("rule_failed"), Some("ssh"), Some("critical"))
    );
    assert_eq!(
        (a["status"].as_str(), a["occurrences"].as_u64(), a["host_id"].as_str()),
        (Some("open"), Some(2), Some(web.to_string().as_str()))
    );
    assert_eq!(a["details"], json!({"why": "rule_failed"}));
    for (query, expected) in [
        (format!("host_id={db}"), dropped),
        ("severity=critical".to_owned(), failed),
        ("alert_type=score_dropped".to_owned(), dropped),
    ] {
        let resp = app.get(&format!("/api/alerts?{query}"), &auditor).await;
        assert_eq!(resp.json["total"], 1, "{query}");
        assert_eq!(resp.json["items"][0]["id"], expected.to_string(), "{query}");
    }
    let unknown = app.get(&format!("/api/alerts/{}", AlertId::new()), &auditor).await;
    assert_eq!((unknown.status, unknown.code()), (404, "alert_not_found"));
    let bad = app.get("/api/alerts?status=snoozed", &auditor).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));

    // Triage: auditors read only.
    let denied = app.post(&format!("/api/alerts/{failed}/acknowledge"), &auditor, &json!({})).await;
    assert_eq!((denied.status, denied.code()), (403, "permission_denied"));
    let acked = app.post(&format!("/api/alerts/{failed}/acknowledge"), &token, &json!({})).await;
    assert_eq!(acked.status, 200, "{:?}", acked.json);
    assert_eq!(
        (acked.json["status"].as_str(), acked.json["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some(analyst.id.to_string().as_str()))
    );
    assert!(acked.json["acknowledged_at"].is_string());
    let again = app.post(&format!("/api/alerts/{failed}/acknowledge"), &token, &json!({})).await;
    assert_eq!((again.status, again.code()), (409, "alert_not_open"));
    let open = app.get("/api/alerts?status=open", &auditor).await;
    assert_eq!(open.json["items"][0]["id"], dropped.to_string());
    assert_eq!(open.json["total"], 1);

    let resolved = app.post(&format!("/api/alerts/{failed}/resolve"), &token, &json!({})).await;
    assert_eq!((resolved.status, resolved.json["status"].as_str()), (200, Some("resolved")));
    assert!(resolved.json["resolved_at"].is_string());
    let again = app.post(&format!("/api/alerts/{failed}/resolve"), &token, &json!({})).await;
    assert_eq!((again.status, again.code()), (409, "alert_already_resolved"));
    let again = app.post(&format!("/api/alerts/{failed}/acknowledge"), &token, &json!({})).await;
    assert_eq!((again.status, again.code()), (409, "alert_not_open"));
    // Open → resolved directly.
    let direct = app.post(&format!("/api/alerts/{dropped}/resolve"), &token, &json!({})).await;
    assert_eq!(direct.json["status"], "resolved");
    let unknown = app.post(&format!("/api/alerts/{}/resolve", AlertId::new()), &token, &json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "alert_not_found"));

    assert_eq!(audit_count(&app, "alert.acknowledge", &failed.to_string(), "success").await, 1);
    assert_eq!(audit_count(&app, "alert.resolve", &failed.to_string(), "success").await, 1);
    assert_eq!(audit_count(&app, "alert.resolve", &dropped.to_string(), "success").await, 1);
    assert_eq!(app.get("/api/alerts?status=resolved", &auditor).await.json["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exception_needs_a_second_person_and_waives_the_rule_until_revoked() {
    use FindingStatus::{Fail, Pass};
    let app = TestApp::spawn().await;
    let (requester, admin) = app.user_with_token(Role::SecurityAdmin).await;
    let (officer, officer_token) = app.user_with_token(Role::ComplianceOfficer).await;
    let (_, analyst) = app.user_with_token(Role::SecurityAnalyst).await;
    let host = app.db.insert_host("web", 22).await;
    let scan = scan_host(
        &app,
        host,
        vec![
            result("ssh", Fail, Severity::Critical, &["cis-debian12"]),
            result("audit", Pass, Severity::High, &[]),
        ],
    )
    .await;
    let posture = app.get(&format!("/api/hosts/{host}/posture"), &admin).await;
    assert_eq!((posture.json["score"].as_f64(), posture.json["excepted"].as_u64()), (Some(50.0), Some(0)));

    let body = json!({"host_id": host, "rule_id": "ssh", "reason": "jump host only, compensating firewall", "expires_at": in_days(30)});
    let created = app.post("/api/exceptions", &admin, &body).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/api/exceptions/{id}").as_str()));
    assert_eq!(
        (created.json["status"].as_str(), created.json["active"].as_bool()),
        (Some("requested"), Some(false))
    );
    assert_eq!(created.json["requested_by"], requester.id.to_string());
    let second = app.post("/api/exceptions", &analyst, &body).await;
    assert_eq!((second.status, second.code()), (409, "exception_exists"));

    // Four eyes: the requester holds exceptions:approve but may not decide their own request.
    for verb in ["approve", "reject"] {
        let own = app.post(&format!("/api/exceptions/{id}/{verb}"), &admin, &json!({"note": "mine"})).await;
        assert_eq!((own.status, own.code()), (403, "four_eyes_required"), "{verb}");
    }
    assert_eq!(audit_count(&app, "exception.approve", &id, "denied").await, 1);
    assert_eq!(app.get(&format!("/api/exceptions/{id}"), &admin).await.json["status"], "requested");
    let no_permission = app.post(&format!("/api/exceptions/{id}/approve"), &analyst, &json!({})).await;
    assert_eq!((no_permission.status, no_permission.code()), (403, "permission_denied"));
    let bad_note =
        app.post(&format!("/api/exceptions/{id}/approve"), &officer_token, &json!({"notes": "x"})).await;
    assert_eq!((bad_note.status, bad_note.code()), (400, "invalid_body"));

    let approved = app
        .post(
            &format!("/api/exceptions/{id}/approve"),
            &officer_token,
            &json!({"note": "ok until migration"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.json);
    let e = &approved.json;
    assert_eq!((e["status"].as_str(), e["active"].as_bool()), (Some("approved"), Some(true)));
    assert_eq!(
        (e["decided_by"].as_str(), e["decision_note"].as_str()),
        (Some(officer.id.to_string().as_str()), Some("ok until migration"))
    );
    assert_eq!(audit_count(&app, "exception.approve", &id, "success").await, 1);
    let twice =
        app.request("POST", &format!("/api/exceptions/{id}/approve"), Some(&officer_token), None).await;
    assert_eq!((twice.status, twice.code()), (409, "exception_not_requested"));

    // The finding and the rule state are flagged; the score leaves the waived fail out.
    let findings = app.get(&format!("/api/scans/{scan}/findings?rule_id=ssh"), &analyst).await;
    assert_eq!(findings.json["items"][0]["excepted"], true);
    let audit = app.get(&format!("/api/scans/{scan}/findings?rule_id=audit"), &analyst).await;
    assert_eq!(audit.json["items"][0]["excepted"], false);
    let rules = app.get(&format!("/api/hosts/{host}/rules?rule_id=ssh"), &analyst).await;
    assert_eq!(rules.json["items"][0]["excepted"], true);
    let posture = app.get(&format!("/api/hosts/{host}/posture"), &admin).await;
    let p = &posture.json;
    assert_eq!(
        (p["score"].as_f64(), p["pass"].as_u64(), p["fail"].as_u64(), p["excepted"].as_u64()),
        (Some(100.0), Some(1), Some(0), Some(1))
    );
    assert_eq!(p["per_severity"].get("critical"), None, "{p}");
    let fleet = app.get("/api/compliance/posture", &admin).await;
    assert_eq!((fleet.json["score"].as_f64(), fleet.json["excepted"].as_u64()), (Some(100.0), Some(1)));
    assert_eq!(app.get("/api/compliance/top-failing-rules", &admin).await.json, json!([]));

    // Revocation: only of an approved exception; the rule counts again at once.
    let revoked =
        app.post(&format!("/api/exceptions/{id}/revoke"), &officer_token, &json!({"note": "migrated"})).await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.json);
    assert_eq!(
        (revoked.json["status"].as_str(), revoked.json["active"].as_bool()),
        (Some("revoked"), Some(false))
    );
    let again = app.post(&format!("/api/exceptions/{id}/revoke"), &officer_token, &json!({})).await;
    assert_eq!((again.status, again.code()), (409, "exception_not_approved"));
    assert_eq!(
        count(&app, &format!(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'exception.revoke' AND resource_id = '{id}' \
             AND actor_user_id = '{}' AND details->>'note' = 'migrated'", officer.id
        ))
        .await,
        1,
        "the audit log records who revoked it"
    );
    let posture = app.get(&format!("/api/hosts/{host}/posture"), &admin).await;
    assert_eq!((posture.json["score"].as_f64(), posture.json["excepted"].as_u64()), (Some(50.0), Some(0)));
    let findings = app.get(&format!("/api/scans/{scan}/findings?rule_id=ssh"), &analyst).await;
    assert_eq!(findings.json["items"][0]["excepted"], false);

    // A new request after revocation, rejected this time (by the admin, who did not ask).
    let renewed = app.post("/api/exceptions", &analyst, &body).await;
    assert_eq!(renewed.status, 201, "{:?}", renewed.json);
    let renewed_id = renewed.json["id"].as_str().unwrap().to_owned();
    let rejected =
        app.request("POST", &format!("/api/exceptions/{renewed_id}/reject"), Some(&admin), None).await;
    assert_eq!((rejected.status, rejected.json["status"].as_str()), (200, Some("rejected")));
    let revoke_rejected = app.post(&format!("/api/exceptions/{renewed_id}/revoke"), &admin, &json!({})).await;
    assert_eq!((revoke_rejected.status, revoke_rejected.code()), (409, "exception_not_approved"));
    assert_eq!(audit_count(&app, "exception.reject", &renewed_id, "success").await, 1);
    assert_eq!(audit_count(&app, "exception.request", &renewed_id, "success").await, 1);

    let listed = app.get(&format!("/api/exceptions?host_id={host}&rule_id=ssh"), &analyst).await;
    assert_eq!((listed.json["total"].as_u64(), listed.header("x-total-count")), (Some(2), Some("2")));
    assert_eq!(listed.json["items"][0]["id"], renewed_id, "newest request first");
    let rejected_only = app.get("/api/exceptions?status=rejected", &analyst).await;
    assert_eq!(rejected_only.json["items"].as_array().unwrap().len(), 1);
    let unknown = app.get(&format!("/api/exceptions/{}", ExceptionId::new()), &analyst).await;
    assert_eq!((unknown.status, unknown.code()), (404, "exception_not_found"));
    let unknown = app
        .post(&format!("/api/exceptions/{}/approve", ExceptionId::new()), &officer_token, &json!({}))
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "exception_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exception_requests_are_validated() {
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, auditor) = app.user_with_token(Role::Auditor).await;
    let host = app.db.insert_host("web", 22).await;
    let base = json!({"host_id": host, "rule_id": "ssh", "reason": "why", "expires_at": in_days(30)});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("reason", json!("   ")), 400, "invalid_reason"),
        (with("reason", json!("x".repeat(2001))), 400, "invalid_reason"),
        (with("rule_id", json!("")), 400, "invalid_rule_id"),
        (with("rule_id", json!("SSH; drop table")), 400, "invalid_rule_id"),
        (with("expires_at", json!(in_days(-1))), 400, "invalid_expiry"),
        (with("expires_at", json!(in_days(367))), 400, "invalid_expiry"),
        (with("expires_at", json!("next week")), 400, "invalid_body"),
        (with("extra", json!(1)), 400, "invalid_body"),
        (with("host_id", json!(HostId::new())), 422, "unknown_host"),
    ];
    for (body, status, code) in cases {
        let resp = app.post("/api/exceptions", &analyst, &body).await;
        assert_eq!((resp.status, resp.code()), (status, code), "{body}");
    }
    assert_eq!(count(&app, "SELECT count(*) AS n FROM exceptions").await, 0);
    let denied = app.post("/api/exceptions", &auditor, &base).await;
    assert_eq!((denied.status, denied.code()), (403, "permission_denied"));
    let ok = app.post("/api/exceptions", &analyst, &with("reason", json!("x".repeat(2000)))).await;
    assert_eq!(ok.status, 201, "{:?}", ok.json);
}
