//! `HostCheckRequestedV1` → probe the host's SSH port over TCP and record its liveness.
//!
//! The probe is a plain TCP connect with a timeout: it needs no credential and proves the
//! address resolves, routes and has something listening on the SSH port. The database
//! connection is not held during the probe, so a slow host never pins a pooled connection.
//! Recording is idempotent (it overwrites the state), so redeliveries are harmless.

use std::time::{Duration, Instant};

use chrono::Utc;
use openwatch_common::domain::MonitoringState;
use openwatch_common::messages::v1::HostCheckRequestedV1;
use openwatch_db::{DbError, Pool, queries};
use openwatch_mq::{DeliveryInfo, Handler, HandlerError};
use openwatch_service_kit::handler_error;
use tokio::net::TcpStream;
use tracing::info;

/// Handles host liveness checks.
pub struct CheckHost {
    /// Database pool.
    pub pool: Pool,
    /// How long a TCP connect may take before the host counts as down.
    pub probe_timeout: Duration,
    /// A reachable host whose connect took longer than this is `degraded`.
    pub degraded_after: Duration,
    /// When the next check is due after this one.
    pub check_interval: Duration,
}

impl Handler<HostCheckRequestedV1> for CheckHost {
    #[tracing::instrument(skip_all, fields(host.id = %message.host_id, message.id = %delivery.message_id))]
    async fn handle(
        &self,
        message: HostCheckRequestedV1,
        delivery: &DeliveryInfo,
    ) -> Result<(), HandlerError> {
        let host = {
            let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
            match queries::hosts::get_host(&mut conn, message.host_id).await {
                Ok(host) => host,
                Err(DbError::NotFound) => {
                    return Err(HandlerError::Permanent(format!("host {} does not exist", message.host_id)));
                }
                Err(e) => return Err(handler_error(e)),
            }
        };

        let now = Utc::now();
        let state = if host.maintenance_until.is_some_and(|until| until > now) {
            MonitoringState::Maintenance
        } else {
            let started = Instant::now();
            let probe = tokio::time::timeout(
                self.probe_timeout,
                TcpStream::connect((host.address.as_str(), host.port)),
            );
            let state = match probe.await {
                Ok(Ok(_stream)) if started.elapsed() > self.degraded_after => MonitoringState::Degraded,
                Ok(Ok(_stream)) => MonitoringState::Online,
                Ok(Err(_)) | Err(_) => MonitoringState::Down,
            };
            metrics::histogram!(openwatch_telemetry::metrics::HOST_PROBE_DURATION_SECONDS)
                .record(started.elapsed().as_secs_f64());
            state
        };

        let next_check_at = Utc::now() + self.check_interval;
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        queries::hosts::record_liveness(&mut conn, host.id, state, now, next_check_at)
            .await
            .map_err(handler_error)?;
        metrics::counter!(openwatch_telemetry::metrics::HOST_CHECKS_TOTAL, "state" => state.as_str())
            .increment(1);
        info!(host.state = state.as_str(), "host checked");
        Ok(())
    }
}
