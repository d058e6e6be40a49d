//! The scan worker's side of a scan: starting a run, and reading the status again before
//! its result is published.
//!
//! A scan row is written `queued` by whoever requests it; a worker that takes the request
//! off the queue calls [`start_run`], one statement that moves the scan
//! `queued | running → running`, counts the attempt, sets the lease and returns what the
//! worker needs to connect (the host's address, port and name) and what to evaluate (the
//! framework filter). Starting a `running` scan again is deliberate: the broker redelivers
//! a request only when the worker that had it died or lost its connection before acking,
//! so the run it started is gone (or its late result is ignored, see below). A scan that is
//! already `completed`, `failed` or `cancelled` is left alone and reported as such: the
//! worker acks the redelivered request and does nothing.
//!
//! The worker does not write the outcome itself: it publishes `ScanCompletedV1` and
//! `result-processor` records it ([`super::scans::record_completed`]), which ignores a scan
//! already in a terminal state. Before publishing, the worker reads [`current_status`]
//! again, so a scan cancelled while it ran is not published at all.
//!
//! `lease_expires_at` is how long the worker promises a run may take; a `running` scan whose
//! lease has passed was abandoned by its worker (the stale-scan reaper fails it). Workers
//! choose a lease longer than their whole-scan timeout.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ScanStatus, ScanTrigger};
use openwatch_common::ids::{HostId, ScanId};
use uuid::Uuid;

use crate::DbError;
use crate::schema::scans;

/// Where a scan connects to: the host row's address, port and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    /// Display name (for logs).
    pub name: String,
    /// DNS name or IP address.
    pub address: String,
    /// SSH port.
    pub port: u16,
}

/// A scan a worker has just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRun {
    /// The scan.
    pub scan_id: ScanId,
    /// Its host (from the scan row, the source of truth).
    pub host_id: HostId,
    /// The host's connection details.
    pub host: RunTarget,
    /// Manual or scheduled.
    pub trigger: ScanTrigger,
    /// Only rules mapped to this framework, when set.
    pub framework: Option<String>,
    /// When the first attempt started (kept across attempts).
    pub started_at: DateTime<Utc>,
    /// Attempts so far, this one included (1 on the first start).
    pub attempts: u32,
    /// Until when this run holds the scan.
    pub lease_expires_at: DateTime<Utc>,
}

/// What [`start_run`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The scan is now `running`, held by the caller until the lease expires.
    Started(ScanRun),
    /// The scan is `completed`, `failed` or `cancelled`: nothing to do (a redelivery, or a
    /// request cancelled before a worker took it).
    AlreadyFinished(ScanStatus),
    /// No such scan (never written, or deleted with its host).
    UnknownScan,
}

#[derive(QueryableByName)]
struct StartedRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    host_id: Uuid,
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = Nullable<Text>)]
    framework: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    host_name: String,
    #[diesel(sql_type = Text)]
    host_address: String,
    #[diesel(sql_type = Integer)]
    host_port: i32,
}

impl TryFrom<StartedRow> for ScanRun {
    type Error = DbError;

    fn try_from(row: StartedRow) -> Result<Self, DbError> {
        let invalid = |what: String| DbError::InvalidData(format!("scan {}: {what}", row.id));
        Ok(ScanRun {
            scan_id: ScanId(row.id),
            host_id: HostId(row.host_id),
            host: RunTarget {
                port: u16::try_from(row.host_port)
                    .map_err(|_| invalid(format!("host port {} is out of range", row.host_port)))?,
                name: row.host_name,
                address: row.host_address,
            },
            trigger: row.trigger.parse().map_err(|e| invalid(format!("{e}")))?,
            framework: row.framework,
            started_at: row.started_at,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            lease_expires_at: row.lease_expires_at,
        })
    }
}

/// Starts (or restarts) a run of `scan` at `now`, holding it for `lease`: atomically
/// `queued | running → running`, `started_at` kept when already set, `attempts + 1`,
/// `lease_expires_at = now + lease`; returns the scan with its host. A scan in a terminal
/// state is returned as [`StartOutcome::AlreadyFinished`] unchanged; an unknown id is
/// [`StartOutcome::UnknownScan`].
pub async fn start_run(
    conn: &mut AsyncPgConnection,
    scan: ScanId,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<StartOutcome, DbError> {
    let lease_expires_at = TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let started: Option<StartedRow> = diesel::sql_query(
        "WITH started AS ( \
             UPDATE scans \
                SET status = 'running', \
                    started_at = coalesce(started_at, $2), \
                    attempts = attempts + 1, \
                    lease_expires_at = $3 \
              WHERE id = $1 AND status IN ('queued', 'running') \
          RETURNING id, host_id, trigger, framework, started_at, attempts, lease_expires_at) \
         SELECT s.id, s.host_id, s.trigger, s.framework, s.started_at, s.attempts, s.lease_expires_at, \
                h.name AS host_name, h.address AS host_address, h.port AS host_port \
           FROM started s JOIN hosts h ON h.id = s.host_id",
    )
    .bind::<diesel::sql_types::Uuid, _>(scan.into_uuid())
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(lease_expires_at)
    .get_result(conn)
    .await
    .optional()?;
    if let Some(row) = started {
        return Ok(StartOutcome::Started(row.try_into()?));
    }
    // Nothing to start: a terminal scan stays terminal, so this read cannot race back.
    Ok(match current_status(conn, scan).await? {
        Some(status) => StartOutcome::AlreadyFinished(status),
        None => StartOutcome::UnknownScan,
    })
}

/// The scan's status now, or `None` when it does not exist (any more). The worker reads it
/// after collecting and before publishing: a scan cancelled meanwhile is not published.
pub async fn current_status(
    conn: &mut AsyncPgConnection,
    scan: ScanId,
) -> Result<Option<ScanStatus>, DbError> {
    let status: Option<String> =
        scans::table.find(scan.into_uuid()).select(scans::status).first(conn).await.optional()?;
    status
        .map(|s| s.parse().map_err(|e| DbError::InvalidData(format!("scan {scan}: status: {e}"))))
        .transpose()
}
