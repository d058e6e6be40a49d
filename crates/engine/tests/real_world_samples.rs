//! Parsing real collection output captured from real hosts (`tests/samples/*.txt`): the
//! sections, files and stats come out as the host had them, and checks evaluate them
//! correctly — including comments, duplicate keys, drop-in directories, missing and
//! unreadable files.
//!
//! To capture a new sample on a host: `OPENWATCH_CAPTURE_SAMPLE=path cargo test -p
//! openwatch-engine --test real_world_samples capture -- --ignored` (then review it: it
//! contains the host's configuration).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use openwatch_engine::facts::script::{ScriptOptions, build};
use openwatch_engine::facts::{FileFact, Probe, parse::parse};
use openwatch_engine::platform::Family;
use openwatch_engine::transport::{ExecLimits, LocalTransport, Transport};

const SAMPLE_NONCE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn sample_probes() -> BTreeSet<Probe> {
    let mut probes: BTreeSet<Probe> = [
        Probe::SshdEffective,
        Probe::SysctlRuntime("net.ipv4.ip_forward".into()),
        Probe::Packages,
        Probe::SystemdUnitFiles,
        Probe::SystemdUnits,
        Probe::Mounts,
        Probe::LoadedModules,
        Probe::ModprobeConfig,
        Probe::AuditRules,
    ]
    .into();
    for path in [
        "/etc/login.defs",
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/*.conf",
        "/etc/sysctl.conf",
        "/etc/sysctl.d/*.conf",
        "/usr/lib/sysctl.d/*.conf",
        "/etc/pam.d/common-password",
        "/etc/passwd",
        "/etc/group",
        "/etc/security/pwquality.conf",
        "/etc/does-not-exist",
    ] {
        probes.insert(Probe::File(path.into()));
    }
    for path in ["/etc/passwd", "/etc/shadow", "/etc/ssh/ssh_host_*_key", "/etc/crontab", "/tmp"] {
        probes.insert(Probe::Stat(path.into()));
    }
    probes
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/samples").join(name))
        .unwrap()
}

#[test]
#[ignore = "captures a sample from this machine; run by hand"]
fn capture() {
    let path = std::env::var("OPENWATCH_CAPTURE_SAMPLE").expect("OPENWATCH_CAPTURE_SAMPLE=output path");
    let script = build(&sample_probes(), SAMPLE_NONCE, &ScriptOptions::default());
    let output = LocalTransport::new().run_script(&script, &ExecLimits::default()).unwrap();
    std::fs::write(path, output.stdout).unwrap();
}

#[test]
fn a_debian12_root_capture_parses_into_the_hosts_facts() {
    let stats: Vec<String> =
        ["/etc/passwd", "/etc/shadow", "/etc/ssh/ssh_host_*_key", "/etc/crontab", "/tmp"]
            .map(String::from)
            .to_vec();
    let facts = parse(&sample("debian12-root.txt"), SAMPLE_NONCE, stats).unwrap();
    let platform = facts.platform.as_ref().unwrap();
    assert_eq!((platform.family(), platform.version_id.as_str()), (Some(Family::Debian), "12"));
    assert!(facts.privileged());

    let sshd = facts.section("sshd").unwrap();
    assert_eq!(sshd.exit_code, Some(0));
    assert!(sshd.output.lines().any(|l| l.starts_with("permitrootlogin ")));
    assert!(sshd.output.lines().any(|l| l.starts_with("ciphers ")));

    let packages = facts.section("packages").unwrap();
    assert!(packages.output.starts_with("format=dpkg"));
    assert!(packages.output.lines().any(|l| l.contains("|openssh-server|")));

    let sysctl = facts.section("sysctl").unwrap();
    assert!(sysctl.output.lines().any(|l| l.starts_with("net.ipv4.ip_forward = ")));

    assert!(matches!(facts.files["/etc/login.defs"], FileFact::Content { .. }));
    assert_eq!(facts.files["/etc/does-not-exist"], FileFact::Missing);
    assert!(!facts.files.keys().any(|k| k.contains('*')), "unmatched globs are not files");
    let shadow = &facts.stats["/etc/shadow"];
    assert_eq!((shadow.owner.as_str(), shadow.mode), ("root", 0o640));
    assert!(facts.stats.keys().any(|k| k.starts_with("/etc/ssh/ssh_host_") && k.ends_with("_key")));
    assert_eq!(facts.stats["/tmp"].file_type, "directory");
}

#[test]
fn checks_evaluate_the_real_capture() {
    use openwatch_common::domain::FindingStatus;
    use openwatch_engine::checks::Check;

    let facts = parse(&sample("debian12-root.txt"), SAMPLE_NONCE, vec!["/etc/shadow".into()]).unwrap();
    let check = |yaml: &str| -> Check { serde_saphyr::from_str(yaml).unwrap() };
    // Debian's shipped login.defs: PASS_MAX_DAYS 99999, among many commented lines.
    let max_days =
        check("type: kv_config\npaths: [/etc/login.defs]\nkey: PASS_MAX_DAYS\nexpect: {max: 365}\n");
    let outcome = max_days.evaluate("r#0", &facts);
    assert_eq!(outcome.status, FindingStatus::Fail);
    assert_eq!(outcome.evidence.actual.as_deref(), Some("99999"));
    assert!(outcome.evidence.excerpt.contains("/etc/login.defs: PASS_MAX_DAYS"));
    let encrypt = check(
        "type: kv_config\npaths: [/etc/login.defs]\nkey: ENCRYPT_METHOD\nexpect: {one_of: [SHA512, YESCRYPT]}\n",
    );
    assert_eq!(encrypt.evaluate("r#0", &facts).status, FindingStatus::Pass);
    let shadow = check(
        "type: file_permissions\npath: /etc/shadow\nmax_mode: \"0640\"\nowner: [root]\ngroup: [root, shadow]\n",
    );
    assert_eq!(shadow.evaluate("r#0", &facts).status, FindingStatus::Pass);
    let ssh = check("type: package\nnames: [openssh-server]\nstate: installed\n");
    assert_eq!(ssh.evaluate("r#0", &facts).status, FindingStatus::Pass);
}
