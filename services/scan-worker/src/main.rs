//! `scan-worker`: consumes `scans` (manual, high priority) and `compliance_scanning`
//! (scheduled) and runs the compliance engine against hosts over SSH.
//!
//! Scan execution arrives with the engine; until then no handler is registered, so a
//! `scan_requested` message is dead-lettered to `openwatch.<queue>.dead` with the reason
//! "no handler" — kept for re-drive, never lost or half-processed. SSH work waits on the
//! network, so the default concurrency is 4 per CPU. Configuration: `docs/CONFIGURATION.md`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use openwatch_common::queues::QueueName;
use openwatch_mq::Router;
use openwatch_service_kit::{ServiceConfig, ServiceSpec, runtime};

const SPEC: ServiceSpec = ServiceSpec {
    name: "scan-worker",
    version: env!("CARGO_PKG_VERSION"),
    default_http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9101)),
    own_queues: &[QueueName::Scans, QueueName::ComplianceScanning],
    concurrency_per_cpu: 4,
    uses_redis: true,
    relays_outbox: false,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&SPEC)?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run(&SPEC, config, |_resources| Router::new()).await
}
