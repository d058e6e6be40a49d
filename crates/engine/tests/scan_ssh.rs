//! The engine scanning this machine for real over OpenSSH (a private loopback sshd):
//! as root, as an unprivileged user (root-only facts become `error: requires privilege`,
//! never a different verdict), as that user with `sudo -n` (the same verdicts as root),
//! and failing cleanly — with no partial results — on a wrong password or a dead port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use openwatch_common::domain::FindingStatus;
use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{ScanError, ScanOptions, scan};
use openwatch_engine::transport::{HostKeyPolicy, SshAuth, SshTarget, SshTransport, TransportError};
use openwatch_test_support::ssh::{TestSshd, scan_user};
use secrecy::SecretString;

fn corpus() -> RuleSet {
    RuleSet::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")).unwrap()
}

fn target(sshd: &TestSshd, username: &str, auth: SshAuth, use_sudo: bool) -> SshTarget {
    SshTarget {
        host: sshd.addr().ip().to_string(),
        port: sshd.addr().port(),
        username: username.to_owned(),
        auth,
        host_key_policy: HostKeyPolicy::Strict { known: vec![sshd.host_key_fingerprint()] },
        use_sudo,
    }
}

fn key(sshd: &TestSshd) -> SshAuth {
    SshAuth::PrivateKey { key_pem: SecretString::from(sshd.client_private_key_pem()), passphrase: None }
}

fn verdicts(rules: &RuleSet, target: SshTarget) -> BTreeMap<String, (FindingStatus, Option<String>)> {
    let report = scan(rules, &mut SshTransport::new(target), &ScanOptions::default()).unwrap();
    report.results.into_iter().map(|r| (r.rule_id, (r.status, r.reason))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unprivileged_scans_report_errors_not_fails_and_sudo_restores_root_verdicts() {
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 51)).await;
    let user = scan_user();
    let rules = corpus();
    let (as_root, unprivileged, with_sudo) = tokio::task::spawn_blocking({
        let root_target = target(&sshd, sshd.username(), key(&sshd), false);
        let user_target =
            target(&sshd, user.name, SshAuth::Password(SecretString::from(user.password.to_owned())), false);
        let sudo_target = target(&sshd, user.name, key(&sshd), true);
        move || (verdicts(&rules, root_target), verdicts(&rules, user_target), verdicts(&rules, sudo_target))
    })
    .await
    .unwrap();

    // The walk sees the whole machine, where other tests create and delete files (some
    // world-writable or unowned on purpose) while these scans run: walk rules must be decided
    // with sudo as they are as root, but their pass or fail is compared only for the rest.
    let walk_rules: Vec<String> =
        corpus().rules.values().filter(|r| r.needs_walk()).map(|r| r.file.id.clone()).collect();
    let decided = |s: &FindingStatus| matches!(s, FindingStatus::Pass | FindingStatus::Fail);
    for id in &walk_rules {
        assert!(
            decided(&with_sudo[id].0) && decided(&as_root[id].0),
            "{id}: {:?} / {:?}",
            with_sudo[id],
            as_root[id]
        );
    }
    let comparable = |verdicts: &BTreeMap<String, (FindingStatus, Option<String>)>| {
        verdicts
            .iter()
            .filter(|(id, _)| !walk_rules.contains(id))
            .map(|(id, (s, _))| (id.clone(), *s))
            .collect::<Vec<_>>()
    };
    assert_eq!(comparable(&with_sudo), comparable(&as_root), "sudo gives the root verdicts");
    let mut degraded = 0;
    for (id, (root_status, _)) in &as_root {
        let (status, reason) = &unprivileged[id];
        if status == root_status {
            continue;
        }
        degraded += 1;
        assert_eq!(*status, FindingStatus::Error, "{id}: {root_status} as root but {status} unprivileged");
        let reason = reason.as_deref().unwrap_or_default();
        assert!(reason.contains("requires privilege"), "{id}: unprivileged error reason `{reason}`");
    }
    assert!(
        degraded > 0
            && unprivileged.get("sshd_disable_root_login").is_some_and(|(s, _)| *s == FindingStatus::Error),
        "root-only facts (sshd -T) must be errors without privilege"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_a_dead_port_fails_the_scan_without_results() {
    let sshd = TestSshd::start(Ipv4Addr::new(127, 0, 0, 52)).await;
    let user = scan_user();
    let rules = corpus();
    let wrong =
        target(&sshd, user.name, SshAuth::Password(SecretString::from("not-the-password".to_owned())), false);
    let mut dead = target(&sshd, user.name, key(&sshd), false);
    dead.port = {
        let probe = std::net::TcpListener::bind("127.0.0.52:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (auth, unreachable) = tokio::task::spawn_blocking(move || {
        let options = ScanOptions::default();
        (
            scan(&rules, &mut SshTransport::new(wrong), &options),
            scan(&rules, &mut SshTransport::new(dead), &options),
        )
    })
    .await
    .unwrap();
    let auth = auth.unwrap_err();
    assert!(matches!(auth, ScanError::Transport(TransportError::AuthFailed { .. })), "{auth}");
    assert_eq!(auth.code(), "auth_failed");
    assert!(!auth.to_string().contains("not-the-password"), "no secret in the message: {auth}");
    let unreachable = unreachable.unwrap_err();
    assert_eq!(unreachable.code(), "unreachable", "{unreachable}");
}
