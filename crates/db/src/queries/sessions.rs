//! Refresh-token sessions.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;
use crate::schema::refresh_sessions;

/// How long an ended (expired or revoked) session is kept before purging: long enough to
/// recognise the replay of a recently ended token (and revoke its family) and to
/// investigate it.
pub const ENDED_SESSION_RETENTION: TimeDelta = TimeDelta::days(1);

/// Deletes sessions that expired or were revoked more than [`ENDED_SESSION_RETENTION`]
/// before `now`; returns how many were deleted.
pub async fn purge_expired(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> Result<usize, DbError> {
    let cutoff = now - ENDED_SESSION_RETENTION;
    Ok(diesel::delete(
        refresh_sessions::table
            .filter(refresh_sessions::expires_at.lt(cutoff).or(refresh_sessions::revoked_at.lt(cutoff))),
    )
    .execute(conn)
    .await?)
}
