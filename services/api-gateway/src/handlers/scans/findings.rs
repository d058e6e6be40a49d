//! `GET /api/scans/{id}/findings`: the rule results of one scan, with evidence.

use actix_web::{HttpResponse, get, web};
use openwatch_common::domain::{FindingStatus, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_db::queries::scans::{self, Finding, FindingFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Longest accepted `rule_id` filter.
const MAX_RULE_ID_CHARS: usize = 255;

/// Filters of a finding or rule-state list (combined with AND).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingQuery {
    /// Only this outcome: `pass`, `fail`, `error`, `not_applicable`, `manual`.
    #[param(value_type = Option<String>, example = "fail")]
    pub status: Option<FindingStatus>,
    /// Only this severity: `critical`, `high`, `medium`, `low`, `info`.
    #[param(value_type = Option<String>, example = "high")]
    pub severity: Option<Severity>,
    /// Only this rule.
    #[param(max_length = 255)]
    pub rule_id: Option<String>,
}

impl FindingQuery {
    /// The rule filter, refused when absurdly long (400 `invalid_query`).
    pub fn checked_rule_id(rule_id: Option<String>) -> Result<Option<String>, ApiError> {
        match rule_id {
            Some(rule) if rule.chars().count() > MAX_RULE_ID_CHARS => {
                Err(ApiError::bad_request("invalid_query", "rule_id must be at most 255 characters"))
            }
            other => Ok(other),
        }
    }
}

/// One rule result of a scan.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingResponse {
    /// The scan.
    #[schema(value_type = uuid::Uuid)]
    pub scan_id: ScanId,
    /// The rule's stable id.
    pub rule_id: String,
    /// The scanned host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// `pass`, `fail`, `error`, `not_applicable` or `manual`.
    #[schema(value_type = String, example = "fail")]
    pub status: FindingStatus,
    /// `critical`, `high`, `medium`, `low` or `info`.
    #[schema(value_type = String, example = "high")]
    pub severity: Severity,
    /// Why the status is `error`, `not_applicable` or `manual`.
    pub reason: Option<String>,
    /// What was read on the host (`source`, `excerpt`, `expected`, `actual`).
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// Framework id → control ids the rule implements.
    #[schema(value_type = Object)]
    pub frameworks: serde_json::Value,
    /// Evaluation time in microseconds.
    pub duration_us: u64,
    /// Whether an active exception (approved, unexpired) waives this rule on this host
    /// now; waived results count apart and not in scores.
    pub excepted: bool,
}

impl From<Finding> for FindingResponse {
    fn from(f: Finding) -> Self {
        Self {
            scan_id: f.scan_id,
            rule_id: f.rule_id,
            host_id: f.host_id,
            status: f.status,
            severity: f.severity,
            reason: f.reason,
            evidence: f.evidence,
            frameworks: f.frameworks,
            duration_us: f.duration_us,
            excepted: f.excepted,
        }
    }
}

/// Lists a scan's findings by rule id, with evidence and the `excepted` flag.
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["findings:read"])),
    params(("id" = uuid::Uuid, Path, description = "Scan id"), FindingQuery, PageParams),
    responses(
        (status = 200, description = "One page of findings; `X-Total-Count` has the total", body = PageBody<FindingResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
        (status = 404, description = "`scan_not_found`", body = ErrorBody),
    )
)]
#[get("/scans/{id}/findings")]
pub async fn list_findings(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
    query: web::Query<FindingQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let id = ScanId(path.into_inner());
    let page = paging.into_inner().page()?;
    let FindingQuery { status, severity, rule_id } = query.into_inner();
    let filter = FindingFilter { status, severity, rule_id: FindingQuery::checked_rule_id(rule_id)? };
    let mut conn = state.pool.get().await?;
    let found =
        scans::list_findings(&mut conn, id, &filter, page).await.map_err(|e| ApiError::from_db("scan", e))?;
    Ok(page_response(found, page, FindingResponse::from))
}
