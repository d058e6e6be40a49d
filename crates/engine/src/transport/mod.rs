//! Where the one fact-collection script of a scan runs, and how its output comes back.
//!
//! The engine builds **one** shell script per host and runs it in **one** exec (see
//! [`crate::facts`]). A [`Transport`] hides where that happens: over SSH ([`SshTransport`],
//! the product path) or on this machine ([`LocalTransport`], for tests and the CLI).
//!
//! Transports are blocking (`ssh2` is); async callers wrap [`Transport::run_script`] in
//! `tokio::task::spawn_blocking`. Every phase is bounded by [`ExecLimits`]: a scan never
//! hangs on a dead host and never buffers unbounded output from a misbehaving one.
//!
//! # Layout
//! * [`error`] — [`TransportError`], named for what the caller can do, with stable codes.
//! * [`host_key`] — host key fingerprints and the [`HostKeyPolicy`] check.
//! * [`local`] — [`LocalTransport`]: `/bin/sh -s` on this machine.
//! * [`ssh`] — [`SshTransport`]: one SSH connection, one exec of `sh -s`.

use std::time::Duration;

pub mod error;
pub mod host_key;
pub mod known_hosts;
pub mod local;
pub mod ssh;

pub use error::{TimeoutPhase, TransportError};
pub use host_key::{HostKeyInfo, HostKeyPolicy};
pub use local::LocalTransport;
pub use ssh::{SshAuth, SshTarget, SshTransport};

/// At most this much of the script's stderr is kept (the rest is read and dropped).
///
/// stderr is diagnostics for the operator, not facts; a bound keeps a noisy host from
/// bloating results.
pub const MAX_STDERR_BYTES: usize = 64 * 1024;

/// Bounds on one script run, so a dead or hostile host cannot stall or flood a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLimits {
    /// TCP connect (per resolved address) and SSH handshake, each.
    pub connect_timeout: Duration,
    /// SSH authentication.
    pub auth_timeout: Duration,
    /// The whole exec: opening the channel, sending the script, reading all output and the
    /// exit status. On expiry the run fails with [`TransportError::Timeout`].
    pub exec_timeout: Duration,
    /// Largest stdout kept. Beyond it reading stops, the remote command is abandoned and
    /// the output is returned with [`ExecOutput::truncated`] set.
    pub max_output_bytes: usize,
}

impl Default for ExecLimits {
    /// 10 s connect, 10 s auth, 120 s exec, 16 MiB of stdout.
    fn default() -> Self {
        ExecLimits {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            exec_timeout: Duration::from_secs(120),
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

/// How long each phase of a run took, for scan metrics and slow-host diagnosis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecTimings {
    /// TCP connect, SSH handshake and host key check (zero for local runs).
    pub connect: Duration,
    /// Authentication (zero for local runs).
    pub auth: Duration,
    /// From opening the channel (or spawning the shell) to the exit status.
    pub exec: Duration,
}

/// What one script run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The script's stdout, at most [`ExecLimits::max_output_bytes`] bytes. Raw bytes: file
    /// contents on a host need not be UTF-8, and the fact parser decides how to decode.
    pub stdout: Vec<u8>,
    /// The script's stderr, lossily decoded, at most [`MAX_STDERR_BYTES`] bytes of input.
    pub stderr: String,
    /// The exit status; `-1` when it is not known (output truncated, or the command was
    /// ended by a signal).
    pub exit_status: i32,
    /// `true` when stdout went past [`ExecLimits::max_output_bytes`] and was cut there.
    /// Facts after the cut are missing; see [`ExecOutput::require_complete`].
    pub truncated: bool,
    /// Phase timings.
    pub timings: ExecTimings,
}

impl ExecOutput {
    /// This output, or [`TransportError::OutputTooLarge`] when it was truncated: for callers
    /// that cannot use partial output.
    pub fn require_complete(self, limits: &ExecLimits) -> Result<ExecOutput, TransportError> {
        if self.truncated {
            Err(TransportError::OutputTooLarge { limit_bytes: limits.max_output_bytes })
        } else {
            Ok(self)
        }
    }
}

/// Somewhere a shell script can run: a remote host over SSH, or this machine.
pub trait Transport {
    /// Runs `script` with `sh -s` (the script on stdin) and returns its output.
    ///
    /// Blocking; every phase is bounded by `limits`. A non-zero exit status is *not* an
    /// error here: the script's own sections report what failed.
    fn run_script(&mut self, script: &str, limits: &ExecLimits) -> Result<ExecOutput, TransportError>;

    /// Where the script runs, for logs and evidence (e.g. `root@10.0.0.5:22`, `local`).
    /// Never contains a secret.
    fn target(&self) -> String;
}

/// Keeps the first `max` bytes of stderr and counts the rest as dropped.
#[derive(Debug, Default)]
pub(crate) struct BoundedStderr {
    buf: Vec<u8>,
}

impl BoundedStderr {
    /// Appends what still fits under [`MAX_STDERR_BYTES`].
    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = MAX_STDERR_BYTES.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The kept bytes, lossily decoded.
    pub(crate) fn into_string(self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Appends `data` to `stdout` up to `max` bytes; returns `true` when something was cut.
pub(crate) fn push_capped(stdout: &mut Vec<u8>, data: &[u8], max: usize) -> bool {
    let room = max.saturating_sub(stdout.len());
    if data.len() > room {
        stdout.extend_from_slice(&data[..room]);
        true
    } else {
        stdout.extend_from_slice(data);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_capped_cuts_at_the_limit() {
        let mut out = Vec::new();
        assert!(!push_capped(&mut out, b"abc", 5));
        assert!(!push_capped(&mut out, b"de", 5));
        assert!(push_capped(&mut out, b"f", 5));
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn stderr_is_bounded() {
        let mut err = BoundedStderr::default();
        err.push(&vec![b'x'; MAX_STDERR_BYTES - 1]);
        err.push(b"yz");
        let s = err.into_string();
        assert_eq!(s.len(), MAX_STDERR_BYTES);
        assert!(s.ends_with('y'));
    }

    #[test]
    fn truncated_output_is_an_error_when_completeness_is_required() {
        let limits = ExecLimits { max_output_bytes: 3, ..ExecLimits::default() };
        let out = ExecOutput {
            stdout: b"abc".to_vec(),
            stderr: String::new(),
            exit_status: -1,
            truncated: true,
            timings: ExecTimings::default(),
        };
        let err = out.require_complete(&limits).unwrap_err();
        assert_eq!(err.code(), "output_too_large");
    }
}
