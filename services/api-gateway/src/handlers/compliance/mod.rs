//! Compliance posture: the per-host "now" view, scores, history, drift and fleet rankings.
//!
//! Scores are `pass / (pass + fail) × 100` over results **not waived** by an active
//! exception (approved and unexpired); waived results are reported apart (`excepted`
//! counts, `excepted` flags) and never count in a score. All of it is computed by
//! `openwatch_db::queries::compliance`; these handlers only parse, check and shape.
//!
//! # Layout
//! * `host.rs` — `GET /api/hosts/{id}/rules` (latest result per rule) and
//!   `GET /api/hosts/{id}/posture`.
//! * `posture.rs` — `GET /api/compliance/posture` (fleet), `/history` (daily snapshots),
//!   `/as-of` (a host's snapshot on a past day).
//! * `drift.rs` — `GET /api/compliance/drift`.
//! * `rankings.rs` — `GET /api/compliance/top-failing-rules` and `/priority-hosts`.

mod drift;
mod host;
mod posture;
mod rankings;

use std::collections::BTreeMap;

use openwatch_common::ids::HostId;
use openwatch_db::queries::compliance::{PassFail, Posture};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(host::host_rules)
        .service(host::host_posture)
        .service(posture::fleet_posture)
        .service(posture::posture_history)
        .service(posture::posture_as_of)
        .service(drift::list_drift)
        .service(rankings::top_failing_rules)
        .service(rankings::priority_hosts);
}

/// Passes and fails of a slice of results, and their score.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PassFailResponse {
    /// Non-waived passed results.
    pub pass: u64,
    /// Non-waived failed results.
    pub fail: u64,
    /// `pass / (pass + fail) × 100`; `null` when both are 0.
    pub score: Option<f64>,
}

impl From<PassFail> for PassFailResponse {
    fn from(p: PassFail) -> Self {
        Self { pass: p.pass, fail: p.fail, score: p.score }
    }
}

/// The current compliance posture of a host or of the fleet.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostureResponse {
    /// The host (absent for the fleet).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub host_id: Option<HostId>,
    /// Overall score over non-waived results; `null` without passes or fails.
    pub score: Option<f64>,
    /// Non-waived passed results.
    pub pass: u64,
    /// Non-waived failed results.
    pub fail: u64,
    /// Non-waived results that could not be evaluated.
    pub error: u64,
    /// Non-waived results that do not apply.
    pub not_applicable: u64,
    /// Non-waived results needing human review.
    pub manual: u64,
    /// Results (of any status) waived by an active exception; in no other count or score.
    pub excepted: u64,
    /// Severity → passes, fails and score (severities with a non-waived pass or fail).
    pub per_severity: BTreeMap<String, PassFailResponse>,
    /// Framework id → passes, fails and score (frameworks referenced by a non-waived
    /// pass or fail).
    pub per_framework: BTreeMap<String, PassFailResponse>,
}

impl PostureResponse {
    /// The response for `posture` (of `host`, or of the fleet). Severities and frameworks
    /// whose every result is waived (no non-waived pass or fail) are left out.
    pub fn new(host_id: Option<HostId>, posture: Posture) -> Self {
        Self {
            host_id,
            score: posture.score,
            pass: posture.pass,
            fail: posture.fail,
            error: posture.error,
            not_applicable: posture.not_applicable,
            manual: posture.manual,
            excepted: posture.excepted,
            per_severity: posture
                .per_severity
                .into_iter()
                .filter(|(_, counts)| counts.pass + counts.fail > 0)
                .map(|(severity, counts)| (severity.as_str().to_owned(), counts.into()))
                .collect(),
            per_framework: posture
                .per_framework
                .into_iter()
                .filter(|(_, counts)| counts.pass + counts.fail > 0)
                .map(|(framework, counts)| (framework, counts.into()))
                .collect(),
        }
    }
}

/// Size of a ranking.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Entries to return (1–100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

impl LimitQuery {
    /// The validated limit (400 `invalid_limit` outside 1–100).
    pub fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(10);
        if (1..=100).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 100"))
        }
    }
}

/// 400 `invalid_query` for a text filter longer than 255 characters.
pub(crate) fn bounded_filter(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > 255 => {
            Err(ApiError::bad_request("invalid_query", format!("{name} must be at most 255 characters")))
        }
        other => Ok(other),
    }
}
