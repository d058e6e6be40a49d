//! The `openwatch` command as a user runs it: a local scan of this machine, the corpus
//! lint, and readable errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn openwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openwatch"))
        .args(args)
        .env("OPENWATCH_RULES_DIR", PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules"))
        .output()
        .unwrap()
}

#[test]
fn a_local_scan_reports_every_rule_with_evidence_as_json() {
    let output = openwatch(&["scan", "--local", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
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
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("OpenWatch scan of local"), "{text}");
    assert!(text.contains("score"), "{text}");
}

#[test]
fn bad_input_gets_a_readable_error_and_exit_status_1() {
    let no_target = openwatch(&["scan"]);
    assert_eq!(no_target.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_target.stderr).contains("--local or --target"));

    let bad_target = openwatch(&["scan", "--target", "nohost", "--key", "/nonexistent"]);
    assert_eq!(bad_target.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_target.stderr).contains("user@host"));

    let missing_dir = openwatch(&["rules", "lint", "--rules", "/nonexistent/rules"]);
    assert_eq!(missing_dir.status.code(), Some(1));
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
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
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
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("host_key_mismatch"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_dir_all(&key_dir).unwrap();
}
