//! One scan of one host: build the script for the candidate rules, run it once through
//! a [`Transport`], parse, select the rules for the detected platform, evaluate, score.

use std::time::{Duration, Instant};

use openwatch_common::messages::v1::RuleResultV1;
use serde::Serialize;

use crate::eval::{self, Score};
use crate::facts::script::{self, ScriptOptions};
use crate::facts::{Probe, parse};
use crate::platform::Platform;
use crate::rules::RuleSet;
use crate::transport::{ExecLimits, ExecTimings, Transport, TransportError};

/// What to scan for, and the limits of a scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Only rules mapped to this framework (and its variable values).
    pub framework: Option<String>,
    /// Limits baked into the collection script.
    pub script: ScriptOptions,
    /// Transport limits (timeouts, output size).
    pub limits: ExecLimits,
    /// Run the filesystem walk when a selected rule needs it (default true). When false
    /// the walk is not collected and walk rules are `not_applicable` ("filesystem walk
    /// disabled (--no-walk)").
    pub walk: bool,
}

impl Default for ScanOptions {
    /// Every framework, default script and transport limits, walk enabled.
    fn default() -> Self {
        Self { framework: None, script: ScriptOptions::default(), limits: ExecLimits::default(), walk: true }
    }
}

/// Why a scan produced no results. A scan either completes or fails as a whole: partial
/// output never becomes results.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Running the script failed (unreachable, authentication, host key, timeout, …).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The output was not the collection script's (wrong shell, cut short).
    #[error("unusable collection output: {0}")]
    Output(String),
}

impl ScanError {
    /// Stable code for storage and APIs (`host_key_mismatch`, `unreachable`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ScanError::Transport(error) => error.code(),
            ScanError::Output(_) => "bad_output",
        }
    }
}

/// `message` with the first line of the target's standard error, when there is one: it
/// says why a script produced nothing (`sudo: not found`, `sudo: a password is required`).
fn with_stderr(message: String, stderr: &str) -> String {
    match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!("{message} (stderr: {})", line.chars().take(200).collect::<String>()),
        None => message,
    }
}

/// Where the time of a scan went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScanTimings {
    /// Transport phases.
    pub connect_ms: f64,
    /// Authentication.
    pub auth_ms: f64,
    /// Remote execution of the script (including transfer).
    pub exec_ms: f64,
    /// Parsing and evaluation on this side.
    pub evaluate_ms: f64,
}

/// The outcome of a scan.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The detected platform.
    pub platform: Option<Platform>,
    /// Whether the script ran as root.
    pub privileged: bool,
    /// One result per candidate rule.
    pub results: Vec<RuleResultV1>,
    /// Tallies and scores.
    pub score: Score,
    /// Timings.
    pub timings: ScanTimings,
    /// Size of the script sent.
    pub script_bytes: usize,
    /// Size of the output received.
    pub output_bytes: usize,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Scans through `transport` with the rules of `rules`.
pub fn scan(
    rules: &RuleSet,
    transport: &mut dyn Transport,
    options: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let framework = options.framework.as_deref();
    let candidates: Vec<_> = rules
        .rules
        .values()
        .filter(|r| framework.is_none_or(|f| r.file.references.contains_key(f)))
        .collect();
    let mut probes = eval::probes_for(candidates.iter().copied(), framework);
    if !options.walk {
        probes.remove(&Probe::FilesystemWalk);
    }
    let nonce = script::new_nonce();
    let text = script::build(&probes, &nonce, &options.script);
    let output = transport.run_script(&text, &options.limits)?.require_complete(&options.limits)?;
    let started = Instant::now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stat_requested = probes
        .iter()
        .filter_map(|p| if let Probe::Stat(path) = p { Some(path.clone()) } else { None })
        .collect();
    let mut facts = parse::parse(&stdout, &nonce, stat_requested)
        .map_err(|e| ScanError::Output(with_stderr(e.to_string(), &output.stderr)))?;
    facts.walk_disabled = !options.walk;
    if facts.section("id").is_none() {
        return Err(ScanError::Output("the identity section is missing: output cut short".into()));
    }
    let results = eval::evaluate(candidates.iter().copied(), framework, &facts);
    let score = eval::score(&results);
    let ExecTimings { connect, auth, exec } = output.timings;
    Ok(ScanReport {
        platform: facts.platform.clone(),
        privileged: facts.privileged(),
        results,
        score,
        timings: ScanTimings {
            connect_ms: ms(connect),
            auth_ms: ms(auth),
            exec_ms: ms(exec),
            evaluate_ms: ms(started.elapsed()),
        },
        script_bytes: text.len(),
        output_bytes: output.stdout.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_output_names_the_first_stderr_line() {
        assert_eq!(
            with_stderr("no sections".into(), "\n  sh: 1: sudo: not found\nmore\n"),
            "no sections (stderr: sh: 1: sudo: not found)"
        );
        assert_eq!(with_stderr("no sections".into(), " \n"), "no sections");
        assert_eq!(with_stderr("x".into(), &"é".repeat(500)).chars().count(), "x (stderr: )".len() + 200);
    }
}
