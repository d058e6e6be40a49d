//! `openwatch-api-gateway`: configuration → telemetry → pools → the API and the outbox relay.
//! Configuration: `docs/CONFIGURATION.md`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::Context;
use openwatch_api_gateway::{app, config::GatewayConfig};
use openwatch_mq::Router;
use openwatch_service_kit::{HttpApi, ServiceConfig, ServiceSpec, runtime};

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
    let gateway = GatewayConfig::from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run_with_http(
        &SPEC,
        config,
        |_| Router::new(),
        |resources| {
            let redis = resources.redis.clone().context("the gateway needs Redis")?;
            let workers = gateway.http_workers;
            let state = app::build_state(resources.pool.clone(), redis, gateway)?;
            Ok(Some(HttpApi { mount: app::mount(state), workers }))
        },
    )
    .await
}
