//! Scans and their findings.
//!
//! A scan row is written `queued` (with its outbox message) by whoever requests it; the
//! worker's `ScanCompletedV1` is recorded here by `result-processor`. Recording is
//! idempotent: the scan row is locked, a scan already in a terminal state is left alone,
//! and findings are keyed by `(scan_id, rule_id)`, so a redelivered message never
//! duplicates anything.
//!
//! Manual requests ([`request_manual_scans`]) write every scan and its `ScanRequestedV1`
//! outbox row with multi-row inserts in the caller's transaction, and postpone each host's
//! next automatic scan by its current interval (see the function), so a manual scan is not
//! followed at once by a scheduled one. Users list scans ([`list_scans`]) and findings
//! ([`list_findings`], each with whether an active exception waives it) and cancel queued
//! or running scans ([`cancel_scan`]).

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{
    ComplianceState, FindingStatus, ScanStatus, ScanTrigger, Severity, compliance_score,
};
use openwatch_common::ids::{HostId, MessageId, ScanId, UserId};
use openwatch_common::messages::Message;
use openwatch_common::messages::v1::{ScanCompletedV1, ScanRequestedV1};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest, SortOrder};
use crate::queries::scheduler;
use crate::schema::{hosts, outbox, scan_findings, scans};

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
    // One statement for all findings: parallel arrays unnested server-side. Compared with
    // multi-row VALUES this binds 7 parameters instead of 9 per row and lets PostgreSQL plan
    // once (see docs/PERFORMANCE.md, result ingest).
    let results = &message.results;
    let rule_ids: Vec<&str> = results.iter().map(|r| r.rule_id.as_str()).collect();
    let statuses: Vec<&str> = results.iter().map(|r| r.status.as_str()).collect();
    let severities: Vec<&str> = results.iter().map(|r| r.severity.as_str()).collect();
    let reasons: Vec<Option<&str>> = results.iter().map(|r| r.reason.as_deref()).collect();
    let evidence = results
        .iter()
        .map(|r| serde_json::to_value(&r.evidence).map_err(DbError::Encode))
        .collect::<Result<Vec<_>, _>>()?;
    let frameworks = results
        .iter()
        .map(|r| serde_json::to_value(&r.frameworks).map_err(DbError::Encode))
        .collect::<Result<Vec<_>, _>>()?;
    let durations: Vec<i64> =
        results.iter().map(|r| i64::try_from(r.duration_us).unwrap_or(i64::MAX)).collect();
    let written = diesel::sql_query(
        "INSERT INTO scan_findings \
           (scan_id, rule_id, host_id, status, severity, reason, evidence, frameworks, duration_us) \
         SELECT $1, f.rule_id, $2, f.status, f.severity, f.reason, f.evidence, f.frameworks, f.duration_us \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::jsonb[], $9::int8[]) \
           AS f(rule_id, status, severity, reason, evidence, frameworks, duration_us) \
         ON CONFLICT ON CONSTRAINT scan_findings_pkey DO NOTHING",
    )
    .bind::<diesel::sql_types::Uuid, _>(scan_id)
    .bind::<diesel::sql_types::Uuid, _>(host_id)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(rule_ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(statuses)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(severities)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Nullable<diesel::sql_types::Text>>, _>(reasons)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Jsonb>, _>(evidence)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Jsonb>, _>(frameworks)
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(durations)
    .execute(conn)
    .await?;

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

    // One UPDATE for the host: last score on completion, detected platform when known.
    let completed = message.outcome == ScanStatus::Completed;
    if completed || message.platform.is_some() {
        let family = message.platform.as_ref().map(|p| p.family.as_str());
        let version = message.platform.as_ref().map(|p| p.version.as_str());
        diesel::sql_query(
            "UPDATE hosts SET \
               last_score = CASE WHEN $2 THEN $3 ELSE last_score END, \
               os_family = coalesce($4, os_family), os_version = coalesce($5, os_version) \
             WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(host_id)
        .bind::<diesel::sql_types::Bool, _>(completed)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Double>, _>(score)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(family)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(version)
        .execute(conn)
        .await?;
    }
    Ok(RecordOutcome::Recorded { findings: written, score })
}

/// Rows per multi-row INSERT when requesting scans: 6 bind parameters each (scans and
/// outbox alike), far below PostgreSQL's 65,535 limit.
const SCANS_PER_STATEMENT: usize = 5_000;

/// Written to `failure_reason` by [`cancel_scan`].
pub const CANCELLED_BY_USER: &str = "cancelled by user";

/// A scan as listed and shown to users.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Id.
    pub id: ScanId,
    /// Scanned host.
    pub host_id: HostId,
    /// Manual or scheduled.
    pub trigger: ScanTrigger,
    /// Framework filter, if any.
    pub framework: Option<String>,
    /// Life-cycle status.
    pub status: ScanStatus,
    /// Requesting user (`None` for scheduled scans or a deleted account).
    pub requested_by: Option<UserId>,
    /// When it was requested.
    pub queued_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Rules to evaluate.
    pub rules_total: u32,
    /// Rules evaluated so far.
    pub rules_done: u32,
    /// Score in percent, once completed with applicable rules.
    pub score: Option<f64>,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// Dispatch attempts so far.
    pub attempts: u32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = scans, check_for_backend(diesel::pg::Pg))]
struct ScanRow {
    id: Uuid,
    host_id: Uuid,
    trigger: String,
    framework: Option<String>,
    status: String,
    requested_by: Option<Uuid>,
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    rules_total: i32,
    rules_done: i32,
    score: Option<f64>,
    failure_reason: Option<String>,
    attempts: i32,
}

impl TryFrom<ScanRow> for Scan {
    type Error = DbError;

    fn try_from(row: ScanRow) -> Result<Self, DbError> {
        let invalid = |what: String| DbError::InvalidData(format!("scan {}: {what}", row.id));
        let count = |value: i32, field: &str| {
            u32::try_from(value).map_err(|_| invalid(format!("negative {field} ({value})")))
        };
        Ok(Scan {
            id: ScanId(row.id),
            host_id: HostId(row.host_id),
            trigger: row.trigger.parse().map_err(|e| invalid(format!("{e}")))?,
            status: row.status.parse().map_err(|e| invalid(format!("{e}")))?,
            requested_by: row.requested_by.map(UserId),
            rules_total: count(row.rules_total, "rules_total")?,
            rules_done: count(row.rules_done, "rules_done")?,
            attempts: count(row.attempts, "attempts")?,
            framework: row.framework,
            queued_at: row.queued_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            score: row.score,
            failure_reason: row.failure_reason,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = scans)]
struct QueuedScanRow<'a> {
    id: Uuid,
    host_id: Uuid,
    trigger: &'static str,
    framework: Option<&'a str>,
    requested_by: Option<Uuid>,
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

/// Queues one manual scan per host (duplicates in `host_ids` count once) and returns their
/// ids in the order of the first occurrence of each host. See
/// [`request_manual_scans_traced`]; this is it without a trace context.
pub async fn request_manual_scans(
    conn: &mut AsyncPgConnection,
    host_ids: &[HostId],
    framework: Option<String>,
    requested_by: UserId,
    now: DateTime<Utc>,
) -> Result<Vec<ScanId>, DbError> {
    request_manual_scans_traced(conn, host_ids, framework, requested_by, now, None).await
}

/// Queues one manual scan per host, with its `ScanRequestedV1` outbox row (queue `scans`,
/// carrying `traceparent`), using multi-row inserts. Run it inside the caller's
/// transaction (it uses a savepoint of it): the scans, their messages and the schedule
/// change commit or roll back together, with whatever else the caller writes (audit).
///
/// Each host's next automatic scan is postponed to
/// `greatest(next_scan_at, now + interval)`, where `interval` is
/// [`scheduler::SchedulerConfig::interval_for`] the host's current compliance state (the
/// same rule the scheduler applies after a scan), so the schedule never fires right after
/// a manual scan and never moves earlier. Hosts in state `unknown` (interval 0 by
/// default) stay due. The host rows are locked in id order first, so concurrent requests
/// for overlapping hosts serialise instead of deadlocking.
///
/// A host that does not exist is [`DbError::Constraint`] (`scans_host_id_fkey`, as the
/// foreign key would report it, naming the unknown ids) and nothing is written. An empty `host_ids` writes nothing.
pub async fn request_manual_scans_traced(
    conn: &mut AsyncPgConnection,
    host_ids: &[HostId],
    framework: Option<String>,
    requested_by: UserId,
    now: DateTime<Utc>,
    traceparent: Option<&str>,
) -> Result<Vec<ScanId>, DbError> {
    let mut seen = std::collections::HashSet::with_capacity(host_ids.len());
    let hosts_in_order: Vec<HostId> = host_ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    if hosts_in_order.is_empty() {
        return Ok(Vec::new());
    }
    // A savepoint inside the caller's transaction (a transaction of its own otherwise), so
    // the statements below are all-or-nothing even for a caller that forgot one.
    conn.transaction::<_, DbError, _>(async |conn| {
        postpone_next_scans(conn, &hosts_in_order, now).await?;
        insert_manual_scans(conn, &hosts_in_order, framework.as_deref(), requested_by, now, traceparent).await
    })
    .await
}

/// The multi-row inserts of [`request_manual_scans_traced`]: scans, then outbox rows.
async fn insert_manual_scans(
    conn: &mut AsyncPgConnection,
    hosts_in_order: &[HostId],
    framework: Option<&str>,
    requested_by: UserId,
    now: DateTime<Utc>,
    traceparent: Option<&str>,
) -> Result<Vec<ScanId>, DbError> {
    let scan_ids: Vec<ScanId> = hosts_in_order.iter().map(|_| ScanId::new()).collect();
    let version = i16::try_from(ScanRequestedV1::VERSION).map_err(|_| {
        DbError::InvalidData(format!("message version {} does not fit SMALLINT", ScanRequestedV1::VERSION))
    })?;
    let scan_rows: Vec<QueuedScanRow<'_>> = scan_ids
        .iter()
        .zip(hosts_in_order)
        .map(|(scan, host)| QueuedScanRow {
            id: scan.into_uuid(),
            host_id: host.into_uuid(),
            trigger: ScanTrigger::Manual.as_str(),
            framework,
            requested_by: Some(requested_by.into_uuid()),
            queued_at: now,
        })
        .collect();
    let outbox_rows = scan_ids
        .iter()
        .zip(hosts_in_order)
        .map(|(scan, host)| {
            let message = ScanRequestedV1 {
                scan_id: *scan,
                host_id: *host,
                trigger: ScanTrigger::Manual,
                framework: framework.map(str::to_owned),
                requested_by: Some(requested_by),
                requested_at: now,
            };
            Ok(OutboxRow {
                queue: ScanRequestedV1::QUEUE.as_str(),
                message_id: MessageId::new().into_uuid(),
                message_type: ScanRequestedV1::TYPE,
                version,
                payload: serde_json::to_value(&message).map_err(DbError::Encode)?,
                traceparent,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;

    for chunk in scan_rows.chunks(SCANS_PER_STATEMENT) {
        diesel::insert_into(scans::table).values(chunk).execute(conn).await?;
    }
    for chunk in outbox_rows.chunks(SCANS_PER_STATEMENT) {
        diesel::insert_into(outbox::table).values(chunk).execute(conn).await?;
    }
    Ok(scan_ids)
}

/// Locks the hosts (in id order) and moves each one's `next_scan_at` to at least
/// `now + interval_for(its compliance state)`. Fails when a host does not exist.
async fn postpone_next_scans(
    conn: &mut AsyncPgConnection,
    host_ids: &[HostId],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let config = scheduler::get(conn).await?;
    // One CASE arm per state, generated from the enum so it can never miss one.
    let mut case = String::from("CASE h.compliance_state");
    for (index, state) in ComplianceState::ALL.iter().enumerate() {
        case.push_str(&format!(" WHEN '{}' THEN ${}", state.as_str(), index + 2));
    }
    // Unreachable with the CHECK on compliance_state; never move the schedule earlier.
    case.push_str(" ELSE h.next_scan_at END");
    // Updates nothing unless every host exists (the ids are distinct).
    let statement = format!(
        "WITH locked AS (SELECT id FROM hosts WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
         UPDATE hosts h SET next_scan_at = greatest(h.next_scan_at, {case}) \
         FROM locked \
         WHERE h.id = locked.id AND (SELECT count(*) FROM locked) = cardinality($1)"
    );
    let ids: Vec<Uuid> = host_ids.iter().map(|id| id.into_uuid()).collect();
    let mut query =
        diesel::sql_query(statement).into_boxed::<Pg>().bind::<Array<diesel::sql_types::Uuid>, _>(ids);
    for state in ComplianceState::ALL {
        query = query.bind::<Timestamptz, _>(now + config.interval_for(*state));
    }
    let updated = query.execute(conn).await?;
    if updated == host_ids.len() {
        return Ok(());
    }
    let ids: Vec<Uuid> = host_ids.iter().map(|id| id.into_uuid()).collect();
    let found: std::collections::HashSet<Uuid> = hosts::table
        .filter(hosts::id.eq_any(&ids))
        .select(hosts::id)
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<String> =
        host_ids.iter().filter(|id| !found.contains(&id.into_uuid())).map(ToString::to_string).collect();
    Err(DbError::Constraint {
        constraint: "scans_host_id_fkey".to_owned(),
        message: format!("unknown host(s): {}", missing.join(", ")),
    })
}

/// Which scans [`list_scans`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanFilter {
    /// Only this host's scans (uses the `(host_id, queued_at)` index).
    pub host_id: Option<HostId>,
    /// Only scans in this status.
    pub status: Option<ScanStatus>,
    /// Only manual or only scheduled scans.
    pub trigger: Option<ScanTrigger>,
    /// Queued at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Queued strictly before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// Applies `filter` to any boxed select on `scans`.
fn filter_scans<'a, ST: 'a>(
    mut query: scans::BoxedQuery<'a, Pg, ST>,
    filter: &ScanFilter,
) -> scans::BoxedQuery<'a, Pg, ST> {
    if let Some(host) = filter.host_id {
        query = query.filter(scans::host_id.eq(host.into_uuid()));
    }
    if let Some(status) = filter.status {
        query = query.filter(scans::status.eq(status.as_str()));
    }
    if let Some(trigger) = filter.trigger {
        query = query.filter(scans::trigger.eq(trigger.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(scans::queued_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(scans::queued_at.lt(until));
    }
    query
}

/// One page of scans matching `filter`, ordered by `queued_at` (ties by id) in `order`,
/// with the total number of matches.
pub async fn list_scans(
    conn: &mut AsyncPgConnection,
    filter: &ScanFilter,
    page: PageRequest,
    order: SortOrder,
) -> Result<Page<Scan>, DbError> {
    let total: i64 = filter_scans(scans::table.into_boxed(), filter).count().get_result(conn).await?;
    let query = filter_scans(scans::table.select(ScanRow::as_select()).into_boxed(), filter);
    let query = match order {
        SortOrder::Asc => query.order((scans::queued_at.asc(), scans::id.asc())),
        SortOrder::Desc => query.order((scans::queued_at.desc(), scans::id.desc())),
    };
    let rows: Vec<ScanRow> = query.limit(page.sql_limit()).offset(page.sql_offset()).load(conn).await?;
    Ok(Page {
        items: rows.into_iter().map(Scan::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// The scan with this id, or [`DbError::NotFound`].
pub async fn get_scan_details(conn: &mut AsyncPgConnection, id: ScanId) -> Result<Scan, DbError> {
    let row: ScanRow = scans::table.find(id.into_uuid()).select(ScanRow::as_select()).first(conn).await?;
    row.try_into()
}

/// Cancels a `queued` or `running` scan: status `cancelled`, `finished_at = now`,
/// `failure_reason` [`CANCELLED_BY_USER`], lease cleared; returns the updated scan. A
/// worker's late result for it is then ignored by [`record_completed`] (terminal state).
///
/// A scan already in a terminal state is [`DbError::Constraint`] with constraint
/// `scan_not_cancellable` (the caller maps it to 409); an unknown id is
/// [`DbError::NotFound`].
pub async fn cancel_scan(
    conn: &mut AsyncPgConnection,
    id: ScanId,
    now: DateTime<Utc>,
) -> Result<Scan, DbError> {
    let updated: Option<ScanRow> = diesel::update(
        scans::table
            .find(id.into_uuid())
            .filter(scans::status.eq_any([ScanStatus::Queued.as_str(), ScanStatus::Running.as_str()])),
    )
    .set((
        scans::status.eq(ScanStatus::Cancelled.as_str()),
        scans::finished_at.eq(Some(now)),
        scans::failure_reason.eq(Some(CANCELLED_BY_USER)),
        scans::lease_expires_at.eq(None::<DateTime<Utc>>),
    ))
    .returning(ScanRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match updated {
        Some(row) => row.try_into(),
        None => {
            let status: String = scans::table.find(id.into_uuid()).select(scans::status).first(conn).await?;
            Err(DbError::Constraint {
                constraint: "scan_not_cancellable".to_owned(),
                message: format!("scan {id} is {status}; only queued or running scans can be cancelled"),
            })
        }
    }
}

/// One rule result of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The scan it belongs to.
    pub scan_id: ScanId,
    /// The rule's stable id.
    pub rule_id: String,
    /// The scanned host.
    pub host_id: HostId,
    /// Outcome.
    pub status: FindingStatus,
    /// The rule's severity.
    pub severity: Severity,
    /// Why the status is error / not_applicable / manual.
    pub reason: Option<String>,
    /// `EvidenceV1` as stored.
    pub evidence: serde_json::Value,
    /// Framework id → control ids.
    pub frameworks: serde_json::Value,
    /// Evaluation time in microseconds.
    pub duration_us: u64,
    /// Whether an approved, unexpired exception waives this rule on this host right now.
    pub excepted: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = scan_findings, check_for_backend(diesel::pg::Pg))]
struct FindingRow {
    scan_id: Uuid,
    rule_id: String,
    host_id: Uuid,
    status: String,
    severity: String,
    reason: Option<String>,
    evidence: serde_json::Value,
    frameworks: serde_json::Value,
    duration_us: i64,
}

impl FindingRow {
    fn into_finding(self, excepted: bool) -> Result<Finding, DbError> {
        let invalid =
            |what: String| DbError::InvalidData(format!("finding {}/{}: {what}", self.scan_id, self.rule_id));
        Ok(Finding {
            status: self.status.parse().map_err(|e| invalid(format!("{e}")))?,
            severity: self.severity.parse().map_err(|e| invalid(format!("{e}")))?,
            duration_us: u64::try_from(self.duration_us).map_err(|_| invalid("negative duration".into()))?,
            scan_id: ScanId(self.scan_id),
            host_id: HostId(self.host_id),
            rule_id: self.rule_id,
            reason: self.reason,
            evidence: self.evidence,
            frameworks: self.frameworks,
            excepted,
        })
    }
}

/// Which findings [`list_findings`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    /// Only this outcome.
    pub status: Option<FindingStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this rule.
    pub rule_id: Option<String>,
}

fn filter_findings<'a, ST: 'a>(
    mut query: scan_findings::BoxedQuery<'a, Pg, ST>,
    scan: ScanId,
    filter: &'a FindingFilter,
) -> scan_findings::BoxedQuery<'a, Pg, ST> {
    query = query.filter(scan_findings::scan_id.eq(scan.into_uuid()));
    if let Some(status) = filter.status {
        query = query.filter(scan_findings::status.eq(status.as_str()));
    }
    if let Some(severity) = filter.severity {
        query = query.filter(scan_findings::severity.eq(severity.as_str()));
    }
    if let Some(rule) = &filter.rule_id {
        query = query.filter(scan_findings::rule_id.eq(rule.as_str()));
    }
    query
}

/// One page of a scan's findings matching `filter`, ordered by rule id (the primary key
/// order), each with its `excepted` flag (an approved exception for the host and rule
/// whose `expires_at` is still in the future, whether or not the expiry job has run).
/// An unknown scan is [`DbError::NotFound`]; a known scan without matches is an empty page.
pub async fn list_findings(
    conn: &mut AsyncPgConnection,
    scan: ScanId,
    filter: &FindingFilter,
    page: PageRequest,
) -> Result<Page<Finding>, DbError> {
    let total: i64 =
        filter_findings(scan_findings::table.into_boxed(), scan, filter).count().get_result(conn).await?;
    if total == 0 {
        // Distinguish "no such scan" (404) from "nothing matches".
        scans::table.find(scan.into_uuid()).select(scans::id).first::<Uuid>(conn).await?;
    }
    let excepted = crate::queries::exceptions::active_exception_sql("scan_findings");
    let rows: Vec<(FindingRow, bool)> = filter_findings(
        scan_findings::table.select((FindingRow::as_select(), sql::<Bool>(&excepted))).into_boxed(),
        scan,
        filter,
    )
    .order(scan_findings::rule_id.asc())
    .limit(page.sql_limit())
    .offset(page.sql_offset())
    .load(conn)
    .await?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(|(row, excepted)| row.into_finding(excepted))
            .collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}
