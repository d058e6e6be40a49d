//! Periodic housekeeping: at start and then every `OPENWATCH_HOUSEKEEPING_INTERVAL_SECS`
//! (default 900, see [`crate::config`]), enqueue each maintenance job through the outbox,
//! in one transaction.
//!
//! The jobs run on whichever `maintenance` instance consumes them. With several instances,
//! each enqueues its own round; the jobs are idempotent statements, so the only cost of
//! that is a few cheap, redundant queries.

use std::time::Duration;

use chrono::Utc;
use openwatch_common::messages::v1::{MaintenanceJob, MaintenanceJobRequestedV1};
use openwatch_db::{AsyncConnection, DbError, Pool, queries};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::periodic;

/// Every job, in the order they are enqueued.
const JOBS: [MaintenanceJob; 2] = [MaintenanceJob::ExpireExceptions, MaintenanceJob::PurgeExpiredSessions];

/// Starts the periodic enqueuing; the task ends when `shutdown` fires.
pub fn spawn(pool: Pool, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
    periodic::spawn(interval, shutdown, move || {
        let pool = pool.clone();
        async move {
            match enqueue_round(&pool).await {
                Ok(()) => tracing::debug!("housekeeping jobs enqueued"),
                Err(error) => tracing::warn!(%error, "could not enqueue housekeeping jobs; next round will"),
            }
        }
    })
}

async fn enqueue_round(pool: &Pool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    let traceparent = openwatch_telemetry::current_traceparent();
    conn.transaction::<_, DbError, _>(async |conn| {
        for job in JOBS {
            let message = MaintenanceJobRequestedV1 { job, requested_at: Utc::now() };
            queries::outbox::enqueue_default(conn, &message, traceparent.as_deref()).await?;
        }
        Ok(())
    })
    .await
}
