//! Versioned message contracts carried over RabbitMQ.
//!
//! A message body is the JSON of one `…V1` struct. Its identity travels in AMQP headers
//! (names in [`headers`]): the consumer checks `type` and `version` before decoding, so a
//! message of an unknown version is dead-lettered with a reason instead of being
//! misread. Contracts only ever change additively: new optional fields, or a new `V2`
//! type next to `V1`. Decoding ignores unknown fields so an older consumer keeps working
//! while producers roll forward. `tests/fixtures/v1/*.json` pin the wire format.

pub mod v1;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::queues::QueueName;

/// A message contract: a payload type with a stable name, version and home queue.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable type name, sent in the `type` header (e.g. `scan_requested`).
    const TYPE: &'static str;
    /// Contract version, sent in the `version` header.
    const VERSION: u16;
    /// The queue this message goes to unless the publisher picks another one
    /// (a scheduled `ScanRequestedV1` goes to `compliance_scanning`).
    const QUEUE: QueueName;
}

/// AMQP header names of the message envelope.
pub mod headers {
    /// Stable message type ([`super::Message::TYPE`]).
    pub const MESSAGE_TYPE: &str = "type";
    /// Contract version ([`super::Message::VERSION`]).
    pub const VERSION: &str = "version";
    /// W3C trace context of the producer, so traces continue across the broker.
    pub const TRACEPARENT: &str = "traceparent";
    /// Delivery attempt, starting at 1; incremented on each delayed retry.
    pub const ATTEMPT: &str = "attempt";
    /// Why a message was dead-lettered by our consumer.
    pub const DEAD_LETTER_REASON: &str = "x-openwatch-dead-letter-reason";
}
