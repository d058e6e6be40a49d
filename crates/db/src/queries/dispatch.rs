//! The scheduled-scan dispatcher and the stale-scan reaper (run by every `maintenance`
//! instance; no leader, ARCHITECTURE.md §5).
//!
//! # Dispatching due hosts ([`dispatch_due_scans`])
//! One transaction claims up to `limit` due hosts with `FOR UPDATE SKIP LOCKED`, moves each
//! one's `next_scan_at` to `now + lease`, and writes one `scheduled` scan (status `queued`)
//! per host and its `ScanRequestedV1` outbox row for queue `compliance_scanning` (both with
//! multi-row inserts). Several dispatchers at once never claim the same host: a host locked
//! by one is skipped by the others, and once that transaction commits the host is no
//! longer due. `result-processor` sets the real next time when the scan finishes; the lease
//! only keeps the host from being dispatched again meanwhile, and brings it back if the
//! scan is lost without a trace.
//!
//! A host is due when `next_scan_at <= now` and it is not paused (`maintenance_until` in
//! the future, or a maintenance window active at `now`), not `down` (liveness), and has no
//! `queued` or `running` scan (of either trigger). Due hosts are taken by
//! [`DISPATCH_PRIORITY`] of their compliance state, then most overdue first:
//! `critical` (known-bad hosts, fastest feedback on remediation), `unknown` (never scanned:
//! no baseline yet; right after critical so onboarding thousands of hosts never delays the
//! rescans of the few critical ones), then `low`, `partial`, `mostly_compliant`,
//! `compliant`.
//!
//! # Stale scans ([`reap_stale_scans`])
//! An active scan is stale when its deadline has passed:
//! * `running` with `lease_expires_at <= now` — its worker died or hung (the worker sets
//!   the lease at start, longer than its whole-scan timeout);
//! * `queued` with no `lease_expires_at` and `queued_at <= now - queued_timeout` — its
//!   message may have been lost;
//! * `queued` with `lease_expires_at <= now` — a scan this reaper already re-enqueued.
//!
//! What happens (rows locked with `FOR UPDATE SKIP LOCKED`, so two reapers never handle
//! the same scan):
//! * `running`, `attempts < max_attempts` → back to `queued` and re-enqueued;
//! * `queued`, never re-enqueued → re-enqueued;
//! * otherwise (a second abandoned run, or a re-enqueued request still not picked up) →
//!   `failed` with reason [`ABANDONED`], `finished_at = now`, and the host backs off as after
//!   any failed scan (`scan_failures + 1`, `next_scan_at = now +`
//!   [`results::delay_after_failure`]); no alert is raised here.
//!
//! Re-enqueuing writes a new `ScanRequestedV1` outbox row to the queue of the scan's
//! trigger ([`queue_for`]: manual → `scans`, scheduled → `compliance_scanning`) and sets
//! `lease_expires_at = now + queued_timeout` on the queued scan: for a `queued` scan that
//! column is the deadline for a worker to pick the re-sent request up (and the mark that it
//! was re-sent once); a worker's start overwrites it with the run's lease. A duplicate
//! request is harmless: the worker's start is keyed by the scan's status. Each scan is thus
//! sent at most three times (request, a lost-message resend, one abandoned-run retry) and
//! always ends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, MessageId, ScanId, UserId};
use openwatch_common::messages::Message;
use openwatch_common::messages::v1::ScanRequestedV1;
use openwatch_common::queues::QueueName;
use uuid::Uuid;

use crate::DbError;
use crate::queries::{results, scheduler};
use crate::schema::{hosts, outbox, scans};

/// The `failure_reason` of a scan the reaper gave up on.
pub const ABANDONED: &str = "abandoned";

/// The order in which due hosts are dispatched, by compliance state (see the module docs).
pub const DISPATCH_PRIORITY: [ComplianceState; 6] = [
    ComplianceState::Critical,
    ComplianceState::Unknown,
    ComplianceState::Low,
    ComplianceState::Partial,
    ComplianceState::MostlyCompliant,
    ComplianceState::Compliant,
];

/// Rows per multi-row INSERT: 6 bind parameters each (scans and outbox alike), far below
/// PostgreSQL's 65,535 limit.
const ROWS_PER_STATEMENT: usize = 5_000;

/// The queue a scan request goes to: manual scans to `scans` (high priority), scheduled
/// ones to `compliance_scanning`.
pub const fn queue_for(trigger: ScanTrigger) -> QueueName {
    match trigger {
        ScanTrigger::Manual => QueueName::Scans,
        ScanTrigger::Scheduled => QueueName::ComplianceScanning,
    }
}

/// A scan the dispatcher queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedScan {
    /// The new scan.
    pub scan_id: ScanId,
    /// Its host.
    pub host_id: HostId,
    /// The host's compliance state (its dispatch priority).
    pub compliance_state: ComplianceState,
    /// When the host was due (its `next_scan_at` before the claim).
    pub due_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    compliance_state: String,
    #[diesel(sql_type = Timestamptz)]
    due_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = scans)]
struct ScheduledScanRow {
    id: Uuid,
    host_id: Uuid,
    trigger: &'static str,
    queued_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct OutboxRow<'a> {
    queue: &'static str,
    message_id: Uuid,
    message_type: &'static str,
    version: i16,
    payload: serde_json::Value,
    traceparent: Option<&'a str>,
}

impl<'a> OutboxRow<'a> {
    /// `message` as an outbox row for `queue`, with a fresh message id.
    fn scan_requested(
        queue: QueueName,
        message: &ScanRequestedV1,
        traceparent: Option<&'a str>,
    ) -> Result<Self, DbError> {
        let version = i16::try_from(ScanRequestedV1::VERSION).map_err(|_| {
            DbError::InvalidData(format!(
                "message version {} does not fit SMALLINT",
                ScanRequestedV1::VERSION
            ))
        })?;
        Ok(OutboxRow {
            queue: queue.as_str(),
            message_id: MessageId::new().into_uuid(),
            message_type: ScanRequestedV1::TYPE,
            version,
            payload: serde_json::to_value(message).map_err(DbError::Encode)?,
            traceparent,
        })
    }
}

/// `at + duration`, saturating at the largest timestamp.
fn after(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - duration`, saturating at the smallest timestamp.
fn before(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_sub_signed(delta))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The claim statement: `$1` now, `$2` limit, `$3` the new `next_scan_at`.
fn claim_statement() -> String {
    // One CASE arm per state, generated from the constant so it can never miss one.
    let mut priority = String::from("CASE h.compliance_state");
    for (rank, state) in DISPATCH_PRIORITY.iter().enumerate() {
        priority.push_str(&format!(" WHEN '{}' THEN {rank}", state.as_str()));
    }
    priority.push_str(&format!(" ELSE {} END", DISPATCH_PRIORITY.len()));
    format!(
        "WITH due AS ( \
             SELECT h.id, h.compliance_state, h.next_scan_at, {priority} AS priority \
               FROM hosts h \
              WHERE h.next_scan_at <= $1 \
                AND (h.maintenance_until IS NULL OR h.maintenance_until <= $1) \
                AND h.monitoring_state <> 'down' \
                AND NOT EXISTS (SELECT 1 FROM host_maintenance_windows w \
                                 WHERE w.host_id = h.id AND w.starts_at <= $1 AND w.ends_at > $1) \
                AND NOT EXISTS (SELECT 1 FROM scans s \
                                 WHERE s.host_id = h.id AND s.status IN ('queued', 'running')) \
              ORDER BY priority, h.next_scan_at, h.id \
              LIMIT $2 \
                FOR UPDATE OF h SKIP LOCKED), \
         claimed AS ( \
             UPDATE hosts h SET next_scan_at = $3 FROM due WHERE h.id = due.id \
             RETURNING h.id, due.compliance_state, due.next_scan_at AS due_at, due.priority) \
         SELECT id, compliance_state, due_at FROM claimed ORDER BY priority, due_at, id"
    )
}

/// Claims up to `limit` due hosts at `now` (see the module docs for "due" and the order),
/// moves their `next_scan_at` to `now + lease`, and queues one `scheduled` scan per host
/// with its `ScanRequestedV1` outbox row for `compliance_scanning` (carrying
/// `traceparent`) — all in one transaction (a savepoint when the caller has one open).
/// Returns the scans in dispatch order; fewer than `limit` means no due host is left
/// (except hosts another dispatcher holds right now). `limit` 0 does nothing.
pub async fn dispatch_due_scans(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: u32,
    lease: Duration,
    traceparent: Option<&str>,
) -> Result<Vec<DispatchedScan>, DbError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let next_scan_at = after(now, lease);
    conn.transaction::<_, DbError, _>(async |conn| {
        let claimed: Vec<ClaimedRow> = diesel::sql_query(claim_statement())
            .bind::<Timestamptz, _>(now)
            .bind::<BigInt, _>(i64::from(limit))
            .bind::<Timestamptz, _>(next_scan_at)
            .load(conn)
            .await?;
        let dispatched = claimed
            .into_iter()
            .map(|row| {
                let state = row
                    .compliance_state
                    .parse()
                    .map_err(|e| DbError::InvalidData(format!("host {}: compliance_state: {e}", row.id)))?;
                Ok(DispatchedScan {
                    scan_id: ScanId::new(),
                    host_id: HostId(row.id),
                    compliance_state: state,
                    due_at: row.due_at,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;

        let scan_rows: Vec<ScheduledScanRow> = dispatched
            .iter()
            .map(|d| ScheduledScanRow {
                id: d.scan_id.into_uuid(),
                host_id: d.host_id.into_uuid(),
                trigger: ScanTrigger::Scheduled.as_str(),
                queued_at: now,
            })
            .collect();
        let outbox_rows = dispatched
            .iter()
            .map(|d| {
                let message = ScanRequestedV1 {
                    scan_id: d.scan_id,
                    host_id: d.host_id,
                    trigger: ScanTrigger::Scheduled,
                    framework: None,
                    requested_by: None,
                    requested_at: now,
                };
                OutboxRow::scan_requested(queue_for(ScanTrigger::Scheduled), &message, traceparent)
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        for chunk in scan_rows.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(scans::table).values(chunk).execute(conn).await?;
        }
        for chunk in outbox_rows.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(outbox::table).values(chunk).execute(conn).await?;
        }
        Ok(dispatched)
    })
    .await
}

/// How the reaper treats stale scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalePolicy {
    /// A `running` scan past its lease is re-enqueued while its `attempts` (worker starts)
    /// are below this, failed [`ABANDONED`] otherwise (2: one retry).
    pub max_attempts: u32,
    /// A `queued` scan not picked up within this is re-enqueued once, then failed after
    /// the same time again. Must exceed the longest wait a request may have in its queue.
    pub queued_timeout: Duration,
    /// Scans handled per call (one transaction).
    pub batch: u32,
}

impl Default for StalePolicy {
    fn default() -> Self {
        StalePolicy { max_attempts: 2, queued_timeout: Duration::from_secs(3_600), batch: 200 }
    }
}

/// What the reaper did with a stale scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaleAction {
    /// Back to (or still) `queued`, with a new request in the outbox.
    Requeued,
    /// Failed with reason [`ABANDONED`].
    Failed,
}

impl StaleAction {
    /// Stable spelling (metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            StaleAction::Requeued => "requeued",
            StaleAction::Failed => "failed",
        }
    }
}

/// A stale scan and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedScan {
    /// The scan.
    pub scan_id: ScanId,
    /// Its host.
    pub host_id: HostId,
    /// Manual or scheduled (decides the queue of a re-sent request).
    pub trigger: ScanTrigger,
    /// Its status when found stale: `running` or `queued`.
    pub was: ScanStatus,
    /// What the reaper did.
    pub action: StaleAction,
}

#[derive(QueryableByName)]
struct StaleRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    host_id: Uuid,
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = Nullable<Text>)]
    framework: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    requested_by: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    queued_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
}

/// Finds up to `policy.batch` stale scans at `now` and re-enqueues or fails each (see the
/// module docs), in one transaction (a savepoint when the caller has one open); returns
/// what was done, oldest scan first. Fewer than `policy.batch` means none is left (except
/// scans another reaper or a worker holds right now). Re-sent requests carry
/// `traceparent`.
pub async fn reap_stale_scans(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    policy: &StalePolicy,
    traceparent: Option<&str>,
) -> Result<Vec<ReapedScan>, DbError> {
    if policy.batch == 0 {
        return Ok(Vec::new());
    }
    let queued_cutoff = before(now, policy.queued_timeout);
    let redelivery_deadline = after(now, policy.queued_timeout);
    conn.transaction::<_, DbError, _>(async |conn| {
        // `scans_active_idx` (partial on the active statuses) serves this.
        let stale: Vec<StaleRow> = diesel::sql_query(
            "SELECT id, host_id, trigger, framework, status, requested_by, queued_at, attempts, \
                    lease_expires_at \
               FROM scans \
              WHERE status IN ('queued', 'running') \
                AND ((lease_expires_at IS NOT NULL AND lease_expires_at <= $1) \
                  OR (lease_expires_at IS NULL AND queued_at <= $2)) \
              ORDER BY queued_at, id \
              LIMIT $3 \
                FOR UPDATE SKIP LOCKED",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(queued_cutoff)
        .bind::<BigInt, _>(i64::from(policy.batch))
        .load(conn)
        .await?;

        let mut reaped = Vec::with_capacity(stale.len());
        let mut outbox_rows = Vec::new();
        for row in stale {
            let invalid = |what: String| DbError::InvalidData(format!("scan {}: {what}", row.id));
            let trigger: ScanTrigger = row.trigger.parse().map_err(|e| invalid(format!("{e}")))?;
            let was: ScanStatus = row.status.parse().map_err(|e| invalid(format!("{e}")))?;
            let attempts = u32::try_from(row.attempts).unwrap_or(0);
            let action = match was {
                ScanStatus::Running if attempts < policy.max_attempts => StaleAction::Requeued,
                ScanStatus::Queued if row.lease_expires_at.is_none() => StaleAction::Requeued,
                _ => StaleAction::Failed,
            };
            if action == StaleAction::Requeued {
                let message = ScanRequestedV1 {
                    scan_id: ScanId(row.id),
                    host_id: HostId(row.host_id),
                    trigger,
                    framework: row.framework,
                    requested_by: row.requested_by.map(UserId),
                    requested_at: row.queued_at,
                };
                outbox_rows.push(OutboxRow::scan_requested(queue_for(trigger), &message, traceparent)?);
            }
            reaped.push(ReapedScan {
                scan_id: ScanId(row.id),
                host_id: HostId(row.host_id),
                trigger,
                was,
                action,
            });
        }

        let ids_with = |action: StaleAction| -> Vec<Uuid> {
            reaped.iter().filter(|r| r.action == action).map(|r| r.scan_id.into_uuid()).collect()
        };
        let requeued = ids_with(StaleAction::Requeued);
        if !requeued.is_empty() {
            diesel::update(scans::table.filter(scans::id.eq_any(&requeued)))
                .set((
                    scans::status.eq(ScanStatus::Queued.as_str()),
                    scans::lease_expires_at.eq(Some(redelivery_deadline)),
                ))
                .execute(conn)
                .await?;
            for chunk in outbox_rows.chunks(ROWS_PER_STATEMENT) {
                diesel::insert_into(outbox::table).values(chunk).execute(conn).await?;
            }
        }
        let failed = ids_with(StaleAction::Failed);
        if !failed.is_empty() {
            diesel::update(scans::table.filter(scans::id.eq_any(&failed)))
                .set((
                    scans::status.eq(ScanStatus::Failed.as_str()),
                    scans::failure_reason.eq(Some(ABANDONED)),
                    scans::finished_at.eq(Some(now)),
                    scans::lease_expires_at.eq(None::<DateTime<Utc>>),
                ))
                .execute(conn)
                .await?;
            let mut failures_per_host: BTreeMap<Uuid, u32> = BTreeMap::new();
            for scan in reaped.iter().filter(|r| r.action == StaleAction::Failed) {
                *failures_per_host.entry(scan.host_id.into_uuid()).or_default() += 1;
            }
            back_off_hosts(conn, &failures_per_host, now).await?;
        }
        Ok(reaped)
    })
    .await
}

#[derive(QueryableByName)]
struct BackoffRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    compliance_state: String,
    #[diesel(sql_type = Integer)]
    scan_failures: i32,
}

/// Counts the abandoned scans as failures of their hosts (locked in id order, the order
/// manual scan requests use) and delays each host's next scan as `result-processor` does
/// after a failed scan.
async fn back_off_hosts(
    conn: &mut AsyncPgConnection,
    failures_per_host: &BTreeMap<Uuid, u32>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let config = scheduler::get(conn).await?;
    let ids: Vec<Uuid> = failures_per_host.keys().copied().collect();
    let rows: Vec<BackoffRow> = diesel::sql_query(
        "SELECT id, compliance_state, scan_failures FROM hosts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    for row in rows {
        let state: ComplianceState = row
            .compliance_state
            .parse()
            .map_err(|e| DbError::InvalidData(format!("host {}: compliance_state: {e}", row.id)))?;
        let added = failures_per_host.get(&row.id).copied().unwrap_or(1);
        let failures = u32::try_from(row.scan_failures).unwrap_or(0).saturating_add(added);
        let delay = results::delay_after_failure(&config, state, failures);
        let next_scan_at = now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC);
        diesel::update(hosts::table.find(row.id))
            .set((
                hosts::scan_failures.eq(i32::try_from(failures).unwrap_or(i32::MAX)),
                hosts::next_scan_at.eq(next_scan_at),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_orders_every_state_once() {
        let mut ordered = DISPATCH_PRIORITY.to_vec();
        ordered.sort();
        let mut all = ComplianceState::ALL.to_vec();
        all.sort();
        assert_eq!(ordered, all);
        assert_eq!(&DISPATCH_PRIORITY[..2], &[ComplianceState::Critical, ComplianceState::Unknown]);
    }

    #[test]
    fn the_claim_ranks_each_state_by_its_priority() {
        let statement = claim_statement();
        for (rank, state) in DISPATCH_PRIORITY.iter().enumerate() {
            assert!(statement.contains(&format!("WHEN '{}' THEN {rank}", state.as_str())), "{statement}");
        }
    }

    #[test]
    fn requests_go_to_the_queue_of_their_trigger() {
        assert_eq!(queue_for(ScanTrigger::Manual), QueueName::Scans);
        assert_eq!(queue_for(ScanTrigger::Scheduled), QueueName::ComplianceScanning);
    }

    #[test]
    fn deadlines_saturate() {
        let now = Utc::now();
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(after(now, Duration::from_secs(900)), now + TimeDelta::seconds(900));
    }
}
