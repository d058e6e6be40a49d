//! `scan-worker` end to end: the real binary against real PostgreSQL, RabbitMQ, Redis and
//! a real sshd per test (its own 127.0.0.6x address). A test writes a host, a sealed
//! credential and a queued scan, publishes `ScanRequestedV1`, and reads what the worker
//! published to `results`.
//!
//! "Nothing was published" is asserted without sleeping: the worker runs with concurrency 1
//! on one queue, so after the request under test a *marker* request (a scan of a host
//! without a credential, which fails at once) is handled strictly after it; the next result
//! must be the marker's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use openwatch_common::access::Role;
use openwatch_common::domain::{FindingStatus, ScanStatus, ScanTrigger};
use openwatch_common::ids::{CredentialId, HostId, ScanId, UserId};
use openwatch_common::messages::v1::{ScanCompletedV1, ScanRequestedV1};
use openwatch_common::queues::QueueName;
use openwatch_db::queries::credentials::{self, AuthMethod, CredentialScope, NewCredential};
use openwatch_db::queries::hosts::{self, HostChangeset, NewHost};
use openwatch_db::queries::known_hosts::{self, KnownHostStatus};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::queries::users::{self, NewUser};
use openwatch_db::{AsyncConnection, DbError, PooledConnection};
use openwatch_engine::rules::RuleSet;
use openwatch_secrets::{Cipher, CredentialSecret};
use openwatch_test_support::prometheus;
use openwatch_test_support::service::{HeldLock, RunningService, ServiceHarness, TEST_MASTER_KEY};
use openwatch_test_support::ssh::{TestSshd, scan_user};
use secrecy::SecretString;

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-scan-worker");
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
/// Generous for a loaded CI machine; a healthy scan without the walk takes a few seconds.
const RESULT_TIMEOUT: Duration = Duration::from_secs(90);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn cipher() -> Cipher {
    Cipher::from_config(&SecretString::from(TEST_MASTER_KEY), &[]).unwrap()
}

/// A running worker and its isolated dependencies.
struct Worker {
    harness: ServiceHarness,
    running: RunningService,
}

impl Worker {
    /// The worker on queue `scans` only, concurrency 1, no filesystem walk, plus `env`.
    async fn start(env: &[(&str, &str)]) -> Worker {
        let mut harness = ServiceHarness::new(BIN)
            .await
            .env("OPENWATCH_RULES_DIR", RULES_DIR)
            .env("OPENWATCH_SCAN_WALK", "false")
            .env("OPENWATCH_CONCURRENCY", "1")
            .env("OPENWATCH_QUEUES", "scans");
        for (name, value) in env {
            harness = harness.env(name, value);
        }
        let running = harness.start_healthy().await;
        Worker { harness, running }
    }

    async fn conn(&self) -> PooledConnection {
        self.harness.database().pool().get().await.unwrap()
    }

    async fn add_host(&self, address: Ipv4Addr, port: u16) -> HostId {
        let id = HostId::new();
        let host = NewHost {
            id,
            name: format!("host-{}", id.0.simple()),
            address: address.to_string(),
            port,
            tags: vec![],
        };
        hosts::insert_host(&mut *self.conn().await, host).await.unwrap();
        id
    }

    /// Seals `secret` the way the api-gateway does and stores it for `host`.
    async fn add_credential_sealed_with(
        &self,
        cipher: &Cipher,
        host: HostId,
        username: &str,
        secret: CredentialSecret,
    ) {
        let id = CredentialId::new();
        let auth_method = match secret {
            CredentialSecret::Password(_) => AuthMethod::Password,
            CredentialSecret::PrivateKey { .. } => AuthMethod::PrivateKey,
        };
        let sealed = secret.seal(cipher, id.0.as_bytes()).unwrap();
        let credential = NewCredential {
            id,
            scope: CredentialScope::Host(host),
            name: format!("cred-{}", id.0.simple()),
            username: username.to_owned(),
            auth_method,
            ciphertext: sealed.ciphertext,
            nonce: sealed.nonce,
            key_id: sealed.key_id,
        };
        credentials::insert_credential(&mut *self.conn().await, credential).await.unwrap();
    }

    async fn add_credential(&self, host: HostId, username: &str, secret: CredentialSecret) {
        self.add_credential_sealed_with(&cipher(), host, username, secret).await;
    }

    /// A queued scan of `host` and the request the outbox would publish for it.
    async fn queue_scan(
        &self,
        host: HostId,
        trigger: ScanTrigger,
        framework: Option<&str>,
    ) -> ScanRequestedV1 {
        let scan = ScanId::new();
        let new_scan = NewScan {
            id: scan,
            host_id: host,
            trigger,
            framework: framework.map(str::to_owned),
            requested_by: None,
        };
        scans::insert_scan(&mut *self.conn().await, &new_scan).await.unwrap();
        ScanRequestedV1 {
            scan_id: scan,
            host_id: host,
            trigger,
            framework: framework.map(str::to_owned),
            requested_by: None,
            requested_at: Utc::now(),
        }
    }

    async fn request(&self, queue: QueueName, request: &ScanRequestedV1) {
        self.harness.broker().publisher().await.publish_to(queue, request, None).await.unwrap();
    }

    /// The next message on `results`.
    async fn next_result(&self) -> ScanCompletedV1 {
        let broker = self.harness.broker();
        let Some((body, _)) = broker.get_one(&broker.queue(QueueName::Results), RESULT_TIMEOUT).await else {
            panic!("no result within {RESULT_TIMEOUT:?}; worker output:\n{}", self.running.process.output())
        };
        serde_json::from_slice(&body).unwrap()
    }

    /// Requests a scan of a fresh host without credential and returns its id: its result
    /// comes after everything requested before it.
    async fn marker(&self) -> ScanId {
        let host = self.add_host(ip(1), 22).await;
        let request = self.queue_scan(host, ScanTrigger::Manual, None).await;
        self.request(QueueName::Scans, &request).await;
        request.scan_id
    }

    async fn assert_next_result_is_marker(&self, marker: ScanId) {
        let result = self.next_result().await;
        assert_eq!(
            result.scan_id, marker,
            "something was published before the marker: scan {} {} ({:?})",
            result.scan_id, result.outcome, result.failure_reason
        );
        assert_eq!(result.failure_reason.as_deref(), Some("no_credential"));
    }

    async fn scan_row(&self, scan: ScanId) -> scans::Scan {
        scans::get_scan_details(&mut *self.conn().await, scan).await.unwrap()
    }

    async fn progress(&self, scan: ScanId) -> Option<serde_json::Value> {
        let redis = self.harness.redis();
        let mut conn = redis.pool().get().await.unwrap();
        let key = format!("{}scan:{scan}:progress", redis.prefix());
        let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
        value.map(|json| serde_json::from_str(&json).unwrap())
    }

    async fn host_keys(&self, host: HostId) -> Vec<(String, KnownHostStatus)> {
        let page =
            known_hosts::list(&mut *self.conn().await, Some(host), None, Default::default()).await.unwrap();
        page.items.into_iter().map(|k| (k.fingerprint_sha256, k.status)).collect()
    }

    /// What result-processor does with a result.
    async fn record(&self, result: &ScanCompletedV1) {
        self.conn()
            .await
            .transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, result).await)
            .await
            .unwrap();
    }
}

fn password(secret: &str) -> CredentialSecret {
    CredentialSecret::Password(SecretString::from(secret.to_owned()))
}

fn private_key(sshd: &TestSshd) -> CredentialSecret {
    CredentialSecret::PrivateKey { key: SecretString::from(sshd.client_private_key_pem()), passphrase: None }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requested_scan_publishes_every_result_with_evidence_and_a_redelivery_does_nothing() {
    let sshd = TestSshd::start(ip(61)).await;
    let user = scan_user();
    let worker = Worker::start(&[]).await;
    let host = worker.add_host(ip(61), sshd.addr().port()).await;
    // An unprivileged account with a password: the script runs through `sudo -n`.
    worker.add_credential(host, user.name, password(user.password)).await;
    let request = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &request).await;

    let result = worker.next_result().await;
    assert_eq!(result.scan_id, request.scan_id);
    assert_eq!(result.host_id, host);
    assert_eq!(result.outcome, ScanStatus::Completed, "{:?}", result.failure_reason);
    assert_eq!(result.failure_reason, None);
    assert!(result.platform.is_some(), "the platform was detected");
    assert!(result.results.len() > 200, "every rule of the corpus: {}", result.results.len());
    let mut ids: Vec<&str> = result.results.iter().map(|r| r.rule_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), result.results.len(), "one result per rule");
    for r in &result.results {
        assert!(!r.evidence.source.is_empty(), "{} has no evidence source", r.rule_id);
    }
    let count = |status| result.results.iter().filter(|r| r.status == status).count();
    assert!(
        count(FindingStatus::Pass) > 0 && count(FindingStatus::Fail) > 0,
        "real verdicts, not only errors"
    );
    // With sudo, root-only facts (sshd -T) are readable.
    let root_login = result.results.iter().find(|r| r.rule_id == "sshd_disable_root_login").unwrap();
    assert_ne!(root_login.status, FindingStatus::Error, "{:?}", root_login.reason);
    assert!(result.started_at <= result.finished_at);

    // The worker started the scan; recording the outcome is result-processor's job.
    let row = worker.scan_row(request.scan_id).await;
    assert_eq!((row.status, row.attempts), (ScanStatus::Running, 1));
    assert_eq!(row.started_at, Some(result.started_at));

    let progress = worker.progress(request.scan_id).await.expect("progress in Redis");
    assert_eq!(progress["status"], "completed", "{progress}");
    assert_eq!(progress["phase"], "publishing", "{progress}");
    assert_eq!(progress["rules_total"], result.results.len(), "{progress}");
    assert_eq!(progress["rules_done"], result.results.len(), "{progress}");
    let updated_at = progress["updated_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(updated_at).is_ok(), "{progress}");

    // Trust on first use recorded exactly the key sshd presents.
    assert_eq!(worker.host_keys(host).await, [(sshd.host_key_fingerprint(), KnownHostStatus::Trusted)]);

    // result-processor records it; a redelivered request is then acknowledged and ignored,
    // while a framework-filtered scan of the same host (its key now known) runs.
    worker.record(&result).await;
    worker.request(QueueName::Scans, &request).await;
    let filtered = worker.queue_scan(host, ScanTrigger::Manual, Some("cis-debian12")).await;
    worker.request(QueueName::Scans, &filtered).await;
    let next = worker.next_result().await;
    assert_eq!(next.scan_id, filtered.scan_id, "the redelivery published nothing");
    assert_eq!(next.outcome, ScanStatus::Completed, "{:?}", next.failure_reason);
    assert!(!next.results.is_empty() && next.results.len() < result.results.len());
    assert!(next.results.iter().all(|r| r.frameworks.contains_key("cis-debian12")), "framework filter");
    let row = worker.scan_row(request.scan_id).await;
    assert_eq!((row.status, row.attempts), (ScanStatus::Completed, 1), "the redelivery changed nothing");
    assert_eq!(worker.host_keys(host).await.len(), 1);

    let samples = worker.running.metrics().await;
    let completed = [("status", "completed"), ("trigger", "manual")];
    assert_eq!(prometheus::value(&samples, "openwatch_scans_total", &completed), Some(2.0));
    assert_eq!(
        prometheus::value(&samples, "openwatch_scan_duration_seconds_count", &[("outcome", "completed")]),
        Some(2.0)
    );
    let passes = prometheus::value(&samples, "openwatch_rules_evaluated_total", &[("status", "pass")]);
    assert_eq!(
        passes,
        Some(
            (count(FindingStatus::Pass)
                + next.results.iter().filter(|r| r.status == FindingStatus::Pass).count()) as f64
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_presenting_another_key_fails_host_key_mismatch_without_results() {
    let first = TestSshd::start(ip(62)).await;
    let worker = Worker::start(&[]).await;
    let host = worker.add_host(ip(62), first.addr().port()).await;
    worker.add_credential(host, first.username(), private_key(&first)).await;
    let request = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &request).await;
    let result = worker.next_result().await;
    assert_eq!(result.outcome, ScanStatus::Completed, "{:?}", result.failure_reason);
    assert_eq!(worker.host_keys(host).await, [(first.host_key_fingerprint(), KnownHostStatus::Trusted)]);

    // The "same host" now answers with another host key (reinstalled, or someone in between).
    let second = TestSshd::start(ip(62)).await;
    assert_ne!(second.host_key_fingerprint(), first.host_key_fingerprint());
    let changes = HostChangeset { port: Some(second.addr().port()), ..Default::default() };
    hosts::update_host(&mut *worker.conn().await, host, changes).await.unwrap();
    let request = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &request).await;

    let result = worker.next_result().await;
    assert_eq!(result.scan_id, request.scan_id);
    assert_eq!(result.outcome, ScanStatus::Failed);
    assert_eq!(result.failure_reason.as_deref(), Some("host_key_mismatch"));
    assert!(result.results.is_empty() && result.platform.is_none());
    // The new key waits for an operator; the trusted one stays trusted.
    let mut keys = worker.host_keys(host).await;
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (first.host_key_fingerprint(), KnownHostStatus::Trusted),
        (second.host_key_fingerprint(), KnownHostStatus::Pending),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(keys, expected);
    assert!(!second.log().contains("Accepted publickey"), "no credential was sent to the new key");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_host_key_checking_refuses_unknown_keys_and_accepts_approved_ones() {
    let sshd = TestSshd::start(ip(63)).await;
    let worker = Worker::start(&[("OPENWATCH_HOST_KEY_POLICY", "strict")]).await;
    let host = worker.add_host(ip(63), sshd.addr().port()).await;
    worker.add_credential(host, sshd.username(), private_key(&sshd)).await;
    let request = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &request).await;

    let result = worker.next_result().await;
    assert_eq!(result.outcome, ScanStatus::Failed);
    assert_eq!(result.failure_reason.as_deref(), Some("host_key_unknown"));
    assert!(result.results.is_empty());
    assert_eq!(worker.host_keys(host).await, [(sshd.host_key_fingerprint(), KnownHostStatus::Pending)]);
    assert!(!sshd.log().contains("Accepted publickey"), "no credential was sent to an unknown key");

    // An operator approves the pending key: the next scan runs.
    let operator = UserId::new();
    let new_user = NewUser {
        id: operator,
        username: format!("operator-{}", operator.0.simple()),
        email: None,
        display_name: None,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        role: Role::SecurityAdmin,
    };
    users::insert_user(&mut *worker.conn().await, new_user).await.unwrap();
    let pending =
        known_hosts::list(&mut *worker.conn().await, Some(host), None, Default::default()).await.unwrap();
    known_hosts::approve(&mut *worker.conn().await, pending.items[0].id, operator, Utc::now()).await.unwrap();
    let request = worker.queue_scan(host, ScanTrigger::Manual, Some("cis-debian12")).await;
    worker.request(QueueName::Scans, &request).await;
    let result = worker.next_result().await;
    assert_eq!(result.outcome, ScanStatus::Completed, "{:?}", result.failure_reason);
    assert!(!result.results.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_scans_are_consumed_too_and_failures_carry_their_reason() {
    let worker = Worker::start(&[("OPENWATCH_QUEUES", "scans,compliance_scanning")]).await;

    // No credential at all.
    let bare = worker.add_host(ip(64), 22).await;
    let no_credential = worker.queue_scan(bare, ScanTrigger::Scheduled, None).await;
    worker.request(QueueName::ComplianceScanning, &no_credential).await;
    let result = worker.next_result().await;
    assert_eq!(result.scan_id, no_credential.scan_id);
    assert_eq!(result.outcome, ScanStatus::Failed);
    assert_eq!(result.failure_reason.as_deref(), Some("no_credential"));
    assert!(result.results.is_empty());
    assert_eq!(worker.scan_row(no_credential.scan_id).await.attempts, 1);

    // A credential sealed under a key this worker does not have.
    let foreign =
        Cipher::from_config(&SecretString::from("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="), &[])
            .unwrap();
    let unreadable_host = worker.add_host(ip(64), 22).await;
    worker.add_credential_sealed_with(&foreign, unreadable_host, "root", password("x")).await;
    let unreadable = worker.queue_scan(unreadable_host, ScanTrigger::Scheduled, None).await;
    worker.request(QueueName::ComplianceScanning, &unreadable).await;
    let result = worker.next_result().await;
    assert_eq!(result.scan_id, unreadable.scan_id);
    assert_eq!(result.failure_reason.as_deref(), Some("credential_unreadable"));

    // Nothing listens on the host's port: a failed scan, not a retry.
    let closed_port = std::net::TcpListener::bind((ip(64), 0)).unwrap().local_addr().unwrap().port();
    let dead_host = worker.add_host(ip(64), closed_port).await;
    worker.add_credential(dead_host, "root", password("x")).await;
    let dead = worker.queue_scan(dead_host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &dead).await;
    let result = worker.next_result().await;
    assert_eq!(result.scan_id, dead.scan_id);
    assert_eq!(result.failure_reason.as_deref(), Some("connect_failed"));
    assert_eq!(worker.scan_row(dead.scan_id).await.attempts, 1, "not retried");

    // An unknown framework evaluates nothing: refused without connecting.
    let nothing = worker.queue_scan(dead_host, ScanTrigger::Manual, Some("no-such-framework")).await;
    worker.request(QueueName::Scans, &nothing).await;
    let result = worker.next_result().await;
    assert_eq!(result.failure_reason.as_deref(), Some("unknown_framework"));

    let output = worker.running.process.output();
    assert!(!output.contains(TEST_MASTER_KEY), "the master key never reaches the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_auth_failed() {
    let sshd = TestSshd::start(ip(66)).await;
    let user = scan_user();
    let worker = Worker::start(&[]).await;
    let host = worker.add_host(ip(66), sshd.addr().port()).await;
    worker.add_credential(host, user.name, password("Not-The-Password-42")).await;
    let request = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &request).await;
    let result = worker.next_result().await;
    assert_eq!(result.failure_reason.as_deref(), Some("auth_failed"));
    assert!(result.results.is_empty());
    assert!(!worker.running.process.output().contains("Not-The-Password-42"), "secrets are never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_scans_are_acknowledged_without_publishing() {
    let sshd = TestSshd::start(ip(65)).await;
    let worker = Worker::start(&[]).await;
    let host = worker.add_host(ip(65), sshd.addr().port()).await;
    worker.add_credential(host, sshd.username(), private_key(&sshd)).await;

    // Cancelled before any worker took it.
    let before = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    scans::cancel_scan(&mut *worker.conn().await, before.scan_id, Utc::now()).await.unwrap();
    worker.request(QueueName::Scans, &before).await;
    let marker = worker.marker().await;
    worker.assert_next_result_is_marker(marker).await;
    assert_eq!(worker.scan_row(before.scan_id).await.attempts, 0, "never started");

    // Cancelled while it runs: the worker is held on recording the host key (first
    // contact), the scan is cancelled, then the worker goes on and collects.
    let mut lock =
        HeldLock::acquire(worker.harness.database(), "LOCK TABLE ssh_known_hosts IN EXCLUSIVE MODE").await;
    let during = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &during).await;
    lock.wait_for_waiter(worker.harness.database()).await;
    assert_eq!(worker.scan_row(during.scan_id).await.status, ScanStatus::Running);
    scans::cancel_scan(&mut *worker.conn().await, during.scan_id, Utc::now()).await.unwrap();
    lock.release().await;
    let marker = worker.marker().await;
    worker.assert_next_result_is_marker(marker).await;
    assert_eq!(worker.scan_row(during.scan_id).await.status, ScanStatus::Cancelled);
    assert_eq!(worker.progress(during.scan_id).await, None, "no progress left for a cancelled scan");
    assert!(sshd.log().contains("Accepted publickey"), "the cancelled scan did run");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_walk_interval_a_host_is_walked_once_and_later_scans_leave_the_walk_rules_out() {
    let sshd = TestSshd::start(ip(71)).await;
    let user = scan_user();
    let worker =
        Worker::start(&[("OPENWATCH_SCAN_WALK", "true"), ("OPENWATCH_SCAN_WALK_INTERVAL_SECS", "3600")])
            .await;
    let host = worker.add_host(ip(71), sshd.addr().port()).await;
    worker.add_credential(host, user.name, password(user.password)).await;
    let walk_rules: Vec<String> = RuleSet::load_dir(Path::new(RULES_DIR))
        .unwrap()
        .rules
        .values()
        .filter(|r| r.needs_walk())
        .map(|r| r.file.id.clone())
        .collect();
    assert!(!walk_rules.is_empty());

    let first = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &first).await;
    let walked = worker.next_result().await;
    assert_eq!(walked.outcome, ScanStatus::Completed, "{:?}", walked.failure_reason);
    for id in &walk_rules {
        let result =
            walked.results.iter().find(|r| &r.rule_id == id).unwrap_or_else(|| panic!("{id} missing"));
        assert_ne!(
            result.status,
            FindingStatus::NotApplicable,
            "{id} was evaluated by the walk: {:?}",
            result.reason
        );
    }
    let redis = worker.harness.redis();
    let key = format!("{}host:{host}:walked", redis.prefix());
    let ttl: i64 =
        redis::cmd("TTL").arg(&key).query_async(&mut redis.pool().get().await.unwrap()).await.unwrap();
    assert!((3500..=3600).contains(&ttl), "the walk is recorded for the interval: ttl {ttl}");

    let second = worker.queue_scan(host, ScanTrigger::Manual, None).await;
    worker.request(QueueName::Scans, &second).await;
    let skipped = worker.next_result().await;
    assert_eq!(skipped.outcome, ScanStatus::Completed, "{:?}", skipped.failure_reason);
    assert!(skipped.results.iter().all(|r| !walk_rules.contains(&r.rule_id)), "walk rules left out");
    assert_eq!(skipped.results.len() + walk_rules.len(), walked.results.len());
    let progress = worker.progress(second.scan_id).await.unwrap();
    assert_eq!(progress["rules_total"], skipped.results.len(), "{progress}");
}
