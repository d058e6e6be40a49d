//! SSH host keys (known hosts): trust on first use, approval and revocation.
//!
//! Each key a host presents is recorded once per `(host, key type, fingerprint)`.
//! Status moves only forward:
//!
//! ```text
//! pending ──approve──▶ trusted ──revoke──▶ revoked
//!    └──────────────revoke──────────────────▲
//! ```
//!
//! * [`record_seen`] inserts a new key `pending`, or `trusted` when the caller allows
//!   trust on first use and the host has no trusted key of that type yet. Seeing a known
//!   key again changes nothing (it only fills in a missing public key) and returns it as
//!   stored, so a key that was revoked stays revoked: the scanner must refuse it.
//! * [`approve`] makes a pending key trusted and, because only one key per host and key
//!   type may be trusted (`ssh_known_hosts_one_trusted_key`), revokes the previously
//!   trusted key of that type in the same transaction (a key rotation). Approving a
//!   revoked key is refused with [`DbError::Constraint`] named
//!   [`STATUS_TRANSITION_CONSTRAINT`]; approving a trusted key again is a no-op.
//! * [`revoke`] makes a pending or trusted key revoked; revoking again is a no-op.
//!
//! [`approve`] and [`record_seen`] run their statements in a transaction of their own
//! (a savepoint when the caller already holds one), so they are atomic either way; the
//! caller still wraps them in its transaction when it writes an audit or outbox row.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::ids::{HostId, KnownHostId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest};
use crate::schema::ssh_known_hosts;

/// The constraint name reported (in [`DbError::Constraint`]) for a refused status change,
/// such as approving a revoked key.
pub const STATUS_TRANSITION_CONSTRAINT: &str = "known_host_status_transition";

/// The partial unique index allowing one trusted key per host and key type.
const ONE_TRUSTED_KEY: &str = "ssh_known_hosts_one_trusted_key";

/// Trust status of a recorded host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnownHostStatus {
    /// Seen, not yet approved: refused in strict mode.
    Pending,
    /// Accepted for connections.
    Trusted,
    /// Never accepted again.
    Revoked,
}

impl KnownHostStatus {
    /// The stable storage and wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Trusted => "trusted",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KnownHostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KnownHostStatus {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "trusted" => Ok(Self::Trusted),
            "revoked" => Ok(Self::Revoked),
            _ => Err(UnknownVariant {
                kind: "known host status",
                value: s.to_owned(),
                expected: "pending, trusted, revoked".to_owned(),
            }),
        }
    }
}

/// A recorded SSH host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// Id.
    pub id: KnownHostId,
    /// The host that presented it.
    pub host_id: HostId,
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:<base64>` as printed by `ssh-keygen -l`.
    pub fingerprint_sha256: String,
    /// Base64 public key blob, when recorded.
    pub public_key: Option<String>,
    /// Trust status.
    pub status: KnownHostStatus,
    /// When it was first presented.
    pub first_seen_at: DateTime<Utc>,
    /// Who approved it (`None` when trusted on first use, or the user was deleted).
    pub approved_by: Option<UserId>,
    /// When it became trusted.
    pub approved_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = ssh_known_hosts, check_for_backend(diesel::pg::Pg))]
struct KnownHostRow {
    id: Uuid,
    host_id: Uuid,
    key_type: String,
    fingerprint_sha256: String,
    public_key: Option<String>,
    status: String,
    first_seen_at: DateTime<Utc>,
    approved_by: Option<Uuid>,
    approved_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<KnownHostRow> for KnownHost {
    type Error = DbError;

    fn try_from(row: KnownHostRow) -> Result<Self, DbError> {
        Ok(KnownHost {
            id: KnownHostId(row.id),
            host_id: HostId(row.host_id),
            status: row
                .status
                .parse()
                .map_err(|e| DbError::InvalidData(format!("known host {}: {e}", row.id)))?,
            key_type: row.key_type,
            fingerprint_sha256: row.fingerprint_sha256,
            public_key: row.public_key,
            first_seen_at: row.first_seen_at,
            approved_by: row.approved_by.map(UserId),
            approved_at: row.approved_at,
            revoked_at: row.revoked_at,
        })
    }
}

fn filtered(
    host: Option<HostId>,
    status: Option<KnownHostStatus>,
) -> ssh_known_hosts::BoxedQuery<'static, Pg> {
    let mut query = ssh_known_hosts::table.into_boxed();
    if let Some(host) = host {
        query = query.filter(ssh_known_hosts::host_id.eq(host.into_uuid()));
    }
    if let Some(status) = status {
        query = query.filter(ssh_known_hosts::status.eq(status.as_str()));
    }
    query
}

/// One page of recorded keys (optionally of one host and/or in one status), oldest first
/// (then by id), with the total number of matches.
pub async fn list(
    conn: &mut AsyncPgConnection,
    host: Option<HostId>,
    status: Option<KnownHostStatus>,
    page: PageRequest,
) -> Result<Page<KnownHost>, DbError> {
    let total: i64 = filtered(host, status).count().get_result(conn).await?;
    let rows: Vec<KnownHostRow> = filtered(host, status)
        .order_by((ssh_known_hosts::first_seen_at.asc(), ssh_known_hosts::id.asc()))
        .select(KnownHostRow::as_select())
        .limit(page.sql_limit())
        .offset(page.sql_offset())
        .load(conn)
        .await?;
    Ok(Page {
        items: rows.into_iter().map(KnownHost::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// The key with this id, or [`DbError::NotFound`].
pub async fn get(conn: &mut AsyncPgConnection, id: KnownHostId) -> Result<KnownHost, DbError> {
    let row: KnownHostRow = ssh_known_hosts::table
        .find(id.into_uuid())
        .select(KnownHostRow::as_select())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Inserts the key unless `(host, key type, fingerprint)` is recorded already; when it
/// is, fills in a missing public key. Returns the row only when it was inserted or changed.
async fn upsert_seen(
    conn: &mut AsyncPgConnection,
    host: Uuid,
    key_type: &str,
    fingerprint: &str,
    public_key: Option<&str>,
    trust: bool,
) -> Result<Option<KnownHostRow>, DbError> {
    Ok(diesel::sql_query(
        "INSERT INTO ssh_known_hosts (id, host_id, key_type, fingerprint_sha256, public_key, status) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 AND NOT EXISTS ( \
             SELECT 1 FROM ssh_known_hosts t \
             WHERE t.host_id = $2 AND t.key_type = $3 AND t.status = 'trusted') \
           THEN 'trusted' ELSE 'pending' END) \
         ON CONFLICT (host_id, key_type, fingerprint_sha256) DO UPDATE \
           SET public_key = EXCLUDED.public_key \
           WHERE ssh_known_hosts.public_key IS NULL AND EXCLUDED.public_key IS NOT NULL \
         RETURNING *",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
    .bind::<diesel::sql_types::Uuid, _>(host)
    .bind::<Text, _>(key_type)
    .bind::<Text, _>(fingerprint)
    .bind::<Nullable<Text>, _>(public_key)
    .bind::<Bool, _>(trust)
    .get_result(conn)
    .await
    .optional()?)
}

/// Records that `host` presented this key (trust on first use) and returns it as stored.
///
/// A new key is `trusted` when `trust` is set and the host has no trusted key of this
/// type, else `pending`. A key seen before is returned unchanged (whatever its status),
/// except that a missing public key is filled in. If another key of this type became
/// trusted concurrently, the new key is recorded `pending` instead of failing. An unknown
/// host is [`DbError::Constraint`]; a fingerprint not starting with `SHA256:` or an empty
/// key type is [`DbError::Constraint`] too.
pub async fn record_seen(
    conn: &mut AsyncPgConnection,
    host: HostId,
    key_type: &str,
    fingerprint_sha256: &str,
    public_key: Option<&str>,
    trust: bool,
) -> Result<KnownHost, DbError> {
    let host = host.into_uuid();
    let key_type = key_type.to_owned();
    let fingerprint = fingerprint_sha256.to_owned();
    let public_key = public_key.map(str::to_owned);
    conn.transaction::<_, DbError, _>(async move |conn| {
        let first = conn
            .transaction::<_, DbError, _>(async |conn| {
                upsert_seen(conn, host, &key_type, &fingerprint, public_key.as_deref(), trust).await
            })
            .await;
        let inserted = match first {
            // Lost a race with another trusted key of this type: record it pending.
            Err(DbError::Conflict { constraint }) if trust && constraint == ONE_TRUSTED_KEY => {
                upsert_seen(conn, host, &key_type, &fingerprint, public_key.as_deref(), false).await?
            }
            other => other?,
        };
        let row = match inserted {
            Some(row) => row,
            None => {
                ssh_known_hosts::table
                    .filter(ssh_known_hosts::host_id.eq(host))
                    .filter(ssh_known_hosts::key_type.eq(&key_type))
                    .filter(ssh_known_hosts::fingerprint_sha256.eq(&fingerprint))
                    .select(KnownHostRow::as_select())
                    .get_result(conn)
                    .await?
            }
        };
        row.try_into()
    })
    .await
}

fn transition_refused(id: Uuid, from: KnownHostStatus, action: &str) -> DbError {
    DbError::Constraint {
        constraint: STATUS_TRANSITION_CONSTRAINT.to_owned(),
        message: format!("known host {id} is {from} and cannot be {action}"),
    }
}

/// Approves a pending key (`by` at `now`) and revokes the key of the same host and type
/// that was trusted before, atomically; returns the approved key. Approving a trusted key
/// returns it unchanged; a revoked one is [`DbError::Constraint`]
/// ([`STATUS_TRANSITION_CONSTRAINT`]); an unknown id is [`DbError::NotFound`]; an unknown
/// user is [`DbError::Constraint`]. Concurrent approvals for the same host and key type
/// serialise on row locks, so the last one wins and the others' keys end up revoked.
pub async fn approve(
    conn: &mut AsyncPgConnection,
    id: KnownHostId,
    by: UserId,
    now: DateTime<Utc>,
) -> Result<KnownHost, DbError> {
    let id = id.into_uuid();
    conn.transaction::<_, DbError, _>(async move |conn| {
        let (host, key_type): (Uuid, String) = ssh_known_hosts::table
            .find(id)
            .select((ssh_known_hosts::host_id, ssh_known_hosts::key_type))
            .get_result(conn)
            .await?;
        // Lock every key of this host and type (in id order, so concurrent approvals
        // cannot deadlock), then read the target's status under the lock.
        let locked: Vec<(Uuid, String)> = ssh_known_hosts::table
            .filter(ssh_known_hosts::host_id.eq(host))
            .filter(ssh_known_hosts::key_type.eq(&key_type))
            .order_by(ssh_known_hosts::id.asc())
            .select((ssh_known_hosts::id, ssh_known_hosts::status))
            .for_update()
            .load(conn)
            .await?;
        let status = locked.iter().find(|(key, _)| *key == id).map(|(_, s)| s.as_str()).unwrap_or_default();
        match status.parse::<KnownHostStatus>() {
            Ok(KnownHostStatus::Pending) => {}
            Ok(KnownHostStatus::Trusted) => return get(conn, KnownHostId(id)).await,
            Ok(KnownHostStatus::Revoked) => {
                return Err(transition_refused(id, KnownHostStatus::Revoked, "approved"));
            }
            Err(e) => return Err(DbError::InvalidData(format!("known host {id}: {e}"))),
        }
        diesel::update(
            ssh_known_hosts::table
                .filter(ssh_known_hosts::host_id.eq(host))
                .filter(ssh_known_hosts::key_type.eq(&key_type))
                .filter(ssh_known_hosts::status.eq(KnownHostStatus::Trusted.as_str()))
                .filter(ssh_known_hosts::id.ne(id)),
        )
        .set((
            ssh_known_hosts::status.eq(KnownHostStatus::Revoked.as_str()),
            ssh_known_hosts::revoked_at.eq(now),
        ))
        .execute(conn)
        .await?;
        let row: KnownHostRow = diesel::update(ssh_known_hosts::table.find(id))
            .set((
                ssh_known_hosts::status.eq(KnownHostStatus::Trusted.as_str()),
                ssh_known_hosts::approved_by.eq(by.into_uuid()),
                ssh_known_hosts::approved_at.eq(now),
            ))
            .returning(KnownHostRow::as_returning())
            .get_result(conn)
            .await?;
        row.try_into()
    })
    .await
}

/// Revokes a pending or trusted key at `now` and returns it; revoking a revoked key
/// returns it unchanged. [`DbError::NotFound`] when there is no such key.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: KnownHostId,
    now: DateTime<Utc>,
) -> Result<KnownHost, DbError> {
    let row: Option<KnownHostRow> = diesel::update(
        ssh_known_hosts::table
            .find(id.into_uuid())
            .filter(ssh_known_hosts::status.ne(KnownHostStatus::Revoked.as_str())),
    )
    .set((ssh_known_hosts::status.eq(KnownHostStatus::Revoked.as_str()), ssh_known_hosts::revoked_at.eq(now)))
    .returning(KnownHostRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match row {
        Some(row) => row.try_into(),
        None => get(conn, id).await,
    }
}

/// The keys a connection to `host` may accept (strict mode), by key type.
pub async fn trusted_keys_for_host(
    conn: &mut AsyncPgConnection,
    host: HostId,
) -> Result<Vec<KnownHost>, DbError> {
    let rows: Vec<KnownHostRow> = ssh_known_hosts::table
        .filter(ssh_known_hosts::host_id.eq(host.into_uuid()))
        .filter(ssh_known_hosts::status.eq(KnownHostStatus::Trusted.as_str()))
        .order_by((ssh_known_hosts::key_type.asc(), ssh_known_hosts::id.asc()))
        .select(KnownHostRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(KnownHost::try_from).collect()
}
