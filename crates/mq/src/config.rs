//! Broker settings, read from the environment.
//!
//! The URL carries the password, so [`BrokerConfig`]'s `Debug` and every log line use
//! [`BrokerConfig::redacted_url`] instead of the URL itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::MqError;

/// Default broker URL (local RabbitMQ, default vhost).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default name prefix of exchanges and queues.
pub const DEFAULT_PREFIX: &str = "openwatch";

/// The kind of queue declared (`x-queue-type`).
///
/// Changing it for an existing deployment needs the queues to be deleted first: RabbitMQ
/// refuses to redeclare a queue with another type (`PRECONDITION_FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic queues: single node, lowest overhead (development, single-node installs).
    #[default]
    Classic,
    /// Quorum queues: replicated (Raft), the choice for clustered production brokers.
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            _ => Err("expected `classic` or `quorum`".to_owned()),
        }
    }
}

/// How to reach RabbitMQ and how the OpenWatch topology behaves on it.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// AMQP URL, e.g. `amqp://user:password@host:5672/%2f`. Secret (contains the
    /// password): never log it, use [`BrokerConfig::redacted_url`].
    pub url: String,
    /// Prefix of every exchange and queue name (`{prefix}.{queue}`); tests use a random
    /// one so they can run in parallel on one broker.
    pub prefix: String,
    /// Classic or quorum queues.
    pub queue_type: QueueType,
    /// How long a transiently failed message waits in the retry queue before it is
    /// delivered again.
    pub retry_delay: Duration,
    /// Deliveries (first attempt included) before a transiently failing message is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Upper bound on one connection attempt (TCP + AMQP handshake).
    pub connect_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            queue_type: QueueType::Classic,
            retry_delay: Duration::from_secs(5),
            max_attempts: 5,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("queue_type", &self.queue_type)
            .field("retry_delay", &self.retry_delay)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl BrokerConfig {
    /// Reads the configuration from the process environment.
    ///
    /// | Variable | Default | Meaning |
    /// |---|---|---|
    /// | `OPENWATCH_RABBITMQ_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | broker URL (secret) |
    /// | `OPENWATCH_MQ_PREFIX` | `openwatch` | exchange / queue name prefix |
    /// | `OPENWATCH_MQ_QUEUE_TYPE` | `classic` | `classic` or `quorum` |
    /// | `OPENWATCH_MQ_RETRY_DELAY_MS` | `5000` | delay before a transient failure is retried |
    /// | `OPENWATCH_MQ_MAX_ATTEMPTS` | `5` | deliveries before dead-lettering (≥ 1) |
    /// | `OPENWATCH_MQ_CONNECT_TIMEOUT_MS` | `10000` | bound on one connection attempt |
    pub fn from_env() -> Result<Self, MqError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`BrokerConfig::from_env`], reading variables through `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, MqError> {
        let mut config = Self::default();
        if let Some(url) = non_empty(lookup("OPENWATCH_RABBITMQ_URL")) {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(MqError::Config {
                    variable: "OPENWATCH_RABBITMQ_URL",
                    value: redact_url(&url),
                    reason: "expected an amqp:// URL".to_owned(),
                });
            }
            config.url = url;
        }
        if let Some(prefix) = non_empty(lookup("OPENWATCH_MQ_PREFIX")) {
            if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                return Err(MqError::Config {
                    variable: "OPENWATCH_MQ_PREFIX",
                    value: prefix,
                    reason: "expected letters, digits, `_`, `-` or `.`".to_owned(),
                });
            }
            config.prefix = prefix;
        }
        if let Some(value) = non_empty(lookup("OPENWATCH_MQ_QUEUE_TYPE")) {
            config.queue_type = value.parse().map_err(|reason| MqError::Config {
                variable: "OPENWATCH_MQ_QUEUE_TYPE",
                value: value.clone(),
                reason,
            })?;
        }
        if let Some(ms) = parse_u64(&lookup, "OPENWATCH_MQ_RETRY_DELAY_MS", 1)? {
            config.retry_delay = Duration::from_millis(ms);
        }
        if let Some(n) = parse_u64(&lookup, "OPENWATCH_MQ_MAX_ATTEMPTS", 1)? {
            config.max_attempts = u32::try_from(n).map_err(|_| MqError::Config {
                variable: "OPENWATCH_MQ_MAX_ATTEMPTS",
                value: n.to_string(),
                reason: "too large".to_owned(),
            })?;
        }
        if let Some(ms) = parse_u64(&lookup, "OPENWATCH_MQ_CONNECT_TIMEOUT_MS", 1)? {
            config.connect_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// The URL with its password replaced by `***`: safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_u64(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u64,
) -> Result<Option<u64>, MqError> {
    let Some(value) = non_empty(lookup(variable)) else { return Ok(None) };
    match value.parse::<u64>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(MqError::Config { variable, value, reason: format!("expected an integer ≥ {min}") }),
    }
}

/// Replaces the password of an AMQP URL (`scheme://user:password@host/…`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return "<invalid url>".to_owned() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let password = if userinfo.contains(':') { ":***" } else { "" };
            format!("{}{user}{password}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = BrokerConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(config.prefix, "openwatch");
        assert_eq!(config.retry_delay, Duration::from_secs(5));
        assert_eq!(config.max_attempts, 5);
    }

    #[test]
    fn variables_are_read() {
        let config = BrokerConfig::from_lookup(lookup(&[
            ("OPENWATCH_RABBITMQ_URL", "amqp://ow:s3cret@mq:5672/ow"),
            ("OPENWATCH_MQ_PREFIX", "ow_test"),
            ("OPENWATCH_MQ_QUEUE_TYPE", "Quorum"),
            ("OPENWATCH_MQ_RETRY_DELAY_MS", "250"),
            ("OPENWATCH_MQ_MAX_ATTEMPTS", "3"),
        ]))
        .unwrap();
        assert_eq!(config.queue_type, QueueType::Quorum);
        assert_eq!(config.retry_delay, Duration::from_millis(250));
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.prefix, "ow_test");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("amqp://ow:***@mq:5672/ow"), "{debug}");
    }

    #[test]
    fn bad_values_are_readable_errors() {
        let err = BrokerConfig::from_lookup(lookup(&[("OPENWATCH_MQ_QUEUE_TYPE", "stream")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid OPENWATCH_MQ_QUEUE_TYPE=`stream`: expected `classic` or `quorum`"
        );
        let err = BrokerConfig::from_lookup(lookup(&[("OPENWATCH_MQ_MAX_ATTEMPTS", "0")])).unwrap_err();
        assert!(err.to_string().contains("OPENWATCH_MQ_MAX_ATTEMPTS=`0`"), "{err}");
        let err = BrokerConfig::from_lookup(lookup(&[("OPENWATCH_MQ_RETRY_DELAY_MS", "5s")])).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        let err =
            BrokerConfig::from_lookup(lookup(&[("OPENWATCH_RABBITMQ_URL", "http://u:pw@h/")])).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact_url("amqps://u:p@ss@h/v"), "amqps://u:***@h/v");
        assert_eq!(redact_url("nonsense"), "<invalid url>");
    }
}
