//! Group membership: `GET/POST /api/host-groups/{id}/members`,
//! `DELETE /api/host-groups/{id}/members/{host_id}`.

use actix_web::{HttpResponse, delete, get, post, web};
use openwatch_common::ids::{HostGroupId, HostId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::host_groups;
use openwatch_db::{AsyncConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::HostResponse;
use super::groups::map_group_error;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{PageParams, page_response};
use crate::state::ApiState;

/// Most hosts added in one request.
const MAX_HOSTS_PER_REQUEST: usize = 1000;

/// Hosts to add to a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    /// Host ids (1–1000); hosts already in the group are ignored.
    #[schema(min_items = 1, max_items = 1000)]
    pub host_ids: Vec<uuid::Uuid>,
}

/// What adding members did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersAdded {
    /// Hosts newly added.
    pub added: usize,
}

/// The hosts of a group, by name.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Group id"), PageParams),
    responses(
        (status = 200, description = "A page of hosts", body = crate::http::pagination::PageBody<HostResponse>),
        (status = 404, description = "`host_group_not_found`", body = ErrorBody),
    )
)]
#[get("/host-groups/{id}/members")]
pub async fn list_members(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let mut conn = state.pool.get().await?;
    let hosts = host_groups::list_members(&mut conn, HostGroupId(path.into_inner()), page)
        .await
        .map_err(map_group_error)?;
    Ok(page_response(hosts, page, HostResponse::from))
}

/// Adds hosts to a group (idempotent).
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = AddMembers,
    responses(
        (status = 200, description = "Added", body = MembersAdded),
        (status = 400, description = "`invalid_host_ids`", body = ErrorBody),
        (status = 404, description = "`host_group_not_found`", body = ErrorBody),
        (status = 422, description = "`unknown_host`", body = ErrorBody),
    )
)]
#[post("/host-groups/{id}/members")]
pub async fn add_members(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<AddMembers>,
) -> Result<HttpResponse, ApiError> {
    let group = HostGroupId(path.into_inner());
    let host_ids: Vec<HostId> = body.into_inner().host_ids.into_iter().map(HostId).collect();
    if host_ids.is_empty() || host_ids.len() > MAX_HOSTS_PER_REQUEST {
        return Err(ApiError::bad_request("invalid_host_ids", "give 1–1000 host ids"));
    }
    let mut conn = state.pool.get().await?;
    let added = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let added = host_groups::add_members(conn, group, &host_ids).await.map_err(|e| match e {
                DbError::Constraint { .. } => ApiError::unprocessable("unknown_host", "one of the hosts does not exist"),
                other => map_group_error(other),
            })?;
            let event = audit::event(
                &principal,
                &client,
                "host_group.add_members",
                "host_group",
                Some(group.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"host_ids": host_ids.iter().map(|h| h.0.to_string()).collect::<Vec<_>>(), "added": added}),
            );
            audit::record(conn, &event).await?;
            Ok(added)
        })
        .await?;
    Ok(HttpResponse::Ok().json(MembersAdded { added }))
}

/// Removes a host from a group.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Group id"), ("host_id" = uuid::Uuid, Path, description = "Host id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
    )
)]
#[delete("/host-groups/{id}/members/{host_id}")]
pub async fn remove_member(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (group, host) = path.into_inner();
    let (group, host) = (HostGroupId(group), HostId(host));
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        if !host_groups::remove_member(conn, group, host).await? {
            return Err(ApiError::not_found("not_a_member", "the host is not in this group"));
        }
        let event = audit::event(
            &principal,
            &client,
            "host_group.remove_member",
            "host_group",
            Some(group.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({"host_id": host.0.to_string()}),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
