//! The `openwatch` command as a user runs it: a local scan of this machine, the corpus
//! lint, and readable errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

/// Exit status 0 without failing rules, 1 with: consistent with the report.
fn assert_scan_exit(output: &Output, report: &Value) {
    let failures = report["score"]["overall"]["fail"].as_u64().unwrap();
    let expected = if failures > 0 { 1 } else { 0 };
    assert_eq!(output.status.code(), Some(expected), "{}", String::from_utf8_lossy(&output.stderr));
}

fn openwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openwatch"))
        .args(args)
        .env("OPENWATCH_RULES", corpus())
        .output()
        .unwrap()
}

#[test]
fn a_local_scan_reports_every_rule_with_evidence_as_json() {
    let output = openwatch(&["scan", "--local", "--format", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_scan_exit(&output, &report);
    let lint = openwatch(&["rules", "lint"]);
    assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stderr));
    let results = report["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert_eq!(report["platform"]["id"], "debian", "this machine is Debian");
    for result in results {
        let status = result["status"].as_str().unwrap();
        assert!(["pass", "fail", "error", "not_applicable", "manual"].contains(&status), "{result}");
        assert!(result["evidence"]["source"].as_str().is_some_and(|s| !s.is_empty()), "{result}");
        if status == "error" || status == "not_applicable" {
            assert!(result["reason"].as_str().is_some_and(|r| !r.is_empty()), "no reason: {result}");
        }
    }
    let tally = &report["score"]["overall"];
    let counted: u64 = ["pass", "fail", "error", "not_applicable", "manual"]
        .iter()
        .map(|k| tally[k].as_u64().unwrap())
        .sum();
    assert_eq!(counted, results.len() as u64);
}

#[test]
fn the_text_report_shows_scores_and_failures_with_evidence() {
    let output = openwatch(&["scan", "--local"]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("OpenWatch scan of local"), "{text}");
    assert!(text.contains("score"), "{text}");
}

#[test]
fn bad_input_gets_a_readable_error_and_exit_status_2() {
    let no_target = openwatch(&["scan"]);
    assert_eq!(no_target.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_target.stderr).contains("--local or --target"));

    let bad_target = openwatch(&["scan", "--target", "nohost", "--key", "/nonexistent"]);
    assert_eq!(bad_target.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_target.stderr).contains("user@host"));

    let missing_dir = openwatch(&["rules", "lint", "--rules", "/nonexistent/rules"]);
    assert_eq!(missing_dir.status.code(), Some(2));

    let unknown_flag = openwatch(&["scan", "--local", "--formatt", "json"]);
    assert_eq!(unknown_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_dir.stderr).contains("/nonexistent/rules"));
}

/// The same machine scanned over SSH (loopback sshd, in-memory key) and locally gives the
/// same verdicts; a wrong host key refuses the scan with `host_key_mismatch`.
#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_scan_matches_the_local_scan_and_checks_the_host_key() {
    use openwatch_test_support::ssh::TestSshd;

    let sshd = TestSshd::start(std::net::Ipv4Addr::new(127, 0, 0, 41)).await;
    let key_dir = std::env::temp_dir().join(format!("openwatch-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&key_dir).unwrap();
    let key_path = key_dir.join("id_ed25519");
    std::fs::write(&key_path, sshd.client_private_key_pem()).unwrap();
    let target = format!("{}@{}", sshd.username(), sshd.addr());
    let key = key_path.to_str().unwrap().to_owned();
    let fingerprint = sshd.host_key_fingerprint();

    let remote = tokio::task::spawn_blocking({
        let (target, key, fingerprint) = (target.clone(), key.clone(), fingerprint.clone());
        move || {
            openwatch(&[
                "scan",
                "--target",
                &target,
                "--key",
                &key,
                "--known-host-key",
                &fingerprint,
                "--format",
                "json",
            ])
        }
    })
    .await
    .unwrap();
    let remote_report: Value = serde_json::from_slice(&remote.stdout).unwrap();
    assert_scan_exit(&remote, &remote_report);
    let local =
        tokio::task::spawn_blocking(|| openwatch(&["scan", "--local", "--format", "json"])).await.unwrap();
    let statuses = |output: &Output| -> Vec<(String, String)> {
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["rule_id"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(statuses(&remote), statuses(&local));

    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let refused = tokio::task::spawn_blocking(move || {
        openwatch(&["scan", "--target", &target, "--key", &key, "--known-host-key", &wrong])
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("host_key_mismatch"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_dir_all(&key_dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn host_keys_come_from_known_hosts_files_or_are_trusted_on_first_use() {
    use openwatch_test_support::ssh::TestSshd;

    let sshd = TestSshd::start(std::net::Ipv4Addr::new(127, 0, 0, 42)).await;
    let dir = std::env::temp_dir().join(format!("openwatch-cli-kh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("id_ed25519");
    std::fs::write(&key_path, sshd.client_private_key_pem()).unwrap();
    let target = format!("{}@{}", sshd.username(), sshd.addr());
    let key = key_path.to_str().unwrap().to_owned();
    let fingerprint = sshd.host_key_fingerprint();

    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || openwatch(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    };
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = ["scan", "--target", &target, "--key", &key].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Unknown key, strict by default: refused, and the message shows the fingerprint to pin.
    let unknown = run(base(&[])).await;
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("host_key_unknown") && stderr.contains(&fingerprint), "{stderr}");

    // Trust on first use: accepted and the fingerprint printed.
    let tofu = run(base(&["--trust-on-first-use"])).await;
    assert!(matches!(tofu.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&tofu.stderr));
    assert!(String::from_utf8_lossy(&tofu.stderr).contains(&fingerprint));

    // A known_hosts line for [127.0.0.42]:port with the real public key is accepted.
    let public_key = std::fs::read_to_string(sshd.host_public_key_path()).unwrap();
    let mut fields = public_key.split_whitespace();
    let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("[{}]:{} {kind} {blob}\n", sshd.addr().ip(), sshd.addr().port()))
        .unwrap();
    let known = run(base(&["--known-hosts", known_hosts.to_str().unwrap()])).await;
    assert!(matches!(known.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&known.stderr));

    // JUnit output to a file.
    let junit_path = dir.join("report.xml");
    let junit = run(base(&[
        "--known-host-key",
        &fingerprint,
        "--format",
        "junit",
        "--out",
        junit_path.to_str().unwrap(),
    ]))
    .await;
    assert!(matches!(junit.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&junit.stderr));
    let xml = std::fs::read_to_string(&junit_path).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("<testsuite") && xml.contains("<testcase"), "{xml}");
    assert_eq!(
        xml.matches("<testcase").count(),
        xml.split("tests=\"").nth(1).unwrap().split('"').next().unwrap().parse::<usize>().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rules_can_be_listed_shown_and_selected_by_glob() {
    let list = openwatch(&["rules", "list"]);
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("accounts_uid0_only_root"));
    let show = openwatch(&["rules", "show", "accounts_uid0_only_root"]);
    assert!(show.status.success());
    assert!(String::from_utf8_lossy(&show.stdout).contains("uid0_only_root"));
    let missing = openwatch(&["rules", "show", "no_such_rule"]);
    assert_eq!(missing.status.code(), Some(2));
    let glob = format!("{}/accounts/*.yml", corpus().display());
    let only_accounts = openwatch(&["scan", "--local", "--format", "json", "--rules", &glob]);
    let report: Value = serde_json::from_slice(&only_accounts.stdout).unwrap();
    assert!(report["results"].as_array().unwrap().iter().all(|r| {
        r["rule_id"].as_str().unwrap().starts_with("accounts")
            || std::fs::read_to_string(format!(
                "{}/accounts/{}.yml",
                corpus().display(),
                r["rule_id"].as_str().unwrap()
            ))
            .is_ok()
    }));
}
