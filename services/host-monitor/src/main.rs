//! `host-monitor`: host liveness. Consumes `host_monitoring` (TCP probe of each host's SSH
//! port, monitoring state recorded), and owns `health_monitoring` and `monitoring` (deeper
//! checks and inventory, which arrive with their own issues). Configuration:
//! `docs/CONFIGURATION.md` and [`config`].

mod config;
mod consumers;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use consumers::host_check_requested::CheckHost;
use openwatch_common::queues::QueueName;
use openwatch_mq::Router;
use openwatch_service_kit::{ServiceConfig, ServiceSpec, runtime};

const SPEC: ServiceSpec = ServiceSpec {
    name: "host-monitor",
    version: env!("CARGO_PKG_VERSION"),
    default_http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9103)),
    own_queues: &[QueueName::HostMonitoring, QueueName::HealthMonitoring, QueueName::Monitoring],
    concurrency_per_cpu: 2,
    uses_redis: false,
    relays_outbox: false,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&SPEC)?;
    let probe = config::ProbeConfig::from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run(&SPEC, config, |resources| {
        Router::new().register(CheckHost {
            pool: resources.pool.clone(),
            probe_timeout: probe.timeout,
            degraded_after: probe.degraded_after,
            check_interval: probe.check_interval,
        })
    })
    .await
}
