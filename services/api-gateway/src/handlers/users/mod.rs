//! `/api/users/…`: account administration (`users:read` / `users:write`).
//!
//! # Guard rails
//! * An administrator cannot delete, deactivate or demote their own account, nor reset
//!   their own password here (`409 cannot_modify_self`; their own password goes through
//!   `POST /api/auth/password`, which asks for the current one).
//! * The last active `super_admin` cannot be deleted, deactivated or demoted
//!   (`409 last_super_admin`). The check runs *after* the change, inside a SERIALIZABLE
//!   transaction, so two administrators demoting each other at the same time cannot both
//!   succeed: PostgreSQL aborts one of them (503, retry).
//!
//! # Revocation
//! A role change, a deactivation, a deletion and a password reset end the target's
//! refresh sessions (PostgreSQL, same transaction) and void their live access tokens
//! (Redis, before the commit: if Redis cannot answer, nothing changes).

mod create;
mod password;
mod read;
mod update;

use chrono::{DateTime, Utc};
use openwatch_common::access::Role;
use openwatch_common::ids::UserId;
use openwatch_db::queries::users::{self, User};
use openwatch_db::{AsyncPgConnection, DbError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(read::list_users)
        .service(read::get_user)
        .service(create::create_user)
        .service(update::update_user)
        .service(update::delete_user)
        .service(password::reset_password);
}

/// A user account as administrators see it (never a password hash or TOTP secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// User id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Contact address.
    pub email: Option<String>,
    /// Name shown in the UI.
    pub display_name: Option<String>,
    /// Role.
    #[schema(value_type = String, example = "security_analyst")]
    pub role: Role,
    /// Inactive accounts cannot sign in.
    pub is_active: bool,
    /// Whether MFA is enabled.
    pub mfa_enabled: bool,
    /// Consecutive failed logins.
    pub failed_login_attempts: u32,
    /// Password logins are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Last password change.
    pub password_changed_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last updated.
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            role: user.role,
            is_active: user.is_active,
            mfa_enabled: user.mfa_enabled,
            failed_login_attempts: user.failed_login_attempts,
            locked_until: user.locked_until,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Longest username.
const MAX_USERNAME_CHARS: usize = 128;
/// Longest display name.
const MAX_DISPLAY_NAME_CHARS: usize = 128;

/// 400 `invalid_username` unless 1–128 characters of `[A-Za-z0-9._@-]`.
fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_CHARS
        && username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_username",
            "username must be 1–128 characters of A-Z a-z 0-9 . _ @ -",
        ))
    }
}

/// 400 `invalid_email` unless it looks like an address: one `@` with text on both sides,
/// a dot in the domain, no whitespace, at most 254 bytes.
fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
    }) && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(ApiError::bad_request("invalid_email", "not a valid email address")) }
}

/// The trimmed display name, or 400 `invalid_display_name` when empty or too long.
fn clean_display_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display name must be 1–128 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// Parses a role name, or 400 `invalid_role`.
fn parse_role(role: &str) -> Result<Role, ApiError> {
    role.parse()
        .map_err(|e: openwatch_common::UnknownVariant| ApiError::bad_request("invalid_role", e.to_string()))
}

/// Maps a write error on `users`: unique violations become `username_taken` /
/// `email_taken`, a missing row `user_not_found`.
fn map_user_error(error: DbError) -> ApiError {
    match error {
        DbError::Conflict { constraint } if constraint.contains("email") => {
            ApiError::conflict("email_taken", "the email address is used by another account")
        }
        DbError::Conflict { .. } => ApiError::conflict("username_taken", "the username is taken"),
        other => ApiError::from_db("user", other),
    }
}

/// 409 `cannot_modify_self`.
fn cannot_modify_self(what: &str) -> ApiError {
    ApiError::conflict("cannot_modify_self", format!("you cannot {what} your own account"))
}

/// Whether `user` counts towards "an active super admin exists".
fn is_active_super_admin(user: &User) -> bool {
    user.role == Role::SuperAdmin && user.is_active
}

/// After a change that took away an active super admin: 409 `last_super_admin` when none
/// is left (the caller's transaction then rolls back).
async fn ensure_a_super_admin_remains(conn: &mut AsyncPgConnection) -> Result<(), ApiError> {
    if users::any_super_admin_exists(conn).await? {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "last_super_admin",
            "the last active super_admin cannot be deleted, deactivated or demoted",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_emails_and_roles_are_validated() {
        for ok in ["alice", "a.b-c_d@corp", "A1", &"x".repeat(128)] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "with space", "slash/", "é", &"x".repeat(129)] {
            assert_eq!(check_username(bad).unwrap_err().code(), "invalid_username", "{bad}");
        }
        assert!(check_email("ops@example.org").is_ok());
        for bad in ["no-at", "@example.org", "a@b", "a@@b.c", "a b@c.d", "a@.c", "a@c."] {
            assert_eq!(check_email(bad).unwrap_err().code(), "invalid_email", "{bad}");
        }
        assert_eq!(parse_role("auditor").unwrap(), Role::Auditor);
        assert_eq!(parse_role("god").unwrap_err().code(), "invalid_role");
        assert_eq!(clean_display_name("  Ada  ").unwrap(), "Ada");
        assert!(clean_display_name("   ").is_err());
    }
}
