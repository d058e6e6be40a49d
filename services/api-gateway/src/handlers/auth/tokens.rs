//! API tokens (`owk_…`): created by a signed-in user, scoped to a subset of their
//! permissions, shown once, stored as SHA-256.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, TimeDelta, Utc};
use openwatch_common::access::Permission;
use openwatch_common::ids::ApiTokenId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::api_tokens::{self, ApiToken, NewApiToken};
use openwatch_db::queries::audit::AuditOutcome;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::require_session;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// Longest lifetime of an API token.
pub const MAX_TOKEN_DAYS: u32 = 366;

/// A new API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// A name to tell tokens apart.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Scopes (`hosts:read`, …): each must be a permission of the creator's role.
    #[schema(min_items = 1)]
    pub permissions: Vec<String>,
    /// Days until expiry (1–366; default 90).
    #[schema(minimum = 1, maximum = 366)]
    pub expires_in_days: Option<u32>,
}

/// An API token (without its secret).
#[derive(Serialize, ToSchema)]
pub struct ApiTokenResponse {
    /// Token id.
    #[schema(value_type = uuid::Uuid)]
    pub id: ApiTokenId,
    /// Name.
    pub name: String,
    /// The token's first characters, to recognise it.
    pub token_prefix: String,
    /// Scopes.
    pub permissions: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last used (minute resolution).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for ApiTokenResponse {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            token_prefix: t.token_prefix,
            permissions: t.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A freshly created token: the secret is in this response only.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiToken {
    /// The secret token (`owk_…`); store it now, it cannot be shown again.
    pub token: String,
    /// Its metadata.
    #[serde(flatten)]
    pub metadata: ApiTokenResponse,
}

/// Creates an API token for the signed-in user.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    request_body = CreateApiToken,
    responses(
        (status = 201, description = "Created; the token is shown once", body = CreatedApiToken),
        (status = 400, description = "`invalid_name`, `invalid_permission`, `invalid_expiry`", body = ErrorBody),
        (status = 403, description = "`session_required` or `permission_not_held`", body = ErrorBody),
    )
)]
#[post("/auth/tokens")]
pub async fn create_api_token(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<CreateApiToken>,
) -> Result<HttpResponse, ApiError> {
    require_session(&principal)?;
    let CreateApiToken { name, permissions, expires_in_days } = body.into_inner();
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request("invalid_name", "name must be 1–128 characters"));
    }
    if permissions.is_empty() {
        return Err(ApiError::bad_request("invalid_permission", "at least one permission is required"));
    }
    let mut scopes = Vec::new();
    for name in &permissions {
        let permission: Permission = name.parse().map_err(|e: openwatch_common::UnknownVariant| {
            ApiError::bad_request("invalid_permission", e.to_string())
        })?;
        if !principal.role.allows(permission) {
            return Err(ApiError::forbidden(
                "permission_not_held",
                format!("your role does not hold `{permission}`"),
            ));
        }
        if !scopes.contains(&permission) {
            scopes.push(permission);
        }
    }
    let days = expires_in_days.unwrap_or(90);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_expiry",
            format!("expires_in_days must be 1–{MAX_TOKEN_DAYS}"),
        ));
    }
    let (secret, prefix) = openwatch_secrets::tokens::generate_api_token().map_err(ApiError::internal)?;
    let token = NewApiToken {
        id: ApiTokenId::new(),
        user_id: principal.user_id,
        name,
        token_prefix: prefix,
        token_hash: openwatch_secrets::tokens::sha256(secret.expose_secret()),
        permissions: scopes,
        expires_at: Some(Utc::now() + TimeDelta::days(i64::from(days))),
    };
    let mut conn = state.pool.get().await?;
    let stored = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let stored = api_tokens::insert_api_token(conn, token).await?;
            let event = audit::event(
                &principal,
                &client,
                "api_token.create",
                "api_token",
                Some(stored.id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"name": stored.name, "permissions": stored.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>()}),
            );
            audit::record(conn, &event).await?;
            Ok(stored)
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiToken {
        token: secret.expose_secret().to_owned(),
        metadata: ApiTokenResponse::from(stored),
    }))
}

/// The signed-in user's API tokens (never their secrets).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    responses((status = 200, description = "Tokens", body = Vec<ApiTokenResponse>))
)]
#[get("/auth/tokens")]
pub async fn list_api_tokens(
    state: web::Data<ApiState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let tokens = api_tokens::list_for_user(&mut conn, principal.user_id).await?;
    Ok(HttpResponse::Ok().json(tokens.into_iter().map(ApiTokenResponse::from).collect::<Vec<_>>()))
}

/// Revokes one of the signed-in user's API tokens.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    params(("id" = uuid::Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`api_token_not_found`", body = ErrorBody),
    )
)]
#[delete("/auth/tokens/{id}")]
pub async fn revoke_api_token(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ApiTokenId(path.into_inner());
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        api_tokens::revoke(conn, principal.user_id, id)
            .await
            .map_err(|e| ApiError::from_db("api_token", e))?;
        let event = audit::event(
            &principal,
            &client,
            "api_token.revoke",
            "api_token",
            Some(id.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({}),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
