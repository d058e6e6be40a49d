//! The audit log against a real PostgreSQL: recording, filtered paging, keyset streaming
//! and the append-only trigger (with its retention and user-deletion exceptions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::access::Role;
use openwatch_common::ids::UserId;
use openwatch_db::DbError;
use openwatch_db::queries::audit::{self, AuditActor, AuditEvent, AuditFilter, AuditOutcome, NewAuditEvent};
use openwatch_db::queries::page::{Page, PageRequest, SortOrder};
use openwatch_db::queries::users::{self, NewUser};
use openwatch_test_support::database::TestDatabase;
use serde_json::json;

async fn add_user(conn: &mut AsyncPgConnection, username: &str) -> UserId {
    let id = UserId::new();
    let user = NewUser {
        id,
        username: username.to_owned(),
        email: None,
        display_name: None,
        password_hash: "$argon2id$x".to_owned(),
        role: Role::SecurityAdmin,
    };
    users::insert_user(conn, user).await.unwrap();
    id
}

fn event(
    actor: Option<(UserId, &str)>,
    action: &str,
    resource: (&str, Option<&str>),
    outcome: AuditOutcome,
) -> NewAuditEvent {
    NewAuditEvent {
        actor_user_id: actor.map(|(id, _)| id),
        actor_name: actor.map_or("system", |(_, name)| name).to_owned(),
        action: action.to_owned(),
        resource_type: resource.0.to_owned(),
        resource_id: resource.1.map(ToOwned::to_owned),
        outcome,
        ip: Some("198.51.100.4".parse::<IpAddr>().unwrap()),
        details: json!({ "n": action.len() }),
    }
}

fn ids(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// Events recorded in order; returns their ids.
async fn seed(conn: &mut AsyncPgConnection, alice: UserId, bob: UserId) -> Vec<i64> {
    let events = [
        event(Some((alice, "alice")), "user.login", ("session", None), AuditOutcome::Success),
        event(Some((bob, "bob")), "host.create", ("host", Some("h1")), AuditOutcome::Success),
        event(None, "user.login", ("session", None), AuditOutcome::Failure),
        event(Some((bob, "bob")), "host.delete", ("host", Some("h1")), AuditOutcome::Denied),
        event(Some((alice, "alice")), "host.update", ("host", Some("h2")), AuditOutcome::Success),
        event(Some((alice, "alice")), "user.login", ("session", None), AuditOutcome::Success),
    ];
    let mut ids = Vec::new();
    for e in &events {
        ids.push(audit::record(conn, e).await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn record_and_query_with_filters_sort_and_pages() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = add_user(&mut conn, "alice").await;
    let bob = add_user(&mut conn, "bob").await;
    let before = Utc::now().trunc_subsecs(6) - TimeDelta::seconds(1);
    let seeded = seed(&mut conn, alice, bob).await;
    assert!(seeded.windows(2).all(|w| w[0] < w[1]), "ids follow recording order: {seeded:?}");
    let all = PageRequest::new(100, 0).unwrap();

    let page = audit::query(&mut conn, &AuditFilter::default(), all, SortOrder::Asc).await.unwrap();
    assert_eq!(page.total, 6);
    assert_eq!(ids(&page.items), seeded);
    let first = &page.items[0];
    assert_eq!(first.actor_user_id, Some(alice));
    assert_eq!(first.actor_name, "alice");
    assert_eq!(first.action, "user.login");
    assert_eq!(first.resource_type, "session");
    assert_eq!(first.resource_id, None);
    assert_eq!(first.outcome, AuditOutcome::Success);
    assert_eq!(first.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(first.details, json!({ "n": 10 }));
    assert!(first.occurred_at >= before);

    let desc =
        audit::query(&mut conn, &AuditFilter::default(), PageRequest::new(2, 1).unwrap(), SortOrder::Desc)
            .await
            .unwrap();
    assert_eq!(ids(&desc.items), [seeded[4], seeded[3]]);
    assert_eq!(desc.total, 6);

    let q = |filter: AuditFilter| {
        let db = &db;
        async move {
            let mut conn = db.pool().get().await.unwrap();
            audit::query(&mut conn, &filter, all, SortOrder::Asc).await.unwrap()
        }
    };
    let by_user = q(AuditFilter { actor: Some(AuditActor::User(alice)), ..AuditFilter::default() }).await;
    assert_eq!(ids(&by_user.items), [seeded[0], seeded[4], seeded[5]]);
    assert_eq!(by_user.total, 3);
    let by_name =
        q(AuditFilter { actor: Some(AuditActor::Name("system".into())), ..AuditFilter::default() }).await;
    assert_eq!(ids(&by_name.items), [seeded[2]]);
    let logins = q(AuditFilter { action: Some("user.login".into()), ..AuditFilter::default() }).await;
    assert_eq!(ids(&logins.items), [seeded[0], seeded[2], seeded[5]]);
    let failed_logins = q(AuditFilter {
        action: Some("user.login".into()),
        outcome: Some(AuditOutcome::Failure),
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(ids(&failed_logins.items), [seeded[2]]);
    let h1 = q(AuditFilter {
        resource_type: Some("host".into()),
        resource_id: Some("h1".into()),
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(ids(&h1.items), [seeded[1], seeded[3]]);
    let denied = q(AuditFilter { outcome: Some(AuditOutcome::Denied), ..AuditFilter::default() }).await;
    assert_eq!(ids(&denied.items), [seeded[3]]);
    let hosts = q(AuditFilter { resource_type: Some("host".into()), ..AuditFilter::default() }).await;
    assert_eq!(hosts.total, 3);

    // Time window: since is inclusive, until exclusive.
    let future = Utc::now() + TimeDelta::hours(1);
    assert_eq!(q(AuditFilter { since: Some(before), ..AuditFilter::default() }).await.total, 6);
    assert_eq!(q(AuditFilter { since: Some(future), ..AuditFilter::default() }).await.total, 0);
    assert_eq!(q(AuditFilter { until: Some(before), ..AuditFilter::default() }).await.total, 0);
    let at = page.items[0].occurred_at;
    assert_eq!(q(AuditFilter { until: Some(at), ..AuditFilter::default() }).await.total, 0);
    assert!(
        q(AuditFilter { since: Some(at), until: Some(future), ..AuditFilter::default() }).await.total >= 1
    );

    // Bad input is refused by a constraint, never a panic.
    let mut empty = event(None, "", ("x", None), AuditOutcome::Success);
    let err = audit::record(&mut conn, &empty).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
    empty.action = "ok".into();
    empty.actor_user_id = Some(UserId::new());
    let err = audit::record(&mut conn, &empty).await.unwrap_err();
    assert!(matches!(err, DbError::Constraint { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keyset_streaming_walks_every_matching_event_once() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = add_user(&mut conn, "alice").await;
    let mut alice_ids = Vec::new();
    for i in 0..25 {
        let actor = if i % 3 == 0 { None } else { Some((alice, "alice")) };
        let id =
            audit::record(&mut conn, &event(actor, "scan.request", ("scan", None), AuditOutcome::Success))
                .await
                .unwrap();
        if actor.is_some() {
            alice_ids.push(id);
        }
    }
    let filter = AuditFilter { actor: Some(AuditActor::User(alice)), ..AuditFilter::default() };

    let mut streamed = Vec::new();
    let mut after = 0;
    let mut batches = 0;
    loop {
        let batch = audit::stream_after(&mut conn, &filter, after, 4).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 4);
        batches += 1;
        after = batch.last().unwrap().id;
        streamed.extend(ids(&batch));
        // Appends during the export neither shift nor repeat what follows.
        if batches == 2 {
            let late = audit::record(
                &mut conn,
                &event(Some((alice, "alice")), "late", ("scan", None), AuditOutcome::Success),
            )
            .await
            .unwrap();
            alice_ids.push(late);
        }
    }
    assert_eq!(streamed, alice_ids);
    assert_eq!(batches, alice_ids.len().div_ceil(4));

    // The batch size is clamped, never an error.
    assert_eq!(audit::stream_after(&mut conn, &filter, 0, 0).await.unwrap().len(), 1);
    assert_eq!(audit::stream_after(&mut conn, &filter, 0, i64::MAX).await.unwrap().len(), alice_ids.len());
    assert!(audit::stream_after(&mut conn, &filter, i64::MAX, 10).await.unwrap().is_empty());
}

async fn all_events(conn: &mut AsyncPgConnection) -> Page<AuditEvent> {
    audit::query(conn, &AuditFilter::default(), PageRequest::default(), SortOrder::Asc).await.unwrap()
}

fn query_error_message(err: &DbError) -> String {
    match err {
        DbError::Query(inner) => inner.to_string(),
        other => panic!("expected a query error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_append_only() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let alice = add_user(&mut conn, "alice").await;
    let bob = add_user(&mut conn, "bob").await;
    let seeded = seed(&mut conn, alice, bob).await;

    for sql in [
        "UPDATE audit_events SET outcome = 'success' WHERE outcome = 'denied'",
        "UPDATE audit_events SET actor_name = 'nobody'",
        // Even only clearing the actor is refused when another column changes too.
        "UPDATE audit_events SET actor_user_id = NULL, details = '{}'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).await.map_err(DbError::from).unwrap_err();
        let message = query_error_message(&err);
        assert!(message.contains("audit_events is append-only"), "{sql}: {message}");
    }
    let page = all_events(&mut conn).await;
    assert_eq!(ids(&page.items), seeded);
    assert!(page.items.iter().any(|e| e.outcome == AuditOutcome::Denied));

    // Deleting a user still works: the FK's SET NULL is the one update let through, and
    // the name stays.
    users::delete_user(&mut conn, bob).await.unwrap();
    let page = all_events(&mut conn).await;
    let bobs: Vec<&AuditEvent> = page.items.iter().filter(|e| e.actor_name == "bob").collect();
    assert_eq!(bobs.len(), 2);
    assert!(bobs.iter().all(|e| e.actor_user_id.is_none()));

    // The retention job opts in for its own transaction only.
    let cutoff: DateTime<Utc> = Utc::now() + TimeDelta::seconds(1);
    let deleted = conn
        .transaction::<_, DbError, _>(async |conn| {
            diesel::sql_query("SET LOCAL openwatch.audit_retention = 'on'").execute(conn).await?;
            Ok(diesel::sql_query(format!(
                "DELETE FROM audit_events WHERE occurred_at < '{}' AND action = 'user.login'",
                cutoff.to_rfc3339()
            ))
            .execute(conn)
            .await?)
        })
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let err = diesel::sql_query("DELETE FROM audit_events")
        .execute(&mut conn)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(query_error_message(&err).contains("append-only"));
    assert_eq!(all_events(&mut conn).await.total, 3);
}

#[test]
fn outcomes_round_trip_their_spelling() {
    for outcome in AuditOutcome::ALL {
        assert_eq!(outcome.as_str().parse::<AuditOutcome>().unwrap(), *outcome);
        assert_eq!(serde_json::to_value(outcome).unwrap(), json!(outcome.as_str()));
    }
    assert!("Success".parse::<AuditOutcome>().is_err());
    assert!("".parse::<AuditOutcome>().is_err());
}
