//! A publisher that survives broker restarts, for long-running outbox relays.
//!
//! [`ReconnectingPublisher::maintain`] runs in the background: it connects with backoff,
//! declares the topology of every queue (so a message published before any consumer
//! started still has a queue to wait in), and reconnects whenever the connection drops,
//! reporting each state to a [`BrokerHealth`]. Publishing while disconnected fails fast
//! with [`MqError::NotConnected`]; the outbox relay keeps the rows and tries again later.

use std::time::Duration;

use lapin::Connection;
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::worker::connect_reporting;
use crate::{BrokerConfig, BrokerHealth, MqError, Publisher, topology};

/// How often the background task looks at the connection's state.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A [`Publisher`] kept connected by [`ReconnectingPublisher::maintain`].
pub struct ReconnectingPublisher {
    config: BrokerConfig,
    health: BrokerHealth,
    current: RwLock<Option<Publisher>>,
}

impl ReconnectingPublisher {
    /// A publisher that is not connected until [`ReconnectingPublisher::maintain`] runs.
    pub fn new(config: BrokerConfig, health: BrokerHealth) -> Self {
        Self { config, health, current: RwLock::new(None) }
    }

    /// Keeps a connection (and the topology of all queues) up until `shutdown`.
    pub async fn maintain(&self, shutdown: CancellationToken) {
        loop {
            let connection = match connect_reporting(&self.config, &shutdown, Some(&self.health)).await {
                Ok(connection) => connection,
                Err(_) => return, // only cancellation ends the backoff loop
            };
            match self.open(&connection).await {
                Ok(publisher) => *self.current.write().await = Some(publisher),
                Err(error) => {
                    tracing::warn!(%error, "cannot prepare the publisher channel; reconnecting");
                    self.health.mark_disconnected(&error);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(WATCH_INTERVAL * 4) => continue,
                    }
                }
            }
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        self.current.write().await.take();
                        let _ = connection.close(200, "shutdown".into()).await;
                        return;
                    }
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
                let publisher_open = self.current.read().await.as_ref().is_some_and(Publisher::is_open);
                if !connection.status().connected() || !publisher_open {
                    tracing::warn!("RabbitMQ connection of the publisher was lost; reconnecting");
                    self.current.write().await.take();
                    self.health.mark_disconnected("connection lost");
                    break;
                }
            }
        }
    }

    async fn open(&self, connection: &Connection) -> Result<Publisher, MqError> {
        let channel = connection.create_channel().await?;
        topology::declare(&channel, &self.config, &QueueName::ALL).await?;
        let _ = channel.close(200, "topology declared".into()).await;
        Publisher::new(connection, &self.config).await
    }

    /// The current publisher, if connected.
    pub async fn publisher(&self) -> Result<Publisher, MqError> {
        self.current.read().await.clone().ok_or(MqError::NotConnected)
    }
}

impl OutboxPublisher for ReconnectingPublisher {
    type Error = MqError;

    async fn publish_confirmed(&self, batch: &[OutboxMessage]) -> Result<(), MqError> {
        self.publisher().await?.publish_confirmed(batch).await
    }
}
