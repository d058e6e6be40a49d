//! Planned maintenance windows of hosts.
//!
//! A window `[starts_at, ends_at)` pauses liveness checks and scans of its host: it is
//! active at `now` when `starts_at <= now < ends_at`. Windows are planned ahead and may
//! overlap. They complement `hosts.maintenance_until` (an ad-hoc pause set with
//! [`crate::queries::hosts::set_maintenance_until`]); the functions here look at
//! windows only.
//!
//! Windows have no id newtype in `openwatch_common` yet, so their id is a plain [`Uuid`].

use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::{HostId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest};
use crate::schema::host_maintenance_windows as windows;

/// A window to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMaintenanceWindow {
    /// New id (`Uuid::now_v7()`).
    pub id: Uuid,
    /// The host to pause.
    pub host_id: HostId,
    /// Start (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End (exclusive); must be after `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// Why, for operators.
    pub reason: Option<String>,
    /// Who planned it.
    pub created_by: Option<UserId>,
}

/// A stored maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Id.
    pub id: Uuid,
    /// The paused host.
    pub host_id: HostId,
    /// Start (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Why, for operators.
    pub reason: Option<String>,
    /// Who planned it (`None` once the account is deleted).
    pub created_by: Option<UserId>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = windows, check_for_backend(diesel::pg::Pg))]
struct WindowRow {
    id: Uuid,
    host_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: Option<String>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<WindowRow> for MaintenanceWindow {
    fn from(row: WindowRow) -> Self {
        MaintenanceWindow {
            id: row.id,
            host_id: HostId(row.host_id),
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            reason: row.reason,
            created_by: row.created_by.map(UserId),
            created_at: row.created_at,
        }
    }
}

/// Plans a window. `ends_at <= starts_at`, an unknown host or user is
/// [`DbError::Constraint`]; a reused id is [`DbError::Conflict`].
pub async fn insert(
    conn: &mut AsyncPgConnection,
    window: NewMaintenanceWindow,
) -> Result<MaintenanceWindow, DbError> {
    let row: WindowRow = diesel::insert_into(windows::table)
        .values((
            windows::id.eq(window.id),
            windows::host_id.eq(window.host_id.into_uuid()),
            windows::starts_at.eq(window.starts_at),
            windows::ends_at.eq(window.ends_at),
            windows::reason.eq(window.reason),
            windows::created_by.eq(window.created_by.map(UserId::into_uuid)),
        ))
        .returning(WindowRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row.into())
}

/// One page of a host's current and upcoming windows (those not ended at `now`), by
/// start (then id), with their total. Past windows are not listed.
pub async fn list_for_host(
    conn: &mut AsyncPgConnection,
    host: HostId,
    now: DateTime<Utc>,
    page: PageRequest,
) -> Result<Page<MaintenanceWindow>, DbError> {
    let matching =
        || windows::table.filter(windows::host_id.eq(host.into_uuid())).filter(windows::ends_at.gt(now));
    let total: i64 = matching().count().get_result(conn).await?;
    let rows: Vec<WindowRow> = matching()
        .order_by((windows::starts_at.asc(), windows::id.asc()))
        .select(WindowRow::as_select())
        .limit(page.sql_limit())
        .offset(page.sql_offset())
        .load(conn)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(MaintenanceWindow::from).collect(),
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// Deletes a window of a host. [`DbError::NotFound`] when no window with this id belongs
/// to this host (so a URL naming another host's window cannot delete it).
pub async fn delete(conn: &mut AsyncPgConnection, host: HostId, id: Uuid) -> Result<(), DbError> {
    let deleted = diesel::delete(windows::table.find(id).filter(windows::host_id.eq(host.into_uuid())))
        .execute(conn)
        .await?;
    if deleted == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Whether a window of `host` is active at `now` (`starts_at <= now < ends_at`).
pub async fn active_at(
    conn: &mut AsyncPgConnection,
    host: HostId,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(diesel::select(exists(
        windows::table
            .filter(windows::host_id.eq(host.into_uuid()))
            .filter(windows::starts_at.le(now))
            .filter(windows::ends_at.gt(now)),
    ))
    .get_result(conn)
    .await?)
}

/// The hosts with a window active at `now`, by id (each once, however many windows
/// overlap).
pub async fn hosts_in_maintenance(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<HostId>, DbError> {
    let ids: Vec<Uuid> = windows::table
        .filter(windows::starts_at.le(now))
        .filter(windows::ends_at.gt(now))
        .select(windows::host_id)
        .distinct()
        .order_by(windows::host_id.asc())
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(HostId).collect())
}
