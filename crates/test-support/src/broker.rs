//! An isolated slice of the real RabbitMQ for one test.
//!
//! [`TestBroker::new`] picks a random prefix (`test_<8 hex>`), so every exchange and
//! queue of the test is its own (`test_1a2b3c4d.scans`, `….dead`, `….retry`, …) and tests
//! run in parallel on one broker. The topology of all eight queues is declared up front
//! with a short retry delay (200 ms). Dropping the fixture deletes that prefix's queues
//! and exchanges (best effort, on its own thread and runtime, so it also works from
//! inside an async test).
//!
//! The broker URL comes from `OPENWATCH_TEST_RABBITMQ_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use openwatch_common::ids::MessageId;
use openwatch_common::queues::QueueName;
use openwatch_mq::{BrokerConfig, Publisher, QueueType, topology};

/// Default broker of the test machines.
pub const DEFAULT_TEST_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Retry delay of test topologies: short, so retry tests are quick.
pub const TEST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// A per-test prefix on the real broker, with the full topology declared.
pub struct TestBroker {
    config: BrokerConfig,
    connection: Connection,
}

impl TestBroker {
    /// A fresh prefix with classic queues.
    pub async fn new() -> Self {
        Self::with_queue_type(QueueType::Classic).await
    }

    /// A fresh prefix with the given queue type.
    pub async fn with_queue_type(queue_type: QueueType) -> Self {
        let url =
            std::env::var("OPENWATCH_TEST_RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned());
        let config = BrokerConfig {
            url,
            prefix: format!("test_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            queue_type,
            retry_delay: TEST_RETRY_DELAY,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(5),
        };
        let connection = Connection::connect(&config.url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at {} is not reachable: {e}", config.redacted_url()));
        let broker = Self { config, connection };
        let channel = broker.channel().await;
        topology::declare(&channel, &broker.config, &QueueName::ALL).await.expect("declare test topology");
        let _ = channel.close(200, "OK".into()).await;
        broker
    }

    /// The broker configuration of this test (prefix, retry delay, …); adjust a clone to
    /// change e.g. `max_attempts` for a consumer.
    pub fn config(&self) -> BrokerConfig {
        self.config.clone()
    }

    /// The random prefix.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The main queue name of `queue` under this prefix.
    pub fn queue(&self, queue: QueueName) -> String {
        topology::queue(&self.config.prefix, queue)
    }

    /// The dead-letter queue name of `queue` under this prefix.
    pub fn dead_queue(&self, queue: QueueName) -> String {
        topology::dead_letter_queue(&self.config.prefix, queue)
    }

    /// The retry queue name of `queue` under this prefix.
    pub fn retry_queue(&self, queue: QueueName) -> String {
        topology::retry_queue(&self.config.prefix, queue)
    }

    /// A new connection to the broker (consumers under test get their own, so closing it
    /// does not disturb the fixture).
    pub async fn connection(&self) -> Connection {
        Connection::connect(&self.config.url, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ")
    }

    /// A confirmed publisher on the fixture's connection.
    pub async fn publisher(&self) -> Publisher {
        Publisher::new(&self.connection, &self.config).await.expect("publisher")
    }

    /// Publishes `body` with exactly `headers` (and a fresh `message_id`) to `queue`'s
    /// exchange, bypassing the typed publisher: for malformed-message tests.
    pub async fn publish_raw(&self, queue: QueueName, body: &[u8], headers: FieldTable) -> MessageId {
        let id = MessageId::new();
        let properties =
            BasicProperties::default().with_message_id(id.to_string().into()).with_headers(headers);
        self.publish_raw_with(queue, body, properties).await;
        id
    }

    /// Publishes `body` with exactly `properties` to `queue`'s exchange and waits for the
    /// confirm.
    pub async fn publish_raw_with(&self, queue: QueueName, body: &[u8], properties: BasicProperties) {
        let channel = self.channel().await;
        channel.confirm_select(Default::default()).await.expect("confirm_select");
        let confirmation = channel
            .basic_publish(
                topology::exchange(&self.config.prefix, queue).as_str().into(),
                topology::routing_key(queue).into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirmation.is_ack(), "raw publish was nacked");
        assert!(confirmation.take_message().is_none(), "raw publish was unroutable");
        let _ = channel.close(200, "OK".into()).await;
    }

    /// Takes (and acks) one message from the broker queue `queue_name`, polling until
    /// `timeout`: its body and headers.
    pub async fn get_one(&self, queue_name: &str, timeout: Duration) -> Option<(Vec<u8>, FieldTable)> {
        self.get_message(queue_name, timeout)
            .await
            .map(|(body, properties)| (body, properties.headers().clone().unwrap_or_default()))
    }

    /// Like [`TestBroker::get_one`], returning all properties (message id, …).
    pub async fn get_message(
        &self,
        queue_name: &str,
        timeout: Duration,
    ) -> Option<(Vec<u8>, BasicProperties)> {
        let channel = self.channel().await;
        let deadline = Instant::now() + timeout;
        let found = loop {
            let message = channel
                .basic_get(queue_name.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap_or_else(|e| panic!("basic.get on {queue_name}: {e}"));
            if let Some(message) = message {
                break Some((message.delivery.data, message.delivery.properties));
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let _ = channel.close(200, "OK".into()).await;
        found
    }

    /// Messages ready in the broker queue `queue_name` (not counting unacked ones).
    pub async fn queue_depth(&self, queue_name: &str) -> u32 {
        let channel = self.channel().await;
        let queue = channel
            .queue_declare(
                queue_name.into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue_name} does not exist: {e}"));
        let _ = channel.close(200, "OK".into()).await;
        queue.message_count()
    }

    async fn channel(&self) -> Channel {
        self.connection.create_channel().await.expect("create channel")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let config = self.config.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("test-broker-cleanup".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(delete_prefix(&config));
            let _ = done_tx.send(());
        });
        if spawned.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

async fn delete_prefix(config: &BrokerConfig) {
    let Ok(connection) = Connection::connect(&config.url, ConnectionProperties::default()).await else {
        return;
    };
    for name in topology::all_queues(&config.prefix, &QueueName::ALL) {
        // A failed delete closes the channel, so use one per object.
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await;
        }
    }
    for name in topology::all_exchanges(&config.prefix, &QueueName::ALL) {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    }
    let _ = connection.close(200, "OK".into()).await;
}

/// Closes, from the broker side, the connections whose client-provided name contains
/// `needle` (as a RabbitMQ restart would); returns how many were closed.
pub fn close_connections_named(needle: &str) -> usize {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"])
        .output()
        .expect("rabbitmqctl (run the tests as root on the broker host)");
    let listing = String::from_utf8_lossy(&output.stdout);
    let pids: Vec<_> =
        listing.lines().filter(|l| l.contains(needle)).filter_map(|l| l.split('\t').next()).collect();
    for pid in &pids {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: simulated broker restart"])
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    }
    pids.len()
}
