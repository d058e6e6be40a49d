//! `GET /api/scans`, `GET /api/scans/{id}` and `POST /api/scans/{id}/cancel`.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use openwatch_common::domain::{ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::scans::{self, ScanFilter};
use openwatch_db::{AsyncConnection, DbError};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ScanResponse, load_scan, with_live_progress};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{Order, PageBody, PageParams, TOTAL_COUNT};
use crate::state::ApiState;

/// Filters of the scan list (combined with AND) and its order.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanQuery {
    /// Only this host's scans.
    pub host_id: Option<uuid::Uuid>,
    /// Only scans in this status (`queued`, `running`, `completed`, `failed`, `cancelled`).
    #[param(value_type = Option<String>, example = "running")]
    pub status: Option<ScanStatus>,
    /// Only `manual` or only `scheduled` scans.
    #[param(value_type = Option<String>, example = "manual")]
    pub trigger: Option<ScanTrigger>,
    /// Queued at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Queued before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// By `queued_at`: `desc` (default, newest first) or `asc`.
    pub order: Option<Order>,
}

/// Lists scans, newest first unless `order=asc`.
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["scans:read"])),
    params(ScanQuery, PageParams),
    responses(
        (status = 200, description = "One page of scans; `X-Total-Count` has the total", body = PageBody<ScanResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/scans")]
pub async fn list_scans(
    state: web::Data<ApiState>,
    query: web::Query<ScanQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let ScanQuery { host_id, status, trigger, since, until, order } = query.into_inner();
    let filter = ScanFilter { host_id: host_id.map(HostId), status, trigger, since, until };
    let order = order.unwrap_or(Order::Desc);
    let mut conn = state.pool.get().await?;
    let found = scans::list_scans(&mut conn, &filter, page, order.into()).await?;
    drop(conn);
    let items = with_live_progress(&state, found.items).await;
    Ok(HttpResponse::Ok().insert_header((TOTAL_COUNT, found.total)).json(PageBody {
        items,
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// One scan with its progress (live from the worker while it runs).
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["scans:read"])),
    params(("id" = uuid::Uuid, Path, description = "Scan id")),
    responses(
        (status = 200, description = "The scan", body = ScanResponse),
        (status = 404, description = "`scan_not_found`", body = ErrorBody),
    )
)]
#[get("/scans/{id}")]
pub async fn get_scan(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ScanId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let scan = load_scan(&state, &mut conn, id).await?;
    Ok(HttpResponse::Ok().json(scan))
}

/// Cancels a queued or running scan; a worker's late result for it is ignored.
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["scans:write"])),
    params(("id" = uuid::Uuid, Path, description = "Scan id")),
    responses(
        (status = 200, description = "Cancelled; the scan as it is now", body = ScanResponse),
        (status = 404, description = "`scan_not_found`", body = ErrorBody),
        (status = 409, description = "`scan_not_cancellable`: it already finished", body = ErrorBody),
    )
)]
#[post("/scans/{id}/cancel")]
pub async fn cancel_scan(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ScanId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let scan = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let scan = scans::cancel_scan(conn, id, Utc::now()).await.map_err(|e| match e {
                DbError::Constraint { constraint, message } if constraint == "scan_not_cancellable" => {
                    ApiError::conflict("scan_not_cancellable", message)
                }
                other => ApiError::from_db("scan", other),
            })?;
            let event = audit::event(
                &principal,
                &client,
                "scan.cancel",
                "scan",
                Some(id.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"host_id": scan.host_id}),
            );
            audit::record(conn, &event).await?;
            Ok(scan)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ScanResponse::new(scan, None)))
}
