//! The transactional outbox: write a message in the caller's transaction; the relay
//! ([`crate::OutboxRelay`]) reads, publishes and deletes it.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::MessageId;
use openwatch_common::messages::Message;
use openwatch_common::outbox::OutboxMessage;
use openwatch_common::queues::QueueName;
use uuid::Uuid;

use crate::DbError;
use crate::schema::outbox;

/// Writes `message` to the outbox for `queue`; returns its broker message id.
///
/// Call it **inside the caller's transaction**, next to the change the message announces:
/// either both commit (and the message is eventually published) or neither does.
pub async fn enqueue<M: Message>(
    conn: &mut AsyncPgConnection,
    queue: QueueName,
    message: &M,
    traceparent: Option<&str>,
) -> Result<MessageId, DbError> {
    let id = MessageId::new();
    let payload = serde_json::to_value(message).map_err(DbError::Encode)?;
    let version = i16::try_from(M::VERSION)
        .map_err(|_| DbError::InvalidData(format!("message version {} does not fit SMALLINT", M::VERSION)))?;
    diesel::insert_into(outbox::table)
        .values((
            outbox::queue.eq(queue.as_str()),
            outbox::message_id.eq(id.into_uuid()),
            outbox::message_type.eq(M::TYPE),
            outbox::version.eq(version),
            outbox::payload.eq(payload),
            outbox::traceparent.eq(traceparent),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// [`enqueue`] to the message's home queue (`M::QUEUE`).
pub async fn enqueue_default<M: Message>(
    conn: &mut AsyncPgConnection,
    message: &M,
    traceparent: Option<&str>,
) -> Result<MessageId, DbError> {
    enqueue(conn, M::QUEUE, message, traceparent).await
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
struct OutboxRow {
    id: i64,
    queue: String,
    message_id: Uuid,
    message_type: String,
    version: i16,
    payload: serde_json::Value,
    traceparent: Option<String>,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = DbError;

    fn try_from(row: OutboxRow) -> Result<Self, DbError> {
        let queue = row.queue.parse::<QueueName>().map_err(|e| DbError::InvalidData(e.to_string()))?;
        let version = u16::try_from(row.version).map_err(|_| {
            DbError::InvalidData(format!("outbox row {} has version {}", row.id, row.version))
        })?;
        let payload = serde_json::to_vec(&row.payload).map_err(DbError::Encode)?;
        Ok(OutboxMessage {
            id: row.id,
            queue,
            message_id: MessageId(row.message_id),
            message_type: row.message_type,
            version,
            payload,
            traceparent: row.traceparent,
        })
    }
}

/// Locks and returns up to `limit` of the oldest rows, skipping rows another relay holds
/// (`FOR UPDATE SKIP LOCKED`). Call inside a transaction; the locks last until it ends.
pub async fn lock_batch(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<OutboxMessage>, DbError> {
    let rows: Vec<OutboxRow> = outbox::table
        .select(OutboxRow::as_select())
        .order(outbox::id.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    rows.into_iter().map(OutboxMessage::try_from).collect()
}

/// Deletes published rows; returns how many were deleted.
pub async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<usize, DbError> {
    Ok(diesel::delete(outbox::table.filter(outbox::id.eq_any(ids))).execute(conn).await?)
}

/// Number of rows waiting to be published (a backlog gauge).
pub async fn pending_count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(outbox::table.count().get_result(conn).await?)
}
