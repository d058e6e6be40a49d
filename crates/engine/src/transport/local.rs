//! [`LocalTransport`]: the script runs on this machine with `/bin/sh -s`.
//!
//! Used by tests and by the CLI scanning its own host. Same contract as SSH: the script on
//! stdin, stdout capped, stderr bounded, the whole run bounded by
//! [`ExecLimits::exec_timeout`].
//!
//! The shell runs in a process group of its own, so a timeout or the output cap ends the
//! whole tree it started (a `sleep` or `find` in the script), not only the shell. With
//! `sudo`, the commands run as root and an unprivileged caller cannot signal them: the
//! caller must then run as root for the kill to reach them.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{
    BoundedStderr, ExecLimits, ExecOutput, ExecTimings, TimeoutPhase, Transport, TransportError, push_capped,
};

/// Runs scripts on this machine.
#[derive(Debug, Clone, Default)]
pub struct LocalTransport {
    use_sudo: bool,
}

impl LocalTransport {
    /// A transport running scripts as the current user.
    pub fn new() -> LocalTransport {
        LocalTransport { use_sudo: false }
    }

    /// A transport running scripts through `sudo -n` (never prompting: without a sudo rule
    /// that allows it the script fails fast with sudo's message on stderr).
    pub fn with_sudo() -> LocalTransport {
        LocalTransport { use_sudo: true }
    }
}

/// What the pipe reader threads send to the run loop.
enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    StdoutEof,
    StderrEof,
    ReadError(String),
}

impl Transport for LocalTransport {
    fn run_script(&mut self, script: &str, limits: &ExecLimits) -> Result<ExecOutput, TransportError> {
        let started = Instant::now();
        let deadline = started + limits.exec_timeout;
        let mut command = if self.use_sudo {
            let mut c = Command::new("sudo");
            c.args(["-n", "/bin/sh", "-s"]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.arg("-s");
            c
        };
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child =
            command.spawn().map_err(|e| TransportError::Local(format!("cannot start the shell: {e}")))?;
        let group = ProcessGroup::of(&child);

        let (tx, rx) = mpsc::channel();
        spawn_io_threads(&mut child, script, tx)?;
        let collected = collect(&rx, deadline, limits.max_output_bytes);
        let (stdout, stderr, truncated) = match collected {
            Collected::Done { stdout, stderr } => (stdout, stderr, false),
            Collected::Truncated { stdout, stderr } => {
                group.kill();
                let _reaped = child.wait();
                return Ok(ExecOutput {
                    stdout,
                    stderr: stderr.into_string(),
                    exit_status: -1,
                    truncated: true,
                    timings: ExecTimings { exec: started.elapsed(), ..ExecTimings::default() },
                });
            }
            Collected::TimedOut => {
                group.kill();
                let _reaped = child.wait();
                return Err(timeout(limits));
            }
            Collected::Failed(reason) => {
                group.kill();
                let _reaped = child.wait();
                return Err(TransportError::Local(reason));
            }
        };

        // Both pipes are closed; the shell is exiting. Still bounded: a script may close
        // its stdout and stderr and keep running.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    group.kill();
                    let _reaped = child.wait();
                    return Err(timeout(limits));
                }
                Ok(None) => thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    group.kill();
                    return Err(TransportError::Local(format!("cannot wait for the shell: {e}")));
                }
            }
        };
        Ok(ExecOutput {
            stdout,
            stderr: stderr.into_string(),
            exit_status: status.code().unwrap_or(-1),
            truncated,
            timings: ExecTimings { exec: started.elapsed(), ..ExecTimings::default() },
        })
    }

    fn target(&self) -> String {
        if self.use_sudo { "local (sudo)".to_owned() } else { "local".to_owned() }
    }
}

fn timeout(limits: &ExecLimits) -> TransportError {
    TransportError::Timeout {
        target: "local".to_owned(),
        phase: TimeoutPhase::Exec,
        limit_ms: limits.exec_timeout.as_millis(),
    }
}

/// The shell's process group (its pid, since it was started with `process_group(0)`).
struct ProcessGroup(Pid);

impl ProcessGroup {
    fn of(child: &Child) -> ProcessGroup {
        ProcessGroup(Pid::from_child(child))
    }

    /// SIGKILL to the whole group. Errors (the group is already gone, or holds processes
    /// we may not signal) leave nothing more to do.
    fn kill(&self) {
        let _gone = rustix::process::kill_process_group(self.0, Signal::KILL);
    }
}

/// Feeds the script to stdin and forwards stdout and stderr chunks to `tx`, each on its own
/// thread so no pipe can fill up and stall the others.
fn spawn_io_threads(child: &mut Child, script: &str, tx: mpsc::Sender<Chunk>) -> Result<(), TransportError> {
    let missing = || TransportError::Local("the shell's pipes are missing".to_owned());
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let script = script.as_bytes().to_vec();
    thread::spawn(move || {
        // A shell that exits before reading all of its script closes the pipe: not an
        // error of ours, its exit status tells.
        let _written = stdin.write_all(&script);
    });
    let tx_err = tx.clone();
    thread::spawn(move || forward(stdout, &tx, Chunk::Stdout, Chunk::StdoutEof));
    thread::spawn(move || forward(stderr, &tx_err, Chunk::Stderr, Chunk::StderrEof));
    Ok(())
}

fn forward(mut pipe: impl Read, tx: &mpsc::Sender<Chunk>, wrap: fn(Vec<u8>) -> Chunk, eof: Chunk) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let msg = match pipe.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(eof);
                return;
            }
            Ok(n) => wrap(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Chunk::ReadError(format!("cannot read the shell's output: {e}")));
                return;
            }
        };
        if tx.send(msg).is_err() {
            // The run loop gave up (timeout or cap); stop reading.
            return;
        }
    }
}

enum Collected {
    Done { stdout: Vec<u8>, stderr: BoundedStderr },
    Truncated { stdout: Vec<u8>, stderr: BoundedStderr },
    TimedOut,
    Failed(String),
}

fn collect(rx: &Receiver<Chunk>, deadline: Instant, max_output_bytes: usize) -> Collected {
    let mut stdout = Vec::new();
    let mut stderr = BoundedStderr::default();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Chunk::Stdout(data)) => {
                if push_capped(&mut stdout, &data, max_output_bytes) {
                    return Collected::Truncated { stdout, stderr };
                }
            }
            Ok(Chunk::Stderr(data)) => stderr.push(&data),
            Ok(Chunk::StdoutEof) => out_open = false,
            Ok(Chunk::StderrEof) => err_open = false,
            Ok(Chunk::ReadError(reason)) => return Collected::Failed(reason),
            Err(RecvTimeoutError::Timeout) => return Collected::TimedOut,
            Err(RecvTimeoutError::Disconnected) => {
                return Collected::Failed("the shell's output readers stopped".to_owned());
            }
        }
    }
    Collected::Done { stdout, stderr }
}
