//! Request ids, security headers, CORS, uniform errors, body limits, rate limits.

use openwatch_common::access::Role;
use serde_json::json;

use crate::helpers::{TestApp, send};

#[tokio::test(flavor = "multi_thread")]
async fn openapi_is_public_and_every_response_carries_request_id_and_security_headers() {
    let app = TestApp::spawn().await;
    let doc = app.request("GET", "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    assert!(doc.header("x-request-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(doc.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(doc.header("x-frame-options"), Some("DENY"));
    assert!(doc.header("content-security-policy").is_some());

    let echoed =
        app.request_with("GET", "/api/openapi.json", None, None, &[("X-Request-Id", "trace-abc_123")]).await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-abc_123"));
    let replaced = app
        .request_with("GET", "/api/openapi.json", None, None, &[("X-Request-Id", "bad id with spaces")])
        .await;
    assert_ne!(replaced.header("x-request-id"), Some("bad id with spaces"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_malformed_and_tampered_tokens_get_401_with_a_stable_code() {
    let app = TestApp::spawn().await;
    let anonymous = app.request("GET", "/api/hosts", None, None).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthenticated"));
    assert!(anonymous.header("www-authenticate").is_some());
    let malformed =
        app.request_with("GET", "/api/hosts", None, None, &[("Authorization", "Basic abc")]).await;
    assert_eq!((malformed.status, malformed.code()), (401, "invalid_token"));
    let (_, token) = app.user_with_token(Role::Auditor).await;
    let tampered = format!("{}x", token);
    let refused = app.get("/api/hosts", &tampered).await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_token"));
    // Unknown routes need authentication too, then 404.
    let unknown = app.request("GET", "/api/nope", None, None).await;
    assert_eq!(unknown.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_configured_origins_only() {
    let app = TestApp::spawn().await;
    let allowed = app
        .request_with(
            "OPTIONS",
            "/api/hosts",
            None,
            None,
            &[("Origin", "https://console.example.test"), ("Access-Control-Request-Method", "GET")],
        )
        .await;
    assert_eq!(allowed.status, 204);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://console.example.test"));
    let denied = app
        .request_with(
            "OPTIONS",
            "/api/hosts",
            None,
            None,
            &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
        )
        .await;
    assert_eq!((denied.status, denied.code()), (403, "cors_origin_denied"));
    let simple =
        app.request_with("GET", "/api/openapi.json", None, None, &[("Origin", "https://evil.example")]).await;
    assert_eq!(simple.status, 200);
    assert!(simple.header("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies_are_4xx_with_codes() {
    let app = TestApp::spawn_with(|c| c.body_limit_bytes = 2048).await;
    let bad =
        send(app.addr, "POST", "/api/auth/login", None, None, &[("Content-Type", "application/json")]).await;
    assert!((400..500).contains(&bad.status), "{bad:?}");
    let huge = json!({"username": "x".repeat(4096), "password": "y"});
    let too_large = app.request("POST", "/api/auth/login", None, Some(&huge)).await;
    assert_eq!((too_large.status, too_large.code()), (413, "payload_too_large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_is_shared_by_two_gateway_instances() {
    let app = TestApp::spawn_with(|c| c.auth_rate_limit_per_minute = 4).await;
    let (second, _handle) = app.another_server_over_same_state(|_| {});
    // The six requests must fall in one fixed window: start well inside a minute.
    let second_of_minute =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second_of_minute > 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - second_of_minute)).await;
    }
    let body = json!({"username": "nobody", "password": "wrong password here"});
    let mut statuses = Vec::new();
    for i in 0..6 {
        let addr = if i % 2 == 0 { app.addr } else { second };
        let resp = send(addr, "POST", "/api/auth/login", None, Some(&body), &[]).await;
        statuses.push(resp.status);
        if resp.status == 429 {
            let retry: u64 = resp.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(resp.code(), "rate_limited");
        }
    }
    // Four attempts pass (401: bad credentials), the fifth and sixth — on either instance — are refused.
    assert_eq!(statuses, vec![401, 401, 401, 401, 429, 429], "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes_in_the_url_are_a_400_not_a_server_error() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SuperAdmin).await;
    for path in ["/api/audit-events?actor=%00", "/api/audit-events/export?actor=a%00b", "/api/hosts?q=%00"] {
        let resp = app.get(path, &token).await;
        assert_eq!((resp.status, resp.code()), (400, "invalid_query"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes_in_json_text_are_a_400_not_a_server_error() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token(Role::SuperAdmin).await;
    let host = app.post("/api/hosts", &token, &json!({"name": "nul-host", "address": "10.9.0.1"})).await;
    let body = json!({"host_id": host.json["id"], "rule_id": "sshd_x", "reason": "a\u{0}b", "expires_at": chrono::Utc::now() + chrono::TimeDelta::days(3)});
    let resp = app.post("/api/exceptions", &token, &body).await;
    assert!((400..500).contains(&resp.status), "{} {:?}", resp.status, resp.json);
}
