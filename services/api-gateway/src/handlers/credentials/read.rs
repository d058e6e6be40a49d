//! `GET /api/credentials`, `GET /api/credentials/{id}` and
//! `GET /api/hosts/{id}/effective-credential`: metadata only, never the secret.

use actix_web::{HttpResponse, get, web};
use openwatch_common::ids::{CredentialId, HostGroupId, HostId};
use openwatch_db::queries::credentials::{self, CredentialScope, CredentialScopeKind, ScopeFilter};
use openwatch_db::queries::hosts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{CredentialResponse, CredentialScopeDto};
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Filters of the credential list (at most one of `host_id` and `group_id`; `scope`, when
/// given with one of them, must match it).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialQuery {
    /// Only credentials of this scope kind.
    #[param(inline)]
    pub scope: Option<CredentialScopeDto>,
    /// Only the credential of this host.
    pub host_id: Option<uuid::Uuid>,
    /// Only the credential of this group.
    pub group_id: Option<uuid::Uuid>,
}

impl CredentialQuery {
    fn filter(&self) -> Result<Option<ScopeFilter>, ApiError> {
        let exact = match (self.host_id, self.group_id) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("invalid_filter", "give host_id or group_id, not both"));
            }
            (Some(host), None) => Some(CredentialScope::Host(HostId(host))),
            (None, Some(group)) => Some(CredentialScope::Group(HostGroupId(group))),
            (None, None) => None,
        };
        match (exact, self.scope) {
            (Some(scope), Some(kind)) if CredentialScopeKind::from(kind) != scope.kind() => {
                Err(ApiError::bad_request("invalid_filter", "scope does not match host_id / group_id"))
            }
            (Some(scope), _) => Ok(Some(ScopeFilter::Exactly(scope))),
            (None, Some(kind)) => Ok(Some(ScopeFilter::Kind(kind.into()))),
            (None, None) => Ok(None),
        }
    }
}

/// The credential used for a host, and which level it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveCredentialResponse {
    /// The credential's metadata.
    #[serde(flatten)]
    pub credential: CredentialResponse,
    /// `host` (its own), `group` (one of its groups') or `system` (the default).
    pub resolved_from: CredentialScopeDto,
}

/// Lists credentials (metadata only), by name.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:read"])),
    params(CredentialQuery, PageParams),
    responses(
        (status = 200, description = "A page of credentials; `X-Total-Count` has the total", body = PageBody<CredentialResponse>),
        (status = 400, description = "`invalid_query`, `invalid_limit` or `invalid_filter`", body = ErrorBody),
    )
)]
#[get("/credentials")]
pub async fn list_credentials(
    state: web::Data<ApiState>,
    query: web::Query<CredentialQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let page = paging.page()?;
    let mut conn = state.pool.get().await?;
    let found = credentials::list_credentials(&mut conn, filter, page).await?;
    Ok(page_response(found, page, CredentialResponse::from))
}

/// One credential's metadata.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:read"])),
    params(("id" = uuid::Uuid, Path, description = "Credential id")),
    responses(
        (status = 200, description = "The credential (metadata only)", body = CredentialResponse),
        (status = 404, description = "`credential_not_found`", body = ErrorBody),
    )
)]
#[get("/credentials/{id}")]
pub async fn get_credential(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = CredentialId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let credential =
        credentials::get_metadata(&mut conn, id).await.map_err(|e| ApiError::from_db("credential", e))?;
    Ok(HttpResponse::Ok().json(CredentialResponse::from(credential)))
}

/// The credential OpenWatch would use to connect to a host: its own, else its
/// lowest-named group's, else the system default.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:read"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    responses(
        (status = 200, description = "The effective credential (metadata only)", body = EffectiveCredentialResponse),
        (status = 404, description = "`host_not_found`, or `no_credential` when none applies", body = ErrorBody),
    )
)]
#[get("/hosts/{id}/effective-credential")]
pub async fn get_effective_credential(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let host = HostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    hosts::get_host(&mut conn, host).await.map_err(|e| ApiError::from_db("host", e))?;
    let metadata = credentials::resolve_for_host(&mut conn, host)
        .await?
        .map(|sealed| sealed.metadata)
        .ok_or_else(|| {
            ApiError::not_found("no_credential", "no credential applies to this host (host, group or system)")
        })?;
    let resolved_from = metadata.scope.kind().into();
    Ok(HttpResponse::Ok()
        .json(EffectiveCredentialResponse { credential: CredentialResponse::from(metadata), resolved_from }))
}
