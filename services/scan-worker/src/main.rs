//! `scan-worker`: consumes `scans` (manual, served first) and `compliance_scanning`
//! (scheduled), runs the compliance engine against each host over SSH and publishes every
//! result with its evidence to `results` ([`consumers::scan_requested`]). SSH work waits on
//! the network, so the default concurrency is 4 per CPU. Configuration: [`config`] and
//! `docs/CONFIGURATION.md`.
//!
//! Results go out through a [`ReconnectingPublisher`] of this process. It is stopped only
//! after the runtime has drained the consumers, so a scan still running at SIGTERM can
//! publish its result before the process exits.

mod config;
mod consumers;
mod progress;
mod slots;
mod ssh;
mod walk_schedule;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use anyhow::Context;
use consumers::scan_requested::ScanRequested;
use openwatch_common::queues::QueueName;
use openwatch_engine::rules::RuleSet;
use openwatch_mq::{BrokerHealth, ReconnectingPublisher, Router};
use openwatch_secrets::Cipher;
use openwatch_service_kit::{CancellationToken, ServiceConfig, ServiceSpec, runtime};

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
    let scan = config::ScanConfig::from_env()?;
    let _telemetry = openwatch_telemetry::init(SPEC.name)?;
    let cipher = Cipher::from_config(&scan.master_key, &scan.previous_master_keys)
        .map_err(|e| anyhow::anyhow!("OPENWATCH_MASTER_KEY / OPENWATCH_MASTER_KEY_PREVIOUS: {e}"))?;
    let rules = load_rules(&scan)?;
    let slots = slots::ScanSlots::new(config.worker.as_ref().map_or(1, |w| w.concurrency));

    let publisher = Arc::new(ReconnectingPublisher::new(config.broker.clone(), BrokerHealth::new()));
    let stop_publisher = CancellationToken::new();
    let maintainer = tokio::spawn({
        let (publisher, stop) = (Arc::clone(&publisher), stop_publisher.clone());
        async move { publisher.maintain(stop).await }
    });
    let (rules, cipher, scan) = (Arc::new(rules), Arc::new(cipher), Arc::new(scan));
    let result = runtime::run(&SPEC, config, |resources| {
        let walk_schedule = walk_schedule::WalkSchedule::new(
            resources.redis.clone(),
            &scan.redis_key_prefix,
            scan.walk,
            scan.walk_interval,
        );
        Router::new().register(ScanRequested {
            pool: resources.pool.clone(),
            redis: resources.redis.clone(),
            walk_schedule,
            publisher,
            rules,
            cipher,
            config: scan,
            slots,
        })
    })
    .await;
    stop_publisher.cancel();
    maintainer.await.context("result publisher task")?;
    result
}

fn load_rules(scan: &config::ScanConfig) -> anyhow::Result<RuleSet> {
    let dir = &scan.rules_dir;
    let rules = RuleSet::load_dir(dir).map_err(|errors| {
        let listed: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
        anyhow::anyhow!(
            "OPENWATCH_RULES_DIR={}: {} error(s): {}",
            dir.display(),
            errors.len(),
            listed.join("; ")
        )
    })?;
    anyhow::ensure!(!rules.rules.is_empty(), "OPENWATCH_RULES_DIR={} holds no rule", dir.display());
    tracing::info!(rules = rules.rules.len(), rules.dir = %dir.display(), "rule corpus loaded");
    Ok(rules)
}
