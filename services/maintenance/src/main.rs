//! `maintenance`: housekeeping, the scheduled-scan dispatcher and the stale-scan reaper.
//! Enqueues its periodic jobs through the outbox, consumes `maintenance` and `default`,
//! dispatches due hosts to `compliance_scanning`, re-enqueues or fails abandoned scans, and
//! relays the outbox. Every instance runs all of it (no leader: work is claimed with
//! `SKIP LOCKED`, jobs are idempotent). Configuration: `docs/CONFIGURATION.md`, [`config`].

mod config;
mod consumers;
mod dispatcher;
mod housekeeping;
mod metric_names;
mod periodic;
mod stale_scans;

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
    let own = config::MaintenanceConfig::from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    metric_names::describe();
    runtime::run(&SPEC, config, |resources| {
        let (pool, shutdown) = (&resources.pool, &resources.shutdown);
        housekeeping::spawn(pool.clone(), own.housekeeping_interval, shutdown.clone());
        dispatcher::spawn(pool.clone(), own.dispatch, shutdown.clone());
        stale_scans::spawn(pool.clone(), own.stale_scans, shutdown.clone());
        Router::new().register(RunMaintenanceJob { pool: resources.pool.clone() })
    })
    .await
}
