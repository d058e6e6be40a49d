//! Fleet benchmark: N hosts (loopback sshd targets) scanned end to end through the queues —
//! api-gateway (request + outbox relay), W scan-worker processes, one result-processor.
//!
//! ```text
//! cargo build --release --bins
//! FLEET_HOSTS=200 FLEET_WORKERS=2 cargo bench -p openwatch-system-tests --bench fleet
//! ```
//!
//! Hosts are spread over 8 sshd instances on 127.0.0.81–88 (the host address need not be
//! unique), with one system-scope key credential authorised on all of them; the filesystem
//! walk is off. Prints scans/minute, CPU seconds per scan of the workers and of the
//! result-processor (from /proc), findings stored per second over the run, and peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use openwatch_system_tests::{Stack, binary};
use openwatch_test_support::service::RunningService;
use openwatch_test_support::ssh::{TestSshd, generate_client_key};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (user + system CPU seconds, peak RSS in MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the comm field: state is index 0, utime 11, stime 12.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let hosts = env_or("FLEET_HOSTS", 200);
    let worker_count = env_or("FLEET_WORKERS", 2);
    let concurrency = env_or("FLEET_CONCURRENCY", 4).to_string();
    let stack = Stack::gateway_only_with(&[("OPENWATCH_CONCURRENCY", concurrency.as_str())]).await;
    let processor = stack.harness.start_other_healthy(&binary("openwatch-result-processor")).await;
    let mut workers: Vec<RunningService> = Vec::new();
    for _ in 0..worker_count {
        workers.push(stack.harness.start_other_healthy(&binary("openwatch-scan-worker")).await);
    }

    let key = generate_client_key(None).await;
    let mut targets = Vec::new();
    for i in 0..8u8 {
        let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 81 + i)).await;
        sshd.authorize(&key.public_key);
        targets.push(sshd);
    }
    let (status, body) = stack
        .call(
            "POST",
            "/api/credentials",
            Some(json!({"name": "fleet", "scope": "system", "username": targets[0].username(),
                        "auth_method": "private_key", "private_key": key.private_key_pem})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for i in 0..hosts {
        let target = &targets[i % targets.len()];
        let (status, host) = stack
            .call(
                "POST",
                "/api/hosts",
                Some(json!({"name": format!("fleet-{i:04}"), "address": target.addr().ip().to_string(), "port": target.addr().port()})),
            )
            .await;
        assert_eq!(status, 201, "{host}");
        ids.push(host["id"].as_str().unwrap().to_owned());
    }

    let before_workers: Vec<f64> = workers.iter().map(|w| usage(w.process.pid()).0).collect();
    let before_processor = usage(processor.process.pid()).0;
    let started = Instant::now();
    let (status, requested) = stack.call("POST", "/api/scans", Some(json!({"host_ids": ids}))).await;
    assert_eq!(status, 202, "{requested}");
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (completed, failed) = loop {
        let (_, done) = stack.call("GET", "/api/scans?status=completed&limit=1", None).await;
        let (_, failed) = stack.call("GET", "/api/scans?status=failed&limit=1", None).await;
        let (c, f) = (done["total"].as_u64().unwrap_or(0), failed["total"].as_u64().unwrap_or(0));
        if (c + f) as usize >= hosts || Instant::now() > deadline {
            break (c, f);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let (_, posture) = stack.call("GET", "/api/compliance/posture", None).await;
    let findings: u64 = ["pass", "fail", "error", "not_applicable", "manual"]
        .iter()
        .map(|k| posture[*k].as_u64().unwrap_or(0))
        .sum::<u64>()
        + posture["excepted"].as_u64().unwrap_or(0);

    let worker_cpu: f64 =
        workers.iter().zip(&before_workers).map(|(w, b)| usage(w.process.pid()).0 - b).sum();
    let worker_rss = workers.iter().map(|w| usage(w.process.pid()).1).fold(0.0, f64::max);
    let (processor_cpu, processor_rss) = usage(processor.process.pid());
    let processor_cpu = processor_cpu - before_processor;
    let scans = completed.max(1) as f64;
    println!(
        "fleet: {hosts} hosts, {worker_count} workers × concurrency {concurrency}, 8 loopback sshd targets"
    );
    println!(
        "  completed {completed}, failed {failed} in {wall:.1} s = {:.0} scans/minute",
        completed as f64 * 60.0 / wall
    );
    println!(
        "  scan-worker CPU {:.3} s per scan (all workers {worker_cpu:.1} s), peak RSS {worker_rss:.0} MiB per worker",
        worker_cpu / scans
    );
    println!(
        "  result-processor CPU {:.3} s per scan, peak RSS {processor_rss:.0} MiB",
        processor_cpu / scans
    );
    println!(
        "  findings (host rule states) {findings}, {:.0} findings/s over the run",
        findings as f64 / wall
    );
}
