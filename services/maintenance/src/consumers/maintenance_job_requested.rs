//! `MaintenanceJobRequestedV1` → run one housekeeping job.
//!
//! Every job is a single idempotent statement (expire what is due, delete what is old), so
//! running one twice, or on two instances at once, changes nothing the second time.

use chrono::Utc;
use openwatch_common::messages::v1::{MaintenanceJob, MaintenanceJobRequestedV1};
use openwatch_db::{Pool, queries};
use openwatch_mq::{DeliveryInfo, Handler, HandlerError};
use openwatch_service_kit::handler_error;
use tracing::info;

/// Runs housekeeping jobs.
pub struct RunMaintenanceJob {
    /// Database pool.
    pub pool: Pool,
}

impl Handler<MaintenanceJobRequestedV1> for RunMaintenanceJob {
    #[tracing::instrument(skip_all, fields(job = ?message.job, message.id = %delivery.message_id))]
    async fn handle(
        &self,
        message: MaintenanceJobRequestedV1,
        delivery: &DeliveryInfo,
    ) -> Result<(), HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        let now = Utc::now();
        let affected = match message.job {
            MaintenanceJob::ExpireExceptions => queries::exceptions::expire_due(&mut conn, now).await,
            MaintenanceJob::PurgeExpiredSessions => queries::sessions::purge_expired(&mut conn, now).await,
        }
        .map_err(handler_error)?;
        info!(affected, "maintenance job done");
        Ok(())
    }
}
