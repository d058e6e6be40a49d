//! Rule exceptions (waivers of one rule on one host, under four-eyes approval).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;
use crate::schema::exceptions;

/// Marks approved exceptions whose `expires_at` is at or before `now` as `expired`;
/// returns how many changed. Idempotent (the `maintenance` job may run it twice).
pub async fn expire_due(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> Result<usize, DbError> {
    Ok(diesel::update(
        exceptions::table.filter(exceptions::status.eq("approved")).filter(exceptions::expires_at.le(now)),
    )
    .set(exceptions::status.eq("expired"))
    .execute(conn)
    .await?)
}
