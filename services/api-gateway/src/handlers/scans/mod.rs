//! `/api/scans/…`: requesting, listing, following and cancelling scans, and their findings.
//!
//! A scan is requested for hosts or a host group (`POST /api/scans`, one `queued` scan per
//! host with its `ScanRequestedV1` outbox row, in one transaction with the audit event);
//! the scan-worker runs it and the result-processor records it. While a scan runs, its
//! live progress lives in Redis (`<prefix>scan:<id>:progress`, written by the worker; see
//! [`progress`]); everywhere else the scan row is the truth.
//!
//! # Layout
//! * `request.rs` — `POST /api/scans`.
//! * `read.rs` — `GET /api/scans`, `GET /api/scans/{id}`, `POST /api/scans/{id}/cancel`.
//! * `findings.rs` — `GET /api/scans/{id}/findings`.
//! * `events.rs` — `GET /api/scans/{id}/events`, a Server-Sent Events stream of the scan.
//! * [`progress`] — reading the live progress from Redis.

mod events;
mod findings;
pub mod progress;
mod read;
mod request;

use chrono::{DateTime, Utc};
use openwatch_common::domain::{ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId, UserId};
use openwatch_db::AsyncPgConnection;
use openwatch_db::queries::scans::{self, Scan};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;
use crate::state::ApiState;
use progress::LiveProgress;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(request::request_scans)
        .service(read::list_scans)
        .service(read::get_scan)
        .service(read::cancel_scan)
        .service(findings::list_findings)
        .service(events::scan_events);
}

/// How far a scan has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ScanProgress {
    /// Rules evaluated so far.
    pub rules_done: u32,
    /// Rules to evaluate (0 until the worker knows).
    pub rules_total: u32,
    /// While running, what the worker is doing: `connecting`, `collecting`, `evaluating`
    /// or `publishing` (`null` when unknown, queued or finished).
    pub phase: Option<String>,
}

/// A scan.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ScanResponse {
    /// Scan id.
    #[schema(value_type = uuid::Uuid)]
    pub id: ScanId,
    /// Scanned host.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = String, example = "running")]
    pub status: ScanStatus,
    /// `manual` or `scheduled`.
    #[schema(value_type = String, example = "manual")]
    pub trigger: ScanTrigger,
    /// Framework the scan is restricted to, if any.
    pub framework: Option<String>,
    /// Who requested it (manual scans).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub requested_by: Option<UserId>,
    /// When it was requested.
    pub queued_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// `finished_at - started_at` in milliseconds, once both are known.
    pub duration_ms: Option<i64>,
    /// Score in percent (completed scans with passes or fails).
    pub score: Option<f64>,
    /// Why it failed or was cancelled (a stable snake_case code for worker failures).
    pub failure_reason: Option<String>,
    /// Dispatch attempts so far.
    pub attempts: u32,
    /// Progress: live from the worker while running, else from the stored scan.
    pub progress: ScanProgress,
}

impl ScanResponse {
    /// The response for `scan`, with the worker's live progress when it is running and
    /// one is known.
    pub fn new(scan: Scan, live: Option<&LiveProgress>) -> Self {
        let duration_ms = match (scan.started_at, scan.finished_at) {
            (Some(start), Some(end)) => Some((end - start).num_milliseconds().max(0)),
            _ => None,
        };
        let progress = match live {
            Some(live) if scan.status == ScanStatus::Running => ScanProgress {
                rules_done: live.rules_done,
                rules_total: live.rules_total,
                phase: live.phase.clone(),
            },
            _ => ScanProgress { rules_done: scan.rules_done, rules_total: scan.rules_total, phase: None },
        };
        Self {
            id: scan.id,
            host_id: scan.host_id,
            status: scan.status,
            trigger: scan.trigger,
            framework: scan.framework,
            requested_by: scan.requested_by,
            queued_at: scan.queued_at,
            started_at: scan.started_at,
            finished_at: scan.finished_at,
            duration_ms,
            score: scan.score,
            failure_reason: scan.failure_reason,
            attempts: scan.attempts,
            progress,
        }
    }
}

/// One scan as shown to users: the row, plus the live progress when it is running.
/// An unknown id is 404 `scan_not_found`.
pub(crate) async fn load_scan(
    state: &ApiState,
    conn: &mut AsyncPgConnection,
    id: ScanId,
) -> Result<ScanResponse, ApiError> {
    let scan = scans::get_scan_details(conn, id).await.map_err(|e| ApiError::from_db("scan", e))?;
    let live = if scan.status == ScanStatus::Running {
        progress::read_many(&state.redis, &state.config.redis_key_prefix, &[id]).await.remove(&id)
    } else {
        None
    };
    Ok(ScanResponse::new(scan, live.as_ref()))
}

/// Responses for `scans`, reading the live progress of the running ones in one Redis
/// round trip (best effort: without Redis the stored progress is shown).
pub(crate) async fn with_live_progress(state: &ApiState, scans: Vec<Scan>) -> Vec<ScanResponse> {
    let running: Vec<ScanId> =
        scans.iter().filter(|s| s.status == ScanStatus::Running).map(|s| s.id).collect();
    let live = progress::read_many(&state.redis, &state.config.redis_key_prefix, &running).await;
    scans
        .into_iter()
        .map(|scan| {
            let progress = live.get(&scan.id);
            ScanResponse::new(scan, progress)
        })
        .collect()
}
