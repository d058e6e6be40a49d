//! What every OpenWatch service shares besides its domain: the ops HTTP server (`/health`
//! and `/metrics`), dependency health checks, environment parsing helpers, retry with
//! backoff and signal-driven shutdown.
//!
//! This crate deliberately knows nothing about PostgreSQL, RabbitMQ or Redis: a service
//! supplies its dependency checks as closures ([`health::HealthCheck`]), so the kit can be
//! used by every service without pulling every driver in.
//!
//! A worker's `main` typically reads:
//! ```ignore
//! let _telemetry = openwatch_telemetry::init("scan-worker")?;
//! let shutdown = shutdown::shutdown_token();
//! let http = config::HttpConfig::from_env(default_addr)?;
//! let health = HealthRegistry::new("scan-worker", env!("CARGO_PKG_VERSION")).with_check(pg_check);
//! let ops = OpsServer::start(http.addr, health, openwatch_telemetry::prometheus(), shutdown.clone())?;
//! // … consume until `shutdown` fires, then finish in-flight work …
//! ops.wait().await?;
//! ```
//!
//! # Layout
//! * [`health`]: checks, the concurrent bounded-time registry, the JSON report.
//! * [`ops_server`]: the actix-web server and the routes the api-gateway mounts itself.
//! * [`config`]: env parsing with readable errors, `HttpConfig`, `WorkerConfig`.
//! * [`backoff`]: exponential backoff with full jitter, `retry_until_ok`.
//! * [`shutdown`]: SIGTERM/SIGINT to a `CancellationToken`.

pub mod backoff;
pub mod config;
pub mod health;
pub mod ops_server;
pub mod shutdown;

pub use backoff::{Backoff, retry_until_ok};
pub use config::{ConfigError, HttpConfig, WorkerConfig};
pub use health::{HealthCheck, HealthRegistry, HealthReport};
pub use ops_server::{HttpMetrics, OpsServer, configure_ops};
pub use shutdown::shutdown_token;
pub use tokio_util::sync::CancellationToken;
