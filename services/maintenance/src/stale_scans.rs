//! The stale-scan reaper: every `OPENWATCH_STALE_SCAN_INTERVAL_SECS`, handle scans whose
//! worker vanished or whose request was lost ([`queries::dispatch::reap_stale_scans`],
//! batch after batch, one transaction each): re-enqueue them once to the queue of their
//! trigger, or fail them `abandoned`. The rules are in `openwatch_db::queries::dispatch`.
//!
//! Runs in every instance: scans are taken with `FOR UPDATE SKIP LOCKED`, so two instances
//! never handle the same scan.

use chrono::Utc;
use openwatch_db::queries::dispatch::{ReapedScan, StaleAction};
use openwatch_db::{DbError, Pool, queries};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::StaleScanSettings;
use crate::metric_names::STALE_SCANS_TOTAL;
use crate::periodic;

/// Starts the reaper; the task ends when `shutdown` fires.
pub fn spawn(pool: Pool, settings: StaleScanSettings, shutdown: CancellationToken) -> JoinHandle<()> {
    let stop = shutdown.clone();
    periodic::spawn(settings.interval, shutdown, move || {
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            match reap_round(&pool, &settings, &stop).await {
                Ok(0) => tracing::debug!("no stale scan"),
                Ok(handled) => tracing::info!(scans.stale = handled, "stale scans handled"),
                Err(error) => tracing::warn!(%error, "handling stale scans failed; next round retries"),
            }
        }
    })
}

/// Handles batches until one comes back short or shutdown fires; returns how many scans
/// were re-enqueued or failed.
#[tracing::instrument(skip_all)]
pub async fn reap_round(
    pool: &Pool,
    settings: &StaleScanSettings,
    shutdown: &CancellationToken,
) -> Result<usize, DbError> {
    let mut conn = pool.get().await?;
    let traceparent = openwatch_telemetry::current_traceparent();
    let mut total = 0;
    loop {
        let batch = queries::dispatch::reap_stale_scans(
            &mut conn,
            Utc::now(),
            &settings.policy,
            traceparent.as_deref(),
        )
        .await?;
        for scan in &batch {
            record(scan);
        }
        total += batch.len();
        if batch.len() < settings.policy.batch as usize || shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

/// Counts and logs one handled scan (once, here: the reaper is its only handler).
fn record(scan: &ReapedScan) {
    metrics::counter!(
        STALE_SCANS_TOTAL,
        "status" => scan.was.as_str(),
        "action" => scan.action.as_str(),
        "trigger" => scan.trigger.as_str()
    )
    .increment(1);
    match scan.action {
        StaleAction::Requeued => tracing::info!(
            scan.id = %scan.scan_id, host.id = %scan.host_id, scan.status = %scan.was,
            "stale scan re-enqueued"
        ),
        StaleAction::Failed => tracing::warn!(
            scan.id = %scan.scan_id, host.id = %scan.host_id, scan.status = %scan.was,
            "stale scan failed as abandoned"
        ),
    }
}
