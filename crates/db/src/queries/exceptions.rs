//! Rule exceptions (waivers of one rule on one host, under four-eyes approval).
//!
//! Life cycle: `requested → approved | rejected` ([`decide`], by someone other than the
//! requester), `approved → revoked` ([`revoke`]) or `→ expired` ([`expire_due`], the
//! `maintenance` job). At most one exception per host and rule is open (`requested` or
//! `approved`) at a time.
//!
//! An exception is **active** (it waives the rule) while it is `approved` and its
//! `expires_at` lies in the future. Every query that computes an `excepted` flag or
//! excludes waived results uses that one SQL definition (`ACTIVE_EXCEPTION`), so an
//! exception stops counting the moment it lapses, even before the expiry job marks it.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::UnknownVariant;
use openwatch_common::ids::{ExceptionId, HostId, UserId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::page::{Page, PageRequest};
use crate::schema::exceptions;

/// Declares a `TEXT`-stored status enum of this crate (one the `common` crate does not
/// define): snake_case serde, `ALL`, `as_str`, `Display`, and `FromStr` rejecting unknown
/// spellings with [`UnknownVariant`].
macro_rules! text_enum {
    (
        $(#[$doc:meta])* $name:ident : $kind:literal {
            $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable stored and wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = openwatch_common::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(openwatch_common::UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// Where an exception is in its life cycle.
    ExceptionStatus: "exception status" {
        /// Waiting for a decision.
        Requested => "requested",
        /// Approved: waives the rule until `expires_at`.
        Approved => "approved",
        /// Refused by the decider.
        Rejected => "rejected",
        /// Withdrawn after approval.
        Revoked => "revoked",
        /// Its `expires_at` passed (set by the expiry job).
        Expired => "expired",
    }
);

/// SQL condition on an `exceptions` row aliased `ex`: it is active (waives its rule now).
/// The one definition every `excepted` computation uses.
pub(crate) const ACTIVE_EXCEPTION: &str = "ex.status = 'approved' AND ex.expires_at > now()";

/// SQL condition (for a `WHERE` or a select list) that is true when an active exception
/// (approved, `expires_at > now()`) exists for the `host_id` and `rule_id` columns of
/// `table` (a table name or alias). Served by `exceptions_host_id_rule_id_idx`.
pub(crate) fn active_exception_sql(table: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM exceptions ex WHERE ex.host_id = {table}.host_id \
         AND ex.rule_id = {table}.rule_id AND {ACTIVE_EXCEPTION})"
    )
}

/// SQL `LEFT JOIN` of the active exception (approved, `expires_at > now()`) of each row
/// of `table` (a table name or alias with `host_id` and `rule_id`), as alias `ex`; `ex.host_id
/// IS NULL` then means "not waived". At most one row joins per (host, rule): open
/// exceptions are unique (`exceptions_one_open_key`). For aggregates over many rows, where
/// a hash join beats one [`active_exception_sql`] probe per row.
pub(crate) fn active_exception_join(table: &str) -> String {
    format!(
        "LEFT JOIN exceptions ex ON ex.host_id = {table}.host_id AND ex.rule_id = {table}.rule_id \
         AND {ACTIVE_EXCEPTION}"
    )
}

/// A stored exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Id.
    pub id: ExceptionId,
    /// The host it applies to.
    pub host_id: HostId,
    /// The waived rule.
    pub rule_id: String,
    /// Why the rule should not apply (compensating control, vendor constraint, …).
    pub reason: String,
    /// Life-cycle status.
    pub status: ExceptionStatus,
    /// Who asked for it (`None` once that account is deleted).
    pub requested_by: Option<UserId>,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// Who approved or rejected it.
    pub decided_by: Option<UserId>,
    /// When it was approved or rejected.
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's note.
    pub decision_note: Option<String>,
    /// When the waiver ends.
    pub expires_at: DateTime<Utc>,
}

impl Exception {
    /// Whether it waives its rule at `now`: approved and not yet expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.status == ExceptionStatus::Approved && self.expires_at > now
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = exceptions, check_for_backend(diesel::pg::Pg))]
struct ExceptionRow {
    id: Uuid,
    host_id: Uuid,
    rule_id: String,
    reason: String,
    status: String,
    requested_by: Option<Uuid>,
    requested_at: DateTime<Utc>,
    decided_by: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    decision_note: Option<String>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<ExceptionRow> for Exception {
    type Error = DbError;

    fn try_from(row: ExceptionRow) -> Result<Self, DbError> {
        Ok(Exception {
            id: ExceptionId(row.id),
            host_id: HostId(row.host_id),
            status: row
                .status
                .parse()
                .map_err(|e: UnknownVariant| DbError::InvalidData(format!("exception {}: {e}", row.id)))?,
            requested_by: row.requested_by.map(UserId),
            decided_by: row.decided_by.map(UserId),
            rule_id: row.rule_id,
            reason: row.reason,
            requested_at: row.requested_at,
            decided_at: row.decided_at,
            decision_note: row.decision_note,
            expires_at: row.expires_at,
        })
    }
}

/// An exception to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewException {
    /// New id (`ExceptionId::new()`).
    pub id: ExceptionId,
    /// The host.
    pub host_id: HostId,
    /// The rule to waive.
    pub rule_id: String,
    /// Justification (non-empty).
    pub reason: String,
    /// The requesting user; may not decide on it.
    pub requested_by: UserId,
    /// When the waiver should end (after the request time).
    pub expires_at: DateTime<Utc>,
}

/// Records a request (status `requested`, `requested_at = now()`).
///
/// A second open (requested or approved) exception for the same host and rule is
/// [`DbError::Conflict`] (`exceptions_one_open_key`); an empty reason, an `expires_at` not
/// after now, or an unknown host or user is [`DbError::Constraint`].
pub async fn request_exception(
    conn: &mut AsyncPgConnection,
    new: NewException,
) -> Result<Exception, DbError> {
    let row: ExceptionRow = diesel::insert_into(exceptions::table)
        .values((
            exceptions::id.eq(new.id.into_uuid()),
            exceptions::host_id.eq(new.host_id.into_uuid()),
            exceptions::rule_id.eq(new.rule_id),
            exceptions::reason.eq(new.reason),
            exceptions::requested_by.eq(Some(new.requested_by.into_uuid())),
            exceptions::expires_at.eq(new.expires_at),
        ))
        .returning(ExceptionRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// The exception with this id, or [`DbError::NotFound`].
pub async fn get_exception(conn: &mut AsyncPgConnection, id: ExceptionId) -> Result<Exception, DbError> {
    let row: ExceptionRow =
        exceptions::table.find(id.into_uuid()).select(ExceptionRow::as_select()).first(conn).await?;
    row.try_into()
}

async fn lock_exception(conn: &mut AsyncPgConnection, id: ExceptionId) -> Result<Exception, DbError> {
    let row: ExceptionRow = exceptions::table
        .find(id.into_uuid())
        .select(ExceptionRow::as_select())
        .for_update()
        .first(conn)
        .await?;
    row.try_into()
}

fn wrong_state(constraint: &str, exception: &Exception, expected: &str) -> DbError {
    DbError::Constraint {
        constraint: constraint.to_owned(),
        message: format!(
            "exception {} is {}; only {expected} exceptions can be changed so",
            exception.id, exception.status
        ),
    }
}

/// Approves or rejects a `requested` exception; returns it updated.
///
/// Refusals, all [`DbError::Constraint`] (nothing is written):
/// * `exceptions_four_eyes` — the decider is the requester (the CHECK of the same name
///   backs this up);
/// * `exception_not_requested` — it was already decided (or revoked, expired): a decision
///   is made once (the caller maps it to 409);
/// * `exception_already_expired` — approving one whose `expires_at` is not after `now`.
///
/// An unknown id is [`DbError::NotFound`].
pub async fn decide(
    conn: &mut AsyncPgConnection,
    id: ExceptionId,
    decider: UserId,
    approve: bool,
    note: Option<String>,
    now: DateTime<Utc>,
) -> Result<Exception, DbError> {
    let current = lock_exception(conn, id).await?;
    if current.requested_by == Some(decider) {
        return Err(DbError::Constraint {
            constraint: "exceptions_four_eyes".to_owned(),
            message: "the requester of an exception cannot decide on it".to_owned(),
        });
    }
    if current.status != ExceptionStatus::Requested {
        return Err(wrong_state("exception_not_requested", &current, "requested"));
    }
    if approve && current.expires_at <= now {
        return Err(DbError::Constraint {
            constraint: "exception_already_expired".to_owned(),
            message: format!("exception {id} expired at {}; request a new one", current.expires_at),
        });
    }
    let status = if approve { ExceptionStatus::Approved } else { ExceptionStatus::Rejected };
    let row: ExceptionRow = diesel::update(exceptions::table.find(id.into_uuid()))
        .set((
            exceptions::status.eq(status.as_str()),
            exceptions::decided_by.eq(Some(decider.into_uuid())),
            exceptions::decided_at.eq(Some(now)),
            exceptions::decision_note.eq(note),
        ))
        .returning(ExceptionRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Withdraws an `approved` exception (status `revoked`); returns it updated. The rule
/// counts again at once.
///
/// The table has no column for who revoked it or when (`decided_by`/`decided_at` keep the
/// approval), so `_revoked_by` and `_now` are not stored: the caller records them in the
/// audit log (they are in the signature for when the table gains those columns). Any status other
/// than `approved` is [`DbError::Constraint`] `exception_not_approved`; an unknown id is
/// [`DbError::NotFound`].
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: ExceptionId,
    _revoked_by: UserId,
    _now: DateTime<Utc>,
) -> Result<Exception, DbError> {
    let current = lock_exception(conn, id).await?;
    if current.status != ExceptionStatus::Approved {
        return Err(wrong_state("exception_not_approved", &current, "approved"));
    }
    let row: ExceptionRow = diesel::update(exceptions::table.find(id.into_uuid()))
        .set(exceptions::status.eq(ExceptionStatus::Revoked.as_str()))
        .returning(ExceptionRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

/// Which exceptions [`list_exceptions`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionFilter {
    /// Only this host's.
    pub host_id: Option<HostId>,
    /// Only this rule's.
    pub rule_id: Option<String>,
    /// Only in this status (as stored: a lapsed `approved` one is still `approved` until
    /// the expiry job runs; see [`Exception::is_active`]).
    pub status: Option<ExceptionStatus>,
}

fn filter_exceptions<'a, ST: 'a>(
    mut query: exceptions::BoxedQuery<'a, Pg, ST>,
    filter: &'a ExceptionFilter,
) -> exceptions::BoxedQuery<'a, Pg, ST> {
    if let Some(host) = filter.host_id {
        query = query.filter(exceptions::host_id.eq(host.into_uuid()));
    }
    if let Some(rule) = &filter.rule_id {
        query = query.filter(exceptions::rule_id.eq(rule.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(exceptions::status.eq(status.as_str()));
    }
    query
}

/// One page of exceptions matching `filter`, newest request first, with the total.
pub async fn list_exceptions(
    conn: &mut AsyncPgConnection,
    filter: &ExceptionFilter,
    page: PageRequest,
) -> Result<Page<Exception>, DbError> {
    let total: i64 =
        filter_exceptions(exceptions::table.into_boxed(), filter).count().get_result(conn).await?;
    let rows: Vec<ExceptionRow> =
        filter_exceptions(exceptions::table.select(ExceptionRow::as_select()).into_boxed(), filter)
            .order((exceptions::requested_at.desc(), exceptions::id.desc()))
            .limit(page.sql_limit())
            .offset(page.sql_offset())
            .load(conn)
            .await?;
    Ok(Page {
        items: rows.into_iter().map(Exception::try_from).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// Marks approved exceptions whose `expires_at` is at or before `now` as `expired`;
/// returns how many changed. Idempotent (the `maintenance` job may run it twice).
pub async fn expire_due(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> Result<usize, DbError> {
    Ok(diesel::update(
        exceptions::table.filter(exceptions::status.eq("approved")).filter(exceptions::expires_at.le(now)),
    )
    .set(exceptions::status.eq("expired"))
    .execute(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_spellings_are_rejected() {
        for status in ExceptionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExceptionStatus>().unwrap(), *status);
        }
        let err = "pending".parse::<ExceptionStatus>().unwrap_err();
        assert_eq!(err.kind, "exception status");
    }

    #[test]
    fn only_approved_unexpired_exceptions_are_active() {
        let now = Utc::now();
        let mut exception = Exception {
            id: ExceptionId::new(),
            host_id: HostId::new(),
            rule_id: "r".into(),
            reason: "why".into(),
            status: ExceptionStatus::Approved,
            requested_by: None,
            requested_at: now,
            decided_by: None,
            decided_at: Some(now),
            decision_note: None,
            expires_at: now + chrono::TimeDelta::hours(1),
        };
        assert!(exception.is_active(now));
        assert!(!exception.is_active(exception.expires_at));
        exception.status = ExceptionStatus::Requested;
        assert!(!exception.is_active(now));
    }
}
