//! `maintenance`: housekeeping. Enqueues its periodic jobs through the outbox, consumes
//! `maintenance` and `default`, and relays the outbox. Every job is idempotent, so several
//! instances may run. Configuration: `docs/CONFIGURATION.md`.

mod consumers;
mod housekeeping;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use consumers::maintenance_job_requested::RunMaintenanceJob;
use openwatch_common::queues::QueueName;
use openwatch_mq::Router;
use openwatch_service_kit::{ServiceConfig, ServiceSpec, runtime};

const SPEC: ServiceSpec = ServiceSpec {
    name: "maintenance",
    version: env!("CARGO_PKG_VERSION"),
    default_http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9104)),
    own_queues: &[QueueName::Maintenance, QueueName::Default],
    concurrency_per_cpu: 1,
    uses_redis: false,
    relays_outbox: true,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&SPEC)?;
    let interval = housekeeping::interval_from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run(&SPEC, config, |resources| {
        // Abandoning the ticker at shutdown is safe: each round is one transaction.
        housekeeping::spawn(resources.pool.clone(), interval, resources.shutdown.clone());
        Router::new().register(RunMaintenanceJob { pool: resources.pool.clone() })
    })
    .await
}
