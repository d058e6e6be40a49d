//! The one error type of this crate.

use openwatch_common::queues::QueueName;

/// What went wrong talking to RabbitMQ, named for what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum MqError {
    /// A setting is invalid: fix the environment and restart.
    #[error("invalid {variable}=`{value}`: {reason}")]
    Config {
        /// The environment variable (or field) at fault.
        variable: &'static str,
        /// The offending value (never a secret).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The broker could not be reached or the connection / channel failed: retry later
    /// (the worker reconnects by itself; a publisher must be rebuilt on a new connection).
    #[error("RabbitMQ unavailable: {0}")]
    Unavailable(#[from] lapin::Error),
    /// Connecting took longer than `connect_timeout`: retry later.
    #[error("connecting to RabbitMQ timed out after {timeout_ms} ms")]
    ConnectTimeout {
        /// The configured timeout.
        timeout_ms: u128,
    },
    /// The broker returned a `mandatory` message because nothing is bound to its routing
    /// key: the topology is missing; declare it ([`crate::topology::declare`]).
    #[error("message to `{exchange}` with routing key `{routing_key}` is unroutable ({reply})")]
    Unroutable {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
        /// The broker's reply text (e.g. `NO_ROUTE`).
        reply: String,
    },
    /// The broker refused the message (publisher-confirm nack): retry later.
    #[error("RabbitMQ nacked a message for queue `{queue}`")]
    Nacked {
        /// The destination queue.
        queue: String,
    },
    /// The message could not be serialised: a bug in the message type.
    #[error("cannot encode {message_type} for queue {queue}: {source}")]
    Encode {
        /// The message type.
        message_type: &'static str,
        /// The destination queue.
        queue: QueueName,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// No broker connection is established yet (or it was lost and is being re-made):
    /// retry later.
    #[error("not connected to RabbitMQ")]
    NotConnected,
    /// Shutdown was requested before the operation could finish: stop.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// A consumer was cancelled by the broker (queue deleted, node down) without shutdown
    /// being requested: reconnect and redeclare.
    #[error("consumer on `{queue}` was cancelled by the broker")]
    ConsumerCancelled {
        /// The broker queue name.
        queue: String,
    },
}
