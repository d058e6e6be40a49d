//! Managed hosts: inventory, liveness and schedule fields.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::HostId;
use uuid::Uuid;

use crate::DbError;
use crate::schema::hosts;

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

#[derive(Queryable, Selectable)]
#[diesel(table_name = hosts, check_for_backend(diesel::pg::Pg))]
struct HostRow {
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
