//! Confirmed, `mandatory` publishing of typed messages.
//!
//! A publish is done only when the broker has confirmed it: the channel is in
//! confirm-select mode, every message is persistent and `mandatory`, so a message that no
//! queue is bound for comes back as [`MqError::Unroutable`] instead of being dropped, and a
//! nack is [`MqError::Nacked`]. The outbox relay uses the [`OutboxPublisher`] impl, which
//! pipelines a whole batch and then awaits every confirm (about 10× faster than awaiting
//! each one, see `STACK_NOTES.md`).
//!
//! A [`Publisher`] does not reconnect: on [`MqError::Unavailable`] build a new one on a new
//! connection ([`crate::connect_with_backoff`]).

use futures_util::future::try_join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use openwatch_common::ids::MessageId;
use openwatch_common::messages::Message;
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use openwatch_telemetry::metrics as names;

use crate::envelope::Envelope;
use crate::{BrokerConfig, MqError, topology};

/// Where the publisher gets the current W3C `traceparent` from (e.g.
/// `openwatch_telemetry::current_traceparent`).
pub type TraceparentSource = fn() -> Option<String>;

/// A typed publisher over one confirm-select channel. Cheap to share (`&self` methods;
/// wrap it in an `Arc`); confirms of concurrent publishes are tracked independently.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    prefix: String,
    traceparent: Option<TraceparentSource>,
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn new(connection: &Connection, config: &BrokerConfig) -> Result<Self, MqError> {
        let channel = connection.create_channel().await?;
        Self::from_channel(channel, config).await
    }

    /// Uses `channel` (switching it to confirm mode) for publishing.
    pub async fn from_channel(channel: Channel, config: &BrokerConfig) -> Result<Self, MqError> {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self {
            channel,
            prefix: config.prefix.clone(),
            traceparent: Some(openwatch_telemetry::current_traceparent),
        })
    }

    /// Sets where [`Publisher::publish`] and [`Publisher::publish_to`] take the
    /// `traceparent` header from (default: the current span, through
    /// `openwatch_telemetry::current_traceparent`), so traces continue across the broker.
    #[must_use]
    pub fn with_traceparent_source(mut self, source: TraceparentSource) -> Self {
        self.traceparent = Some(source);
        self
    }

    /// Whether the underlying channel is still usable; if not, rebuild the publisher.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes `message` to its home queue (`M::QUEUE`) with a fresh id, and returns
    /// that id once the broker has confirmed it.
    pub async fn publish<M: Message>(&self, message: &M) -> Result<MessageId, MqError> {
        self.publish_to(M::QUEUE, message, None).await
    }

    /// Publishes `message` to `queue`, with `message_id` (or a fresh one), once confirmed.
    pub async fn publish_to<M: Message>(
        &self,
        queue: QueueName,
        message: &M,
        message_id: Option<MessageId>,
    ) -> Result<MessageId, MqError> {
        let traceparent = self.traceparent.and_then(|source| source());
        self.publish_with(queue, message, message_id, traceparent).await
    }

    /// Like [`Publisher::publish_to`] with an explicit `traceparent`.
    pub async fn publish_with<M: Message>(
        &self,
        queue: QueueName,
        message: &M,
        message_id: Option<MessageId>,
        traceparent: Option<String>,
    ) -> Result<MessageId, MqError> {
        let body = serde_json::to_vec(message).map_err(|source| MqError::Encode {
            message_type: M::TYPE,
            queue,
            source,
        })?;
        let envelope = Envelope {
            message_id: message_id.unwrap_or_default(),
            message_type: M::TYPE.to_owned(),
            version: M::VERSION,
            traceparent,
            attempt: 1,
        };
        let confirm = self.start(queue, &body, envelope.properties()).await?;
        self.finish(queue, confirm).await?;
        Ok(envelope.message_id)
    }

    /// Sends one message without awaiting its confirm.
    async fn start(
        &self,
        queue: QueueName,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, MqError> {
        let exchange = topology::exchange(&self.prefix, queue);
        let confirm = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                topology::routing_key(queue).into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                body,
                properties,
            )
            .await?;
        Ok(confirm)
    }

    async fn finish(&self, queue: QueueName, confirm: PublisherConfirm) -> Result<(), MqError> {
        check_confirmation(confirm, &topology::exchange(&self.prefix, queue), topology::routing_key(queue))
            .await?;
        metrics::counter!(names::MQ_MESSAGES_PUBLISHED_TOTAL, "queue" => queue.as_str()).increment(1);
        Ok(())
    }
}

/// Awaits a publisher confirm and turns a nack or a returned (unroutable) message into
/// an error.
pub(crate) async fn check_confirmation(
    confirm: PublisherConfirm,
    exchange: &str,
    routing_key: &str,
) -> Result<(), MqError> {
    let confirmation = confirm.await?;
    let nacked = confirmation.is_nack();
    if let Some(returned) = confirmation.take_message() {
        return Err(MqError::Unroutable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            reply: format!("{} {}", returned.reply_code, returned.reply_text),
        });
    }
    if nacked {
        return Err(MqError::Nacked { queue: format!("{exchange}/{routing_key}") });
    }
    Ok(())
}

impl OutboxPublisher for Publisher {
    type Error = MqError;

    /// Sends the whole batch, then awaits every confirm; fails if any message was
    /// nacked or returned (the relay then keeps all rows and retries the batch).
    async fn publish_confirmed(&self, batch: &[OutboxMessage]) -> Result<(), MqError> {
        let mut pending = Vec::with_capacity(batch.len());
        for message in batch {
            let envelope = Envelope {
                message_id: message.message_id,
                message_type: message.message_type.clone(),
                version: message.version,
                traceparent: message.traceparent.clone(),
                attempt: 1,
            };
            let confirm = self.start(message.queue, &message.payload, envelope.properties()).await?;
            pending.push(self.finish(message.queue, confirm));
        }
        try_join_all(pending).await?;
        Ok(())
    }
}
