//! The outbox end to end, with the real PostgreSQL and the real RabbitMQ: a committed row
//! reaches its queue, a rolled-back one never does, and a relay that dies between
//! publishing and deleting causes a redelivery that an idempotent consumer absorbs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::{ExpressionMethods, QueryDsl};
use openwatch_common::ids::HostId;
use openwatch_common::messages::v1::HostCheckRequestedV1;
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use openwatch_db::queries::{hosts, outbox, processed_messages};
use openwatch_db::schema;
use openwatch_db::{AsyncConnection, DbError, OutboxRelay, OutboxRelayConfig, Pool};
use openwatch_mq::envelope::{header_int, header_str};
use openwatch_mq::{
    BrokerHealth, DeliveryInfo, Handler, HandlerError, MqError, Publisher, Router, run_worker,
};
use openwatch_test_support::broker::TestBroker;
use openwatch_test_support::database::TestDatabase;
use tokio_util::sync::CancellationToken;

const Q: QueueName = QueueName::HostMonitoring;
const WAIT: Duration = Duration::from_secs(10);

fn check(host_id: HostId) -> HostCheckRequestedV1 {
    HostCheckRequestedV1 { host_id, requested_at: Utc::now() }
}

/// Writes one outbox row in a transaction that commits or rolls back.
async fn enqueue(pool: &Pool, message: &HostCheckRequestedV1, commit: bool) {
    let mut conn = pool.get().await.unwrap();
    let result = conn
        .transaction::<_, DbError, _>(async |conn| {
            outbox::enqueue_default(
                conn,
                message,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            )
            .await?;
            if commit { Ok(()) } else { Err(DbError::NotFound) }
        })
        .await;
    assert_eq!(result.is_ok(), commit);
}

async fn pending(pool: &Pool) -> i64 {
    outbox::pending_count(&mut pool.get().await.unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_row_is_delivered_to_its_queue_and_removed() {
    let db = TestDatabase::new().await;
    let broker = TestBroker::new().await;
    let host = db.insert_host("web-1", 22).await;
    enqueue(&db.pool(), &check(host), true).await;

    let relay = OutboxRelay::new(db.pool(), broker.publisher().await, OutboxRelayConfig::default());
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(pending(&db.pool()).await, 0);

    let (body, headers) = broker.get_one(&broker.queue(Q), WAIT).await.expect("message on the queue");
    let delivered: HostCheckRequestedV1 = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered.host_id, host);
    assert_eq!(header_str(&headers, "type").as_deref(), Some("host_check_requested"));
    assert_eq!(header_int(&headers, "version"), Some(1));
    assert_eq!(header_int(&headers, "attempt"), Some(1));
    assert!(header_str(&headers, "traceparent").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_transaction_delivers_nothing() {
    let db = TestDatabase::new().await;
    let broker = TestBroker::new().await;
    let host = db.insert_host("web-1", 22).await;
    enqueue(&db.pool(), &check(host), false).await;

    let relay = OutboxRelay::new(db.pool(), broker.publisher().await, OutboxRelayConfig::default());
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    assert!(broker.get_one(&broker.queue(Q), Duration::from_millis(500)).await.is_none());
}

/// Publishes for real, then kills the relay's database session before it can delete the
/// rows: exactly what a relay process dying between the broker confirm and its commit
/// looks like to PostgreSQL and RabbitMQ.
struct DiesAfterPublishing {
    publisher: Publisher,
    database_url: String,
    died: AtomicBool,
}

impl OutboxPublisher for DiesAfterPublishing {
    type Error = MqError;

    async fn publish_confirmed(&self, batch: &[OutboxMessage]) -> Result<(), MqError> {
        use diesel_async::RunQueryDsl;

        self.publisher.publish_confirmed(batch).await?;
        if !self.died.swap(true, Ordering::SeqCst) {
            let mut conn = diesel_async::AsyncPgConnection::establish(&self.database_url).await.unwrap();
            diesel::sql_query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
        Ok(())
    }
}

/// An idempotent consumer: the effect (a counter on the host) and the processed-message
/// mark are one transaction, so a duplicate delivery changes nothing.
struct CountChecks {
    pool: Pool,
    deliveries: Arc<AtomicUsize>,
}

impl Handler<HostCheckRequestedV1> for CountChecks {
    async fn handle(
        &self,
        message: HostCheckRequestedV1,
        delivery: &DeliveryInfo,
    ) -> Result<(), HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| HandlerError::Transient(e.to_string()))?;
        let message_id = delivery.message_id;
        conn.transaction::<_, DbError, _>(async |conn| {
            if processed_messages::mark_processed(conn, "count-checks", message_id).await? {
                use diesel_async::RunQueryDsl;
                use schema::hosts::dsl;
                diesel::update(dsl::hosts.find(message.host_id.into_uuid()))
                    .set(dsl::scan_failures.eq(dsl::scan_failures + 1))
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_dying_between_publish_and_delete_redelivers_and_the_consumer_absorbs_it() {
    let db = TestDatabase::new().await;
    let broker = TestBroker::new().await;
    let host = db.insert_host("web-1", 22).await;
    enqueue(&db.pool(), &check(host), true).await;

    let dying = DiesAfterPublishing {
        publisher: broker.publisher().await,
        database_url: db.url(),
        died: AtomicBool::new(false),
    };
    let relay = OutboxRelay::new(db.pool(), dying, OutboxRelayConfig::default());
    assert!(relay.relay_once().await.is_err(), "the relay's session was killed before it could delete");
    assert_eq!(pending(&db.pool()).await, 1, "the row survives the crash");
    assert_eq!(relay.relay_once().await.unwrap(), 1, "the next round publishes it again");
    assert_eq!(pending(&db.pool()).await, 0);
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 2, "at-least-once: two copies on the queue");

    let deliveries = Arc::new(AtomicUsize::new(0));
    let router = Router::new().register(CountChecks { pool: db.pool(), deliveries: deliveries.clone() });
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run_worker(
        broker.config(),
        vec![Q],
        2,
        Arc::new(router),
        shutdown.clone(),
        BrokerHealth::new(),
    ));
    let deadline = Instant::now() + WAIT;
    while deliveries.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "both copies should be consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    let stored = hosts::get_host(&mut db.pool().get().await.unwrap(), host).await.unwrap();
    assert_eq!(stored.scan_failures, 1, "the effect happened once");
    assert_eq!(broker.queue_depth(&broker.queue(Q)).await, 0);
    assert_eq!(broker.queue_depth(&broker.dead_queue(Q)).await, 0);
}
