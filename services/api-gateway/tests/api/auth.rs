//! Authentication: login, lockout, tokens, refresh rotation, logout, MFA, API tokens,
//! password change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use diesel_async::RunQueryDsl;
use openwatch_api_gateway::auth::jwt::JwtKeys;
use openwatch_common::access::Role;
use openwatch_common::ids::SessionId;
use openwatch_secrets::TotpSecret;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

async fn sql(app: &TestApp, statement: &str) {
    let mut conn = app.db.pool().get().await.unwrap();
    diesel::sql_query(statement).execute(&mut conn).await.unwrap();
}

async fn audit_count(app: &TestApp, action: &str, outcome: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db.pool().get().await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM audit_events WHERE action = '{action}' AND outcome = '{outcome}'"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    rows[0].n
}

#[tokio::test(flavor = "multi_thread")]
async fn there_is_no_default_account() {
    let app = TestApp::spawn().await;
    for (user, password) in [("admin", "admin123"), ("admin", "admin"), ("root", "root")] {
        let resp = app.login(user, password).await;
        assert_eq!((resp.status, resp.code()), (401, "invalid_credentials"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_working_tokens_and_is_audited() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::SecurityAnalyst).await;
    let resp = app.login(&user.username.to_uppercase(), PASSWORD).await;
    assert_eq!(resp.status, 200, "{:?}", resp.json);
    assert_eq!(resp.json["token_type"], "Bearer");
    assert_eq!(resp.json["expires_in"], 900);
    assert!(resp.json["refresh_token"].as_str().unwrap().starts_with("owr_"));
    assert!(!resp.raw.body.contains("argon2"), "no password hash in the response");
    let me = app.get("/api/auth/me", resp.json["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["username"], user.username.as_str());
    assert!(me.json["permissions"].as_array().unwrap().contains(&json!("scans:write")));
    assert_eq!(audit_count(&app, "auth.login", "success").await, 1);

    let unknown = app.login("nobody-here", PASSWORD).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(audit_count(&app, "auth.login", "failure").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_lock_the_account_for_thirty_minutes_then_it_unlocks() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::Auditor).await;
    for _ in 0..5 {
        assert_eq!(app.login(&user.username, "wrong password again").await.status, 401);
    }
    let locked = app.login(&user.username, PASSWORD).await;
    assert_eq!(
        (locked.status, locked.code()),
        (401, "invalid_credentials"),
        "the right password is refused while locked"
    );
    // Another account is not affected (lockout is per account).
    let other = app.create_user(Role::Auditor).await;
    assert_eq!(app.login(&other.username, PASSWORD).await.status, 200);
    // The lock expires.
    sql(
        &app,
        &format!("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = '{}'", user.id.0),
    )
    .await;
    assert_eq!(app.login(&user.username, PASSWORD).await.status, 200);
}

fn forge(
    app: &TestApp,
    header: serde_json::Value,
    claims: serde_json::Value,
    key: Option<&JwtKeys>,
) -> String {
    let _ = (app, key);
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{h}.{c}.")
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_expired_and_refresh_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_with_token(Role::SuperAdmin).await;
    assert_eq!(app.get("/api/auth/me", &token).await.status, 200);

    // alg none with valid-looking claims.
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let none = forge(&app, json!({"alg": "none", "typ": "JWT"}), payload.clone(), None);
    assert_eq!(app.get("/api/auth/me", &none).await.code(), "invalid_token");
    // HS256 signed with the public kid (algorithm confusion).
    let hs =
        forge(&app, json!({"alg": "HS256", "typ": "JWT", "kid": app.state.jwt.active_kid()}), payload, None);
    assert_eq!(app.get("/api/auth/me", &hs).await.code(), "invalid_token");
    // Signed by another deployment's key.
    let foreign = JwtKeys::derive(
        &SecretString::from("another-deployment-secret-0123456789abcdef"),
        &[],
        std::time::Duration::from_secs(900),
    )
    .unwrap()
    .issue(user.id, &user.username, user.role, SessionId::new(), Utc::now())
    .unwrap()
    .0;
    assert_eq!(app.get("/api/auth/me", &foreign).await.code(), "invalid_token");
    // Expired.
    let expired = app
        .state
        .jwt
        .issue(user.id, &user.username, user.role, SessionId::new(), Utc::now() - chrono::TimeDelta::hours(2))
        .unwrap()
        .0;
    assert_eq!(app.get("/api/auth/me", &expired).await.code(), "token_expired");
    // A refresh token is not an access token.
    let login = app.login(&user.username, PASSWORD).await;
    let refresh = login.json["refresh_token"].as_str().unwrap();
    assert_eq!(app.get("/api/auth/me", refresh).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::Auditor).await;
    let login = app.login(&user.username, PASSWORD).await;
    let first_refresh = login.json["refresh_token"].as_str().unwrap().to_owned();
    let rotated =
        app.request("POST", "/api/auth/refresh", None, Some(&json!({"refresh_token": first_refresh}))).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json);
    let second_refresh = rotated.json["refresh_token"].as_str().unwrap().to_owned();
    let second_access = rotated.json["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first_refresh, second_refresh);
    assert_eq!(app.get("/api/auth/me", &second_access).await.status, 200);

    // The first refresh token again: theft. The family dies, including the new tokens.
    let reuse =
        app.request("POST", "/api/auth/refresh", None, Some(&json!({"refresh_token": first_refresh}))).await;
    assert_eq!((reuse.status, reuse.code()), (401, "refresh_token_reused"));
    let after =
        app.request("POST", "/api/auth/refresh", None, Some(&json!({"refresh_token": second_refresh}))).await;
    assert_eq!(after.status, 401);
    assert_eq!(app.get("/api/auth/me", &second_access).await.code(), "token_revoked");
    // Another login still works (new family).
    assert_eq!(app.login(&user.username, PASSWORD).await.status, 200);
    let garbage =
        app.request("POST", "/api/auth/refresh", None, Some(&json!({"refresh_token": "owr_nope"}))).await;
    assert_eq!(garbage.code(), "invalid_refresh_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_the_access_token_and_the_refresh_token_at_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::Guest).await;
    let login = app.login(&user.username, PASSWORD).await;
    let access = login.json["access_token"].as_str().unwrap();
    let refresh = login.json["refresh_token"].as_str().unwrap();
    let other_session = app.login(&user.username, PASSWORD).await;
    let logout = app.request("POST", "/api/auth/logout", Some(access), None).await;
    assert_eq!(logout.status, 204);
    assert_eq!(app.get("/api/auth/me", access).await.code(), "token_revoked");
    let refreshed =
        app.request("POST", "/api/auth/refresh", None, Some(&json!({"refresh_token": refresh}))).await;
    assert_eq!(refreshed.status, 401);
    // Only that session ended.
    assert_eq!(
        app.get("/api/auth/me", other_session.json["access_token"].as_str().unwrap()).await.status,
        200
    );
}

async fn login_with(app: &TestApp, username: &str, extra: serde_json::Value) -> crate::helpers::Resp {
    let mut body = json!({"username": username, "password": PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.request("POST", "/api/auth/login", None, Some(&body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mfa_is_enforced_once_enabled_codes_do_not_replay_and_backup_codes_work_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::SecurityAdmin).await;
    let access = app.login(&user.username, PASSWORD).await.json["access_token"].as_str().unwrap().to_owned();

    let enroll = app.request("POST", "/api/auth/mfa/enroll", Some(&access), None).await;
    assert_eq!(enroll.status, 200, "{:?}", enroll.json);
    let secret = TotpSecret::from_base32(enroll.json["secret"].as_str().unwrap()).unwrap();
    assert!(enroll.json["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    // Not enforced before confirmation.
    assert_eq!(app.login(&user.username, PASSWORD).await.status, 200);
    let wrong = app.post("/api/auth/mfa/confirm", &access, &json!({"code": "000000"})).await;
    assert_eq!(wrong.code(), "invalid_mfa_code");
    let now = Utc::now().timestamp() as u64;
    let confirm = app.post("/api/auth/mfa/confirm", &access, &json!({"code": secret.code_at(now)})).await;
    assert_eq!(confirm.status, 200, "{:?}", confirm.json);
    let backup: Vec<String> = confirm.json["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backup.len(), 10);

    let without = app.login(&user.username, PASSWORD).await;
    assert_eq!((without.status, without.code()), (401, "mfa_required"));
    // The confirmation code was consumed: the same step cannot sign in. The next step can.
    let replayed = login_with(&app, &user.username, json!({"totp_code": secret.code_at(now)})).await;
    assert_eq!(replayed.code(), "invalid_mfa_code");
    let next = login_with(&app, &user.username, json!({"totp_code": secret.code_at(now + 30)})).await;
    assert_eq!(next.status, 200, "{:?}", next.json);
    let replay_next = login_with(&app, &user.username, json!({"totp_code": secret.code_at(now + 30)})).await;
    assert_eq!(replay_next.code(), "invalid_mfa_code");

    let with_backup = login_with(&app, &user.username, json!({"backup_code": backup[3]})).await;
    assert_eq!(with_backup.status, 200);
    let backup_again = login_with(&app, &user.username, json!({"backup_code": backup[3]})).await;
    assert_eq!(backup_again.code(), "invalid_mfa_code");

    // Disabling needs the password.
    let bad = app.post("/api/auth/mfa/disable", &access, &json!({"password": "not my password"})).await;
    assert_eq!(bad.status, 401);
    let disabled = app.post("/api/auth/mfa/disable", &access, &json!({"password": PASSWORD})).await;
    assert_eq!(disabled.status, 204);
    assert_eq!(app.login(&user.username, PASSWORD).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_token_scopes_are_enforced_and_tokens_cannot_mint_tokens() {
    let app = TestApp::spawn().await;
    let (_, access) = app.user_with_token(Role::SecurityAnalyst).await;
    // A scope the role does not hold is refused.
    let beyond =
        app.post("/api/auth/tokens", &access, &json!({"name": "x", "permissions": ["users:write"]})).await;
    assert_eq!((beyond.status, beyond.code()), (403, "permission_not_held"));
    let unknown =
        app.post("/api/auth/tokens", &access, &json!({"name": "x", "permissions": ["hosts:nuke"]})).await;
    assert_eq!((unknown.status, unknown.code()), (400, "invalid_permission"));

    let created =
        app.post("/api/auth/tokens", &access, &json!({"name": "ci", "permissions": ["rules:read"]})).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let token = created.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("owk_"));
    // Listed without the secret.
    let listed = app.get("/api/auth/tokens", &access).await;
    assert!(!listed.raw.body.contains(&token));
    assert_eq!(listed.json[0]["permissions"], json!(["rules:read"]));

    // Outside its scope: refused even though the role allows it.
    let profile = app.get("/api/auth/me", &token).await;
    assert_eq!((profile.status, profile.code()), (403, "permission_denied"));

    let scoped =
        app.post("/api/auth/tokens", &access, &json!({"name": "me", "permissions": ["profile:self"]})).await;
    let self_token = scoped.json["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/auth/me", &self_token).await.status, 200);
    let mint = app
        .post("/api/auth/tokens", &self_token, &json!({"name": "y", "permissions": ["profile:self"]}))
        .await;
    assert_eq!((mint.status, mint.code()), (403, "session_required"));

    // Revoked: refused.
    let id = scoped.json["id"].as_str().unwrap();
    assert_eq!(
        app.request("DELETE", &format!("/api/auth/tokens/{id}"), Some(&access), None).await.status,
        204
    );
    assert_eq!(app.get("/api/auth/me", &self_token).await.code(), "invalid_token");
    assert_eq!(app.get("/api/auth/me", "owk_forged_token_value").await.code(), "invalid_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_enforces_the_policy_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let user = app.create_user(Role::ComplianceOfficer).await;
    let access = app.login(&user.username, PASSWORD).await.json["access_token"].as_str().unwrap().to_owned();
    for (new, code) in [
        ("short", "password_too_short"),
        (user.username.as_str(), "password_contains_username"),
        ("password123456", "password_too_common"),
    ] {
        let resp = app
            .post("/api/auth/password", &access, &json!({"current_password": PASSWORD, "new_password": new}))
            .await;
        assert_eq!((resp.status, resp.code()), (422, code), "{new}");
    }
    let with_name = format!("{}-and-more-words", user.username);
    let resp = app
        .post(
            "/api/auth/password",
            &access,
            &json!({"current_password": PASSWORD, "new_password": with_name}),
        )
        .await;
    assert_eq!(resp.code(), "password_contains_username");
    let wrong = app
        .post(
            "/api/auth/password",
            &access,
            &json!({"current_password": "not it at all", "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(wrong.code(), "invalid_credentials");

    let ok = app
        .post(
            "/api/auth/password",
            &access,
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(ok.status, 204, "{:?}", ok.json);
    assert_eq!(app.get("/api/auth/me", &access).await.code(), "token_revoked");
    assert_eq!(app.login(&user.username, PASSWORD).await.status, 401);
    let fresh = app.login(&user.username, "a brand new passphrase").await;
    assert_eq!(fresh.status, 200);
    assert_eq!(app.get("/api/auth/me", fresh.json["access_token"].as_str().unwrap()).await.status, 200);
}
