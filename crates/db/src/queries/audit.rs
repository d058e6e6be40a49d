//! The audit log: recording events and reading them back (paged, or streamed for export).
//!
//! `audit_events` is append-only: a trigger refuses `UPDATE`, `DELETE` and `TRUNCATE`
//! (migration `000600_gateway`; a retention job may delete after
//! `SET LOCAL openwatch.audit_retention = 'on'`). Ids are a bigserial: the log's total
//! order, used for sorting and for keyset pagination ([`stream_after`]). Record an event in
//! the same transaction as the change it describes, so neither exists without the other.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::ids::UserId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest, SortOrder};
use crate::schema::audit_events;

/// Largest batch [`stream_after`] returns.
pub const MAX_STREAM_BATCH: i64 = 10_000;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It was done.
    Success,
    /// It was attempted and failed (bad password, invalid input, downstream error).
    Failure,
    /// The principal lacked the permission.
    Denied,
}

impl AuditOutcome {
    /// Every variant.
    pub const ALL: &'static [AuditOutcome] = &[Self::Success, Self::Failure, Self::Denied];

    /// The stored and wire spelling (the `audit_events.outcome` CHECK lists the same).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditOutcome {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|o| o.as_str() == s).ok_or_else(|| UnknownVariant {
            kind: "audit outcome",
            value: s.to_owned(),
            expected: "success, failure, denied".to_owned(),
        })
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// The acting user; `None` for the system or an unauthenticated client.
    pub actor_user_id: Option<UserId>,
    /// Username at the time (`system` for automated actions, the attempted username for a
    /// failed login).
    pub actor_name: String,
    /// What was done, e.g. `user.login`, `host.delete` (non-empty).
    pub action: String,
    /// Kind of the object acted on, e.g. `host`.
    pub resource_type: String,
    /// Id of the object, when there is one.
    pub resource_id: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Client address.
    pub ip: Option<IpAddr>,
    /// Free-form context (never secrets).
    pub details: serde_json::Value,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Position in the log.
    pub id: i64,
    /// The acting user, while the account exists.
    pub actor_user_id: Option<UserId>,
    /// Username at the time.
    pub actor_name: String,
    /// What was done.
    pub action: String,
    /// Kind of the object acted on.
    pub resource_type: String,
    /// Id of the object.
    pub resource_id: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Client address, as recorded.
    pub ip: Option<String>,
    /// Free-form context.
    pub details: serde_json::Value,
    /// When it happened (transaction time of the recording).
    pub occurred_at: DateTime<Utc>,
}

/// Who acted, for [`AuditFilter::actor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditActor {
    /// Events of this account.
    User(UserId),
    /// Events recorded under this name (exact match; also finds events of deleted accounts
    /// and failed logins).
    Name(String),
}

/// Filters of [`query`] and [`stream_after`]; `None` means "any". All exact matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Who acted.
    pub actor: Option<AuditActor>,
    /// Action, e.g. `user.login`.
    pub action: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Outcome.
    pub outcome: Option<AuditOutcome>,
    /// Occurred at or after.
    pub since: Option<DateTime<Utc>>,
    /// Occurred strictly before.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
struct AuditEventRow {
    id: i64,
    actor_user_id: Option<Uuid>,
    actor_name: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    ip: Option<String>,
    details: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

impl TryFrom<AuditEventRow> for AuditEvent {
    type Error = DbError;

    fn try_from(row: AuditEventRow) -> Result<Self, DbError> {
        Ok(AuditEvent {
            outcome: row
                .outcome
                .parse()
                .map_err(|e| DbError::InvalidData(format!("audit event {}: {e}", row.id)))?,
            id: row.id,
            actor_user_id: row.actor_user_id.map(UserId),
            actor_name: row.actor_name,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            ip: row.ip,
            details: row.details,
            occurred_at: row.occurred_at,
        })
    }
}

/// Appends an event and returns its id. [`DbError::Constraint`] for an empty action.
pub async fn record(conn: &mut AsyncPgConnection, event: &NewAuditEvent) -> Result<i64, DbError> {
    Ok(diesel::insert_into(audit_events::table)
        .values((
            audit_events::actor_user_id.eq(event.actor_user_id.map(UserId::into_uuid)),
            audit_events::actor_name.eq(&event.actor_name),
            audit_events::action.eq(&event.action),
            audit_events::resource_type.eq(&event.resource_type),
            audit_events::resource_id.eq(event.resource_id.as_deref()),
            audit_events::outcome.eq(event.outcome.as_str()),
            audit_events::ip.eq(event.ip.map(|ip| ip.to_string())),
            audit_events::details.eq(&event.details),
        ))
        .returning(audit_events::id)
        .get_result(conn)
        .await?)
}

fn filtered(filter: &AuditFilter) -> audit_events::BoxedQuery<'static, Pg> {
    let mut query = audit_events::table.into_boxed();
    match &filter.actor {
        Some(AuditActor::User(id)) => query = query.filter(audit_events::actor_user_id.eq(id.into_uuid())),
        Some(AuditActor::Name(name)) => query = query.filter(audit_events::actor_name.eq(name.clone())),
        None => {}
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(resource_type) = &filter.resource_type {
        query = query.filter(audit_events::resource_type.eq(resource_type.clone()));
    }
    if let Some(resource_id) = &filter.resource_id {
        query = query.filter(audit_events::resource_id.eq(resource_id.clone()));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(audit_events::outcome.eq(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.lt(until));
    }
    query
}

fn convert(rows: Vec<AuditEventRow>) -> Result<Vec<AuditEvent>, DbError> {
    rows.into_iter().map(AuditEvent::try_from).collect()
}

/// One page of events matching `filter`, in log order (`Asc` = oldest first), and the
/// total.
pub async fn query(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    page: PageRequest,
    order: SortOrder,
) -> Result<Page<AuditEvent>, DbError> {
    let total: i64 = filtered(filter).count().get_result(conn).await?;
    let query = filtered(filter).select(AuditEventRow::as_select());
    let query = match order {
        SortOrder::Asc => query.order(audit_events::id.asc()),
        SortOrder::Desc => query.order(audit_events::id.desc()),
    };
    let rows = query.limit(page.sql_limit()).offset(page.sql_offset()).load(conn).await?;
    Ok(Page { items: convert(rows)?, total: u64::try_from(total).unwrap_or(0) })
}

/// Up to `batch` (1–[`MAX_STREAM_BATCH`], clamped) events matching `filter` with an id
/// greater than `after_id`, oldest first: keyset pagination for exports. Start with
/// `after_id = 0` and pass the last id of each batch; an empty batch ends the stream.
/// Unlike offsets, this neither skips nor repeats rows while new events are appended.
pub async fn stream_after(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    after_id: i64,
    batch: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let rows = filtered(filter)
        .filter(audit_events::id.gt(after_id))
        .select(AuditEventRow::as_select())
        .order(audit_events::id.asc())
        .limit(batch.clamp(1, MAX_STREAM_BATCH))
        .load(conn)
        .await?;
    convert(rows)
}
