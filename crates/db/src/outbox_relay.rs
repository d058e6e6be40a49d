//! The outbox relay: moves committed outbox rows to the broker.
//!
//! Each round, in **one** transaction: lock the oldest rows with
//! `FOR UPDATE SKIP LOCKED`, hand them to the [`OutboxPublisher`] (which returns only once
//! the broker confirmed every message), delete them, commit. Consequences:
//!
//! * **At least once.** A crash or error between the publish and the commit leaves the
//!   rows; they are published again later, and consumers deduplicate on the message id.
//! * **Several relays at once** (one per service instance) never publish the same row
//!   concurrently: a row locked by one relay is skipped by the others.
//! * Order is by row id within a batch; across relays there is no global order
//!   (consumers must not rely on one).

use std::time::Duration;

use diesel_async::AsyncConnection;
use openwatch_common::backoff::Backoff;
use openwatch_common::outbox::OutboxPublisher;
use tokio_util::sync::CancellationToken;

use crate::queries::outbox;
use crate::{DbError, Pool};

/// Tuning of an [`OutboxRelay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxRelayConfig {
    /// Most rows per round (and per publisher call). Default 100.
    pub batch_size: usize,
    /// Pause after a round that found fewer than `batch_size` rows. Default 200 ms.
    pub poll_interval: Duration,
    /// Cap of the exponential pause after consecutive errors. Default 30 s.
    pub max_backoff: Duration,
}

impl Default for OutboxRelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Publishes outbox rows through `P` and deletes them (see the module docs).
pub struct OutboxRelay<P> {
    pool: Pool,
    publisher: P,
    config: OutboxRelayConfig,
}

impl<P: OutboxPublisher> OutboxRelay<P> {
    /// A relay reading from `pool` and publishing through `publisher`.
    pub fn new(pool: Pool, publisher: P, config: OutboxRelayConfig) -> Self {
        Self { pool, publisher, config }
    }

    /// The publisher (e.g. to inspect it in tests).
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// One round: publishes and deletes up to `batch_size` rows; returns how many.
    ///
    /// On a publisher error the transaction rolls back, the rows stay and the error is
    /// [`DbError::Publish`].
    pub async fn relay_once(&self) -> Result<usize, DbError> {
        let limit = i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX);
        let publisher = &self.publisher;
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, DbError, _>(async |conn| {
            let batch = outbox::lock_batch(conn, limit).await?;
            if batch.is_empty() {
                return Ok(0);
            }
            publisher.publish_confirmed(&batch).await.map_err(|e| DbError::Publish(Box::new(e)))?;
            let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
            outbox::delete(conn, &ids).await?;
            Ok(batch.len())
        })
        .await
        .inspect(|&sent| {
            if sent > 0 {
                metrics::counter!(openwatch_telemetry::metrics::OUTBOX_RELAYED_TOTAL).increment(sent as u64);
            }
        })
    }

    /// Relays until `shutdown` is cancelled: again immediately after a full batch, after
    /// `poll_interval` otherwise, and with exponential back-off (logged) after errors.
    /// A round in progress is finished before returning, never abandoned half-way.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            let pause = match self.relay_once().await {
                Ok(sent) => {
                    if failures > 0 {
                        tracing::info!(outbox.failures = failures, "outbox relay recovered");
                    }
                    failures = 0;
                    if sent >= self.config.batch_size {
                        continue;
                    }
                    self.config.poll_interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let policy = Backoff {
                        initial: self.config.poll_interval,
                        max: self.config.max_backoff,
                        multiplier: 2.0,
                        jitter: false,
                    };
                    let pause = policy.delay(failures);
                    tracing::warn!(
                        error = %error,
                        error.source = ?std::error::Error::source(&error).map(ToString::to_string),
                        outbox.failures = failures,
                        retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "outbox relay round failed"
                    );
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
