//! [`SshTransport`]: one SSH connection per run, one exec of `sh -s` with the script on stdin.
//!
//! Steps, each bounded by [`ExecLimits`]:
//! 1. TCP connect to every resolved address in turn (`connect_timeout` each), with
//!    `TCP_NODELAY` (libssh2 does not set it; without it every exec pays ~40 ms of Nagle).
//! 2. SSH handshake (`connect_timeout` per wait), then the host key is checked against the
//!    [`HostKeyPolicy`] *before* any credential is sent.
//! 3. Authentication (`auth_timeout` per wait): password, or a private key held in memory
//!    (`libssh2_userauth_publickey_frommemory`) — the key never touches the disk.
//! 4. One session channel, `exec("sh -s")` (`sudo -n sh -s` with sudo); the script goes to
//!    stdin while stdout and stderr are read, all non-blocking in one loop so no direction
//!    can stall another; then EOF, close and the exit status. The whole step is bounded by
//!    `exec_timeout`; stdout is capped at `max_output_bytes`.
//!
//! libssh2's own timeout bounds each blocking wait of steps 2 and 3, not their total; both
//! are a handful of round trips, so the bound is close to the total.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use secrecy::{ExposeSecret, SecretString};
use ssh2::{BlockDirections, Channel, ErrorCode, HashType, Session};

use super::{
    BoundedStderr, ExecLimits, ExecOutput, ExecTimings, HostKeyInfo, HostKeyPolicy, TimeoutPhase, Transport,
    TransportError, push_capped,
};

// libssh2 error codes (libssh2.h) this module tells apart.
const LIBSSH2_ERROR_BANNER_RECV: i32 = -2;
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_PASSWORD_EXPIRED: i32 = -15;
const LIBSSH2_ERROR_FILE: i32 = -16;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// How to log in.
#[derive(Debug, Clone)]
pub enum SshAuth {
    /// Password authentication.
    Password(SecretString),
    /// Public key authentication with a private key held in memory (OpenSSH or PEM format).
    /// The key is handed to libssh2 from memory and never written to disk.
    PrivateKey {
        /// The private key text (`-----BEGIN OPENSSH PRIVATE KEY-----…`).
        key_pem: SecretString,
        /// The passphrase, when the key is encrypted.
        passphrase: Option<SecretString>,
    },
}

/// A host to scan over SSH, and how to trust it and log in.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (22 by default on hosts).
    pub port: u16,
    /// The user to log in as.
    pub username: String,
    /// The credential.
    pub auth: SshAuth,
    /// Which host keys to accept.
    pub host_key_policy: HostKeyPolicy,
    /// Run the script through `sudo -n` (never prompting), for facts only root can read.
    pub use_sudo: bool,
}

impl SshTarget {
    /// `host:port`, with brackets around an IPv6 literal.
    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Runs scripts on one host over SSH: a new connection per [`Transport::run_script`].
#[derive(Debug)]
pub struct SshTransport {
    target: SshTarget,
    observed: Option<HostKeyInfo>,
}

impl SshTransport {
    /// A transport for `target`. Nothing connects until [`Transport::run_script`].
    pub fn new(target: SshTarget) -> SshTransport {
        SshTransport { target, observed: None }
    }

    /// The host key presented on the last connection that got that far (also when the key
    /// was refused), so the caller can record a key accepted on first use or show an
    /// operator the key of a mismatch.
    pub fn observed_host_key(&self) -> Option<HostKeyInfo> {
        self.observed.clone()
    }

    fn connect_tcp(&self, limits: &ExecLimits) -> Result<TcpStream, TransportError> {
        let unreachable =
            |reason: String| TransportError::Unreachable { target: self.target.address(), reason };
        let addrs = (self.target.host.as_str(), self.target.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve the host name: {e}")))?;
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, limits.connect_timeout) {
                Ok(stream) => {
                    stream
                        .set_nodelay(true)
                        .map_err(|e| TransportError::Local(format!("cannot set TCP_NODELAY: {e}")))?;
                    return Ok(stream);
                }
                Err(e) => last_error = Some(format!("{addr}: {e}")),
            }
        }
        Err(unreachable(last_error.unwrap_or_else(|| "the host name has no address".to_owned())))
    }

    /// TCP connect, handshake and host key check.
    fn open_session(&mut self, limits: &ExecLimits) -> Result<(Session, TcpStream), TransportError> {
        let stream = self.connect_tcp(limits)?;
        let poll_handle = stream
            .try_clone()
            .map_err(|e| TransportError::Local(format!("cannot duplicate the socket: {e}")))?;
        let mut session = Session::new()
            .map_err(|e| TransportError::Local(format!("cannot create an SSH session: {e}")))?;
        session.set_tcp_stream(stream);
        session.set_timeout(timeout_ms(limits.connect_timeout));
        session.handshake().map_err(|e| self.handshake_error(&e, limits))?;

        let (blob, _) = session
            .host_key()
            .ok_or_else(|| TransportError::Protocol("the server sent no host key".into()))?;
        let digest = session
            .host_key_hash(HashType::Sha256)
            .ok_or_else(|| TransportError::Protocol("cannot hash the host key".into()))?;
        let observed = HostKeyInfo::from_blob_and_digest(blob, digest);
        let verdict = self.target.host_key_policy.check(&self.target.address(), &observed);
        self.observed = Some(observed);
        verdict?;
        Ok((session, poll_handle))
    }

    fn handshake_error(&self, e: &ssh2::Error, limits: &ExecLimits) -> TransportError {
        match session_code(e) {
            Some(LIBSSH2_ERROR_TIMEOUT) => TransportError::Timeout {
                target: self.target.address(),
                phase: TimeoutPhase::Handshake,
                limit_ms: limits.connect_timeout.as_millis(),
            },
            Some(
                LIBSSH2_ERROR_BANNER_RECV
                | LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_RECV,
            ) => TransportError::Unreachable {
                target: self.target.address(),
                reason: format!("the connection closed during the SSH handshake: {}", e.message()),
            },
            _ => TransportError::Protocol(format!("SSH handshake failed: {}", e.message())),
        }
    }

    fn authenticate(&self, session: &Session, limits: &ExecLimits) -> Result<(), TransportError> {
        session.set_timeout(timeout_ms(limits.auth_timeout));
        let username = self.target.username.as_str();
        let result = match &self.target.auth {
            SshAuth::Password(password) => session.userauth_password(username, password.expose_secret()),
            SshAuth::PrivateKey { key_pem, passphrase } => session.userauth_pubkey_memory(
                username,
                None,
                key_pem.expose_secret(),
                passphrase.as_ref().map(|p| p.expose_secret()),
            ),
        };
        let failed = |reason: String| TransportError::AuthFailed {
            target: self.target.address(),
            username: username.to_owned(),
            reason,
        };
        match result {
            Ok(()) if session.authenticated() => Ok(()),
            Ok(()) => Err(failed("the server asks for further authentication".to_owned())),
            Err(e) => Err(match session_code(&e) {
                Some(LIBSSH2_ERROR_TIMEOUT) => TransportError::Timeout {
                    target: self.target.address(),
                    phase: TimeoutPhase::Auth,
                    limit_ms: limits.auth_timeout.as_millis(),
                },
                Some(
                    LIBSSH2_ERROR_SOCKET_SEND | LIBSSH2_ERROR_SOCKET_DISCONNECT | LIBSSH2_ERROR_SOCKET_RECV,
                ) => TransportError::Protocol(format!(
                    "the connection broke during authentication: {}",
                    e.message()
                )),
                Some(LIBSSH2_ERROR_AUTHENTICATION_FAILED | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) => {
                    failed("the server refused the credential".to_owned())
                }
                Some(LIBSSH2_ERROR_FILE) => failed(
                    "the private key could not be read (wrong passphrase or unsupported format)".to_owned(),
                ),
                Some(LIBSSH2_ERROR_PASSWORD_EXPIRED) => failed("the password has expired".to_owned()),
                // libssh2's messages are fixed strings, never the secret.
                _ => failed(e.message().to_owned()),
            }),
        }
    }

    fn exec(
        &self,
        session: &Session,
        socket: &TcpStream,
        script: &str,
        limits: &ExecLimits,
    ) -> Result<Captured, TransportError> {
        let deadline = Instant::now() + limits.exec_timeout;
        let io = Io { session, socket, deadline };
        let result = io.run(script, self.target.use_sudo, limits.max_output_bytes);
        result.map_err(|e| match e {
            ExecFailure::Timeout => TransportError::Timeout {
                target: self.target.address(),
                phase: TimeoutPhase::Exec,
                limit_ms: limits.exec_timeout.as_millis(),
            },
            ExecFailure::Ssh(context, message) => TransportError::Protocol(format!("{context}: {message}")),
        })
    }
}

impl Transport for SshTransport {
    fn run_script(&mut self, script: &str, limits: &ExecLimits) -> Result<ExecOutput, TransportError> {
        let started = Instant::now();
        let (session, socket) = self.open_session(limits)?;
        let connected = Instant::now();
        self.authenticate(&session, limits)?;
        let authenticated = Instant::now();
        let captured = self.exec(&session, &socket, script, limits);
        let finished = Instant::now();
        // Best effort: a polite goodbye, bounded; the socket closes on drop either way.
        session.set_blocking(true);
        session.set_timeout(100);
        let _goodbye = session.disconnect(None, "scan finished", None);
        let captured = captured?;
        Ok(ExecOutput {
            stdout: captured.stdout,
            stderr: captured.stderr.into_string(),
            exit_status: captured.exit_status,
            truncated: captured.truncated,
            timings: ExecTimings {
                connect: connected - started,
                auth: authenticated - connected,
                exec: finished - authenticated,
            },
        })
    }

    fn target(&self) -> String {
        format!("{}@{}", self.target.username, self.target.address())
    }
}

/// Output of the exec step.
struct Captured {
    stdout: Vec<u8>,
    stderr: BoundedStderr,
    exit_status: i32,
    truncated: bool,
}

enum ExecFailure {
    Timeout,
    /// What failed, and libssh2's message.
    Ssh(&'static str, String),
}

/// The non-blocking exec loop: one session, its socket (for waiting) and the deadline.
struct Io<'a> {
    session: &'a Session,
    socket: &'a TcpStream,
    deadline: Instant,
}

impl Io<'_> {
    fn run(&self, script: &str, use_sudo: bool, max_output_bytes: usize) -> Result<Captured, ExecFailure> {
        self.session.set_blocking(false);
        let mut channel = self.retry("cannot open a session channel", || self.session.channel_session())?;
        let command = if use_sudo { "sudo -n sh -s" } else { "sh -s" };
        self.retry("the server refused to run the command", || channel.exec(command))?;

        let script = script.as_bytes();
        let mut written = 0;
        let mut stdin_open = true;
        let (mut stdout_open, mut stderr_open) = (true, true);
        let mut stdout = Vec::new();
        let mut stderr = BoundedStderr::default();
        let mut buf = vec![0u8; 32 * 1024];
        while stdout_open || stderr_open {
            let mut progress = false;
            if stdin_open {
                if written < script.len() {
                    match channel.write(&script[written..]) {
                        Ok(n) => {
                            written += n;
                            progress |= n > 0;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        // The command stopped reading (it exited early): its output and exit
                        // status tell why; keep reading them.
                        Err(_) => stdin_open = false,
                    }
                }
                if stdin_open && written == script.len() {
                    match channel.send_eof() {
                        Ok(()) => {
                            stdin_open = false;
                            progress = true;
                        }
                        Err(e) if is_eagain(&e) => {}
                        Err(_) => stdin_open = false,
                    }
                }
            }
            if stdout_open {
                match channel.read(&mut buf) {
                    Ok(0) => stdout_open = false,
                    Ok(n) => {
                        progress = true;
                        if push_capped(&mut stdout, &buf[..n], max_output_bytes) {
                            // Abandon the command: closing the channel makes sshd close its
                            // pipes, and the remote script dies of SIGPIPE on its next write.
                            let _closed = self.retry("cannot close the channel", || channel.close());
                            return Ok(Captured { stdout, stderr, exit_status: -1, truncated: true });
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(ExecFailure::Ssh("reading stdout failed", e.to_string())),
                }
            }
            if stderr_open {
                match channel.stderr().read(&mut buf) {
                    Ok(0) => stderr_open = false,
                    Ok(n) => {
                        progress = true;
                        stderr.push(&buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(ExecFailure::Ssh("reading stderr failed", e.to_string())),
                }
            }
            // Reading one stream can pull the other's packets (or the EOF) off the socket
            // into libssh2's queue: wait for the socket only when nothing is queued.
            if !progress && channel.read_window().available == 0 && !channel.eof() {
                self.wait()?;
            } else if !progress && Instant::now() >= self.deadline {
                return Err(ExecFailure::Timeout);
            }
        }
        self.retry("cannot close the channel", || channel.close())?;
        self.retry("the channel did not close", || channel.wait_close())?;
        let exit_status = exit_status(&channel)?;
        Ok(Captured { stdout, stderr, exit_status, truncated: false })
    }

    /// Repeats a non-blocking libssh2 call until it stops saying "would block", waiting for
    /// the socket in between, until the deadline.
    fn retry<T>(
        &self,
        context: &'static str,
        mut op: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, ExecFailure> {
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if is_eagain(&e) => self.wait()?,
                Err(e) => return Err(ExecFailure::Ssh(context, e.message().to_owned())),
            }
        }
    }

    /// Waits until the socket is ready in the direction libssh2 is blocked on (at most a
    /// short slice, so the deadline is checked often), or fails once the deadline passed.
    fn wait(&self) -> Result<(), ExecFailure> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(ExecFailure::Timeout);
        }
        let (flags, slice) = match self.session.block_directions() {
            BlockDirections::Inbound => (PollFlags::IN, Duration::from_millis(200)),
            BlockDirections::Outbound => (PollFlags::OUT, Duration::from_millis(200)),
            BlockDirections::Both => (PollFlags::IN | PollFlags::OUT, Duration::from_millis(200)),
            // Not blocked on the socket (data for another stream is pending): look again soon.
            BlockDirections::None => (PollFlags::IN, Duration::from_millis(1)),
        };
        let wait = (self.deadline - now).min(slice);
        let timeout = Timespec::try_from(wait).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 1_000_000 });
        let mut fds = [PollFd::new(self.socket, flags)];
        // EINTR or a socket error: the next libssh2 call reports the real problem.
        let _ready = rustix::event::poll(&mut fds, Some(&timeout));
        Ok(())
    }
}

/// The remote exit status; `-1` when the command died of a signal.
fn exit_status(channel: &Channel) -> Result<i32, ExecFailure> {
    let signal = channel
        .exit_signal()
        .map_err(|e| ExecFailure::Ssh("cannot read the exit signal", e.message().to_owned()))?
        .exit_signal;
    if signal.is_some() {
        return Ok(-1);
    }
    channel.exit_status().map_err(|e| ExecFailure::Ssh("cannot read the exit status", e.message().to_owned()))
}

fn session_code(e: &ssh2::Error) -> Option<i32> {
    match e.code() {
        ErrorCode::Session(code) => Some(code),
        ErrorCode::SFTP(_) => None,
    }
}

fn is_eagain(e: &ssh2::Error) -> bool {
    session_code(e) == Some(LIBSSH2_ERROR_EAGAIN)
}

/// libssh2 takes milliseconds, and 0 means "no timeout": never pass 0.
fn timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> SshTarget {
        SshTarget {
            host: host.to_owned(),
            port: 2222,
            username: "scan".to_owned(),
            auth: SshAuth::PrivateKey {
                key_pem: SecretString::from("-----BEGIN OPENSSH PRIVATE KEY-----secret"),
                passphrase: Some(SecretString::from("hunter2")),
            },
            host_key_policy: HostKeyPolicy::TrustOnFirstUse { known: vec![] },
            use_sudo: true,
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let shown = format!("{:?}", SshTransport::new(target("10.0.0.5")));
        assert!(!shown.contains("secret") && !shown.contains("hunter2"), "{shown}");
        let password = format!("{:?}", SshAuth::Password(SecretString::from("hunter2")));
        assert!(!password.contains("hunter2"), "{password}");
    }

    #[test]
    fn target_names_user_host_and_port() {
        assert_eq!(SshTransport::new(target("10.0.0.5")).target(), "scan@10.0.0.5:2222");
        assert_eq!(SshTransport::new(target("fd00::5")).target(), "scan@[fd00::5]:2222");
    }

    #[test]
    fn transports_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<SshTransport>();
        assert_send::<crate::transport::LocalTransport>();
    }

    #[test]
    fn libssh2_never_gets_a_zero_timeout() {
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(10)), 10_000);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
