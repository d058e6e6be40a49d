//! `POST /api/users/{id}/password`: an administrator sets a new password.

use actix_web::{HttpResponse, post, web};
use chrono::Utc;
use openwatch_common::ids::UserId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::{sessions, users};
use openwatch_secrets::{PasswordPolicy, password};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::cannot_modify_self;
use crate::auth::{ClientInfo, Principal, revocation};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A password set by an administrator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password: at least 12 characters, not the username, not a common password.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub new_password: String,
}

/// Sets a user's password; every session of the user ends.
///
/// Not for one's own account (`POST /api/auth/password` asks for the current password).
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:write"])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = ResetPassword,
    responses(
        (status = 204, description = "Changed; the user must sign in again"),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`cannot_modify_self`", body = ErrorBody),
        (status = 422, description = "`password_too_short`, `password_contains_username`, `password_too_common`, …", body = ErrorBody),
    )
)]
#[post("/users/{id}/password")]
pub async fn reset_password(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path.into_inner());
    let new = SecretString::from(body.into_inner().new_password);
    if id == principal.user_id {
        return Err(cannot_modify_self("reset the password of"));
    }
    let mut conn = state.pool.get().await?;
    let user = users::get_user(&mut conn, id).await.map_err(|e| ApiError::from_db("user", e))?;
    PasswordPolicy::default()
        .check(&new, &user.username)
        .map_err(|violation| ApiError::unprocessable(violation.code(), violation.to_string()))?;
    let hash = web::block(move || password::hash_password(&new))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let now = Utc::now();
    conn.transaction::<_, ApiError, _>(async |conn| {
        users::set_password_hash(conn, id, &hash).await.map_err(|e| ApiError::from_db("user", e))?;
        sessions::revoke_all_for_user(conn, id, sessions::REASON_ADMIN, now).await?;
        let event = audit::event(
            &principal,
            &client,
            "user.reset_password",
            "user",
            Some(id.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({"username": user.username}),
        );
        audit::record(conn, &event).await?;
        revocation::revoke_user(
            &state.redis,
            &state.config.redis_key_prefix,
            id,
            now,
            state.config.access_token_ttl,
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
