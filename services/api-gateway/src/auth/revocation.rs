//! Server-side revocation of access tokens, shared by all replicas through Redis.
//!
//! Access tokens are stateless for 15 minutes; revocation makes logout and reuse detection
//! immediate: `revoked:session:<family>` marks a whole refresh family (logout, reuse of a
//! rotated refresh token), and `revoked:user:<id>` holds a time before which every token of
//! the user is void (password change, role change, deactivation). Keys expire after the
//! longest access-token lifetime, when no token they could match is alive anymore. If
//! Redis cannot answer, requests fail closed (503).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::Pool;
use openwatch_common::ids::{SessionId, UserId};
use redis::AsyncCommands;

use crate::error::ApiError;

fn session_key(prefix: &str, session: SessionId) -> String {
    format!("{prefix}revoked:session:{}", session.0)
}

fn user_key(prefix: &str, user: UserId) -> String {
    format!("{prefix}revoked:user:{}", user.0)
}

/// Revokes every access token of a refresh-session family.
pub async fn revoke_session(
    redis: &Pool,
    prefix: &str,
    session: SessionId,
    ttl: Duration,
) -> Result<(), ApiError> {
    let mut conn = redis.get().await?;
    let _: () = conn.set_ex(session_key(prefix, session), 1, ttl.as_secs().max(1)).await?;
    Ok(())
}

/// Revokes every access token of `user` issued at or before `now` (millisecond precision).
pub async fn revoke_user(
    redis: &Pool,
    prefix: &str,
    user: UserId,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(), ApiError> {
    let mut conn = redis.get().await?;
    let _: () = conn.set_ex(user_key(prefix, user), now.timestamp_millis(), ttl.as_secs().max(1)).await?;
    Ok(())
}

/// Whether a token of `user` in `session` issued at `issued_at_ms` was revoked.
pub async fn is_revoked(
    redis: &Pool,
    prefix: &str,
    user: UserId,
    session: SessionId,
    issued_at_ms: i64,
) -> Result<bool, ApiError> {
    let mut conn = redis.get().await?;
    let (session_revoked, user_revoked_at): (Option<i64>, Option<i64>) = redis::pipe()
        .get(session_key(prefix, session))
        .get(user_key(prefix, user))
        .query_async(&mut conn)
        .await?;
    Ok(session_revoked.is_some() || user_revoked_at.is_some_and(|at| issued_at_ms <= at))
}
