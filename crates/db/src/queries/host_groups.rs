//! Host groups and their membership.
//!
//! A group is a named set of hosts: credentials can be scoped to it
//! ([`crate::queries::credentials`]) and the host list can be filtered by it. Membership
//! is only the `(group, host)` pair and goes with either side (`ON DELETE CASCADE`).
//! Adding members is idempotent, so a client may resend the same list safely.

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, sql};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::ids::{HostGroupId, HostId};
use uuid::Uuid;

use crate::DbError;
use crate::queries::hosts::{Host, HostRow, like_contains};
use crate::queries::page::{Page, PageRequest, SortOrder};
use crate::schema::{host_group_members, host_groups, hosts};

/// Membership pairs per INSERT statement: 2 bind parameters each, far below PostgreSQL's
/// 65,535 parameter limit.
const MEMBERS_PER_STATEMENT: usize = 10_000;

/// The foreign key naming the group of a membership; its violation means "no such group".
const MEMBER_GROUP_FKEY: &str = "host_group_members_group_id_fkey";

/// A group to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHostGroup {
    /// New id (`HostGroupId::new()`).
    pub id: HostGroupId,
    /// Unique display name.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
}

/// A stored group with its current size.
#[derive(Debug, Clone, PartialEq)]
pub struct HostGroup {
    /// Id.
    pub id: HostGroupId,
    /// Unique display name.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Number of member hosts when read.
    pub member_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// Changes to a group; `None` leaves the field as it is (`Some(None)` clears the
/// description).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostGroupChangeset {
    /// New unique name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
}

#[derive(AsChangeset)]
#[diesel(table_name = host_groups)]
struct HostGroupChangesetRow {
    name: Option<String>,
    description: Option<Option<String>>,
}

#[derive(Queryable)]
struct HostGroupRow {
    id: Uuid,
    name: String,
    description: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    member_count: i64,
}

impl From<HostGroupRow> for HostGroup {
    fn from(row: HostGroupRow) -> Self {
        HostGroup {
            id: HostGroupId(row.id),
            name: row.name,
            description: row.description,
            member_count: row.member_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The group columns plus the correlated member count, in [`HostGroupRow`] order.
type GroupSelection = (
    host_groups::id,
    host_groups::name,
    host_groups::description,
    host_groups::created_at,
    host_groups::updated_at,
    diesel::expression::SqlLiteral<BigInt>,
);

fn group_selection() -> GroupSelection {
    (
        host_groups::id,
        host_groups::name,
        host_groups::description,
        host_groups::created_at,
        host_groups::updated_at,
        // Uses the (group_id, host_id) primary key index.
        sql::<BigInt>("(SELECT count(*) FROM host_group_members m WHERE m.group_id = host_groups.id)"),
    )
}

/// Creates a group. A taken name is [`DbError::Conflict`] (`host_groups_name_key`); an
/// empty name is [`DbError::Constraint`].
pub async fn insert_group(conn: &mut AsyncPgConnection, group: NewHostGroup) -> Result<HostGroup, DbError> {
    let row: HostGroupRow = diesel::insert_into(host_groups::table)
        .values((
            host_groups::id.eq(group.id.into_uuid()),
            host_groups::name.eq(group.name),
            host_groups::description.eq(group.description),
        ))
        .returning((
            host_groups::id,
            host_groups::name,
            host_groups::description,
            host_groups::created_at,
            host_groups::updated_at,
            // A new group has no members.
            sql::<BigInt>("0::bigint"),
        ))
        .get_result(conn)
        .await?;
    Ok(row.into())
}

/// The group with this id, or [`DbError::NotFound`].
pub async fn get_group(conn: &mut AsyncPgConnection, id: HostGroupId) -> Result<HostGroup, DbError> {
    let row: HostGroupRow =
        host_groups::table.find(id.into_uuid()).select(group_selection()).get_result(conn).await?;
    Ok(row.into())
}

fn filtered(q: Option<&str>) -> host_groups::BoxedQuery<'static, Pg> {
    let mut query = host_groups::table.into_boxed();
    if let Some(q) = q {
        query = query.filter(host_groups::name.ilike(like_contains(q)));
    }
    query
}

/// One page of groups whose name contains `q` (case-insensitive; `%` and `_` match
/// themselves), sorted by name in `order` (then id), with the total number of matches.
pub async fn list_groups(
    conn: &mut AsyncPgConnection,
    q: Option<&str>,
    order: SortOrder,
    page: PageRequest,
) -> Result<Page<HostGroup>, DbError> {
    let total: i64 = filtered(q).count().get_result(conn).await?;
    let query = match order {
        SortOrder::Asc => filtered(q).order_by(host_groups::name.asc()).then_order_by(host_groups::id.asc()),
        SortOrder::Desc => {
            filtered(q).order_by(host_groups::name.desc()).then_order_by(host_groups::id.desc())
        }
    };
    let rows: Vec<HostGroupRow> =
        query.select(group_selection()).limit(page.sql_limit()).offset(page.sql_offset()).load(conn).await?;
    Ok(Page {
        items: rows.into_iter().map(HostGroup::from).collect(),
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// Applies `changes` and returns the updated group. [`DbError::NotFound`] when there is
/// no such group; a taken name is [`DbError::Conflict`]. An empty changeset changes
/// nothing.
pub async fn update_group(
    conn: &mut AsyncPgConnection,
    id: HostGroupId,
    changes: HostGroupChangeset,
) -> Result<HostGroup, DbError> {
    if changes.name.is_none() && changes.description.is_none() {
        // diesel refuses an empty SET list.
        return get_group(conn, id).await;
    }
    let updated = diesel::update(host_groups::table.find(id.into_uuid()))
        .set(HostGroupChangesetRow { name: changes.name, description: changes.description })
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(DbError::NotFound);
    }
    get_group(conn, id).await
}

/// Deletes a group (its memberships and group-scoped credential go with it).
/// [`DbError::NotFound`] when there is no such group.
pub async fn delete_group(conn: &mut AsyncPgConnection, id: HostGroupId) -> Result<(), DbError> {
    let deleted = diesel::delete(host_groups::table.find(id.into_uuid())).execute(conn).await?;
    if deleted == 0 { Err(DbError::NotFound) } else { Ok(()) }
}

async fn group_exists(conn: &mut AsyncPgConnection, id: HostGroupId) -> Result<bool, DbError> {
    Ok(diesel::select(exists(host_groups::table.find(id.into_uuid()))).get_result(conn).await?)
}

/// Adds hosts to a group; returns how many were not members yet (idempotent: existing
/// members and repeated ids are skipped). An unknown host is [`DbError::Constraint`]
/// (`host_group_members_host_id_fkey`) and adds nothing of that statement; an unknown
/// group is [`DbError::NotFound`]. Run it in a transaction to make a large list
/// all-or-nothing (it is written in statements of 10,000 pairs).
pub async fn add_members(
    conn: &mut AsyncPgConnection,
    group: HostGroupId,
    host_ids: &[HostId],
) -> Result<usize, DbError> {
    if host_ids.is_empty() {
        return if group_exists(conn, group).await? { Ok(0) } else { Err(DbError::NotFound) };
    }
    let mut unique: Vec<Uuid> = host_ids.iter().map(|h| h.into_uuid()).collect();
    unique.sort_unstable();
    unique.dedup();
    let group = group.into_uuid();
    let mut added = 0;
    for chunk in unique.chunks(MEMBERS_PER_STATEMENT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|host| (host_group_members::group_id.eq(group), host_group_members::host_id.eq(*host)))
            .collect();
        added += diesel::insert_into(host_group_members::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Constraint { constraint, .. } if constraint == MEMBER_GROUP_FKEY => {
                    DbError::NotFound
                }
                other => other,
            })?;
    }
    Ok(added)
}

/// Removes a host from a group; returns whether it was a member.
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    group: HostGroupId,
    host: HostId,
) -> Result<bool, DbError> {
    let deleted = diesel::delete(host_group_members::table.find((group.into_uuid(), host.into_uuid())))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}

/// One page of a group's member hosts, by name (then id), with the member count.
/// [`DbError::NotFound`] when there is no such group.
pub async fn list_members(
    conn: &mut AsyncPgConnection,
    group: HostGroupId,
    page: PageRequest,
) -> Result<Page<Host>, DbError> {
    if !group_exists(conn, group).await? {
        return Err(DbError::NotFound);
    }
    let members = host_group_members::table
        .filter(host_group_members::group_id.eq(group.into_uuid()))
        .select(host_group_members::host_id);
    let total: i64 = host_group_members::table
        .filter(host_group_members::group_id.eq(group.into_uuid()))
        .count()
        .get_result(conn)
        .await?;
    let rows: Vec<HostRow> = hosts::table
        .filter(hosts::id.eq_any(members))
        .order_by((hosts::name.asc(), hosts::id.asc()))
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

/// The groups a host belongs to, by group name (empty for an unknown host).
pub async fn group_ids_of_host(
    conn: &mut AsyncPgConnection,
    host: HostId,
) -> Result<Vec<HostGroupId>, DbError> {
    let ids: Vec<Uuid> = host_group_members::table
        .inner_join(host_groups::table)
        .filter(host_group_members::host_id.eq(host.into_uuid()))
        .order_by((host_groups::name.asc(), host_groups::id.asc()))
        .select(host_groups::id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(HostGroupId).collect())
}

/// The member hosts of a group, by id (empty for an unknown group).
pub async fn host_ids_in_group(
    conn: &mut AsyncPgConnection,
    group: HostGroupId,
) -> Result<Vec<HostId>, DbError> {
    let ids: Vec<Uuid> = host_group_members::table
        .filter(host_group_members::group_id.eq(group.into_uuid()))
        .order_by(host_group_members::host_id.asc())
        .select(host_group_members::host_id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(HostId).collect())
}
