//! `POST /api/auth/refresh` and `POST /api/auth/logout`.

use actix_web::{HttpResponse, post, web};
use chrono::Utc;
use openwatch_db::queries::audit::{AuditOutcome, NewAuditEvent, record};
use openwatch_db::queries::sessions::{self, NewRefreshToken, RotateOutcome};
use openwatch_db::queries::users;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{TokenResponse, new_refresh, require_session, token_response};
use crate::auth::{ClientInfo, Principal, revocation};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A refresh token to exchange.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    #[schema(max_length = 256)]
    pub refresh_token: String,
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthorized("invalid_refresh_token", "the refresh token is invalid or expired")
}

/// Exchanges a refresh token for new tokens (the old refresh token stops working).
///
/// Presenting an already used refresh token revokes its whole session family: whoever
/// holds either copy is signed out.
#[utoipa::path(
    tag = "auth",
    security(()),
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorBody),
    )
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<ApiState>,
    client: ClientInfo,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let presented = body.into_inner().refresh_token;
    if !presented.starts_with(openwatch_secrets::tokens::REFRESH_TOKEN_PREFIX) || presented.len() > 256 {
        return Err(invalid_refresh());
    }
    let now = Utc::now();
    let next = new_refresh(&state, now)?;
    let mut conn = state.pool.get().await?;
    let outcome = sessions::rotate(
        &mut conn,
        &openwatch_secrets::tokens::sha256(&presented),
        &NewRefreshToken {
            id: uuid::Uuid::now_v7(),
            token_hash: next.hash,
            expires_at: next.expires_at,
            user_agent: client.user_agent.clone(),
            ip: client.ip,
        },
        now,
    )
    .await?;
    match outcome {
        RotateOutcome::Rotated { user_id, family_id } => {
            let user = users::get_user(&mut conn, user_id).await?;
            if !user.is_active {
                sessions::revoke_family(&mut conn, family_id, sessions::REASON_ADMIN, now).await?;
                return Err(invalid_refresh());
            }
            Ok(HttpResponse::Ok().json(token_response(&state, &user, family_id, next, now)?))
        }
        RotateOutcome::Reused { family_id, user_id } => {
            revocation::revoke_session(
                &state.redis,
                &state.config.redis_key_prefix,
                family_id,
                state.config.access_token_ttl,
            )
            .await?;
            let actor_name =
                users::get_user(&mut conn, user_id).await.map(|u| u.username).unwrap_or_default();
            record(
                &mut conn,
                &NewAuditEvent {
                    actor_user_id: Some(user_id),
                    actor_name,
                    action: "auth.refresh_reused".to_owned(),
                    resource_type: "session".to_owned(),
                    resource_id: Some(family_id.0.to_string()),
                    outcome: AuditOutcome::Denied,
                    ip: client.ip,
                    details: serde_json::json!({"request_id": client.request_id, "effect": "session family revoked"}),
                },
            )
            .await?;
            Err(ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; the session has been revoked",
            ))
        }
        RotateOutcome::Expired | RotateOutcome::Unknown => Err(invalid_refresh()),
    }
}

/// Ends the current session: its refresh tokens and access tokens stop working at once.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "`session_required`: an API token has no session", body = ErrorBody),
    )
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    let session = require_session(&principal)?;
    let now = Utc::now();
    revocation::revoke_session(
        &state.redis,
        &state.config.redis_key_prefix,
        session,
        state.config.access_token_ttl,
    )
    .await?;
    let mut conn = state.pool.get().await?;
    sessions::revoke_family(&mut conn, session, sessions::REASON_LOGOUT, now).await?;
    let event = audit::event(
        &principal,
        &client,
        "auth.logout",
        "session",
        Some(session.0.to_string()),
        AuditOutcome::Success,
        serde_json::json!({}),
    );
    record(&mut conn, &event).await?;
    Ok(HttpResponse::NoContent().finish())
}
