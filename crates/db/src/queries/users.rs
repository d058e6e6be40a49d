//! User accounts: CRUD, listing, password changes and the login bookkeeping (failed
//! attempts, lockout, last login).
//!
//! [`User`] never carries the password hash or the TOTP secret; only [`find_for_login`]
//! returns them ([`UserCredentials`]), so a handler that lists or shows users cannot leak
//! them by accident. Usernames and emails are unique case-insensitively
//! (`users_username_lower_key`, `users_email_lower_key`).

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::access::Role;
use openwatch_common::ids::UserId;
use uuid::Uuid;

use crate::DbError;
use crate::queries::mfa::SealedTotp;
use crate::queries::page::{Page, PageRequest, SortOrder};
use crate::schema::users;

#[diesel::declare_sql_function]
extern "SQL" {
    /// SQL `lower(text)`: matches the `lower(username)` / `lower(email)` unique indexes.
    fn lower(x: Text) -> Text;
}

/// An account to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// New id (`UserId::new()`).
    pub id: UserId,
    /// Login name, 1–128 characters, unique case-insensitively.
    pub username: String,
    /// Contact address, unique case-insensitively when set.
    pub email: Option<String>,
    /// Name shown in the UI.
    pub display_name: Option<String>,
    /// Argon2id PHC string (never a plaintext password).
    pub password_hash: String,
    /// What the account may do.
    pub role: Role,
}

/// A stored account, without any secret.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Contact address.
    pub email: Option<String>,
    /// Name shown in the UI.
    pub display_name: Option<String>,
    /// What the account may do.
    pub role: Role,
    /// Inactive accounts cannot log in and their API tokens are refused.
    pub is_active: bool,
    /// Whether a TOTP code is required at login (a pending enrolment does not count).
    pub mfa_enabled: bool,
    /// Consecutive failed logins since the last success or lockout.
    pub failed_login_attempts: u32,
    /// Password logins are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Last password change (or creation).
    pub password_changed_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// An account with what a login needs to verify: the password hash and the sealed TOTP
/// secret. Returned only by [`find_for_login`].
#[derive(Clone, PartialEq)]
pub struct UserCredentials {
    /// The account.
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The sealed TOTP secret: enabled when `user.mfa_enabled`, otherwise a pending
    /// enrolment (or `None`).
    pub totp: Option<SealedTotp>,
    /// Last accepted TOTP time step (replay refusal).
    pub totp_last_step: Option<i64>,
}

impl std::fmt::Debug for UserCredentials {
    // The hash and the sealed secret stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .field("totp", &self.totp.as_ref().map(|_| "<sealed>"))
            .field("totp_last_step", &self.totp_last_step)
            .finish()
    }
}

/// Filters of [`list_users`]; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only active (`true`) or inactive (`false`) accounts.
    pub active: Option<bool>,
    /// Case-insensitive substring of the username, email or display name (`%` and `_`
    /// match literally).
    pub q: Option<String>,
}

/// Sort key of [`list_users`] (ties are broken by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserSort {
    /// Alphabetical, case-insensitive.
    #[default]
    Username,
    /// Creation time.
    CreatedAt,
}

/// Changes to an account; `None` leaves a field as it is. `Some(None)` clears an
/// optional field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChangeset {
    /// New contact address, or `Some(None)` to remove it.
    pub email: Option<Option<String>>,
    /// New display name, or `Some(None)` to remove it.
    pub display_name: Option<Option<String>>,
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate. Deactivating does not end sessions by itself: call
    /// `sessions::revoke_all_for_user` in the same transaction.
    pub is_active: Option<bool>,
}

impl UserChangeset {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.display_name.is_none() && self.role.is_none() && self.is_active.is_none()
    }
}

/// The state after [`record_login_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    /// Consecutive failures counted, including this one (equal to `max_attempts` when
    /// this failure locked the account; the stored counter then restarts at 0).
    pub attempts: u32,
    /// When the account is locked, until when.
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    id: Uuid,
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    role: String,
    is_active: bool,
    mfa_enabled: bool,
    failed_login_attempts: i32,
    locked_until: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
    password_changed_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<Self, DbError> {
        let invalid = |what: String| DbError::InvalidData(format!("user {}: {what}", row.id));
        Ok(User {
            id: UserId(row.id),
            role: row.role.parse().map_err(|e| invalid(format!("{e}")))?,
            failed_login_attempts: u32::try_from(row.failed_login_attempts)
                .map_err(|_| invalid("negative failed_login_attempts".to_owned()))?,
            username: row.username,
            email: row.email,
            display_name: row.display_name,
            is_active: row.is_active,
            mfa_enabled: row.mfa_enabled,
            locked_until: row.locked_until,
            last_login_at: row.last_login_at,
            password_changed_at: row.password_changed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct CredentialsRow {
    #[diesel(embed)]
    user: UserRow,
    password_hash: String,
    totp_ciphertext: Option<Vec<u8>>,
    totp_nonce: Option<Vec<u8>>,
    totp_key_id: Option<String>,
    totp_last_step: Option<i64>,
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChangesetRow {
    email: Option<Option<String>>,
    display_name: Option<Option<String>>,
    role: Option<&'static str>,
    is_active: Option<bool>,
}

/// Creates an account. A taken username or email is [`DbError::Conflict`]
/// (`users_username_lower_key` / `users_email_lower_key`); an empty or too long username
/// is [`DbError::Constraint`].
pub async fn insert_user(conn: &mut AsyncPgConnection, user: NewUser) -> Result<User, DbError> {
    let row: UserRow = diesel::insert_into(users::table)
        .values((
            users::id.eq(user.id.into_uuid()),
            users::username.eq(user.username),
            users::email.eq(user.email),
            users::display_name.eq(user.display_name),
            users::password_hash.eq(user.password_hash),
            users::role.eq(user.role.as_str()),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// The account with this id, or [`DbError::NotFound`].
pub async fn get_user(conn: &mut AsyncPgConnection, id: UserId) -> Result<User, DbError> {
    let row: UserRow =
        users::table.find(id.into_uuid()).select(UserRow::as_select()).get_result(conn).await?;
    row.try_into()
}

/// The account whose username matches case-insensitively, with its password hash and
/// TOTP secret, or `None`. Inactive and locked accounts are returned too: the caller
/// refuses them (after verifying the password or not, as its timing policy says).
pub async fn find_for_login(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> Result<Option<UserCredentials>, DbError> {
    let row: Option<CredentialsRow> = users::table
        .filter(lower(users::username).eq(lower(username)))
        .select(CredentialsRow::as_select())
        .get_result(conn)
        .await
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let id = row.user.id;
    let totp = match (row.totp_ciphertext, row.totp_nonce, row.totp_key_id) {
        (Some(ciphertext), Some(nonce), Some(key_id)) => Some(SealedTotp {
            ciphertext,
            nonce: nonce
                .try_into()
                .map_err(|_| DbError::InvalidData(format!("user {id}: totp_nonce is not 12 bytes")))?,
            key_id,
        }),
        // The CHECK `users_totp_parts_together` forbids partial secrets.
        _ => None,
    };
    Ok(Some(UserCredentials {
        user: row.user.try_into()?,
        password_hash: row.password_hash,
        totp,
        totp_last_step: row.totp_last_step,
    }))
}

/// Escapes `\`, `%` and `_` so `q` matches literally inside an `ILIKE` pattern.
fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn filtered(filter: &UserFilter) -> users::BoxedQuery<'static, Pg> {
    let mut query = users::table.into_boxed();
    if let Some(role) = filter.role {
        query = query.filter(users::role.eq(role.as_str()));
    }
    if let Some(active) = filter.active {
        query = query.filter(users::is_active.eq(active));
    }
    if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        query = query.filter(
            users::username
                .ilike(pattern.clone())
                .nullable()
                .or(users::email.ilike(pattern.clone()))
                .or(users::display_name.ilike(pattern)),
        );
    }
    query
}

/// One page of accounts matching `filter`, sorted by `sort` then id, and the total.
pub async fn list_users(
    conn: &mut AsyncPgConnection,
    filter: &UserFilter,
    sort: UserSort,
    order: SortOrder,
    page: PageRequest,
) -> Result<Page<User>, DbError> {
    let total: i64 = filtered(filter).count().get_result(conn).await?;
    let mut query = filtered(filter).select(UserRow::as_select());
    query = match (sort, order) {
        (UserSort::Username, SortOrder::Asc) => query.order((lower(users::username).asc(), users::id.asc())),
        (UserSort::Username, SortOrder::Desc) => {
            query.order((lower(users::username).desc(), users::id.desc()))
        }
        (UserSort::CreatedAt, SortOrder::Asc) => query.order((users::created_at.asc(), users::id.asc())),
        (UserSort::CreatedAt, SortOrder::Desc) => query.order((users::created_at.desc(), users::id.desc())),
    };
    let rows: Vec<UserRow> = query.limit(page.sql_limit()).offset(page.sql_offset()).load(conn).await?;
    let items = rows.into_iter().map(User::try_from).collect::<Result<_, _>>()?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

/// Applies `changes` and returns the updated account; [`DbError::NotFound`] when it does
/// not exist, [`DbError::Conflict`] when the new email is taken. An empty changeset only
/// reads the account.
pub async fn update_user(
    conn: &mut AsyncPgConnection,
    id: UserId,
    changes: UserChangeset,
) -> Result<User, DbError> {
    if changes.is_empty() {
        return get_user(conn, id).await;
    }
    let row: UserRow = diesel::update(users::table.find(id.into_uuid()))
        .set(UserChangesetRow {
            email: changes.email,
            display_name: changes.display_name,
            role: changes.role.map(Role::as_str),
            is_active: changes.is_active,
        })
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Deletes an account (its tokens, sessions and backup codes go with it; history rows keep
/// a NULL author). [`DbError::NotFound`] when it does not exist.
pub async fn delete_user(conn: &mut AsyncPgConnection, id: UserId) -> Result<(), DbError> {
    let deleted = diesel::delete(users::table.find(id.into_uuid())).execute(conn).await?;
    if deleted == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Stores a new password hash and stamps `password_changed_at`. [`DbError::NotFound`] when
/// the account does not exist. Ending the other sessions is the caller's decision
/// (`sessions::revoke_all_for_user`).
pub async fn set_password_hash(conn: &mut AsyncPgConnection, id: UserId, hash: &str) -> Result<(), DbError> {
    let updated = diesel::update(users::table.find(id.into_uuid()))
        .set((users::password_hash.eq(hash), users::password_changed_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    if updated == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

#[derive(QueryableByName)]
struct LoginFailureRow {
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_until: Option<DateTime<Utc>>,
}

/// Counts a failed login, atomically (one `UPDATE … RETURNING`, so concurrent failures on
/// several replicas are all counted). The failure that reaches `max_attempts` (at least 1)
/// locks the account until `now + lock_for` and restarts the counter.
/// [`DbError::NotFound`] when the account does not exist.
pub async fn record_login_failure(
    conn: &mut AsyncPgConnection,
    id: UserId,
    now: DateTime<Utc>,
    max_attempts: u32,
    lock_for: TimeDelta,
) -> Result<LoginFailure, DbError> {
    let max = i32::try_from(max_attempts.max(1)).unwrap_or(i32::MAX);
    let until = now.checked_add_signed(lock_for).unwrap_or(DateTime::<Utc>::MAX_UTC);
    // After the increment the counter is 0 only when this failure locked the account.
    let row: LoginFailureRow = diesel::sql_query(
        "UPDATE users SET \
             failed_login_attempts = CASE WHEN failed_login_attempts + 1 >= $2 THEN 0 \
                                          ELSE failed_login_attempts + 1 END, \
             locked_until = CASE WHEN failed_login_attempts + 1 >= $2 THEN $3 ELSE locked_until END \
         WHERE id = $1 \
         RETURNING CASE WHEN failed_login_attempts = 0 THEN $2 ELSE failed_login_attempts END AS attempts, \
                   CASE WHEN locked_until > $4 THEN locked_until END AS locked_until",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.into_uuid())
    .bind::<Int4, _>(max)
    .bind::<Timestamptz, _>(until)
    .bind::<Timestamptz, _>(now)
    .get_result(conn)
    .await?;
    Ok(LoginFailure { attempts: u32::try_from(row.attempts).unwrap_or(0), locked_until: row.locked_until })
}

/// Records a successful login: clears the failure counter and any lock, stamps
/// `last_login_at`. [`DbError::NotFound`] when the account does not exist.
pub async fn record_login_success(
    conn: &mut AsyncPgConnection,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let updated = diesel::update(users::table.find(id.into_uuid()))
        .set((
            users::failed_login_attempts.eq(0),
            users::locked_until.eq(None::<DateTime<Utc>>),
            users::last_login_at.eq(now),
        ))
        .execute(conn)
        .await?;
    if updated == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Number of accounts (active or not).
pub async fn count_users(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn).await?)
}

/// Whether an *active* `super_admin` exists: the bootstrap creates one when not, and the
/// gateway refuses to deactivate, demote or delete the last one.
pub async fn any_super_admin_exists(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        users::table.filter(users::role.eq(Role::SuperAdmin.as_str())).filter(users::is_active.eq(true)),
    ))
    .get_result(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("ad"), "%ad%");
        assert_eq!(like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
