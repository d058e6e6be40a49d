//! `ScanCompletedV1` → findings, scan status and score, in one transaction.
//!
//! Idempotent by scan id: `record_completed` locks the scan row and leaves a finished scan
//! alone, and findings are keyed by `(scan_id, rule_id)`, so a redelivered or duplicated
//! message never produces a second set of findings.

use openwatch_common::messages::v1::ScanCompletedV1;
use openwatch_db::queries::scans::{self, RecordOutcome};
use openwatch_db::{AsyncConnection, DbError, Pool};
use openwatch_mq::{DeliveryInfo, Handler, HandlerError};
use openwatch_service_kit::handler_error;
use tracing::info;

/// Handles scan results.
pub struct RecordScanResult {
    /// Database pool.
    pub pool: Pool,
}

impl Handler<ScanCompletedV1> for RecordScanResult {
    #[tracing::instrument(skip_all, fields(scan.id = %message.scan_id, host.id = %message.host_id, message.id = %delivery.message_id))]
    async fn handle(&self, message: ScanCompletedV1, delivery: &DeliveryInfo) -> Result<(), HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        let outcome = conn
            .transaction::<_, DbError, _>(async |conn| scans::record_completed(conn, &message).await)
            .await
            .map_err(handler_error)?;
        match outcome {
            RecordOutcome::Recorded { findings, score } => {
                metrics::counter!(openwatch_telemetry::metrics::FINDINGS_INGESTED_TOTAL)
                    .increment(findings as u64);
                metrics::counter!(openwatch_telemetry::metrics::SCANS_TOTAL, "status" => message.outcome.as_str())
                    .increment(1);
                info!(findings, score, outcome = message.outcome.as_str(), "scan result recorded");
                Ok(())
            }
            RecordOutcome::AlreadyFinished(status) => {
                info!(scan.status = status.as_str(), "scan already finished: duplicate result ignored");
                Ok(())
            }
            RecordOutcome::UnknownScan => {
                Err(HandlerError::Permanent(format!("scan {} does not exist", message.scan_id)))
            }
        }
    }
}
