//! `LocalTransport` against a real `/bin/sh`: output, exit status, the exec timeout and the
//! output cap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use openwatch_engine::transport::{ExecLimits, LocalTransport, TimeoutPhase, Transport, TransportError};

fn limits() -> ExecLimits {
    ExecLimits { exec_timeout: Duration::from_secs(20), ..ExecLimits::default() }
}

#[test]
fn returns_stdout_stderr_and_exit_status() {
    let out = LocalTransport::new().run_script("echo hello\necho oops >&2\nexit 3\n", &limits()).unwrap();
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_status, 3);
    assert!(!out.truncated);
    assert_eq!(LocalTransport::new().target(), "local");
}

#[test]
fn a_large_script_and_large_output_do_not_stall() {
    // 2.6 MB of script on stdin while 2 MB come back on stdout and 200 kB on stderr.
    let mut script = String::from("head -c 200000 /dev/zero >&2\nhead -c 2000000 /dev/zero | tr '\\0' a\n");
    for i in 0..200_000 {
        script.push_str(&format!(": line {i}\n"));
    }
    script.push_str("echo end\n");
    let out = LocalTransport::new().run_script(&script, &limits()).unwrap();
    assert_eq!(out.stdout.len(), 2_000_000 + 4);
    assert!(out.stdout.ends_with(b"aend\n"));
    assert_eq!(out.stderr.len(), openwatch_engine::transport::MAX_STDERR_BYTES);
    assert_eq!(out.exit_status, 0);
}

#[test]
fn timeout_kills_the_whole_process_tree() {
    let pid_file = std::env::temp_dir().join(format!("openwatch-local-timeout-{}", std::process::id()));
    let script = format!("sleep 30 &\necho $! > {}\nwait\n", pid_file.display());
    let limits = ExecLimits { exec_timeout: Duration::from_secs(1), ..ExecLimits::default() };
    let started = Instant::now();
    let err = LocalTransport::new().run_script(&script, &limits).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(
        matches!(err, TransportError::Timeout { phase: TimeoutPhase::Exec, .. }),
        "unexpected error: {err:?}"
    );
    assert_eq!(err.code(), "timeout");

    let pid = std::fs::read_to_string(&pid_file).unwrap();
    std::fs::remove_file(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // Gone, or at most a zombie waiting to be reaped: the background `sleep` did not survive.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s) if s.rsplit(')').next().unwrap().trim_start().starts_with('Z') => break,
            Ok(s) => assert!(Instant::now() < deadline, "sleep still running: {s}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn output_beyond_the_cap_is_truncated() {
    let limits = ExecLimits { max_output_bytes: 1000, ..limits() };
    let started = Instant::now();
    let out = LocalTransport::new().run_script("yes openwatch\n", &limits).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.starts_with(b"openwatch\nopenwatch\n"));
    assert_eq!(out.require_complete(&limits).unwrap_err().code(), "output_too_large");
}

#[test]
fn output_exactly_at_the_cap_is_complete() {
    let limits = ExecLimits { max_output_bytes: 1000, ..limits() };
    let out = LocalTransport::new().run_script("head -c 1000 /dev/zero\n", &limits).unwrap();
    assert!(!out.truncated);
    assert_eq!(out.stdout.len(), 1000);
}

#[test]
fn a_command_shared_by_two_checks_runs_once_and_both_get_its_section() {
    use std::collections::BTreeSet;

    use openwatch_engine::facts::script::{self, ScriptOptions};
    use openwatch_engine::facts::{Probe, parse};

    let command = "cat /proc/sys/kernel/ostype".to_owned();
    let probes = BTreeSet::from([
        Probe::Command { id: "r#0".into(), command: command.clone() },
        Probe::Command { id: "r#1".into(), command },
    ]);
    let nonce = script::new_nonce();
    let text = script::build(&probes, &nonce, &ScriptOptions::default());
    let out = LocalTransport::new().run_script(&text, &limits()).unwrap();
    let facts = parse::parse(&String::from_utf8_lossy(&out.stdout), &nonce, Vec::new()).unwrap();
    let first = facts.section("cmd:r#0").expect("the section that ran");
    assert_eq!(first.output, "Linux\n");
    assert_eq!(first.exit_code, Some(0));
    assert_eq!(facts.section("cmd:r#1"), Some(first));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("BEGIN cmd:").count(), 1);
}
