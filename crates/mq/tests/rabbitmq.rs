//! Integration tests of `openwatch-mq` against the real RabbitMQ: topology, confirmed
//! publishing, typed consumption, retry, dead-lettering, malformed messages and graceful
//! shutdown. Each test owns a random prefix ([`TestBroker`]), so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use openwatch_common::ids::{HostId, MessageId};
use openwatch_common::messages::Message;
use openwatch_common::messages::v1::HostCheckRequestedV1;
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use openwatch_mq::envelope::{header_int, header_str};
use openwatch_mq::{
    BrokerConfig, BrokerHealth, DeliveryInfo, Handler, HandlerError, MqError, Publisher, QueueType, Router,
    consumer, run_worker, topology,
};
use openwatch_test_support::broker::{self, TestBroker};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const Q: QueueName = QueueName::HostMonitoring;
const WAIT: Duration = Duration::from_secs(10);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn check() -> HostCheckRequestedV1 {
    serde_json::from_value(
        serde_json::json!({ "host_id": HostId::new(), "requested_at": "2026-11-28T12:00:00Z" }),
    )
    .unwrap()
}

fn traceparent() -> Option<String> {
    Some(TRACEPARENT.to_owned())
}

type Seen = (HostCheckRequestedV1, DeliveryInfo, Instant);

/// Records every call and answers with `decide(attempt)`, after `delay`.
struct Recorder {
    seen: mpsc::UnboundedSender<Seen>,
    decide: fn(u32) -> Result<(), HandlerError>,
    delay: Duration,
    finished: Arc<AtomicBool>,
}

impl Handler<HostCheckRequestedV1> for Recorder {
    async fn handle(&self, message: HostCheckRequestedV1, info: &DeliveryInfo) -> Result<(), HandlerError> {
        self.seen.send((message, info.clone(), Instant::now())).unwrap();
        tokio::time::sleep(self.delay).await;
        self.finished.store(true, Ordering::SeqCst);
        (self.decide)(info.attempt)
    }
}

struct Consumer {
    seen: mpsc::UnboundedReceiver<Seen>,
    finished: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), MqError>>,
}

impl Consumer {
    /// Consumes `Q` through [`consumer::run`] on its own connection.
    async fn start(
        broker: &TestBroker,
        config: BrokerConfig,
        decide: fn(u32) -> Result<(), HandlerError>,
        delay: Duration,
    ) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let finished = Arc::new(AtomicBool::new(false));
        let router = Arc::new(Router::new().register(Recorder {
            seen: tx,
            decide,
            delay,
            finished: finished.clone(),
        }));
        let stop = CancellationToken::new();
        let connection = broker.connection().await;
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let result = consumer::run(&connection, &config, Q, 1, router, token).await;
            let _ = connection.close(200, "OK".into()).await;
            result
        });
        Self { seen, finished, stop, task }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv()).await.expect("no message handled in time").unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("consumer did not stop").unwrap().unwrap();
    }
}

fn ok(_: u32) -> Result<(), HandlerError> {
    Ok(())
}

fn reason(headers: &FieldTable) -> String {
    header_str(headers, "x-openwatch-dead-letter-reason").expect("dead-letter reason header")
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[tokio::test(flavor = "multi_thread")]
async fn topology_can_be_declared_twice_classic_and_quorum() {
    for queue_type in [QueueType::Classic, QueueType::Quorum] {
        let broker = TestBroker::with_queue_type(queue_type).await;
        let connection = broker.connection().await;
        let channel = connection.create_channel().await.unwrap();
        topology::declare(&channel, &broker.config(), &QueueName::ALL).await.unwrap();
        topology::declare(&channel, &broker.config(), &QueueName::ALL).await.unwrap();
        for q in QueueName::ALL {
            assert_eq!(broker.queue_depth(&broker.queue(q)).await, 0);
            assert_eq!(broker.queue_depth(&broker.dead_queue(q)).await, 0);
            assert_eq!(broker.queue_depth(&broker.retry_queue(q)).await, 0);
        }
        // Messages flow through this queue type as well.
        let publisher = broker.publisher().await;
        publisher.publish(&check()).await.unwrap();
        assert!(broker.get_one(&broker.queue(Q), WAIT).await.is_some(), "{queue_type}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn published_messages_carry_the_envelope_and_round_trip() {
    let broker = TestBroker::new().await;
    let publisher = broker.publisher().await.with_traceparent_source(traceparent);

    // On the wire.
    let message = check();
    let id = publisher.publish(&message).await.unwrap();
    let (body, properties) = broker.get_message(&broker.queue(Q), WAIT).await.unwrap();
    let headers = properties.headers().clone().unwrap();
    assert_eq!(serde_json::from_slice::<HostCheckRequestedV1>(&body).unwrap(), message);
    assert_eq!(properties.message_id().as_ref().unwrap().as_str(), id.to_string());
    assert_eq!(properties.content_type().as_ref().unwrap().as_str(), "application/json");
    assert_eq!(properties.delivery_mode(), &Some(2));
    assert_eq!(header_str(&headers, "type").as_deref(), Some("host_check_requested"));
    assert_eq!(header_int(&headers, "version"), Some(1));
    assert_eq!(header_int(&headers, "attempt"), Some(1));
    assert_eq!(header_str(&headers, "traceparent").as_deref(), Some(TRACEPARENT));

    // Through the consumer, with a caller-chosen id.
    let mut consumer = Consumer::start(&broker, broker.config(), ok, Duration::ZERO).await;
    let chosen = MessageId::new();
    let message = check();
    assert_eq!(publisher.publish_to(Q, &message, Some(chosen)).await.unwrap(), chosen);
    let (received, info, _) = consumer.next().await;
    assert_eq!(received, message);
    assert_eq!(info.message_id, chosen);
    assert_eq!(info.attempt, 1);
    assert_eq!(info.queue, Q);
    assert!(!info.redelivered);
    assert_eq!((info.message_type.as_str(), info.version), (HostCheckRequestedV1::TYPE, 1));
    assert_eq!(info.traceparent.as_deref(), Some(TRACEPARENT));
    consumer.stop().await;
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 0, "message was acked");
}

fn fail_first(attempt: u32) -> Result<(), HandlerError> {
    if attempt == 1 { Err(HandlerError::Transient("database unavailable".into())) } else { Ok(()) }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_is_retried_after_the_delay_then_succeeds() {
    let broker = TestBroker::new().await;
    // Through the worker runtime this time.
    let (tx, mut seen) = mpsc::unbounded_channel();
    let router = Arc::new(Router::new().register(Recorder {
        seen: tx,
        decide: fail_first,
        delay: Duration::ZERO,
        finished: Arc::default(),
    }));
    let shutdown = CancellationToken::new();
    let health = BrokerHealth::new();
    let worker = tokio::spawn(run_worker(
        broker.config(),
        vec![Q, QueueName::Scans],
        2,
        router,
        shutdown.clone(),
        health.clone(),
    ));

    let id = broker.publisher().await.publish(&check()).await.unwrap();
    let (_, first, first_at) = tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    let (_, second, second_at) = tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!((first.message_id, first.attempt), (id, 1));
    assert_eq!((second.message_id, second.attempt), (id, 2));
    let waited = second_at - first_at;
    assert!(waited >= broker.config().retry_delay, "retried after {waited:?}");
    assert!(health.is_connected());

    shutdown.cancel();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap().unwrap();
    assert!(!health.is_connected());
    for name in [broker.queue(Q), broker.retry_queue(Q), broker.dead_queue(Q)] {
        assert_eq!(broker.queue_depth(&name).await, 0, "{name}");
    }
    assert!(seen.try_recv().is_err(), "handled exactly twice");
}

fn permanent(_: u32) -> Result<(), HandlerError> {
    Err(HandlerError::Permanent("host does not exist".into()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_is_dead_lettered_with_its_reason() {
    let broker = TestBroker::new().await;
    let mut consumer = Consumer::start(&broker, broker.config(), permanent, Duration::ZERO).await;
    let message = check();
    let id = broker.publisher().await.publish(&message).await.unwrap();
    assert_eq!(consumer.next().await.1.message_id, id);

    let (body, properties) = broker.get_message(&broker.dead_queue(Q), WAIT).await.expect("dead letter");
    let headers = properties.headers().clone().unwrap();
    assert_eq!(serde_json::from_slice::<HostCheckRequestedV1>(&body).unwrap(), message);
    assert_eq!(properties.message_id().as_ref().unwrap().as_str(), id.to_string());
    assert_eq!(reason(&headers), "permanent failure: host does not exist");
    assert_eq!(header_str(&headers, "type").as_deref(), Some("host_check_requested"));
    consumer.stop().await;
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 0);
    assert_eq!(broker.queue_depth(&broker.retry_queue(Q)).await, 0);
}

fn always_transient(_: u32) -> Result<(), HandlerError> {
    Err(HandlerError::Transient("target unreachable".into()))
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_are_dead_lettered() {
    let broker = TestBroker::new().await;
    let config = BrokerConfig { max_attempts: 3, ..broker.config() };
    let mut consumer = Consumer::start(&broker, config, always_transient, Duration::ZERO).await;
    broker.publisher().await.publish(&check()).await.unwrap();
    for expected in 1..=3 {
        assert_eq!(consumer.next().await.1.attempt, expected);
    }
    let (_, headers) = broker.get_one(&broker.dead_queue(Q), WAIT).await.expect("dead letter");
    assert_eq!(reason(&headers), "retries exhausted after attempt 3/3: target unreachable");
    assert_eq!(header_int(&headers, "attempt"), Some(3));
    consumer.stop().await;
    assert!(consumer_seen_nothing_more(&broker).await);
}

async fn consumer_seen_nothing_more(broker: &TestBroker) -> bool {
    broker.queue_depth(&broker.queue(Q)).await == 0 && broker.queue_depth(&broker.retry_queue(Q)).await == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_dead_lettered_and_the_consumer_keeps_going() {
    let broker = TestBroker::new().await;
    let mut consumer = Consumer::start(&broker, broker.config(), ok, Duration::ZERO).await;

    let envelope = |message_type: &str, version: i32| {
        let mut headers = FieldTable::default();
        headers.insert("type".into(), string(message_type));
        headers.insert("version".into(), AMQPValue::LongInt(version));
        headers.insert("attempt".into(), AMQPValue::LongInt(1));
        headers
    };
    let valid_body = serde_json::to_vec(&check()).unwrap();
    broker.publish_raw(Q, b"{\"host_id\": 42", envelope("host_check_requested", 1)).await;
    broker.publish_raw(Q, &valid_body, envelope("host_check_requested", 7)).await;
    broker.publish_raw(Q, &valid_body, envelope("coffee_requested", 1)).await;
    broker.publish_raw(Q, &valid_body, FieldTable::default()).await;
    let mut only_version = FieldTable::default();
    only_version.insert("type".into(), string("host_check_requested"));
    broker.publish_raw(Q, &valid_body, only_version).await;

    // A valid message after them is still handled.
    let id = broker.publisher().await.publish(&check()).await.unwrap();
    assert_eq!(consumer.next().await.1.message_id, id);

    let mut reasons = BTreeSet::new();
    for _ in 0..5 {
        let (_, headers) = broker.get_one(&broker.dead_queue(Q), WAIT).await.expect("dead letter");
        reasons.insert(reason(&headers));
    }
    let reasons: Vec<_> = reasons.into_iter().collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].starts_with("body is not a valid `host_check_requested` v1"), "{reasons:?}");
    assert_eq!(
        reasons[1..],
        [
            "missing header `type`",
            "missing header `version`",
            "unknown message type `coffee_requested`",
            "unsupported version 7 of message type `host_check_requested`",
        ]
    );
    assert!(consumer.seen.try_recv().is_err(), "no malformed message reached the handler");
    consumer.stop().await;
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_to_an_unbound_routing_key_fails() {
    let broker = TestBroker::new().await;
    // An exchange that exists but has no queue bound.
    let config = BrokerConfig { prefix: format!("{}_unbound", broker.prefix()), ..broker.config() };
    let connection = broker.connection().await;
    let channel = connection.create_channel().await.unwrap();
    let exchange = topology::exchange(&config.prefix, Q);
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions { auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publisher = Publisher::new(&connection, &config).await.unwrap();
    let error = publisher.publish(&check()).await.unwrap_err();
    assert!(matches!(&error, MqError::Unroutable { reply, .. } if reply.contains("NO_ROUTE")), "{error}");
    // The batch path refuses too.
    let batch = [outbox_message(1)];
    assert!(matches!(publisher.publish_confirmed(&batch).await, Err(MqError::Unroutable { .. })));
    channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await.unwrap();
}

fn outbox_message(id: i64) -> OutboxMessage {
    OutboxMessage {
        id,
        queue: Q,
        message_id: MessageId::new(),
        message_type: HostCheckRequestedV1::TYPE.to_owned(),
        version: HostCheckRequestedV1::VERSION,
        payload: serde_json::to_vec(&check()).unwrap(),
        traceparent: traceparent(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_batch_is_published_confirmed_and_consumed() {
    let broker = TestBroker::new().await;
    let batch: Vec<_> = (1..=50).map(outbox_message).collect();
    broker.publisher().await.publish_confirmed(&batch).await.unwrap();
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 50);

    let mut consumer = Consumer::start(&broker, broker.config(), ok, Duration::ZERO).await;
    let mut ids = BTreeSet::new();
    for _ in 0..50 {
        let (_, info, _) = consumer.next().await;
        assert_eq!(info.traceparent.as_deref(), Some(TRACEPARENT));
        ids.insert(info.message_id);
    }
    assert_eq!(ids, batch.iter().map(|m| m.message_id).collect());
    consumer.stop().await;
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waits_for_the_handler_in_flight_and_acks() {
    let broker = TestBroker::new().await;
    let mut consumer = Consumer::start(&broker, broker.config(), ok, Duration::from_millis(1500)).await;
    broker.publisher().await.publish(&check()).await.unwrap();
    consumer.next().await; // the handler has started

    let cancelled_at = Instant::now();
    let finished = consumer.finished.clone();
    consumer.stop().await;
    assert!(finished.load(Ordering::SeqCst), "run returned before the handler finished");
    assert!(cancelled_at.elapsed() >= Duration::from_millis(1000), "did not wait for the handler");

    // Acked: nothing comes back after the consumer's channel and connection are closed.
    assert!(broker.get_one(&broker.queue(Q), Duration::from_millis(500)).await.is_none(), "redelivered");
    assert_eq!(broker.queue_depth(&broker.dead_queue(Q)).await, 0);
    assert_eq!(broker.queue_depth(&broker.retry_queue(Q)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_reconnects_when_the_broker_drops_the_connection() {
    let broker = TestBroker::new().await;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let router = Arc::new(Router::new().register(Recorder {
        seen: tx,
        decide: ok,
        delay: Duration::ZERO,
        finished: Arc::default(),
    }));
    let shutdown = CancellationToken::new();
    let health = BrokerHealth::new();
    let worker =
        tokio::spawn(run_worker(broker.config(), vec![Q], 4, router, shutdown.clone(), health.clone()));
    let publisher = broker.publisher().await;

    let first = publisher.publish(&check()).await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap().1.message_id, first);
    assert_eq!(health.status().connections, 1);

    let name = format!("openwatch {} pid", broker.prefix());
    let closed = tokio::task::spawn_blocking(move || broker::close_connections_named(&name)).await.unwrap();
    assert_eq!(closed, 1, "the worker's connection was not found");

    let second = publisher.publish(&check()).await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, seen.recv()).await.unwrap().unwrap().1.message_id, second);
    let status = health.status();
    assert_eq!(status.connections, 2, "{status:?}");
    assert!(status.connected && status.last_error.is_some(), "{status:?}");

    shutdown.cancel();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap().unwrap();
}
