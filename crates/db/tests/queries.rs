//! Query functions against a real PostgreSQL: idempotency ledger, hosts, exception expiry,
//! session purge, and the constraints they rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeDelta, Utc};
use diesel_async::RunQueryDsl;
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::{HostId, MessageId};
use openwatch_db::queries::hosts::{NewHost, get_host, insert_host, record_liveness};
use openwatch_db::queries::{exceptions, processed_messages, sessions};
use openwatch_db::{DbError, ping};
use openwatch_test_support::database::TestDatabase;

fn new_host(name: &str) -> NewHost {
    NewHost {
        id: HostId::new(),
        name: name.to_owned(),
        address: "127.0.0.2".to_owned(),
        port: 2222,
        tags: vec!["prod".to_owned(), "web".to_owned()],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn marking_a_message_twice_reports_the_redelivery() {
    let db = TestDatabase::new().await;
    ping(&db.pool()).await.unwrap();
    let mut conn = db.pool().get().await.unwrap();
    let id = MessageId::new();
    assert!(processed_messages::mark_processed(&mut conn, "result-processor", id).await.unwrap());
    assert!(!processed_messages::mark_processed(&mut conn, "result-processor", id).await.unwrap());
    // Another consumer has its own ledger.
    assert!(processed_messages::mark_processed(&mut conn, "alerting", id).await.unwrap());
    let purged =
        processed_messages::purge_older_than(&mut conn, Utc::now() + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(purged, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_round_trip_and_record_liveness() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("web-1")).await.unwrap();
    assert_eq!(host.port, 2222);
    assert_eq!(host.tags, ["prod", "web"]);
    assert_eq!(host.monitoring_state, MonitoringState::Unknown);
    assert_eq!(host.compliance_state, ComplianceState::Unknown);
    assert_eq!(get_host(&mut conn, host.id).await.unwrap(), host);

    let checked_at = Utc::now();
    let next = checked_at + TimeDelta::minutes(5);
    record_liveness(&mut conn, host.id, MonitoringState::Online, checked_at, next).await.unwrap();
    let updated = get_host(&mut conn, host.id).await.unwrap();
    assert_eq!(updated.monitoring_state, MonitoringState::Online);
    assert_eq!(updated.last_check_at.map(|t| t.timestamp_micros()), Some(checked_at.timestamp_micros()));
    assert_eq!(updated.next_check_at.timestamp_micros(), next.timestamp_micros());
    assert!(updated.updated_at >= host.updated_at);

    let dup = insert_host(&mut conn, new_host("web-1")).await.unwrap_err();
    assert!(matches!(&dup, DbError::Conflict { constraint } if constraint == "hosts_name_key"), "{dup:?}");
    assert!(matches!(get_host(&mut conn, HostId::new()).await, Err(DbError::NotFound)));
    let missing = record_liveness(&mut conn, HostId::new(), MonitoringState::Down, checked_at, next).await;
    assert!(matches!(missing, Err(DbError::NotFound)));
}

async fn insert_user(conn: &mut diesel_async::AsyncPgConnection, name: &str) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'auditor')",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(name)
    .execute(conn)
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn due_approved_exceptions_expire_and_four_eyes_is_enforced() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("db-1")).await.unwrap();
    let alice = insert_user(&mut conn, "alice").await;
    let bob = insert_user(&mut conn, "bob").await;

    let insert = "INSERT INTO exceptions (id, host_id, rule_id, reason, status, requested_by, requested_at, \
                  decided_by, decided_at, expires_at) \
                  VALUES ($1, $2, $3, 'vendor', $4, $5, now() - interval '10 days', $6, now() - interval '9 days', \
                  now() + $7 * interval '1 hour')";
    let add = async |conn: &mut diesel_async::AsyncPgConnection,
                     rule: &str,
                     status: &str,
                     decided_by: Option<uuid::Uuid>,
                     hours: i32| {
        diesel::sql_query(insert)
            .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::now_v7())
            .bind::<diesel::sql_types::Uuid, _>(host.id.into_uuid())
            .bind::<diesel::sql_types::Text, _>(rule)
            .bind::<diesel::sql_types::Text, _>(status)
            .bind::<diesel::sql_types::Uuid, _>(alice)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(decided_by)
            .bind::<diesel::sql_types::Integer, _>(hours)
            .execute(conn)
            .await
            .map_err(DbError::from)
    };
    add(&mut conn, "r1", "approved", Some(bob), -1).await.unwrap();
    add(&mut conn, "r2", "approved", Some(bob), 24).await.unwrap();
    add(&mut conn, "r3", "rejected", Some(bob), -1).await.unwrap();
    let own = add(&mut conn, "r4", "approved", Some(alice), 24).await.unwrap_err();
    assert!(
        matches!(&own, DbError::Constraint { constraint, .. } if constraint == "exceptions_four_eyes"),
        "{own:?}"
    );

    assert_eq!(exceptions::expire_due(&mut conn, Utc::now()).await.unwrap(), 1);
    assert_eq!(exceptions::expire_due(&mut conn, Utc::now()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_sessions_are_purged_after_a_day() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let user = insert_user(&mut conn, "carol").await;
    let add = async |conn: &mut diesel_async::AsyncPgConnection, expires_h: i32, revoked_h: Option<i32>| {
        diesel::sql_query(
            "INSERT INTO refresh_sessions (id, family_id, user_id, token_hash, issued_at, expires_at, revoked_at) \
             VALUES ($1, $1, $2, sha256(convert_to($1::text, 'UTF8')), now() - interval '30 days', \
                     now() + $3 * interval '1 hour', now() + $4 * interval '1 hour')",
        )
        .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::now_v7())
        .bind::<diesel::sql_types::Uuid, _>(user)
        .bind::<diesel::sql_types::Integer, _>(expires_h)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Integer>, _>(revoked_h)
        .execute(conn)
        .await
        .unwrap();
    };
    add(&mut conn, -48, None).await; // expired two days ago: purged
    add(&mut conn, -1, None).await; // expired an hour ago: kept a day
    add(&mut conn, 24, Some(-48)).await; // revoked two days ago: purged
    add(&mut conn, 24, Some(-1)).await; // revoked an hour ago: kept
    add(&mut conn, 24, None).await; // live
    assert_eq!(sessions::purge_expired(&mut conn, Utc::now()).await.unwrap(), 2);
    assert_eq!(sessions::purge_expired(&mut conn, Utc::now()).await.unwrap(), 0);
}
