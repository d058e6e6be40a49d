//! The contract between the outbox relay and a message publisher.
//!
//! Request code never publishes directly: it writes an outbox row in the same database
//! transaction as its change. The relay (in `openwatch-db`, which owns all SQL) reads
//! pending rows and hands them to an [`OutboxPublisher`] (implemented in `openwatch-mq`),
//! which returns only once the broker has confirmed every message. Keeping the trait here
//! lets `db` and `mq` cooperate without depending on each other.

use std::future::Future;
use std::sync::Arc;

use crate::ids::MessageId;
use crate::queues::QueueName;

/// One pending outbox row, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Row id (publication order).
    pub id: i64,
    /// Destination queue.
    pub queue: QueueName,
    /// Broker message id; consumers deduplicate on it.
    pub message_id: MessageId,
    /// Message type header (`Message::TYPE`).
    pub message_type: String,
    /// Message version header (`Message::VERSION`).
    pub version: u16,
    /// The JSON body.
    pub payload: Vec<u8>,
    /// W3C trace context of the transaction that wrote the row.
    pub traceparent: Option<String>,
}

/// Publishes outbox messages with broker confirmation.
pub trait OutboxPublisher: Send + Sync {
    /// Why a batch could not be confirmed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Publishes every message and resolves once all are confirmed by the broker (and
    /// routed to a queue). On error, none of the batch may be considered delivered: the
    /// relay keeps the rows and tries again, and consumers absorb any duplicates.
    fn publish_confirmed(
        &self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A shared publisher publishes like the one it shares (the relay and the task keeping the
/// connection up hold the same publisher).
impl<P: OutboxPublisher> OutboxPublisher for Arc<P> {
    type Error = P::Error;

    fn publish_confirmed(
        &self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        P::publish_confirmed(self, batch)
    }
}
