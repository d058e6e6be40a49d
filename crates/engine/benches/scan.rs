//! Scan benchmark (a bench binary, not a timed test): full-corpus scans of this machine
//! over SSH to a private loopback sshd, and many concurrent scans from one process.
//!
//! `cargo bench -p openwatch-engine --bench scan [-- --concurrency 50 --runs 10]`
//! Results go to `docs/PERFORMANCE.md` by hand, with the command line used.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{ScanOptions, ScanReport, scan};
use openwatch_engine::transport::{HostKeyPolicy, SshAuth, SshTarget, SshTransport};
use openwatch_test_support::ssh::TestSshd;
use secrecy::SecretString;

/// CPU time of the calling thread (ns), from `/proc/thread-self/schedstat`.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

/// Peak resident memory of the process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn target(sshd: &TestSshd) -> SshTarget {
    SshTarget {
        host: sshd.addr().ip().to_string(),
        port: sshd.addr().port(),
        username: sshd.username().to_owned(),
        auth: SshAuth::PrivateKey {
            key_pem: SecretString::from(sshd.client_private_key_pem()),
            passphrase: None,
        },
        host_key_policy: HostKeyPolicy::Strict { known: vec![sshd.host_key_fingerprint()] },
        use_sudo: false,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runs = arg("--runs", 10);
    let concurrency = arg("--concurrency", 50);
    let rules_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let rules = RuleSet::load_dir(&rules_dir).unwrap_or_else(|e| panic!("{e:?}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sshd = runtime.block_on(TestSshd::start(Ipv4Addr::new(127, 0, 0, 1)));
    // The ≤ 1 s goal is for the corpus without walk rules; the walk is measured below.
    let options = ScanOptions { walk: false, ..ScanOptions::default() };

    println!(
        "corpus: {} rules; target: {} (private sshd, key auth, strict host key)",
        rules.rules.len(),
        sshd.addr()
    );
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last: Option<ScanReport> = None;
    for _ in 0..runs {
        let mut transport = SshTransport::new(target(&sshd));
        let (started, cpu) = (Instant::now(), thread_cpu());
        let report = scan(&rules, &mut transport, &options).unwrap();
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
        cpus.push((thread_cpu() - cpu).as_secs_f64() * 1000.0);
        last = Some(report);
    }
    let report = last.unwrap();
    println!(
        "sequential ({runs} runs): wall median {:.0} ms (min {:.0}, max {:.0}); scanning-thread CPU median {:.1} ms",
        median(walls.clone()),
        walls.iter().copied().fold(f64::INFINITY, f64::min),
        walls.iter().copied().fold(0.0, f64::max),
        median(cpus)
    );
    println!(
        "last run split: connect {:.1} ms, auth {:.1} ms, remote execution {:.1} ms, parse+evaluate {:.1} ms; script {} B, output {} B; {} results",
        report.timings.connect_ms,
        report.timings.auth_ms,
        report.timings.exec_ms,
        report.timings.evaluate_ms,
        report.script_bytes,
        report.output_bytes,
        report.results.len()
    );

    let walk_runs = arg("--walk-runs", 3);
    if walk_runs > 0 {
        let with_walk = ScanOptions::default();
        // Interleaved, so both medians see the same machine state (page cache, load).
        let (mut walls, mut finds) = (Vec::new(), Vec::new());
        for _ in 0..walk_runs {
            let started = Instant::now();
            scan(&rules, &mut SshTransport::new(target(&sshd)), &with_walk).unwrap();
            walls.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            let find = std::process::Command::new("sh")
                .args(["-c", "find / -xdev > /dev/null 2>&1"])
                .status()
                .unwrap();
            assert!(find.code().is_some(), "plain find killed: {find}");
            finds.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let (wall, find) = (median(walls), median(finds));
        println!(
            "with the filesystem walk ({walk_runs} runs): wall median {wall:.0} ms; one plain `find / -xdev` here: \
             median {find:.0} ms; goal 1 s + find = {:.0} ms: {}",
            1000.0 + find,
            if wall <= 1000.0 + find { "met" } else { "MISSED" }
        );
    }

    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let (rules, options, target) = (&rules, &options, target(&sshd));
            scope.spawn(move || {
                let mut transport = SshTransport::new(target);
                scan(rules, &mut transport, options).unwrap();
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "concurrent: {concurrency} scans in {elapsed:.2} s = {:.1} hosts/s; peak RSS of the scanning process {} MiB",
        concurrency as f64 / elapsed,
        peak_rss_kib() / 1024
    );
}
