//! Managed hosts: inventory, liveness and schedule fields.
//!
//! Besides single-row CRUD this module serves the host list of the API ([`list_hosts`]:
//! filters, sorting and paging, each filter narrowing the total as well as the page) and
//! the CSV import ([`insert_hosts_bulk`]: every row succeeds or fails on its own).
//!
//! # Bulk import: savepoints, not `ON CONFLICT DO NOTHING`
//! [`insert_hosts_bulk`] runs one transaction with a savepoint per row. `ON CONFLICT DO
//! NOTHING RETURNING` would need one statement only, but it absorbs unique violations
//! alone: a row breaking a `CHECK` (an empty or over-long name) would still abort the
//! whole statement, and the skipped rows would carry no reason. With savepoints a failed
//! row is rolled back to its savepoint and reported with its own [`DbError`] (duplicate
//! name: [`DbError::Conflict`] `hosts_name_key`; bad value: [`DbError::Constraint`]), and
//! the others are kept. The cost is three round trips per row, which is fine for an
//! import of a few thousand rows.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::{HostGroupId, HostId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest, SortOrder};
use crate::schema::{host_group_members, hosts};

diesel::define_sql_function! {
    /// PostgreSQL `greatest` of two timestamps.
    fn greatest(a: Timestamptz, b: Timestamptz) -> Timestamptz;
}

/// A host to register. Liveness and compliance start `unknown`, and both the first check
/// and the first scan are due immediately.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHost {
    /// New id (`HostId::new()`).
    pub id: HostId,
    /// Unique display name.
    pub name: String,
    /// DNS name or IP address to connect to.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Free-form labels.
    pub tags: Vec<String>,
}

/// A stored host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Id.
    pub id: HostId,
    /// Unique display name.
    pub name: String,
    /// DNS name or IP address to connect to.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// os-release `ID`, once detected.
    pub os_family: Option<String>,
    /// os-release `VERSION_ID`, once detected.
    pub os_version: Option<String>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Liveness as last seen by `host-monitor`.
    pub monitoring_state: MonitoringState,
    /// When liveness was last checked.
    pub last_check_at: Option<DateTime<Utc>>,
    /// When the next liveness check is due.
    pub next_check_at: DateTime<Utc>,
    /// Compliance band, driving the scan interval.
    pub compliance_state: ComplianceState,
    /// Score (0–100) of the last completed scan.
    pub last_score: Option<f64>,
    /// When the next scheduled scan is due.
    pub next_scan_at: DateTime<Utc>,
    /// Consecutive failed scans (back-off).
    pub scan_failures: u32,
    /// Checks and scans are paused until then.
    pub maintenance_until: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// The row as stored; shared with the other inventory modules (group members).
#[derive(Queryable, Selectable)]
#[diesel(table_name = hosts, check_for_backend(diesel::pg::Pg))]
pub(crate) struct HostRow {
    id: Uuid,
    name: String,
    address: String,
    port: i32,
    os_family: Option<String>,
    os_version: Option<String>,
    tags: Vec<Option<String>>,
    monitoring_state: String,
    last_check_at: Option<DateTime<Utc>>,
    next_check_at: DateTime<Utc>,
    compliance_state: String,
    last_score: Option<f64>,
    next_scan_at: DateTime<Utc>,
    scan_failures: i32,
    maintenance_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<HostRow> for Host {
    type Error = DbError;

    fn try_from(row: HostRow) -> Result<Self, DbError> {
        let invalid = |what: &str| DbError::InvalidData(format!("host {}: {what}", row.id));
        Ok(Host {
            id: HostId(row.id),
            port: u16::try_from(row.port).map_err(|_| invalid("port out of range"))?,
            monitoring_state: row.monitoring_state.parse().map_err(|e| invalid(&format!("{e}")))?,
            compliance_state: row.compliance_state.parse().map_err(|e| invalid(&format!("{e}")))?,
            scan_failures: u32::try_from(row.scan_failures).map_err(|_| invalid("negative scan_failures"))?,
            // The CHECK on `tags` forbids NULL elements.
            tags: row.tags.into_iter().flatten().collect(),
            name: row.name,
            address: row.address,
            os_family: row.os_family,
            os_version: row.os_version,
            last_check_at: row.last_check_at,
            next_check_at: row.next_check_at,
            last_score: row.last_score,
            next_scan_at: row.next_scan_at,
            maintenance_until: row.maintenance_until,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Registers a host. A duplicate name is [`DbError::Conflict`] (`hosts_name_key`).
pub async fn insert_host(conn: &mut AsyncPgConnection, host: NewHost) -> Result<Host, DbError> {
    let row: HostRow = diesel::insert_into(hosts::table)
        .values((
            hosts::id.eq(host.id.into_uuid()),
            hosts::name.eq(host.name),
            hosts::address.eq(host.address),
            hosts::port.eq(i32::from(host.port)),
            hosts::tags.eq(host.tags),
        ))
        .returning(HostRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// The host with this id, or [`DbError::NotFound`].
pub async fn get_host(conn: &mut AsyncPgConnection, id: HostId) -> Result<Host, DbError> {
    let row: HostRow =
        hosts::table.find(id.into_uuid()).select(HostRow::as_select()).get_result(conn).await?;
    row.try_into()
}

/// Records the outcome of a liveness check and when the next one is due.
/// [`DbError::NotFound`] when the host was deleted meanwhile.
pub async fn record_liveness(
    conn: &mut AsyncPgConnection,
    id: HostId,
    state: MonitoringState,
    checked_at: DateTime<Utc>,
    next_check_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let updated = diesel::update(hosts::table.find(id.into_uuid()))
        .set((
            hosts::monitoring_state.eq(state.as_str()),
            hosts::last_check_at.eq(checked_at),
            hosts::next_check_at.eq(next_check_at),
        ))
        .execute(conn)
        .await?;
    if updated == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// What [`list_hosts`] returns: every set field narrows the result (AND).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFilter {
    /// Case-insensitive substring of the name or the address (`%` and `_` match
    /// themselves).
    pub q: Option<String>,
    /// Exactly this name.
    pub name: Option<String>,
    /// Exactly this address.
    pub address: Option<String>,
    /// Members of this group.
    pub group_id: Option<HostGroupId>,
    /// Exactly this os-release `ID` (e.g. `rhel`).
    pub os_family: Option<String>,
    /// In this liveness state.
    pub monitoring_state: Option<MonitoringState>,
    /// In this compliance band.
    pub compliance_state: Option<ComplianceState>,
    /// Carrying this tag (exact, case-sensitive).
    pub tag: Option<String>,
}

/// The column [`list_hosts`] sorts by; ties are always broken by id, so paging is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostSort {
    /// Display name.
    #[default]
    Name,
    /// Registration time.
    CreatedAt,
    /// Score of the last completed scan; hosts never scored come last in both directions.
    LastScore,
    /// When the next scheduled scan is due.
    NextScanAt,
    /// Compliance band in the order of [`ComplianceState::ALL`] (`unknown`, `critical`,
    /// `low`, `partial`, `mostly_compliant`, `compliant`), not alphabetically.
    ComplianceState,
}

/// Changes to a host; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostChangeset {
    /// New unique display name.
    pub name: Option<String>,
    /// New address.
    pub address: Option<String>,
    /// New SSH port.
    pub port: Option<u16>,
    /// New labels (replacing the old ones).
    pub tags: Option<Vec<String>>,
}

#[derive(AsChangeset)]
#[diesel(table_name = hosts)]
struct HostChangesetRow {
    name: Option<String>,
    address: Option<String>,
    port: Option<i32>,
    tags: Option<Vec<String>>,
}

/// Escapes `\`, `%` and `_` so `text` matches itself inside a `LIKE` pattern (PostgreSQL's
/// default escape character is the backslash).
pub(crate) fn like_contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn filtered(filter: &HostFilter) -> hosts::BoxedQuery<'static, Pg> {
    let mut query = hosts::table.into_boxed();
    if let Some(q) = &filter.q {
        let pattern = like_contains(q);
        query = query.filter(hosts::name.ilike(pattern.clone()).or(hosts::address.ilike(pattern)));
    }
    if let Some(name) = &filter.name {
        query = query.filter(hosts::name.eq(name.clone()));
    }
    if let Some(address) = &filter.address {
        query = query.filter(hosts::address.eq(address.clone()));
    }
    if let Some(group) = filter.group_id {
        query = query.filter(
            hosts::id.eq_any(
                host_group_members::table
                    .filter(host_group_members::group_id.eq(group.into_uuid()))
                    .select(host_group_members::host_id),
            ),
        );
    }
    if let Some(os) = &filter.os_family {
        query = query.filter(hosts::os_family.eq(os.clone()));
    }
    if let Some(state) = filter.monitoring_state {
        query = query.filter(hosts::monitoring_state.eq(state.as_str()));
    }
    if let Some(state) = filter.compliance_state {
        query = query.filter(hosts::compliance_state.eq(state.as_str()));
    }
    if let Some(tag) = &filter.tag {
        // `@>` uses the GIN index on `tags`.
        query = query.filter(hosts::tags.contains(vec![Some(tag.clone())]));
    }
    query
}

/// `CASE` rank of `compliance_state` in the order of [`ComplianceState::ALL`].
fn compliance_rank_sql() -> String {
    let spellings: Vec<String> = ComplianceState::ALL.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("array_position(ARRAY[{}]::text[], hosts.compliance_state)", spellings.join(", "))
}

/// One page of hosts matching `filter`, sorted by `sort` in `order` and then by id, with
/// the total number of matches.
pub async fn list_hosts(
    conn: &mut AsyncPgConnection,
    filter: &HostFilter,
    sort: HostSort,
    order: SortOrder,
    page: PageRequest,
) -> Result<Page<Host>, DbError> {
    let total: i64 = filtered(filter).count().get_result(conn).await?;
    let query = filtered(filter);
    let desc = order == SortOrder::Desc;
    let query = match (sort, desc) {
        (HostSort::Name, false) => query.order_by(hosts::name.asc()),
        (HostSort::Name, true) => query.order_by(hosts::name.desc()),
        (HostSort::CreatedAt, false) => query.order_by(hosts::created_at.asc()),
        (HostSort::CreatedAt, true) => query.order_by(hosts::created_at.desc()),
        (HostSort::LastScore, false) => query.order_by(hosts::last_score.asc().nulls_last()),
        (HostSort::LastScore, true) => query.order_by(hosts::last_score.desc().nulls_last()),
        (HostSort::NextScanAt, false) => query.order_by(hosts::next_scan_at.asc()),
        (HostSort::NextScanAt, true) => query.order_by(hosts::next_scan_at.desc()),
        (HostSort::ComplianceState, false) => query.order_by(sql::<Integer>(&compliance_rank_sql()).asc()),
        (HostSort::ComplianceState, true) => query.order_by(sql::<Integer>(&compliance_rank_sql()).desc()),
    };
    let query =
        if desc { query.then_order_by(hosts::id.desc()) } else { query.then_order_by(hosts::id.asc()) };
    let rows: Vec<HostRow> = query
        .select(HostRow::as_select())
        .limit(page.sql_limit())
        .offset(page.sql_offset())
        .load(conn)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(Host::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// Applies `changes` and returns the updated host. [`DbError::NotFound`] when there is no
/// such host; a taken name is [`DbError::Conflict`] (`hosts_name_key`); an empty name,
/// address or port 0 is [`DbError::Constraint`]. An empty changeset changes nothing.
pub async fn update_host(
    conn: &mut AsyncPgConnection,
    id: HostId,
    changes: HostChangeset,
) -> Result<Host, DbError> {
    let row = HostChangesetRow {
        name: changes.name,
        address: changes.address,
        port: changes.port.map(i32::from),
        tags: changes.tags,
    };
    if row.name.is_none() && row.address.is_none() && row.port.is_none() && row.tags.is_none() {
        // diesel refuses an empty SET list.
        return get_host(conn, id).await;
    }
    let row: HostRow = diesel::update(hosts::table.find(id.into_uuid()))
        .set(row)
        .returning(HostRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Deletes a host; its group memberships, credential, known keys, scans and findings go
/// with it (`ON DELETE CASCADE`). [`DbError::NotFound`] when there is no such host.
pub async fn delete_host(conn: &mut AsyncPgConnection, id: HostId) -> Result<(), DbError> {
    let deleted = diesel::delete(hosts::table.find(id.into_uuid())).execute(conn).await?;
    if deleted == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// Registers many hosts (CSV import). Returns one outcome per input row, in input order:
/// the id, or why that row was refused ([`DbError::Conflict`] for a duplicate name, also
/// one repeated within `hosts`; [`DbError::Constraint`] for an invalid value). A refused
/// row does not abort the others (savepoint per row; see the module docs). Any other
/// failure (connection lost, …) rolls the whole import back and is the outer `Err`.
pub async fn insert_hosts_bulk(
    conn: &mut AsyncPgConnection,
    hosts: Vec<NewHost>,
) -> Result<Vec<Result<HostId, DbError>>, DbError> {
    conn.transaction::<_, DbError, _>(async move |conn| {
        let mut outcomes = Vec::with_capacity(hosts.len());
        for host in hosts {
            let id = host.id;
            // Nested `transaction` = SAVEPOINT … RELEASE / ROLLBACK TO SAVEPOINT.
            let outcome =
                conn.transaction::<_, DbError, _>(async move |conn| insert_host(conn, host).await).await;
            match outcome {
                Ok(_) => outcomes.push(Ok(id)),
                Err(e @ (DbError::Conflict { .. } | DbError::Constraint { .. })) => outcomes.push(Err(e)),
                Err(other) => return Err(other),
            }
        }
        Ok(outcomes)
    })
    .await
}

/// Pauses (`Some(until)`) or resumes (`None`) checks and scans of a host.
/// [`DbError::NotFound`] when there is no such host.
pub async fn set_maintenance_until(
    conn: &mut AsyncPgConnection,
    id: HostId,
    until: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    let updated = diesel::update(hosts::table.find(id.into_uuid()))
        .set(hosts::maintenance_until.eq(until))
        .execute(conn)
        .await?;
    if updated == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

/// A manual scan at `at` postpones the next automatic one: `next_scan_at` becomes the
/// later of its current value and `at` (never earlier). Returns the resulting
/// `next_scan_at`; [`DbError::NotFound`] when there is no such host.
pub async fn push_next_scan(
    conn: &mut AsyncPgConnection,
    id: HostId,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, DbError> {
    Ok(diesel::update(hosts::table.find(id.into_uuid()))
        .set(hosts::next_scan_at.eq(greatest(hosts::next_scan_at, at)))
        .returning(hosts::next_scan_at)
        .get_result(conn)
        .await?)
}
