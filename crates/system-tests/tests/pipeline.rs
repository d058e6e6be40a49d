//! HTTP to findings through the queues: api-gateway (with its outbox relay), scan-worker and
//! result-processor as processes; a real sshd target on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::Ipv4Addr;
use std::time::Duration;

use openwatch_system_tests::{Stack, binary};
use openwatch_test_support::proxy::ProxyMode;
use openwatch_test_support::service::{Dependency, HeldLock};
use openwatch_test_support::ssh::TestSshd;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn http_to_findings_for_one_host_and_a_group_of_three() {
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
    assert_eq!(now_view["total"].as_u64(), Some(items.len() as u64));
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
async fn a_changed_setting_drifts_and_alerts_then_drifts_back_and_resolves() {
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
async fn a_worker_killed_mid_scan_is_replaced_and_the_scan_completes_once() {
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
async fn scans_finish_after_a_broker_outage() {
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
    proxy.set_mode(ProxyMode::Refuse);
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": hosts}))).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_mode(ProxyMode::Forward);
    for id in requested["scan_ids"].as_array().unwrap() {
        let done = stack.wait_finished(id.as_str().unwrap()).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    stack.worker = Some(worker);
}

/// PostgreSQL is unreachable for the result-processor for 10 s while a result arrives: the
/// message is retried, and once the database is back the result is stored, nothing lost.
/// Retries are bounded (`OPENWATCH_MQ_MAX_ATTEMPTS` × `OPENWATCH_MQ_RETRY_DELAY_MS`, 5 × 5 s
/// by default); the test stack retries every 200 ms, so it allows 100 attempts here for the
/// outage to fit in the retry budget, as the defaults do. A longer
/// outage dead-letters the result into `openwatch.results.dead`, kept for re-drive.
#[tokio::test(flavor = "multi_thread")]
async fn results_survive_a_ten_second_database_outage() {
    let mut stack = Stack::gateway_only_with(&[("OPENWATCH_MQ_MAX_ATTEMPTS", "100")]).await;
    let processor =
        stack.harness.start_other_proxied(&binary("openwatch-result-processor"), Dependency::Postgres).await;
    let worker = stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await;
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 68)).await;
    let host = stack.register("db-outage", &sshd).await;
    let proxy = processor.proxy.as_ref().unwrap();
    proxy.set_mode(ProxyMode::Refuse);
    let (_, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": [host]}))).await;
    let scan = requested["scan_ids"][0].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, during) = stack.call("GET", &format!("/api/scans/{scan}"), None).await;
    assert_ne!(during["status"], "completed", "nothing can be stored while the database is away");
    proxy.set_mode(ProxyMode::Forward);
    let done = stack.wait_finished_or(&scan, &[&worker, &processor]).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (findings, rules) = findings_count(&stack, &scan).await;
    assert_eq!(findings, rules);
    stack.processor = Some(processor);
    stack.worker = Some(worker);
}
