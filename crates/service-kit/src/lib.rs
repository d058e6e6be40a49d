//! What every OpenWatch service shares besides its domain: the ops HTTP server (`/health`
//! and `/metrics`), dependency health checks, environment parsing helpers,
//! signal-driven shutdown, and the runtime that wires them around a service.
//!
//! It sits on the services' side of the layering: [`runtime`] wires PostgreSQL (`db`),
//! RabbitMQ (`mq`) and Redis together so that each service's `main` is a few lines:
//! ```ignore
//! let config = ServiceConfig::from_env(&SPEC)?;
//! let _telemetry = openwatch_telemetry::init(SPEC.name)?;
//! runtime::run(&SPEC, config, |resources| Router::new().register(MyHandler { pool: resources.pool.clone() })).await
//! ```
//! The lower layers ([`health`], [`ops_server`], [`config`]) take dependency checks as
//! closures and stay driver-agnostic.
//!
//! # Layout
//! * [`health`]: checks, the concurrent bounded-time registry, the JSON report.
//! * [`ops_server`]: the actix-web server and the routes the api-gateway mounts itself.
//! * [`config`]: env parsing with readable errors, `HttpConfig`, `WorkerConfig`.
//! * [`shutdown`]: SIGTERM/SIGINT to a `CancellationToken`.
//! * [`runtime`]: [`runtime::run`], the whole life of a service process.

pub mod config;
pub mod health;
pub mod ops_server;
pub mod runtime;
pub mod shutdown;

pub use config::{ConfigError, HttpConfig, WorkerConfig};
pub use health::{HealthCheck, HealthRegistry, HealthReport};
pub use ops_server::{HttpMetrics, HttpMount, OpsServer, configure_ops};
pub use runtime::{HttpApi, Resources, ServiceConfig, ServiceSpec, handler_error};
pub use shutdown::shutdown_token;
pub use tokio_util::sync::CancellationToken;
