//! User administration: CRUD, password policy, role changes revoke tokens, guard rails.

use openwatch_common::access::Role;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_validated_listed_and_never_show_a_hash() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user_with_token(Role::SuperAdmin).await;
    let body = |name: &str, password: &str| json!({"username": name, "role": "auditor", "password": password, "email": format!("{name}@example.org")});
    let created = app.post("/api/users", &admin, &body("carol", "a perfectly fine passphrase")).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    assert!(!created.raw.body.contains("argon2") && !created.raw.body.contains("password_hash"));
    let weak = app.post("/api/users", &admin, &body("dave", "password123456")).await;
    assert_eq!((weak.status, weak.code()), (422, "password_too_common"));
    let taken = app.post("/api/users", &admin, &body("CAROL", "another fine passphrase")).await;
    assert_eq!(taken.status, 409);
    let bad_role = app
        .post(
            "/api/users",
            &admin,
            &json!({"username": "erin", "role": "root", "password": "a perfectly fine passphrase"}),
        )
        .await;
    assert_eq!((bad_role.status, bad_role.code()), (400, "invalid_role"));

    let auditors = app.get("/api/users?role=auditor", &admin).await;
    assert_eq!(auditors.json["total"], 1);
    assert_eq!(auditors.header("x-total-count"), Some("1"));
    assert_eq!(app.get("/api/users?limit=501", &admin).await.code(), "invalid_limit");
    let carol = created.json["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/users/{carol}"), &admin).await.json["username"], "carol");
    assert_eq!(app.login("carol", "a perfectly fine passphrase").await.status, 200);
    assert_eq!(app.request("DELETE", &format!("/api/users/{carol}"), Some(&admin), None).await.status, 204);
    assert_eq!(app.get(&format!("/api/users/{carol}"), &admin).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_change_revokes_the_users_live_tokens() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user_with_token(Role::SuperAdmin).await;
    let target = app.create_user(Role::SecurityAnalyst).await;
    let live = app.login(&target.username, PASSWORD).await.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/auth/me", &live).await.status, 200);
    let changed = app
        .request(
            "PATCH",
            &format!("/api/users/{}", target.id.0),
            Some(&admin),
            Some(&json!({"role": "guest"})),
        )
        .await;
    assert_eq!((changed.status, changed.json["role"].as_str()), (200, Some("guest")));
    assert_eq!(app.get("/api/auth/me", &live).await.code(), "token_revoked");
    let fresh = app.login(&target.username, PASSWORD).await;
    assert_eq!(fresh.json["user"]["role"], "guest");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_cannot_remove_themselves_or_the_last_super_admin() {
    let app = TestApp::spawn().await;
    let (me, admin) = app.user_with_token(Role::SuperAdmin).await;
    let own = format!("/api/users/{}", me.id.0);
    assert_eq!(app.request("DELETE", &own, Some(&admin), None).await.code(), "cannot_modify_self");
    assert_eq!(app.request("PATCH", &own, Some(&admin), Some(&json!({"role": "guest"}))).await.status, 409);
    // Another super admin can be demoted while one remains, but not the last one.
    let other = app.create_user(Role::SuperAdmin).await;
    let other_token = app.token_for(&other);
    let demoted = app.request("PATCH", &own, Some(&other_token), Some(&json!({"role": "auditor"}))).await;
    assert_eq!(demoted.status, 200, "{:?}", demoted.json);
    let last = app
        .request(
            "PATCH",
            &format!("/api/users/{}", other.id.0),
            Some(&app.token_for(&other)),
            Some(&json!({"is_active": false})),
        )
        .await;
    assert_eq!(last.status, 409, "{:?}", last.json);
}
