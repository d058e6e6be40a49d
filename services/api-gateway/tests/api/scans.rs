//! Scans: requesting (hosts, groups, validation), listing, live progress from Redis,
//! cancelling, findings, and the Server-Sent Events stream.

use std::time::Duration;

use openwatch_common::access::Role;
use openwatch_common::domain::{FindingStatus, Severity};
use openwatch_common::ids::{HostGroupId, HostId, ScanId};
use openwatch_db::queries::host_groups::{self, NewHostGroup};
use openwatch_db::queries::outbox;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::compliance::{audit_count, complete_scan, count, result, sql};
use crate::helpers::TestApp;

async fn outbox_rows_for(app: &TestApp, scan: &str) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) AS n FROM outbox WHERE queue = 'scans' AND message_type = 'scan_requested' \
             AND payload->>'scan_id' = '{scan}'"
        ),
    )
    .await
}

async fn pending_outbox(app: &TestApp) -> i64 {
    outbox::pending_count(&mut app.db.pool().get().await.unwrap()).await.unwrap()
}

async fn group_of(app: &TestApp, name: &str, hosts: &[HostId]) -> HostGroupId {
    let mut conn = app.db.pool().get().await.unwrap();
    let id = HostGroupId::new();
    host_groups::insert_group(&mut conn, NewHostGroup { id, name: name.into(), description: None })
        .await
        .unwrap();
    host_groups::add_members(&mut conn, id, hosts).await.unwrap();
    id
}

async fn set_running(app: &TestApp, scan: &str) {
    sql(
        app,
        &format!("UPDATE scans SET status = 'running', started_at = now(), attempts = 1 WHERE id = '{scan}'"),
    )
    .await;
}

async fn set_progress(app: &TestApp, scan: &str, document: &str) {
    let mut conn = app.redis.pool().get().await.unwrap();
    let key = format!("{}scan:{scan}:progress", app.state.config.redis_key_prefix);
    redis::cmd("SET").arg(key).arg(document).arg("EX").arg(60).query_async::<()>(&mut conn).await.unwrap();
}

fn ids(items: &Value) -> Vec<String> {
    items.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_host_scan_is_queued_with_its_message_and_audited() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let host = app.db.insert_host("web", 22).await;

    let resp =
        app.post("/api/scans", &token, &json!({"host_ids": [host, host], "framework": "cis-debian12"})).await;
    assert_eq!(resp.status, 202, "{:?}", resp.json);
    let scan_ids = resp.json["scan_ids"].as_array().unwrap();
    assert_eq!(scan_ids.len(), 1, "a repeated host counts once");
    let scan = scan_ids[0].as_str().unwrap().to_owned();
    assert_eq!(resp.header("location"), Some(format!("/api/scans/{scan}").as_str()));

    let got = app.get(&format!("/api/scans/{scan}"), &token).await;
    assert_eq!(got.status, 200, "{:?}", got.json);
    let s = &got.json;
    assert_eq!((s["status"].as_str(), s["trigger"].as_str()), (Some("queued"), Some("manual")));
    assert_eq!(s["host_id"], host.to_string());
    assert_eq!(s["framework"], "cis-debian12");
    assert_eq!(s["requested_by"], user.id.to_string());
    assert_eq!(s["progress"], json!({"rules_done": 0, "rules_total": 0, "phase": null}));
    assert_eq!((s["started_at"].clone(), s["duration_ms"].clone()), (Value::Null, Value::Null));

    assert_eq!(outbox_rows_for(&app, &scan).await, 1);
    assert_eq!(pending_outbox(&app).await, 1);
    assert_eq!(
        count(&app, &format!("SELECT count(*) AS n FROM outbox WHERE payload->>'framework' = 'cis-debian12' AND payload->>'host_id' = '{host}'")).await,
        1
    );
    assert_eq!(audit_count(&app, "scan.request", &scan, "success").await, 1);
    let unknown = app.get(&format!("/api/scans/{}", ScanId::new()), &token).await;
    assert_eq!((unknown.status, unknown.code()), (404, "scan_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_scan_queues_one_scan_per_member() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAdmin).await;
    let hosts = [
        app.db.insert_host("g1", 22).await,
        app.db.insert_host("g2", 22).await,
        app.db.insert_host("g3", 22).await,
    ];
    let outsider = app.db.insert_host("outsider", 22).await;
    let group = group_of(&app, "web", &hosts).await;

    let resp = app.post("/api/scans", &token, &json!({"group_id": group})).await;
    assert_eq!(resp.status, 202, "{:?}", resp.json);
    assert_eq!(resp.json["scan_ids"].as_array().unwrap().len(), 3);
    assert_eq!(resp.header("location"), None, "several scans: no single location");
    assert_eq!(pending_outbox(&app).await, 3);

    let listed = app.get("/api/scans?status=queued&trigger=manual", &token).await;
    assert_eq!((listed.json["total"].as_u64(), listed.header("x-total-count")), (Some(3), Some("3")));
    let mut scanned: Vec<String> = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host_id"].as_str().unwrap().to_owned())
        .collect();
    scanned.sort();
    let mut expected: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(scanned, expected);
    assert!(!scanned.contains(&outsider.to_string()));
    for listed_id in ids(&listed.json["items"]) {
        assert_eq!(outbox_rows_for(&app, &listed_id).await, 1);
    }

    let empty = group_of(&app, "empty", &[]).await;
    let resp = app.post("/api/scans", &token, &json!({"group_id": empty})).await;
    assert_eq!((resp.status, resp.code()), (422, "no_hosts"));
    let resp = app.post("/api/scans", &token, &json!({"group_id": HostGroupId::new()})).await;
    assert_eq!((resp.status, resp.code()), (422, "unknown_group"));
    assert_eq!(pending_outbox(&app).await, 3, "refused requests write nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_requests_are_validated_and_refusals_write_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, guest) = app.user_with_token(Role::Guest).await;
    let host = app.db.insert_host("web", 22).await;
    let group = group_of(&app, "g", &[host]).await;
    let many: Vec<String> = (0..1001).map(|_| HostId::new().to_string()).collect();
    let cases = [
        (json!({}), 400, "invalid_target"),
        (json!({"host_ids": []}), 400, "invalid_target"),
        (json!({"host_ids": [host], "group_id": group}), 400, "invalid_target"),
        (json!({"host_ids": many}), 400, "too_many_hosts"),
        (json!({"host_ids": ["not-a-uuid"]}), 400, "invalid_body"),
        (json!({"host_ids": [host], "priority": 1}), 400, "invalid_body"),
        (json!({"host_ids": [host], "framework": "../../etc/passwd"}), 400, "invalid_framework"),
        (json!({"host_ids": [host], "framework": "CIS"}), 400, "invalid_framework"),
        (json!({"host_ids": [host], "framework": "cis-nowhere"}), 422, "unknown_framework"),
        (json!({"host_ids": [host, HostId::new()]}), 422, "unknown_host"),
    ];
    for (body, status, code) in cases {
        let resp = app.post("/api/scans", &token, &body).await;
        assert_eq!((resp.status, resp.code()), (status, code), "{body}");
    }
    assert_eq!(pending_outbox(&app).await, 0);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM scans").await, 0);

    let denied = app.post("/api/scans", &guest, &json!({"host_ids": [host]})).await;
    assert_eq!((denied.status, denied.code()), (403, "permission_denied"));
    assert_eq!(app.get("/api/scans", &guest).await.status, 200, "guests may read scans");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_is_cancelled_once_and_the_list_filters_and_orders() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, auditor) = app.user_with_token(Role::Auditor).await;
    let web = app.db.insert_host("web", 22).await;
    let db = app.db.insert_host("db", 22).await;
    let first = app.post("/api/scans", &token, &json!({"host_ids": [web]})).await.json["scan_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.post("/api/scans", &token, &json!({"host_ids": [db]})).await.json["scan_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let denied = app.post(&format!("/api/scans/{first}/cancel"), &auditor, &json!({})).await;
    assert_eq!((denied.status, denied.code()), (403, "permission_denied"));
    let cancelled = app.post(&format!("/api/scans/{first}/cancel"), &token, &json!({})).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.json);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["failure_reason"], "cancelled by user");
    assert!(cancelled.json["finished_at"].is_string());
    let again = app.post(&format!("/api/scans/{first}/cancel"), &token, &json!({})).await;
    assert_eq!((again.status, again.code()), (409, "scan_not_cancellable"));
    let unknown = app.post(&format!("/api/scans/{}/cancel", ScanId::new()), &token, &json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "scan_not_found"));
    assert_eq!(audit_count(&app, "scan.cancel", &first, "success").await, 1);

    let newest_first = app.get("/api/scans", &auditor).await;
    assert_eq!(ids(&newest_first.json["items"]), [second.as_str(), first.as_str()]);
    let oldest_first = app.get("/api/scans?order=asc&limit=1", &auditor).await;
    assert_eq!(
        (ids(&oldest_first.json["items"]), oldest_first.json["total"].as_u64()),
        (vec![first.clone()], Some(2))
    );
    let by_host = app.get(&format!("/api/scans?host_id={db}"), &auditor).await;
    assert_eq!(ids(&by_host.json["items"]), [second.as_str()]);
    let by_status = app.get("/api/scans?status=cancelled", &auditor).await;
    assert_eq!(ids(&by_status.json["items"]), [first.as_str()]);
    assert_eq!(app.get("/api/scans?trigger=scheduled", &auditor).await.json["total"], 0);
    let future =
        (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(app.get(&format!("/api/scans?since={future}"), &auditor).await.json["total"], 0);
    assert_eq!(app.get(&format!("/api/scans?until={future}"), &auditor).await.json["total"], 2);
    for query in ["status=paused", "order=sideways", "since=yesterday", "host_id=42"] {
        let resp = app.get(&format!("/api/scans?{query}"), &auditor).await;
        assert_eq!((resp.status, resp.code()), (400, "invalid_query"), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_are_listed_with_evidence_and_filters() {
    use FindingStatus::{Error, Fail, Pass};
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let (_, guest) = app.user_with_token(Role::Guest).await;
    let (host, scan) = app.db.insert_queued_scan().await;
    complete_scan(
        &app,
        scan,
        host,
        vec![
            result("r1", Pass, Severity::High, &["cis-debian12"]),
            result("r2", Fail, Severity::Critical, &["cis-debian12"]),
            result("r3", Fail, Severity::Low, &[]),
            result("r4", Error, Severity::Medium, &[]),
        ],
    )
    .await;

    let got = app.get(&format!("/api/scans/{scan}"), &token).await;
    assert_eq!(got.json["status"], "completed");
    assert!((got.json["score"].as_f64().unwrap() - 100.0 / 3.0).abs() < 1e-9, "{:?}", got.json);
    assert_eq!(got.json["progress"], json!({"rules_done": 4, "rules_total": 4, "phase": null}));
    assert!(got.json["duration_ms"].as_i64().unwrap() >= 2000, "{:?}", got.json);

    let all = app.get(&format!("/api/scans/{scan}/findings"), &token).await;
    assert_eq!(all.status, 200, "{:?}", all.json);
    assert_eq!((all.json["total"].as_u64(), all.header("x-total-count")), (Some(4), Some("4")));
    let r2 = &all.json["items"][1];
    assert_eq!(
        (r2["rule_id"].as_str(), r2["status"].as_str(), r2["severity"].as_str()),
        (Some("r2"), Some("fail"), Some("critical"))
    );
    assert_eq!(
        r2["evidence"],
        json!({"source": "/etc/r2", "excerpt": "r2 = x", "expected": "y", "actual": "x"})
    );
    assert_eq!(r2["frameworks"], json!({"cis-debian12": ["1.1"]}));
    assert_eq!(
        (r2["excepted"].as_bool(), r2["scan_id"].as_str()),
        (Some(false), Some(scan.to_string().as_str()))
    );
    assert_eq!(all.json["items"][3]["reason"], "probe failed");

    let rules = |resp: &crate::helpers::Resp| -> Vec<String> {
        resp.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let failing = app.get(&format!("/api/scans/{scan}/findings?status=fail"), &token).await;
    assert_eq!(rules(&failing), ["r2", "r3"]);
    let critical = app.get(&format!("/api/scans/{scan}/findings?severity=critical"), &token).await;
    assert_eq!(rules(&critical), ["r2"]);
    let one = app.get(&format!("/api/scans/{scan}/findings?rule_id=r4&status=error"), &token).await;
    assert_eq!(rules(&one), ["r4"]);
    let page = app.get(&format!("/api/scans/{scan}/findings?limit=2&offset=2"), &token).await;
    assert_eq!(
        (rules(&page), page.json["total"].as_u64()),
        (vec!["r3".to_owned(), "r4".to_owned()], Some(4))
    );
    let none = app.get(&format!("/api/scans/{scan}/findings?rule_id=nothing"), &token).await;
    assert_eq!((none.status, none.json["total"].as_u64()), (200, Some(0)));

    let bad = app.get(&format!("/api/scans/{scan}/findings?severity=urgent"), &token).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));
    let unknown = app.get(&format!("/api/scans/{}/findings", ScanId::new()), &token).await;
    assert_eq!((unknown.status, unknown.code()), (404, "scan_not_found"));
    let denied = app.get(&format!("/api/scans/{scan}/findings"), &guest).await;
    assert_eq!((denied.status, denied.code()), (403, "permission_denied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_scan_shows_the_workers_live_progress() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::Guest).await;
    let (_, queued) = app.db.insert_queued_scan().await;
    let (_, running) = app.db.insert_queued_scan().await;
    let (running, queued) = (running.to_string(), queued.to_string());
    set_running(&app, &running).await;

    // Running but no progress written yet: the stored progress.
    let got = app.get(&format!("/api/scans/{running}"), &token).await;
    assert_eq!(got.json["progress"], json!({"rules_done": 0, "rules_total": 0, "phase": null}));

    set_progress(
        &app,
        &running,
        r#"{"status":"running","phase":"evaluating","rules_done":7,"rules_total":20,"updated_at":"2026-11-28T12:00:00Z"}"#,
    )
    .await;
    let got = app.get(&format!("/api/scans/{running}"), &token).await;
    assert_eq!(got.json["status"], "running");
    assert_eq!(got.json["attempts"], 1);
    assert_eq!(got.json["progress"], json!({"rules_done": 7, "rules_total": 20, "phase": "evaluating"}));
    let listed = app.get("/api/scans?status=running", &token).await;
    assert_eq!(listed.json["items"][0]["progress"]["phase"], "evaluating");

    // A progress key of a scan that is not running is ignored.
    set_progress(
        &app,
        &queued,
        r#"{"status":"running","phase":"collecting","rules_done":1,"rules_total":2}"#,
    )
    .await;
    let got = app.get(&format!("/api/scans/{queued}"), &token).await;
    assert_eq!(got.json["progress"]["phase"], Value::Null);

    // Something unreadable in Redis is ignored rather than failing the request.
    set_progress(&app, &running, "not json").await;
    let got = app.get(&format!("/api/scans/{running}"), &token).await;
    assert_eq!((got.status, got.json["progress"]["rules_done"].as_u64()), (200, Some(0)));
}

/// An open SSE connection on which events are read as they come.
struct EventStream {
    stream: TcpStream,
    text: String,
    ended: bool,
}

impl EventStream {
    async fn open(app: &TestApp, path: &str, token: &str) -> Self {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            app.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        Self { stream, text: String::new(), ended: false }
    }

    /// Reads until `done(text so far)` holds or the server closes the stream; fails after
    /// 20 s without getting there.
    async fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !done(&self.text) && !self.ended {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no matching event within 20 s; got:\n{}", self.text))
                .unwrap();
            if n == 0 {
                self.ended = true;
            }
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// The `data` of every `status` event so far, parsed.
    fn statuses(&self) -> Vec<Value> {
        self.text
            .split("event: status\ndata: ")
            .skip(1)
            .map(|rest| serde_json::from_str(rest.split('\n').next().unwrap()).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_follows_a_scan_until_it_ends() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SecurityAnalyst).await;
    let host = app.db.insert_host("web", 22).await;
    let scan = app.post("/api/scans", &token, &json!({"host_ids": [host]})).await.json["scan_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let mut events = EventStream::open(&app, &format!("/api/scans/{scan}/events"), &token).await;
    events.read_until(|t| t.contains("\"status\":\"queued\"")).await;
    let head = events.text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_eq!(events.statuses()[0]["id"], scan);

    // The worker starts it and reports progress: an event with the live progress.
    set_running(&app, &scan).await;
    set_progress(&app, &scan, r#"{"status":"running","phase":"collecting","rules_done":0,"rules_total":5}"#)
        .await;
    events.read_until(|t| t.contains("\"phase\":\"collecting\"")).await;
    set_progress(&app, &scan, r#"{"status":"running","phase":"evaluating","rules_done":3,"rules_total":5}"#)
        .await;
    events.read_until(|t| t.contains("\"rules_done\":3")).await;

    let cancelled = app.post(&format!("/api/scans/{scan}/cancel"), &token, &json!({})).await;
    assert_eq!(cancelled.status, 200);
    // The terminal event arrives, then the server ends the stream.
    events.read_until(|_| false).await;
    assert!(events.ended);
    let statuses = events.statuses();
    let seen: Vec<&str> = statuses.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(seen.first(), Some(&"queued"));
    assert_eq!(seen.last(), Some(&"cancelled"), "{}", events.text);
    assert!(seen.contains(&"running"));
    let last = statuses.last().unwrap();
    assert_eq!(
        (last["failure_reason"].as_str(), last["progress"]["phase"].clone()),
        (Some("cancelled by user"), Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_of_a_finished_scan_ends_after_one_event_and_bad_requests_are_refused() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::Guest).await;
    let (host, scan) = app.db.insert_queued_scan().await;
    complete_scan(&app, scan, host, vec![result("r1", FindingStatus::Pass, Severity::Low, &[])]).await;

    let mut events = EventStream::open(&app, &format!("/api/scans/{scan}/events"), &token).await;
    events.read_until(|_| false).await;
    let statuses = events.statuses();
    assert_eq!(statuses.len(), 1, "{}", events.text);
    assert_eq!(
        (statuses[0]["status"].as_str(), statuses[0]["score"].as_f64()),
        (Some("completed"), Some(100.0))
    );

    // A queued scan that does not change: the stream ends after `max_secs`.
    let (_, queued) = app.db.insert_queued_scan().await;
    let mut events = EventStream::open(&app, &format!("/api/scans/{queued}/events?max_secs=1"), &token).await;
    events.read_until(|_| false).await;
    assert_eq!(events.statuses().len(), 1, "{}", events.text);
    assert_eq!(events.statuses()[0]["status"], "queued");

    for (query, status, code) in [
        ("?max_secs=0", 400, "invalid_max_secs"),
        ("?max_secs=3601", 400, "invalid_max_secs"),
        ("?max_secs=x", 400, "invalid_query"),
    ] {
        let resp = app.get(&format!("/api/scans/{scan}/events{query}"), &token).await;
        assert_eq!((resp.status, resp.code()), (status, code), "{query}");
    }
    let unknown = app.get(&format!("/api/scans/{}/events", ScanId::new()), &token).await;
    assert_eq!((unknown.status, unknown.code()), (404, "scan_not_found"));
}
