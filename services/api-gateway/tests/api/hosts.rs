//! Hosts, CSV import, groups and maintenance windows.

use chrono::{TimeDelta, Utc};
use diesel_async::RunQueryDsl;
use openwatch_common::access::Role;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp, send};

/// Audit rows with this action.
async fn audit_count(app: &TestApp, action: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db.pool().get().await.unwrap();
    let rows: Vec<Count> =
        diesel::sql_query(format!("SELECT count(*) AS n FROM audit_events WHERE action = '{action}'"))
            .load(&mut conn)
            .await
            .unwrap();
    rows[0].n
}

/// `(status, error code)` of a response.
fn outcome(resp: &Resp) -> (u16, &str) {
    (resp.status, resp.code())
}

/// `total` and `X-Total-Count` of a list, which must agree.
fn total(resp: &Resp) -> u64 {
    assert_eq!(resp.status, 200, "{:?}", resp.json);
    let total = resp.json["total"].as_u64().unwrap();
    assert_eq!(resp.header("x-total-count"), Some(total.to_string().as_str()));
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_crud_filters_and_validation() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    for (name, address, tags) in [
        ("web-1", "10.0.0.1", vec!["web", "prod"]),
        ("web-2", "10.0.0.2", vec!["web"]),
        ("db-1", "db1.corp", vec!["db", "prod"]),
    ] {
        let created =
            app.post("/api/hosts", &token, &json!({"name": name, "address": address, "tags": tags})).await;
        assert_eq!(created.status, 201, "{:?}", created.json);
        assert_eq!((created.json["port"].as_u64(), created.json["name"].as_str()), (Some(22), Some(name)));
    }
    assert_eq!(audit_count(&app, "host.create").await, 3);
    assert_eq!(total(&app.get("/api/hosts", &token).await), 3);
    assert_eq!(total(&app.get("/api/hosts?tag=web", &token).await), 2);
    assert_eq!(total(&app.get("/api/hosts?tag=prod&q=web", &token).await), 1);
    assert_eq!(total(&app.get("/api/hosts?q=db", &token).await), 1);
    assert_eq!(total(&app.get("/api/hosts?q=10.0.0", &token).await), 2);
    assert_eq!(total(&app.get("/api/hosts?address=db1.corp", &token).await), 1);
    assert_eq!(total(&app.get("/api/hosts?compliance_state=unknown", &token).await), 3);
    assert_eq!(total(&app.get("/api/hosts?compliance_state=compliant", &token).await), 0);
    // A page holds `limit` items while the total still counts every match.
    let page = app.get("/api/hosts?tag=web&limit=1&offset=1", &token).await;
    assert_eq!((total(&page), page.json["items"].as_array().unwrap().len()), (2, 1));
    assert_eq!(page.json["items"][0]["name"], "web-2");
    let sorted = app.get("/api/hosts?sort=name&order=desc", &token).await;
    assert_eq!(sorted.json["items"][0]["name"], "web-2");
    assert_eq!(outcome(&app.get("/api/hosts?limit=501", &token).await), (400, "invalid_limit"));
    assert_eq!(app.get("/api/hosts?compliance_state=great", &token).await.status, 400);

    for (body, code) in [
        (json!({"name": "x", "address": "has space"}), "invalid_address"),
        (json!({"name": "x", "address": "10.0.0.300"}), "invalid_address"),
        (json!({"name": "x", "address": "10.0.0.9", "port": 0}), "invalid_port"),
        (json!({"name": "x", "address": "10.0.0.9", "port": 65536}), "invalid_port"),
        (json!({"name": "", "address": "10.0.0.9"}), "invalid_name"),
    ] {
        assert_eq!(outcome(&app.post("/api/hosts", &token, &body).await), (400, code), "{body}");
    }
    // Wrong JSON types are a 4xx too, never a 5xx.
    let typed =
        app.post("/api/hosts", &token, &json!({"name": "x", "address": "10.0.0.9", "port": "ssh"})).await;
    assert!((400..500).contains(&typed.status), "{}", typed.status);
    assert_eq!(
        outcome(&app.post("/api/hosts", &token, &json!({"name": "web-1", "address": "10.0.0.9"})).await),
        (409, "host_name_taken")
    );
    assert_eq!(total(&app.get("/api/hosts", &token).await), 3);

    let id =
        app.get("/api/hosts?name=web-1", &token).await.json["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/hosts/{id}");
    let patched =
        app.request("PATCH", &path, Some(&token), Some(&json!({"port": 2222, "tags": ["edge"]}))).await;
    assert_eq!((patched.json["port"].as_u64(), patched.json["tags"].clone()), (Some(2222), json!(["edge"])));
    assert_eq!(app.get(&path, &token).await.json["port"], 2222);
    let renamed = app.request("PATCH", &path, Some(&token), Some(&json!({"name": "web-2"}))).await;
    assert_eq!(outcome(&renamed), (409, "host_name_taken"));
    assert_eq!(app.get("/api/hosts/not-a-uuid", &token).await.status, 400);
    assert_eq!(app.request("DELETE", &path, Some(&token), None).await.status, 204);
    assert_eq!(outcome(&app.get(&path, &token).await), (404, "host_not_found"));
    assert_eq!(outcome(&app.request("DELETE", &path, Some(&token), None).await), (404, "host_not_found"));
    assert_eq!(audit_count(&app, "host.delete").await, 1);
}

/// `POST /api/hosts/import` with a CSV body.
async fn import(app: &TestApp, token: &str, csv: &str) -> (u16, Value) {
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
    (raw.status, serde_json::from_str(&raw.body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_import_reports_per_row_and_creates_the_valid_rows() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    app.post("/api/hosts", &token, &json!({"name": "existing", "address": "10.1.0.1"})).await;
    let csv = "Address,NAME,port,tags\n\
               10.1.0.2,\"app, primary\",22,prod;web\n\
               10.1.0.3,existing,,\n\
               \n\
               not an address,broken,,\n\
               10.1.0.4,last,2200,\n\
               10.1.0.5,last,,\n\
               10.1.0.6,badport,ssh,\n";
    let (status, report) = import(&app, &token, csv).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["created"].as_u64(), report["failed"].as_u64()), (Some(2), Some(4)), "{report}");
    let rows = report["rows"].as_array().unwrap();
    let row = |line: u64| {
        let row =
            rows.iter().find(|r| r["line"] == line).unwrap_or_else(|| panic!("no line {line}: {report}"));
        (row["status"].as_str().unwrap(), row["code"].as_str())
    };
    // Lines are physical lines of the file: the header is 1, the blank line 5 is skipped.
    assert_eq!(row(2), ("created", None));
    assert_eq!(row(3), ("error", Some("duplicate_name")));
    assert_eq!(row(5), ("error", Some("invalid_address")));
    assert_eq!(row(6), ("created", None));
    assert_eq!(row(7), ("error", Some("duplicate_name")));
    assert_eq!(row(8), ("error", Some("invalid_port")));
    assert_eq!(rows.len(), 6);

    let quoted = app.get("/api/hosts?name=app%2C%20primary", &token).await;
    assert_eq!(total(&quoted), 1);
    assert_eq!(quoted.json["items"][0]["tags"], json!(["prod", "web"]));
    let last = app.get("/api/hosts?name=last", &token).await;
    assert_eq!(
        (last.json["items"][0]["address"].as_str(), last.json["items"][0]["port"].as_u64()),
        (Some("10.1.0.4"), Some(2200))
    );
    assert_eq!(total(&app.get("/api/hosts", &token).await), 3);

    // The file as a whole is refused only when it cannot be read.
    for bad in ["", "name,adress\nx,10.0.0.1\n", "name,address\n\"open,10.0.0.1\n"] {
        let (status, body) = import(&app, &token, bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let empty =
        send(app.addr, "POST", "/api/hosts/import", Some(&token), None, &[("Content-Type", "text/csv")])
            .await;
    assert_eq!(empty.status, 400);
    let json_body = app.post("/api/hosts/import", &token, &json!({"name": "x"})).await;
    assert_eq!(json_body.status, 415);
    assert_eq!(total(&app.get("/api/hosts", &token).await), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_and_membership() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let host = app
            .post("/api/hosts", &token, &json!({"name": format!("h{i}"), "address": format!("10.2.0.{i}")}))
            .await;
        hosts.push(host.json["id"].as_str().unwrap().to_owned());
    }
    let group =
        app.post("/api/host-groups", &token, &json!({"name": "linux", "description": "all of them"})).await;
    assert_eq!(group.status, 201, "{:?}", group.json);
    let gid = group.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        outcome(&app.post("/api/host-groups", &token, &json!({"name": "linux"})).await),
        (409, "group_name_taken")
    );
    app.post("/api/host-groups", &token, &json!({"name": "windows"})).await;
    assert_eq!(total(&app.get("/api/host-groups", &token).await), 2);
    assert_eq!(total(&app.get("/api/host-groups?q=LIN", &token).await), 1);

    let members = format!("/api/host-groups/{gid}/members");
    let added = app.post(&members, &token, &json!({"host_ids": [hosts[0], hosts[1], hosts[0]]})).await;
    assert_eq!((added.status, added.json["added"].as_u64()), (200, Some(2)), "{:?}", added.json);
    // Idempotent: a host already in the group is not counted again.
    assert_eq!(app.post(&members, &token, &json!({"host_ids": [hosts[1]]})).await.json["added"], 0);
    let unknown = app.post(&members, &token, &json!({"host_ids": [hosts[2], uuid::Uuid::new_v4()]})).await;
    assert_eq!(outcome(&unknown), (422, "unknown_host"));
    let too_many: Vec<uuid::Uuid> = (0..1001).map(|_| uuid::Uuid::new_v4()).collect();
    assert_eq!(app.post(&members, &token, &json!({"host_ids": too_many})).await.status, 400);
    assert_eq!(app.post(&members, &token, &json!({"host_ids": []})).await.status, 400);
    let no_group = format!("/api/host-groups/{}/members", uuid::Uuid::new_v4());
    assert_eq!(
        outcome(&app.post(&no_group, &token, &json!({"host_ids": [hosts[2]]})).await),
        (404, "host_group_not_found")
    );
    // The refused request added nothing (h3 stays out).
    assert_eq!(app.get(&format!("/api/host-groups/{gid}"), &token).await.json["member_count"], 2);
    assert_eq!(total(&app.get(&members, &token).await), 2);
    assert_eq!(total(&app.get(&format!("/api/hosts?group_id={gid}"), &token).await), 2);
    let one = app.get(&format!("/api/hosts/{}", hosts[0]), &token).await;
    assert_eq!(one.json["group_ids"], json!([gid]));

    assert_eq!(
        app.request("DELETE", &format!("{members}/{}", hosts[0]), Some(&token), None).await.status,
        204
    );
    assert_eq!(
        outcome(&app.request("DELETE", &format!("{members}/{}", hosts[0]), Some(&token), None).await),
        (404, "not_a_member")
    );
    assert_eq!(total(&app.get(&members, &token).await), 1);
    assert_eq!(audit_count(&app, "host_group.add_members").await, 2);
    assert_eq!(audit_count(&app, "host_group.remove_member").await, 1);

    let gpath = format!("/api/host-groups/{gid}");
    let renamed = app
        .request("PATCH", &gpath, Some(&token), Some(&json!({"name": "penguins", "description": null})))
        .await;
    assert_eq!(
        (renamed.json["name"].as_str(), renamed.json["description"].as_str()),
        (Some("penguins"), None)
    );
    assert_eq!(
        outcome(&app.request("PATCH", &gpath, Some(&token), Some(&json!({"name": "windows"}))).await),
        (409, "group_name_taken")
    );
    assert_eq!(app.request("DELETE", &gpath, Some(&token), None).await.status, 204);
    assert_eq!(outcome(&app.get(&gpath, &token).await), (404, "host_group_not_found"));
    // Deleting a group keeps its hosts.
    assert_eq!(app.get(&format!("/api/hosts/{}", hosts[1]), &token).await.status, 200);
    assert_eq!(audit_count(&app, "host_group.delete").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_windows_are_validated() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let host = app.post("/api/hosts", &token, &json!({"name": "h1", "address": "10.3.0.1"})).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = Utc::now();
    let window = |start: TimeDelta, end: TimeDelta| json!({"starts_at": now + start, "ends_at": now + end, "reason": "patching"});
    let path = format!("/api/hosts/{host}/maintenance-windows");
    let ok = app.post(&path, &token, &window(TimeDelta::hours(1), TimeDelta::hours(3))).await;
    assert_eq!(ok.status, 201, "{:?}", ok.json);
    assert_eq!(ok.json["reason"], "patching");
    // Already running, and exactly 30 days long: both fine.
    let running = app
        .post(&path, &token, &window(TimeDelta::hours(-1), TimeDelta::days(30) - TimeDelta::hours(1)))
        .await;
    assert_eq!(running.status, 201, "{:?}", running.json);
    for bad in [
        window(TimeDelta::hours(3), TimeDelta::hours(1)),
        window(TimeDelta::hours(1), TimeDelta::hours(1)),
        window(TimeDelta::hours(-5), TimeDelta::hours(-1)),
        window(TimeDelta::hours(1), TimeDelta::days(30) + TimeDelta::hours(2)),
    ] {
        assert_eq!(outcome(&app.post(&path, &token, &bad).await), (422, "invalid_window"), "{bad}");
    }
    assert_eq!(app.post(&path, &token, &json!({"starts_at": "tomorrow", "ends_at": now})).await.status, 400);
    let elsewhere = format!("/api/hosts/{}/maintenance-windows", uuid::Uuid::new_v4());
    assert_eq!(
        outcome(&app.post(&elsewhere, &token, &window(TimeDelta::hours(1), TimeDelta::hours(2))).await),
        (404, "host_not_found")
    );
    assert_eq!(outcome(&app.get(&elsewhere, &token).await), (404, "host_not_found"));
    assert_eq!(total(&app.get(&path, &token).await), 2);
    assert_eq!(audit_count(&app, "host.maintenance_window.create").await, 2);

    let wid = ok.json["id"].as_str().unwrap();
    // A window is deleted only through its own host.
    assert_eq!(app.request("DELETE", &format!("{elsewhere}/{wid}"), Some(&token), None).await.status, 404);
    assert_eq!(app.request("DELETE", &format!("{path}/{wid}"), Some(&token), None).await.status, 204);
    assert_eq!(app.request("DELETE", &format!("{path}/{wid}"), Some(&token), None).await.status, 404);
    assert_eq!(total(&app.get(&path, &token).await), 1);
    assert_eq!(audit_count(&app, "host.maintenance_window.delete").await, 1);
}
