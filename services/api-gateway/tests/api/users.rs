//! User administration: CRUD, password policy, role changes revoke tokens, guard rails.

use diesel_async::RunQueryDsl;
use openwatch_common::access::Role;
use openwatch_db::queries::users::{self, UserChangeset};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

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

#[tokio::test(flavor = "multi_thread")]
async fn users_are_created_validated_listed_and_never_show_a_hash() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user_with_token(Role::SuperAdmin).await;
    let body = |name: &str, password: &str| json!({"username": name, "role": "auditor", "password": password, "email": format!("{name}@example.org")});
    let created = app.post("/api/users", &admin, &body("carol", "a perfectly fine passphrase")).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    assert_eq!(
        (created.json["role"].as_str(), created.json["is_active"].as_bool()),
        (Some("auditor"), Some(true))
    );
    assert!(["argon2", "password_hash", "perfectly fine"].iter().all(|s| !created.raw.body.contains(s)));
    assert_eq!(audit_count(&app, "user.create").await, 1);
    let weak = app.post("/api/users", &admin, &body("dave", "password123456")).await;
    assert_eq!((weak.status, weak.code()), (422, "password_too_common"));
    let short = app.post("/api/users", &admin, &body("dave", "short")).await;
    assert_eq!((short.status, short.code()), (422, "password_too_short"));
    let taken = app.post("/api/users", &admin, &body("CAROL", "another fine passphrase")).await;
    assert_eq!((taken.status, taken.code()), (409, "username_taken"));
    let bad_role = app
        .post(
            "/api/users",
            &admin,
            &json!({"username": "erin", "role": "root", "password": "a perfectly fine passphrase"}),
        )
        .await;
    assert_eq!((bad_role.status, bad_role.code()), (400, "invalid_role"));
    // Refused creations leave no account behind.
    assert_eq!(app.login("dave", "password123456").await.status, 401);

    let auditors = app.get("/api/users?role=auditor", &admin).await;
    assert_eq!(auditors.json["total"], 1);
    assert_eq!(auditors.header("x-total-count"), Some("1"));
    assert_eq!(app.get("/api/users", &admin).await.header("x-total-count"), Some("2"));
    let over = app.get("/api/users?limit=501", &admin).await;
    assert_eq!((over.status, over.code()), (400, "invalid_limit"));
    let carol = created.json["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/users/{carol}"), &admin).await.json["username"], "carol");

    let patched = app
        .request(
            "PATCH",
            &format!("/api/users/{carol}"),
            Some(&admin),
            Some(&json!({"display_name": "  Carol C  ", "email": null})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.json);
    assert_eq!(
        (patched.json["display_name"].as_str(), patched.json["email"].as_str()),
        (Some("Carol C"), None)
    );
    let bad_email = app
        .request("PATCH", &format!("/api/users/{carol}"), Some(&admin), Some(&json!({"email": "nope"})))
        .await;
    assert_eq!((bad_email.status, bad_email.code()), (400, "invalid_email"));

    assert_eq!(app.login("carol", "a perfectly fine passphrase").await.status, 200);
    let reset = app
        .post(
            &format!("/api/users/{carol}/password"),
            &admin,
            &json!({"new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(reset.status, 204, "{:?}", reset.json);
    assert_eq!(app.login("carol", "a perfectly fine passphrase").await.status, 401);
    assert_eq!(app.login("carol", "a brand new passphrase").await.status, 200);

    assert_eq!(app.request("DELETE", &format!("/api/users/{carol}"), Some(&admin), None).await.status, 204);
    assert_eq!(app.get(&format!("/api/users/{carol}"), &admin).await.code(), "user_not_found");
    assert_eq!(audit_count(&app, "user.delete").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_change_revokes_the_users_live_tokens() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user_with_token(Role::SuperAdmin).await;
    let target = app.create_user(Role::SecurityAnalyst).await;
    let live = app.login(&target.username, PASSWORD).await.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/auth/me", &live).await.status, 200);
    // A change that keeps the role leaves the token alone.
    let same = app
        .request(
            "PATCH",
            &format!("/api/users/{}", target.id.0),
            Some(&admin),
            Some(&json!({"display_name": "Analyst"})),
        )
        .await;
    assert_eq!(same.status, 200);
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
    let old = app.get("/api/auth/me", &live).await;
    assert_eq!((old.status, old.code()), (401, "token_revoked"));
    let fresh = app.login(&target.username, PASSWORD).await;
    assert_eq!(fresh.json["user"]["role"], "guest");
    assert_eq!(app.get("/api/auth/me", fresh.json["access_token"].as_str().unwrap()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_cannot_modify_themselves_and_the_last_super_admin_stays() {
    let app = TestApp::spawn().await;
    let (me, admin) = app.user_with_token(Role::SuperAdmin).await;
    let own = format!("/api/users/{}", me.id.0);
    for (method, body) in [
        ("DELETE", None),
        ("PATCH", Some(json!({"role": "guest"}))),
        ("PATCH", Some(json!({"is_active": false}))),
    ] {
        let resp = app.request(method, &own, Some(&admin), body.as_ref()).await;
        assert_eq!((resp.status, resp.code()), (409, "cannot_modify_self"), "{method} {body:?}");
    }
    let own_password = app
        .post(&format!("{own}/password"), &admin, &json!({"new_password": "a brand new passphrase"}))
        .await;
    assert_eq!((own_password.status, own_password.code()), (409, "cannot_modify_self"));

    // Another super admin can demote me while one remains.
    let other = app.create_user(Role::SuperAdmin).await;
    let other_token = app.token_for(&other);
    let demoted = app.request("PATCH", &own, Some(&other_token), Some(&json!({"role": "auditor"}))).await;
    assert_eq!(demoted.status, 200, "{:?}", demoted.json);

    // `other` is now the last active super admin. A third admin whose account was
    // deactivated behind the API still holds a valid token: whatever it tries on `other`
    // is refused, and nothing changes.
    let stale = app.create_user(Role::SuperAdmin).await;
    let stale_token = app.token_for(&stale);
    let mut conn = app.db.pool().get().await.unwrap();
    users::update_user(&mut conn, stale.id, UserChangeset { is_active: Some(false), ..Default::default() })
        .await
        .unwrap();
    let target = format!("/api/users/{}", other.id.0);
    for (method, body) in [
        ("PATCH", Some(json!({"role": "security_admin"}))),
        ("PATCH", Some(json!({"is_active": false}))),
        ("DELETE", None),
    ] {
        let resp = app.request(method, &target, Some(&stale_token), body.as_ref()).await;
        assert_eq!((resp.status, resp.code()), (409, "last_super_admin"), "{method} {body:?}");
    }
    let still = users::get_user(&mut conn, other.id).await.unwrap();
    assert_eq!((still.role, still.is_active), (Role::SuperAdmin, true));
    assert_eq!(app.get("/api/auth/me", &other_token).await.status, 200);
    // Changing another field of the last super admin is fine.
    let renamed =
        app.request("PATCH", &target, Some(&stale_token), Some(&json!({"display_name": "Root"}))).await;
    assert_eq!(renamed.status, 200);
}
