//! The message envelope: AMQP properties and headers around a JSON body.
//!
//! Every message carries the `message_id` property and the headers named in
//! [`openwatch_common::messages::headers`]: `type`, `version`, `attempt` and, when the
//! producer had a trace, `traceparent`. Integers are written as signed 32-bit field
//! values (understood by every AMQP client) and read from any integer field type, or
//! from a decimal string, so producers in other languages interoperate.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use openwatch_common::ids::MessageId;
use openwatch_common::messages::headers;

/// AMQP `delivery_mode` of persistent messages.
pub const PERSISTENT: u8 = 2;
/// Content type of every body.
pub const CONTENT_TYPE: &str = "application/json";

/// The identity of one message, as carried by its properties and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Broker message id; consumers deduplicate on it.
    pub message_id: MessageId,
    /// `Message::TYPE`.
    pub message_type: String,
    /// `Message::VERSION`.
    pub version: u16,
    /// W3C trace context of the producer.
    pub traceparent: Option<String>,
    /// Delivery attempt, from 1.
    pub attempt: u32,
}

impl Envelope {
    /// The AMQP properties of this envelope: persistent JSON with id, timestamp and headers.
    pub fn properties(&self) -> BasicProperties {
        let mut table = FieldTable::default();
        table.insert(headers::MESSAGE_TYPE.into(), string_value(&self.message_type));
        table.insert(headers::VERSION.into(), AMQPValue::LongInt(i32::from(self.version)));
        table.insert(
            headers::ATTEMPT.into(),
            AMQPValue::LongInt(i32::try_from(self.attempt).unwrap_or(i32::MAX)),
        );
        if let Some(traceparent) = &self.traceparent {
            table.insert(headers::TRACEPARENT.into(), string_value(traceparent));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        BasicProperties::default()
            .with_message_id(self.message_id.to_string().into())
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(now)
            .with_headers(table)
    }
}

/// A header as a string (`LongString` or `ShortString` values), if present and UTF-8.
pub fn header_str(table: &FieldTable, name: &str) -> Option<String> {
    match table.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header as an integer, from any integer field type or a decimal string.
pub fn header_int(table: &FieldTable, name: &str) -> Option<i64> {
    match table.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => header_str(table, name)?.trim().parse().ok(),
        _ => None,
    }
}

/// A string field value.
pub fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The headers of `properties`, or an empty table.
pub fn headers_of(properties: &BasicProperties) -> FieldTable {
    properties.headers().clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn envelope_round_trips_through_headers() {
        let envelope = Envelope {
            message_id: MessageId::new(),
            message_type: "scan_requested".into(),
            version: 1,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            attempt: 3,
        };
        let props = envelope.properties();
        let table = headers_of(&props);
        assert_eq!(header_str(&table, "type").as_deref(), Some("scan_requested"));
        assert_eq!(header_int(&table, "version"), Some(1));
        assert_eq!(header_int(&table, "attempt"), Some(3));
        assert_eq!(header_str(&table, "traceparent"), envelope.traceparent);
        assert_eq!(props.message_id().as_ref().unwrap().as_str(), envelope.message_id.to_string());
        assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
    }

    #[test]
    fn integers_are_read_from_strings_and_other_widths() {
        let mut table = FieldTable::default();
        table.insert("a".into(), string_value(" 7 "));
        table.insert("b".into(), AMQPValue::ShortShortUInt(2));
        table.insert("c".into(), string_value("x"));
        assert_eq!(header_int(&table, "a"), Some(7));
        assert_eq!(header_int(&table, "b"), Some(2));
        assert_eq!(header_int(&table, "c"), None);
        assert_eq!(header_int(&table, "missing"), None);
    }
}
