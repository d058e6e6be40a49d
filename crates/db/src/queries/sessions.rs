//! Refresh-token sessions: issue, rotate with reuse detection, revoke, purge.
//!
//! A login starts a *family* ([`SessionId`]) with one refresh token. Each refresh
//! ([`rotate`]) marks the presented token rotated and issues its successor in the same
//! family. Presenting a token that was already rotated (or revoked) means it was copied:
//! the whole family is revoked, so both the thief and the victim must log in again. Only
//! SHA-256 hashes of refresh tokens are stored.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::{SessionId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::schema::refresh_sessions;

/// How long an ended (expired or revoked) session is kept before purging: long enough to
/// recognise the replay of a recently ended token (and revoke its family) and to
/// investigate it.
pub const ENDED_SESSION_RETENTION: TimeDelta = TimeDelta::days(1);

/// `revoked_reason` when a rotated or revoked refresh token was presented again.
pub const REASON_REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";
/// `revoked_reason` when the user logged out.
pub const REASON_LOGOUT: &str = "logout";
/// `revoked_reason` when the password changed.
pub const REASON_PASSWORD_CHANGED: &str = "password_changed";
/// `revoked_reason` when an administrator deactivated the account (or ended its sessions).
pub const REASON_ADMIN: &str = "admin";

/// The first refresh token of a new family (a login).
#[derive(Clone, PartialEq)]
pub struct NewSession {
    /// Id of this refresh token's row (`Uuid::now_v7()`).
    pub id: Uuid,
    /// New family (`SessionId::new()`); access tokens carry it to check revocation.
    pub family_id: SessionId,
    /// The account.
    pub user_id: UserId,
    /// SHA-256 of the refresh token.
    pub token_hash: [u8; 32],
    /// When the token stops working (after now).
    pub expires_at: DateTime<Utc>,
    /// Client `User-Agent`, for the user's session list.
    pub user_agent: Option<String>,
    /// Client address.
    pub ip: Option<IpAddr>,
}

/// The successor issued by [`rotate`]; family and user are taken from the presented token.
#[derive(Clone, PartialEq)]
pub struct NewRefreshToken {
    /// Id of the new row (`Uuid::now_v7()`).
    pub id: Uuid,
    /// SHA-256 of the new refresh token.
    pub token_hash: [u8; 32],
    /// When the new token stops working (after now).
    pub expires_at: DateTime<Utc>,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
    /// Client address.
    pub ip: Option<IpAddr>,
}

macro_rules! debug_without_hash {
    ($ty:ident { $($field:ident),* }) => {
        impl std::fmt::Debug for $ty {
            // The hash stays out of logs.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))$(.field(stringify!($field), &self.$field))*.finish_non_exhaustive()
            }
        }
    };
}
debug_without_hash!(NewSession { id, family_id, user_id, expires_at, user_agent, ip });
debug_without_hash!(NewRefreshToken { id, expires_at, user_agent, ip });

/// What [`rotate`] did with the presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live: it is now rotated and its successor is stored.
    Rotated {
        /// The account.
        user_id: UserId,
        /// The family (unchanged).
        family_id: SessionId,
    },
    /// The token had already been rotated or revoked: the whole family is now revoked
    /// (reason [`REASON_REFRESH_TOKEN_REUSED`]). Audit it; the client must log in again.
    Reused {
        /// The revoked family.
        family_id: SessionId,
        /// The account.
        user_id: UserId,
    },
    /// The token expired; nothing changed.
    Expired,
    /// No token with this hash (never issued, or purged).
    Unknown,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = refresh_sessions, check_for_backend(diesel::pg::Pg))]
struct PresentedRow {
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Stores the first refresh token of a family. [`DbError::Constraint`] when the user does
/// not exist or `expires_at` is not in the future.
pub async fn insert_session(conn: &mut AsyncPgConnection, session: &NewSession) -> Result<(), DbError> {
    diesel::insert_into(refresh_sessions::table)
        .values((
            refresh_sessions::id.eq(session.id),
            refresh_sessions::family_id.eq(session.family_id.into_uuid()),
            refresh_sessions::user_id.eq(session.user_id.into_uuid()),
            refresh_sessions::token_hash.eq(session.token_hash.as_slice()),
            refresh_sessions::expires_at.eq(session.expires_at),
            refresh_sessions::user_agent.eq(session.user_agent.as_deref()),
            refresh_sessions::ip.eq(session.ip.map(|ip| ip.to_string())),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Exchanges the refresh token whose hash is `presented_hash` for `next`, detecting reuse
/// (see [`RotateOutcome`]). Runs in its own transaction (a savepoint inside the caller's)
/// and locks the presented row (`FOR UPDATE`), so of two concurrent rotations of the same
/// token exactly one is [`RotateOutcome::Rotated`]; the other sees the rotation and
/// reports [`RotateOutcome::Reused`].
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    presented_hash: &[u8; 32],
    next: &NewRefreshToken,
    now: DateTime<Utc>,
) -> Result<RotateOutcome, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let presented: Option<(Uuid, PresentedRow)> = refresh_sessions::table
            .filter(refresh_sessions::token_hash.eq(presented_hash.as_slice()))
            .select((refresh_sessions::id, PresentedRow::as_select()))
            .for_update()
            .get_result(conn)
            .await
            .optional()?;
        let Some((id, row)) = presented else { return Ok(RotateOutcome::Unknown) };
        let family_id = SessionId(row.family_id);
        let user_id = UserId(row.user_id);

        if row.rotated_at.is_some() || row.revoked_at.is_some() {
            revoke_family(conn, family_id, REASON_REFRESH_TOKEN_REUSED, now).await?;
            return Ok(RotateOutcome::Reused { family_id, user_id });
        }
        if row.expires_at <= now {
            return Ok(RotateOutcome::Expired);
        }

        diesel::update(refresh_sessions::table.find(id))
            .set(refresh_sessions::rotated_at.eq(now))
            .execute(conn)
            .await?;
        diesel::insert_into(refresh_sessions::table)
            .values((
                refresh_sessions::id.eq(next.id),
                refresh_sessions::family_id.eq(row.family_id),
                refresh_sessions::user_id.eq(row.user_id),
                refresh_sessions::token_hash.eq(next.token_hash.as_slice()),
                refresh_sessions::issued_at.eq(now),
                refresh_sessions::expires_at.eq(next.expires_at),
                refresh_sessions::user_agent.eq(next.user_agent.as_deref()),
                refresh_sessions::ip.eq(next.ip.map(|ip| ip.to_string())),
            ))
            .execute(conn)
            .await?;
        Ok(RotateOutcome::Rotated { user_id, family_id })
    })
    .await
}

/// Revokes every not yet revoked token of the family (logout, reuse); returns how many.
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family_id: SessionId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_sessions::table
            .filter(refresh_sessions::family_id.eq(family_id.into_uuid()))
            .filter(refresh_sessions::revoked_at.is_null()),
    )
    .set((refresh_sessions::revoked_at.eq(now), refresh_sessions::revoked_reason.eq(reason)))
    .execute(conn)
    .await?)
}

/// Revokes every session of the user (password change, deactivation, "log out
/// everywhere"); returns how many tokens were revoked.
pub async fn revoke_all_for_user(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_sessions::table
            .filter(refresh_sessions::user_id.eq(user_id.into_uuid()))
            .filter(refresh_sessions::revoked_at.is_null()),
    )
    .set((refresh_sessions::revoked_at.eq(now), refresh_sessions::revoked_reason.eq(reason)))
    .execute(conn)
    .await?)
}

/// Whether access tokens of this family must be refused: the family has no unrevoked
/// token, i.e. it was revoked, or it is unknown (never issued or purged; failing closed).
pub async fn is_family_revoked(conn: &mut AsyncPgConnection, family_id: SessionId) -> Result<bool, DbError> {
    let live: bool = diesel::select(diesel::dsl::exists(
        refresh_sessions::table
            .filter(refresh_sessions::family_id.eq(family_id.into_uuid()))
            .filter(refresh_sessions::revoked_at.is_null()),
    ))
    .get_result(conn)
    .await?;
    Ok(!live)
}

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
