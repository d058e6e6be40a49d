//! `GET /api/hosts/{id}/rules` and `GET /api/hosts/{id}/posture`: a host's compliance now.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use openwatch_common::domain::{FindingStatus, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_db::queries::compliance::{self, RuleState, RuleStateFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{PostureResponse, bounded_filter};
use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Filters of a host's rule states (combined with AND).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleStateQuery {
    /// Only this outcome: `pass`, `fail`, `error`, `not_applicable`, `manual`.
    #[param(value_type = Option<String>, example = "fail")]
    pub status: Option<FindingStatus>,
    /// Only this severity: `critical`, `high`, `medium`, `low`, `info`.
    #[param(value_type = Option<String>, example = "critical")]
    pub severity: Option<Severity>,
    /// Only this rule.
    #[param(max_length = 255)]
    pub rule_id: Option<String>,
}

/// The latest result of one rule on one host.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleStateResponse {
    /// The rule.
    pub rule_id: String,
    /// Latest outcome: `pass`, `fail`, `error`, `not_applicable` or `manual`.
    #[schema(value_type = String, example = "fail")]
    pub status: FindingStatus,
    /// `critical`, `high`, `medium`, `low` or `info`.
    #[schema(value_type = String, example = "high")]
    pub severity: Severity,
    /// The scan that produced it (`null` once that scan was pruned).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub last_scan_id: Option<ScanId>,
    /// When the status last changed.
    pub changed_at: DateTime<Utc>,
    /// When it was last evaluated.
    pub evaluated_at: DateTime<Utc>,
    /// What was read on the host at the latest evaluation.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// Whether an active exception waives this rule on this host (not in scores).
    pub excepted: bool,
}

impl From<RuleState> for RuleStateResponse {
    fn from(s: RuleState) -> Self {
        Self {
            rule_id: s.rule_id,
            status: s.status,
            severity: s.severity,
            last_scan_id: s.last_scan_id,
            changed_at: s.changed_at,
            evaluated_at: s.evaluated_at,
            evidence: s.evidence,
            excepted: s.excepted,
        }
    }
}

/// A host's latest result per rule, by rule id, with evidence and the `excepted` flag.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["findings:read"])),
    params(("id" = uuid::Uuid, Path, description = "Host id"), RuleStateQuery, PageParams),
    responses(
        (status = 200, description = "One page of rule states; `X-Total-Count` has the total", body = PageBody<RuleStateResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[get("/hosts/{id}/rules")]
pub async fn host_rules(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
    query: web::Query<RuleStateQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let host = HostId(path.into_inner());
    let page = paging.into_inner().page()?;
    let RuleStateQuery { status, severity, rule_id } = query.into_inner();
    let filter = RuleStateFilter { status, severity, rule_id: bounded_filter("rule_id", rule_id)? };
    let mut conn = state.pool.get().await?;
    let found = compliance::host_now(&mut conn, host, &filter, page)
        .await
        .map_err(|e| ApiError::from_db("host", e))?;
    Ok(page_response(found, page, RuleStateResponse::from))
}

/// A host's current posture: score, counts (waived results apart), per severity and
/// framework.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    responses(
        (status = 200, description = "The posture (all zeros, `score: null`, before the first scan)", body = PostureResponse),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[get("/hosts/{id}/posture")]
pub async fn host_posture(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let host = HostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let posture =
        compliance::host_posture(&mut conn, host).await.map_err(|e| ApiError::from_db("host", e))?;
    Ok(HttpResponse::Ok().json(PostureResponse::new(Some(host), posture)))
}
