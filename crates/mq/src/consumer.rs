//! Typed consumption: a [`Router`] maps the `type` + `version` headers of a delivery to a
//! typed [`Handler`], and [`run`] consumes one queue with bounded concurrency.
//!
//! Every delivery ends in exactly one of three ways ([`Outcome`]):
//! * **ack**: the handler succeeded;
//! * **retry**: the handler failed with [`HandlerError::Transient`] and the attempt is below
//!   `max_attempts`: the message is republished to the retry queue with `attempt + 1`
//!   (it comes back after `retry_delay`), then the original is acked;
//! * **dead-letter**: the handler failed with [`HandlerError::Permanent`], retries are
//!   exhausted, the handler panicked, or the message is malformed (missing `type` /
//!   `version` / `message_id`, unknown type or version, body that does not decode): the
//!   message is republished to the queue's dead-letter exchange with the original body and
//!   headers plus `x-openwatch-dead-letter-reason`, then acked. A bad message never stops
//!   the consumer.
//!
//! Republishing is confirmed before the original is acked, so a crash in between at worst
//! duplicates a message (consumers are idempotent), never loses one. If republishing
//! fails for a reason other than a lost connection, the original is rejected without
//! requeue so the broker dead-letters it itself.

use openwatch_telemetry::metrics as names;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use openwatch_common::ids::MessageId;
use openwatch_common::messages::{Message, headers};
use openwatch_common::queues::QueueName;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::envelope::{header_int, header_str, headers_of, string_value};
use crate::publisher::check_confirmation;
use crate::{BrokerConfig, MqError, topology};

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (database or target unreachable, lock timeout): retried after
    /// the retry delay, up to `max_attempts` deliveries, then dead-lettered.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (the referenced row does not exist, the request is invalid):
    /// dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// What a handler knows about the delivery besides the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// Broker message id; the idempotency key when the message has no natural one.
    pub message_id: MessageId,
    /// Delivery attempt, from 1 (incremented by each delayed retry, not by broker
    /// redeliveries).
    pub attempt: u32,
    /// The logical queue it was consumed from.
    pub queue: QueueName,
    /// The broker delivered it before (a consumer died without acking): the work may
    /// already be done.
    pub redelivered: bool,
    /// The `type` header.
    pub message_type: String,
    /// The `version` header.
    pub version: u16,
    /// The producer's W3C trace context, when it had one.
    pub traceparent: Option<String>,
}

/// Handles one message type. Implementations must be idempotent: a message can be
/// delivered more than once.
///
/// ```text
/// impl Handler<ScanRequestedV1> for ScanRequested {
///     async fn handle(&self, message: ScanRequestedV1, delivery: &DeliveryInfo) -> Result<(), HandlerError> { … }
/// }
/// ```
pub trait Handler<M: Message>: Send + Sync + 'static {
    /// Processes `message`; the error kind decides between retry and dead-letter.
    fn handle(
        &self,
        message: M,
        delivery: &DeliveryInfo,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Attaches a span to a remote parent given a `traceparent` (e.g.
/// `openwatch_telemetry::span_with_remote_parent`).
pub type RemoteParentHook = fn(&tracing::Span, &str);

/// What the consumer does with a delivery once the router has looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge.
    Ack,
    /// Transient failure: republish to the retry queue with this attempt number.
    Retry {
        /// The `attempt` header of the republished message.
        next_attempt: u32,
        /// The handler's error.
        reason: String,
    },
    /// Permanent failure, exhausted retries or malformed: republish to the dead-letter
    /// exchange with this reason.
    DeadLetter {
        /// Value of the `x-openwatch-dead-letter-reason` header.
        reason: String,
    },
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

enum Failure {
    Malformed(String),
    Handler(HandlerError),
}

trait ErasedHandler: Send + Sync {
    fn call<'a>(&'a self, body: &'a [u8], info: &'a DeliveryInfo) -> BoxFuture<'a, Result<(), Failure>>;
}

struct Typed<M, H> {
    handler: H,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message, H: Handler<M>> ErasedHandler for Typed<M, H> {
    fn call<'a>(&'a self, body: &'a [u8], info: &'a DeliveryInfo) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let message: M = serde_json::from_slice(body).map_err(|e| {
                Failure::Malformed(format!("body is not a valid `{}` v{}: {e}", M::TYPE, M::VERSION))
            })?;
            self.handler.handle(message, info).await.map_err(Failure::Handler)
        })
    }
}

/// Routes deliveries to typed handlers by their `type` and `version` headers.
pub struct Router {
    handlers: HashMap<(String, u16), Arc<dyn ErasedHandler>>,
    remote_parent: Option<RemoteParentHook>,
}

impl Default for Router {
    fn default() -> Self {
        Self { handlers: HashMap::new(), remote_parent: Some(openwatch_telemetry::span_with_remote_parent) }
    }
}

impl Router {
    /// An empty router (every message would be dead-lettered as unknown).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `M::TYPE` version `M::VERSION`.
    ///
    /// # Panics
    /// When a handler for the same type and version is already registered (a wiring bug,
    /// caught at startup).
    #[must_use]
    pub fn register<M: Message, H: Handler<M>>(mut self, handler: H) -> Self {
        let key = (M::TYPE.to_owned(), M::VERSION);
        let previous = self.handlers.insert(key, Arc::new(Typed::<M, H> { handler, _message: PhantomData }));
        assert!(previous.is_none(), "two handlers registered for {} v{}", M::TYPE, M::VERSION);
        self
    }

    /// Continues the producer's trace in each handler span through `hook` (default:
    /// `openwatch_telemetry::span_with_remote_parent`).
    #[must_use]
    pub fn with_remote_parent(mut self, hook: RemoteParentHook) -> Self {
        self.remote_parent = Some(hook);
        self
    }

    /// Whether a handler exists for this type and version.
    pub fn handles(&self, message_type: &str, version: u16) -> bool {
        self.handlers.contains_key(&(message_type.to_owned(), version))
    }

    /// Checks the envelope, decodes the body, runs the handler and decides the outcome.
    /// Never fails: every problem becomes [`Outcome::Retry`] or [`Outcome::DeadLetter`].
    pub async fn dispatch(
        &self,
        queue: QueueName,
        properties: &BasicProperties,
        body: &[u8],
        redelivered: bool,
        max_attempts: u32,
    ) -> Outcome {
        let info = match self.envelope(queue, properties, redelivered) {
            Ok(info) => info,
            Err(reason) => return Outcome::DeadLetter { reason },
        };
        let Some(handler) = self.handlers.get(&(info.message_type.clone(), info.version)) else {
            let known_type = self.handlers.keys().any(|(t, _)| *t == info.message_type);
            let reason = if known_type {
                format!("unsupported version {} of message type `{}`", info.version, info.message_type)
            } else {
                format!("unknown message type `{}`", info.message_type)
            };
            return Outcome::DeadLetter { reason };
        };

        let span = tracing::info_span!(
            "mq.handle",
            mq.queue = queue.as_str(),
            message.id = %info.message_id,
            message.r#type = info.message_type.as_str(),
            message.attempt = info.attempt,
        );
        if let (Some(hook), Some(traceparent)) = (self.remote_parent, info.traceparent.as_deref()) {
            hook(&span, traceparent);
        }
        let started = Instant::now();
        let result = AssertUnwindSafe(handler.call(body, &info)).catch_unwind().instrument(span).await;
        metrics::histogram!(names::MQ_HANDLER_DURATION_SECONDS, "queue" => queue.as_str())
            .record(started.elapsed().as_secs_f64());

        match result {
            Ok(Ok(())) => Outcome::Ack,
            Ok(Err(Failure::Malformed(reason))) => Outcome::DeadLetter { reason },
            Ok(Err(Failure::Handler(HandlerError::Permanent(e)))) => {
                Outcome::DeadLetter { reason: format!("permanent failure: {e}") }
            }
            Ok(Err(Failure::Handler(HandlerError::Transient(e)))) if info.attempt < max_attempts => {
                Outcome::Retry { next_attempt: info.attempt + 1, reason: e }
            }
            Ok(Err(Failure::Handler(HandlerError::Transient(e)))) => Outcome::DeadLetter {
                reason: format!("retries exhausted after attempt {}/{max_attempts}: {e}", info.attempt),
            },
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".to_owned());
                Outcome::DeadLetter { reason: format!("handler panicked: {text}") }
            }
        }
    }

    fn envelope(
        &self,
        queue: QueueName,
        properties: &BasicProperties,
        redelivered: bool,
    ) -> Result<DeliveryInfo, String> {
        let table = headers_of(properties);
        let message_id = properties
            .message_id()
            .as_ref()
            .ok_or_else(|| "missing message_id property".to_owned())
            .and_then(|id| {
                id.as_str().parse::<MessageId>().map_err(|_| format!("invalid message_id `{}`", id.as_str()))
            })?;
        let message_type = header_str(&table, headers::MESSAGE_TYPE)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("missing header `{}`", headers::MESSAGE_TYPE))?;
        if !table.contains_key(headers::VERSION) {
            return Err(format!("missing header `{}`", headers::VERSION));
        }
        let version = header_int(&table, headers::VERSION)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| format!("invalid header `{}`", headers::VERSION))?;
        // A missing attempt counts as the first one; a nonsensical one too.
        let attempt = header_int(&table, headers::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|&a| a >= 1)
            .unwrap_or(1);
        Ok(DeliveryInfo {
            message_id,
            attempt,
            queue,
            redelivered,
            message_type,
            version,
            traceparent: header_str(&table, headers::TRACEPARENT),
        })
    }
}

/// Consumes `queue` until `shutdown` is cancelled, running up to `concurrency` handlers
/// at once (prefetch = `concurrency`).
///
/// On cancellation it stops consuming (`basic.cancel`), starts no new delivery, waits for
/// the handlers in flight to finish and settle their messages, closes its channel (the
/// broker requeues prefetched messages that were not started) and returns `Ok(())`. It
/// returns an error when the channel or connection fails or the broker cancels the
/// consumer; in-flight handlers are still awaited first.
pub async fn run(
    connection: &Connection,
    config: &BrokerConfig,
    queue: QueueName,
    concurrency: usize,
    router: Arc<Router>,
    shutdown: CancellationToken,
) -> Result<(), MqError> {
    let concurrency = concurrency.clamp(1, usize::from(u16::MAX));
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel.basic_qos(u16::try_from(concurrency).unwrap_or(u16::MAX), BasicQosOptions::default()).await?;
    let queue_name = topology::queue(&config.prefix, queue);
    let tag = format!("{queue_name}.{}", uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            queue_name.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(mq.queue = queue_name.as_str(), concurrency, "consuming");

    let settle = Arc::new(Settle {
        channel: channel.clone(),
        queue,
        prefix: config.prefix.clone(),
        max_attempts: config.max_attempts,
        router,
    });
    let mut in_flight = JoinSet::new();
    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => log_join(joined),
            next = consumer.next(), if in_flight.len() < concurrency => match next {
                Some(Ok(delivery)) => {
                    let settle = Arc::clone(&settle);
                    in_flight.spawn(async move { settle.process(delivery).await });
                }
                Some(Err(error)) => break Err(MqError::from(error)),
                None => break Err(MqError::ConsumerCancelled { queue: queue_name.clone() }),
            },
        }
    };

    if channel.status().connected()
        && let Err(error) = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await
    {
        tracing::debug!(mq.queue = queue_name.as_str(), %error, "basic.cancel failed");
    }
    drop(consumer);
    if !in_flight.is_empty() {
        tracing::info!(mq.queue = queue_name.as_str(), in_flight = in_flight.len(), "draining handlers");
    }
    while let Some(joined) = in_flight.join_next().await {
        log_join(joined);
    }
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    tracing::info!(mq.queue = queue_name.as_str(), "stopped consuming");
    end
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "message task failed");
    }
}

/// Everything a delivery task needs to run the handler and settle the message.
struct Settle {
    channel: Channel,
    queue: QueueName,
    prefix: String,
    max_attempts: u32,
    router: Arc<Router>,
}

impl Settle {
    async fn process(&self, delivery: Delivery) {
        let queue = self.queue.as_str();
        let outcome = self
            .router
            .dispatch(
                self.queue,
                &delivery.properties,
                &delivery.data,
                delivery.redelivered,
                self.max_attempts,
            )
            .await;
        let message_id =
            delivery.properties.message_id().as_ref().map(|id| id.to_string()).unwrap_or_default();
        let label = match &outcome {
            Outcome::Ack => "acked",
            Outcome::Retry { .. } => "retried",
            Outcome::DeadLetter { .. } => "dead_lettered",
        };
        let republished = match outcome {
            Outcome::Ack => Ok(()),
            Outcome::Retry { next_attempt, reason } => {
                tracing::info!(mq.queue = queue, message.id = message_id.as_str(), next_attempt, %reason, "transient failure, retrying later");
                let mut table = headers_of(&delivery.properties);
                table.insert(
                    headers::ATTEMPT.into(),
                    AMQPValue::LongInt(i32::try_from(next_attempt).unwrap_or(i32::MAX)),
                );
                self.republish(&delivery, "", &topology::retry_queue(&self.prefix, self.queue), table).await
            }
            Outcome::DeadLetter { reason } => {
                tracing::warn!(mq.queue = queue, message.id = message_id.as_str(), %reason, "dead-lettering message");
                let mut table = headers_of(&delivery.properties);
                table.insert(headers::DEAD_LETTER_REASON.into(), string_value(&reason));
                let dlx = topology::dead_letter_exchange(&self.prefix, self.queue);
                self.republish(&delivery, &dlx, topology::routing_key(self.queue), table).await
            }
        };
        let settled = match republished {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await.map(|_| label),
            Err(MqError::Unavailable(error)) => Err(error),
            Err(error) => {
                // The retry or dead-letter target is missing or refused the message: let the
                // broker dead-letter it through the queue's x-dead-letter-exchange instead.
                tracing::error!(mq.queue = queue, message.id = message_id.as_str(), %error, "republish failed, rejecting");
                delivery.acker.reject(BasicRejectOptions { requeue: false }).await.map(|_| "rejected")
            }
        };
        match settled {
            Ok(outcome) => {
                metrics::counter!(names::MQ_MESSAGES_CONSUMED_TOTAL, "queue" => queue, "outcome" => outcome)
                    .increment(1)
            }
            Err(error) => {
                // The channel is gone: the broker redelivers the message to the next consumer.
                tracing::warn!(mq.queue = queue, message.id = message_id.as_str(), %error, "could not settle message, it will be redelivered");
                metrics::counter!(names::MQ_MESSAGES_CONSUMED_TOTAL, "queue" => queue, "outcome" => "unsettled")
                    .increment(1);
            }
        }
    }

    async fn republish(
        &self,
        delivery: &Delivery,
        exchange: &str,
        routing_key: &str,
        headers: FieldTable,
    ) -> Result<(), MqError> {
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &delivery.data,
                properties,
            )
            .await?;
        check_confirmation(confirm, exchange, routing_key).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use openwatch_common::ids::HostId;
    use openwatch_common::messages::v1::HostCheckRequestedV1;

    use super::*;
    use crate::envelope::Envelope;

    struct Scripted(Result<(), HandlerError>, AtomicU32);

    impl Handler<HostCheckRequestedV1> for Scripted {
        async fn handle(
            &self,
            _message: HostCheckRequestedV1,
            _info: &DeliveryInfo,
        ) -> Result<(), HandlerError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.clone()
        }
    }

    fn router(result: Result<(), HandlerError>) -> Router {
        Router::new().register::<HostCheckRequestedV1, _>(Scripted(result, AtomicU32::new(0)))
    }

    fn body() -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({ "host_id": HostId::new(), "requested_at": "2026-11-28T12:00:00Z" }),
        )
        .unwrap()
    }

    fn props(message_type: &str, version: u16, attempt: u32) -> BasicProperties {
        Envelope {
            message_id: MessageId::new(),
            message_type: message_type.into(),
            version,
            traceparent: None,
            attempt,
        }
        .properties()
    }

    async fn outcome(router: &Router, props: &BasicProperties, body: &[u8], attempt_max: u32) -> Outcome {
        router.dispatch(QueueName::HostMonitoring, props, body, false, attempt_max).await
    }

    #[tokio::test]
    async fn decides_by_handler_result_and_attempt() {
        let ok = router(Ok(()));
        let t = HostCheckRequestedV1::TYPE;
        // The fixture must decode, or the remaining assertions test nothing.
        serde_json::from_slice::<HostCheckRequestedV1>(&body()).unwrap();
        assert_eq!(outcome(&ok, &props(t, 1, 1), &body(), 5).await, Outcome::Ack);

        let transient = router(Err(HandlerError::Transient("db down".into())));
        assert_eq!(
            outcome(&transient, &props(t, 1, 4), &body(), 5).await,
            Outcome::Retry { next_attempt: 5, reason: "db down".into() }
        );
        let Outcome::DeadLetter { reason } = outcome(&transient, &props(t, 1, 5), &body(), 5).await else {
            panic!("expected dead letter")
        };
        assert!(reason.contains("retries exhausted after attempt 5/5: db down"), "{reason}");

        let permanent = router(Err(HandlerError::Permanent("no such host".into())));
        assert_eq!(
            outcome(&permanent, &props(t, 1, 1), &body(), 5).await,
            Outcome::DeadLetter { reason: "permanent failure: no such host".into() }
        );
    }

    #[tokio::test]
    async fn malformed_messages_are_dead_lettered_with_a_reason() {
        let r = router(Ok(()));
        let t = HostCheckRequestedV1::TYPE;
        let reason = |o: Outcome| match o {
            Outcome::DeadLetter { reason } => reason,
            other => panic!("expected dead letter, got {other:?}"),
        };
        assert!(reason(outcome(&r, &props(t, 1, 1), b"{not json", 5).await).contains("body is not a valid"));
        assert_eq!(
            reason(outcome(&r, &props(t, 9, 1), &body(), 5).await),
            format!("unsupported version 9 of message type `{t}`")
        );
        assert_eq!(
            reason(outcome(&r, &props("nope", 1, 1), &body(), 5).await),
            "unknown message type `nope`"
        );
        let bare = BasicProperties::default().with_message_id(MessageId::new().to_string().into());
        assert_eq!(reason(outcome(&r, &bare, &body(), 5).await), "missing header `type`");
        assert_eq!(
            reason(outcome(&r, &BasicProperties::default(), &body(), 5).await),
            "missing message_id property"
        );
    }

    struct Panics;

    impl Handler<HostCheckRequestedV1> for Panics {
        async fn handle(
            &self,
            _message: HostCheckRequestedV1,
            _info: &DeliveryInfo,
        ) -> Result<(), HandlerError> {
            panic!("boom")
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_dead_letters_instead_of_crashing() {
        let r = Router::new().register::<HostCheckRequestedV1, _>(Panics);
        assert_eq!(
            outcome(&r, &props(HostCheckRequestedV1::TYPE, 1, 1), &body(), 5).await,
            Outcome::DeadLetter { reason: "handler panicked: boom".into() }
        );
    }
}
