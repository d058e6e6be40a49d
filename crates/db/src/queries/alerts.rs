//! Alerts for operators: raised (deduplicated) by the processing services, triaged by
//! users.
//!
//! Life cycle: `open → acknowledged → resolved` (or `open → resolved`). At most one
//! unresolved alert exists per type, host and rule (the partial unique index
//! `alerts_dedup_key`): [`raise`] on an unresolved one bumps its `last_seen_at` and
//! `occurrences` instead of inserting a duplicate, and once it is resolved the next
//! [`raise`] opens a new alert.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::domain::Severity;
use openwatch_common::ids::{AlertId, HostId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::exceptions::text_enum;
use crate::queries::page::{Page, PageRequest};
use crate::schema::alerts;

text_enum!(
    /// Where an alert is in its triage.
    AlertStatus: "alert status" {
        /// Raised, nobody has looked at it yet.
        Open => "open",
        /// Someone took it on.
        Acknowledged => "acknowledged",
        /// Dealt with; a new occurrence opens a new alert.
        Resolved => "resolved",
    }
);

/// A stored alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Id.
    pub id: AlertId,
    /// What kind (`host_down`, `rule_failed`, `score_dropped`, …).
    pub alert_type: String,
    /// The host it is about.
    pub host_id: HostId,
    /// The rule, for rule-level alerts.
    pub rule_id: Option<String>,
    /// How urgent.
    pub severity: Severity,
    /// Triage status.
    pub status: AlertStatus,
    /// One-line summary.
    pub title: String,
    /// Structured context (latest occurrence).
    pub details: serde_json::Value,
    /// When it was first raised.
    pub opened_at: DateTime<Utc>,
    /// When it was last raised again.
    pub last_seen_at: DateTime<Utc>,
    /// How many times it was raised while unresolved.
    pub occurrences: u32,
    /// Who acknowledged it.
    pub acknowledged_by: Option<UserId>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = alerts, check_for_backend(diesel::pg::Pg))]
struct AlertRow {
    id: Uuid,
    alert_type: String,
    host_id: Uuid,
    rule_id: Option<String>,
    severity: String,
    status: String,
    title: String,
    details: serde_json::Value,
    opened_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    occurrences: i32,
    acknowledged_by: Option<Uuid>,
    acknowledged_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = DbError;

    fn try_from(row: AlertRow) -> Result<Self, DbError> {
        let invalid = |what: String| DbError::InvalidData(format!("alert {}: {what}", row.id));
        Ok(Alert {
            id: AlertId(row.id),
            host_id: HostId(row.host_id),
            severity: row.severity.parse().map_err(|e: UnknownVariant| invalid(e.to_string()))?,
            status: row.status.parse().map_err(|e: UnknownVariant| invalid(e.to_string()))?,
            occurrences: u32::try_from(row.occurrences)
                .map_err(|_| invalid(format!("occurrences {}", row.occurrences)))?,
            acknowledged_by: row.acknowledged_by.map(UserId),
            alert_type: row.alert_type,
            rule_id: row.rule_id,
            title: row.title,
            details: row.details,
            opened_at: row.opened_at,
            last_seen_at: row.last_seen_at,
            acknowledged_at: row.acknowledged_at,
            resolved_at: row.resolved_at,
        })
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// What kind: lowercase snake_case (`^[a-z][a-z0-9_]*$`, else [`DbError::Constraint`]).
    pub alert_type: String,
    /// The host it is about.
    pub host_id: HostId,
    /// The rule, for rule-level alerts (part of the deduplication key).
    pub rule_id: Option<String>,
    /// How urgent.
    pub severity: Severity,
    /// One-line summary.
    pub title: String,
    /// Structured context.
    pub details: serde_json::Value,
}

#[derive(QueryableByName)]
struct RaisedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// Raises an alert, deduplicated on (type, host, rule) among unresolved alerts with
/// `INSERT … ON CONFLICT … DO UPDATE` on `alerts_dedup_key` (atomic under concurrency).
/// Returns the alert's id and whether it was newly opened (`false`: an unresolved one
/// existed and now has `occurrences + 1`, `last_seen_at = now()`, and the severity, title
/// and details of this occurrence; its status — open or acknowledged — is kept).
pub async fn raise(conn: &mut AsyncPgConnection, alert: NewAlert) -> Result<(AlertId, bool), DbError> {
    // `xmax = 0` only for a row this statement inserted (an updated row carries our xid).
    let row: RaisedRow = diesel::sql_query(
        "INSERT INTO alerts (id, alert_type, host_id, rule_id, severity, title, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (alert_type, host_id, coalesce(rule_id, '')) WHERE status <> 'resolved' \
         DO UPDATE SET last_seen_at = now(), occurrences = alerts.occurrences + 1, \
             severity = EXCLUDED.severity, title = EXCLUDED.title, details = EXCLUDED.details \
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind::<SqlUuid, _>(AlertId::new().into_uuid())
    .bind::<Text, _>(&alert.alert_type)
    .bind::<SqlUuid, _>(alert.host_id.into_uuid())
    .bind::<Nullable<Text>, _>(alert.rule_id.as_deref())
    .bind::<Text, _>(alert.severity.as_str())
    .bind::<Text, _>(&alert.title)
    .bind::<Jsonb, _>(&alert.details)
    .get_result(conn)
    .await?;
    Ok((AlertId(row.id), row.inserted))
}

/// The alert with this id, or [`DbError::NotFound`].
pub async fn get_alert(conn: &mut AsyncPgConnection, id: AlertId) -> Result<Alert, DbError> {
    let row: AlertRow = alerts::table.find(id.into_uuid()).select(AlertRow::as_select()).first(conn).await?;
    row.try_into()
}

/// After an update matched nothing: [`DbError::NotFound`] or the refusal.
async fn refusal(conn: &mut AsyncPgConnection, id: AlertId, constraint: &str, allowed: &str) -> DbError {
    match alerts::table.find(id.into_uuid()).select(alerts::status).first::<String>(conn).await {
        Ok(status) => DbError::Constraint {
            constraint: constraint.to_owned(),
            message: format!("alert {id} is {status}; only {allowed} alerts can be changed so"),
        },
        Err(err) => err.into(),
    }
}

/// Acknowledges an `open` alert (records who and when); returns it updated. Any other
/// status is [`DbError::Constraint`] `alert_not_open` (the caller maps it to 409); an
/// unknown id is [`DbError::NotFound`].
pub async fn acknowledge(
    conn: &mut AsyncPgConnection,
    id: AlertId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Alert, DbError> {
    let row: Option<AlertRow> = diesel::update(
        alerts::table.find(id.into_uuid()).filter(alerts::status.eq(AlertStatus::Open.as_str())),
    )
    .set((
        alerts::status.eq(AlertStatus::Acknowledged.as_str()),
        alerts::acknowledged_by.eq(Some(user.into_uuid())),
        alerts::acknowledged_at.eq(Some(now)),
    ))
    .returning(AlertRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match row {
        Some(row) => row.try_into(),
        None => Err(refusal(conn, id, "alert_not_open", "open").await),
    }
}

/// Resolves an `open` or `acknowledged` alert; returns it updated. The next [`raise`] of
/// the same (type, host, rule) opens a new alert. An already resolved alert is
/// [`DbError::Constraint`] `alert_already_resolved`; an unknown id is [`DbError::NotFound`].
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    id: AlertId,
    now: DateTime<Utc>,
) -> Result<Alert, DbError> {
    let row: Option<AlertRow> = diesel::update(
        alerts::table.find(id.into_uuid()).filter(alerts::status.ne(AlertStatus::Resolved.as_str())),
    )
    .set((alerts::status.eq(AlertStatus::Resolved.as_str()), alerts::resolved_at.eq(Some(now))))
    .returning(AlertRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match row {
        Some(row) => row.try_into(),
        None => Err(refusal(conn, id, "alert_already_resolved", "open or acknowledged").await),
    }
}

/// Which alerts [`list_alerts`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only in this status.
    pub status: Option<AlertStatus>,
    /// Only of this severity.
    pub severity: Option<Severity>,
    /// Only about this host (`alerts_host_id_idx`).
    pub host_id: Option<HostId>,
    /// Only of this type.
    pub alert_type: Option<String>,
}

fn filter_alerts<'a, ST: 'a>(
    mut query: alerts::BoxedQuery<'a, Pg, ST>,
    filter: &'a AlertFilter,
) -> alerts::BoxedQuery<'a, Pg, ST> {
    match filter.status {
        // Spelled so the planner can use the partial index `alerts_unresolved_idx`.
        Some(AlertStatus::Resolved) => {
            query = query.filter(alerts::status.eq(AlertStatus::Resolved.as_str()));
        }
        Some(status) => {
            query = query
                .filter(alerts::status.ne(AlertStatus::Resolved.as_str()))
                .filter(alerts::status.eq(status.as_str()));
        }
        None => {}
    }
    if let Some(severity) = filter.severity {
        query = query.filter(alerts::severity.eq(severity.as_str()));
    }
    if let Some(host) = filter.host_id {
        query = query.filter(alerts::host_id.eq(host.into_uuid()));
    }
    if let Some(alert_type) = &filter.alert_type {
        query = query.filter(alerts::alert_type.eq(alert_type.as_str()));
    }
    query
}

/// One page of alerts matching `filter`, newest first (`opened_at`, ties by id), with the
/// total.
pub async fn list_alerts(
    conn: &mut AsyncPgConnection,
    filter: &AlertFilter,
    page: PageRequest,
) -> Result<Page<Alert>, DbError> {
    let total: i64 = filter_alerts(alerts::table.into_boxed(), filter).count().get_result(conn).await?;
    let rows: Vec<AlertRow> = filter_alerts(alerts::table.select(AlertRow::as_select()).into_boxed(), filter)
        .order((alerts::opened_at.desc(), alerts::id.desc()))
        .limit(page.sql_limit())
        .offset(page.sql_offset())
        .load(conn)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(Alert::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}
