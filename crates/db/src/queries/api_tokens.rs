//! Personal API tokens: creation, listing, revocation and authentication by hash.
//!
//! Only the SHA-256 of a token is stored; the gateway hashes the presented bearer token
//! and calls [`authenticate`]. A token's `permissions` are its scopes (spellings of
//! [`Permission`]); the gateway grants the intersection of those and the owner's role.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::access::Permission;
use openwatch_common::ids::{ApiTokenId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::users::{User, UserRow};
use crate::schema::{api_tokens, users};

/// `last_used_at` is written at most this often per token, so a busy automation client
/// does not turn every read request into a row write.
pub const LAST_USED_RESOLUTION: TimeDelta = TimeDelta::minutes(1);

/// A token to store.
#[derive(Clone, PartialEq)]
pub struct NewApiToken {
    /// New id (`ApiTokenId::new()`).
    pub id: ApiTokenId,
    /// Owner; the token acts as this user.
    pub user_id: UserId,
    /// Label chosen by the owner, 1–128 characters.
    pub name: String,
    /// First characters of the token, shown to tell tokens apart.
    pub token_prefix: String,
    /// SHA-256 of the secret token.
    pub token_hash: [u8; 32],
    /// Scopes.
    pub permissions: Vec<Permission>,
    /// When it stops working; `None` = never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for NewApiToken {
    // The hash is as good as the token for an offline guesser: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("token_prefix", &self.token_prefix)
            .field("permissions", &self.permissions)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A stored token (never its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// Id.
    pub id: ApiTokenId,
    /// Owner.
    pub user_id: UserId,
    /// Label.
    pub name: String,
    /// First characters of the token.
    pub token_prefix: String,
    /// Scopes. Spellings this build does not know are dropped (they grant nothing).
    pub permissions: Vec<Permission>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last successful authentication (to [`LAST_USED_RESOLUTION`]).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg))]
struct ApiTokenRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    token_prefix: String,
    permissions: Vec<Option<String>>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiTokenRow> for ApiToken {
    fn from(row: ApiTokenRow) -> Self {
        let permissions = row
            .permissions
            .into_iter()
            .flatten()
            .filter_map(|p| match p.parse::<Permission>() {
                Ok(p) => Some(p),
                Err(e) => {
                    // Least privilege: a scope removed from the vocabulary grants nothing,
                    // and the token keeps working for the scopes that remain.
                    tracing::warn!(api_token.id = %row.id, error = %e, "ignoring unknown API token scope");
                    None
                }
            })
            .collect();
        ApiToken {
            id: ApiTokenId(row.id),
            user_id: UserId(row.user_id),
            name: row.name,
            token_prefix: row.token_prefix,
            permissions,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Stores a token. [`DbError::Constraint`] when the owner does not exist or the name is
/// empty or too long; [`DbError::Conflict`] on a (practically impossible) hash collision.
pub async fn insert_api_token(conn: &mut AsyncPgConnection, token: NewApiToken) -> Result<ApiToken, DbError> {
    let permissions: Vec<&'static str> = token.permissions.iter().map(|p| p.as_str()).collect();
    let row: ApiTokenRow = diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(token.id.into_uuid()),
            api_tokens::user_id.eq(token.user_id.into_uuid()),
            api_tokens::name.eq(token.name),
            api_tokens::token_prefix.eq(token.token_prefix),
            api_tokens::token_hash.eq(token.token_hash.as_slice()),
            api_tokens::permissions.eq(permissions),
            api_tokens::expires_at.eq(token.expires_at),
        ))
        .returning(ApiTokenRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into())
}

/// The user's tokens, revoked and expired ones included, newest first.
pub async fn list_for_user(conn: &mut AsyncPgConnection, user_id: UserId) -> Result<Vec<ApiToken>, DbError> {
    let rows: Vec<ApiTokenRow> = api_tokens::table
        .filter(api_tokens::user_id.eq(user_id.into_uuid()))
        .order((api_tokens::created_at.desc(), api_tokens::id.desc()))
        .select(ApiTokenRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(ApiToken::from).collect())
}

/// Revokes one of the user's own tokens (idempotent: an already revoked token keeps its
/// first revocation time). [`DbError::NotFound`] when the token does not exist or belongs
/// to someone else (indistinguishable on purpose).
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    token_id: ApiTokenId,
) -> Result<(), DbError> {
    let own =
        api_tokens::table.find(token_id.into_uuid()).filter(api_tokens::user_id.eq(user_id.into_uuid()));
    let updated = diesel::update(own.filter(api_tokens::revoked_at.is_null()))
        .set(api_tokens::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    if updated == 1 {
        return Ok(());
    }
    let exists: bool = diesel::select(diesel::dsl::exists(own)).get_result(conn).await?;
    if exists { Ok(()) } else { Err(DbError::NotFound) }
}

/// The token with this hash and its owner, when the token is neither revoked nor expired
/// at `now` and the owner is active; `None` otherwise (the caller answers 401 without
/// saying which). Stamps `last_used_at` when the previous stamp is older than
/// [`LAST_USED_RESOLUTION`]. A password lockout does not block tokens: it guards against
/// password guessing, which a 256-bit token is not exposed to.
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<Option<(ApiToken, User)>, DbError> {
    let found: Option<(ApiTokenRow, UserRow)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(token_hash.as_slice()))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .filter(users::is_active.eq(true))
        .select((ApiTokenRow::as_select(), UserRow::as_select()))
        .get_result(conn)
        .await
        .optional()?;
    let Some((token_row, user_row)) = found else { return Ok(None) };
    let mut token = ApiToken::from(token_row);
    let user = User::try_from(user_row)?;

    let stale = now - LAST_USED_RESOLUTION;
    if token.last_used_at.is_none_or(|t| t <= stale) {
        // Conditional, so concurrent requests write at most once per interval.
        diesel::update(
            api_tokens::table
                .find(token.id.into_uuid())
                .filter(api_tokens::last_used_at.is_null().or(api_tokens::last_used_at.le(stale))),
        )
        .set(api_tokens::last_used_at.eq(now))
        .execute(conn)
        .await?;
        token.last_used_at = Some(now);
    }
    Ok(Some((token, user)))
}
