//! `result-processor`: consumes `results` and folds each finished scan into findings,
//! per-rule state, score, compliance state and next scan time, drift, alerts and the daily
//! posture snapshot — one transaction per message, idempotent by scan id. Configuration:
//! `docs/CONFIGURATION.md` and [`config`].

mod config;
mod consumers;
mod metric_names;

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
    let policy = config::policy_from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    metric_names::describe();
    runtime::run(&SPEC, config, |resources| {
        Router::new().register(RecordScanResult { pool: resources.pool.clone(), policy })
    })
    .await
}
