//! `SshTransport` against a real private sshd per test (`TestSshd`, distinct 127.0.0.x
//! addresses): in-memory key auth, host key policies, auth failures, unreachable hosts,
//! the exec timeout and the output cap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use openwatch_engine::transport::{
    ExecLimits, HostKeyPolicy, SshAuth, SshTarget, SshTransport, TimeoutPhase, Transport, TransportError,
};
use openwatch_test_support::ssh::{TestSshd, generate_client_key};
use secrecy::SecretString;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn key_auth(pem: String) -> SshAuth {
    SshAuth::PrivateKey { key_pem: SecretString::from(pem), passphrase: None }
}

fn target(sshd: &TestSshd, auth: SshAuth, host_key_policy: HostKeyPolicy) -> SshTarget {
    SshTarget {
        host: sshd.addr().ip().to_string(),
        port: sshd.addr().port(),
        username: sshd.username().to_owned(),
        auth,
        host_key_policy,
        use_sudo: false,
    }
}

fn strict(sshd: &TestSshd) -> HostKeyPolicy {
    HostKeyPolicy::Strict { known: vec![sshd.host_key_fingerprint()] }
}

fn transport(sshd: &TestSshd) -> SshTransport {
    SshTransport::new(target(sshd, key_auth(sshd.client_private_key_pem()), strict(sshd)))
}

fn limits() -> ExecLimits {
    ExecLimits { exec_timeout: Duration::from_secs(30), ..ExecLimits::default() }
}

#[tokio::test]
async fn key_auth_from_memory_runs_the_script() {
    let sshd = TestSshd::start(ip(21)).await;
    let mut t = transport(&sshd);
    let out = t.run_script("echo hello\necho oops >&2\nexit 3\n", &limits()).unwrap();
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_status, 3);
    assert!(!out.truncated);
    assert!(out.timings.connect > Duration::ZERO && out.timings.auth > Duration::ZERO);
    assert!(out.timings.exec > Duration::ZERO);
    assert_eq!(t.target(), format!("{}@{}", sshd.username(), sshd.addr()));

    // The transport reconnects for every run.
    let again = t.run_script("printf '%s' \"$((6 * 7))\"", &limits()).unwrap();
    assert_eq!(again.stdout, b"42");
    assert_eq!(again.exit_status, 0);
}

#[tokio::test]
async fn strict_policy_with_the_right_fingerprint_connects() {
    let sshd = TestSshd::start(ip(22)).await;
    let policy =
        HostKeyPolicy::Strict { known: vec!["SHA256:not-this-one".into(), sshd.host_key_fingerprint()] };
    let mut t = SshTransport::new(target(&sshd, key_auth(sshd.client_private_key_pem()), policy));
    let out = t.run_script("true", &limits()).unwrap();
    assert_eq!(out.exit_status, 0);
    let observed = t.observed_host_key().unwrap();
    assert_eq!(observed.fingerprint_sha256, sshd.host_key_fingerprint());
    assert_eq!(observed.key_type, "ssh-ed25519");
}

#[tokio::test]
async fn strict_policy_with_a_wrong_fingerprint_is_a_mismatch() {
    let sshd = TestSshd::start(ip(23)).await;
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let policy = HostKeyPolicy::Strict { known: vec![wrong.clone()] };
    let mut t = SshTransport::new(target(&sshd, key_auth(sshd.client_private_key_pem()), policy));
    let err = t.run_script("true", &limits()).unwrap_err();
    match &err {
        TransportError::HostKeyMismatch { expected, actual, .. } => {
            assert_eq!(expected, &vec![wrong]);
            assert_eq!(actual, &sshd.host_key_fingerprint());
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    assert_eq!(err.code(), "host_key_mismatch");
    // The refused key is still reported, for the operator to compare.
    assert_eq!(t.observed_host_key().unwrap().fingerprint_sha256, sshd.host_key_fingerprint());
    // No credential was offered to a host that failed the key check.
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());

    let policy = HostKeyPolicy::Strict { known: vec![] };
    let mut t = SshTransport::new(target(&sshd, key_auth(sshd.client_private_key_pem()), policy));
    let err = t.run_script("true", &limits()).unwrap_err();
    assert_eq!(err.code(), "host_key_unknown", "{err:?}");
}

#[tokio::test]
async fn trust_on_first_use_accepts_and_reports_the_key() {
    let sshd = TestSshd::start(ip(24)).await;
    let policy = HostKeyPolicy::TrustOnFirstUse { known: vec![] };
    let mut t = SshTransport::new(target(&sshd, key_auth(sshd.client_private_key_pem()), policy));
    assert!(t.observed_host_key().is_none());
    let out = t.run_script("echo first", &limits()).unwrap();
    assert_eq!(out.stdout, b"first\n");
    let observed = t.observed_host_key().unwrap();
    assert_eq!(observed.fingerprint_sha256, sshd.host_key_fingerprint());
    assert_eq!(observed.key_type, "ssh-ed25519");

    // Once a key is known, trust on first use no longer accepts another one.
    let policy = HostKeyPolicy::TrustOnFirstUse { known: vec!["SHA256:someotherkey".into()] };
    let mut t = SshTransport::new(target(&sshd, key_auth(sshd.client_private_key_pem()), policy));
    assert_eq!(t.run_script("true", &limits()).unwrap_err().code(), "host_key_mismatch");
}

#[tokio::test]
async fn an_unauthorized_key_fails_authentication() {
    let sshd = TestSshd::start(ip(25)).await;
    let stranger = generate_client_key(None).await;
    let mut t = SshTransport::new(target(&sshd, key_auth(stranger.private_key_pem), strict(&sshd)));
    let err = t.run_script("true", &limits()).unwrap_err();
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err:?}");
    assert_eq!(err.code(), "auth_failed");
}

#[tokio::test]
async fn password_auth_refused_by_the_server_fails_authentication() {
    let sshd = TestSshd::start(ip(29)).await;
    let auth = SshAuth::Password(SecretString::from("hunter2-not-a-password"));
    let mut t = SshTransport::new(target(&sshd, auth, strict(&sshd)));
    let err = t.run_script("true", &limits()).unwrap_err();
    assert_eq!(err.code(), "auth_failed", "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "the message leaks the password: {err}");
}

#[tokio::test]
async fn an_encrypted_key_works_with_its_passphrase_only() {
    let sshd = TestSshd::start(ip(30)).await;
    let key = generate_client_key(Some("correct horse")).await;
    sshd.authorize(&key.public_key);
    let auth = |pass: &str| SshAuth::PrivateKey {
        key_pem: SecretString::from(key.private_key_pem.clone()),
        passphrase: Some(SecretString::from(pass.to_owned())),
    };
    let mut t = SshTransport::new(target(&sshd, auth("correct horse"), strict(&sshd)));
    assert_eq!(t.run_script("echo ok", &limits()).unwrap().stdout, b"ok\n");

    let mut t = SshTransport::new(target(&sshd, auth("wrong battery"), strict(&sshd)));
    let err = t.run_script("echo ok", &limits()).unwrap_err();
    assert_eq!(err.code(), "auth_failed", "{err:?}");
    assert!(!err.to_string().contains("battery"), "the message leaks the passphrase: {err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let addr = {
        let listener = TcpListener::bind((ip(26), 0)).unwrap();
        listener.local_addr().unwrap()
    };
    let pem = generate_client_key(None).await.private_key_pem;
    let mut t = SshTransport::new(SshTarget {
        host: addr.ip().to_string(),
        port: addr.port(),
        username: "nobody".into(),
        auth: key_auth(pem),
        host_key_policy: HostKeyPolicy::TrustOnFirstUse { known: vec![] },
        use_sudo: false,
    });
    let err = t.run_script("true", &limits()).unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.code(), "unreachable");
    assert!(t.observed_host_key().is_none());
}

#[tokio::test]
async fn an_unresolvable_name_is_unreachable() {
    let pem = generate_client_key(None).await.private_key_pem;
    let mut t = SshTransport::new(SshTarget {
        host: "no-such-host.invalid".into(),
        port: 22,
        username: "nobody".into(),
        auth: key_auth(pem),
        host_key_policy: HostKeyPolicy::TrustOnFirstUse { known: vec![] },
        use_sudo: false,
    });
    assert_eq!(t.run_script("true", &limits()).unwrap_err().code(), "unreachable");
}

#[tokio::test]
async fn a_script_running_past_the_exec_timeout_times_out() {
    let sshd = TestSshd::start(ip(27)).await;
    let mut t = transport(&sshd);
    let limits = ExecLimits { exec_timeout: Duration::from_secs(1), ..ExecLimits::default() };
    let started = Instant::now();
    let err = t.run_script("sleep 30", &limits).unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(matches!(err, TransportError::Timeout { phase: TimeoutPhase::Exec, .. }), "{err:?}");
    assert_eq!(err.code(), "timeout");
}

#[tokio::test]
async fn output_beyond_the_cap_is_truncated() {
    let sshd = TestSshd::start(ip(28)).await;
    let mut t = transport(&sshd);
    let limits = ExecLimits { max_output_bytes: 1000, ..limits() };
    let started = Instant::now();
    let out = t.run_script("yes openwatch", &limits).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.starts_with(b"openwatch\nopenwatch\n"));
    assert_eq!(out.exit_status, -1);
    assert_eq!(out.require_complete(&limits).unwrap_err().code(), "output_too_large");
}

#[tokio::test]
async fn a_large_script_with_large_output_and_stderr_does_not_stall() {
    let sshd = TestSshd::start(ip(31)).await;
    let mut t = transport(&sshd);
    // 2.6 MB of script on stdin while 3 MB come back on stdout and 300 kB on stderr: more
    // than any SSH window, so every direction must keep moving.
    let mut script = String::from("head -c 300000 /dev/zero >&2\nhead -c 3000000 /dev/zero | tr '\\0' a\n");
    for i in 0..200_000 {
        script.push_str(&format!(": line {i}\n"));
    }
    script.push_str("echo end\nexit 7\n");
    let out = t.run_script(&script, &limits()).unwrap();
    assert_eq!(out.stdout.len(), 3_000_000 + 4);
    assert!(out.stdout.ends_with(b"aend\n"));
    assert_eq!(out.stderr.len(), openwatch_engine::transport::MAX_STDERR_BYTES);
    assert_eq!(out.exit_status, 7);
}
