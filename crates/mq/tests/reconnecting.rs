//! `ReconnectingPublisher` against the real RabbitMQ: it declares the topology itself,
//! publishes outbox batches, reports its state, and comes back after the broker drops
//! its connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use openwatch_common::ids::{HostId, MessageId};
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use openwatch_mq::{BrokerHealth, MqError, ReconnectingPublisher};
use openwatch_test_support::broker::{self, TestBroker};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn outbox_message(id: i64) -> OutboxMessage {
    OutboxMessage {
        id,
        queue: QueueName::HostMonitoring,
        message_id: MessageId::new(),
        message_type: "host_check_requested".into(),
        version: 1,
        payload: serde_json::to_vec(&serde_json::json!({
            "host_id": HostId::new(), "requested_at": "2026-11-28T12:00:00Z"
        }))
        .unwrap(),
        traceparent: None,
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Health reports the connection a moment before the publisher channel is open: the
/// outbox relay simply retries, and so does this.
async fn publish_eventually(publisher: &ReconnectingPublisher, batch: &[OutboxMessage]) {
    let deadline = Instant::now() + WAIT;
    while let Err(error) = publisher.publish_confirmed(batch).await {
        assert!(Instant::now() < deadline, "publishing never succeeded: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_after_connecting_and_again_after_the_broker_drops_it() {
    let broker = TestBroker::new().await;
    let health = BrokerHealth::new();
    let publisher = Arc::new(ReconnectingPublisher::new(broker.config(), health.clone()));

    let not_yet = publisher.publish_confirmed(&[outbox_message(1)]).await;
    assert!(matches!(not_yet, Err(MqError::NotConnected)), "{not_yet:?}");

    let shutdown = CancellationToken::new();
    let maintainer = tokio::spawn({
        let publisher = publisher.clone();
        let shutdown = shutdown.clone();
        async move { publisher.maintain(shutdown).await }
    });
    until("the first connection", || health.is_connected()).await;
    publish_eventually(&publisher, &[outbox_message(1), outbox_message(2)]).await;
    assert_eq!(broker.queue_depth(&broker.queue(QueueName::HostMonitoring)).await, 2);

    let name = format!("openwatch {} pid", broker.prefix());
    let closed = tokio::task::spawn_blocking(move || broker::close_connections_named(&name)).await.unwrap();
    assert_eq!(closed, 1);
    until("the reconnection", || health.status().connections >= 2 && health.is_connected()).await;
    publish_eventually(&publisher, &[outbox_message(3)]).await;
    assert_eq!(broker.queue_depth(&broker.queue(QueueName::HostMonitoring)).await, 3);

    shutdown.cancel();
    tokio::time::timeout(WAIT, maintainer).await.unwrap().unwrap();
}
