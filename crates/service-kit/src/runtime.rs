//! The life of a service process: configuration, connections, health, work, shutdown.
//!
//! Every service calls [`run`] with its [`ServiceSpec`] and a function that builds its
//! message [`Router`]. The runtime:
//! 1. builds the PostgreSQL pool (and the Redis pool where used) — lazily, so the process
//!    starts and reports `503` even when a dependency is down, then recovers by itself;
//! 2. serves `/health` (one check per dependency) and `/metrics`;
//! 3. when the service relays the outbox, keeps a publisher connected
//!    ([`ReconnectingPublisher`]) and runs the [`OutboxRelay`];
//! 4. when the service consumes queues, runs [`run_worker`] (reconnecting with backoff);
//! 5. on SIGTERM/SIGINT stops taking messages, lets in-flight work finish, and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openwatch_common::queues::QueueName;
use openwatch_db::{DbError, OutboxRelay, OutboxRelayConfig, Pool, PoolConfig};
use openwatch_mq::{BrokerConfig, BrokerHealth, HandlerError, ReconnectingPublisher, Router, run_worker};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::config::env_parse_from;
use crate::ops_server::HttpMount;
use crate::{HealthCheck, HealthRegistry, HttpConfig, OpsServer, WorkerConfig, shutdown_token};

/// `OPENWATCH_REDIS_URL`: the Redis server of the services that use one.
pub const REDIS_URL_VAR: &str = "OPENWATCH_REDIS_URL";
/// `OPENWATCH_OUTBOX_RELAY`: `true`/`false`, whether this process relays the outbox.
pub const OUTBOX_RELAY_VAR: &str = "OPENWATCH_OUTBOX_RELAY";
/// `OPENWATCH_OUTBOX_BATCH_SIZE`: outbox rows published per round (1–10000).
pub const OUTBOX_BATCH_SIZE_VAR: &str = "OPENWATCH_OUTBOX_BATCH_SIZE";
/// `OPENWATCH_OUTBOX_POLL_MS`: pause between rounds when the outbox is empty.
pub const OUTBOX_POLL_MS_VAR: &str = "OPENWATCH_OUTBOX_POLL_MS";

/// What distinguishes one service from another, fixed at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Service name (logs, metrics, health report).
    pub name: &'static str,
    /// Version reported by `/health`.
    pub version: &'static str,
    /// Where `/health` and `/metrics` listen unless `OPENWATCH_HTTP_ADDR` says otherwise.
    pub default_http_addr: SocketAddr,
    /// The queues this service may consume (empty: it consumes none).
    pub own_queues: &'static [QueueName],
    /// Default concurrency per CPU (SSH-bound work wants more than CPU-bound work).
    pub concurrency_per_cpu: usize,
    /// Whether the service needs Redis (adds the `redis` health check).
    pub uses_redis: bool,
    /// Whether the service relays the outbox by default.
    pub relays_outbox: bool,
}

/// Settings of one service process, read from the environment (see
/// `docs/CONFIGURATION.md`); tests build it directly.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `OPENWATCH_HTTP_ADDR`.
    pub http: HttpConfig,
    /// `OPENWATCH_DATABASE_*`.
    pub database: PoolConfig,
    /// `OPENWATCH_RABBITMQ_URL`, `OPENWATCH_MQ_*`.
    pub broker: BrokerConfig,
    /// `OPENWATCH_REDIS_URL` (services that use Redis only; may hold a password).
    pub redis_url: Option<SecretString>,
    /// `OPENWATCH_QUEUES`, `OPENWATCH_CONCURRENCY` (services that consume only).
    pub worker: Option<WorkerConfig>,
    /// `OPENWATCH_OUTBOX_*`; `None` when this process does not relay the outbox.
    pub outbox_relay: Option<OutboxRelayConfig>,
}

impl ServiceConfig {
    /// Reads every setting the runtime needs; errors name the variable and the value.
    pub fn from_env(spec: &ServiceSpec) -> anyhow::Result<Self> {
        Self::from_lookup(spec, &|name| std::env::var(name).ok())
    }

    /// [`ServiceConfig::from_env`] reading from `lookup`.
    pub fn from_lookup(spec: &ServiceSpec, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let http = HttpConfig::from_lookup(lookup, spec.default_http_addr)?;
        let database = PoolConfig::from_lookup(lookup)?;
        let broker = BrokerConfig::from_lookup(lookup)?;
        let redis_url = spec.uses_redis.then(|| {
            let url = lookup(REDIS_URL_VAR).filter(|v| !v.trim().is_empty());
            SecretString::from(url.unwrap_or_else(|| "redis://127.0.0.1:6379/0".into()))
        });
        let worker = if spec.own_queues.is_empty() {
            None
        } else {
            Some(WorkerConfig::from_lookup(lookup, spec.own_queues, spec.concurrency_per_cpu)?)
        };
        let outbox_relay = if env_parse_from(lookup, OUTBOX_RELAY_VAR, spec.relays_outbox)? {
            let defaults = OutboxRelayConfig::default();
            let batch_size = env_parse_from(lookup, OUTBOX_BATCH_SIZE_VAR, defaults.batch_size)?;
            if !(1..=10_000).contains(&batch_size) {
                anyhow::bail!("{OUTBOX_BATCH_SIZE_VAR}={batch_size} is invalid: must be between 1 and 10000");
            }
            let poll_ms =
                env_parse_from(lookup, OUTBOX_POLL_MS_VAR, defaults.poll_interval.as_millis() as u64)?;
            Some(OutboxRelayConfig {
                batch_size,
                poll_interval: Duration::from_millis(poll_ms.max(1)),
                ..defaults
            })
        } else {
            None
        };
        Ok(Self { http, database, broker, redis_url, worker, outbox_relay })
    }
}

/// Connections a service's handlers may use.
#[derive(Clone)]
pub struct Resources {
    /// PostgreSQL pool.
    pub pool: Pool,
    /// Redis pool, for services that use Redis.
    pub redis: Option<deadpool_redis::Pool>,
    /// Fires on SIGTERM/SIGINT; long handlers may watch it (they are allowed to finish).
    pub shutdown: CancellationToken,
}

/// Maps a database error to what the consumer should do with the message: retry later
/// when the cause is passing (server unreachable, serialization conflict), dead-letter
/// otherwise.
pub fn handler_error(error: DbError) -> HandlerError {
    if error.is_transient() {
        HandlerError::Transient(error.to_string())
    } else {
        HandlerError::Permanent(error.to_string())
    }
}

/// Runs the service until SIGTERM/SIGINT, then drains and returns `Ok`.
pub async fn run(
    spec: &ServiceSpec,
    config: ServiceConfig,
    build_router: impl FnOnce(&Resources) -> Router,
) -> anyhow::Result<()> {
    run_with_http(spec, config, build_router, |_| Ok(None)).await
}

/// Extra HTTP routes of a service and how many HTTP workers serve them.
pub struct HttpApi {
    /// Mounted next to `/health` and `/metrics`.
    pub mount: HttpMount,
    /// HTTP worker threads.
    pub workers: usize,
}

/// [`run`] for a service that also serves its own HTTP routes (the api-gateway):
/// `build_http` receives the connections and returns the routes to mount.
pub async fn run_with_http(
    spec: &ServiceSpec,
    config: ServiceConfig,
    build_router: impl FnOnce(&Resources) -> Router,
    build_http: impl FnOnce(&Resources) -> anyhow::Result<Option<HttpApi>>,
) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let prometheus = openwatch_telemetry::prometheus();
    let pool = openwatch_db::build_pool(&config.database).context("building the PostgreSQL pool")?;
    let redis = match &config.redis_url {
        Some(url) => Some(
            deadpool_redis::Config::from_url(url.expose_secret())
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .context("building the Redis pool (check OPENWATCH_REDIS_URL)")?,
        ),
        None => None,
    };
    let resources = Resources { pool: pool.clone(), redis: redis.clone(), shutdown: shutdown.clone() };

    let mut health = HealthRegistry::new(spec.name, spec.version).with_check(postgres_check(pool.clone()));
    if let Some(redis) = redis {
        health = health.with_check(redis_check(redis));
    }
    let consumer_health = BrokerHealth::new();
    let publisher_health = BrokerHealth::new();
    if config.worker.is_some() {
        health = health.with_check(broker_check("rabbitmq", consumer_health.clone()));
    }
    if config.outbox_relay.is_some() {
        let name = if config.worker.is_some() { "rabbitmq_outbox" } else { "rabbitmq" };
        health = health.with_check(broker_check(name, publisher_health.clone()));
    }
    let (mount, workers) = match build_http(&resources)? {
        Some(api) => (Some(api.mount), api.workers),
        None => (None, 1),
    };
    let ops = OpsServer::start_with(config.http.addr, health, prometheus, shutdown.clone(), mount, workers)
        .with_context(|| format!("starting the HTTP server on {}", config.http.addr))?;
    tracing::info!(http.addr = %ops.local_addr(), "{} listening", spec.name);

    let relay = config.outbox_relay.map(|relay_config| {
        let publisher = Arc::new(ReconnectingPublisher::new(config.broker.clone(), publisher_health));
        let maintainer = tokio::spawn({
            let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
            async move { publisher.maintain(shutdown).await }
        });
        let relay = tokio::spawn({
            let (pool, shutdown) = (pool.clone(), shutdown.clone());
            async move { OutboxRelay::new(pool, publisher, relay_config).run(shutdown).await }
        });
        (maintainer, relay)
    });

    match config.worker {
        Some(worker) => {
            let router = Arc::new(build_router(&resources));
            tracing::info!(
                queues = ?worker.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>(),
                concurrency = worker.concurrency,
                "consuming"
            );
            run_worker(
                config.broker,
                worker.queues,
                worker.concurrency,
                router,
                shutdown.clone(),
                consumer_health,
            )
            .await
            .context("consuming messages")?;
        }
        None => shutdown.cancelled().await,
    }

    if let Some((maintainer, relay)) = relay {
        relay.await.context("outbox relay task")?;
        maintainer.await.context("outbox publisher task")?;
    }
    ops.wait().await.context("stopping the HTTP server")?;
    tracing::info!("{} stopped", spec.name);
    Ok(())
}

fn postgres_check(pool: Pool) -> HealthCheck {
    HealthCheck::new("postgres", move || {
        let pool = pool.clone();
        async move { openwatch_db::ping(&pool).await.map_err(|e| e.to_string()) }
    })
}

fn redis_check(pool: deadpool_redis::Pool) -> HealthCheck {
    HealthCheck::new("redis", move || {
        let pool = pool.clone();
        async move {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| e.to_string())?;
            if pong == "PONG" { Ok(()) } else { Err(format!("unexpected PING reply `{pong}`")) }
        }
    })
}

fn broker_check(name: &'static str, health: BrokerHealth) -> HealthCheck {
    HealthCheck::new(name, move || {
        let status = health.status();
        async move {
            if status.connected {
                Ok(())
            } else {
                Err(status.last_error.unwrap_or_else(|| "not connected yet".to_owned()))
            }
        }
    })
}
