//! Broker names and the idempotent declaration of the OpenWatch topology.
//!
//! For each logical queue `Q` (with prefix `P`, `openwatch` in production):
//!
//! | Object | Name | Notes |
//! |---|---|---|
//! | exchange | `P.Q` | durable, direct |
//! | queue | `P.Q` | bound to `P.Q` with routing key `Q`; dead-letters to `P.Q.dlx` |
//! | dead-letter exchange | `P.Q.dlx` | durable, direct |
//! | dead queue | `P.Q.dead` | bound to `P.Q.dlx` with routing key `Q` |
//! | retry queue | `P.Q.retry` | fed through the default exchange; `x-message-ttl` = retry delay, then dead-letters back to `P.Q` with routing key `Q` |
//!
//! Declaring is idempotent as long as the arguments do not change; RabbitMQ rejects a
//! redeclaration with other arguments (e.g. another queue type or retry delay) with
//! `PRECONDITION_FAILED`, which [`declare`] reports as [`MqError::Unavailable`].

use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use openwatch_common::queues::QueueName;

use crate::{BrokerConfig, MqError, QueueType};

/// The main exchange of `queue`: `{prefix}.{queue}`.
pub fn exchange(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}.{queue}")
}

/// The main queue of `queue`: `{prefix}.{queue}` (same name as its exchange).
pub fn queue(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}.{queue}")
}

/// The dead-letter exchange of `queue`: `{prefix}.{queue}.dlx`.
pub fn dead_letter_exchange(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}.{queue}.dlx")
}

/// The queue holding dead letters of `queue`: `{prefix}.{queue}.dead`.
pub fn dead_letter_queue(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}.{queue}.dead")
}

/// The delayed-retry queue of `queue`: `{prefix}.{queue}.retry`.
pub fn retry_queue(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}.{queue}.retry")
}

/// The routing key used on the main and dead-letter exchanges: the logical queue name.
pub fn routing_key(queue: QueueName) -> &'static str {
    queue.as_str()
}

/// Every exchange name of `queues` under `prefix` (for cleanup tools and tests).
pub fn all_exchanges(prefix: &str, queues: &[QueueName]) -> Vec<String> {
    queues.iter().flat_map(|&q| [exchange(prefix, q), dead_letter_exchange(prefix, q)]).collect()
}

/// Every queue name of `queues` under `prefix` (for cleanup tools and tests).
pub fn all_queues(prefix: &str, queues: &[QueueName]) -> Vec<String> {
    queues
        .iter()
        .flat_map(|&q| [queue(prefix, q), dead_letter_queue(prefix, q), retry_queue(prefix, q)])
        .collect()
}

/// Declares exchanges, queues and bindings of `queues`. Idempotent: safe to call on every
/// start and every reconnect, from any number of processes.
pub async fn declare(channel: &Channel, config: &BrokerConfig, queues: &[QueueName]) -> Result<(), MqError> {
    let prefix = config.prefix.as_str();
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    let queue_options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let retry_ttl_ms = i64::try_from(config.retry_delay.as_millis()).unwrap_or(i64::MAX);

    for &q in queues {
        let key = routing_key(q);
        let main = exchange(prefix, q);
        let dlx = dead_letter_exchange(prefix, q);

        channel
            .exchange_declare(
                main.as_str().into(),
                lapin::ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                dlx.as_str().into(),
                lapin::ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;

        let mut main_args = base_arguments(config.queue_type);
        main_args.insert("x-dead-letter-exchange".into(), long_string(&dlx));
        channel.queue_declare(queue(prefix, q).as_str().into(), queue_options, main_args).await?;
        channel
            .queue_bind(
                queue(prefix, q).as_str().into(),
                main.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        channel
            .queue_declare(
                dead_letter_queue(prefix, q).as_str().into(),
                queue_options,
                base_arguments(config.queue_type),
            )
            .await?;
        channel
            .queue_bind(
                dead_letter_queue(prefix, q).as_str().into(),
                dlx.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut retry_args = base_arguments(config.queue_type);
        retry_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(retry_ttl_ms));
        retry_args.insert("x-dead-letter-exchange".into(), long_string(&main));
        retry_args.insert("x-dead-letter-routing-key".into(), long_string(key));
        channel.queue_declare(retry_queue(prefix, q).as_str().into(), queue_options, retry_args).await?;
    }
    tracing::debug!(mq.prefix = prefix, mq.queue_count = queues.len(), "topology declared");
    Ok(())
}

fn base_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string(queue_type.as_str()));
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_architecture() {
        let q = QueueName::ComplianceScanning;
        assert_eq!(exchange("openwatch", q), "openwatch.compliance_scanning");
        assert_eq!(queue("openwatch", q), "openwatch.compliance_scanning");
        assert_eq!(dead_letter_exchange("openwatch", q), "openwatch.compliance_scanning.dlx");
        assert_eq!(dead_letter_queue("openwatch", q), "openwatch.compliance_scanning.dead");
        assert_eq!(retry_queue("openwatch", q), "openwatch.compliance_scanning.retry");
        assert_eq!(all_queues("p", &QueueName::ALL).len(), 24);
        assert_eq!(all_exchanges("p", &QueueName::ALL).len(), 16);
    }
}
