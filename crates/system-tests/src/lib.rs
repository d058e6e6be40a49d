//! End-to-end tests of OpenWatch (in `tests/`) and the fleet benchmark (`benches/fleet.rs`):
//! the service binaries run as processes over one test database, broker prefix and Redis
//! prefix, and scan real sshd targets on 127.0.0.x. The binaries are found next to the test
//! executable, so build them first (`cargo build --bins`; `cargo nextest run --workspace`
//! builds them too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openwatch_common::access::Role;
use openwatch_common::ids::UserId;
use openwatch_db::queries::users::{self, NewUser};
use openwatch_test_support::http;
use openwatch_test_support::service::{RunningService, ServiceHarness};
use openwatch_test_support::ssh::TestSshd;
use secrecy::SecretString;
use serde_json::{Value, json};

/// The rule corpus of this repository.
pub const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
/// Password of the administrator every stack starts with.
pub const ADMIN_PASSWORD: &str = "system test passphrase";

/// A workspace binary, next to the running executable: a test runs from
/// `target/<profile>/deps/`, the binaries sit in `target/<profile>/`. Panics when it is
/// missing, saying to build the binaries first.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first", path.display());
    path
}

/// A running stack: the gateway (with its outbox relay), optionally a worker and a
/// result-processor, and a signed-in administrator's token.
pub struct Stack {
    /// The shared fixtures (database, broker prefix, Redis prefix, environment).
    pub harness: ServiceHarness,
    /// The api-gateway process.
    pub gateway: RunningService,
    /// A scan-worker, when started.
    pub worker: Option<RunningService>,
    /// A result-processor, when started.
    pub processor: Option<RunningService>,
    /// The administrator's access token.
    pub token: String,
}

impl Stack {
    /// Gateway, scan-worker and result-processor, all direct.
    pub async fn start() -> Stack {
        let mut stack = Stack::gateway_only().await;
        stack.worker = Some(stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await);
        stack.processor =
            Some(stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await);
        stack
    }

    /// Only the gateway (and its outbox relay), with a signed-in administrator.
    pub async fn gateway_only() -> Stack {
        Stack::gateway_only_with(&[]).await
    }

    /// [`Stack::gateway_only`] with extra environment for every process of the stack.
    pub async fn gateway_only_with(env: &[(&str, &str)]) -> Stack {
        let mut harness = ServiceHarness::new(binary("openwatch-api-gateway").to_str().unwrap()).await;
        for (name, value) in env {
            harness = harness.env(name, value);
        }
        let harness = harness
            .env("OPENWATCH_RULES_DIR", RULES_DIR)
            .env("OPENWATCH_SCAN_WALK", "false")
            .env("OPENWATCH_CONCURRENCY", "2");
        let gateway = harness.start_healthy().await;
        let hash = openwatch_secrets::password::hash_password(&SecretString::from(ADMIN_PASSWORD)).unwrap();
        let mut conn = harness.database().pool().get().await.unwrap();
        users::insert_user(
            &mut conn,
            NewUser {
                id: UserId::new(),
                username: "root-admin".into(),
                email: None,
                display_name: None,
                password_hash: hash,
                role: Role::SuperAdmin,
            },
        )
        .await
        .unwrap();
        let mut stack = Stack { harness, gateway, worker: None, processor: None, token: String::new() };
        let login = stack
            .call(
                "POST",
                "/api/auth/login",
                Some(json!({"username": "root-admin", "password": ADMIN_PASSWORD})),
            )
            .await;
        stack.token = login.1["access_token"].as_str().expect("login").to_owned();
        stack
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    /// One API call; returns the status and the JSON body (`null` when not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Content-Type", "application/json")];
        if !self.token.is_empty() {
            headers.push(("Authorization", auth.as_str()));
        }
        let payload = body.map(|b| serde_json::to_vec(&b).unwrap());
        let resp =
            http::request(self.addr(), method, path, &headers, payload.as_deref(), Duration::from_secs(30))
                .await
                .unwrap();
        (resp.status, serde_json::from_str(&resp.body).unwrap_or(Value::Null))
    }

    /// Registers `sshd` as a host with a host-scoped key credential; returns the host id.
    pub async fn register(&self, name: &str, sshd: &TestSshd) -> String {
        let addr = sshd.addr();
        let (status, host) = self
            .call(
                "POST",
                "/api/hosts",
                Some(json!({"name": name, "address": addr.ip().to_string(), "port": addr.port()})),
            )
            .await;
        assert_eq!(status, 201, "{host}");
        let id = host["id"].as_str().unwrap().to_owned();
        let (status, credential) = self
            .call(
                "POST",
                "/api/credentials",
                Some(json!({"name": format!("{name} key"), "scope": "host", "host_id": id, "username": sshd.username(),
                            "auth_method": "private_key", "private_key": sshd.client_private_key_pem()})),
            )
            .await;
        assert_eq!(status, 201, "{credential}");
        id
    }

    /// [`Stack::wait_finished`], printing the services' output when it times out.
    pub async fn wait_finished_or(&self, scan_id: &str, services: &[&RunningService]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, scan) = self.call("GET", &format!("/api/scans/{scan_id}"), None).await;
            if matches!(scan["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return scan;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = services.iter().map(|s| s.process.output()).collect();
                panic!("scan {scan_id} did not finish: {scan}\n{}", logs.join("\n-----\n"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls the scan until it is completed, failed or cancelled (at most 120 s).
    pub async fn wait_finished(&self, scan_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, scan) = self.call("GET", &format!("/api/scans/{scan_id}"), None).await;
            if matches!(scan["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return scan;
            }
            assert!(Instant::now() < deadline, "scan {scan_id} did not finish: {scan}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
