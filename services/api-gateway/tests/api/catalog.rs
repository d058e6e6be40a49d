//! Rules catalogue, framework coverage, audit log query and export, scheduler config.

use openwatch_common::access::Role;
use openwatch_db::queries::audit::{self, AuditOutcome, NewAuditEvent};
use serde_json::json;

use crate::helpers::{TestApp, send};

#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_filters_and_coverage_equals_the_engines() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::Guest).await;
    let all = app.get("/api/rules?limit=500", &token).await;
    assert_eq!(all.status, 200);
    let total = all.json["total"].as_u64().unwrap();
    assert!(total >= 250, "{total}");
    assert_eq!(all.header("x-total-count"), Some(total.to_string().as_str()));
    for filter in ["framework=cis-debian12", "severity=high", "category=ssh", "platform=rhel", "q=sshd"] {
        let some = app.get(&format!("/api/rules?{filter}&limit=500"), &token).await;
        let n = some.json["total"].as_u64().unwrap();
        assert!(n > 0 && n < total, "{filter}: {n}");
    }
    let high = app.get("/api/rules?severity=high&limit=500", &token).await;
    assert!(high.json["items"].as_array().unwrap().iter().all(|r| r["severity"] == "high"));
    let first = all.json["items"][0]["id"].as_str().unwrap().to_owned();
    let rule = app.get(&format!("/api/rules/{first}"), &token).await;
    assert_eq!((rule.status, rule.json["id"].as_str()), (200, Some(first.as_str())));
    assert_eq!(app.get("/api/rules/no_such_rule", &token).await.code(), "rule_not_found");

    // Coverage: what the engine computes for the same corpus.
    let dir = app.state.config.rules_dir.clone();
    let rules = openwatch_engine::rules::RuleSet::load_dir(&dir).unwrap();
    let lists = openwatch_engine::frameworks::load_dir(&dir.join("frameworks")).unwrap();
    let expected = openwatch_engine::frameworks::coverage(&rules, &lists);
    let frameworks = app.get("/api/frameworks", &token).await;
    assert_eq!(frameworks.json.as_array().unwrap().len(), expected.frameworks.len());
    for c in &expected.frameworks {
        let got =
            frameworks.json.as_array().unwrap().iter().find(|f| f["id"] == c.framework.as_str()).unwrap();
        assert_eq!(got["covered_automated"], c.covered_automated, "{}", c.framework);
        assert_eq!(got["controls_total"], c.total, "{}", c.framework);
    }
    let one = app.get("/api/frameworks/cis-debian12", &token).await;
    assert_eq!(one.status, 200);
    assert!(
        one.json["controls"].as_array().unwrap().iter().any(|c| !c["rules"].as_array().unwrap().is_empty())
    );
    assert_eq!(app.get("/api/frameworks/nope", &token).await.code(), "framework_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_is_queried_and_exported_streamed_never_written() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::Auditor).await;
    {
        let mut conn = app.db.pool().get().await.unwrap();
        for i in 0..1205 {
            let details = if i == 7 { json!({"note": "a, \"quoted\"\nline"}) } else { json!({"i": i}) };
            let event = NewAuditEvent {
                actor_user_id: None,
                actor_name: if i % 2 == 0 { "alice".into() } else { "bob".into() },
                action: "host.create".into(),
                resource_type: "host".into(),
                resource_id: Some(i.to_string()),
                outcome: AuditOutcome::Success,
                ip: None,
                details,
            };
            audit::record(&mut conn, &event).await.unwrap();
        }
    }
    let alice = app.get("/api/audit-events?actor=alice&limit=1", &token).await;
    assert_eq!(alice.json["total"], 603);
    assert_eq!(app.get("/api/audit-events?outcome=weird", &token).await.code(), "invalid_query");

    let csv = app.get("/api/audit-events/export?format=csv&action=host.create", &token).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").unwrap().contains("audit-events.csv"));
    // Records: a header and 1205 rows; one details value spans two physical lines.
    let records = csv.raw.body.split("\r\n").filter(|l| !l.is_empty()).count();
    assert_eq!(records, 1206);
    assert!(csv.raw.body.contains(r#""{""note"":""a, \""quoted\""\nline""}""#), "quoting round-trips");

    let exported = app.get("/api/audit-events/export?format=json&action=host.create", &token).await;
    assert_eq!(exported.json.as_array().unwrap().len(), 1205);
    assert_eq!(exported.json[7]["details"]["note"], "a, \"quoted\"\nline");

    let (_, admin) = app.user_with_token(Role::SuperAdmin).await;
    for method in ["POST", "PUT", "DELETE"] {
        let resp = send(app.addr, method, "/api/audit-events", Some(&admin), Some(&json!({})), &[]).await;
        assert!(resp.status >= 400, "{method} answered {}", resp.status);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_config_is_validated_and_audited() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let before = app.get("/api/scheduler/config", &token).await;
    assert_eq!(before.json["interval_critical_minutes"], 60);
    let ok = app
        .request(
            "PUT",
            "/api/scheduler/config",
            Some(&token),
            Some(&json!({"interval_critical_minutes": 30})),
        )
        .await;
    assert_eq!((ok.status, ok.json["interval_critical_minutes"].as_u64()), (200, Some(30)));
    for bad in [
        json!({"max_interval_minutes": 0}),
        json!({"interval_low_minutes": 5000}),
        json!({"failure_backoff_base_minutes": 0}),
    ] {
        let resp = app.request("PUT", "/api/scheduler/config", Some(&token), Some(&bad)).await;
        assert_eq!((resp.status, resp.code()), (422, "invalid_interval"), "{bad}");
    }
    let unknown =
        app.request("PUT", "/api/scheduler/config", Some(&token), Some(&json!({"interval_x": 1}))).await;
    assert_eq!(unknown.status, 400);
    let after = app.get("/api/scheduler/config", &token).await;
    assert_eq!(after.json["interval_critical_minutes"], 30);
    assert_eq!(after.json["max_interval_minutes"], 2880);
}
