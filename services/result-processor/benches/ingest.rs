//! Ingest benchmark: applies synthetic `ScanCompletedV1` messages of 300 results each
//! through `results::process_scan_result` (the whole per-message transaction the service
//! runs: findings, rule state, score, schedule, drift, alerts, snapshot) against a scratch
//! database, and prints findings per second.
//!
//! ```text
//! cargo bench -p openwatch-result-processor --bench ingest
//! BENCH_HOSTS=200 BENCH_CONCURRENCY=4 cargo bench -p openwatch-result-processor --bench ingest
//! ```
//!
//! Every host is scanned twice: a first scan (no previous state: no drift; rule alerts for
//! its critical/high failures) and a second one where 5 % of the rules flip (drift, alerts
//! raised and resolved). `BENCH_CONCURRENCY` messages are processed at once, each on its own
//! pooled connection, as the service does with `OPENWATCH_CONCURRENCY`. Needs the test
//! PostgreSQL (`OPENWATCH_TEST_DATABASE_URL`); the scratch database is dropped at the end.
//!
//! `BENCH_MODE=findings` runs only `scans::record_completed` (findings and scan status) in
//! each transaction: the baseline the rest of the processing adds to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use openwatch_common::domain::{FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{HostId, ScanId};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1, ScanCompletedV1};
use openwatch_db::queries::hosts::{self, NewHost};
use openwatch_db::queries::results::{self, ProcessOutcome, ResultPolicy};
use openwatch_db::queries::scans::{self, NewScan};
use openwatch_db::{AsyncConnection, DbError, Pool};
use openwatch_test_support::database::TestDatabase;
use tokio::sync::Mutex;

const RULES: usize = 300;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
}

/// Status of rule `i` in scan `round` (0 or 1): ~83 % pass, 10 % fail, the rest error,
/// not applicable or manual; in round 1, every 20th rule flips between pass and fail.
fn status(i: usize, round: usize) -> FindingStatus {
    let base = match i % 30 {
        0..=24 => FindingStatus::Pass,
        25..=27 => FindingStatus::Fail,
        28 => FindingStatus::NotApplicable,
        _ => FindingStatus::Error,
    };
    match (round, base) {
        (1, FindingStatus::Pass) if i.is_multiple_of(20) => FindingStatus::Fail,
        (1, FindingStatus::Fail) if i % 20 == 5 => FindingStatus::Pass,
        _ => base,
    }
}

fn message(scan: ScanId, host: HostId, round: usize) -> ScanCompletedV1 {
    let finished_at = Utc::now() - TimeDelta::hours(2) + TimeDelta::minutes(round as i64 * 30);
    let results = (0..RULES)
        .map(|i| RuleResultV1 {
            rule_id: format!("bench-rule-{i:03}"),
            status: status(i, round),
            severity: Severity::ALL[i % Severity::ALL.len()],
            reason: None,
            evidence: EvidenceV1 {
                source: format!("/etc/ssh/sshd_config.d/{i}.conf"),
                excerpt: "PermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no".into(),
                expected: Some("no".into()),
                actual: Some(if status(i, round) == FindingStatus::Pass { "no" } else { "yes" }.into()),
            },
            frameworks: [
                ("cis-debian12".to_owned(), vec![format!("5.2.{}", i % 40)]),
                ("stig-rhel9".to_owned(), vec![format!("V-{}", 250_000 + i)]),
            ]
            .into(),
            duration_us: 40,
        })
        .collect();
    ScanCompletedV1 {
        scan_id: scan,
        host_id: host,
        outcome: ScanStatus::Completed,
        started_at: finished_at - TimeDelta::seconds(3),
        finished_at,
        failure_reason: None,
        platform: None,
        results,
    }
}

/// Processes `messages` with `concurrency` workers; returns the wall time and the slowest
/// single message.
async fn run(pool: &Pool, messages: Vec<ScanCompletedV1>, concurrency: usize) -> (Duration, Duration) {
    let queue = Arc::new(Mutex::new(messages));
    let policy = ResultPolicy::default();
    let findings_only = std::env::var("BENCH_MODE").is_ok_and(|mode| mode == "findings");
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, pool) = (queue.clone(), pool.clone());
        workers.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            let mut slowest = Duration::ZERO;
            loop {
                let Some(message) = queue.lock().await.pop() else { break };
                let one = Instant::now();
                if findings_only {
                    conn.transaction::<_, DbError, _>(async |c| scans::record_completed(c, &message).await)
                        .await
                        .unwrap();
                } else {
                    let outcome = results::process_scan_result(&mut conn, &message, &policy).await.unwrap();
                    assert!(
                        matches!(outcome, ProcessOutcome::Processed(ref r) if r.findings == RULES && !r.stale)
                    );
                }
                slowest = slowest.max(one.elapsed());
            }
            slowest
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(worker) = workers.join_next().await {
        slowest = slowest.max(worker.unwrap());
    }
    (started.elapsed(), slowest)
}

#[tokio::main]
async fn main() {
    let hosts_n = env_usize("BENCH_HOSTS", 200);
    let concurrency = env_usize("BENCH_CONCURRENCY", 2);
    let db = TestDatabase::new().await;
    let pool = db.pool();

    // Setup (not timed): hosts and two queued scans each.
    let mut conn = pool.get().await.unwrap();
    let mut rounds: [Vec<ScanCompletedV1>; 2] = [Vec::new(), Vec::new()];
    for h in 0..hosts_n {
        let id = HostId::new();
        let host = NewHost {
            id,
            name: format!("bench-{h:05}"),
            address: "127.0.0.1".into(),
            port: 22,
            tags: vec![],
        };
        hosts::insert_host(&mut conn, host).await.unwrap();
        for (round, messages) in rounds.iter_mut().enumerate() {
            let scan = ScanId::new();
            let new_scan = NewScan {
                id: scan,
                host_id: id,
                trigger: ScanTrigger::Scheduled,
                framework: None,
                requested_by: None,
            };
            scans::insert_scan(&mut conn, &new_scan).await.unwrap();
            messages.push(message(scan, id, round));
        }
    }
    drop(conn);

    println!(
        "ingest: {hosts_n} hosts x 2 scans x {RULES} results, concurrency {concurrency}, database {}",
        db.name()
    );
    let mut total = (Duration::ZERO, 0_usize);
    for (round, messages) in rounds.into_iter().enumerate() {
        let count = messages.len();
        let (elapsed, slowest) = run(&pool, messages, concurrency).await;
        let findings = count * RULES;
        total = (total.0 + elapsed, total.1 + findings);
        println!(
            "  round {} ({}): {count} messages in {:.2} s = {:.0} messages/s, {:.0} findings/s (slowest message {:.1} ms)",
            round + 1,
            if round == 0 { "first scans" } else { "5 % of rules flip" },
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            findings as f64 / elapsed.as_secs_f64(),
            slowest.as_secs_f64() * 1e3,
        );
    }
    println!("  total: {:.0} findings/s", total.1 as f64 / total.0.as_secs_f64());
}
