//! `GET/PATCH /api/auth/me` and `POST /api/auth/password`.

use actix_web::{HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use openwatch_common::ids::UserId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::sessions;
use openwatch_db::queries::users::{self, User, UserChangeset};
use openwatch_secrets::{PasswordPolicy, password};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{permission_names, require_session};
use crate::auth::{ClientInfo, Principal, revocation};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// The signed-in user's own account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileResponse {
    /// User id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Username.
    pub username: String,
    /// Email address.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Role.
    pub role: String,
    /// What the role allows (an API token may hold fewer).
    pub permissions: Vec<String>,
    /// Whether MFA is enabled.
    pub mfa_enabled: bool,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Last password change.
    pub password_changed_at: DateTime<Utc>,
}

impl From<User> for ProfileResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            permissions: permission_names(user.role),
            role: user.role.as_str().to_owned(),
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            mfa_enabled: user.mfa_enabled,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
        }
    }
}

/// Changes to one's own profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    /// New email address (`null` clears it).
    #[serde(default, with = "crate::handlers::double_option")]
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Option<String>>,
    /// New display name (`null` clears it).
    #[serde(default, with = "crate::handlers::double_option")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub display_name: Option<Option<String>>,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The current password.
    #[schema(format = Password)]
    pub current_password: String,
    /// The new password: at least 12 characters, not the username, not a common password.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub new_password: String,
}

/// The signed-in user's profile and permissions.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    responses((status = 200, description = "Profile", body = ProfileResponse))
)]
#[get("/auth/me")]
pub async fn get_me(state: web::Data<ApiState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let user =
        users::get_user(&mut conn, principal.user_id).await.map_err(|e| ApiError::from_db("user", e))?;
    Ok(HttpResponse::Ok().json(ProfileResponse::from(user)))
}

/// Validates an optional email address: one `@`, something on each side, bounded length.
pub(crate) fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && !email.contains(char::is_whitespace)
}

/// Updates the signed-in user's email and display name.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    request_body = UpdateProfile,
    responses(
        (status = 200, description = "Updated profile", body = ProfileResponse),
        (status = 400, description = "`invalid_email` or `invalid_display_name`", body = ErrorBody),
        (status = 409, description = "The email is used by another account", body = ErrorBody),
    )
)]
#[patch("/auth/me")]
pub async fn update_me(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<UpdateProfile>,
) -> Result<HttpResponse, ApiError> {
    let UpdateProfile { email, display_name } = body.into_inner();
    if let Some(Some(email)) = &email
        && !valid_email(email)
    {
        return Err(ApiError::bad_request("invalid_email", "not a valid email address"));
    }
    if let Some(Some(name)) = &display_name
        && (name.trim().is_empty() || name.chars().count() > 128)
    {
        return Err(ApiError::bad_request("invalid_display_name", "display name must be 1–128 characters"));
    }
    let changes = UserChangeset { email, display_name, role: None, is_active: None };
    let mut conn = state.pool.get().await?;
    let user = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let user = users::update_user(conn, principal.user_id, changes)
                .await
                .map_err(|e| ApiError::from_db("user", e))?;
            let event = audit::event(
                &principal,
                &client,
                "user.update_profile",
                "user",
                Some(user.id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({}),
            );
            audit::record(conn, &event).await?;
            Ok(user)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ProfileResponse::from(user)))
}

/// Changes the signed-in user's password; every session of the user ends.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; sign in again"),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_contains_username`, `password_too_common`, …", body = ErrorBody),
    )
)]
#[post("/auth/password")]
pub async fn change_password(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    require_session(&principal)?;
    let ChangePassword { current_password, new_password } = body.into_inner();
    let (current, new) = (SecretString::from(current_password), SecretString::from(new_password));
    let mut conn = state.pool.get().await?;
    let credentials = users::find_for_login(&mut conn, &principal.username)
        .await?
        .filter(|c| c.user.id == principal.user_id)
        .ok_or_else(|| ApiError::unauthorized("invalid_credentials", "the current password is wrong"))?;
    PasswordPolicy::default()
        .check(&new, &principal.username)
        .map_err(|violation| ApiError::unprocessable(violation.code(), violation.to_string()))?;
    let hash = web::block(move || {
        password::verify_password(&current, &credentials.password_hash).then(|| password::hash_password(&new))
    })
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::unauthorized("invalid_credentials", "the current password is wrong"))?
    .map_err(ApiError::internal)?;
    let now = Utc::now();
    conn.transaction::<_, ApiError, _>(async |conn| {
        users::set_password_hash(conn, principal.user_id, &hash).await?;
        sessions::revoke_all_for_user(conn, principal.user_id, sessions::REASON_PASSWORD_CHANGED, now)
            .await?;
        let event = audit::event(
            &principal,
            &client,
            "user.change_password",
            "user",
            Some(principal.user_id.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({}),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    revocation::revoke_user(
        &state.redis,
        &state.config.redis_key_prefix,
        principal.user_id,
        now,
        state.config.access_token_ttl,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
