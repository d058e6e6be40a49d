//! Planned maintenance windows of a host: while one is active, the dispatcher schedules
//! no scan of the host. `GET/POST /api/hosts/{id}/maintenance-windows`,
//! `DELETE /api/hosts/{id}/maintenance-windows/{window_id}`.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, TimeDelta, Utc};
use openwatch_common::ids::HostId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::{hosts, maintenance_windows};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{PageParams, page_response};
use crate::state::ApiState;

/// Longest maintenance window.
const MAX_WINDOW: TimeDelta = TimeDelta::days(30);

/// A maintenance window.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaintenanceWindowResponse {
    /// Window id.
    pub id: uuid::Uuid,
    /// The host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// Start (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub reason: Option<String>,
    /// Who planned it.
    pub created_by: Option<uuid::Uuid>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

impl From<maintenance_windows::MaintenanceWindow> for MaintenanceWindowResponse {
    fn from(w: maintenance_windows::MaintenanceWindow) -> Self {
        Self {
            id: w.id,
            host_id: w.host_id,
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            reason: w.reason,
            created_by: w.created_by.map(|u| u.0),
            created_at: w.created_at,
        }
    }
}

/// A window to plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMaintenanceWindow {
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End: after the start, in the future, at most 30 days after the start.
    pub ends_at: DateTime<Utc>,
    /// Why (≤ 500 characters).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Current and upcoming windows of a host.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Host id"), PageParams),
    responses(
        (status = 200, description = "A page of windows", body = crate::http::pagination::PageBody<MaintenanceWindowResponse>),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[get("/hosts/{id}/maintenance-windows")]
pub async fn list_windows(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let host = HostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    hosts::get_host(&mut conn, host).await.map_err(|e| ApiError::from_db("host", e))?;
    let windows = maintenance_windows::list_for_host(&mut conn, host, Utc::now(), page).await?;
    Ok(page_response(windows, page, MaintenanceWindowResponse::from))
}

/// Plans a maintenance window.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    request_body = CreateMaintenanceWindow,
    responses(
        (status = 201, description = "Planned", body = MaintenanceWindowResponse),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_window`", body = ErrorBody),
    )
)]
#[post("/hosts/{id}/maintenance-windows")]
pub async fn create_window(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<CreateMaintenanceWindow>,
) -> Result<HttpResponse, ApiError> {
    let host = HostId(path.into_inner());
    let CreateMaintenanceWindow { starts_at, ends_at, reason } = body.into_inner();
    let invalid = |m: &str| ApiError::unprocessable("invalid_window", m.to_owned());
    if ends_at <= starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    if ends_at <= Utc::now() {
        return Err(invalid("the window must end in the future"));
    }
    if ends_at - starts_at > MAX_WINDOW {
        return Err(invalid("a window lasts at most 30 days"));
    }
    let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(invalid("reason must be at most 500 characters"));
    }
    let new = maintenance_windows::NewMaintenanceWindow {
        id: uuid::Uuid::now_v7(),
        host_id: host,
        starts_at,
        ends_at,
        reason,
        created_by: Some(principal.user_id),
    };
    let mut conn = state.pool.get().await?;
    let window = conn
        .transaction::<_, ApiError, _>(async |conn| {
            hosts::get_host(conn, host).await.map_err(|e| ApiError::from_db("host", e))?;
            let window = maintenance_windows::insert(conn, new).await?;
            let event = audit::event(
                &principal,
                &client,
                "host.maintenance_window.create",
                "host",
                Some(host.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"window_id": window.id, "starts_at": window.starts_at, "ends_at": window.ends_at}),
            );
            audit::record(conn, &event).await?;
            Ok(window)
        })
        .await?;
    Ok(HttpResponse::Created().json(MaintenanceWindowResponse::from(window)))
}

/// Cancels a maintenance window.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Host id"), ("window_id" = uuid::Uuid, Path, description = "Window id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`maintenance_window_not_found`", body = ErrorBody),
    )
)]
#[delete("/hosts/{id}/maintenance-windows/{window_id}")]
pub async fn delete_window(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<(uuid::Uuid, uuid::Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (host, window) = path.into_inner();
    let host = HostId(host);
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        maintenance_windows::delete(conn, host, window)
            .await
            .map_err(|e| ApiError::from_db("maintenance_window", e))?;
        let event = audit::event(
            &principal,
            &client,
            "host.maintenance_window.delete",
            "host",
            Some(host.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({"window_id": window}),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
