//! `PATCH /api/users/{id}` and `DELETE /api/users/{id}`.

use actix_web::{HttpResponse, delete, patch, web};
use chrono::Utc;
use openwatch_common::ids::UserId;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::sessions;
use openwatch_db::queries::users::{self, UserChangeset};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    UserResponse, cannot_modify_self, check_email, clean_display_name, ensure_a_super_admin_remains,
    is_active_super_admin, map_user_error, parse_role,
};
use crate::auth::{ClientInfo, Principal, revocation};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// Changes to an account; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New email address (`null` clears it).
    #[serde(default, with = "crate::handlers::double_option")]
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Option<String>>,
    /// New display name (`null` clears it).
    #[serde(default, with = "crate::handlers::double_option")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub display_name: Option<Option<String>>,
    /// New role; ends the user's sessions when it changes.
    #[schema(example = "auditor")]
    pub role: Option<String>,
    /// Activate or deactivate; deactivating ends the user's sessions.
    pub is_active: Option<bool>,
}

/// Changes a user account.
///
/// A role change or a deactivation ends every session of the user and voids their live
/// access tokens at once.
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:write"])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = UserResponse),
        (status = 400, description = "`invalid_email`, `invalid_display_name`, `invalid_role`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`email_taken`, `cannot_modify_self`, `last_super_admin`", body = ErrorBody),
    )
)]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path.into_inner());
    let UpdateUser { email, display_name, role, is_active } = body.into_inner();
    if let Some(Some(email)) = &email {
        check_email(email)?;
    }
    let display_name = match display_name {
        Some(Some(name)) => Some(Some(clean_display_name(&name)?)),
        other => other,
    };
    let role = role.as_deref().map(parse_role).transpose()?;
    let changed_fields: Vec<&str> = [
        ("email", email.is_some()),
        ("display_name", display_name.is_some()),
        ("role", role.is_some()),
        ("is_active", is_active.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let changes = UserChangeset { email, display_name, role, is_active };
    let now = Utc::now();
    let mut conn = state.pool.get().await?;
    let user = conn
        .build_transaction()
        .serializable()
        .run::<_, ApiError, _>(async |conn| {
            let before = users::get_user(conn, id).await.map_err(|e| ApiError::from_db("user", e))?;
            let role_changes = role.is_some_and(|r| r != before.role);
            let deactivates = before.is_active && is_active == Some(false);
            if id == principal.user_id {
                if role_changes {
                    return Err(cannot_modify_self("change the role of"));
                }
                if deactivates {
                    return Err(cannot_modify_self("deactivate"));
                }
            }
            let after = users::update_user(conn, id, changes).await.map_err(map_user_error)?;
            if is_active_super_admin(&before) && !is_active_super_admin(&after) {
                ensure_a_super_admin_remains(conn).await?;
            }
            let revoke = role_changes || deactivates;
            if revoke {
                sessions::revoke_all_for_user(conn, id, sessions::REASON_ADMIN, now).await?;
            }
            let event = audit::event(
                &principal,
                &client,
                "user.update",
                "user",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({
                    "fields": changed_fields,
                    "role": {"from": before.role.as_str(), "to": after.role.as_str()},
                    "is_active": {"from": before.is_active, "to": after.is_active},
                    "sessions_revoked": revoke,
                }),
            );
            audit::record(conn, &event).await?;
            if revoke {
                // Before the commit: if Redis cannot answer, the change does not happen.
                revocation::revoke_user(
                    &state.redis,
                    &state.config.redis_key_prefix,
                    id,
                    now,
                    state.config.access_token_ttl,
                )
                .await?;
            }
            Ok(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Deletes a user account; its sessions and API tokens go with it.
#[utoipa::path(
    tag = "users",
    security(("bearer" = ["users:write"])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`cannot_modify_self` or `last_super_admin`", body = ErrorBody),
    )
)]
#[delete("/users/{id}")]
pub async fn delete_user(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path.into_inner());
    if id == principal.user_id {
        return Err(cannot_modify_self("delete"));
    }
    let now = Utc::now();
    let mut conn = state.pool.get().await?;
    conn.build_transaction()
        .serializable()
        .run::<_, ApiError, _>(async |conn| {
            let before = users::get_user(conn, id).await.map_err(|e| ApiError::from_db("user", e))?;
            users::delete_user(conn, id).await.map_err(|e| ApiError::from_db("user", e))?;
            if is_active_super_admin(&before) {
                ensure_a_super_admin_remains(conn).await?;
            }
            let event = audit::event(
                &principal,
                &client,
                "user.delete",
                "user",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"username": before.username, "role": before.role.as_str()}),
            );
            audit::record(conn, &event).await?;
            // Access tokens are stateless: void them too, before the commit.
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
