//! Identity queries against a real PostgreSQL: users (lookup, listing, lockout), refresh
//! sessions (rotation, reuse detection, races), API tokens, TOTP and backup codes, and the
//! constraints of migration `000600_gateway` they rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::access::{Permission, Role};
use openwatch_common::ids::{ApiTokenId, SessionId, UserId};
use openwatch_db::DbError;
use openwatch_db::queries::api_tokens::{self, NewApiToken};
use openwatch_db::queries::mfa::{self, SealedTotp};
use openwatch_db::queries::page::{PageRequest, SortOrder};
use openwatch_db::queries::sessions::{self, NewRefreshToken, NewSession, RotateOutcome};
use openwatch_db::queries::users::{self, NewUser, User, UserChangeset, UserFilter, UserSort};
use openwatch_test_support::database::TestDatabase;
use tokio::sync::Barrier;
use uuid::Uuid;

/// Now, at PostgreSQL's microsecond precision, so round trips compare equal.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        id: UserId::new(),
        username: username.to_owned(),
        email: Some(format!("{}@example.com", username.to_lowercase())),
        display_name: None,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{username}"),
        role,
    }
}

async fn add_user(conn: &mut AsyncPgConnection, username: &str, role: Role) -> User {
    users::insert_user(conn, new_user(username, role)).await.unwrap()
}

fn hash(seed: u8) -> [u8; 32] {
    let mut h = [seed; 32];
    h[0] = 0xA5;
    h
}

fn random_hash() -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    h[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    h
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn users_round_trip_and_login_lookup_ignores_case() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let mut alice = new_user("Alice", Role::SecurityAnalyst);
    alice.display_name = Some("Alice Liddell".into());
    let created = users::insert_user(&mut conn, alice.clone()).await.unwrap();
    assert_eq!(created.id, alice.id);
    assert_eq!(created.username, "Alice");
    assert_eq!(created.role, Role::SecurityAnalyst);
    assert!(created.is_active);
    assert!(!created.mfa_enabled);
    assert_eq!(created.failed_login_attempts, 0);
    assert_eq!(users::get_user(&mut conn, alice.id).await.unwrap(), created);

    for spelling in ["alice", "ALICE", "aLiCe"] {
        let creds = users::find_for_login(&mut conn, spelling).await.unwrap().expect(spelling);
        assert_eq!(creds.user, created);
        assert_eq!(creds.password_hash, alice.password_hash);
        assert_eq!(creds.totp, None);
        assert_eq!(creds.totp_last_step, None);
        // The hash never reaches a log line.
        assert!(!format!("{creds:?}").contains("argon2"));
    }
    assert!(users::find_for_login(&mut conn, "alic").await.unwrap().is_none());
    assert!(users::find_for_login(&mut conn, "").await.unwrap().is_none());

    // Uniqueness is case-insensitive for usernames and emails.
    let dup = users::insert_user(&mut conn, new_user("ALICE", Role::Guest)).await.unwrap_err();
    assert!(
        matches!(&dup, DbError::Conflict { constraint } if constraint == "users_username_lower_key"),
        "{dup:?}"
    );
    let mut same_mail = new_user("alice2", Role::Guest);
    same_mail.email = Some("ALICE@example.com".into());
    let dup = users::insert_user(&mut conn, same_mail).await.unwrap_err();
    assert!(
        matches!(&dup, DbError::Conflict { constraint } if constraint == "users_email_lower_key"),
        "{dup:?}"
    );
    let empty = users::insert_user(&mut conn, new_user("", Role::Guest)).await.unwrap_err();
    assert!(matches!(empty, DbError::Constraint { .. }), "{empty:?}");
    assert!(matches!(users::get_user(&mut conn, UserId::new()).await, Err(DbError::NotFound)));
}

#[tokio::test(flavor = "multi_thread")]
async fn update_password_and_delete() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let bob = add_user(&mut conn, "bob", Role::Guest).await;

    let updated = users::update_user(
        &mut conn,
        bob.id,
        UserChangeset {
            email: Some(None),
            display_name: Some(Some("Bob".into())),
            role: Some(Role::Auditor),
            is_active: Some(false),
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.email, None);
    assert_eq!(updated.display_name.as_deref(), Some("Bob"));
    assert_eq!(updated.role, Role::Auditor);
    assert!(!updated.is_active);
    assert!(updated.updated_at >= bob.updated_at);
    // Absent fields are left alone; an empty changeset only reads.
    let same = users::update_user(
        &mut conn,
        bob.id,
        UserChangeset { role: Some(Role::Guest), ..UserChangeset::default() },
    )
    .await
    .unwrap();
    assert_eq!(same.display_name.as_deref(), Some("Bob"));
    assert_eq!(same.role, Role::Guest);
    assert_eq!(users::update_user(&mut conn, bob.id, UserChangeset::default()).await.unwrap(), same);
    let missing = users::update_user(
        &mut conn,
        UserId::new(),
        UserChangeset { is_active: Some(true), ..UserChangeset::default() },
    )
    .await;
    assert!(matches!(missing, Err(DbError::NotFound)), "{missing:?}");

    let before = users::find_for_login(&mut conn, "bob").await.unwrap().unwrap();
    users::set_password_hash(&mut conn, bob.id, "$argon2id$new").await.unwrap();
    let after = users::find_for_login(&mut conn, "bob").await.unwrap().unwrap();
    assert_eq!(after.password_hash, "$argon2id$new");
    assert!(after.user.password_changed_at > before.user.password_changed_at);
    assert!(matches!(users::set_password_hash(&mut conn, UserId::new(), "x").await, Err(DbError::NotFound)));

    assert_eq!(users::count_users(&mut conn).await.unwrap(), 1);
    users::delete_user(&mut conn, bob.id).await.unwrap();
    assert!(matches!(users::delete_user(&mut conn, bob.id).await, Err(DbError::NotFound)));
    assert_eq!(users::count_users(&mut conn).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn super_admin_existence_counts_only_active_ones() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    assert!(!users::any_super_admin_exists(&mut conn).await.unwrap());
    add_user(&mut conn, "guest", Role::Guest).await;
    assert!(!users::any_super_admin_exists(&mut conn).await.unwrap());
    let root = add_user(&mut conn, "root", Role::SuperAdmin).await;
    assert!(users::any_super_admin_exists(&mut conn).await.unwrap());
    let off = UserChangeset { is_active: Some(false), ..UserChangeset::default() };
    users::update_user(&mut conn, root.id, off).await.unwrap();
    assert!(!users::any_super_admin_exists(&mut conn).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_users_filters_sorts_and_pages() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let mut all = Vec::new();
    for (name, role) in [
        ("carol", Role::SuperAdmin),
        ("Alice", Role::Auditor),
        ("dave_x", Role::Auditor),
        ("bob", Role::Guest),
        ("erin", Role::Auditor),
    ] {
        all.push(add_user(&mut conn, name, role).await);
    }
    let mut daveish = new_user("davey", Role::Guest);
    daveish.display_name = Some("Not Dave X".into());
    all.push(users::insert_user(&mut conn, daveish).await.unwrap());
    let erin = all.iter().find(|u| u.username == "erin").unwrap().id;
    let off = UserChangeset { is_active: Some(false), ..UserChangeset::default() };
    users::update_user(&mut conn, erin, off).await.unwrap();

    let everything = PageRequest::new(100, 0).unwrap();
    let names = |page: &openwatch_db::queries::page::Page<User>| -> Vec<String> {
        page.items.iter().map(|u| u.username.clone()).collect()
    };
    let list = |filter: UserFilter, sort, order, page| {
        let db = &db;
        async move {
            let mut conn = db.pool().get().await.unwrap();
            users::list_users(&mut conn, &filter, sort, order, page).await.unwrap()
        }
    };

    // Username order is case-insensitive; ties cannot happen (unique).
    let page = list(UserFilter::default(), UserSort::Username, SortOrder::Asc, everything).await;
    assert_eq!(names(&page), ["Alice", "bob", "carol", "dave_x", "davey", "erin"]);
    assert_eq!(page.total, 6);
    let page = list(UserFilter::default(), UserSort::Username, SortOrder::Desc, everything).await;
    assert_eq!(names(&page), ["erin", "davey", "dave_x", "carol", "bob", "Alice"]);

    // Creation order (ties broken by id).
    let mut by_created: Vec<&User> = all.iter().collect();
    by_created.sort_by_key(|u| (u.created_at, u.id));
    let expected: Vec<String> = by_created.iter().map(|u| u.username.clone()).collect();
    let page = list(UserFilter::default(), UserSort::CreatedAt, SortOrder::Asc, everything).await;
    assert_eq!(names(&page), expected);
    let page = list(UserFilter::default(), UserSort::CreatedAt, SortOrder::Desc, everything).await;
    assert_eq!(names(&page), expected.iter().rev().cloned().collect::<Vec<_>>());

    // Pages: the slice changes, the total does not.
    let page =
        list(UserFilter::default(), UserSort::Username, SortOrder::Asc, PageRequest::new(2, 1).unwrap())
            .await;
    assert_eq!(names(&page), ["bob", "carol"]);
    assert_eq!(page.total, 6);
    let page =
        list(UserFilter::default(), UserSort::Username, SortOrder::Asc, PageRequest::new(2, 10).unwrap())
            .await;
    assert!(page.items.is_empty());
    assert_eq!(page.total, 6);

    // Filters combine.
    let auditors = UserFilter { role: Some(Role::Auditor), ..UserFilter::default() };
    let page = list(auditors.clone(), UserSort::Username, SortOrder::Asc, everything).await;
    assert_eq!(names(&page), ["Alice", "dave_x", "erin"]);
    let active_auditors = UserFilter { active: Some(true), ..auditors };
    let page =
        list(active_auditors, UserSort::Username, SortOrder::Asc, PageRequest::new(1, 0).unwrap()).await;
    assert_eq!(names(&page), ["Alice"]);
    assert_eq!(page.total, 2);
    let inactive = UserFilter { active: Some(false), ..UserFilter::default() };
    assert_eq!(names(&list(inactive, UserSort::Username, SortOrder::Asc, everything).await), ["erin"]);

    // Text search: username, email, display name; case-insensitive; wildcards literal.
    let q = |text: &str| UserFilter { q: Some(text.to_owned()), ..UserFilter::default() };
    assert_eq!(names(&list(q("ALI"), UserSort::Username, SortOrder::Asc, everything).await), ["Alice"]);
    assert_eq!(names(&list(q("dave x"), UserSort::Username, SortOrder::Asc, everything).await), ["davey"]);
    assert_eq!(names(&list(q("_"), UserSort::Username, SortOrder::Asc, everything).await), ["dave_x"]);
    assert!(list(q("%"), UserSort::Username, SortOrder::Asc, everything).await.items.is_empty());
    let by_mail = list(q("@EXAMPLE.com"), UserSort::Username, SortOrder::Asc, everything).await;
    assert_eq!(by_mail.total, 6);
    // An empty search is no filter.
    assert_eq!(list(q(""), UserSort::Username, SortOrder::Asc, everything).await.total, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_lock_the_account_and_a_success_resets_it() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "mallory-target", Role::Guest).await;
    let t0 = now();
    let lock_for = TimeDelta::minutes(15);

    let first = users::record_login_failure(&mut conn, user.id, t0, 3, lock_for).await.unwrap();
    assert_eq!((first.attempts, first.locked_until), (1, None));
    let second = users::record_login_failure(&mut conn, user.id, t0, 3, lock_for).await.unwrap();
    assert_eq!((second.attempts, second.locked_until), (2, None));
    assert_eq!(users::get_user(&mut conn, user.id).await.unwrap().failed_login_attempts, 2);

    let third = users::record_login_failure(&mut conn, user.id, t0, 3, lock_for).await.unwrap();
    assert_eq!(third.attempts, 3);
    assert_eq!(third.locked_until, Some(t0 + lock_for));
    let locked = users::get_user(&mut conn, user.id).await.unwrap();
    assert_eq!(locked.locked_until, Some(t0 + lock_for));
    assert_eq!(locked.failed_login_attempts, 0, "the counter restarts after locking");

    // A failure after the lock ran out counts from 1 and reports no active lock.
    let later = t0 + TimeDelta::minutes(20);
    let next = users::record_login_failure(&mut conn, user.id, later, 3, lock_for).await.unwrap();
    assert_eq!((next.attempts, next.locked_until), (1, None));

    users::record_login_success(&mut conn, user.id, later).await.unwrap();
    let reset = users::get_user(&mut conn, user.id).await.unwrap();
    assert_eq!(reset.failed_login_attempts, 0);
    assert_eq!(reset.locked_until, None);
    assert_eq!(reset.last_login_at, Some(later));

    // max_attempts 0 behaves as 1; unknown users are NotFound.
    let instant = users::record_login_failure(&mut conn, user.id, later, 0, lock_for).await.unwrap();
    assert_eq!(instant.attempts, 1);
    assert_eq!(instant.locked_until, Some(later + lock_for));
    let missing = users::record_login_failure(&mut conn, UserId::new(), t0, 3, lock_for).await;
    assert!(matches!(missing, Err(DbError::NotFound)), "{missing:?}");
    assert!(matches!(
        users::record_login_success(&mut conn, UserId::new(), t0).await,
        Err(DbError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_login_failures_are_all_counted() {
    let db = TestDatabase::new().await;
    let user = add_user(&mut db.pool().get().await.unwrap(), "busy", Role::Guest).await;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let pool = db.pool();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                barrier.wait().await;
                users::record_login_failure(&mut conn, user.id, now(), 100, TimeDelta::minutes(1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.push(task.await.unwrap().attempts);
    }
    attempts.sort_unstable();
    assert_eq!(attempts, (1..=8).collect::<Vec<u32>>());
    let stored = users::get_user(&mut db.pool().get().await.unwrap(), user.id).await.unwrap();
    assert_eq!(stored.failed_login_attempts, 8);
}

// ---------------------------------------------------------------------------------------
// Refresh sessions
// ---------------------------------------------------------------------------------------

fn login(user: UserId, token_hash: [u8; 32], expires_at: DateTime<Utc>) -> NewSession {
    NewSession {
        id: Uuid::now_v7(),
        family_id: SessionId::new(),
        user_id: user,
        token_hash,
        expires_at,
        user_agent: Some("test-agent/1.0".into()),
        ip: Some("192.0.2.7".parse::<IpAddr>().unwrap()),
    }
}

fn successor(token_hash: [u8; 32], expires_at: DateTime<Utc>) -> NewRefreshToken {
    NewRefreshToken {
        id: Uuid::now_v7(),
        token_hash,
        expires_at,
        user_agent: None,
        ip: Some("2001:db8::1".parse::<IpAddr>().unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotation_and_reuse_revokes_the_family() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "rotor", Role::Guest).await;
    let t0 = now();
    let exp = t0 + TimeDelta::days(7);
    let session = login(user.id, hash(1), exp);
    let family = session.family_id;
    sessions::insert_session(&mut conn, &session).await.unwrap();
    assert!(!sessions::is_family_revoked(&mut conn, family).await.unwrap());

    let out = sessions::rotate(&mut conn, &hash(1), &successor(hash(2), exp), t0).await.unwrap();
    assert_eq!(out, RotateOutcome::Rotated { user_id: user.id, family_id: family });
    let out = sessions::rotate(&mut conn, &hash(2), &successor(hash(3), exp), t0).await.unwrap();
    assert_eq!(out, RotateOutcome::Rotated { user_id: user.id, family_id: family });
    assert!(!sessions::is_family_revoked(&mut conn, family).await.unwrap());

    // Another login of the same user is a different family and survives the reuse below.
    let other = login(user.id, hash(9), exp);
    sessions::insert_session(&mut conn, &other).await.unwrap();

    // Presenting the first (rotated) token again: the whole family goes, including the
    // current token, and the would-be successor is not stored.
    let out = sessions::rotate(&mut conn, &hash(1), &successor(hash(4), exp), t0).await.unwrap();
    assert_eq!(out, RotateOutcome::Reused { family_id: family, user_id: user.id });
    assert!(sessions::is_family_revoked(&mut conn, family).await.unwrap());
    assert!(!sessions::is_family_revoked(&mut conn, other.family_id).await.unwrap());
    let out = sessions::rotate(&mut conn, &hash(3), &successor(hash(5), exp), t0).await.unwrap();
    assert_eq!(out, RotateOutcome::Reused { family_id: family, user_id: user.id });
    assert_eq!(
        sessions::rotate(&mut conn, &hash(4), &successor(hash(6), exp), t0).await.unwrap(),
        RotateOutcome::Unknown
    );

    let reasons: Vec<Reason> = diesel::sql_query(
        "SELECT revoked_reason FROM refresh_sessions WHERE family_id = $1 ORDER BY issued_at, id",
    )
    .bind::<diesel::sql_types::Uuid, _>(family.into_uuid())
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.iter().all(|r| r.revoked_reason.as_deref() == Some(sessions::REASON_REFRESH_TOKEN_REUSED))
    );
    // Revoking an already revoked family touches nothing.
    assert_eq!(sessions::revoke_family(&mut conn, family, sessions::REASON_LOGOUT, t0).await.unwrap(), 0);
}

#[derive(diesel::QueryableByName)]
struct Reason {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    revoked_reason: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_unknown_and_logged_out_refresh_tokens() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "sleepy", Role::Guest).await;
    let t0 = now();
    let session = login(user.id, hash(1), t0 + TimeDelta::minutes(10));
    sessions::insert_session(&mut conn, &session).await.unwrap();

    let later = t0 + TimeDelta::minutes(11);
    let next = successor(hash(2), later + TimeDelta::days(1));
    assert_eq!(sessions::rotate(&mut conn, &hash(1), &next, later).await.unwrap(), RotateOutcome::Expired);
    // Nothing changed: the family is not revoked and no successor was stored.
    assert!(!sessions::is_family_revoked(&mut conn, session.family_id).await.unwrap());
    assert_eq!(sessions::rotate(&mut conn, &hash(2), &next, later).await.unwrap(), RotateOutcome::Unknown);
    // Exactly at expiry counts as expired.
    let at = session.expires_at;
    assert_eq!(sessions::rotate(&mut conn, &hash(1), &next, at).await.unwrap(), RotateOutcome::Expired);

    // Logout, then the token is presented again: reported as reuse.
    let live = login(user.id, hash(3), t0 + TimeDelta::days(1));
    sessions::insert_session(&mut conn, &live).await.unwrap();
    assert_eq!(
        sessions::revoke_family(&mut conn, live.family_id, sessions::REASON_LOGOUT, t0).await.unwrap(),
        1
    );
    assert!(sessions::is_family_revoked(&mut conn, live.family_id).await.unwrap());
    let out = sessions::rotate(&mut conn, &hash(3), &successor(hash(4), t0 + TimeDelta::days(1)), t0)
        .await
        .unwrap();
    assert_eq!(out, RotateOutcome::Reused { family_id: live.family_id, user_id: user.id });

    // An unknown family fails closed.
    assert!(sessions::is_family_revoked(&mut conn, SessionId::new()).await.unwrap());

    // Bad input is a constraint error, not a panic.
    let past = login(user.id, hash(5), t0 - TimeDelta::days(1));
    let err = sessions::insert_session(&mut conn, &past).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
    let orphan = login(UserId::new(), hash(6), t0 + TimeDelta::days(1));
    let err = sessions::insert_session(&mut conn, &orphan).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_all_for_user_ends_every_family_of_that_user_only() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let a = add_user(&mut conn, "a", Role::Guest).await;
    let b = add_user(&mut conn, "b", Role::Guest).await;
    let exp = now() + TimeDelta::days(1);
    let (a1, a2, b1) = (login(a.id, hash(1), exp), login(a.id, hash(2), exp), login(b.id, hash(3), exp));
    for s in [&a1, &a2, &b1] {
        sessions::insert_session(&mut conn, s).await.unwrap();
    }
    let n = sessions::revoke_all_for_user(&mut conn, a.id, sessions::REASON_PASSWORD_CHANGED, now())
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(sessions::is_family_revoked(&mut conn, a1.family_id).await.unwrap());
    assert!(sessions::is_family_revoked(&mut conn, a2.family_id).await.unwrap());
    assert!(!sessions::is_family_revoked(&mut conn, b1.family_id).await.unwrap());
    assert_eq!(
        sessions::revoke_all_for_user(&mut conn, a.id, sessions::REASON_ADMIN, now()).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_rotations_of_one_token_have_exactly_one_winner() {
    let db = TestDatabase::new().await;
    let user = add_user(&mut db.pool().get().await.unwrap(), "racer", Role::Guest).await;
    let exp = now() + TimeDelta::days(1);
    for round in 0..10u8 {
        let presented = random_hash();
        let session = login(user.id, presented, exp);
        sessions::insert_session(&mut db.pool().get().await.unwrap(), &session).await.unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (pool, barrier) = (db.pool(), barrier.clone());
                tokio::spawn(async move {
                    let mut conn = pool.get().await.unwrap();
                    barrier.wait().await;
                    sessions::rotate(&mut conn, &presented, &successor(random_hash(), exp), now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let won = outcomes.iter().filter(|o| matches!(o, RotateOutcome::Rotated { .. })).count();
        let reused = outcomes.iter().filter(|o| matches!(o, RotateOutcome::Reused { .. })).count();
        assert_eq!((won, reused), (1, 1), "round {round}: {outcomes:?}");
        // The loser saw the rotation as reuse and revoked the family.
        let mut conn = db.pool().get().await.unwrap();
        assert!(sessions::is_family_revoked(&mut conn, session.family_id).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_waits_for_the_row_lock_of_a_concurrent_one() {
    let db = TestDatabase::new().await;
    let user = add_user(&mut db.pool().get().await.unwrap(), "waiter", Role::Guest).await;
    let exp = now() + TimeDelta::days(1);
    let session = login(user.id, hash(1), exp);
    sessions::insert_session(&mut db.pool().get().await.unwrap(), &session).await.unwrap();

    let mut first = db.pool().get().await.unwrap();
    let pool = db.pool();
    let second = first
        .transaction::<_, DbError, _>(async |conn| {
            let out = sessions::rotate(conn, &hash(1), &successor(hash(2), exp), now()).await?;
            assert!(matches!(out, RotateOutcome::Rotated { .. }), "{out:?}");
            // The first rotation has not committed: the second must wait for it.
            let second = tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                sessions::rotate(&mut conn, &hash(1), &successor(hash(3), exp), now()).await.unwrap()
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!second.is_finished(), "the second rotation did not wait for the row lock");
            Ok(second)
        })
        .await
        .unwrap();
    let out = second.await.unwrap();
    assert_eq!(out, RotateOutcome::Reused { family_id: session.family_id, user_id: user.id });
}

// ---------------------------------------------------------------------------------------
// API tokens
// ---------------------------------------------------------------------------------------

fn new_token(user: UserId, token_hash: [u8; 32], expires_at: Option<DateTime<Utc>>) -> NewApiToken {
    NewApiToken {
        id: ApiTokenId::new(),
        user_id: user,
        name: "ci".into(),
        token_prefix: "owt_abcd".into(),
        token_hash,
        permissions: vec![Permission::HostsRead, Permission::ScansWrite],
        expires_at,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_authenticate_only_while_valid() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let owner = add_user(&mut conn, "automation", Role::SecurityAnalyst).await;
    let stranger = add_user(&mut conn, "stranger", Role::Guest).await;
    let t0 = now();

    let token = api_tokens::insert_api_token(&mut conn, new_token(owner.id, hash(1), None)).await.unwrap();
    assert_eq!(token.permissions, [Permission::HostsRead, Permission::ScansWrite]);
    assert_eq!(token.last_used_at, None);
    assert!(!format!("{:?}", new_token(owner.id, hash(1), None)).contains("165"));

    let (found, user) = api_tokens::authenticate(&mut conn, &hash(1), t0).await.unwrap().unwrap();
    assert_eq!(found.id, token.id);
    assert_eq!(found.permissions, token.permissions);
    assert_eq!(found.last_used_at, Some(t0));
    assert_eq!(user.id, owner.id);
    assert_eq!(user.role, Role::SecurityAnalyst);
    assert!(api_tokens::authenticate(&mut conn, &hash(2), t0).await.unwrap().is_none());

    // last_used_at is written at most once a minute.
    let soon = t0 + TimeDelta::seconds(30);
    api_tokens::authenticate(&mut conn, &hash(1), soon).await.unwrap().unwrap();
    let listed = api_tokens::list_for_user(&mut conn, owner.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(t0));
    let later = t0 + TimeDelta::minutes(2);
    api_tokens::authenticate(&mut conn, &hash(1), later).await.unwrap().unwrap();
    assert_eq!(api_tokens::list_for_user(&mut conn, owner.id).await.unwrap()[0].last_used_at, Some(later));

    // Expiry is exclusive at the instant.
    let expiring =
        api_tokens::insert_api_token(&mut conn, new_token(owner.id, hash(2), Some(t0 + TimeDelta::hours(1))))
            .await
            .unwrap();
    assert!(api_tokens::authenticate(&mut conn, &hash(2), t0).await.unwrap().is_some());
    assert!(api_tokens::authenticate(&mut conn, &hash(2), t0 + TimeDelta::hours(1)).await.unwrap().is_none());
    let newest_first: Vec<ApiTokenId> =
        api_tokens::list_for_user(&mut conn, owner.id).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(newest_first, [expiring.id, token.id]);
    assert!(api_tokens::list_for_user(&mut conn, stranger.id).await.unwrap().is_empty());

    // Only the owner revokes; revoking twice is fine; a revoked token is refused.
    let err = api_tokens::revoke(&mut conn, stranger.id, token.id).await.unwrap_err();
    assert!(matches!(err, DbError::NotFound), "{err:?}");
    assert!(matches!(
        api_tokens::revoke(&mut conn, owner.id, ApiTokenId::new()).await,
        Err(DbError::NotFound)
    ));
    assert!(api_tokens::authenticate(&mut conn, &hash(1), later).await.unwrap().is_some());
    api_tokens::revoke(&mut conn, owner.id, token.id).await.unwrap();
    let revoked_at = api_tokens::list_for_user(&mut conn, owner.id).await.unwrap()[1].revoked_at;
    assert!(revoked_at.is_some());
    api_tokens::revoke(&mut conn, owner.id, token.id).await.unwrap();
    assert_eq!(api_tokens::list_for_user(&mut conn, owner.id).await.unwrap()[1].revoked_at, revoked_at);
    assert!(api_tokens::authenticate(&mut conn, &hash(1), later).await.unwrap().is_none());

    // An inactive owner's tokens are refused, and accepted again on reactivation.
    let mut fresh = new_token(stranger.id, hash(3), None);
    fresh.permissions = vec![];
    let fresh = api_tokens::insert_api_token(&mut conn, fresh).await.unwrap();
    assert!(fresh.permissions.is_empty());
    assert!(api_tokens::authenticate(&mut conn, &hash(3), t0).await.unwrap().is_some());
    let off = UserChangeset { is_active: Some(false), ..UserChangeset::default() };
    users::update_user(&mut conn, stranger.id, off).await.unwrap();
    assert!(api_tokens::authenticate(&mut conn, &hash(3), t0).await.unwrap().is_none());
    let on = UserChangeset { is_active: Some(true), ..UserChangeset::default() };
    users::update_user(&mut conn, stranger.id, on).await.unwrap();
    assert!(api_tokens::authenticate(&mut conn, &hash(3), t0).await.unwrap().is_some());

    // Bad input: unknown owner, empty name, duplicate hash.
    let err =
        api_tokens::insert_api_token(&mut conn, new_token(UserId::new(), hash(4), None)).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
    let mut unnamed = new_token(owner.id, hash(4), None);
    unnamed.name.clear();
    let err = api_tokens::insert_api_token(&mut conn, unnamed).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
    let err = api_tokens::insert_api_token(&mut conn, new_token(owner.id, hash(3), None)).await.unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err:?}");

    // Tokens go with their user.
    users::delete_user(&mut conn, stranger.id).await.unwrap();
    assert!(api_tokens::authenticate(&mut conn, &hash(3), t0).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_stored_scopes_grant_nothing() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let owner = add_user(&mut conn, "legacy", Role::Auditor).await;
    let token = api_tokens::insert_api_token(&mut conn, new_token(owner.id, hash(1), None)).await.unwrap();
    diesel::sql_query(
        "UPDATE api_tokens SET permissions = ARRAY['hosts:read', 'reports:burn'] WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(token.id.into_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    let (found, _) = api_tokens::authenticate(&mut conn, &hash(1), now()).await.unwrap().unwrap();
    assert_eq!(found.permissions, [Permission::HostsRead]);
}

// ---------------------------------------------------------------------------------------
// MFA
// ---------------------------------------------------------------------------------------

fn sealed(seed: u8) -> SealedTotp {
    SealedTotp { ciphertext: vec![seed; 36], nonce: [seed; 12], key_id: "k1".into() }
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_enrolment_enable_and_step_replay_refusal() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "otp", Role::Guest).await;

    // No secret: no step can be accepted, MFA cannot be enabled.
    assert!(!mfa::advance_totp_step(&mut conn, user.id, 100).await.unwrap());
    let err = mfa::enable_mfa(&mut conn, user.id, &[hash(1)]).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Constraint { constraint, .. } if constraint == "users_mfa_needs_totp"),
        "{err:?}"
    );
    assert_eq!(mfa::remaining_backup_codes(&mut conn, user.id).await.unwrap(), 0, "rolled back");

    // Enrolment keeps MFA off; a second enrolment replaces the pending secret.
    assert!(mfa::set_pending_totp(&mut conn, user.id, &sealed(1)).await.unwrap());
    assert!(mfa::advance_totp_step(&mut conn, user.id, 100).await.unwrap());
    assert!(mfa::set_pending_totp(&mut conn, user.id, &sealed(2)).await.unwrap());
    let creds = users::find_for_login(&mut conn, "otp").await.unwrap().unwrap();
    assert!(!creds.user.mfa_enabled);
    assert_eq!(creds.totp, Some(sealed(2)));
    assert_eq!(creds.totp_last_step, None, "a new secret forgets the old step");
    assert!(!format!("{creds:?}").contains("[2, 2"));

    // Steps only move forward.
    assert!(mfa::advance_totp_step(&mut conn, user.id, 1_000).await.unwrap());
    assert!(!mfa::advance_totp_step(&mut conn, user.id, 1_000).await.unwrap(), "replay");
    assert!(!mfa::advance_totp_step(&mut conn, user.id, 999).await.unwrap(), "older code");
    assert!(mfa::advance_totp_step(&mut conn, user.id, 1_001).await.unwrap());
    assert!(!mfa::advance_totp_step(&mut conn, user.id, u64::MAX).await.unwrap());
    assert!(!mfa::advance_totp_step(&mut conn, UserId::new(), 5_000).await.unwrap());

    let codes: Vec<[u8; 32]> = (0..mfa::BACKUP_CODE_COUNT as u8).map(hash).collect();
    mfa::enable_mfa(&mut conn, user.id, &codes).await.unwrap();
    let creds = users::find_for_login(&mut conn, "otp").await.unwrap().unwrap();
    assert!(creds.user.mfa_enabled);
    assert_eq!(creds.totp, Some(sealed(2)));
    assert_eq!(creds.totp_last_step, Some(1_001));
    assert_eq!(mfa::remaining_backup_codes(&mut conn, user.id).await.unwrap(), 10);
    // An enabled secret is not swapped by a new enrolment.
    assert!(!mfa::set_pending_totp(&mut conn, user.id, &sealed(3)).await.unwrap());
    let creds = users::find_for_login(&mut conn, "otp").await.unwrap().unwrap();
    assert_eq!(creds.totp, Some(sealed(2)));

    mfa::disable_mfa(&mut conn, user.id).await.unwrap();
    let creds = users::find_for_login(&mut conn, "otp").await.unwrap().unwrap();
    assert!(!creds.user.mfa_enabled);
    assert_eq!((creds.totp, creds.totp_last_step), (None, None));
    assert_eq!(mfa::remaining_backup_codes(&mut conn, user.id).await.unwrap(), 0);
    assert!(!mfa::advance_totp_step(&mut conn, user.id, 2_000).await.unwrap());

    let missing = UserId::new();
    assert!(matches!(mfa::set_pending_totp(&mut conn, missing, &sealed(1)).await, Err(DbError::NotFound)));
    assert!(matches!(mfa::enable_mfa(&mut conn, missing, &codes).await, Err(DbError::NotFound)));
    assert!(matches!(mfa::disable_mfa(&mut conn, missing).await, Err(DbError::NotFound)));
    let mut bad = sealed(4);
    bad.key_id.clear();
    let err = mfa::set_pending_totp(&mut conn, user.id, &bad).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uses_of_one_totp_step_accept_exactly_one() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "twice", Role::Guest).await;
    mfa::set_pending_totp(&mut conn, user.id, &sealed(1)).await.unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, barrier) = (db.pool(), barrier.clone());
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                barrier.wait().await;
                mfa::advance_totp_step(&mut conn, user.id, 58_000_000).await.unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_codes_work_once_and_are_replaced_on_regeneration() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "codes", Role::Guest).await;
    let other = add_user(&mut conn, "other", Role::Guest).await;
    for u in [&user, &other] {
        mfa::set_pending_totp(&mut conn, u.id, &sealed(1)).await.unwrap();
    }
    let first: Vec<[u8; 32]> = (0..10).map(hash).collect();
    mfa::enable_mfa(&mut conn, user.id, &first).await.unwrap();
    mfa::enable_mfa(&mut conn, other.id, &[hash(50)]).await.unwrap();

    assert!(mfa::use_backup_code(&mut conn, user.id, &hash(3)).await.unwrap());
    assert!(!mfa::use_backup_code(&mut conn, user.id, &hash(3)).await.unwrap(), "single use");
    assert!(!mfa::use_backup_code(&mut conn, user.id, &hash(99)).await.unwrap(), "unknown code");
    assert!(!mfa::use_backup_code(&mut conn, other.id, &hash(4)).await.unwrap(), "someone else's code");
    assert!(!mfa::use_backup_code(&mut conn, user.id, &hash(50)).await.unwrap(), "someone else's code");
    assert_eq!(mfa::remaining_backup_codes(&mut conn, user.id).await.unwrap(), 9);
    assert_eq!(mfa::remaining_backup_codes(&mut conn, other.id).await.unwrap(), 1);

    // Regeneration replaces every old code (used or not).
    let second: Vec<[u8; 32]> = (100..110).map(hash).collect();
    mfa::enable_mfa(&mut conn, user.id, &second).await.unwrap();
    assert_eq!(mfa::remaining_backup_codes(&mut conn, user.id).await.unwrap(), 10);
    assert!(!mfa::use_backup_code(&mut conn, user.id, &hash(4)).await.unwrap(), "old code");
    assert!(mfa::use_backup_code(&mut conn, user.id, &hash(104)).await.unwrap());
    assert_eq!(mfa::remaining_backup_codes(&mut conn, other.id).await.unwrap(), 1, "untouched");

    // A repeated hash is refused as a whole.
    let err = mfa::enable_mfa(&mut conn, other.id, &[hash(7), hash(7)]).await.unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err:?}");

    // Deleting the user deletes the codes.
    users::delete_user(&mut conn, other.id).await.unwrap();
    assert_eq!(mfa::remaining_backup_codes(&mut conn, other.id).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Constraints of migration 000600 itself
// ---------------------------------------------------------------------------------------

async fn constraint_of(conn: &mut AsyncPgConnection, sql: &str) -> String {
    match diesel::sql_query(sql).execute(conn).await.map_err(DbError::from) {
        Err(DbError::Constraint { constraint, .. }) => constraint,
        other => panic!("{sql}: expected a constraint violation, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_migration_constraints_hold() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = add_user(&mut conn, "checked", Role::Guest).await;
    let host = db.insert_host("maint-1", 22).await;
    let id = user.id;

    let c = constraint_of(&mut conn, &format!("UPDATE users SET mfa_enabled = true WHERE id = '{id}'")).await;
    assert_eq!(c, "users_mfa_needs_totp");
    let c = constraint_of(
        &mut conn,
        &format!("UPDATE users SET totp_ciphertext = '\\x01', totp_key_id = 'k' WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(c, "users_totp_parts_together");
    let c = constraint_of(
        &mut conn,
        &format!("UPDATE users SET totp_ciphertext = '\\x01', totp_key_id = 'k', totp_nonce = '\\x0102' WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(c, "users_totp_nonce_check");
    let c = constraint_of(
        &mut conn,
        &format!("INSERT INTO mfa_backup_codes (id, user_id, code_hash) VALUES (gen_random_uuid(), '{id}', '\\x01')"),
    )
    .await;
    assert_eq!(c, "mfa_backup_codes_code_hash_check");
    let c = constraint_of(
        &mut conn,
        &format!(
            "INSERT INTO api_tokens (id, user_id, name, token_prefix, token_hash, permissions) \
             VALUES (gen_random_uuid(), '{id}', 'n', 'p', '\\x{}', ARRAY['hosts:read', NULL])",
            "ab".repeat(32)
        ),
    )
    .await;
    assert_eq!(c, "api_tokens_permissions_check");
    let c = constraint_of(
        &mut conn,
        &format!(
            "INSERT INTO host_maintenance_windows (id, host_id, starts_at, ends_at, created_by) \
             VALUES (gen_random_uuid(), '{host}', now(), now() - interval '1 hour', '{id}')"
        ),
    )
    .await;
    assert_eq!(c, "host_maintenance_windows_check");

    // A window survives its author (SET NULL) and goes with its host (CASCADE).
    diesel::sql_query(format!(
        "INSERT INTO host_maintenance_windows (id, host_id, starts_at, ends_at, created_by) \
         VALUES (gen_random_uuid(), '{host}', now(), now() + interval '1 hour', '{id}')"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    users::delete_user(&mut conn, id).await.unwrap();
    let left = diesel::sql_query("SELECT 1 FROM host_maintenance_windows WHERE created_by IS NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 1);
    diesel::sql_query(format!("DELETE FROM hosts WHERE id = '{host}'")).execute(&mut conn).await.unwrap();
    let left = diesel::sql_query("SELECT 1 FROM host_maintenance_windows").execute(&mut conn).await.unwrap();
    assert_eq!(left, 0);
}
