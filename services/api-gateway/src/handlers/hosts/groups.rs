//! Host groups: `GET/POST /api/host-groups`, `GET/PATCH/DELETE /api/host-groups/{id}`.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use openwatch_common::ids::HostGroupId;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::host_groups::{self, HostGroup, HostGroupChangeset, NewHostGroup};
use openwatch_db::{AsyncConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::clean_name;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{Order, PageParams, page_response};
use crate::state::ApiState;

/// Longest group description.
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// A host group.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostGroupResponse {
    /// Group id.
    #[schema(value_type = uuid::Uuid)]
    pub id: HostGroupId,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Hosts in the group.
    pub member_count: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<HostGroup> for HostGroupResponse {
    fn from(g: HostGroup) -> Self {
        Self {
            id: g.id,
            name: g.name,
            description: g.description,
            member_count: g.member_count,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHostGroup {
    /// Unique name (1–255 characters).
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Description (≤ 2000 characters).
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Changes to a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHostGroup {
    /// New name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// New description (`null` clears it).
    #[serde(default, with = "crate::handlers::double_option")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
}

/// Filters of the group list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupQuery {
    /// Substring of the name (case-insensitive).
    pub q: Option<String>,
    /// Sort by name: `asc` (default) or `desc`.
    pub order: Option<Order>,
}

fn clean_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => {
            Err(ApiError::bad_request("invalid_description", "description must be at most 2000 characters"))
        }
        other => Ok(other),
    }
}

pub(super) fn map_group_error(error: DbError) -> ApiError {
    match error {
        DbError::Conflict { .. } => ApiError::conflict("group_name_taken", "a group with this name exists"),
        other => ApiError::from_db("host_group", other),
    }
}

/// Host groups, by name.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:read"])),
    params(GroupQuery, PageParams),
    responses((status = 200, description = "A page of groups", body = crate::http::pagination::PageBody<HostGroupResponse>))
)]
#[get("/host-groups")]
pub async fn list_groups(
    state: web::Data<ApiState>,
    query: web::Query<GroupQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let query = query.into_inner();
    let mut conn = state.pool.get().await?;
    let groups =
        host_groups::list_groups(&mut conn, query.q.as_deref(), query.order.unwrap_or_default().into(), page)
            .await?;
    Ok(page_response(groups, page, HostGroupResponse::from))
}

/// One group.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = HostGroupResponse),
        (status = 404, description = "`host_group_not_found`", body = ErrorBody),
    )
)]
#[get("/host-groups/{id}")]
pub async fn get_group(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let group =
        host_groups::get_group(&mut conn, HostGroupId(path.into_inner())).await.map_err(map_group_error)?;
    Ok(HttpResponse::Ok().json(HostGroupResponse::from(group)))
}

/// Creates a group.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:write"])),
    request_body = CreateHostGroup,
    responses(
        (status = 201, description = "Created", body = HostGroupResponse),
        (status = 400, description = "`invalid_name`, `invalid_description`", body = ErrorBody),
        (status = 409, description = "`group_name_taken`", body = ErrorBody),
    )
)]
#[post("/host-groups")]
pub async fn create_group(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<CreateHostGroup>,
) -> Result<HttpResponse, ApiError> {
    let CreateHostGroup { name, description } = body.into_inner();
    let new = NewHostGroup {
        id: HostGroupId::new(),
        name: clean_name(&name)?,
        description: clean_description(description)?,
    };
    let mut conn = state.pool.get().await?;
    let group = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let group = host_groups::insert_group(conn, new).await.map_err(map_group_error)?;
            let event = audit::event(
                &principal,
                &client,
                "host_group.create",
                "host_group",
                Some(group.id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"name": group.name}),
            );
            audit::record(conn, &event).await?;
            Ok(group)
        })
        .await?;
    Ok(HttpResponse::Created().json(HostGroupResponse::from(group)))
}

/// Renames a group or changes its description.
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    request_body = UpdateHostGroup,
    responses(
        (status = 200, description = "Updated", body = HostGroupResponse),
        (status = 404, description = "`host_group_not_found`", body = ErrorBody),
        (status = 409, description = "`group_name_taken`", body = ErrorBody),
    )
)]
#[patch("/host-groups/{id}")]
pub async fn update_group(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<UpdateHostGroup>,
) -> Result<HttpResponse, ApiError> {
    let id = HostGroupId(path.into_inner());
    let UpdateHostGroup { name, description } = body.into_inner();
    let changes = HostGroupChangeset {
        name: name.map(|n| clean_name(&n)).transpose()?,
        description: description.map(clean_description).transpose()?,
    };
    let mut conn = state.pool.get().await?;
    let group = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let group = host_groups::update_group(conn, id, changes).await.map_err(map_group_error)?;
            let event = audit::event(
                &principal,
                &client,
                "host_group.update",
                "host_group",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"name": group.name}),
            );
            audit::record(conn, &event).await?;
            Ok(group)
        })
        .await?;
    Ok(HttpResponse::Ok().json(HostGroupResponse::from(group)))
}

/// Deletes a group (its hosts stay).
#[utoipa::path(
    tag = "host-groups",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`host_group_not_found`", body = ErrorBody),
    )
)]
#[delete("/host-groups/{id}")]
pub async fn delete_group(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = HostGroupId(path.into_inner());
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        host_groups::delete_group(conn, id).await.map_err(map_group_error)?;
        let event = audit::event(
            &principal,
            &client,
            "host_group.delete",
            "host_group",
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
