//! The scheduled-scan dispatcher: every `OPENWATCH_DISPATCH_INTERVAL_SECS`, claim due hosts
//! batch after batch ([`queries::dispatch::dispatch_due_scans`], one transaction each)
//! until none is left, queuing one scheduled scan per host with its request for
//! `compliance_scanning` in the outbox (the relay of any instance publishes it).
//!
//! Runs in every instance, without a leader: hosts are claimed with `FOR UPDATE SKIP
//! LOCKED`, so instances share the due hosts and never dispatch one twice. There is no cap
//! per round beyond the batching: throughput is bounded by the scan workers only (a host
//! with a queued or running scan is not due).

use chrono::Utc;
use openwatch_db::{DbError, Pool, queries};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DispatchSettings;
use crate::metric_names::SCANS_DISPATCHED_TOTAL;
use crate::periodic;

/// Starts the dispatcher; the task ends when `shutdown` fires.
pub fn spawn(pool: Pool, settings: DispatchSettings, shutdown: CancellationToken) -> JoinHandle<()> {
    let stop = shutdown.clone();
    periodic::spawn(settings.interval, shutdown, move || {
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            match dispatch_round(&pool, &settings, &stop).await {
                Ok(0) => tracing::debug!("no host due for a scan"),
                Ok(dispatched) => tracing::info!(scans.dispatched = dispatched, "scheduled scans dispatched"),
                Err(error) => {
                    tracing::warn!(%error, "dispatching scheduled scans failed; next round retries")
                }
            }
        }
    })
}

/// Claims batches until one comes back short (no due host left) or shutdown fires;
/// returns how many scans were queued.
#[tracing::instrument(skip_all)]
pub async fn dispatch_round(
    pool: &Pool,
    settings: &DispatchSettings,
    shutdown: &CancellationToken,
) -> Result<usize, DbError> {
    let mut conn = pool.get().await?;
    let traceparent = openwatch_telemetry::current_traceparent();
    let mut total = 0;
    loop {
        let batch = queries::dispatch::dispatch_due_scans(
            &mut conn,
            Utc::now(),
            settings.batch,
            settings.lease,
            traceparent.as_deref(),
        )
        .await?;
        for scan in &batch {
            metrics::counter!(SCANS_DISPATCHED_TOTAL, "compliance_state" => scan.compliance_state.as_str())
                .increment(1);
        }
        total += batch.len();
        if batch.len() < settings.batch as usize || shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}
