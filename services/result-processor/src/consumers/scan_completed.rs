//! `ScanCompletedV1` → findings, rule state, score, compliance state and schedule, drift,
//! alerts and the daily snapshot, in one transaction
//! (`openwatch_db::queries::results::process_scan_result`).
//!
//! Idempotent by scan id: the scan row is locked and a finished scan is left alone, so a
//! redelivered or duplicated message changes nothing. An unknown scan or a malformed
//! result (another host's scan, a non-terminal outcome) is a permanent failure
//! (dead-lettered); a database outage is transient (retried).

use openwatch_common::messages::v1::ScanCompletedV1;
use openwatch_db::Pool;
use openwatch_db::queries::results::{self, ProcessOutcome, ProcessReport, ResultPolicy};
use openwatch_mq::{DeliveryInfo, Handler, HandlerError};
use openwatch_service_kit::handler_error;
use openwatch_telemetry::metrics::{FINDINGS_INGESTED_TOTAL, SCANS_TOTAL};
use tracing::info;

use crate::metric_names::{
    ALERTS_RAISED_TOTAL, ALERTS_RESOLVED_TOTAL, DRIFT_EVENTS_TOTAL, HOST_COMPLIANCE_STATES_TOTAL,
};

/// Handles scan results.
pub struct RecordScanResult {
    /// Database pool.
    pub pool: Pool,
    /// Drift and alert thresholds.
    pub policy: ResultPolicy,
}

impl Handler<ScanCompletedV1> for RecordScanResult {
    #[tracing::instrument(skip_all, fields(scan.id = %message.scan_id, host.id = %message.host_id, message.id = %delivery.message_id))]
    async fn handle(&self, message: ScanCompletedV1, delivery: &DeliveryInfo) -> Result<(), HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        let outcome =
            results::process_scan_result(&mut conn, &message, &self.policy).await.map_err(handler_error)?;
        match outcome {
            ProcessOutcome::Processed(report) => {
                record_metrics(&report);
                info!(
                    outcome = report.outcome.as_str(),
                    findings = report.findings,
                    score = report.host_score,
                    compliance_state = report.compliance_state.map(|s| s.as_str()),
                    scan_failures = report.scan_failures,
                    next_scan_at = report.next_scan_at.map(|t| t.to_rfc3339()),
                    rule_drifts = report.rule_drifts,
                    score_drift = report.score_drift,
                    alerts_raised = report.alerts_raised.len(),
                    alerts_resolved = report.alerts_resolved,
                    stale = report.stale,
                    "scan result recorded"
                );
                Ok(())
            }
            ProcessOutcome::AlreadyFinished(status) => {
                info!(scan.status = status.as_str(), "scan already finished: duplicate result ignored");
                Ok(())
            }
            ProcessOutcome::UnknownScan => {
                Err(HandlerError::Permanent(format!("scan {} does not exist", message.scan_id)))
            }
        }
    }
}

fn record_metrics(report: &ProcessReport) {
    metrics::counter!(FINDINGS_INGESTED_TOTAL).increment(report.findings as u64);
    metrics::counter!(SCANS_TOTAL, "status" => report.outcome.as_str(), "trigger" => report.trigger.as_str())
        .increment(1);
    if let Some(state) = report.compliance_state {
        metrics::counter!(HOST_COMPLIANCE_STATES_TOTAL, "state" => state.as_str()).increment(1);
    }
    if report.rule_drifts > 0 {
        metrics::counter!(DRIFT_EVENTS_TOTAL, "kind" => "rule").increment(report.rule_drifts as u64);
    }
    if report.score_drift {
        metrics::counter!(DRIFT_EVENTS_TOTAL, "kind" => "score").increment(1);
    }
    for alert in &report.alerts_raised {
        let opened = if alert.opened { "true" } else { "false" };
        metrics::counter!(ALERTS_RAISED_TOTAL, "alert_type" => alert.alert_type.clone(), "opened" => opened)
            .increment(1);
    }
    if report.alerts_resolved > 0 {
        metrics::counter!(ALERTS_RESOLVED_TOTAL).increment(report.alerts_resolved as u64);
    }
}
