//! `GET /api/compliance/drift`: detected changes of rule statuses and host scores.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use openwatch_common::domain::{FindingStatus, Severity};
use openwatch_common::ids::{DriftEventId, HostId, ScanId};
use openwatch_db::queries::compliance::{self, DriftDirection, DriftEvent, DriftFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::bounded_filter;
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Filters of the drift list (combined with AND).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    /// Only this host's.
    pub host_id: Option<uuid::Uuid>,
    /// Only this rule's.
    #[param(max_length = 255)]
    pub rule_id: Option<String>,
    /// Detected at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Detected before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `worsened` (e.g. `pass → fail`, a score drop) or `improved`.
    #[param(value_type = Option<String>, example = "worsened")]
    pub direction: Option<DriftDirection>,
}

/// A detected change of a rule's status or of a host's score.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftEventResponse {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: DriftEventId,
    /// The host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// The scan that revealed it (`null` once pruned).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub scan_id: Option<ScanId>,
    /// The rule; `null` for a score drift.
    pub rule_id: Option<String>,
    /// Status before (`null`: no earlier result).
    #[schema(value_type = Option<String>, example = "pass")]
    pub previous_status: Option<FindingStatus>,
    /// Status after.
    #[schema(value_type = Option<String>, example = "fail")]
    pub current_status: Option<FindingStatus>,
    /// The rule's severity.
    #[schema(value_type = Option<String>, example = "high")]
    pub severity: Option<Severity>,
    /// Score before (score drifts).
    pub previous_score: Option<f64>,
    /// Score after (score drifts).
    pub current_score: Option<f64>,
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
}

impl From<DriftEvent> for DriftEventResponse {
    fn from(e: DriftEvent) -> Self {
        Self {
            id: e.id,
            host_id: e.host_id,
            scan_id: e.scan_id,
            rule_id: e.rule_id,
            previous_status: e.previous_status,
            current_status: e.current_status,
            severity: e.severity,
            previous_score: e.previous_score,
            current_score: e.current_score,
            detected_at: e.detected_at,
        }
    }
}

/// Lists drift events, newest first.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(DriftQuery, PageParams),
    responses(
        (status = 200, description = "One page of drift events; `X-Total-Count` has the total", body = PageBody<DriftEventResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/compliance/drift")]
pub async fn list_drift(
    state: web::Data<ApiState>,
    query: web::Query<DriftQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let DriftQuery { host_id, rule_id, since, until, direction } = query.into_inner();
    let filter = DriftFilter {
        host_id: host_id.map(HostId),
        rule_id: bounded_filter("rule_id", rule_id)?,
        since,
        until,
        direction,
    };
    let mut conn = state.pool.get().await?;
    let found = compliance::list_drift(&mut conn, &filter, page).await?;
    Ok(page_response(found, page, DriftEventResponse::from))
}
