//! RabbitMQ for OpenWatch: topology, a typed publisher with confirms, a typed consumer
//! with retry and dead-lettering, and the reconnecting worker runtime the services call.
//!
//! Message *contracts* live in `openwatch-common` (`messages`, `queues`, `outbox`); this
//! crate is the only place that knows about AMQP. See `docs/MESSAGING.md` for the broker
//! layout, the envelope headers and the retry / dead-letter semantics.
//!
//! # Layout
//! * [`config`]: [`BrokerConfig`], read from `OPENWATCH_RABBITMQ_URL` and `OPENWATCH_MQ_*`.
//! * [`topology`]: exchange / queue names and the idempotent [`topology::declare`].
//! * [`publisher`]: [`Publisher`], confirmed and `mandatory` publishing; implements
//!   [`openwatch_common::outbox::OutboxPublisher`] for the outbox relay.
//! * [`reconnecting`]: [`ReconnectingPublisher`], a publisher that keeps its connection
//!   (and the topology) up by itself — what a long-running outbox relay needs.
//! * [`consumer`]: [`Handler`], [`Router`] and [`consumer::run`], the typed consumer of one
//!   queue (manual ack, bounded concurrency, graceful drain).
//! * [`worker`]: [`run_worker`] (connect with backoff, declare, consume, reconnect) and
//!   [`BrokerHealth`] for health endpoints.
//! * [`envelope`]: reading and writing the envelope headers.

pub mod config;
pub mod consumer;
pub mod envelope;
mod error;
pub mod publisher;
pub mod reconnecting;
pub mod topology;
pub mod worker;

pub use config::{BrokerConfig, QueueType};
pub use consumer::{DeliveryInfo, Handler, HandlerError, Router};
pub use error::MqError;
pub use publisher::Publisher;
pub use reconnecting::ReconnectingPublisher;
pub use worker::{BrokerHealth, BrokerStatus, connect_with_backoff, run_worker};

/// Re-exported so callers can name lapin types (connections, field tables) without
/// depending on lapin themselves at a different version.
pub use lapin;
