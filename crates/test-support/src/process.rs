//! A service binary running as a child process, for end-to-end tests of startup,
//! `/health`, metrics and graceful shutdown.
//!
//! stdout and stderr go to one temporary file ([`ServiceProcess::output`]) so a test can
//! assert on log lines and failures show what the service said. The process is killed
//! when the handle is dropped; the log file is removed, except when the test is panicking
//! (its path is printed so the log can be read).
//!
//! Binaries come from the caller: `env!("CARGO_BIN_EXE_scan-worker")` in the service's
//! integration tests.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::http;

/// A running service binary.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    pid: u32,
    log_path: PathBuf,
    name: String,
}

impl ServiceProcess {
    /// Starts `bin_path` with the test's environment plus `envs`. Needs a Tokio runtime.
    pub fn spawn(bin_path: impl AsRef<Path>, envs: &[(&str, &str)]) -> ServiceProcess {
        Self::spawn_with_args(bin_path, &[], envs)
    }

    /// [`ServiceProcess::spawn`] with command line arguments.
    pub fn spawn_with_args(
        bin_path: impl AsRef<Path>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> ServiceProcess {
        let bin_path = bin_path.as_ref();
        let name =
            bin_path.file_name().map_or_else(|| "service".to_owned(), |n| n.to_string_lossy().into_owned());
        let log_path =
            std::env::temp_dir().join(format!("openwatch-{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let log = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&log_path)
            .expect("create process log file");
        let log_err = log.try_clone().expect("clone log file handle");
        let mut command = Command::new(bin_path);
        command
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin_path.display()));
        let pid = child.id().expect("a just spawned child has a pid");
        ServiceProcess { child, pid, log_path, name }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Waits until `GET /health` on `addr` answers 200, failing (with the last answer and
    /// the process output) after `timeout` or if the process exits first.
    pub async fn wait_healthy(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        self.wait_health(addr, timeout, |status| status == 200).await
    }

    /// Waits until `GET /health` on `addr` answers at all (200 or 503): the service is up,
    /// whatever the state of its dependencies.
    pub async fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        self.wait_health(addr, timeout, |status| status == 200 || status == 503).await
    }

    async fn wait_health(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        accept: impl Fn(u16) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.child.try_wait().context("poll child")? {
                bail!("{} exited with {status} before becoming ready; output:\n{}", self.name, self.output());
            }
            match http::get_with_timeout(addr, "/health", Duration::from_secs(3)).await {
                Ok(response) if accept(response.status) => return Ok(()),
                Ok(response) => last = format!("HTTP {}: {}", response.status, response.body),
                Err(err) => last = format!("{err:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready on {addr} after {timeout:?} (last: {last}); output:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM (via `kill -TERM <pid>`; this crate has no unsafe code).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed: {status}", self.pid);
    }

    /// Whether the process has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll child")
    }

    /// Waits for the process to exit; panics with its output after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for child"),
            Err(_) => {
                panic!("{} did not exit within {timeout:?}; output:\n{}", self.name, self.output())
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("{} output kept at {}", self.name, self.log_path.display());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_captured_and_sigterm_ends_the_process() {
        let mut process =
            spawn_sh("echo \"$GREETING out\"; echo err >&2; exec sleep 30", &[("GREETING", "hello")]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process.output().contains("err") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(process.output().contains("hello out"), "{}", process.output());
        assert!(process.output().contains("err"));
        assert!(process.try_status().is_none());
        process.sigterm();
        let status = process.wait_exit(Duration::from_secs(5)).await;
        assert!(!status.success());
        let path = process.log_path().to_owned();
        drop(process);
        assert!(!path.exists(), "log removed on drop");
    }

    #[tokio::test]
    async fn wait_healthy_fails_fast_when_the_process_exits() {
        let mut process = spawn_sh("echo boom; exit 3", &[]);
        let err = process
            .wait_healthy("127.0.0.1:9".parse().unwrap(), Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited") && err.contains("boom"), "{err}");
    }

    /// `sh -c script` as a stand-in service binary.
    fn spawn_sh(script: &str, envs: &[(&str, &str)]) -> ServiceProcess {
        ServiceProcess::spawn_with_args("/bin/sh", &["-c", script], envs)
    }
}
