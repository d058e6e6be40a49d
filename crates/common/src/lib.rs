//! Domain types and message contracts shared by every OpenWatch crate.
//!
//! This crate is the root of the dependency graph: it holds no IO (no database, broker,
//! HTTP or cache dependency — CI enforces it), so every service, the engine and the
//! infrastructure crates can agree on the same types without dragging each other in.
//!
//! # Layout
//! * [`access`] — roles, permissions and the role → permission matrix.
//! * [`backoff`] — the exponential backoff policy of every retry and reconnect loop.
//! * [`ids`] — newtype identifiers (`HostId(Uuid)`, …) so ids of different things never mix.
//! * [`domain`] — the domain enums: severity, finding status, scan status, monitoring and
//!   compliance state, each with a stable snake_case wire form.
//! * [`queues`] — the eight logical queue names of the scaling guide.
//! * [`messages`] — versioned message contracts (`messages::v1`) carried over RabbitMQ.
//! * [`outbox`] — the contract between the outbox relay (in `db`) and a publisher (in `mq`).

pub mod access;
pub mod backoff;
pub mod domain;
pub mod ids;
pub mod messages;
pub mod outbox;
pub mod queues;

/// A string did not name a known value of a domain enum or queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct UnknownVariant {
    /// What was being parsed, e.g. `severity`.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted spellings, comma separated.
    pub expected: String,
}
