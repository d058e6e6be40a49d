//! The runtime services call: connect with backoff, declare, consume, reconnect, drain.
//!
//! [`run_worker`] owns one connection at a time. It declares the topology of its queues
//! and consumes each on its own channel. When the connection drops (a RabbitMQ restart, a
//! network cut, a missed heartbeat) every consumer drains its in-flight handlers, the
//! worker reconnects with capped exponential backoff and jitter, redeclares and resumes.
//! Messages whose ack was lost are redelivered by the broker; handlers are idempotent.
//! Cancelling `shutdown` stops consuming and waits for in-flight handlers (see
//! [`crate::consumer::run`]).

use openwatch_telemetry::metrics as names;
use std::fmt;
use std::sync::{Arc, RwLock};

use futures_util::future::join_all;
use lapin::{Connection, ConnectionProperties};
use openwatch_common::backoff::Backoff;
use openwatch_common::queues::QueueName;
use tokio_util::sync::CancellationToken;

use crate::consumer::{self, Router};
use crate::{BrokerConfig, MqError, topology};

/// Delays between connection attempts.
const RECONNECT: Backoff = Backoff::RECONNECT;

/// A point-in-time view of the broker connection, for health endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// Whether a connection is up and consumers are (being) set up.
    pub connected: bool,
    /// The last connection or consumption error, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// Connections established so far (1 after the first connect).
    pub connections: u64,
}

/// A cheap, cloneable handle on the broker status. The worker writes it; a health
/// endpoint reads it without any IO.
#[derive(Clone, Default)]
pub struct BrokerHealth(Arc<RwLock<BrokerStatus>>);

impl fmt::Debug for BrokerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.status().fmt(f)
    }
}

impl BrokerHealth {
    /// A handle in the "not connected yet" state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current status.
    pub fn status(&self) -> BrokerStatus {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.status().connected
    }

    /// Records a successful connection.
    pub fn mark_connected(&self) {
        let mut status = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        status.connected = true;
        status.connections += 1;
    }

    /// Records that the connection is down, and why.
    pub fn mark_disconnected(&self, reason: impl fmt::Display) {
        let mut status = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        status.connected = false;
        status.last_error = Some(reason.to_string());
    }
}

/// Connects to the broker, retrying with capped exponential backoff and jitter until it
/// succeeds or `shutdown` is cancelled ([`MqError::Cancelled`]). Each failed attempt is
/// logged with the redacted URL. For publishers such as the outbox relay.
pub async fn connect_with_backoff(
    config: &BrokerConfig,
    shutdown: &CancellationToken,
) -> Result<Connection, MqError> {
    connect_reporting(config, shutdown, None).await
}

pub(crate) async fn connect_reporting(
    config: &BrokerConfig,
    shutdown: &CancellationToken,
    health: Option<&BrokerHealth>,
) -> Result<Connection, MqError> {
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Err(MqError::Cancelled),
            attempt = connect_once(config) => attempt,
        };
        match attempt {
            Ok(connection) => {
                tracing::info!(mq.url = config.redacted_url(), "connected to RabbitMQ");
                if let Some(health) = health {
                    health.mark_connected();
                }
                return Ok(connection);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = RECONNECT.delay(failures);
                tracing::warn!(
                    mq.url = config.redacted_url(),
                    %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "cannot connect to RabbitMQ"
                );
                if let Some(health) = health {
                    health.mark_disconnected(&error);
                }
                metrics::counter!(names::MQ_CONNECT_FAILURES_TOTAL).increment(1);
                tokio::select! {
                    () = shutdown.cancelled() => return Err(MqError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One connection attempt bounded by `connect_timeout`.
async fn connect_once(config: &BrokerConfig) -> Result<Connection, MqError> {
    let name = format!("openwatch {} pid {}", config.prefix, std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(config.connect_timeout, Connection::connect(&config.url, properties)).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(MqError::ConnectTimeout { timeout_ms: config.connect_timeout.as_millis() }),
    }
}

/// Consumes `queues` with up to `concurrency` handlers in flight per queue, until
/// `shutdown` is cancelled; survives broker restarts by reconnecting.
///
/// Returns `Ok(())` after a graceful drain, or an error only for a misconfiguration that
/// reconnecting cannot fix (an empty queue list).
pub async fn run_worker(
    config: BrokerConfig,
    queues: Vec<QueueName>,
    concurrency: usize,
    router: Arc<Router>,
    shutdown: CancellationToken,
    state: BrokerHealth,
) -> Result<(), MqError> {
    if queues.is_empty() {
        return Err(MqError::Config {
            variable: "queues",
            value: String::new(),
            reason: "a worker needs at least one queue".to_owned(),
        });
    }
    let mut failures: u32 = 0;
    loop {
        let connection = match connect_reporting(&config, &shutdown, Some(&state)).await {
            Ok(connection) => connection,
            Err(MqError::Cancelled) => return Ok(()),
            Err(error) => return Err(error),
        };
        let session_started = std::time::Instant::now();
        let session = session(&connection, &config, &queues, concurrency, &router, &shutdown).await;
        let _ = connection.close(200, "OK".into()).await;
        if shutdown.is_cancelled() {
            state.mark_disconnected("shut down");
            tracing::info!("worker stopped");
            return Ok(());
        }
        let error = match session {
            Err(error) => error.to_string(),
            Ok(()) => "consumers stopped unexpectedly".to_owned(),
        };
        state.mark_disconnected(&error);
        metrics::counter!(names::MQ_RECONNECTS_TOTAL).increment(1);
        // A session that ran for a while was healthy: start the backoff afresh.
        if session_started.elapsed() > RECONNECT.max * 2 {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let delay = RECONNECT.delay(failures);
        tracing::warn!(%error, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "broker connection lost, reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Declares and consumes on one connection until it fails or shutdown is requested.
async fn session(
    connection: &Connection,
    config: &BrokerConfig,
    queues: &[QueueName],
    concurrency: usize,
    router: &Arc<Router>,
    shutdown: &CancellationToken,
) -> Result<(), MqError> {
    let channel = connection.create_channel().await?;
    topology::declare(&channel, config, queues).await?;
    let _ = channel.close(200, "OK".into()).await;

    // Cancelled by shutdown, or by the first consumer that fails so the others drain too.
    let stop = shutdown.child_token();
    let consumers = queues.iter().map(|&queue| {
        let stop = stop.clone();
        let router = Arc::clone(router);
        async move {
            let result = consumer::run(connection, config, queue, concurrency, router, stop.clone()).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        }
    });
    join_all(consumers).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_state_and_last_error() {
        let health = BrokerHealth::new();
        assert!(!health.is_connected());
        health.mark_connected();
        health.mark_disconnected("connection reset");
        health.mark_connected();
        let status = health.status();
        assert!(status.connected);
        assert_eq!(status.connections, 2);
        assert_eq!(status.last_error.as_deref(), Some("connection reset"));
    }
}
