//! Version 1 of the message contracts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Message;
use crate::domain::{FindingStatus, ScanStatus, ScanTrigger, Severity};
use crate::ids::{HostId, ScanId, UserId};
use crate::queues::QueueName;

/// A scan of one host was requested (manually or by the schedule). The scan row already
/// exists in `queued` state; the worker runs it and answers with [`ScanCompletedV1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRequestedV1 {
    /// The scan to run.
    pub scan_id: ScanId,
    /// The host to scan.
    pub host_id: HostId,
    /// Manual or scheduled; decides the queue and priority.
    pub trigger: ScanTrigger,
    /// Restrict evaluation to rules mapped to this framework (e.g. `cis-debian12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// Who asked for it; `None` for scheduled scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<UserId>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Message for ScanRequestedV1 {
    const TYPE: &'static str = "scan_requested";
    const VERSION: u16 = 1;
    const QUEUE: QueueName = QueueName::Scans;
}

/// A scan finished (completed, failed or cancelled), carrying every rule result with its
/// evidence. `result-processor` stores it idempotently, keyed by `scan_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanCompletedV1 {
    /// The scan that finished.
    pub scan_id: ScanId,
    /// The scanned host.
    pub host_id: HostId,
    /// `completed`, `failed` or `cancelled`.
    pub outcome: ScanStatus,
    /// When the worker started it.
    pub started_at: DateTime<Utc>,
    /// When the worker finished it.
    pub finished_at: DateTime<Utc>,
    /// Why it failed (e.g. `host_key_mismatch`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The detected platform, when detection got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformV1>,
    /// One entry per evaluated rule.
    #[serde(default)]
    pub results: Vec<RuleResultV1>,
}

impl Message for ScanCompletedV1 {
    const TYPE: &'static str = "scan_completed";
    const VERSION: u16 = 1;
    const QUEUE: QueueName = QueueName::Results;
}

/// The operating system a scan detected (from `/etc/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformV1 {
    /// `ID` of os-release, e.g. `debian`, `ubuntu`, `rhel`, `rocky`.
    pub family: String,
    /// `VERSION_ID` of os-release, e.g. `12`, `22.04`, `9.4`.
    pub version: String,
}

/// The result of one rule on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResultV1 {
    /// The rule's stable id.
    pub rule_id: String,
    /// Outcome.
    pub status: FindingStatus,
    /// The rule's severity.
    pub severity: Severity,
    /// Why the status is `error`, `not_applicable` or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was examined and what was found.
    pub evidence: EvidenceV1,
    /// Framework id → control ids this rule implements.
    #[serde(default)]
    pub frameworks: BTreeMap<String, Vec<String>>,
    /// Evaluation time of this rule, in microseconds.
    pub duration_us: u64,
}

/// Evidence of one result: enough for an auditor to see why it passed or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceV1 {
    /// What was examined: a file path or a command.
    pub source: String,
    /// A bounded raw excerpt of what was read.
    pub excerpt: String,
    /// What the rule expects, in words or values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What was actually found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// Check that a host is alive (TCP reachability of its SSH port) and record its
/// monitoring state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCheckRequestedV1 {
    /// The host to check.
    pub host_id: HostId,
    /// When the check was requested.
    pub requested_at: DateTime<Utc>,
}

impl Message for HostCheckRequestedV1 {
    const TYPE: &'static str = "host_check_requested";
    const VERSION: u16 = 1;
    const QUEUE: QueueName = QueueName::HostMonitoring;
}

/// A housekeeping job to run once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceJobRequestedV1 {
    /// Which job.
    pub job: MaintenanceJob,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Message for MaintenanceJobRequestedV1 {
    const TYPE: &'static str = "maintenance_job_requested";
    const VERSION: u16 = 1;
    const QUEUE: QueueName = QueueName::Maintenance;
}

/// The housekeeping jobs `maintenance` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceJob {
    /// Mark approved exceptions past their expiry as `expired`.
    ExpireExceptions,
    /// Delete refresh sessions that expired or were revoked more than a day ago.
    PurgeExpiredSessions,
}
