//! `GET /api/hosts` and `GET /api/hosts/{id}`.

use actix_web::{HttpResponse, get, web};
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::{HostGroupId, HostId};
use openwatch_db::queries::{host_groups, hosts};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::HostResponse;
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{Order, PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Longest accepted filter text.
const MAX_FILTER_CHARS: usize = 255;

/// Sort key of the host list (ties broken by id).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostSortParam {
    /// Name.
    #[default]
    Name,
    /// Registration time.
    CreatedAt,
    /// Last score (never-scored hosts last).
    LastScore,
    /// Next scheduled scan.
    NextScanAt,
    /// Compliance band, worst (`unknown`, `critical`) first in ascending order.
    ComplianceState,
}

/// Filters (all narrowing, combined with AND) and sorting of the host list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HostQuery {
    /// Case-insensitive substring of name or address.
    #[param(max_length = 255)]
    pub q: Option<String>,
    /// Exactly this name.
    pub name: Option<String>,
    /// Exactly this address.
    pub address: Option<String>,
    /// Members of this group.
    pub group_id: Option<uuid::Uuid>,
    /// Exactly this os-release `ID`.
    pub os_family: Option<String>,
    /// In this liveness state.
    #[param(value_type = Option<String>, example = "online")]
    pub monitoring_state: Option<MonitoringState>,
    /// In this compliance band.
    #[param(value_type = Option<String>, example = "critical")]
    pub compliance_state: Option<ComplianceState>,
    /// Carrying this tag (exact).
    pub tag: Option<String>,
    /// Sort key (default `name`).
    pub sort: Option<HostSortParam>,
    /// Sort direction (default `asc`).
    pub order: Option<Order>,
}

/// Lists hosts.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:read"])),
    params(HostQuery, PageParams),
    responses(
        (status = 200, description = "One page of hosts; `X-Total-Count` has the total", body = PageBody<HostResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/hosts")]
pub async fn list_hosts(
    state: web::Data<ApiState>,
    query: web::Query<HostQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let HostQuery {
        q,
        name,
        address,
        group_id,
        os_family,
        monitoring_state,
        compliance_state,
        tag,
        sort,
        order,
    } = query.into_inner();
    if [&q, &name, &address, &os_family, &tag]
        .into_iter()
        .flatten()
        .any(|text| text.chars().count() > MAX_FILTER_CHARS)
    {
        return Err(ApiError::bad_request("invalid_query", "filters must be at most 255 characters"));
    }
    let filter = hosts::HostFilter {
        q,
        name,
        address,
        group_id: group_id.map(HostGroupId),
        os_family,
        monitoring_state,
        compliance_state,
        tag,
    };
    let sort = match sort.unwrap_or_default() {
        HostSortParam::Name => hosts::HostSort::Name,
        HostSortParam::CreatedAt => hosts::HostSort::CreatedAt,
        HostSortParam::LastScore => hosts::HostSort::LastScore,
        HostSortParam::NextScanAt => hosts::HostSort::NextScanAt,
        HostSortParam::ComplianceState => hosts::HostSort::ComplianceState,
    };
    let mut conn = state.pool.get().await?;
    let found = hosts::list_hosts(&mut conn, &filter, sort, order.unwrap_or_default().into(), page).await?;
    Ok(page_response(found, page, HostResponse::from))
}

/// One host, with the groups it belongs to.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    responses(
        (status = 200, description = "The host", body = HostResponse),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[get("/hosts/{id}")]
pub async fn get_host(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = HostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let host = hosts::get_host(&mut conn, id).await.map_err(|e| ApiError::from_db("host", e))?;
    let groups = host_groups::group_ids_of_host(&mut conn, id).await?;
    let mut response = HostResponse::from(host);
    response.group_ids = Some(groups.into_iter().map(|g| g.0).collect());
    Ok(HttpResponse::Ok().json(response))
}
