//! `GET /api/compliance/posture`, `/history` and `/as-of`.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use openwatch_common::ids::HostId;
use openwatch_db::AsyncPgConnection;
use openwatch_db::queries::compliance::{self, PosturePoint, PostureSnapshot};
use openwatch_db::queries::hosts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::PostureResponse;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// Days of history returned when `from` is not given.
const DEFAULT_HISTORY_DAYS: i64 = 30;
/// Longest history one request may ask for, in days (both ends included).
const MAX_HISTORY_DAYS: i64 = 366;

/// 404 `host_not_found` unless the host exists.
async fn ensure_host(conn: &mut AsyncPgConnection, host: HostId) -> Result<(), ApiError> {
    hosts::get_host(conn, host).await.map(drop).map_err(|e| ApiError::from_db("host", e))
}

/// The current posture of the whole fleet, pooling every host's results (waived results
/// counted apart, not in scores).
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    responses((status = 200, description = "Fleet posture", body = PostureResponse))
)]
#[get("/compliance/posture")]
pub async fn fleet_posture(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let posture = compliance::fleet_posture(&mut conn).await?;
    Ok(HttpResponse::Ok().json(PostureResponse::new(None, posture)))
}

/// Which history to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// One host's history; the fleet's (average of host scores per day) without it.
    pub host_id: Option<uuid::Uuid>,
    /// First day (YYYY-MM-DD, default 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD, default today, UTC).
    pub to: Option<NaiveDate>,
}

/// The posture on one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct PosturePointResponse {
    /// The day.
    pub date: NaiveDate,
    /// The host's score that day, or the fleet's average over hosts with a snapshot.
    pub score: f64,
    /// Hosts with a snapshot that day.
    pub hosts: u64,
    /// Passed results that day.
    pub passed: u64,
    /// Failed results that day.
    pub failed: u64,
}

impl From<PosturePoint> for PosturePointResponse {
    fn from(p: PosturePoint) -> Self {
        Self { date: p.date, score: p.score, hosts: p.hosts, passed: p.passed, failed: p.failed }
    }
}

/// Daily posture over a date range.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostureHistoryResponse {
    /// The host, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub host_id: Option<HostId>,
    /// First day of the range.
    pub from: NaiveDate,
    /// Last day of the range.
    pub to: NaiveDate,
    /// One point per day with snapshots, oldest first (days without are absent).
    pub points: Vec<PosturePointResponse>,
}

/// The validated range: `to` defaults to `today`, `from` to 29 days before `to`; at most
/// [`MAX_HISTORY_DAYS`] days, `from` not after `to` (400 `invalid_range`).
fn history_range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = to.unwrap_or(today);
    let from = match from {
        Some(from) => from,
        None => to
            .checked_sub_signed(TimeDelta::days(DEFAULT_HISTORY_DAYS - 1))
            .ok_or_else(|| ApiError::bad_request("invalid_range", "`to` is out of range"))?,
    };
    if from > to {
        return Err(ApiError::bad_request("invalid_range", "`from` must not be after `to`"));
    }
    if (to - from).num_days() + 1 > MAX_HISTORY_DAYS {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("at most {MAX_HISTORY_DAYS} days per request"),
        ));
    }
    Ok((from, to))
}

/// Daily posture from the snapshots: a host's own, or the fleet's average per day.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "History", body = PostureHistoryResponse),
        (status = 400, description = "`invalid_range` (`from` after `to`, more than 366 days), `invalid_query`", body = ErrorBody),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[get("/compliance/history")]
pub async fn posture_history(
    state: web::Data<ApiState>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let HistoryQuery { host_id, from, to } = query.into_inner();
    let (from, to) = history_range(from, to, Utc::now().date_naive())?;
    let host = host_id.map(HostId);
    let mut conn = state.pool.get().await?;
    if let Some(host) = host {
        ensure_host(&mut conn, host).await?;
    }
    let points = compliance::posture_history(&mut conn, host, from, to).await?;
    Ok(HttpResponse::Ok().json(PostureHistoryResponse {
        host_id: host,
        from,
        to,
        points: points.into_iter().map(PosturePointResponse::from).collect(),
    }))
}

/// Which snapshot to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The host.
    pub host_id: uuid::Uuid,
    /// The day (YYYY-MM-DD): the latest snapshot on or before it is returned.
    pub date: NaiveDate,
}

/// A host's stored daily snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostureSnapshotResponse {
    /// The host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// The day the snapshot describes (on or before the requested date).
    pub date: NaiveDate,
    /// Score that day.
    pub score: f64,
    /// Framework id → counts and score.
    #[schema(value_type = Object)]
    pub per_framework: serde_json::Value,
    /// Severity → counts.
    #[schema(value_type = Object)]
    pub per_severity: serde_json::Value,
    /// Rule id → status.
    #[schema(value_type = Object)]
    pub rule_states: serde_json::Value,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl From<PostureSnapshot> for PostureSnapshotResponse {
    fn from(s: PostureSnapshot) -> Self {
        Self {
            host_id: s.host_id,
            date: s.date,
            score: s.score,
            per_framework: s.per_framework,
            per_severity: s.per_severity,
            rule_states: s.rule_states,
            created_at: s.created_at,
        }
    }
}

/// A host's posture as of a past day: its latest daily snapshot on or before `date`.
#[utoipa::path(
    tag = "compliance",
    security(("bearer" = ["compliance:read"])),
    params(AsOfQuery),
    responses(
        (status = 200, description = "The snapshot", body = PostureSnapshotResponse),
        (status = 400, description = "`invalid_query` (missing or malformed `host_id` or `date`)", body = ErrorBody),
        (status = 404, description = "`host_not_found`, or `no_snapshot`: none that old", body = ErrorBody),
    )
)]
#[get("/compliance/as-of")]
pub async fn posture_as_of(
    state: web::Data<ApiState>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let AsOfQuery { host_id, date } = query.into_inner();
    let host = HostId(host_id);
    let mut conn = state.pool.get().await?;
    ensure_host(&mut conn, host).await?;
    let snapshot = compliance::posture_as_of(&mut conn, host, date).await?.ok_or_else(|| {
        ApiError::not_found("no_snapshot", format!("host {host} has no snapshot on or before {date}"))
    })?;
    Ok(HttpResponse::Ok().json(PostureSnapshotResponse::from(snapshot)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn history_ranges_default_to_thirty_days_and_are_bounded() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let today = day(2026, 3, 31);
        assert_eq!(history_range(None, None, today).unwrap(), (day(2026, 3, 2), today));
        assert_eq!(
            history_range(None, Some(day(2026, 1, 30)), today).unwrap(),
            (day(2026, 1, 1), day(2026, 1, 30))
        );
        // 366 days inclusive is the most.
        assert!(history_range(Some(day(2025, 3, 31)), Some(day(2026, 3, 31)), today).is_ok());
        let code = |r: Result<(NaiveDate, NaiveDate), ApiError>| r.unwrap_err().code().to_owned();
        assert_eq!(
            code(history_range(Some(day(2025, 3, 30)), Some(day(2026, 3, 31)), today)),
            "invalid_range"
        );
        assert_eq!(code(history_range(Some(day(2026, 4, 1)), None, today)), "invalid_range");
    }
}
