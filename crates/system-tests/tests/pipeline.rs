//! The scan pipeline end to end: api-gateway (with its outbox relay), scan-worker,
//! result-processor and maintenance as processes over one test database, broker prefix and
//! Redis prefix; real sshd targets on their own 127.0.0.x. Outages are simulated with a
//! `TcpProxy` in front of one service's dependency, never by stopping the shared servers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::Ipv4Addr;
use std::time::Duration;

use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use openwatch_common::queues::QueueName;
use openwatch_system_tests::{Stack, binary};
use openwatch_test_support::database::TestDatabase;
use openwatch_test_support::prometheus;
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{Dependency, HeldLock, RunningService};
use openwatch_test_support::ssh::TestSshd;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn http_to_findings() {
    let stack = Stack::start().await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 61)).await;
    let host = stack.register("target-one", &sshd).await;

    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    assert_eq!(status, 202, "{requested}");
    let scan_id = requested["scan_ids"][0].as_str().unwrap().to_owned();
    let scan = stack.wait_finished(&scan_id).await;
    assert_eq!(scan["status"], "completed", "{scan}");
    assert!(scan["score"].as_f64().is_some(), "{scan}");

    let (_, findings) = stack.call("GET", &format!("/api/scans/{scan_id}/findings?limit=500"), None).await;
    let items = findings["items"].as_array().unwrap();
    assert!(items.len() > 100, "{} findings", items.len());
    assert!(items.iter().all(|f| f["evidence"]["source"].as_str().is_some_and(|s| !s.is_empty())));
    assert!(items.iter().any(|f| f["status"] == "pass") && items.iter().any(|f| f["status"] == "fail"));
    let (_, now_view) = stack.call("GET", &format!("/api/hosts/{host}/rules?limit=1"), None).await;
    // One finding per rule (the corpus holds more than one page of them).
    let total = findings["total"].as_u64().unwrap();
    assert!(total >= items.len() as u64, "{total}");
    assert_eq!(now_view["total"].as_u64(), Some(total));
    let (_, keys) = stack.call("GET", &format!("/api/known-hosts?host_id={host}"), None).await;
    assert_eq!(keys["items"][0]["status"], "trusted", "TOFU recorded the host key: {keys}");
    assert_eq!(keys["items"][0]["fingerprint_sha256"], sshd.host_key_fingerprint().as_str());
    let (_, host_now) = stack.call("GET", &format!("/api/hosts/{host}"), None).await;
    assert_ne!(host_now["compliance_state"], "unknown", "{host_now}");

    // A group of three hosts: one scan each.
    let targets = [
        TestSshd::start(Ipv4Addr::new(127, 0, 0, 62)).await,
        TestSshd::start(Ipv4Addr::new(127, 0, 0, 63)).await,
        TestSshd::start(Ipv4Addr::new(127, 0, 0, 64)).await,
    ];
    let mut members = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        members.push(stack.register(&format!("group-member-{i}"), target).await);
    }
    let (_, group) = stack.call("POST", "/api/host-groups", Some(json!({"name": "three"}))).await;
    let group_id = group["id"].as_str().unwrap();
    let (status, _) = stack
        .call("POST", &format!("/api/host-groups/{group_id}/members"), Some(json!({"host_ids": members})))
        .await;
    assert_eq!(status, 200);
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"group_id": group_id}))).await;
    assert_eq!(status, 202, "{requested}");
    let ids = requested["scan_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 3);
    for id in ids {
        let scan = stack.wait_finished(id.as_str().unwrap()).await;
        assert_eq!(scan["status"], "completed", "{scan}");
    }
    let (_, posture) = stack.call("GET", "/api/compliance/posture", None).await;
    assert!(posture["score"].as_f64().is_some(), "{posture}");
}

/// Puts a file's mode back when the test ends, pass or fail.
struct RestoreMode {
    path: &'static str,
    mode: u32,
}

impl Drop for RestoreMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

async fn scan_and_wait(stack: &Stack, host: &str) -> String {
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    assert_eq!(status, 202, "{requested}");
    let id = requested["scan_ids"][0].as_str().unwrap().to_owned();
    let scan = stack.wait_finished(&id).await;
    assert_eq!(scan["status"], "completed", "{scan}");
    id
}

async fn rule_status(stack: &Stack, scan: &str, rule: &str) -> String {
    let (_, findings) = stack.call("GET", &format!("/api/scans/{scan}/findings?rule_id={rule}"), None).await;
    findings["items"][0]["status"].as_str().unwrap_or("missing").to_owned()
}

/// A setting changed on the target between two scans gives a drift event and an alert;
/// fixing it gives the drift back and resolves the alert. The setting: group write on
/// `/etc/shadow-` (mode 0660, never world-readable), which the high-severity rule
/// `file_permissions_backup_etc_shadow` refuses; the mode is restored on drop.
#[tokio::test(flavor = "multi_thread")]
async fn drift_and_alert_on_a_changed_setting() {
    use std::os::unix::fs::PermissionsExt as _;
    const FILE: &str = "/etc/shadow-";
    const RULE: &str = "file_permissions_backup_etc_shadow";
    let Ok(meta) = std::fs::metadata(FILE) else {
        panic!("{FILE} is expected on a Debian test machine");
    };
    let original = meta.permissions().mode() & 0o7777;
    assert_eq!(original & 0o137, 0, "{FILE} must start compliant (mode {original:o})");
    let stack = Stack::start().await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 65)).await;
    let host = stack.register("drifting", &sshd).await;

    let first = scan_and_wait(&stack, &host).await;
    assert_eq!(rule_status(&stack, &first, RULE).await, "pass");

    let guard = RestoreMode { path: FILE, mode: original };
    std::fs::set_permissions(FILE, std::fs::Permissions::from_mode(0o660)).unwrap();
    let second = scan_and_wait(&stack, &host).await;
    assert_eq!(rule_status(&stack, &second, RULE).await, "fail");
    let (_, drift) =
        stack.call("GET", &format!("/api/compliance/drift?host_id={host}&rule_id={RULE}"), None).await;
    assert_eq!(drift["items"][0]["previous_status"], "pass", "{drift}");
    assert_eq!(drift["items"][0]["current_status"], "fail", "{drift}");
    let alerts_path = format!("/api/alerts?host_id={host}&alert_type=rule_failed");
    let (_, alerts) = stack.call("GET", &alerts_path, None).await;
    let alert = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule_id"] == RULE)
        .cloned()
        .expect("rule_failed alert");
    assert_eq!(alert["status"], "open");

    drop(guard);
    let third = scan_and_wait(&stack, &host).await;
    assert_eq!(rule_status(&stack, &third, RULE).await, "pass");
    let (_, drift) = stack
        .call("GET", &format!("/api/compliance/drift?host_id={host}&rule_id={RULE}&direction=improved"), None)
        .await;
    assert_eq!(drift["items"][0]["current_status"], "pass", "{drift}");
    let (_, after) = stack.call("GET", &format!("/api/alerts/{}", alert["id"].as_str().unwrap()), None).await;
    assert_eq!(after["status"], "resolved", "{after}");
}

async fn findings_count(stack: &Stack, scan: &str) -> (u64, u64) {
    let (_, found) = stack.call("GET", &format!("/api/scans/{scan}/findings?limit=1"), None).await;
    let (_, detail) = stack.call("GET", &format!("/api/scans/{scan}"), None).await;
    (found["total"].as_u64().unwrap_or(0), detail["progress"]["rules_total"].as_u64().unwrap_or(u64::MAX))
}

/// The worker dies (SIGKILL) while a scan is in flight — held behind a lock on
/// `ssh_known_hosts`, where the worker records the host key on first contact. RabbitMQ
/// redelivers the unacknowledged message to a new worker: the scan completes exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn worker_killed_mid_scan_is_redelivered_and_completes_once() {
    let mut stack = Stack::gateway_only().await;
    stack.processor = Some(stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await);
    let mut first_worker = stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 66)).await;
    let host = stack.register("crash-target", &sshd).await;

    let mut lock =
        HeldLock::acquire(stack.harness.database(), "LOCK TABLE ssh_known_hosts IN EXCLUSIVE MODE").await;
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    assert_eq!(status, 202);
    let scan = requested["scan_ids"][0].as_str().unwrap().to_owned();
    lock.wait_for_waiter(stack.harness.database()).await;
    let (_, running) = stack.call("GET", &format!("/api/scans/{scan}"), None).await;
    assert_eq!(running["status"], "running", "{running}");
    first_worker.process.kill().await;

    stack.worker = Some(stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await);
    lock.release().await;
    let done = stack.wait_finished(&scan).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let (findings, rules) = findings_count(&stack, &scan).await;
    assert_eq!(findings, rules, "one finding per rule, no duplicates");
}

/// RabbitMQ becomes unreachable for the worker (a proxy stands in for a broker restart,
/// so the shared broker of the other tests is left alone) while scans are queued: the worker
/// reconnects and every scan finishes.
#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_during_scans() {
    let mut stack = Stack::gateway_only().await;
    stack.processor = Some(stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await);
    let worker =
        stack.harness.start_other_proxied(&binary("openwatch-scan-worker"), Dependency::RabbitMq).await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 67)).await;
    let mut hosts = Vec::new();
    for i in 0..5 {
        hosts.push(stack.register(&format!("broker-outage-{i}"), &sshd).await);
    }
    let proxy = worker.proxy.as_ref().unwrap();
    // Refuse also closes the worker's open AMQP connection, as a broker going down would.
    proxy.set_mode(ProxyMode::Refuse);
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": hosts}))).await;
    assert_eq!(status, 202);
    // The outage lasts a fixed few seconds on purpose (it is the scenario, not a sync point).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, during) = stack.call("GET", "/api/scans?status=completed&limit=10", None).await;
    assert_eq!(during["total"], 0, "no scan can run while the worker has no broker: {during}");
    let accepted_before = proxy.accepted();
    proxy.set_mode(ProxyMode::Forward);
    for id in requested["scan_ids"].as_array().unwrap() {
        let done = stack.wait_finished(id.as_str().unwrap()).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert!(proxy.accepted() > accepted_before, "the worker reconnected through the proxy");
    stack.worker = Some(worker);
}

/// PostgreSQL is unreachable for the result-processor for 10 s while a result arrives: the
/// message is retried, and once the database is back the result is stored, nothing lost.
/// Retries are bounded (`OPENWATCH_MQ_MAX_ATTEMPTS` × `OPENWATCH_MQ_RETRY_DELAY_MS`, 5 × 5 s
/// by default); the test stack retries every 200 ms, so it allows 100 attempts here for the
/// outage to fit in the retry budget, as the defaults do. A longer
/// outage dead-letters the result into `openwatch.results.dead`, kept for re-drive.
#[tokio::test(flavor = "multi_thread")]
async fn database_outage_result_processor_retries() {
    let mut stack = Stack::gateway_only_with(&[("OPENWATCH_MQ_MAX_ATTEMPTS", "100")]).await;
    let processor =
        stack.harness.start_other_proxied(&binary("openwatch-result-processor"), Dependency::Postgres).await;
    let worker = stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 68)).await;
    let host = stack.register("db-outage", &sshd).await;
    let proxy = processor.proxy.as_ref().unwrap();
    proxy.set_mode(ProxyMode::Refuse);
    let outage = std::time::Instant::now();
    let (_, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    let scan = requested["scan_ids"][0].as_str().unwrap().to_owned();
    // The result reaches the processor during the outage and is sent to the retry queue...
    wait_results_settled(&processor, "retried", 1.0).await;
    // ...and the outage then lasts its ~10 s (the scenario, not a sync point).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    let (_, during) = stack.call("GET", &format!("/api/scans/{scan}"), None).await;
    assert_ne!(during["status"], "completed", "nothing can be stored while the database is away");
    proxy.set_mode(ProxyMode::Forward);
    let done = stack.wait_finished_or(&scan, &[&worker, &processor]).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (findings, rules) = findings_count(&stack, &scan).await;
    assert_eq!(findings, rules);
    assert_eq!(results_settled(&processor, "dead_lettered").await, 0.0, "nothing lost");
    stack.processor = Some(processor);
    stack.worker = Some(worker);
}

/// Rows of `table` whose `column` is `id`.
async fn count_rows(db: &TestDatabase, table: &str, column: &str, id: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let row: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table} WHERE {column} = $1"))
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(id).unwrap())
        .get_result(&mut conn)
        .await
        .unwrap();
    row.n
}

/// What one result produced for `host`: findings of `scan`, rule state, drift events,
/// alerts and posture snapshots.
async fn result_rows(db: &TestDatabase, host: &str, scan: &str) -> [i64; 5] {
    [
        count_rows(db, "scan_findings", "scan_id", scan).await,
        count_rows(db, "host_rule_state", "host_id", host).await,
        count_rows(db, "drift_events", "host_id", host).await,
        count_rows(db, "alerts", "host_id", host).await,
        count_rows(db, "posture_snapshots", "host_id", host).await,
    ]
}

/// Results `processor` settled with `outcome` so far.
async fn results_settled(processor: &RunningService, outcome: &str) -> f64 {
    let samples = processor.metrics().await;
    prometheus::value(
        &samples,
        "openwatch_mq_messages_consumed_total",
        &[("queue", QueueName::Results.as_str()), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// Waits until `processor` has settled `count` results with `outcome` (`acked`, `retried`,
/// `dead_lettered`), at most 60 s.
async fn wait_results_settled(processor: &RunningService, outcome: &str, count: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while results_settled(processor, outcome).await < count {
        assert!(
            std::time::Instant::now() < deadline,
            "result-processor {outcome} {} results, expected {count}:\n{}",
            results_settled(processor, outcome).await,
            processor.process.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker's real `ScanCompletedV1` is taken off the `results` queue and published twice
/// (same body, same message id and headers, as a redelivery or a publisher retry gives),
/// both ready before the result-processor starts, so they may be processed concurrently;
/// a third copy arrives after the scan is recorded. Every copy is acknowledged, none is
/// dead-lettered, and the rows are those of one result.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_results_are_absorbed() {
    let mut stack = Stack::gateway_only().await;
    stack.worker = Some(stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await);
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 69)).await;
    let host = stack.register("duplicated", &sshd).await;
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    assert_eq!(status, 202, "{requested}");
    let scan = requested["scan_ids"][0].as_str().unwrap().to_owned();

    let broker = stack.harness.broker();
    let results_queue = broker.queue(QueueName::Results);
    let (body, properties) = broker
        .get_message(&results_queue, Duration::from_secs(120))
        .await
        .expect("the worker published the scan's result");
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["scan_id"], scan.as_str());
    let results = message["results"].as_array().unwrap().len() as i64;
    assert!(results > 100, "{results} results");
    broker.publish_raw_with(QueueName::Results, &body, properties.clone()).await;
    broker.publish_raw_with(QueueName::Results, &body, properties.clone()).await;

    let processor = stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await;
    let done = stack.wait_finished_or(&scan, &[&processor]).await;
    assert_eq!(done["status"], "completed", "{done}");
    wait_results_settled(&processor, "acked", 2.0).await;
    let once = result_rows(stack.harness.database(), &host, &scan).await;
    assert_eq!(once[0], results, "one finding per result");
    assert_eq!(once[1], results, "one rule state per rule");

    broker.publish_raw_with(QueueName::Results, &body, properties).await;
    wait_results_settled(&processor, "acked", 3.0).await;
    assert_eq!(
        result_rows(stack.harness.database(), &host, &scan).await,
        once,
        "the late copy changed nothing"
    );
    assert_eq!(broker.queue_depth(&broker.dead_queue(QueueName::Results)).await, 0);
    let (_, scans) = stack.call("GET", &format!("/api/scans?host_id={host}"), None).await;
    assert_eq!(scans["total"], 1, "{scans}");
    stack.processor = Some(processor);
}

/// maintenance's dispatcher finds a newly registered host due (`next_scan_at` defaults to
/// now) and queues one `scheduled` scan through `compliance_scanning`; it completes through
/// the same worker and result-processor. The host's next scan is then in the future (the
/// dispatch lease, then the result's schedule), so later 1 s rounds do not scan it again.
#[tokio::test(flavor = "multi_thread")]
async fn maintenance_dispatches_a_scheduled_scan_once() {
    let mut stack = Stack::gateway_only_with(&[("OPENWATCH_DISPATCH_INTERVAL_SECS", "1")]).await;
    stack.worker = Some(stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await);
    stack.processor = Some(stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await);
    let maintenance = stack.harness.start_other_healthy(&binary("openwatch-maintenance")).await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 70)).await;
    let host = stack.register("scheduled", &sshd).await;

    let path = format!("/api/scans?host_id={host}&trigger=scheduled");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let scan = loop {
        let (_, scans) = stack.call("GET", &path, None).await;
        if let Some(id) = scans["items"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled scan:\n{}", maintenance.process.output());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let done = stack.wait_finished(&scan).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["trigger"], "scheduled", "{done}");
    let (_, host_now) = stack.call("GET", &format!("/api/hosts/{host}"), None).await;
    let next = host_now["next_scan_at"].as_str().unwrap_or_else(|| panic!("next_scan_at: {host_now}"));
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    assert!(next > chrono::Utc::now(), "the next scan is in the future: {host_now}");
    // A negative claim needs time to pass: let the dispatcher run a few more 1 s rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, scans) = stack.call("GET", &format!("/api/scans?host_id={host}"), None).await;
    assert_eq!(scans["total"], 1, "exactly one scan for the host: {scans}");
    let dispatched: f64 = maintenance
        .metrics()
        .await
        .iter()
        .filter(|s| s.name == "openwatch_scans_dispatched_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(dispatched, 1.0);
}
