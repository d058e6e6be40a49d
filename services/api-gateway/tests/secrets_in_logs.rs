//! The real gateway binary, logging at `trace` in JSON, handles credentials and tokens
//! without writing any of them to its output: passwords, private keys (and each of their
//! lines), passphrases, the login password and the access and refresh tokens.
//!
//! A separate test binary because it runs the service as a child process and reads
//! everything it printed to stdout and stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openwatch_common::access::Role;
use openwatch_common::ids::{HostGroupId, UserId};
use openwatch_db::queries::host_groups::{self, NewHostGroup};
use openwatch_db::queries::users::{self, NewUser};
use openwatch_test_support::http::{self, HttpResponse};
use openwatch_test_support::redis::TestRedis;
use openwatch_test_support::service::{self, ServiceHarness};
use secrecy::SecretString;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_openwatch-api-gateway");
const ADMIN_PASSWORD: &str = "Login-Secret-Oyster-7731-carafe";

/// A value unique to this run, easy to search for.
fn distinctive(label: &str) -> String {
    format!("{label}-{}-quokka", uuid::Uuid::new_v4().simple())
}

/// An OpenSSH-shaped private key with random content.
fn private_key() -> String {
    let random: Vec<u8> = (0..16).flat_map(|_| *uuid::Uuid::new_v4().as_bytes()).collect();
    let body = STANDARD.encode(random);
    let lines: Vec<&str> = body.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", lines.join("\n"))
}

/// A 32-byte master key, base64.
fn master_key() -> String {
    let bytes: Vec<u8> = (0..2).flat_map(|_| *uuid::Uuid::new_v4().as_bytes()).collect();
    STANDARD.encode(bytes)
}

/// Every form in which `secret` must not appear in the output: itself, JSON-escaped,
/// base64, and each long enough line or token segment of it.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![
        secret.to_owned(),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_owned(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ];
    for part in secret.lines().chain(secret.split('.')).chain(secret.split('_')) {
        let part = part.trim();
        if part.len() >= 16 && !part.starts_with("-----") && !part.starts_with("eyJ") {
            forms.push(part.to_owned());
        }
    }
    forms
}

struct Client {
    addr: std::net::SocketAddr,
}

impl Client {
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> HttpResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        http::request(self.addr, method, path, &headers, body, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    async fn json(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let payload = serde_json::to_vec(body).unwrap();
        let resp = self.send(method, path, token, Some(&payload)).await;
        (resp.status, serde_json::from_str(&resp.body).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self.send("GET", path, Some(token), None).await;
        (resp.status, serde_json::from_str(&resp.body).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_tokens_never_reach_the_logs_even_at_trace_level() {
    let redis = TestRedis::new();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
    let harness = ServiceHarness::new(BIN)
        .await
        .env("OPENWATCH_SECRET_KEY", &distinctive("jwt-signing-material"))
        .env("OPENWATCH_MASTER_KEY", &master_key())
        .env("OPENWATCH_REDIS_KEY_PREFIX", redis.prefix())
        .env("OPENWATCH_RULES_DIR", rules)
        .env("OPENWATCH_HTTP_WORKERS", "1")
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json");

    // An administrator, straight into the service's database.
    let db = harness.database();
    let username = format!("admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let hash = openwatch_secrets::password::hash_password(&SecretString::from(ADMIN_PASSWORD)).unwrap();
    let host = db.insert_host("logged-host", 22).await;
    {
        let mut conn = db.pool().get().await.unwrap();
        let new_user = NewUser {
            id: UserId::new(),
            username: username.clone(),
            email: None,
            display_name: None,
            password_hash: hash,
            role: Role::SuperAdmin,
        };
        users::insert_user(&mut conn, new_user).await.unwrap();
        let group = HostGroupId::new();
        host_groups::insert_group(&mut conn, NewHostGroup { id: group, name: "g".into(), description: None })
            .await
            .unwrap();
        host_groups::add_members(&mut conn, group, &[host]).await.unwrap();
    }

    let mut running = harness.start_healthy().await;
    let client = Client { addr: running.addr };

    let (status, login) = client
        .json("POST", "/api/auth/login", None, &json!({"username": username, "password": ADMIN_PASSWORD}))
        .await;
    assert_eq!(status, 200, "{login}");
    let first_refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) =
        client.json("POST", "/api/auth/refresh", None, &json!({"refresh_token": first_refresh})).await;
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    let refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    let first_access = login["access_token"].as_str().unwrap().to_owned();

    let (password, replacement, key, passphrase) = (
        distinctive("ssh-password"),
        distinctive("ssh-password-2"),
        private_key(),
        distinctive("passphrase"),
    );

    let (status, by_password) = client
        .json(
            "POST",
            "/api/credentials",
            Some(&access),
            &json!({"name": "host cred", "scope": "host", "host_id": host.0, "username": "root",
                    "auth_method": "password", "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{by_password}");
    let (status, by_key) = client
        .json(
            "POST",
            "/api/credentials",
            Some(&access),
            &json!({"name": "system key", "scope": "system", "username": "ow",
                    "auth_method": "private_key", "private_key": key, "passphrase": passphrase}),
        )
        .await;
    assert_eq!(status, 201, "{by_key}");

    assert_eq!(client.get("/api/credentials", &access).await.0, 200);
    for created in [&by_password, &by_key] {
        let path = format!("/api/credentials/{}", created["id"].as_str().unwrap());
        assert_eq!(client.get(&path, &access).await.0, 200);
    }
    let (status, effective) =
        client.get(&format!("/api/hosts/{}/effective-credential", host.0), &access).await;
    assert_eq!((status, &effective["resolved_from"]), (200, &json!("host")));
    let secret_path = format!("/api/credentials/{}/secret", by_password["id"].as_str().unwrap());
    let (status, _) = client
        .json(
            "PUT",
            &secret_path,
            Some(&access),
            &json!({"username": "root", "auth_method": "password", "password": replacement}),
        )
        .await;
    assert_eq!(status, 200);

    // Malformed requests that carry secrets: an unknown field, a wrong type, broken JSON,
    // a mismatched secret, a conflict.
    let malformed: Vec<Vec<u8>> = vec![
        serde_json::to_vec(
            &json!({"name": "x", "scope": "system", "username": "u", "auth_method": "password",
                                   "password": password, "note": password}),
        )
        .unwrap(),
        serde_json::to_vec(&json!({"name": "x", "scope": "system", "username": 7, "auth_method": "password",
                                   "password": password}))
        .unwrap(),
        format!(
            "{{\"name\": \"x\", \"password\": \"{password}\", \"private_key\": \"{}",
            key.replace('\n', "\\n")
        )
        .into_bytes(),
        serde_json::to_vec(
            &json!({"name": "x", "scope": "system", "username": "u", "auth_method": "password",
                                   "password": password, "private_key": key}),
        )
        .unwrap(),
        serde_json::to_vec(
            &json!({"name": "x", "scope": "system", "username": "u", "auth_method": "private_key",
                                   "private_key": key}),
        )
        .unwrap(),
    ];
    for body in &malformed {
        let resp = client.send("POST", "/api/credentials", Some(&access), Some(body)).await;
        assert!(matches!(resp.status, 400 | 409), "{}: {}", resp.status, resp.body);
    }
    // A bad token and a token in the wrong place.
    assert_eq!(client.get("/api/credentials", &format!("{access}x")).await.0, 401);
    let resp = client.send("GET", &format!("/api/credentials?token={access}"), None, None).await;
    assert_eq!(resp.status, 401);

    running.process.sigterm();
    let exit = running.process.wait_exit(service::START_TIMEOUT).await;
    let output = running.process.output();
    assert!(exit.success(), "{exit:?}\n{output}");

    // The logs were captured, at debug/trace level, and cover the requests made.
    assert!(output.lines().count() > 10, "too little output captured:\n{output}");
    assert!(output.contains("\"level\":\"DEBUG\"") || output.contains("\"level\":\"TRACE\""), "{output}");
    let created: Vec<&str> = output.lines().filter(|l| l.contains("\"credential created\"")).collect();
    assert_eq!(created.len(), 2, "each creation is logged once:\n{output}");
    assert!(
        created.iter().all(|l| l.contains("/api/credentials") && l.contains("request.id")),
        "handler events carry their request span: {created:?}"
    );
    assert!(output.contains("\"credential secret replaced\""), "{output}");

    let secrets = [
        ("SSH password", password.as_str()),
        ("replacement SSH password", replacement.as_str()),
        ("private key", key.as_str()),
        ("passphrase", passphrase.as_str()),
        ("login password", ADMIN_PASSWORD),
        ("access token", access.as_str()),
        ("first access token", first_access.as_str()),
        ("refresh token", refresh.as_str()),
        ("first refresh token", first_refresh.as_str()),
    ];
    for (what, secret) in secrets {
        for form in forms(secret) {
            if let Some(line) = output.lines().find(|l| l.contains(&form)) {
                panic!("the {what} appears in the logs ({form:?}):\n{line}");
            }
        }
    }
}
