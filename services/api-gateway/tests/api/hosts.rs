//! Hosts, CSV import, groups and maintenance windows.

use chrono::{TimeDelta, Utc};
use openwatch_common::access::Role;
use serde_json::json;

use crate::helpers::{TestApp, send};

#[tokio::test(flavor = "multi_thread")]
async fn hosts_crud_filters_and_validation() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    for (name, address, tags) in [
        ("web-1", "10.0.0.1", vec!["web"]),
        ("web-2", "10.0.0.2", vec!["web"]),
        ("db-1", "db1.corp", vec!["db"]),
    ] {
        let created =
            app.post("/api/hosts", &token, &json!({"name": name, "address": address, "tags": tags})).await;
        assert_eq!(created.status, 201, "{:?}", created.json);
        assert_eq!(created.json["port"], 22);
    }
    let web = app.get("/api/hosts?tag=web", &token).await;
    assert_eq!((web.json["total"].as_u64(), web.header("x-total-count")), (Some(2), Some("2")));
    assert_eq!(app.get("/api/hosts?q=db", &token).await.json["total"], 1);
    assert_eq!(app.get("/api/hosts?compliance_state=unknown", &token).await.json["total"], 3);
    let sorted = app.get("/api/hosts?sort=name&order=desc", &token).await;
    assert_eq!(sorted.json["items"][0]["name"], "web-2");
    assert_eq!(app.get("/api/hosts?limit=501", &token).await.code(), "invalid_limit");
    assert_eq!(
        app.post("/api/hosts", &token, &json!({"name": "x", "address": "has space"})).await.code(),
        "invalid_address"
    );
    assert_eq!(
        app.post("/api/hosts", &token, &json!({"name": "x", "address": "10.0.0.9", "port": 0})).await.code(),
        "invalid_port"
    );
    assert_eq!(
        app.post("/api/hosts", &token, &json!({"name": "web-1", "address": "10.0.0.9"})).await.code(),
        "host_name_taken"
    );

    let id = web.json["items"][0]["id"].as_str().unwrap().to_owned();
    let patched =
        app.request("PATCH", &format!("/api/hosts/{id}"), Some(&token), Some(&json!({"port": 2222}))).await;
    assert_eq!(patched.json["port"], 2222);
    assert_eq!(app.request("DELETE", &format!("/api/hosts/{id}"), Some(&token), None).await.status, 204);
    assert_eq!(app.get(&format!("/api/hosts/{id}"), &token).await.code(), "host_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_import_reports_per_row_and_creates_the_valid_rows() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    app.post("/api/hosts", &token, &json!({"name": "existing", "address": "10.1.0.1"})).await;
    let csv = "name,address,port,tags\n\"app, primary\",10.1.0.2,22,prod;web\nexisting,10.1.0.3,,\nbroken,not an address,,\nlast,10.1.0.4,2200,\n";
    let auth = format!("Bearer {token}");
    let raw = openwatch_test_support::http::request(
        app.addr,
        "POST",
        "/api/hosts/import",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        Some(csv.as_bytes()),
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 200, "{}", raw.body);
    let report: serde_json::Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!((report["created"].as_u64(), report["failed"].as_u64()), (Some(2), Some(2)), "{report}");
    let rows = report["rows"].as_array().unwrap();
    let status_of =
        |line: u64| rows.iter().find(|r| r["line"] == line).map(|r| r["status"].as_str().unwrap().to_owned());
    assert_eq!(status_of(2).as_deref(), Some("created"));
    assert_eq!(status_of(3).as_deref(), Some("error"));
    assert_eq!(status_of(4).as_deref(), Some("error"));
    let quoted = app.get("/api/hosts?name=app%2C%20primary", &token).await;
    assert_eq!(quoted.json["items"][0]["tags"], json!(["prod", "web"]));
    let empty =
        send(app.addr, "POST", "/api/hosts/import", Some(&token), None, &[("Content-Type", "text/csv")])
            .await;
    assert_eq!(empty.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_membership_and_maintenance_windows() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.post("/api/hosts", &token, &json!({"name": "h1", "address": "10.2.0.1"})).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = app.post("/api/host-groups", &token, &json!({"name": "linux"})).await;
    assert_eq!(group.status, 201);
    let gid = group.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post("/api/host-groups", &token, &json!({"name": "linux"})).await.code(),
        "group_name_taken"
    );
    let added =
        app.post(&format!("/api/host-groups/{gid}/members"), &token, &json!({"host_ids": [host]})).await;
    assert_eq!(added.json["added"], 1);
    let unknown = app
        .post(
            &format!("/api/host-groups/{gid}/members"),
            &token,
            &json!({"host_ids": [uuid::Uuid::new_v4()]}),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (422, "unknown_host"));
    assert_eq!(app.get(&format!("/api/host-groups/{gid}"), &token).await.json["member_count"], 1);
    assert_eq!(app.get(&format!("/api/hosts?group_id={gid}"), &token).await.json["total"], 1);
    assert_eq!(
        app.request("DELETE", &format!("/api/host-groups/{gid}/members/{host}"), Some(&token), None)
            .await
            .status,
        204
    );
    assert_eq!(app.get(&format!("/api/host-groups/{gid}/members"), &token).await.json["total"], 0);

    let now = Utc::now();
    let window = |start: TimeDelta, end: TimeDelta| json!({"starts_at": now + start, "ends_at": now + end, "reason": "patching"});
    let path = format!("/api/hosts/{host}/maintenance-windows");
    let ok = app.post(&path, &token, &window(TimeDelta::hours(1), TimeDelta::hours(3))).await;
    assert_eq!(ok.status, 201, "{:?}", ok.json);
    for bad in [
        window(TimeDelta::hours(3), TimeDelta::hours(1)),
        window(TimeDelta::hours(-5), TimeDelta::hours(-1)),
        window(TimeDelta::hours(1), TimeDelta::days(40)),
    ] {
        assert_eq!(app.post(&path, &token, &bad).await.code(), "invalid_window");
    }
    assert_eq!(app.get(&path, &token).await.json["total"], 1);
    let wid = ok.json["id"].as_str().unwrap();
    assert_eq!(app.request("DELETE", &format!("{path}/{wid}"), Some(&token), None).await.status, 204);
}
