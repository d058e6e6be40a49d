//! The blocking side of a scan: the engine over [`SshTransport`], run on a
//! `spawn_blocking` thread (libssh2 is blocking), and the stable failure codes of its errors.
//!
//! * [`probe_host_key`] learns the key a host presents without authenticating: strict
//!   checking with no accepted key stops every connection right after the key exchange, so
//!   on first contact the key is recorded (trusted or pending) **before** any credential is
//!   sent, and a revoked key is never sent a credential either.
//! * [`scan`] runs one scan and reports its phases (`collecting` when the one SSH
//!   round trip starts, `evaluating` when its output is in) through a channel the async side
//!   turns into progress writes.
//! * [`failure_code`] maps an engine error to the `failure_reason` of `ScanCompletedV1`.

use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{self as engine, ScanError, ScanOptions, ScanReport};
use openwatch_engine::transport::{
    ExecLimits, ExecOutput, HostKeyInfo, HostKeyPolicy, SshTarget, SshTransport, Transport, TransportError,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::progress::Phase;

/// The key `target` presents, learnt without sending the credential. Errors are the
/// connection's own (unreachable, handshake timeout, …).
pub fn probe_host_key(mut target: SshTarget, limits: &ExecLimits) -> Result<HostKeyInfo, TransportError> {
    target.host_key_policy = HostKeyPolicy::Strict { known: Vec::new() };
    let mut transport = SshTransport::new(target);
    match transport.run_script("exit 0", limits) {
        Err(TransportError::HostKeyUnknown { .. }) => transport
            .observed_host_key()
            .ok_or_else(|| TransportError::Protocol("the host key was refused but not recorded".into())),
        Err(other) => Err(other),
        Ok(_) => Err(TransportError::Protocol("strict checking without a known key accepted a host".into())),
    }
}

/// [`SshTransport`] reporting when the collection round trip starts and ends.
struct Phased {
    inner: SshTransport,
    events: UnboundedSender<Phase>,
}

impl Transport for Phased {
    fn run_script(&mut self, script: &str, limits: &ExecLimits) -> Result<ExecOutput, TransportError> {
        // A closed receiver only means nobody shows progress any more.
        let _ = self.events.send(Phase::Collecting);
        let output = self.inner.run_script(script, limits);
        if output.is_ok() {
            let _ = self.events.send(Phase::Evaluating);
        }
        output
    }

    fn target(&self) -> String {
        self.inner.target()
    }
}

/// One scan of `target` with `rules`; also returns the host key presented (to record a
/// mismatching key for an operator to review).
pub fn scan(
    rules: &RuleSet,
    target: SshTarget,
    options: &ScanOptions,
    events: UnboundedSender<Phase>,
) -> (Result<ScanReport, ScanError>, Option<HostKeyInfo>) {
    let mut transport = Phased { inner: SshTransport::new(target), events };
    let result = engine::scan(rules, &mut transport, options);
    (result, transport.inner.observed_host_key())
}

/// How many rules a scan with this framework filter evaluates (one result each): the same
/// selection as the engine's.
pub fn candidate_rules(rules: &RuleSet, framework: Option<&str>) -> usize {
    rules.rules.values().filter(|r| framework.is_none_or(|f| r.file.references.contains_key(f))).count()
}

/// The ids of the rules a scan with this framework filter evaluates that read the
/// filesystem walk.
pub fn walk_rules(rules: &RuleSet, framework: Option<&str>) -> std::collections::HashSet<String> {
    rules
        .rules
        .values()
        .filter(|r| framework.is_none_or(|f| r.file.references.contains_key(f)) && r.needs_walk())
        .map(|r| r.file.id.clone())
        .collect()
}

/// The stable `failure_reason` of a failed scan.
pub fn failure_code(error: &ScanError) -> &'static str {
    match error {
        ScanError::Transport(error) => transport_failure_code(error),
        ScanError::Output(_) => "script_failed",
    }
}

/// The stable `failure_reason` of a transport error.
pub fn transport_failure_code(error: &TransportError) -> &'static str {
    match error {
        TransportError::Unreachable { .. } => "connect_failed",
        TransportError::HostKeyMismatch { .. } => "host_key_mismatch",
        TransportError::HostKeyUnknown { .. } => "host_key_unknown",
        TransportError::AuthFailed { .. } => "auth_failed",
        TransportError::Timeout { .. } => "timeout",
        TransportError::OutputTooLarge { .. } => "output_too_large",
        TransportError::Protocol(_) => "ssh_error",
        TransportError::Local(_) => "internal_error",
    }
}

#[cfg(test)]
mod tests {
    use openwatch_engine::transport::TimeoutPhase;

    use super::*;

    #[test]
    fn failure_codes_are_the_documented_ones() {
        let target = || "h:22".to_owned();
        let cases = [
            (TransportError::Unreachable { target: target(), reason: "refused".into() }, "connect_failed"),
            (
                TransportError::HostKeyMismatch {
                    target: target(),
                    expected: vec![],
                    actual: "SHA256:x".into(),
                },
                "host_key_mismatch",
            ),
            (
                TransportError::HostKeyUnknown { target: target(), actual: "SHA256:x".into() },
                "host_key_unknown",
            ),
            (
                TransportError::AuthFailed { target: target(), username: "u".into(), reason: "no".into() },
                "auth_failed",
            ),
            (TransportError::Timeout { target: target(), phase: TimeoutPhase::Exec, limit_ms: 1 }, "timeout"),
            (TransportError::OutputTooLarge { limit_bytes: 1 }, "output_too_large"),
            (TransportError::Protocol("x".into()), "ssh_error"),
            (TransportError::Local("x".into()), "internal_error"),
        ];
        for (error, code) in cases {
            assert_eq!(failure_code(&ScanError::Transport(error)), code);
        }
        assert_eq!(failure_code(&ScanError::Output("cut short".into())), "script_failed");
    }
}
