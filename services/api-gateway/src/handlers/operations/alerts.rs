//! `/api/alerts/…`: listing and triaging alerts.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use openwatch_common::domain::Severity;
use openwatch_common::ids::{AlertId, HostId, UserId};
use openwatch_db::AsyncConnection;
use openwatch_db::queries::alerts::{self, Alert, AlertFilter, AlertStatus};
use openwatch_db::queries::audit::AuditOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::transition_error;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// An alert for operators.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResponse {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: AlertId,
    /// Kind: `rule_failed`, `score_dropped`, `host_below_threshold`, `mass_drift`,
    /// `host_key_mismatch`, `scan_failed`, `host_down`, …
    pub alert_type: String,
    /// The host it is about.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// The rule, for rule-level alerts.
    pub rule_id: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `info`.
    #[schema(value_type = String, example = "high")]
    pub severity: Severity,
    /// `open`, `acknowledged` or `resolved`.
    #[schema(value_type = String, example = "open")]
    pub status: AlertStatus,
    /// One-line summary.
    pub title: String,
    /// Structured context of the latest occurrence.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// First raised.
    pub opened_at: DateTime<Utc>,
    /// Last raised again.
    pub last_seen_at: DateTime<Utc>,
    /// Times raised while unresolved.
    pub occurrences: u32,
    /// Who acknowledged it.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub acknowledged_by: Option<UserId>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<Alert> for AlertResponse {
    fn from(a: Alert) -> Self {
        Self {
            id: a.id,
            alert_type: a.alert_type,
            host_id: a.host_id,
            rule_id: a.rule_id,
            severity: a.severity,
            status: a.status,
            title: a.title,
            details: a.details,
            opened_at: a.opened_at,
            last_seen_at: a.last_seen_at,
            occurrences: a.occurrences,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at,
            resolved_at: a.resolved_at,
        }
    }
}

/// Filters of the alert list (combined with AND).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only in this status: `open`, `acknowledged`, `resolved`.
    #[param(value_type = Option<String>, example = "open")]
    pub status: Option<AlertStatus>,
    /// Only of this severity.
    #[param(value_type = Option<String>, example = "critical")]
    pub severity: Option<Severity>,
    /// Only about this host.
    pub host_id: Option<uuid::Uuid>,
    /// Only of this type.
    #[param(max_length = 64)]
    pub alert_type: Option<String>,
}

/// Lists alerts, newest first.
#[utoipa::path(
    tag = "alerts",
    security(("bearer" = ["alerts:read"])),
    params(AlertQuery, PageParams),
    responses(
        (status = 200, description = "One page of alerts; `X-Total-Count` has the total", body = PageBody<AlertResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/alerts")]
pub async fn list_alerts(
    state: web::Data<ApiState>,
    query: web::Query<AlertQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let AlertQuery { status, severity, host_id, alert_type } = query.into_inner();
    if alert_type.as_ref().is_some_and(|t| t.chars().count() > 64) {
        return Err(ApiError::bad_request("invalid_query", "alert_type must be at most 64 characters"));
    }
    let filter = AlertFilter { status, severity, host_id: host_id.map(HostId), alert_type };
    let mut conn = state.pool.get().await?;
    let found = alerts::list_alerts(&mut conn, &filter, page).await?;
    Ok(page_response(found, page, AlertResponse::from))
}

/// One alert.
#[utoipa::path(
    tag = "alerts",
    security(("bearer" = ["alerts:read"])),
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = AlertResponse),
        (status = 404, description = "`alert_not_found`", body = ErrorBody),
    )
)]
#[get("/alerts/{id}")]
pub async fn get_alert(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = AlertId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let alert = alerts::get_alert(&mut conn, id).await.map_err(|e| ApiError::from_db("alert", e))?;
    Ok(HttpResponse::Ok().json(AlertResponse::from(alert)))
}

/// Acknowledges an open alert (records who and when).
#[utoipa::path(
    tag = "alerts",
    security(("bearer" = ["alerts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "Acknowledged", body = AlertResponse),
        (status = 404, description = "`alert_not_found`", body = ErrorBody),
        (status = 409, description = "`alert_not_open`: already acknowledged or resolved", body = ErrorBody),
    )
)]
#[post("/alerts/{id}/acknowledge")]
pub async fn acknowledge_alert(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = AlertId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let alert = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let alert = alerts::acknowledge(conn, id, principal.user_id, Utc::now())
                .await
                .map_err(|e| transition_error("alert", e))?;
            record(conn, &principal, &client, "alert.acknowledge", &alert).await?;
            Ok(alert)
        })
        .await?;
    Ok(HttpResponse::Ok().json(AlertResponse::from(alert)))
}

/// Resolves an open or acknowledged alert; its next occurrence opens a new alert.
#[utoipa::path(
    tag = "alerts",
    security(("bearer" = ["alerts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "Resolved", body = AlertResponse),
        (status = 404, description = "`alert_not_found`", body = ErrorBody),
        (status = 409, description = "`alert_already_resolved`", body = ErrorBody),
    )
)]
#[post("/alerts/{id}/resolve")]
pub async fn resolve_alert(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = AlertId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let alert = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let alert =
                alerts::resolve(conn, id, Utc::now()).await.map_err(|e| transition_error("alert", e))?;
            record(conn, &principal, &client, "alert.resolve", &alert).await?;
            Ok(alert)
        })
        .await?;
    Ok(HttpResponse::Ok().json(AlertResponse::from(alert)))
}

/// The audit event of a triage step.
async fn record(
    conn: &mut openwatch_db::AsyncPgConnection,
    principal: &Principal,
    client: &ClientInfo,
    action: &str,
    alert: &Alert,
) -> Result<(), ApiError> {
    let event = audit::event(
        principal,
        client,
        action,
        "alert",
        Some(alert.id.to_string()),
        AuditOutcome::Success,
        serde_json::json!({
            "alert_type": alert.alert_type,
            "host_id": alert.host_id,
            "rule_id": alert.rule_id,
            "status": alert.status,
        }),
    );
    audit::record(conn, &event).await?;
    Ok(())
}
