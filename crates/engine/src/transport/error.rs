//! Why a script run failed, named for what the caller can do about it.
//!
//! Each variant has a stable snake_case [`TransportError::code`] that scan results and API
//! bodies carry. Messages name the target and the phase, never a password, key or
//! passphrase.

use std::fmt;

/// The phase of a run that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// SSH protocol handshake (banner, key exchange).
    Handshake,
    /// Authentication.
    Auth,
    /// Opening the channel, running the script and reading its output.
    Exec,
}

impl TimeoutPhase {
    /// Stable name for logs and results.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Handshake => "handshake",
            TimeoutPhase::Auth => "auth",
            TimeoutPhase::Exec => "exec",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed script run.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No TCP connection: the name does not resolve, the port is closed, or connecting
    /// timed out. Check the address, the network or the host's power; retrying later may help.
    #[error("{target} is unreachable: {reason}")]
    Unreachable {
        /// `host:port`.
        target: String,
        /// What went wrong (resolver or socket error).
        reason: String,
    },
    /// The host presented a key that matches none of the known fingerprints: the host was
    /// reinstalled, or someone is in the middle. An operator must confirm the new key.
    #[error("host key of {target} does not match: presented {actual}, expected one of {expected:?}")]
    HostKeyMismatch {
        /// `host:port`.
        target: String,
        /// The known fingerprints (`SHA256:…`).
        expected: Vec<String>,
        /// The presented fingerprint (`SHA256:…`).
        actual: String,
    },
    /// Strict host key checking is on and no key is known for the host. An operator must
    /// add the key (its fingerprint is given) or allow trust on first use.
    #[error("host key of {target} is unknown (presented {actual}); strict checking refuses it")]
    HostKeyUnknown {
        /// `host:port`.
        target: String,
        /// The presented fingerprint (`SHA256:…`), for the operator to confirm.
        actual: String,
    },
    /// The host refused the credential (wrong user, password or key, or the key could not
    /// be read with the given passphrase). Fix the credential.
    #[error("authentication as {username} on {target} failed: {reason}")]
    AuthFailed {
        /// `host:port`.
        target: String,
        /// The user name tried.
        username: String,
        /// What the server or the key parser said (never the secret itself).
        reason: String,
    },
    /// A phase ran past its limit in [`super::ExecLimits`]: a slow or stuck host.
    #[error("{phase} timed out after {limit_ms} ms on {target}")]
    Timeout {
        /// `host:port`, or `local`.
        target: String,
        /// The phase that timed out.
        phase: TimeoutPhase,
        /// The limit that applied, in milliseconds.
        limit_ms: u128,
    },
    /// The output went past [`super::ExecLimits::max_output_bytes`] and the caller needs it
    /// whole (see [`super::ExecOutput::require_complete`]). Raise the limit or collect less.
    #[error("script output exceeded {limit_bytes} bytes")]
    OutputTooLarge {
        /// The limit in bytes.
        limit_bytes: usize,
    },
    /// The SSH session broke or the server did something unexpected (channel refused,
    /// disconnect mid-run). Usually transient or a server configuration issue.
    #[error("SSH protocol error: {0}")]
    Protocol(String),
    /// Something failed on this machine (spawning the shell, reading pipes).
    #[error("local error: {0}")]
    Local(String),
}

impl TransportError {
    /// Stable snake_case code for results and API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Unreachable { .. } => "unreachable",
            TransportError::HostKeyMismatch { .. } => "host_key_mismatch",
            TransportError::HostKeyUnknown { .. } => "host_key_unknown",
            TransportError::AuthFailed { .. } => "auth_failed",
            TransportError::Timeout { .. } => "timeout",
            TransportError::OutputTooLarge { .. } => "output_too_large",
            TransportError::Protocol(_) => "protocol",
            TransportError::Local(_) => "local",
        }
    }

    /// Whether trying again later, unchanged, may succeed (network trouble, a slow host, a
    /// dropped session), as opposed to needing an operator (keys, credentials, limits).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable { .. } | TransportError::Timeout { .. } | TransportError::Protocol(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let e = TransportError::HostKeyMismatch {
            target: "h:22".into(),
            expected: vec!["SHA256:a".into()],
            actual: "SHA256:b".into(),
        };
        assert_eq!(e.code(), "host_key_mismatch");
        assert!(!e.is_transient());
        let t = TransportError::Timeout { target: "h:22".into(), phase: TimeoutPhase::Exec, limit_ms: 1000 };
        assert_eq!(t.code(), "timeout");
        assert_eq!(t.to_string(), "exec timed out after 1000 ms on h:22");
        assert!(t.is_transient());
    }
}
