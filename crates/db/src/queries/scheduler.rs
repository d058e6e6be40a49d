//! The adaptive compliance-scan schedule: the singleton `scheduler_config` row.
//!
//! A host's next automatic scan is due [`SchedulerConfig::interval_for`] its compliance
//! state after its last one (worse posture → scanned more often); consecutive failed scans
//! back off with [`SchedulerConfig::backoff_for`]. Every interval is capped at
//! `max_interval_minutes` (48 h at most). [`update`] validates the bounds before writing,
//! naming the offending field, and the table's CHECK constraints back that up.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::ComplianceState;
use openwatch_common::ids::UserId;
use uuid::Uuid;

use crate::DbError;
use crate::schema::scheduler_config;

/// The id of the one row (`CHECK (id = 1)`).
const SINGLETON_ID: i16 = 1;
/// The largest `max_interval_minutes` the table accepts (48 h).
pub const MAX_INTERVAL_CEILING_MINUTES: u32 = 2_880;

/// The adaptive scan schedule, all durations in minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Interval for hosts in state `critical`.
    pub interval_critical_minutes: u32,
    /// Interval for hosts in state `low`.
    pub interval_low_minutes: u32,
    /// Interval for hosts in state `partial`.
    pub interval_partial_minutes: u32,
    /// Interval for hosts in state `mostly_compliant`.
    pub interval_mostly_compliant_minutes: u32,
    /// Interval for hosts in state `compliant`.
    pub interval_compliant_minutes: u32,
    /// Interval for never-scanned hosts (`unknown`; 0 = due immediately).
    pub interval_unknown_minutes: u32,
    /// Cap for every interval and for the failure back-off (1–2880).
    pub max_interval_minutes: u32,
    /// Back-off after `n` consecutive failures: `base · 2^(n-1)`, capped.
    pub failure_backoff_base_minutes: u32,
    /// Who changed it last (`None` for the defaults or a deleted account).
    pub updated_by: Option<UserId>,
    /// When it was changed last.
    pub updated_at: DateTime<Utc>,
}

impl SchedulerConfig {
    /// The configured interval in minutes for `state`, before the cap.
    pub fn interval_minutes(&self, state: ComplianceState) -> u32 {
        match state {
            ComplianceState::Unknown => self.interval_unknown_minutes,
            ComplianceState::Critical => self.interval_critical_minutes,
            ComplianceState::Low => self.interval_low_minutes,
            ComplianceState::Partial => self.interval_partial_minutes,
            ComplianceState::MostlyCompliant => self.interval_mostly_compliant_minutes,
            ComplianceState::Compliant => self.interval_compliant_minutes,
        }
    }

    /// How long after a successful scan the next automatic scan of a host in `state` is
    /// due, capped at `max_interval_minutes`.
    pub fn interval_for(&self, state: ComplianceState) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.interval_minutes(state).min(self.max_interval_minutes)))
    }

    /// The delay before retrying a host after `failures` consecutive failed scans:
    /// `failure_backoff_base_minutes · 2^(failures-1)`, capped at `max_interval_minutes`
    /// (0 failures → no delay).
    pub fn backoff_for(&self, failures: u32) -> TimeDelta {
        if failures == 0 {
            return TimeDelta::zero();
        }
        let factor = 1_u64.checked_shl(failures - 1).unwrap_or(u64::MAX);
        let minutes = u64::from(self.failure_backoff_base_minutes)
            .saturating_mul(factor)
            .min(u64::from(self.max_interval_minutes));
        TimeDelta::minutes(i64::try_from(minutes).unwrap_or(i64::MAX))
    }
}

/// A partial change: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerConfigChangeset {
    /// New interval for `critical`.
    pub interval_critical_minutes: Option<u32>,
    /// New interval for `low`.
    pub interval_low_minutes: Option<u32>,
    /// New interval for `partial`.
    pub interval_partial_minutes: Option<u32>,
    /// New interval for `mostly_compliant`.
    pub interval_mostly_compliant_minutes: Option<u32>,
    /// New interval for `compliant`.
    pub interval_compliant_minutes: Option<u32>,
    /// New interval for `unknown`.
    pub interval_unknown_minutes: Option<u32>,
    /// New cap (1–2880).
    pub max_interval_minutes: Option<u32>,
    /// New back-off base (1–cap).
    pub failure_backoff_base_minutes: Option<u32>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = scheduler_config, check_for_backend(diesel::pg::Pg))]
struct SchedulerConfigRow {
    interval_critical_minutes: i32,
    interval_low_minutes: i32,
    interval_partial_minutes: i32,
    interval_mostly_compliant_minutes: i32,
    interval_compliant_minutes: i32,
    interval_unknown_minutes: i32,
    max_interval_minutes: i32,
    failure_backoff_base_minutes: i32,
    updated_by: Option<Uuid>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SchedulerConfigRow> for SchedulerConfig {
    type Error = DbError;

    fn try_from(row: SchedulerConfigRow) -> Result<Self, DbError> {
        let minutes = |value: i32, field: &str| {
            u32::try_from(value)
                .map_err(|_| DbError::InvalidData(format!("scheduler_config.{field} is negative ({value})")))
        };
        Ok(SchedulerConfig {
            interval_critical_minutes: minutes(row.interval_critical_minutes, "interval_critical_minutes")?,
            interval_low_minutes: minutes(row.interval_low_minutes, "interval_low_minutes")?,
            interval_partial_minutes: minutes(row.interval_partial_minutes, "interval_partial_minutes")?,
            interval_mostly_compliant_minutes: minutes(
                row.interval_mostly_compliant_minutes,
                "interval_mostly_compliant_minutes",
            )?,
            interval_compliant_minutes: minutes(
                row.interval_compliant_minutes,
                "interval_compliant_minutes",
            )?,
            interval_unknown_minutes: minutes(row.interval_unknown_minutes, "interval_unknown_minutes")?,
            max_interval_minutes: minutes(row.max_interval_minutes, "max_interval_minutes")?,
            failure_backoff_base_minutes: minutes(
                row.failure_backoff_base_minutes,
                "failure_backoff_base_minutes",
            )?,
            updated_by: row.updated_by.map(UserId),
            updated_at: row.updated_at,
        })
    }
}

/// The current schedule. The row is created by the migration; its absence is
/// [`DbError::NotFound`] (a damaged database).
pub async fn get(conn: &mut AsyncPgConnection) -> Result<SchedulerConfig, DbError> {
    let row: SchedulerConfigRow = scheduler_config::table
        .find(SINGLETON_ID)
        .select(SchedulerConfigRow::as_select())
        .first(conn)
        .await?;
    row.try_into()
}

/// The bound violated by `config`, as `(constraint, message)`.
fn out_of_bounds(config: &SchedulerConfig) -> Option<(String, String)> {
    let max = config.max_interval_minutes;
    if !(1..=MAX_INTERVAL_CEILING_MINUTES).contains(&max) {
        return Some((
            "scheduler_config_max_interval_minutes_range".to_owned(),
            format!("max_interval_minutes must be between 1 and {MAX_INTERVAL_CEILING_MINUTES} (got {max})"),
        ));
    }
    let intervals = [
        ("interval_critical_minutes", config.interval_critical_minutes),
        ("interval_low_minutes", config.interval_low_minutes),
        ("interval_partial_minutes", config.interval_partial_minutes),
        ("interval_mostly_compliant_minutes", config.interval_mostly_compliant_minutes),
        ("interval_compliant_minutes", config.interval_compliant_minutes),
        ("interval_unknown_minutes", config.interval_unknown_minutes),
    ];
    if let Some((field, value)) = intervals.into_iter().find(|(_, value)| *value > max) {
        return Some((
            format!("scheduler_config_{field}_range"),
            format!("{field} must be between 0 and max_interval_minutes ({max}) (got {value})"),
        ));
    }
    let base = config.failure_backoff_base_minutes;
    if !(1..=max).contains(&base) {
        return Some((
            "scheduler_config_failure_backoff_base_minutes_range".to_owned(),
            format!(
                "failure_backoff_base_minutes must be between 1 and max_interval_minutes ({max}) (got {base})"
            ),
        ));
    }
    None
}

/// Applies `changes` (the row is locked meanwhile, so concurrent updates serialise) and
/// returns the new schedule. A value out of bounds (an interval above the cap, a cap
/// outside 1–2880, a back-off base outside 1–cap) is [`DbError::Constraint`] with
/// constraint `scheduler_config_<field>_range` and nothing is written; the caller maps it
/// to 422. The effective intervals of hosts already scheduled change at their next scan.
pub async fn update(
    conn: &mut AsyncPgConnection,
    changes: &SchedulerConfigChangeset,
    updated_by: UserId,
) -> Result<SchedulerConfig, DbError> {
    let current: SchedulerConfigRow = scheduler_config::table
        .find(SINGLETON_ID)
        .select(SchedulerConfigRow::as_select())
        .for_update()
        .first(conn)
        .await?;
    let current = SchedulerConfig::try_from(current)?;
    let merged = SchedulerConfig {
        interval_critical_minutes: changes
            .interval_critical_minutes
            .unwrap_or(current.interval_critical_minutes),
        interval_low_minutes: changes.interval_low_minutes.unwrap_or(current.interval_low_minutes),
        interval_partial_minutes: changes
            .interval_partial_minutes
            .unwrap_or(current.interval_partial_minutes),
        interval_mostly_compliant_minutes: changes
            .interval_mostly_compliant_minutes
            .unwrap_or(current.interval_mostly_compliant_minutes),
        interval_compliant_minutes: changes
            .interval_compliant_minutes
            .unwrap_or(current.interval_compliant_minutes),
        interval_unknown_minutes: changes
            .interval_unknown_minutes
            .unwrap_or(current.interval_unknown_minutes),
        max_interval_minutes: changes.max_interval_minutes.unwrap_or(current.max_interval_minutes),
        failure_backoff_base_minutes: changes
            .failure_backoff_base_minutes
            .unwrap_or(current.failure_backoff_base_minutes),
        ..current
    };
    if let Some((constraint, message)) = out_of_bounds(&merged) {
        return Err(DbError::Constraint { constraint, message });
    }
    // Every value is at most MAX_INTERVAL_CEILING_MINUTES here, so the conversions hold.
    let int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
    let row: SchedulerConfigRow = diesel::update(scheduler_config::table.find(SINGLETON_ID))
        .set((
            scheduler_config::interval_critical_minutes.eq(int(merged.interval_critical_minutes)),
            scheduler_config::interval_low_minutes.eq(int(merged.interval_low_minutes)),
            scheduler_config::interval_partial_minutes.eq(int(merged.interval_partial_minutes)),
            scheduler_config::interval_mostly_compliant_minutes
                .eq(int(merged.interval_mostly_compliant_minutes)),
            scheduler_config::interval_compliant_minutes.eq(int(merged.interval_compliant_minutes)),
            scheduler_config::interval_unknown_minutes.eq(int(merged.interval_unknown_minutes)),
            scheduler_config::max_interval_minutes.eq(int(merged.max_interval_minutes)),
            scheduler_config::failure_backoff_base_minutes.eq(int(merged.failure_backoff_base_minutes)),
            scheduler_config::updated_by.eq(Some(updated_by.into_uuid())),
        ))
        .returning(SchedulerConfigRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SchedulerConfig {
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
    fn intervals_follow_the_state_and_respect_the_cap() {
        let mut config = defaults();
        assert_eq!(config.interval_for(ComplianceState::Critical), TimeDelta::hours(1));
        assert_eq!(config.interval_for(ComplianceState::Compliant), TimeDelta::hours(24));
        assert_eq!(config.interval_for(ComplianceState::Unknown), TimeDelta::zero());
        config.max_interval_minutes = 90;
        assert_eq!(config.interval_for(ComplianceState::Compliant), TimeDelta::minutes(90));
        assert_eq!(config.interval_for(ComplianceState::Critical), TimeDelta::minutes(60));
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let config = defaults();
        assert_eq!(config.backoff_for(0), TimeDelta::zero());
        assert_eq!(config.backoff_for(1), TimeDelta::minutes(5));
        assert_eq!(config.backoff_for(3), TimeDelta::minutes(20));
        assert_eq!(config.backoff_for(20), TimeDelta::minutes(2880));
        assert_eq!(config.backoff_for(u32::MAX), TimeDelta::minutes(2880));
    }

    #[test]
    fn bounds_name_the_offending_field() {
        let mut config = defaults();
        assert_eq!(out_of_bounds(&config), None);
        config.interval_low_minutes = 3000;
        let (constraint, message) = out_of_bounds(&config).unwrap();
        assert_eq!(constraint, "scheduler_config_interval_low_minutes_range");
        assert!(message.contains("2880"), "{message}");
        config.interval_low_minutes = 120;
        config.max_interval_minutes = 0;
        assert_eq!(out_of_bounds(&config).unwrap().0, "scheduler_config_max_interval_minutes_range");
        config.max_interval_minutes = 2880;
        config.failure_backoff_base_minutes = 0;
        assert_eq!(out_of_bounds(&config).unwrap().0, "scheduler_config_failure_backoff_base_minutes_range");
    }
}
