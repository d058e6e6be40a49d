//! `api-gateway`: the only way users and tools reach OpenWatch (HTTP, behind nginx-lb).
//!
//! Today it serves `/health` (PostgreSQL, Redis, RabbitMQ) and `/metrics`, and relays the
//! outbox — the rows that request handlers write in the same transaction as their change —
//! to RabbitMQ. The resource API (auth, RBAC, hosts, scans, …) is built on this with its own
//! issue. Configuration: `docs/CONFIGURATION.md`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use openwatch_mq::Router;
use openwatch_service_kit::{ServiceConfig, ServiceSpec, runtime};

const SPEC: ServiceSpec = ServiceSpec {
    name: "api-gateway",
    version: env!("CARGO_PKG_VERSION"),
    default_http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
    own_queues: &[],
    concurrency_per_cpu: 1,
    uses_redis: true,
    relays_outbox: true,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&SPEC)?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run(&SPEC, config, |_resources| Router::new()).await
}
