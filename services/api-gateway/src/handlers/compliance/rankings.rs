//! `GET /api/compliance/top-failing-rules` and `GET /api/compliance/priority-hosts`.
//!
//! Both read every current rule state of the fleet once (see the cost note of
//! `openwatch_db::queries::compliance`); waived results never count.

use actix_web::{HttpResponse, get, web};
use openwatch_common::domain::Severity;
use openwatch_common::ids::HostId;
use openwatch_db::queries::compliance::{self, FailingRule, PriorityHost};
use serde::Serialize;
use utoipa::ToSchema;

use super::LimitQuery;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// A rule failing across the fleet.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailingRuleResponse {
    /// The rule.
    pub rule_id: String,
    /// Its severity (the worst recorded).
    #[schema(value_type = String, example = "critical")]
    pub severity: Severity,
    /// Hosts where it fails now (not waived).
    pub failing_hosts: u64,
}

impl From<FailingRule> for FailingRuleResponse {
    fn from(r: FailingRule) -> Self {
        Self { rule_id: r.rule_id, severity: r.severity, failing_hosts: r.failing_hosts }
    }
}

/// A host to remediate first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriorityHostResponse {
    /// The host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// Its name.
    pub name: String,
    /// Its current score over non-waived results.
    pub score: Option<f64>,
    /// Failing critical rules (not waived).
    pub critical_failures: u64,
    /// Failing high rules (not waived).
    pub high_failures: u64,
}

impl From<PriorityHost> for PriorityHostResponse {
    fn from(h: PriorityHost) -> Self {
        Self {
            host_id: h.host_id,
            name: h.name,
            score: h.score,
            critical_failures: h.critical_failures,
            high_failures: h.high_failures,
        }
    }
}

/// The rules failing on the most hosts (ties: worse severity, then rule id).
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(LimitQuery),
    responses(
        (status = 200, description = "Rules, most failing first", body = Vec<FailingRuleResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/compliance/top-failing-rules")]
pub async fn top_failing_rules(
    state: web::Data<ApiState>,
    query: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let mut conn = state.pool.get().await?;
    let rules = compliance::top_failing_rules(&mut conn, limit).await?;
    Ok(HttpResponse::Ok().json(rules.into_iter().map(FailingRuleResponse::from).collect::<Vec<_>>()))
}

/// The hosts to fix first: most failing critical rules, then high ones, then lowest score.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(LimitQuery),
    responses(
        (status = 200, description = "Hosts, most urgent first", body = Vec<PriorityHostResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/compliance/priority-hosts")]
pub async fn priority_hosts(
    state: web::Data<ApiState>,
    query: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let mut conn = state.pool.get().await?;
    let hosts = compliance::priority_hosts(&mut conn, limit).await?;
    Ok(HttpResponse::Ok().json(hosts.into_iter().map(PriorityHostResponse::from).collect::<Vec<_>>()))
}
