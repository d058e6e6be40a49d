//! `ScanRequestedV1` → one scan of one host over SSH → `ScanCompletedV1` on `results`.
//!
//! Registered once and consumed from both `scans` (manual) and `compliance_scanning`
//! (scheduled); a manual request gets the next free scan slot first (see [`crate::slots`]).
//! For each request:
//! 1. **Start** ([`scan_runs::start_run`]): `queued | running → running`, attempt counted,
//!    lease set. A scan already `completed`, `failed` or `cancelled` is acked and nothing
//!    else happens (a redelivery, or a scan cancelled before it started); an unknown scan is
//!    a permanent error (dead-lettered).
//! 2. **Credential**: the host's own, its group's or the system default
//!    ([`credentials::resolve_for_host`]), opened with the master key in memory only (the
//!    associated data is the credential id). None: the scan fails `no_credential`; one that
//!    does not open: `credential_unreadable`.
//! 3. **Host key**: the host's trusted keys ([`known_hosts::trusted_keys_for_host`]). With
//!    none, the key the host presents is learnt first without authenticating
//!    ([`ssh::probe_host_key`]) and recorded: `tofu` records it trusted and the scan
//!    proceeds with exactly that key; `strict` records it `pending` and the scan fails
//!    `host_key_unknown`; a key an operator revoked fails `host_key_mismatch`. A host that
//!    presents a key other than its trusted ones fails `host_key_mismatch`, with no results,
//!    and the new key is recorded `pending` for an operator to approve.
//! 4. **Scan**: the engine on a blocking thread (one SSH exec, `sudo -n` unless the user is
//!    root or `OPENWATCH_SCAN_SUDO` says otherwise), restricted to the scan's framework.
//!    Any connection or authentication problem is a failed scan with its code
//!    (`connect_failed`, `auth_failed`, `timeout`, …), not a retry.
//! 5. **Still wanted?** The scan's status is read again: if it was cancelled (or otherwise
//!    finished) meanwhile, the request is acked and nothing is published.
//! 6. **Publish** `ScanCompletedV1` (every result with its evidence, or the failure reason)
//!    to `results`, confirmed by the broker, and only then ack.
//!
//! Progress goes to Redis at each phase ([`crate::progress`]). Database or broker trouble
//! is [`HandlerError::Transient`] (the request is retried, the scan runs again: it was not
//! published); a malformed request or an unknown scan is permanent. Secrets stay in
//! `SecretString`s and are never logged.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use openwatch_common::domain::{FindingStatus, ScanStatus};
use openwatch_common::messages::v1::{PlatformV1, ScanCompletedV1, ScanRequestedV1};
use openwatch_common::queues::QueueName;
use openwatch_db::Pool;
use openwatch_db::queries::credentials::{self, SealedCredential};
use openwatch_db::queries::known_hosts::{self, KnownHostStatus};
use openwatch_db::queries::scan_runs::{self, ScanRun, StartOutcome};
use openwatch_engine::facts::script::ScriptOptions;
use openwatch_engine::rules::RuleSet;
use openwatch_engine::scan::{ScanError, ScanOptions, ScanReport};
use openwatch_engine::transport::{HostKeyInfo, HostKeyPolicy, SshAuth, SshTarget, TransportError};
use openwatch_mq::{DeliveryInfo, Handler, HandlerError, ReconnectingPublisher};
use openwatch_secrets::{Cipher, CredentialSecret, SealedRef};
use openwatch_service_kit::handler_error;
use openwatch_telemetry::metrics as names;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{HostKeyMode, PUBLISH_WAIT, ScanConfig};
use crate::progress::{Phase, Progress};
use crate::slots::{Priority, ScanSlots};
use crate::ssh;
use crate::walk_schedule::WalkSchedule;

/// The `status` of progress while a scan runs.
const RUNNING: &str = "running";
/// How often a result waiting for the publisher's connection looks again.
const PUBLISHER_POLL: Duration = Duration::from_millis(250);

/// Runs scan requests. Cheap to share: everything heavy is behind an `Arc`.
pub struct ScanRequested {
    /// Database pool.
    pub pool: Pool,
    /// Redis, for progress (best effort).
    pub redis: Option<deadpool_redis::Pool>,
    /// When each host's filesystem walk is due.
    pub walk_schedule: WalkSchedule,
    /// Publishes results; kept connected by the process (see `main.rs`).
    pub publisher: Arc<ReconnectingPublisher>,
    /// The rule corpus, loaded once.
    pub rules: Arc<RuleSet>,
    /// Opens credentials (`OPENWATCH_MASTER_KEY`).
    pub cipher: Arc<Cipher>,
    /// Scan settings.
    pub config: Arc<ScanConfig>,
    /// At most `OPENWATCH_CONCURRENCY` scans at once, manual ones first.
    pub slots: Arc<ScanSlots>,
}

/// How a scan that ran ended.
enum Outcome {
    Completed(Box<ScanReport>),
    Failed(&'static str),
}

impl Handler<ScanRequestedV1> for ScanRequested {
    #[tracing::instrument(skip_all, fields(
        scan.id = %message.scan_id,
        host.id = %message.host_id,
        message.id = %delivery.message_id,
    ))]
    async fn handle(&self, message: ScanRequestedV1, delivery: &DeliveryInfo) -> Result<(), HandlerError> {
        let priority = if delivery.queue == QueueName::Scans { Priority::High } else { Priority::Low };
        let _slot = self.slots.acquire(priority).await;
        let Some(run) = self.start(&message).await? else { return Ok(()) };
        if run.host_id != message.host_id {
            warn!(scan.host_id = %run.host_id, "the request names another host than the scan row: scanning the row's");
        }
        let clock = Instant::now();
        // Walked within the interval: the walk rules are left out (their last results stay).
        let skip_walk = self.walk_schedule.skip(run.host_id).await;
        let left_out =
            if skip_walk { ssh::walk_rules(&self.rules, run.framework.as_deref()) } else { HashSet::new() };
        let rules_total = ssh::candidate_rules(&self.rules, run.framework.as_deref()) - left_out.len();
        let progress =
            Progress::new(self.redis.clone(), &self.config.redis_key_prefix, run.scan_id, rules_total);
        progress.set(RUNNING, Phase::Connecting, 0).await;

        let walk = self.config.walk && !skip_walk;
        let outcome = self.execute(&run, rules_total, &progress, walk).await?;
        if walk && matches!(outcome, Outcome::Completed(_)) {
            self.walk_schedule.walked(run.host_id).await;
        }
        let finished_at = Utc::now();
        if !self.still_wanted(&run).await? {
            progress.clear().await;
            record_metrics(&run, ScanStatus::Cancelled, clock, None);
            return Ok(());
        }
        let result = completed_message(&run, outcome, finished_at, &left_out);
        progress.set(RUNNING, Phase::Publishing, result.results.len()).await;
        self.publish(&result).await?;
        progress.set(result.outcome.as_str(), Phase::Publishing, result.results.len()).await;
        record_metrics(&run, result.outcome, clock, Some(&result));
        info!(
            scan.outcome = result.outcome.as_str(),
            scan.failure_reason = result.failure_reason.as_deref(),
            results = result.results.len(),
            attempt = run.attempts,
            duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            "scan finished and published"
        );
        Ok(())
    }
}

impl ScanRequested {
    /// Step 1: the run, or `None` when there is nothing to do.
    async fn start(&self, message: &ScanRequestedV1) -> Result<Option<ScanRun>, HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        match scan_runs::start_run(&mut conn, message.scan_id, Utc::now(), self.config.lease)
            .await
            .map_err(handler_error)?
        {
            StartOutcome::Started(run) => Ok(Some(run)),
            StartOutcome::AlreadyFinished(status) => {
                info!(
                    scan.status = status.as_str(),
                    "scan already finished: request acknowledged, nothing to do"
                );
                Ok(None)
            }
            StartOutcome::UnknownScan => {
                Err(HandlerError::Permanent(format!("scan {} does not exist", message.scan_id)))
            }
        }
    }

    /// Steps 2–4: credential, host key, scan. `Err` only for trouble worth a retry.
    async fn execute(
        &self,
        run: &ScanRun,
        rules_total: usize,
        progress: &Progress,
        walk: bool,
    ) -> Result<Outcome, HandlerError> {
        if rules_total == 0 {
            return Ok(Outcome::Failed("unknown_framework"));
        }
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        let Some(sealed) =
            credentials::resolve_for_host(&mut conn, run.host_id).await.map_err(handler_error)?
        else {
            return Ok(Outcome::Failed("no_credential"));
        };
        let Some(auth) = self.open(&sealed) else { return Ok(Outcome::Failed("credential_unreadable")) };
        let trusted =
            known_hosts::trusted_keys_for_host(&mut conn, run.host_id).await.map_err(handler_error)?;
        drop(conn); // not held during the SSH round trip

        let username = sealed.metadata.username.clone();
        let mut target = SshTarget {
            host: run.host.address.clone(),
            port: run.host.port,
            use_sudo: self.config.sudo.applies_to(&username),
            username,
            auth,
            host_key_policy: HostKeyPolicy::Strict { known: Vec::new() },
        };
        let mut known: Vec<String> = trusted.into_iter().map(|key| key.fingerprint_sha256).collect();
        if known.is_empty() {
            match self.first_contact(run, &target).await? {
                Ok(fingerprint) => known.push(fingerprint),
                Err(code) => return Ok(Outcome::Failed(code)),
            }
        }
        target.host_key_policy = match self.config.host_keys {
            HostKeyMode::Tofu => HostKeyPolicy::TrustOnFirstUse { known },
            HostKeyMode::Strict => HostKeyPolicy::Strict { known },
        };

        let (events, mut phases) = mpsc::unbounded_channel();
        let reporter = tokio::spawn({
            let progress = progress.clone();
            async move {
                while let Some(phase) = phases.recv().await {
                    progress.set(RUNNING, phase, 0).await;
                }
            }
        });
        let rules = Arc::clone(&self.rules);
        let options = self.options(run, walk);
        let scanned = tokio::task::spawn_blocking(move || ssh::scan(&rules, target, &options, events)).await;
        // The sender went with the blocking task: the reporter drains and ends.
        let _ = reporter.await;
        match scanned {
            Err(panic) => {
                error!(error = %panic, "the engine panicked");
                Ok(Outcome::Failed("internal_error"))
            }
            Ok((Ok(report), _)) => Ok(Outcome::Completed(Box::new(report))),
            Ok((Err(scan_error), observed)) => {
                let code = ssh::failure_code(&scan_error);
                warn!(error = %scan_error, scan.failure_reason = code, "scan failed");
                if let (ScanError::Transport(TransportError::HostKeyMismatch { .. }), Some(key)) =
                    (&scan_error, observed)
                {
                    self.record_pending(run, &key).await;
                }
                Ok(Outcome::Failed(code))
            }
        }
    }

    /// Opens the sealed secret; `None` (logged, never the secret) when it does not open.
    fn open(&self, sealed: &SealedCredential) -> Option<SshAuth> {
        let sealed_ref =
            SealedRef { ciphertext: &sealed.ciphertext, nonce: &sealed.nonce, key_id: &sealed.key_id };
        match CredentialSecret::open(&self.cipher, &sealed_ref, sealed.metadata.id.0.as_bytes()) {
            Ok(CredentialSecret::Password(password)) => Some(SshAuth::Password(password)),
            Ok(CredentialSecret::PrivateKey { key, passphrase }) => {
                Some(SshAuth::PrivateKey { key_pem: key, passphrase })
            }
            Err(error) => {
                warn!(credential.id = %sealed.metadata.id, key.id = sealed.key_id.as_str(), %error, "cannot open the credential");
                None
            }
        }
    }

    /// A host without a trusted key: learn its key without authenticating, record it, and
    /// say whether the scan may proceed with it (`Ok(fingerprint)`) or fails (`Err(code)`).
    async fn first_contact(
        &self,
        run: &ScanRun,
        target: &SshTarget,
    ) -> Result<Result<String, &'static str>, HandlerError> {
        let (probe_target, limits) = (target.clone(), self.config.limits.clone());
        let key = match tokio::task::spawn_blocking(move || ssh::probe_host_key(probe_target, &limits)).await
        {
            Ok(Ok(key)) => key,
            Ok(Err(transport_error)) => {
                let code = ssh::transport_failure_code(&transport_error);
                warn!(error = %transport_error, scan.failure_reason = code, "cannot reach the host's SSH server");
                return Ok(Err(code));
            }
            Err(panic) => {
                error!(error = %panic, "the host key probe panicked");
                return Ok(Err("internal_error"));
            }
        };
        let trust = self.config.host_keys == HostKeyMode::Tofu;
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        let stored = known_hosts::record_seen(
            &mut conn,
            run.host_id,
            &key.key_type,
            &key.fingerprint_sha256,
            None,
            trust,
        )
        .await
        .map_err(handler_error)?;
        let fingerprint = key.fingerprint_sha256;
        Ok(match stored.status {
            KnownHostStatus::Trusted => {
                info!(
                    host.key = fingerprint.as_str(),
                    host.key_type = key.key_type.as_str(),
                    "host key trusted on first use"
                );
                Ok(fingerprint)
            }
            KnownHostStatus::Revoked => {
                warn!(host.key = fingerprint.as_str(), "the host presents a revoked key");
                Err("host_key_mismatch")
            }
            KnownHostStatus::Pending => {
                warn!(host.key = fingerprint.as_str(), "the host key awaits an operator's approval");
                Err("host_key_unknown")
            }
        })
    }

    /// Records a mismatching key `pending` so an operator can review and approve it.
    async fn record_pending(&self, run: &ScanRun, key: &HostKeyInfo) {
        let recorded = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            known_hosts::record_seen(
                &mut conn,
                run.host_id,
                &key.key_type,
                &key.fingerprint_sha256,
                None,
                false,
            )
            .await
            .map_err(|e| e.to_string())
        };
        match recorded.await {
            Ok(stored) => warn!(
                host.key = key.fingerprint_sha256.as_str(),
                host.key_status = stored.status.as_str(),
                "the host presented a key other than its trusted one"
            ),
            Err(error) => warn!(%error, "cannot record the mismatching host key"),
        }
    }

    fn options(&self, run: &ScanRun, walk: bool) -> ScanOptions {
        let defaults = ScriptOptions::default();
        // The walk must end well inside the exec timeout.
        let exec_secs = u32::try_from(self.config.limits.exec_timeout.as_secs()).unwrap_or(u32::MAX);
        ScanOptions {
            framework: run.framework.clone(),
            script: ScriptOptions {
                walk_timeout_secs: defaults.walk_timeout_secs.min(exec_secs / 2),
                ..defaults
            },
            limits: self.config.limits.clone(),
            walk,
        }
    }

    /// Step 5: whether the scan still wants its result (not cancelled or finished meanwhile).
    async fn still_wanted(&self, run: &ScanRun) -> Result<bool, HandlerError> {
        let mut conn = self.pool.get().await.map_err(|e| handler_error(e.into()))?;
        match scan_runs::current_status(&mut conn, run.scan_id).await.map_err(handler_error)? {
            Some(status) if !status.is_terminal() => Ok(true),
            Some(status) => {
                info!(scan.status = status.as_str(), "scan finished meanwhile: result not published");
                Ok(false)
            }
            None => {
                info!("scan deleted meanwhile: result not published");
                Ok(false)
            }
        }
    }

    /// Step 6: publishes with a broker confirm, waiting up to [`PUBLISH_WAIT`] for the
    /// publisher's connection.
    async fn publish(&self, message: &ScanCompletedV1) -> Result<(), HandlerError> {
        let deadline = Instant::now() + PUBLISH_WAIT;
        let publisher = loop {
            match self.publisher.publisher().await {
                Ok(publisher) => break publisher,
                Err(error) if Instant::now() >= deadline => {
                    return Err(HandlerError::Transient(format!("cannot publish the scan result: {error}")));
                }
                Err(_) => tokio::time::sleep(PUBLISHER_POLL).await,
            }
        };
        publisher
            .publish(message)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::Transient(format!("publishing the scan result failed: {e}")))
    }
}

/// The result message; rules in `left_out` (walk rules of a scan that skipped the walk) are
/// not part of it.
fn completed_message(
    run: &ScanRun,
    outcome: Outcome,
    finished_at: DateTime<Utc>,
    left_out: &HashSet<String>,
) -> ScanCompletedV1 {
    let base = ScanCompletedV1 {
        scan_id: run.scan_id,
        host_id: run.host_id,
        outcome: ScanStatus::Failed,
        started_at: run.started_at,
        finished_at,
        failure_reason: None,
        platform: None,
        results: Vec::new(),
    };
    match outcome {
        Outcome::Completed(report) => {
            let report = *report;
            ScanCompletedV1 {
                outcome: ScanStatus::Completed,
                platform: report
                    .platform
                    .map(|platform| PlatformV1 { family: platform.id, version: platform.version_id }),
                results: report.results.into_iter().filter(|r| !left_out.contains(&r.rule_id)).collect(),
                ..base
            }
        }
        Outcome::Failed(code) => ScanCompletedV1 { failure_reason: Some(code.to_owned()), ..base },
    }
}

fn record_metrics(run: &ScanRun, outcome: ScanStatus, clock: Instant, message: Option<&ScanCompletedV1>) {
    metrics::counter!(names::SCANS_TOTAL, "status" => outcome.as_str(), "trigger" => run.trigger.as_str())
        .increment(1);
    metrics::histogram!(names::SCAN_DURATION_SECONDS, "outcome" => outcome.as_str())
        .record(clock.elapsed().as_secs_f64());
    let mut by_status: BTreeMap<FindingStatus, u64> = BTreeMap::new();
    for result in message.map(|m| m.results.as_slice()).unwrap_or_default() {
        *by_status.entry(result.status).or_default() += 1;
    }
    for (status, count) in by_status {
        metrics::counter!(names::RULES_EVALUATED_TOTAL, "status" => status.as_str()).increment(count);
    }
}
