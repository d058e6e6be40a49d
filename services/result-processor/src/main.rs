//! `result-processor`: consumes `results` and records each finished scan — findings
//! (bulk), status, score — idempotently by scan id. Configuration: `docs/CONFIGURATION.md`.

mod consumers;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use consumers::scan_completed::RecordScanResult;
use openwatch_common::queues::QueueName;
use openwatch_mq::Router;
use openwatch_service_kit::{ServiceConfig, ServiceSpec, runtime};

const SPEC: ServiceSpec = ServiceSpec {
    name: "result-processor",
    version: env!("CARGO_PKG_VERSION"),
    default_http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9102)),
    own_queues: &[QueueName::Results],
    concurrency_per_cpu: 1,
    uses_redis: false,
    relays_outbox: false,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServiceConfig::from_env(&SPEC)?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    runtime::run(&SPEC, config, |resources| {
        Router::new().register(RecordScanResult { pool: resources.pool.clone() })
    })
    .await
}
