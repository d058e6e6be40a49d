//! Folding a finished scan (`ScanCompletedV1`) into everything the platform reports, in one
//! transaction: findings, the per-rule "now" view (`host_rule_state`), the host's score,
//! compliance state and next scan time, drift events, alerts and the daily posture
//! snapshot. [`process_scan_result`] is the entry point; `result-processor` calls it once
//! per message.
//!
//! # Idempotence
//! The scan row and its host row are locked first (in that order, the order
//! [`scans::record_completed`] uses). A scan already in a terminal state is left alone
//! ([`ProcessOutcome::AlreadyFinished`]): a redelivered or duplicated message writes no
//! second set of findings, drift events or alerts. Two results for the same host serialise
//! on the host row.
//!
//! # By outcome
//! * **completed** — findings ([`scans::record_completed`]); `host_rule_state` upserted
//!   from those findings in one `INSERT … SELECT … ON CONFLICT DO UPDATE` (`changed_at`
//!   moves only when the status changes); the host's score over its *whole* current state
//!   (this scan's results merged over the states of rules it did not evaluate, e.g. a
//!   framework-filtered scan), excluding rules waived by an active exception — the same
//!   figure `compliance::host_posture` reports; compliance state
//!   ([`ComplianceState::from_score`], a failing *non-waived* critical rule makes it
//!   critical); `scan_failures = 0`; `next_scan_at = finished_at + interval_for(state)`;
//!   drift, alerts and the snapshot as below.
//! * **failed** — findings (if any) are stored with the scan but the host's state, score and
//!   snapshot are not touched; `scan_failures + 1` and `next_scan_at = finished_at +
//!   min(base · 2^(n-1), interval_for(state), max_interval)`; alerts `host_key_mismatch`
//!   and `scan_failed`.
//! * **cancelled** — only the scan row and its findings ([`scans::record_completed`]).
//!
//! A result older than the host's current state (its `finished_at` precedes the last
//! evaluation already folded in: messages delivered out of order) is stored as history
//! (findings, scan status) but changes nothing about the host ([`ProcessReport::stale`]).
//!
//! # Schedule
//! Never a hot loop: after a success an interval of 0 (a state configured so) is replaced
//! by the back-off base, and by `max_interval` for a host that still has no score (state
//! `unknown`: it evaluated nothing that passes or fails). After a failure the back-off is
//! capped by the state's interval unless that is 0 (state `unknown`), then by
//! `max_interval` only.
//!
//! # Drift
//! One `drift_events` row per rule whose status changed where either side is `pass` or
//! `fail` (a first-ever result is no drift), with the rule's severity; plus a score row
//! (`rule_id` NULL) when the host score moved by at least
//! [`ResultPolicy::score_drift_points`] since the previous completed scan.
//!
//! # Alerts
//! Deduplicated while unresolved (`alerts_dedup_key`): host-level ones through
//! [`alerts::raise`], `rule_failed` ones all in one statement with the same semantics.
//! * [`RULE_FAILED`] for each rule newly failing (previous status not `fail`, including a
//!   first result) with severity critical or high and no active exception; resolved when
//!   the rule passes again;
//! * [`SCORE_DROPPED`] when the score fell by at least [`ResultPolicy::score_drop_points`]
//!   below the *reference*: the higher of the previous scan's score and yesterday's (UTC)
//!   posture snapshot, i.e. the best the host stood at within roughly the last day — so a
//!   sudden drop between two scans and a day-over-day slide both alert. Left for a human
//!   to resolve;
//! * [`HOST_BELOW_THRESHOLD`] while the score is below [`ResultPolicy::score_threshold`]
//!   (severity from the compliance state); resolved once it is back at or above;
//! * [`MASS_DRIFT`] when the rule drifts of this scan are at least
//!   [`ResultPolicy::mass_drift_percent`] of the rules it evaluated;
//! * [`HOST_KEY_MISMATCH`] (critical) when a scan failed with reason `host_key_mismatch`;
//!   stays open until a human resolves it (a later success does not prove the key is right);
//! * [`SCAN_FAILED`] after [`ResultPolicy::scan_failures_before_alert`] consecutive
//!   failures; resolved by the next completed scan.
//!
//! # Snapshot
//! `posture_snapshots` (host, UTC date of `finished_at`) is upserted after every completed
//! scan with a score: score, `per_framework` and `per_severity` (`{passed, failed, score}`
//! over non-waived results, only groups with a pass or fail), `rule_states` (rule id →
//! status of every current state, waived or not). A completed scan without any pass or
//! fail has no score and writes no snapshot (the column is `NOT NULL`).
//!
//! # Cost
//! A fixed number of round trips per message whatever the number of results: the lock
//! (with yesterday's snapshot score), `record_completed` (findings in one multi-row
//! insert), the schedule, one statement reading the previous states and active exceptions
//! while upserting the new states (a CTE: every sub-statement sees the same snapshot), then
//! the independent writes — host, drift (one multi-row insert), alert resolutions (one
//! `UPDATE`), `rule_failed` raises (one `INSERT … SELECT FROM unnest`), snapshot —
//! pipelined in one round trip; host-level alerts (rare) follow one by one. Measured with
//! `services/result-processor/benches/ingest.rs` (300 results per scan, 2 cores): about
//! 14 ms per message on one connection, half of it `record_completed`; ~37k findings/s
//! with two connections.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Date, Double, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::domain::{
    ComplianceState, FindingStatus, ScanStatus, ScanTrigger, Severity, compliance_score,
};
use openwatch_common::ids::{AlertId, DriftEventId, HostId};
use openwatch_common::messages::v1::{RuleResultV1, ScanCompletedV1};
use serde_json::json;
use uuid::Uuid;

use crate::DbError;
use crate::queries::alerts::{self, NewAlert};
use crate::queries::exceptions::ACTIVE_EXCEPTION;
use crate::queries::scans::{self, RecordOutcome};
use crate::queries::scheduler::{self, SchedulerConfig};
use crate::schema::{drift_events, hosts, posture_snapshots};

/// Alert type: a critical or high rule started failing.
pub const RULE_FAILED: &str = "rule_failed";
/// Alert type: the host score fell sharply.
pub const SCORE_DROPPED: &str = "score_dropped";
/// Alert type: the host score is below the configured threshold.
pub const HOST_BELOW_THRESHOLD: &str = "host_below_threshold";
/// Alert type: many rules changed status in one scan.
pub const MASS_DRIFT: &str = "mass_drift";
/// Alert type: the host presented an SSH key other than the trusted one.
pub const HOST_KEY_MISMATCH: &str = "host_key_mismatch";
/// Alert type: several consecutive scans failed.
pub const SCAN_FAILED: &str = "scan_failed";
/// The `failure_reason` of a scan refused because of a host key mismatch.
pub const HOST_KEY_MISMATCH_REASON: &str = "host_key_mismatch";

/// Thresholds deciding drift and alerts (the service reads them from its environment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResultPolicy {
    /// A host score change of at least this many points is a score drift event (5).
    pub score_drift_points: f64,
    /// A fall of at least this many points below the reference raises `score_dropped` (20).
    pub score_drop_points: f64,
    /// A score below this raises `host_below_threshold`; at or above resolves it (80).
    pub score_threshold: f64,
    /// Rule drifts of at least this percentage of the evaluated rules raise `mass_drift` (10).
    pub mass_drift_percent: f64,
    /// This many consecutive failed scans raise `scan_failed` (3).
    pub scan_failures_before_alert: u32,
}

impl Default for ResultPolicy {
    fn default() -> Self {
        Self {
            score_drift_points: 5.0,
            score_drop_points: 20.0,
            score_threshold: 80.0,
            mass_drift_percent: 10.0,
            scan_failures_before_alert: 3,
        }
    }
}

/// An alert raised while processing a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedAlert {
    /// Its type (one of this module's constants).
    pub alert_type: String,
    /// The rule, for `rule_failed`.
    pub rule_id: Option<String>,
    /// `true` when a new alert was opened, `false` when an unresolved one was raised again.
    pub opened: bool,
}

/// What [`process_scan_result`] did with a result that was not a duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessReport {
    /// The scan's outcome (`completed`, `failed` or `cancelled`).
    pub outcome: ScanStatus,
    /// Manual or scheduled (for metrics).
    pub trigger: ScanTrigger,
    /// Findings written.
    pub findings: usize,
    /// This scan's own score over its results (`scans.score`), exceptions not applied.
    pub scan_score: Option<f64>,
    /// The result is older than the host's current state: stored as history only.
    pub stale: bool,
    /// The host's new score (completed scans), waived rules excluded.
    pub host_score: Option<f64>,
    /// The host's new compliance state (completed scans).
    pub compliance_state: Option<ComplianceState>,
    /// The host's consecutive failures after this result (completed and failed scans).
    pub scan_failures: Option<u32>,
    /// The host's next automatic scan (completed and failed scans).
    pub next_scan_at: Option<DateTime<Utc>>,
    /// Rule drift events written.
    pub rule_drifts: usize,
    /// Whether a score drift event was written.
    pub score_drift: bool,
    /// Alerts raised, in the order raised.
    pub alerts_raised: Vec<RaisedAlert>,
    /// Alerts resolved automatically.
    pub alerts_resolved: usize,
}

impl ProcessReport {
    fn new(outcome: ScanStatus, trigger: ScanTrigger, findings: usize, scan_score: Option<f64>) -> Self {
        Self {
            outcome,
            trigger,
            findings,
            scan_score,
            stale: false,
            host_score: None,
            compliance_state: None,
            scan_failures: None,
            next_scan_at: None,
            rule_drifts: 0,
            score_drift: false,
            alerts_raised: Vec::new(),
            alerts_resolved: 0,
        }
    }
}

/// What [`process_scan_result`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessOutcome {
    /// The result was folded in.
    Processed(ProcessReport),
    /// The scan was already in a terminal state: nothing was changed (a redelivery).
    AlreadyFinished(ScanStatus),
    /// No such scan (deleted with its host, or never written).
    UnknownScan,
}

/// A raw statement with owned bind values, sendable on a shared (pipelining) connection.
type BoxedQuery =
    diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery>;

fn invalid(what: impl std::fmt::Display) -> DbError {
    DbError::InvalidData(what.to_string())
}

#[derive(QueryableByName)]
struct LockedRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = SqlUuid)]
    host_id: Uuid,
    #[diesel(sql_type = Text)]
    host_name: String,
    #[diesel(sql_type = Text)]
    compliance_state: String,
    #[diesel(sql_type = Nullable<Double>)]
    last_score: Option<f64>,
    #[diesel(sql_type = Integer)]
    scan_failures: i32,
    #[diesel(sql_type = Nullable<Double>)]
    yesterday_score: Option<f64>,
}

/// The host as it was before this result.
struct HostBefore {
    id: HostId,
    name: String,
    state: ComplianceState,
    score: Option<f64>,
    failures: u32,
    /// Score of its snapshot of the day before the scan finished (UTC).
    yesterday_score: Option<f64>,
}

/// Processes one finished scan in one transaction (a savepoint when the caller already
/// has one): see the module documentation for everything it writes. A message whose
/// `host_id` is not the scan's host, or whose outcome is not terminal, is
/// [`DbError::InvalidData`] and nothing is written.
pub async fn process_scan_result(
    conn: &mut AsyncPgConnection,
    message: &ScanCompletedV1,
    policy: &ResultPolicy,
) -> Result<ProcessOutcome, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| process(conn, message, policy).await).await
}

async fn process(
    conn: &mut AsyncPgConnection,
    message: &ScanCompletedV1,
    policy: &ResultPolicy,
) -> Result<ProcessOutcome, DbError> {
    // Scan and host rows locked in one statement, before `record_completed` overwrites the
    // host's last score.
    let yesterday = message.finished_at.date_naive().pred_opt().unwrap_or(NaiveDate::MIN);
    let locked: Option<LockedRow> = diesel::sql_query(
        "SELECT s.status, s.trigger, s.host_id, h.name AS host_name, h.compliance_state, \
                h.last_score, h.scan_failures, \
                (SELECT p.score FROM posture_snapshots p \
                 WHERE p.host_id = h.id AND p.snapshot_date = $2) AS yesterday_score \
         FROM scans s JOIN hosts h ON h.id = s.host_id WHERE s.id = $1 FOR UPDATE",
    )
    .bind::<SqlUuid, _>(message.scan_id.into_uuid())
    .bind::<Date, _>(yesterday)
    .get_result(conn)
    .await
    .optional()?;
    let Some(locked) = locked else { return Ok(ProcessOutcome::UnknownScan) };
    let status: ScanStatus = locked.status.parse().map_err(|e: UnknownVariant| invalid(e))?;
    if status.is_terminal() {
        return Ok(ProcessOutcome::AlreadyFinished(status));
    }
    if locked.host_id != message.host_id.into_uuid() {
        return Err(invalid(format!(
            "scan {} belongs to host {}, the result names host {}",
            message.scan_id, locked.host_id, message.host_id
        )));
    }
    let trigger: ScanTrigger = locked.trigger.parse().map_err(|e: UnknownVariant| invalid(e))?;
    let host = HostBefore {
        id: HostId(locked.host_id),
        state: locked.compliance_state.parse().map_err(|e: UnknownVariant| invalid(e))?,
        score: locked.last_score,
        failures: u32::try_from(locked.scan_failures).unwrap_or(0),
        yesterday_score: locked.yesterday_score,
        name: locked.host_name,
    };

    let (findings, scan_score) = match scans::record_completed(conn, message).await? {
        RecordOutcome::Recorded { findings, score } => (findings, score),
        RecordOutcome::AlreadyFinished(status) => return Ok(ProcessOutcome::AlreadyFinished(status)),
        RecordOutcome::UnknownScan => return Ok(ProcessOutcome::UnknownScan),
    };
    let mut report = ProcessReport::new(message.outcome, trigger, findings, scan_score);
    match message.outcome {
        ScanStatus::Completed => completed(conn, message, policy, &host, &mut report).await?,
        ScanStatus::Failed => failed(conn, message, policy, &host, &mut report).await?,
        // Cancelled: the scan row and its findings are all there is to record.
        _ => {}
    }
    Ok(ProcessOutcome::Processed(report))
}

// ---------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------

/// Delay before the next automatic scan after a completed scan that left the host in
/// `state`: its interval, never 0 (see the module documentation).
pub fn interval_after_success(config: &SchedulerConfig, state: ComplianceState) -> TimeDelta {
    let interval = config.interval_for(state);
    if !interval.is_zero() {
        interval
    } else if state == ComplianceState::Unknown {
        TimeDelta::minutes(i64::from(config.max_interval_minutes))
    } else {
        config.backoff_for(1)
    }
}

/// Delay before retrying a host in `state` after `failures` consecutive failed scans:
/// `min(base · 2^(failures-1), interval_for(state), max_interval)`, the state's interval
/// ignored when it is 0 (`unknown`: due at once when healthy, but never a hot loop).
pub fn delay_after_failure(config: &SchedulerConfig, state: ComplianceState, failures: u32) -> TimeDelta {
    let backoff = config.backoff_for(failures.max(1));
    let interval = config.interval_for(state);
    if interval.is_zero() { backoff } else { backoff.min(interval) }
}

// ---------------------------------------------------------------------------------------
// Failed scans
// ---------------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct LatestEvaluationRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    latest: Option<DateTime<Utc>>,
}

/// When the host's current state was last evaluated (`None` before its first completed scan).
async fn latest_evaluation(
    conn: &mut AsyncPgConnection,
    host: HostId,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row: LatestEvaluationRow =
        diesel::sql_query("SELECT max(evaluated_at) AS latest FROM host_rule_state WHERE host_id = $1")
            .bind::<SqlUuid, _>(host.into_uuid())
            .get_result(conn)
            .await?;
    Ok(row.latest)
}

async fn failed(
    conn: &mut AsyncPgConnection,
    message: &ScanCompletedV1,
    policy: &ResultPolicy,
    host: &HostBefore,
    report: &mut ProcessReport,
) -> Result<(), DbError> {
    if latest_evaluation(conn, host.id).await?.is_some_and(|latest| latest > message.finished_at) {
        report.stale = true;
        return Ok(());
    }
    let config = scheduler::get(conn).await?;
    let failures = host.failures.saturating_add(1);
    let next_scan_at = message.finished_at + delay_after_failure(&config, host.state, failures);
    diesel::update(hosts::table.find(host.id.into_uuid()))
        .set((
            hosts::scan_failures.eq(i32::try_from(failures).unwrap_or(i32::MAX)),
            hosts::next_scan_at.eq(next_scan_at),
        ))
        .execute(conn)
        .await?;
    report.scan_failures = Some(failures);
    report.next_scan_at = Some(next_scan_at);

    let reason = message.failure_reason.as_deref().unwrap_or("unknown");
    let details = json!({
        "scan_id": message.scan_id,
        "failure_reason": message.failure_reason,
        "consecutive_failures": failures,
        "finished_at": message.finished_at,
    });
    if reason == HOST_KEY_MISMATCH_REASON {
        let alert = NewAlert {
            alert_type: HOST_KEY_MISMATCH.to_owned(),
            host_id: host.id,
            rule_id: None,
            severity: Severity::Critical,
            title: format!("SSH host key of {} does not match its trusted key", host.name),
            details: details.clone(),
        };
        raise(conn, alert, report).await?;
    }
    if failures >= policy.scan_failures_before_alert {
        let alert = NewAlert {
            alert_type: SCAN_FAILED.to_owned(),
            host_id: host.id,
            rule_id: None,
            severity: Severity::High,
            title: format!("{failures} consecutive scans of {} failed (last: {reason})", host.name),
            details,
        };
        raise(conn, alert, report).await?;
    }
    Ok(())
}

async fn raise(
    conn: &mut AsyncPgConnection,
    alert: NewAlert,
    report: &mut ProcessReport,
) -> Result<(), DbError> {
    let (alert_type, rule_id) = (alert.alert_type.clone(), alert.rule_id.clone());
    let (_, opened) = alerts::raise(conn, alert).await?;
    report.alerts_raised.push(RaisedAlert { alert_type, rule_id, opened });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Completed scans
// ---------------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct FrameworksRow {
    #[diesel(sql_type = Text)]
    rule_id: String,
    #[diesel(sql_type = Jsonb)]
    frameworks: serde_json::Value,
}

/// Passes and fails of a group of non-waived results.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn add(&mut self, status: FindingStatus) {
        match status {
            FindingStatus::Pass => self.passed += 1,
            FindingStatus::Fail => self.failed += 1,
            _ => {}
        }
    }

    fn score(self) -> Option<f64> {
        compliance_score(self.passed, self.failed)
    }

    fn to_json(self) -> serde_json::Value {
        json!({ "passed": self.passed, "failed": self.failed, "score": self.score() })
    }
}

/// The host's posture over its current (merged) rule states.
#[derive(Default)]
struct HostPosture {
    overall: Tally,
    per_severity: BTreeMap<Severity, Tally>,
    per_framework: BTreeMap<String, Tally>,
    failing_critical: bool,
    rule_states: serde_json::Map<String, serde_json::Value>,
}

impl HostPosture {
    fn add<'f>(
        &mut self,
        rule: &str,
        status: FindingStatus,
        severity: Severity,
        frameworks: impl IntoIterator<Item = &'f str>,
        excepted: bool,
    ) {
        self.rule_states.insert(rule.to_owned(), status.as_str().into());
        if excepted || !matches!(status, FindingStatus::Pass | FindingStatus::Fail) {
            return;
        }
        self.overall.add(status);
        self.per_severity.entry(severity).or_default().add(status);
        for framework in frameworks {
            match self.per_framework.get_mut(framework) {
                Some(tally) => tally.add(status),
                None => {
                    let mut tally = Tally::default();
                    tally.add(status);
                    self.per_framework.insert(framework.to_owned(), tally);
                }
            }
        }
        self.failing_critical |= status == FindingStatus::Fail && severity == Severity::Critical;
    }

    fn per_severity_json(&self) -> serde_json::Value {
        self.per_severity
            .iter()
            .map(|(severity, tally)| (severity.as_str().to_owned(), tally.to_json()))
            .collect()
    }

    fn per_framework_json(&self) -> serde_json::Value {
        self.per_framework.iter().map(|(framework, tally)| (framework.clone(), tally.to_json())).collect()
    }
}

/// A rule whose status changed in a way that counts as drift.
struct RuleDrift<'a> {
    rule_id: &'a str,
    previous: FindingStatus,
    current: FindingStatus,
    severity: Severity,
}

#[derive(Insertable)]
#[diesel(table_name = drift_events)]
struct NewDriftRow<'a> {
    id: Uuid,
    host_id: Uuid,
    scan_id: Option<Uuid>,
    rule_id: Option<&'a str>,
    previous_status: Option<&'static str>,
    current_status: Option<&'static str>,
    severity: Option<&'static str>,
    previous_score: Option<f64>,
    current_score: Option<f64>,
    detected_at: DateTime<Utc>,
}

/// Whether a change from `previous` to `current` is drift: a change with `pass` or `fail`
/// on either side.
fn is_drift(previous: FindingStatus, current: FindingStatus) -> bool {
    let decisive = |status| matches!(status, FindingStatus::Pass | FindingStatus::Fail);
    previous != current && (decisive(previous) || decisive(current))
}

/// Severity of a `host_below_threshold` alert for a host in `state`.
fn below_threshold_severity(state: ComplianceState) -> Severity {
    match state {
        ComplianceState::Critical => Severity::Critical,
        ComplianceState::Low => Severity::High,
        ComplianceState::Partial => Severity::Medium,
        _ => Severity::Low,
    }
}

#[derive(QueryableByName)]
struct BeforeRow {
    #[diesel(sql_type = Text)]
    rule_id: String,
    /// `None` on the rows listing active exceptions.
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    severity: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    evaluated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    excepted: bool,
}

#[derive(QueryableByName)]
struct RaisedRuleAlertRow {
    #[diesel(sql_type = Text)]
    rule_id: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    inserted: bool,
}

/// The host's states before this scan, then (in the same statement) the upsert of the
/// "now" view from the findings just written, and the rules waived by an active exception.
///
/// Data-modifying CTEs see the statement's snapshot, so `old` lists the states *before* the
/// upsert. The upsert copies each finding (evidence included, without sending it again),
/// moves `changed_at` only when the status changes, and writes nothing when the host holds
/// a state evaluated after this scan finished (an out-of-order result; the caller sees it
/// in the returned rows).
fn upsert_states_returning_previous(scan: Uuid, host: Uuid, finished_at: DateTime<Utc>) -> BoxedQuery {
    diesel::sql_query(format!(
        "WITH old AS ( \
             SELECT rule_id, status, severity, evaluated_at FROM host_rule_state WHERE host_id = $2 \
         ), up AS ( \
             INSERT INTO host_rule_state AS s \
                 (host_id, rule_id, status, severity, last_scan_id, changed_at, evaluated_at, evidence) \
             SELECT f.host_id, f.rule_id, f.status, f.severity, f.scan_id, $3, $3, f.evidence \
             FROM scan_findings f \
             WHERE f.scan_id = $1 AND NOT EXISTS (SELECT 1 FROM old WHERE old.evaluated_at > $3) \
             ON CONFLICT (host_id, rule_id) DO UPDATE SET \
                 changed_at = CASE WHEN s.status = EXCLUDED.status THEN s.changed_at \
                                   ELSE EXCLUDED.changed_at END, \
                 status = EXCLUDED.status, severity = EXCLUDED.severity, \
                 last_scan_id = EXCLUDED.last_scan_id, evaluated_at = EXCLUDED.evaluated_at, \
                 evidence = EXCLUDED.evidence \
         ) \
         SELECT rule_id, status, severity, evaluated_at, false AS excepted FROM old \
         UNION ALL \
         SELECT ex.rule_id, NULL, NULL, NULL, true FROM exceptions ex \
         WHERE ex.host_id = $2 AND {ACTIVE_EXCEPTION}"
    ))
    .into_boxed()
    .bind::<SqlUuid, _>(scan)
    .bind::<SqlUuid, _>(host)
    .bind::<Timestamptz, _>(finished_at)
}

/// A `rule_failed` alert to raise.
struct RuleAlert<'a> {
    result: &'a RuleResultV1,
    previous: Option<FindingStatus>,
}

/// Raises `rule_failed` for every rule in `rules` in one statement, with exactly the
/// semantics of [`alerts::raise`] (deduplicated on `alerts_dedup_key` among unresolved
/// alerts: an unresolved one gets `occurrences + 1`, `last_seen_at = now()` and this
/// occurrence's severity, title and details). Rule ids must be distinct.
fn raise_rule_alerts(host: &HostBefore, scan: &ScanCompletedV1, rules: &[RuleAlert<'_>]) -> BoxedQuery {
    let ids: Vec<Uuid> = rules.iter().map(|_| AlertId::new().into_uuid()).collect();
    let rule_ids: Vec<String> = rules.iter().map(|alert| alert.result.rule_id.clone()).collect();
    let severities: Vec<&'static str> = rules.iter().map(|alert| alert.result.severity.as_str()).collect();
    let titles: Vec<String> =
        rules.iter().map(|alert| format!("Rule {} fails on {}", alert.result.rule_id, host.name)).collect();
    let details: Vec<serde_json::Value> = rules
        .iter()
        .map(|alert| {
            json!({
                "scan_id": scan.scan_id,
                "previous_status": alert.previous.map(FindingStatus::as_str),
                "evidence": alert.result.evidence,
            })
        })
        .collect();
    diesel::sql_query(
        "INSERT INTO alerts (id, alert_type, host_id, rule_id, severity, title, details) \
         SELECT a.id, 'rule_failed', $1, a.rule_id, a.severity, a.title, a.details \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[]) \
              AS a(id, rule_id, severity, title, details) \
         ON CONFLICT (alert_type, host_id, coalesce(rule_id, '')) WHERE status <> 'resolved' \
         DO UPDATE SET last_seen_at = now(), occurrences = alerts.occurrences + 1, \
             severity = EXCLUDED.severity, title = EXCLUDED.title, details = EXCLUDED.details \
         RETURNING rule_id, (xmax = 0) AS inserted",
    )
    .into_boxed()
    .bind::<SqlUuid, _>(host.id.into_uuid())
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(rule_ids)
    .bind::<Array<Text>, _>(severities)
    .bind::<Array<Text>, _>(titles)
    .bind::<Array<Jsonb>, _>(details)
}

async fn completed(
    conn: &mut AsyncPgConnection,
    message: &ScanCompletedV1,
    policy: &ResultPolicy,
    host: &HostBefore,
    report: &mut ProcessReport,
) -> Result<(), DbError> {
    let host_uuid = host.id.into_uuid();
    let finished_at = message.finished_at;
    let config = scheduler::get(conn).await?;

    let before: Vec<BeforeRow> =
        upsert_states_returning_previous(message.scan_id.into_uuid(), host_uuid, finished_at)
            .load(conn)
            .await?;
    if before.iter().any(|row| row.evaluated_at.is_some_and(|at| at > finished_at)) {
        // Out of order: a newer result is already folded in (the upsert wrote nothing).
        // Keep the newer score that `record_completed` just overwrote.
        diesel::update(hosts::table.find(host_uuid))
            .set(hosts::last_score.eq(host.score))
            .execute(conn)
            .await?;
        report.stale = true;
        return Ok(());
    }
    let mut previous: HashMap<&str, (FindingStatus, Severity)> = HashMap::with_capacity(before.len());
    let mut excepted: HashSet<&str> = HashSet::new();
    for row in &before {
        if row.excepted {
            excepted.insert(row.rule_id.as_str());
            continue;
        }
        let (Some(status), Some(severity)) = (&row.status, &row.severity) else {
            return Err(invalid(format!("host_rule_state {}/{}: no status", host.id, row.rule_id)));
        };
        let status = status.parse().map_err(|e: UnknownVariant| invalid(e))?;
        let severity = severity.parse().map_err(|e: UnknownVariant| invalid(e))?;
        previous.insert(row.rule_id.as_str(), (status, severity));
    }

    // The results as stored: the first of duplicate rule ids wins, as in `scan_findings`.
    let mut seen = HashSet::with_capacity(message.results.len());
    let results: Vec<&RuleResultV1> =
        message.results.iter().filter(|result| seen.insert(result.rule_id.as_str())).collect();

    // Rules of the current state this scan did not evaluate keep counting; their framework
    // references come from the findings of their last scan (untouched by the upsert).
    let carried: Vec<&str> = previous.keys().copied().filter(|rule| !seen.contains(rule)).collect();
    let carried_frameworks: HashMap<String, serde_json::Value> = if carried.is_empty() {
        HashMap::new()
    } else {
        diesel::sql_query(
            "SELECT s.rule_id, f.frameworks FROM host_rule_state s \
             JOIN scan_findings f ON f.scan_id = s.last_scan_id AND f.rule_id = s.rule_id \
             WHERE s.host_id = $1 AND s.rule_id = ANY($2)",
        )
        .bind::<SqlUuid, _>(host_uuid)
        .bind::<Array<Text>, _>(&carried)
        .load::<FrameworksRow>(conn)
        .await?
        .into_iter()
        .map(|row| (row.rule_id, row.frameworks))
        .collect()
    };

    // Posture over the merged state, drift, newly failing and passing-again rules.
    let mut posture = HostPosture::default();
    let mut drifts = Vec::new();
    let mut newly_failing = Vec::new();
    let mut passing: Vec<&str> = Vec::new();
    for result in &results {
        let rule = result.rule_id.as_str();
        let waived = excepted.contains(rule);
        posture.add(
            rule,
            result.status,
            result.severity,
            result.frameworks.keys().map(String::as_str),
            waived,
        );
        let before = previous.get(rule).map(|(status, _)| *status);
        if let Some(before) = before
            && is_drift(before, result.status)
        {
            drifts.push(RuleDrift {
                rule_id: rule,
                previous: before,
                current: result.status,
                severity: result.severity,
            });
        }
        match result.status {
            // Only a rule that did not pass before can have an open `rule_failed` alert.
            FindingStatus::Pass if before.is_some_and(|status| status != FindingStatus::Pass) => {
                passing.push(rule)
            }
            FindingStatus::Fail
                if before != Some(FindingStatus::Fail)
                    && !waived
                    && matches!(result.severity, Severity::Critical | Severity::High) =>
            {
                newly_failing.push(RuleAlert { result, previous: before });
            }
            _ => {}
        }
    }
    for rule in &carried {
        let Some((status, severity)) = previous.get(rule).copied() else { continue };
        let frameworks = carried_frameworks.get(*rule).and_then(serde_json::Value::as_object);
        let keys = frameworks.into_iter().flat_map(|map| map.keys().map(String::as_str));
        posture.add(rule, status, severity, keys, excepted.contains(*rule));
    }

    // Score, state, schedule.
    let score = posture.overall.score();
    let state = match score {
        Some(score) => ComplianceState::from_score(score, posture.failing_critical),
        None => host.state,
    };
    let next_scan_at = finished_at + interval_after_success(&config, state);
    report.host_score = score;
    report.compliance_state = Some(state);
    report.scan_failures = Some(0);
    report.next_scan_at = Some(next_scan_at);

    // Drift events.
    let score_drift = match (host.score, score) {
        (Some(before), Some(after)) if (after - before).abs() >= policy.score_drift_points => {
            Some((before, after))
        }
        _ => None,
    };
    let scan_uuid = Some(message.scan_id.into_uuid());
    let mut drift_rows: Vec<NewDriftRow<'_>> = drifts
        .iter()
        .map(|drift| NewDriftRow {
            id: DriftEventId::new().into_uuid(),
            host_id: host_uuid,
            scan_id: scan_uuid,
            rule_id: Some(drift.rule_id),
            previous_status: Some(drift.previous.as_str()),
            current_status: Some(drift.current.as_str()),
            severity: Some(drift.severity.as_str()),
            previous_score: None,
            current_score: None,
            detected_at: finished_at,
        })
        .collect();
    if let Some((before, after)) = score_drift {
        drift_rows.push(NewDriftRow {
            id: DriftEventId::new().into_uuid(),
            host_id: host_uuid,
            scan_id: scan_uuid,
            rule_id: None,
            previous_status: None,
            current_status: None,
            severity: None,
            previous_score: Some(before),
            current_score: Some(after),
            detected_at: finished_at,
        });
    }
    report.rule_drifts = drifts.len();
    report.score_drift = score_drift.is_some();

    // Alerts to resolve: `rule_failed` of rules passing again, `scan_failed` (a success),
    // `host_below_threshold` once the score is back.
    let mut resolve_types = vec![SCAN_FAILED];
    if score.is_some_and(|score| score >= policy.score_threshold) {
        resolve_types.push(HOST_BELOW_THRESHOLD);
    }

    // The independent writes, pipelined on the connection (one round trip): host, drift,
    // resolutions, rule alerts, snapshot. The server still runs them one after another.
    let snapshot = score.map(|score| {
        let rule_states = serde_json::Value::Object(std::mem::take(&mut posture.rule_states));
        (score, posture.per_framework_json(), posture.per_severity_json(), rule_states)
    });
    let rule_alerts =
        if newly_failing.is_empty() { None } else { Some(raise_rule_alerts(host, message, &newly_failing)) };
    let (raised_rules, resolved) = {
        let shared: &AsyncPgConnection = conn;
        let (mut c1, mut c2, mut c3, mut c4, mut c5) = (shared, shared, shared, shared, shared);
        let mut writes: Vec<futures_util::future::BoxFuture<'_, QueryResult<usize>>> = vec![
            diesel::update(hosts::table.find(host_uuid))
                .set((
                    hosts::last_score.eq(score),
                    hosts::compliance_state.eq(state.as_str()),
                    hosts::scan_failures.eq(0),
                    hosts::next_scan_at.eq(next_scan_at),
                ))
                .execute(&mut c1),
        ];
        if !drift_rows.is_empty() {
            // One statement: a few hundred rows at most, 10 parameters each.
            writes.push(diesel::insert_into(drift_events::table).values(&drift_rows).execute(&mut c2));
        }
        if let Some((score, per_framework, per_severity, rule_states)) = snapshot {
            writes.push(
                diesel::insert_into(posture_snapshots::table)
                    .values((
                        posture_snapshots::host_id.eq(host_uuid),
                        posture_snapshots::snapshot_date.eq(finished_at.date_naive()),
                        posture_snapshots::score.eq(score),
                        posture_snapshots::per_framework.eq(per_framework),
                        posture_snapshots::per_severity.eq(per_severity),
                        posture_snapshots::rule_states.eq(rule_states),
                        posture_snapshots::created_at.eq(diesel::dsl::now),
                    ))
                    .on_conflict((posture_snapshots::host_id, posture_snapshots::snapshot_date))
                    .do_update()
                    .set((
                        posture_snapshots::score.eq(excluded(posture_snapshots::score)),
                        posture_snapshots::per_framework.eq(excluded(posture_snapshots::per_framework)),
                        posture_snapshots::per_severity.eq(excluded(posture_snapshots::per_severity)),
                        posture_snapshots::rule_states.eq(excluded(posture_snapshots::rule_states)),
                        posture_snapshots::created_at.eq(excluded(posture_snapshots::created_at)),
                    ))
                    .execute(&mut c3),
            );
        }
        let resolve = resolve_alerts_query(host.id, &resolve_types, &passing, Utc::now()).execute(&mut c4);
        let raise = async move {
            match rule_alerts {
                Some(query) => query.load::<RaisedRuleAlertRow>(&mut c5).await,
                None => Ok(Vec::new()),
            }
        };
        let (_, resolved, raised) =
            futures_util::try_join!(futures_util::future::try_join_all(writes), resolve, raise)?;
        (raised, resolved)
    };
    report.alerts_resolved = resolved;
    report.alerts_raised.extend(raised_rules.into_iter().map(|row| RaisedAlert {
        alert_type: RULE_FAILED.to_owned(),
        rule_id: Some(row.rule_id),
        opened: row.inserted,
    }));

    // Host-level alerts (rare), through `alerts::raise`.
    if let Some(score) = score {
        let reference = match (host.score, host.yesterday_score) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(reference) = reference
            && reference - score >= policy.score_drop_points
        {
            let alert = NewAlert {
                alert_type: SCORE_DROPPED.to_owned(),
                host_id: host.id,
                rule_id: None,
                severity: Severity::High,
                title: format!("Compliance score of {} dropped from {reference:.1} to {score:.1}", host.name),
                details: json!({
                    "scan_id": message.scan_id,
                    "score": score,
                    "reference_score": reference,
                    "previous_score": host.score,
                    "yesterday_score": host.yesterday_score,
                }),
            };
            raise(conn, alert, report).await?;
        }
        if score < policy.score_threshold {
            let alert = NewAlert {
                alert_type: HOST_BELOW_THRESHOLD.to_owned(),
                host_id: host.id,
                rule_id: None,
                severity: below_threshold_severity(state),
                title: format!(
                    "Compliance score of {} is {score:.1}, below {:.1}",
                    host.name, policy.score_threshold
                ),
                details: json!({
                    "scan_id": message.scan_id,
                    "score": score,
                    "threshold": policy.score_threshold,
                    "compliance_state": state,
                }),
            };
            raise(conn, alert, report).await?;
        }
    }
    let evaluated = results.len();
    if !drifts.is_empty() && drifts.len() as f64 * 100.0 >= policy.mass_drift_percent * evaluated as f64 {
        let alert = NewAlert {
            alert_type: MASS_DRIFT.to_owned(),
            host_id: host.id,
            rule_id: None,
            severity: Severity::High,
            title: format!("{} of {evaluated} rules changed status on {}", drifts.len(), host.name),
            details: json!({
                "scan_id": message.scan_id,
                "changed": drifts.len(),
                "evaluated": evaluated,
                "rules": drifts.iter().map(|drift| drift.rule_id).collect::<Vec<_>>(),
            }),
        };
        raise(conn, alert, report).await?;
    }
    Ok(())
}

fn resolve_alerts_query(
    host: HostId,
    alert_types: &[&str],
    rule_failed_rules: &[&str],
    now: DateTime<Utc>,
) -> BoxedQuery {
    let owned = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<String>>();
    diesel::sql_query(
        "UPDATE alerts SET status = 'resolved', resolved_at = $4 \
         WHERE host_id = $1 AND status <> 'resolved' \
           AND (alert_type = ANY($2) OR (alert_type = 'rule_failed' AND rule_id = ANY($3)))",
    )
    .into_boxed()
    .bind::<SqlUuid, _>(host.into_uuid())
    .bind::<Array<Text>, _>(owned(alert_types))
    .bind::<Array<Text>, _>(owned(rule_failed_rules))
    .bind::<Timestamptz, _>(now)
}

/// Resolves, in one statement, the host's unresolved alerts of the types in `alert_types`
/// and its unresolved `rule_failed` alerts for the rules in `rule_failed_rules` (rules
/// that pass again); `resolved_at = now`. Returns how many were resolved. Acknowledged
/// alerts are resolved too (the condition is gone).
pub async fn resolve_alerts(
    conn: &mut AsyncPgConnection,
    host: HostId,
    alert_types: &[&str],
    rule_failed_rules: &[&str],
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    if alert_types.is_empty() && rule_failed_rules.is_empty() {
        return Ok(0);
    }
    Ok(resolve_alerts_query(host, alert_types, rule_failed_rules, now).execute(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            interval_critical_minutes: 60,
            interval_low_minutes: 120,
            interval_partial_minutes: 360,
            interval_mostly_compliant_minutes: 720,
            interval_compliant_minutes: 1440,
            interval_unknown_minutes: 0,
            max_interval_minutes: 2880,
            failure_backoff_base_minutes: 5,
            updated_by: None,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn drift_needs_a_change_with_pass_or_fail_on_one_side() {
        use FindingStatus::*;
        assert!(is_drift(Pass, Fail));
        assert!(is_drift(Fail, Pass));
        assert!(is_drift(Error, Fail));
        assert!(is_drift(Pass, NotApplicable));
        assert!(!is_drift(Pass, Pass));
        assert!(!is_drift(Error, Manual));
        assert!(!is_drift(NotApplicable, Error));
    }

    #[test]
    fn failure_backoff_doubles_and_is_capped_by_the_state_interval() {
        let config = config();
        let minutes = |state, n| delay_after_failure(&config, state, n).num_minutes();
        let unknown: Vec<i64> = (1..=11).map(|n| minutes(ComplianceState::Unknown, n)).collect();
        assert_eq!(unknown, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 2880]);
        let critical: Vec<i64> = (1..=6).map(|n| minutes(ComplianceState::Critical, n)).collect();
        assert_eq!(critical, [5, 10, 20, 40, 60, 60]);
        assert_eq!(minutes(ComplianceState::Compliant, 0), 5, "never 0");
    }

    #[test]
    fn intervals_after_success_are_never_zero() {
        let mut config = config();
        assert_eq!(interval_after_success(&config, ComplianceState::Critical), TimeDelta::hours(1));
        assert_eq!(interval_after_success(&config, ComplianceState::Unknown), TimeDelta::hours(48));
        config.interval_critical_minutes = 0;
        assert_eq!(interval_after_success(&config, ComplianceState::Critical), TimeDelta::minutes(5));
    }

    #[test]
    fn posture_excludes_waived_and_undecided_results() {
        let mut posture = HostPosture::default();
        posture.add("a", FindingStatus::Pass, Severity::High, ["cis"], false);
        posture.add("b", FindingStatus::Fail, Severity::Critical, ["cis", "stig"], true);
        posture.add("c", FindingStatus::Fail, Severity::Low, ["stig"], false);
        posture.add("d", FindingStatus::Error, Severity::Critical, ["cis"], false);
        assert_eq!(posture.overall.score(), Some(50.0));
        assert!(!posture.failing_critical, "the failing critical rule is waived");
        assert_eq!(
            posture.per_framework_json(),
            json!({
                "cis": {"passed": 1, "failed": 0, "score": 100.0},
                "stig": {"passed": 0, "failed": 1, "score": 0.0},
            })
        );
        assert_eq!(posture.per_severity_json()["high"], json!({"passed": 1, "failed": 0, "score": 100.0}));
        assert_eq!(posture.rule_states.len(), 4, "every rule has its status, waived or not");
    }
}
