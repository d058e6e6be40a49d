//! `/api/known-hosts/…`: the SSH host keys hosts presented, and their approval or revocation.
//!
//! `pending ─approve→ trusted ─revoke→ revoked` (a pending key may be revoked directly).
//! Approving a trusted key and revoking a revoked one change nothing; approving a revoked
//! key is 409 `invalid_transition`.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use openwatch_common::ids::{HostId, KnownHostId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::known_hosts::{self, KnownHost, KnownHostStatus, STATUS_TRANSITION_CONSTRAINT};
use openwatch_db::{AsyncConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Trust status of a host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = KnownHostStatus)]
pub enum KnownHostStatusDto {
    /// Seen, awaiting approval (refused in strict mode).
    Pending,
    /// Accepted for connections.
    Trusted,
    /// Never accepted again.
    Revoked,
}

impl From<KnownHostStatus> for KnownHostStatusDto {
    fn from(status: KnownHostStatus) -> Self {
        match status {
            KnownHostStatus::Pending => Self::Pending,
            KnownHostStatus::Trusted => Self::Trusted,
            KnownHostStatus::Revoked => Self::Revoked,
        }
    }
}

impl From<KnownHostStatusDto> for KnownHostStatus {
    fn from(status: KnownHostStatusDto) -> Self {
        match status {
            KnownHostStatusDto::Pending => Self::Pending,
            KnownHostStatusDto::Trusted => Self::Trusted,
            KnownHostStatusDto::Revoked => Self::Revoked,
        }
    }
}

/// A recorded SSH host key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnownHostResponse {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: KnownHostId,
    /// The host that presented it.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint_sha256: String,
    /// Base64 public key blob, when recorded.
    pub public_key: Option<String>,
    /// Trust status.
    pub status: KnownHostStatusDto,
    /// First presented.
    pub first_seen_at: DateTime<Utc>,
    /// Who approved it (`null` when trusted on first use).
    pub approved_by: Option<uuid::Uuid>,
    /// When it became trusted.
    pub approved_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<KnownHost> for KnownHostResponse {
    fn from(k: KnownHost) -> Self {
        Self {
            id: k.id,
            host_id: k.host_id,
            key_type: k.key_type,
            fingerprint_sha256: k.fingerprint_sha256,
            public_key: k.public_key,
            status: k.status.into(),
            first_seen_at: k.first_seen_at,
            approved_by: k.approved_by.map(|u| u.into_uuid()),
            approved_at: k.approved_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// Filters of the host key list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KnownHostQuery {
    /// Only keys of this host.
    pub host_id: Option<uuid::Uuid>,
    /// Only keys in this status.
    #[param(inline)]
    pub status: Option<KnownHostStatusDto>,
}

fn known_host_db_error(error: DbError) -> ApiError {
    match error {
        DbError::Constraint { constraint, message } if constraint == STATUS_TRANSITION_CONSTRAINT => {
            ApiError::conflict("invalid_transition", message)
        }
        other => ApiError::from_db("known_host", other),
    }
}

fn audit_details(before: &KnownHost, after: &KnownHost) -> serde_json::Value {
    serde_json::json!({
        "host_id": after.host_id.into_uuid(),
        "key_type": after.key_type,
        "fingerprint_sha256": after.fingerprint_sha256,
        "from": before.status.as_str(),
        "to": after.status.as_str(),
    })
}

/// Lists recorded host keys, oldest first.
#[utoipa::path(
    tag = "known-hosts",
    security(("bearer" = ["known_hosts:read"])),
    params(KnownHostQuery, PageParams),
    responses(
        (status = 200, description = "A page of host keys; `X-Total-Count` has the total", body = PageBody<KnownHostResponse>),
        (status = 400, description = "`invalid_query` or `invalid_limit`", body = ErrorBody),
    )
)]
#[get("/known-hosts")]
pub async fn list_known_hosts(
    state: web::Data<ApiState>,
    query: web::Query<KnownHostQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.page()?;
    let mut conn = state.pool.get().await?;
    let found =
        known_hosts::list(&mut conn, query.host_id.map(HostId), query.status.map(Into::into), page).await?;
    Ok(page_response(found, page, KnownHostResponse::from))
}

/// One recorded host key.
#[utoipa::path(
    tag = "known-hosts",
    security(("bearer" = ["known_hosts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Known host key id")),
    responses(
        (status = 200, description = "The host key", body = KnownHostResponse),
        (status = 404, description = "`known_host_not_found`", body = ErrorBody),
    )
)]
#[get("/known-hosts/{id}")]
pub async fn get_known_host(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = KnownHostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let key = known_hosts::get(&mut conn, id).await.map_err(known_host_db_error)?;
    Ok(HttpResponse::Ok().json(KnownHostResponse::from(key)))
}

/// Approves a pending host key (the key previously trusted for this host and key type is
/// revoked); approving a trusted key changes nothing.
#[utoipa::path(
    tag = "known-hosts",
    security(("bearer" = ["known_hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Known host key id")),
    responses(
        (status = 200, description = "The key, now trusted", body = KnownHostResponse),
        (status = 404, description = "`known_host_not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the key is revoked", body = ErrorBody),
    )
)]
#[post("/known-hosts/{id}/approve")]
pub async fn approve_known_host(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = KnownHostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let approved = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let before = known_hosts::get(conn, id).await.map_err(known_host_db_error)?;
            let approved = known_hosts::approve(conn, id, principal.user_id, Utc::now())
                .await
                .map_err(known_host_db_error)?;
            let event = audit::event(
                &principal,
                &client,
                "known_host.approve",
                "known_host",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                audit_details(&before, &approved),
            );
            audit::record(conn, &event).await?;
            Ok(approved)
        })
        .await?;
    tracing::info!(known_host.id = %id.0, host.id = %approved.host_id.0, "known host key approved");
    Ok(HttpResponse::Ok().json(KnownHostResponse::from(approved)))
}

/// Revokes a pending or trusted host key; revoking a revoked key changes nothing.
#[utoipa::path(
    tag = "known-hosts",
    security(("bearer" = ["known_hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Known host key id")),
    responses(
        (status = 200, description = "The key, now revoked", body = KnownHostResponse),
        (status = 404, description = "`known_host_not_found`", body = ErrorBody),
    )
)]
#[post("/known-hosts/{id}/revoke")]
pub async fn revoke_known_host(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = KnownHostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let revoked = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let before = known_hosts::get(conn, id).await.map_err(known_host_db_error)?;
            let revoked = known_hosts::revoke(conn, id, Utc::now()).await.map_err(known_host_db_error)?;
            let event = audit::event(
                &principal,
                &client,
                "known_host.revoke",
                "known_host",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                audit_details(&before, &revoked),
            );
            audit::record(conn, &event).await?;
            Ok(revoked)
        })
        .await?;
    tracing::info!(known_host.id = %id.0, host.id = %revoked.host_id.0, "known host key revoked");
    Ok(HttpResponse::Ok().json(KnownHostResponse::from(revoked)))
}
