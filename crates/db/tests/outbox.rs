//! Outbox relay logic against a real PostgreSQL: what is committed is published exactly
//! by one relay and deleted, what is rolled back never is, and a publisher failure keeps
//! the rows. The publisher here records batches in memory; the end-to-end tests with a
//! real RabbitMQ live with the broker code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use openwatch_common::ids::{HostId, MessageId};
use openwatch_common::messages::v1::HostCheckRequestedV1;
use openwatch_common::outbox::{OutboxMessage, OutboxPublisher};
use openwatch_common::queues::QueueName;
use openwatch_db::queries::outbox;
use openwatch_db::{AsyncConnection, DbError, OutboxRelay, OutboxRelayConfig, Pool};
use openwatch_test_support::database::TestDatabase;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

/// Records every batch; can be told to fail, or to hold its first batch until released.
#[derive(Default)]
struct RecordingPublisher {
    batches: Mutex<Vec<Vec<OutboxMessage>>>,
    fail: AtomicBool,
    hold_first: Mutex<Option<(oneshot::Sender<()>, std::sync::Arc<Notify>)>>,
}

impl RecordingPublisher {
    fn published(&self) -> Vec<OutboxMessage> {
        self.batches.lock().unwrap().iter().flatten().cloned().collect()
    }
}

impl OutboxPublisher for RecordingPublisher {
    type Error = std::io::Error;

    async fn publish_confirmed(&self, batch: &[OutboxMessage]) -> Result<(), Self::Error> {
        let hold = self.hold_first.lock().unwrap().take();
        if let Some((entered, release)) = hold {
            let _ = entered.send(());
            release.notified().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("broker refused"));
        }
        self.batches.lock().unwrap().push(batch.to_vec());
        Ok(())
    }
}

fn relay(pool: Pool, batch_size: usize) -> OutboxRelay<RecordingPublisher> {
    OutboxRelay::new(
        pool,
        RecordingPublisher::default(),
        OutboxRelayConfig { batch_size, ..Default::default() },
    )
}

fn check_message() -> HostCheckRequestedV1 {
    HostCheckRequestedV1 { host_id: HostId::new(), requested_at: Utc::now() }
}

/// Enqueues `n` messages in one committed transaction.
async fn enqueue_committed(pool: &Pool, n: usize) -> Vec<MessageId> {
    let mut conn = pool.get().await.unwrap();
    conn.transaction::<_, DbError, _>(async |conn| {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(outbox::enqueue_default(conn, &check_message(), None).await?);
        }
        Ok(ids)
    })
    .await
    .unwrap()
}

async fn pending(pool: &Pool) -> i64 {
    outbox::pending_count(&mut pool.get().await.unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_message_is_published_with_its_envelope_and_deleted() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    let message = check_message();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let mut conn = pool.get().await.unwrap();
    let id = conn
        .transaction::<_, DbError, _>(async |conn| {
            outbox::enqueue(conn, QueueName::HealthMonitoring, &message, Some(traceparent)).await
        })
        .await
        .unwrap();
    drop(conn);

    let relay = relay(pool.clone(), 100);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    let published = relay.publisher().published();
    assert_eq!(published.len(), 1);
    let sent = &published[0];
    assert_eq!(sent.message_id, id);
    assert_eq!(sent.queue, QueueName::HealthMonitoring);
    assert_eq!(sent.message_type, "host_check_requested");
    assert_eq!(sent.version, 1);
    assert_eq!(sent.traceparent.as_deref(), Some(traceparent));
    let decoded: HostCheckRequestedV1 = serde_json::from_slice(&sent.payload).unwrap();
    assert_eq!(decoded, message);

    assert_eq!(pending(&pool).await, 0);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    assert_eq!(relay.publisher().published().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_default_uses_the_home_queue_and_batches_keep_insertion_order() {
    let db = TestDatabase::new().await;
    let ids = enqueue_committed(&db.pool(), 7).await;
    let relay = relay(db.pool(), 3);
    assert_eq!(relay.relay_once().await.unwrap(), 3);
    assert_eq!(relay.relay_once().await.unwrap(), 3);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    let published = relay.publisher().published();
    assert_eq!(published.iter().map(|m| m.message_id).collect::<Vec<_>>(), ids);
    assert!(published.iter().all(|m| m.queue == QueueName::HostMonitoring));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_transaction_publishes_nothing() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    let mut conn = pool.get().await.unwrap();
    let result = conn
        .transaction::<(), DbError, _>(async |conn| {
            outbox::enqueue_default(conn, &check_message(), None).await?;
            // The business change failed after the outbox row was written.
            Err(DbError::NotFound)
        })
        .await;
    assert!(matches!(result, Err(DbError::NotFound)));
    drop(conn);

    let relay = relay(pool.clone(), 100);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    assert!(relay.publisher().published().is_empty());
    assert_eq!(pending(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_error_keeps_the_rows_for_the_next_round() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    let ids = enqueue_committed(&pool, 3).await;
    let relay = relay(pool.clone(), 100);

    relay.publisher().fail.store(true, Ordering::SeqCst);
    let err = relay.relay_once().await.unwrap_err();
    assert!(matches!(err, DbError::Publish(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(pending(&pool).await, 3);

    relay.publisher().fail.store(false, Ordering::SeqCst);
    assert_eq!(relay.relay_once().await.unwrap(), 3);
    let republished: Vec<_> = relay.publisher().published().iter().map(|m| m.message_id).collect();
    assert_eq!(republished, ids);
    assert_eq!(pending(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_skips_rows_locked_by_another_relay() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    enqueue_committed(&pool, 20).await;

    let first = std::sync::Arc::new(relay(pool.clone(), 10));
    let second = relay(pool.clone(), 10);
    let (entered_tx, entered_rx) = oneshot::channel();
    let release = std::sync::Arc::new(Notify::new());
    *first.publisher().hold_first.lock().unwrap() = Some((entered_tx, release.clone()));

    // The first relay locks rows 1–10 and blocks inside its publish…
    let first_round = tokio::spawn({
        let first = first.clone();
        async move { first.relay_once().await }
    });
    entered_rx.await.unwrap();
    // …so the second one takes rows 11–20 instead of waiting or duplicating.
    assert_eq!(second.relay_once().await.unwrap(), 10);
    assert_eq!(second.relay_once().await.unwrap(), 0, "rows held by the first relay are skipped");
    release.notify_one();
    assert_eq!(first_round.await.unwrap().unwrap(), 10);

    let a: HashSet<_> = first.publisher().published().iter().map(|m| m.id).collect();
    let b: HashSet<_> = second.publisher().published().iter().map(|m| m.id).collect();
    assert_eq!(a.len(), 10);
    assert_eq!(b.len(), 10);
    assert!(a.is_disjoint(&b));
    assert_eq!(pending(&pool).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_relays_never_publish_a_row_twice() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    let ids = enqueue_committed(&pool, 600).await;

    let relays: Vec<_> = (0..3).map(|_| std::sync::Arc::new(relay(pool.clone(), 25))).collect();
    let tasks: Vec<_> = relays
        .iter()
        .map(|relay| {
            let relay = relay.clone();
            let pool = pool.clone();
            tokio::spawn(async move {
                loop {
                    if relay.relay_once().await.unwrap() == 0 && pending(&pool).await == 0 {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let mut seen = HashSet::new();
    let mut total = 0;
    for relay in &relays {
        for message in relay.publisher().published() {
            total += 1;
            assert!(seen.insert(message.message_id), "{} published twice", message.message_id);
        }
    }
    assert_eq!(total, ids.len());
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_relays_until_cancelled() {
    let db = TestDatabase::new().await;
    let pool = db.pool();
    let relay = std::sync::Arc::new(relay(pool.clone(), 100));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let relay = relay.clone();
        let shutdown = shutdown.clone();
        async move { relay.run(shutdown).await }
    });

    let ids = enqueue_committed(&pool, 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.publisher().published().len() < ids.len() {
        assert!(Instant::now() < deadline, "the running relay did not publish within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("run stops on cancel").unwrap();
    assert_eq!(relay.publisher().published().len(), 5);
}
