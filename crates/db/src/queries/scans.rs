//! Scans and their findings.
//!
//! A scan row is written `queued` (with its outbox message) by whoever requests it; the
//! worker's `ScanCompletedV1` is recorded here by `result-processor`. Recording is
//! idempotent: the scan row is locked, a scan already in a terminal state is left alone,
//! and findings are keyed by `(scan_id, rule_id)`, so a redelivered message never
//! duplicates anything.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{FindingStatus, ScanStatus, ScanTrigger, compliance_score};
use openwatch_common::ids::{HostId, ScanId, UserId};
use openwatch_common::messages::v1::ScanCompletedV1;
use uuid::Uuid;

use crate::DbError;
use crate::schema::{hosts, scan_findings, scans};

/// Findings per INSERT statement: 9 bind parameters each stays far below PostgreSQL's
/// 65,535 parameter limit while keeping round trips few.
const FINDINGS_PER_STATEMENT: usize = 2_000;

/// A scan to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScan {
    /// New id (`ScanId::new()`).
    pub id: ScanId,
    /// The host to scan.
    pub host_id: HostId,
    /// Manual or scheduled.
    pub trigger: ScanTrigger,
    /// Framework filter, if any.
    pub framework: Option<String>,
    /// Requesting user, for manual scans.
    pub requested_by: Option<UserId>,
}

/// A scan's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSummary {
    /// Id.
    pub id: ScanId,
    /// Scanned host.
    pub host_id: HostId,
    /// Life-cycle status.
    pub status: ScanStatus,
    /// Rules evaluated in total.
    pub rules_total: u32,
    /// Score in percent, once completed with applicable rules.
    pub score: Option<f64>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What [`record_completed`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// The result was stored: this many findings, this score.
    Recorded {
        /// Findings written.
        findings: usize,
        /// Score in percent (`None` when no rule passed or failed).
        score: Option<f64>,
    },
    /// The scan was already in a terminal state: nothing was changed (a redelivery).
    AlreadyFinished(ScanStatus),
    /// No such scan (deleted with its host, or never written).
    UnknownScan,
}

/// Inserts a `queued` scan. Call inside the transaction that also enqueues its
/// `ScanRequestedV1`.
pub async fn insert_scan(conn: &mut AsyncPgConnection, scan: &NewScan) -> Result<(), DbError> {
    diesel::insert_into(scans::table)
        .values((
            scans::id.eq(scan.id.into_uuid()),
            scans::host_id.eq(scan.host_id.into_uuid()),
            scans::trigger.eq(scan.trigger.as_str()),
            scans::framework.eq(scan.framework.as_deref()),
            scans::requested_by.eq(scan.requested_by.map(UserId::into_uuid)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = scans, check_for_backend(diesel::pg::Pg))]
struct ScanSummaryRow {
    id: Uuid,
    host_id: Uuid,
    status: String,
    rules_total: i32,
    score: Option<f64>,
    failure_reason: Option<String>,
    finished_at: Option<DateTime<Utc>>,
}

/// The current state of a scan.
pub async fn get_scan(conn: &mut AsyncPgConnection, id: ScanId) -> Result<ScanSummary, DbError> {
    let row: ScanSummaryRow =
        scans::table.find(id.into_uuid()).select(ScanSummaryRow::as_select()).first(conn).await?;
    Ok(ScanSummary {
        id: row.id.into(),
        host_id: row.host_id.into(),
        status: row.status.parse().map_err(|e| DbError::InvalidData(format!("scans.status: {e}")))?,
        rules_total: u32::try_from(row.rules_total).unwrap_or(0),
        score: row.score,
        failure_reason: row.failure_reason,
        finished_at: row.finished_at,
    })
}

/// Number of findings stored for a scan.
pub async fn count_findings(conn: &mut AsyncPgConnection, id: ScanId) -> Result<i64, DbError> {
    Ok(scan_findings::table
        .filter(scan_findings::scan_id.eq(id.into_uuid()))
        .count()
        .get_result(conn)
        .await?)
}

#[derive(Insertable)]
#[diesel(table_name = scan_findings)]
struct NewFindingRow<'a> {
    scan_id: Uuid,
    rule_id: &'a str,
    host_id: Uuid,
    status: &'static str,
    severity: &'static str,
    reason: Option<&'a str>,
    evidence: serde_json::Value,
    frameworks: serde_json::Value,
    duration_us: i64,
}

/// Records a finished scan: its findings (bulk, multi-row inserts), status, timings and
/// score; on completion also the host's last score and detected platform. Run it in one
/// transaction; it locks the scan row, so concurrent deliveries of the same message
/// serialise and the second sees [`RecordOutcome::AlreadyFinished`].
pub async fn record_completed(
    conn: &mut AsyncPgConnection,
    message: &ScanCompletedV1,
) -> Result<RecordOutcome, DbError> {
    let scan_id = message.scan_id.into_uuid();
    let current: Option<String> =
        scans::table.find(scan_id).select(scans::status).for_update().first(conn).await.optional()?;
    let Some(current) = current else { return Ok(RecordOutcome::UnknownScan) };
    let current: ScanStatus =
        current.parse().map_err(|e| DbError::InvalidData(format!("scans.status: {e}")))?;
    if current.is_terminal() {
        return Ok(RecordOutcome::AlreadyFinished(current));
    }
    if !message.outcome.is_terminal() {
        return Err(DbError::InvalidData(format!(
            "scan_completed carries non-terminal outcome `{}`",
            message.outcome
        )));
    }

    let host_id = message.host_id.into_uuid();
    let rows = message
        .results
        .iter()
        .map(|result| {
            Ok(NewFindingRow {
                scan_id,
                rule_id: &result.rule_id,
                host_id,
                status: result.status.as_str(),
                severity: result.severity.as_str(),
                reason: result.reason.as_deref(),
                evidence: serde_json::to_value(&result.evidence).map_err(DbError::Encode)?,
                frameworks: serde_json::to_value(&result.frameworks).map_err(DbError::Encode)?,
                duration_us: i64::try_from(result.duration_us).unwrap_or(i64::MAX),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let mut written = 0;
    for chunk in rows.chunks(FINDINGS_PER_STATEMENT) {
        written += diesel::insert_into(scan_findings::table)
            .values(chunk)
            .on_conflict(on_constraint("scan_findings_pkey"))
            .do_nothing()
            .execute(conn)
            .await?;
    }

    let count = |status| message.results.iter().filter(|r| r.status == status).count() as u64;
    let score = compliance_score(count(FindingStatus::Pass), count(FindingStatus::Fail));
    let rules = i32::try_from(message.results.len()).unwrap_or(i32::MAX);
    diesel::update(scans::table.find(scan_id))
        .set((
            scans::status.eq(message.outcome.as_str()),
            scans::started_at.eq(message.started_at),
            scans::finished_at.eq(message.finished_at),
            scans::rules_total.eq(rules),
            scans::rules_done.eq(rules),
            scans::score.eq(score),
            scans::failure_reason.eq(message.failure_reason.as_deref()),
            scans::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;

    if message.outcome == ScanStatus::Completed {
        diesel::update(hosts::table.find(host_id))
            .set((hosts::last_score.eq(score), hosts::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
    }
    if let Some(platform) = &message.platform {
        diesel::update(hosts::table.find(host_id))
            .set((hosts::os_family.eq(&platform.family), hosts::os_version.eq(&platform.version)))
            .execute(conn)
            .await?;
    }
    Ok(RecordOutcome::Recorded { findings: written, score })
}
