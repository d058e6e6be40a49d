//! The consumers' idempotency ledger: which message ids each consumer already handled.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::MessageId;

use crate::DbError;
use crate::schema::processed_messages;

/// Records that `consumer` handled `message_id`; returns `true` the first time and
/// `false` for a redelivery.
///
/// Call it inside the consumer's transaction, together with the message's effects: on
/// `false`, skip the work (and ack); if the transaction rolls back, the mark goes too.
pub async fn mark_processed(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    message_id: MessageId,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(processed_messages::table)
        .values((
            processed_messages::consumer.eq(consumer),
            processed_messages::message_id.eq(message_id.into_uuid()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Forgets marks older than `cutoff` (retention: longer than any redelivery window);
/// returns how many were deleted.
pub async fn purge_older_than(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> Result<usize, DbError> {
    Ok(diesel::delete(processed_messages::table.filter(processed_messages::processed_at.lt(cutoff)))
        .execute(conn)
        .await?)
}
