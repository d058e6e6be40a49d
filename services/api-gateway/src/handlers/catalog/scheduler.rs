//! `GET/PUT /api/scheduler/config`: the adaptive scan intervals.

use actix_web::{HttpResponse, get, put, web};
use chrono::{DateTime, Utc};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::scheduler::{self, SchedulerConfig, SchedulerConfigChangeset};
use openwatch_db::{AsyncConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// The scheduler configuration (minutes).
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerConfigResponse {
    /// Hosts in state `critical`.
    pub interval_critical_minutes: u32,
    /// `low`.
    pub interval_low_minutes: u32,
    /// `partial`.
    pub interval_partial_minutes: u32,
    /// `mostly_compliant`.
    pub interval_mostly_compliant_minutes: u32,
    /// `compliant`.
    pub interval_compliant_minutes: u32,
    /// Never scanned (`unknown`): 0 = due at once.
    pub interval_unknown_minutes: u32,
    /// Cap of every interval and of the failure back-off (≤ 2880).
    pub max_interval_minutes: u32,
    /// Back-off after n consecutive failures: base · 2^(n-1), capped.
    pub failure_backoff_base_minutes: u32,
    /// Who changed it last.
    pub updated_by: Option<uuid::Uuid>,
    /// When.
    pub updated_at: DateTime<Utc>,
}

impl From<SchedulerConfig> for SchedulerConfigResponse {
    fn from(c: SchedulerConfig) -> Self {
        Self {
            interval_critical_minutes: c.interval_critical_minutes,
            interval_low_minutes: c.interval_low_minutes,
            interval_partial_minutes: c.interval_partial_minutes,
            interval_mostly_compliant_minutes: c.interval_mostly_compliant_minutes,
            interval_compliant_minutes: c.interval_compliant_minutes,
            interval_unknown_minutes: c.interval_unknown_minutes,
            max_interval_minutes: c.max_interval_minutes,
            failure_backoff_base_minutes: c.failure_backoff_base_minutes,
            updated_by: c.updated_by.map(|u| u.0),
            updated_at: c.updated_at,
        }
    }
}

/// Changes (absent fields stay). Every interval 0–max; max 1–2880; base 1–max.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedulerConfig {
    /// `critical` interval.
    #[schema(maximum = 2880)]
    pub interval_critical_minutes: Option<u32>,
    /// `low` interval.
    #[schema(maximum = 2880)]
    pub interval_low_minutes: Option<u32>,
    /// `partial` interval.
    #[schema(maximum = 2880)]
    pub interval_partial_minutes: Option<u32>,
    /// `mostly_compliant` interval.
    #[schema(maximum = 2880)]
    pub interval_mostly_compliant_minutes: Option<u32>,
    /// `compliant` interval.
    #[schema(maximum = 2880)]
    pub interval_compliant_minutes: Option<u32>,
    /// `unknown` interval.
    #[schema(maximum = 2880)]
    pub interval_unknown_minutes: Option<u32>,
    /// Cap.
    #[schema(minimum = 1, maximum = 2880)]
    pub max_interval_minutes: Option<u32>,
    /// Back-off base.
    #[schema(minimum = 1, maximum = 2880)]
    pub failure_backoff_base_minutes: Option<u32>,
}

/// The scheduler configuration.
#[utoipa::path(
    tag = "scheduler",
    security(("bearer" = ["scheduler:read"])),
    responses((status = 200, description = "Configuration", body = SchedulerConfigResponse))
)]
#[get("/scheduler/config")]
pub async fn get_scheduler_config(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(SchedulerConfigResponse::from(scheduler::get(&mut conn).await?)))
}

/// Changes the scheduler configuration (bounds checked; audited with before and after).
#[utoipa::path(
    tag = "scheduler",
    security(("bearer" = ["scheduler:write"])),
    request_body = UpdateSchedulerConfig,
    responses(
        (status = 200, description = "Updated", body = SchedulerConfigResponse),
        (status = 422, description = "`invalid_interval` (the message names the field)", body = ErrorBody),
    )
)]
#[put("/scheduler/config")]
pub async fn update_scheduler_config(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<UpdateSchedulerConfig>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let changes = SchedulerConfigChangeset {
        interval_critical_minutes: b.interval_critical_minutes,
        interval_low_minutes: b.interval_low_minutes,
        interval_partial_minutes: b.interval_partial_minutes,
        interval_mostly_compliant_minutes: b.interval_mostly_compliant_minutes,
        interval_compliant_minutes: b.interval_compliant_minutes,
        interval_unknown_minutes: b.interval_unknown_minutes,
        max_interval_minutes: b.max_interval_minutes,
        failure_backoff_base_minutes: b.failure_backoff_base_minutes,
    };
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let before = SchedulerConfigResponse::from(scheduler::get(conn).await?);
            let after = scheduler::update(conn, &changes, principal.user_id).await.map_err(|e| match e {
                DbError::Constraint { constraint, message } => {
                    ApiError::unprocessable("invalid_interval", format!("{message} ({constraint})"))
                }
                other => other.into(),
            })?;
            let after = SchedulerConfigResponse::from(after);
            let event = audit::event(
                &principal,
                &client,
                "scheduler_config.update",
                "scheduler_config",
                None,
                AuditOutcome::Success,
                serde_json::json!({"before": before, "after": after}),
            );
            audit::record(conn, &event).await?;
            Ok(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(updated))
}
