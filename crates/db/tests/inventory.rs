//! Inventory queries against a real PostgreSQL: the host list (filters, sorting, paging),
//! host updates and the CSV-style bulk import, host groups and membership, credentials
//! (resolution order, secrecy of metadata, one per scope), SSH known hosts (TOFU,
//! approval with key rotation, revocation) and maintenance windows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{Double, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::{CredentialId, HostGroupId, HostId, KnownHostId, UserId};
use openwatch_db::DbError;
use openwatch_db::queries::credentials::{
    self, AuthMethod, CredentialMetadata, CredentialScope, CredentialScopeKind, NewCredential, ScopeFilter,
};
use openwatch_db::queries::host_groups::{self, HostGroupChangeset, NewHostGroup};
use openwatch_db::queries::hosts::{
    self, HostChangeset, HostFilter, HostSort, NewHost, get_host, insert_host, insert_hosts_bulk, list_hosts,
};
use openwatch_db::queries::known_hosts::{self, KnownHostStatus, STATUS_TRANSITION_CONSTRAINT};
use openwatch_db::queries::maintenance_windows::{self, NewMaintenanceWindow};
use openwatch_db::queries::page::{PageRequest, SortOrder};
use openwatch_test_support::database::TestDatabase;
use uuid::Uuid;

const ED25519: &str = "ssh-ed25519";

fn new_host(name: &str, address: &str, tags: &[&str]) -> NewHost {
    NewHost {
        id: HostId::new(),
        name: name.to_owned(),
        address: address.to_owned(),
        port: 22,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn page(limit: u32, offset: u64) -> PageRequest {
    PageRequest::new(limit, offset).unwrap()
}

fn all() -> PageRequest {
    page(500, 0)
}

async fn insert_user(conn: &mut AsyncPgConnection, name: &str) -> UserId {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'security_admin')",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Text, _>(name)
    .execute(conn)
    .await
    .unwrap();
    UserId(id)
}

/// Sets the fields a scan or the host monitor would set (no query function of this
/// module writes them).
async fn set_state(
    conn: &mut AsyncPgConnection,
    id: HostId,
    os: &str,
    compliance: ComplianceState,
    score: Option<f64>,
    next_scan_at: DateTime<Utc>,
) {
    diesel::sql_query(
        "UPDATE hosts SET os_family = $2, compliance_state = $3, last_score = $4, next_scan_at = $5 WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.into_uuid())
    .bind::<Text, _>(os)
    .bind::<Text, _>(compliance.as_str())
    .bind::<diesel::sql_types::Nullable<Double>, _>(score)
    .bind::<Timestamptz, _>(next_scan_at)
    .execute(conn)
    .await
    .unwrap();
}

fn names(page: &openwatch_db::queries::page::Page<hosts::Host>) -> Vec<&str> {
    page.items.iter().map(|h| h.name.as_str()).collect()
}

/// name, address, tags, os family, liveness, compliance band, score, next scan in minutes.
type HostSpec = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    MonitoringState,
    ComplianceState,
    Option<f64>,
    i64,
);

/// Six hosts with distinct states; returns their ids by name order
/// (`db-1`, `db-2`, `edge_1`, `edgex1`, `web-1`, `web-2`).
async fn seed_hosts(conn: &mut AsyncPgConnection) -> Vec<HostId> {
    let base = Utc::now();
    let specs: [HostSpec; 6] = [
        (
            "web-1",
            "10.0.0.1",
            &["prod", "web"],
            "rhel",
            MonitoringState::Online,
            ComplianceState::Compliant,
            Some(100.0),
            3,
        ),
        (
            "web-2",
            "10.0.0.2",
            &["prod", "web"],
            "rhel",
            MonitoringState::Down,
            ComplianceState::Low,
            Some(30.0),
            1,
        ),
        (
            "db-1",
            "DB1.example.ORG",
            &["prod"],
            "ubuntu",
            MonitoringState::Online,
            ComplianceState::Critical,
            Some(10.0),
            2,
        ),
        (
            "db-2",
            "db2.example.org",
            &["staging"],
            "ubuntu",
            MonitoringState::Degraded,
            ComplianceState::Partial,
            Some(60.0),
            2,
        ),
        ("edge_1", "172.16.0.1", &[], "debian", MonitoringState::Unknown, ComplianceState::Unknown, None, 5),
        (
            "edgex1",
            "172.16.0.2",
            &["web"],
            "debian",
            MonitoringState::Unknown,
            ComplianceState::MostlyCompliant,
            Some(90.0),
            4,
        ),
    ];
    let mut ids = Vec::new();
    for (name, address, tags, os, monitoring, compliance, score, next_in) in specs {
        let host = insert_host(conn, new_host(name, address, tags)).await.unwrap();
        hosts::record_liveness(conn, host.id, monitoring, base, base).await.unwrap();
        set_state(conn, host.id, os, compliance, score, base + TimeDelta::minutes(next_in)).await;
        ids.push((name, host.id));
    }
    ids.sort_by_key(|(name, _)| *name);
    ids.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_host_filter_narrows_the_list_and_its_total() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let ids = seed_hosts(&mut conn).await;
    let group = host_groups::insert_group(
        &mut conn,
        NewHostGroup { id: HostGroupId::new(), name: "databases".into(), description: None },
    )
    .await
    .unwrap();
    host_groups::add_members(&mut conn, group.id, &[ids[0], ids[1]]).await.unwrap();

    let list = async |conn: &mut AsyncPgConnection, filter: HostFilter| {
        list_hosts(conn, &filter, HostSort::Name, SortOrder::Asc, all()).await.unwrap()
    };
    let everything = list(&mut conn, HostFilter::default()).await;
    assert_eq!(everything.total, 6);
    assert_eq!(names(&everything), ["db-1", "db-2", "edge_1", "edgex1", "web-1", "web-2"]);

    let cases: Vec<(HostFilter, Vec<&str>)> = vec![
        // Substring of the name, case-insensitive.
        (HostFilter { q: Some("WEB".into()), ..Default::default() }, vec!["web-1", "web-2"]),
        // Substring of the address, case-insensitive.
        (HostFilter { q: Some("example.org".into()), ..Default::default() }, vec!["db-1", "db-2"]),
        // `_` is literal, not "any character" (which would also match `edgex1`).
        (HostFilter { q: Some("edge_".into()), ..Default::default() }, vec!["edge_1"]),
        // `%` is literal: no host has one.
        (HostFilter { q: Some("%".into()), ..Default::default() }, vec![]),
        (HostFilter { name: Some("web-2".into()), ..Default::default() }, vec!["web-2"]),
        (HostFilter { name: Some("web".into()), ..Default::default() }, vec![]),
        (HostFilter { address: Some("172.16.0.2".into()), ..Default::default() }, vec!["edgex1"]),
        (HostFilter { group_id: Some(group.id), ..Default::default() }, vec!["db-1", "db-2"]),
        (HostFilter { group_id: Some(HostGroupId::new()), ..Default::default() }, vec![]),
        (HostFilter { os_family: Some("debian".into()), ..Default::default() }, vec!["edge_1", "edgex1"]),
        (
            HostFilter { monitoring_state: Some(MonitoringState::Online), ..Default::default() },
            vec!["db-1", "web-1"],
        ),
        (
            HostFilter { compliance_state: Some(ComplianceState::Critical), ..Default::default() },
            vec!["db-1"],
        ),
        (HostFilter { tag: Some("web".into()), ..Default::default() }, vec!["edgex1", "web-1", "web-2"]),
        (HostFilter { tag: Some("WEB".into()), ..Default::default() }, vec![]),
        // Filters combine with AND.
        (
            HostFilter {
                tag: Some("prod".into()),
                monitoring_state: Some(MonitoringState::Online),
                ..Default::default()
            },
            vec!["db-1", "web-1"],
        ),
        (
            HostFilter {
                tag: Some("prod".into()),
                os_family: Some("rhel".into()),
                q: Some("2".into()),
                ..Default::default()
            },
            vec!["web-2"],
        ),
    ];
    for (filter, expected) in cases {
        let found = list(&mut conn, filter.clone()).await;
        assert_eq!(names(&found), expected, "{filter:?}");
        assert_eq!(found.total, expected.len() as u64, "{filter:?}");
    }

    // The total counts all matches, not just the page.
    let first = list_hosts(
        &mut conn,
        &HostFilter { tag: Some("web".into()), ..Default::default() },
        HostSort::Name,
        SortOrder::Asc,
        page(1, 1),
    )
    .await
    .unwrap();
    assert_eq!(names(&first), ["web-1"]);
    assert_eq!(first.total, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_sort_by_each_key_and_page_stably() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    seed_hosts(&mut conn).await;
    let sorted = async |conn: &mut AsyncPgConnection, sort, order| {
        names(&list_hosts(conn, &HostFilter::default(), sort, order, all()).await.unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    assert_eq!(
        sorted(&mut conn, HostSort::Name, SortOrder::Desc).await,
        ["web-2", "web-1", "edgex1", "edge_1", "db-2", "db-1"]
    );
    // Hosts never scored come last in both directions.
    assert_eq!(
        sorted(&mut conn, HostSort::LastScore, SortOrder::Asc).await,
        ["db-1", "web-2", "db-2", "edgex1", "web-1", "edge_1"]
    );
    assert_eq!(
        sorted(&mut conn, HostSort::LastScore, SortOrder::Desc).await,
        ["web-1", "edgex1", "db-2", "web-2", "db-1", "edge_1"]
    );
    // Bands in domain order, not alphabetical.
    assert_eq!(
        sorted(&mut conn, HostSort::ComplianceState, SortOrder::Asc).await,
        ["edge_1", "db-1", "web-2", "db-2", "edgex1", "web-1"]
    );
    assert_eq!(
        sorted(&mut conn, HostSort::ComplianceState, SortOrder::Desc).await,
        ["web-1", "edgex1", "db-2", "web-2", "db-1", "edge_1"]
    );
    // Inserted in this order.
    assert_eq!(
        sorted(&mut conn, HostSort::CreatedAt, SortOrder::Asc).await,
        ["web-1", "web-2", "db-1", "db-2", "edge_1", "edgex1"]
    );
    // db-1 and db-2 tie on next_scan_at: broken by id (db-1 was created first: UUIDv7).
    assert_eq!(
        sorted(&mut conn, HostSort::NextScanAt, SortOrder::Asc).await,
        ["web-2", "db-1", "db-2", "web-1", "edgex1", "edge_1"]
    );
    assert_eq!(
        sorted(&mut conn, HostSort::NextScanAt, SortOrder::Desc).await,
        ["edge_1", "edgex1", "web-1", "db-2", "db-1", "web-2"]
    );

    // Pages of two cover every host exactly once, in the order of the full list.
    for sort in [
        HostSort::Name,
        HostSort::CreatedAt,
        HostSort::LastScore,
        HostSort::NextScanAt,
        HostSort::ComplianceState,
    ] {
        let full = sorted(&mut conn, sort, SortOrder::Asc).await;
        let mut paged = Vec::new();
        for offset in [0, 2, 4, 6] {
            let p = list_hosts(&mut conn, &HostFilter::default(), sort, SortOrder::Asc, page(2, offset))
                .await
                .unwrap();
            assert_eq!(p.total, 6);
            paged.extend(p.items.into_iter().map(|h| h.name));
        }
        assert_eq!(paged, full, "{sort:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_update_delete_and_schedule_fields() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("app-1", "10.1.0.1", &["a"])).await.unwrap();
    insert_host(&mut conn, new_host("app-2", "10.1.0.2", &[])).await.unwrap();

    let updated = hosts::update_host(
        &mut conn,
        host.id,
        HostChangeset { name: Some("app-one".into()), port: Some(2200), tags: Some(vec![]), address: None },
    )
    .await
    .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.address.as_str(), updated.port),
        ("app-one", "10.1.0.1", 2200)
    );
    assert!(updated.tags.is_empty());
    assert_eq!(get_host(&mut conn, host.id).await.unwrap(), updated);
    // An empty changeset changes nothing.
    assert_eq!(hosts::update_host(&mut conn, host.id, HostChangeset::default()).await.unwrap(), updated);

    let taken = hosts::update_host(
        &mut conn,
        host.id,
        HostChangeset { name: Some("app-2".into()), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&taken, DbError::Conflict { constraint } if constraint == "hosts_name_key"),
        "{taken:?}"
    );
    let port0 = hosts::update_host(&mut conn, host.id, HostChangeset { port: Some(0), ..Default::default() })
        .await
        .unwrap_err();
    assert!(
        matches!(&port0, DbError::Constraint { constraint, .. } if constraint == "hosts_port_check"),
        "{port0:?}"
    );
    let empty = hosts::update_host(
        &mut conn,
        host.id,
        HostChangeset { address: Some(String::new()), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(matches!(empty, DbError::Constraint { .. }), "{empty:?}");
    let missing =
        hosts::update_host(&mut conn, HostId::new(), HostChangeset { port: Some(1), ..Default::default() })
            .await;
    assert!(matches!(missing, Err(DbError::NotFound)), "{missing:?}");
    let missing_empty = hosts::update_host(&mut conn, HostId::new(), HostChangeset::default()).await;
    assert!(matches!(missing_empty, Err(DbError::NotFound)), "{missing_empty:?}");

    // Maintenance pause on and off.
    let until = Utc::now() + TimeDelta::hours(2);
    hosts::set_maintenance_until(&mut conn, host.id, Some(until)).await.unwrap();
    let paused = get_host(&mut conn, host.id).await.unwrap().maintenance_until.unwrap();
    assert_eq!(paused.timestamp_micros(), until.timestamp_micros());
    hosts::set_maintenance_until(&mut conn, host.id, None).await.unwrap();
    assert_eq!(get_host(&mut conn, host.id).await.unwrap().maintenance_until, None);
    assert!(matches!(
        hosts::set_maintenance_until(&mut conn, HostId::new(), None).await,
        Err(DbError::NotFound)
    ));

    // A manual scan postpones the next automatic one, never brings it forward.
    let due = get_host(&mut conn, host.id).await.unwrap().next_scan_at;
    let later = due + TimeDelta::hours(6);
    let next = hosts::push_next_scan(&mut conn, host.id, later).await.unwrap();
    assert_eq!(next.timestamp_micros(), later.timestamp_micros());
    let kept = hosts::push_next_scan(&mut conn, host.id, due).await.unwrap();
    assert_eq!(kept.timestamp_micros(), later.timestamp_micros());
    assert_eq!(
        get_host(&mut conn, host.id).await.unwrap().next_scan_at.timestamp_micros(),
        later.timestamp_micros()
    );
    assert!(matches!(hosts::push_next_scan(&mut conn, HostId::new(), due).await, Err(DbError::NotFound)));

    hosts::delete_host(&mut conn, host.id).await.unwrap();
    assert!(matches!(get_host(&mut conn, host.id).await, Err(DbError::NotFound)));
    assert!(matches!(hosts::delete_host(&mut conn, host.id).await, Err(DbError::NotFound)));
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_import_reports_bad_rows_and_keeps_the_others() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    insert_host(&mut conn, new_host("existing", "10.2.0.1", &[])).await.unwrap();

    let rows = vec![
        new_host("csv-1", "10.2.0.10", &["csv"]),
        new_host("existing", "10.2.0.11", &[]), // duplicate of a stored host
        new_host("csv-2", "10.2.0.12", &["csv"]),
        new_host("csv-1", "10.2.0.13", &[]), // duplicate within the file
        NewHost { port: 0, ..new_host("csv-port0", "10.2.0.14", &[]) },
        new_host("", "10.2.0.15", &[]),
        new_host("csv-3", "10.2.0.16", &[]),
    ];
    let ids: Vec<HostId> = rows.iter().map(|r| r.id).collect();
    let outcomes = insert_hosts_bulk(&mut conn, rows).await.unwrap();
    assert_eq!(outcomes.len(), 7);
    assert_eq!(outcomes[0].as_ref().unwrap(), &ids[0]);
    assert!(matches!(&outcomes[1], Err(DbError::Conflict { constraint }) if constraint == "hosts_name_key"));
    assert_eq!(outcomes[2].as_ref().unwrap(), &ids[2]);
    assert!(matches!(&outcomes[3], Err(DbError::Conflict { constraint }) if constraint == "hosts_name_key"));
    assert!(
        matches!(&outcomes[4], Err(DbError::Constraint { constraint, .. }) if constraint == "hosts_port_check")
    );
    assert!(
        matches!(&outcomes[5], Err(DbError::Constraint { constraint, .. }) if constraint == "hosts_name_check")
    );
    assert_eq!(outcomes[6].as_ref().unwrap(), &ids[6]);

    let stored =
        list_hosts(&mut conn, &HostFilter::default(), HostSort::Name, SortOrder::Asc, all()).await.unwrap();
    assert_eq!(names(&stored), ["csv-1", "csv-2", "csv-3", "existing"]);
    assert_eq!(get_host(&mut conn, ids[0]).await.unwrap().address, "10.2.0.10");
    assert_eq!(get_host(&mut conn, ids[2]).await.unwrap().tags, ["csv"]);
    // The connection is usable afterwards (no transaction left open or aborted).
    insert_host(&mut conn, new_host("after", "10.2.0.20", &[])).await.unwrap();
    assert!(insert_hosts_bulk(&mut conn, vec![]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_crud_and_membership() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let a = insert_host(&mut conn, new_host("a", "10.3.0.1", &[])).await.unwrap().id;
    let b = insert_host(&mut conn, new_host("b", "10.3.0.2", &[])).await.unwrap().id;
    let c = insert_host(&mut conn, new_host("c", "10.3.0.3", &[])).await.unwrap().id;
    let new_group =
        |name: &str| NewHostGroup { id: HostGroupId::new(), name: name.into(), description: None };

    let web = host_groups::insert_group(
        &mut conn,
        NewHostGroup { description: Some("front ends".into()), ..new_group("web_servers") },
    )
    .await
    .unwrap();
    assert_eq!((web.member_count, web.description.as_deref()), (0, Some("front ends")));
    let db_group = host_groups::insert_group(&mut conn, new_group("databases")).await.unwrap();
    let other = host_groups::insert_group(&mut conn, new_group("webxservers")).await.unwrap();
    let dup = host_groups::insert_group(&mut conn, new_group("databases")).await.unwrap_err();
    assert!(
        matches!(&dup, DbError::Conflict { constraint } if constraint == "host_groups_name_key"),
        "{dup:?}"
    );
    let empty = host_groups::insert_group(&mut conn, new_group("")).await.unwrap_err();
    assert!(matches!(empty, DbError::Constraint { .. }), "{empty:?}");

    // Idempotent adds; repeated ids count once.
    assert_eq!(host_groups::add_members(&mut conn, web.id, &[a, b, a]).await.unwrap(), 2);
    assert_eq!(host_groups::add_members(&mut conn, web.id, &[b, c]).await.unwrap(), 1);
    assert_eq!(host_groups::add_members(&mut conn, web.id, &[a, b, c]).await.unwrap(), 0);
    assert_eq!(host_groups::add_members(&mut conn, db_group.id, &[c]).await.unwrap(), 1);
    assert_eq!(host_groups::add_members(&mut conn, db_group.id, &[]).await.unwrap(), 0);
    let unknown_host =
        host_groups::add_members(&mut conn, db_group.id, &[a, HostId::new()]).await.unwrap_err();
    assert!(
        matches!(&unknown_host, DbError::Constraint { constraint, .. } if constraint == "host_group_members_host_id_fkey"),
        "{unknown_host:?}"
    );
    assert!(matches!(
        host_groups::add_members(&mut conn, HostGroupId::new(), &[a]).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        host_groups::add_members(&mut conn, HostGroupId::new(), &[]).await,
        Err(DbError::NotFound)
    ));

    assert_eq!(host_groups::get_group(&mut conn, web.id).await.unwrap().member_count, 3);
    // The failed add of `a` to `databases` added nothing.
    assert_eq!(host_groups::host_ids_in_group(&mut conn, db_group.id).await.unwrap(), [c]);
    let mut expected = vec![a, b, c];
    expected.sort();
    assert_eq!(host_groups::host_ids_in_group(&mut conn, web.id).await.unwrap(), expected);
    assert!(host_groups::host_ids_in_group(&mut conn, HostGroupId::new()).await.unwrap().is_empty());
    // By group name.
    assert_eq!(host_groups::group_ids_of_host(&mut conn, c).await.unwrap(), [db_group.id, web.id]);
    assert!(host_groups::group_ids_of_host(&mut conn, HostId::new()).await.unwrap().is_empty());

    let members = host_groups::list_members(&mut conn, web.id, page(2, 0)).await.unwrap();
    assert_eq!((names(&members), members.total), (vec!["a", "b"], 3));
    let rest = host_groups::list_members(&mut conn, web.id, page(2, 2)).await.unwrap();
    assert_eq!(names(&rest), ["c"]);
    assert!(matches!(
        host_groups::list_members(&mut conn, HostGroupId::new(), all()).await,
        Err(DbError::NotFound)
    ));

    assert!(host_groups::remove_member(&mut conn, web.id, b).await.unwrap());
    assert!(!host_groups::remove_member(&mut conn, web.id, b).await.unwrap());
    assert_eq!(host_groups::get_group(&mut conn, web.id).await.unwrap().member_count, 2);

    // List: substring filter with literal `_`, order, paging and totals.
    let listed = host_groups::list_groups(&mut conn, None, SortOrder::Asc, all()).await.unwrap();
    let group_names: Vec<_> = listed.items.iter().map(|g| g.name.as_str()).collect();
    assert_eq!((group_names, listed.total), (vec!["databases", "web_servers", "webxservers"], 3));
    let counts: Vec<_> = listed.items.iter().map(|g| g.member_count).collect();
    assert_eq!(counts, [1, 2, 0]);
    let filtered = host_groups::list_groups(&mut conn, Some("B_S"), SortOrder::Asc, all()).await.unwrap();
    assert_eq!((filtered.items.iter().map(|g| g.id).collect::<Vec<_>>(), filtered.total), (vec![web.id], 1));
    let desc = host_groups::list_groups(&mut conn, Some("web"), SortOrder::Desc, page(1, 0)).await.unwrap();
    assert_eq!((desc.items[0].id, desc.total), (other.id, 2));

    // Update and delete.
    let renamed = host_groups::update_group(
        &mut conn,
        web.id,
        HostGroupChangeset { name: Some("frontends".into()), description: Some(None) },
    )
    .await
    .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_deref(), renamed.member_count),
        ("frontends", None, 2)
    );
    let clash = host_groups::update_group(
        &mut conn,
        web.id,
        HostGroupChangeset { name: Some("databases".into()), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(matches!(clash, DbError::Conflict { .. }), "{clash:?}");
    assert_eq!(
        host_groups::update_group(&mut conn, web.id, HostGroupChangeset::default()).await.unwrap(),
        renamed
    );
    let missing = host_groups::update_group(
        &mut conn,
        HostGroupId::new(),
        HostGroupChangeset { name: Some("x".into()), ..Default::default() },
    )
    .await;
    assert!(matches!(missing, Err(DbError::NotFound)));
    host_groups::delete_group(&mut conn, web.id).await.unwrap();
    assert!(matches!(host_groups::get_group(&mut conn, web.id).await, Err(DbError::NotFound)));
    assert!(matches!(host_groups::delete_group(&mut conn, web.id).await, Err(DbError::NotFound)));
    // Memberships went with the group; the hosts stay.
    assert_eq!(host_groups::group_ids_of_host(&mut conn, c).await.unwrap(), [db_group.id]);
    get_host(&mut conn, a).await.unwrap();
    // And with a deleted host.
    hosts::delete_host(&mut conn, c).await.unwrap();
    assert_eq!(host_groups::get_group(&mut conn, db_group.id).await.unwrap().member_count, 0);
}

fn credential(scope: CredentialScope, name: &str, marker: u8) -> NewCredential {
    NewCredential {
        id: CredentialId::new(),
        scope,
        name: name.to_owned(),
        username: format!("user-{name}"),
        auth_method: AuthMethod::PrivateKey,
        ciphertext: vec![marker; 48],
        nonce: [marker; 12],
        key_id: "k1".to_owned(),
    }
}

async fn resolved(conn: &mut AsyncPgConnection, host: HostId) -> Option<(CredentialId, u8)> {
    credentials::resolve_for_host(conn, host).await.unwrap().map(|c| (c.metadata.id, c.ciphertext[0]))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_resolve_host_then_lowest_group_then_system() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("h", "10.4.0.1", &[])).await.unwrap().id;
    let group = async |conn: &mut AsyncPgConnection, name: &str| {
        host_groups::insert_group(
            conn,
            NewHostGroup { id: HostGroupId::new(), name: name.into(), description: None },
        )
        .await
        .unwrap()
        .id
    };
    let zeta = group(&mut conn, "zeta").await;
    let alpha = group(&mut conn, "alpha").await;
    let unrelated = group(&mut conn, "aaa-unrelated").await;
    host_groups::add_members(&mut conn, zeta, &[host]).await.unwrap();
    host_groups::add_members(&mut conn, alpha, &[host]).await.unwrap();

    assert_eq!(resolved(&mut conn, host).await, None);
    let system = credentials::insert_credential(&mut conn, credential(CredentialScope::System, "default", 1))
        .await
        .unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((system.id, 1)));
    // A group the host is not in does not apply.
    credentials::insert_credential(&mut conn, credential(CredentialScope::Group(unrelated), "unrelated", 9))
        .await
        .unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((system.id, 1)));
    let z = credentials::insert_credential(&mut conn, credential(CredentialScope::Group(zeta), "zeta", 2))
        .await
        .unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((z.id, 2)));
    // Of several groups, the lowest name wins (inserted later on purpose).
    let a = credentials::insert_credential(&mut conn, credential(CredentialScope::Group(alpha), "alpha", 3))
        .await
        .unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((a.id, 3)));
    let own = credentials::insert_credential(&mut conn, credential(CredentialScope::Host(host), "own", 4))
        .await
        .unwrap();
    let sealed = credentials::resolve_for_host(&mut conn, host).await.unwrap().unwrap();
    assert_eq!(sealed.metadata, own);
    assert_eq!((sealed.ciphertext, sealed.nonce, sealed.key_id.as_str()), (vec![4; 48], [4; 12], "k1"));
    // Another host in no group gets the system default.
    let other = insert_host(&mut conn, new_host("other", "10.4.0.2", &[])).await.unwrap().id;
    assert_eq!(resolved(&mut conn, other).await, Some((system.id, 1)));

    // Removing the more specific ones falls back step by step.
    credentials::delete_credential(&mut conn, own.id).await.unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((a.id, 3)));
    host_groups::remove_member(&mut conn, alpha, host).await.unwrap();
    assert_eq!(resolved(&mut conn, host).await, Some((z.id, 2)));
    host_groups::delete_group(&mut conn, zeta).await.unwrap(); // cascades to its credential
    assert!(matches!(credentials::get_metadata(&mut conn, z.id).await, Err(DbError::NotFound)));
    assert_eq!(resolved(&mut conn, host).await, Some((system.id, 1)));
    credentials::delete_credential(&mut conn, system.id).await.unwrap();
    assert_eq!(resolved(&mut conn, host).await, None);
    assert!(matches!(credentials::delete_credential(&mut conn, system.id).await, Err(DbError::NotFound)));
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_metadata_lists_updates_and_one_per_scope() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("h", "10.5.0.1", &[])).await.unwrap().id;
    let group = host_groups::insert_group(
        &mut conn,
        NewHostGroup { id: HostGroupId::new(), name: "g".into(), description: None },
    )
    .await
    .unwrap()
    .id;

    let new_system = credential(CredentialScope::System, "c-system", 7);
    // Debug output never shows the ciphertext bytes.
    assert!(!format!("{new_system:?}").contains("7, 7"), "{new_system:?}");
    let system = credentials::insert_credential(&mut conn, new_system.clone()).await.unwrap();
    // Structurally no secret: this exhaustive pattern stops compiling if a field is added.
    let CredentialMetadata { id, scope, name, username, auth_method, key_id, created_at, updated_at } =
        system.clone();
    assert_eq!(id, new_system.id);
    assert_eq!(scope, CredentialScope::System);
    assert_eq!(
        (name.as_str(), username.as_str(), auth_method, key_id.as_str()),
        ("c-system", "user-c-system", AuthMethod::PrivateKey, "k1")
    );
    assert!(updated_at >= created_at);
    let by_group =
        credentials::insert_credential(&mut conn, credential(CredentialScope::Group(group), "b-group", 8))
            .await
            .unwrap();
    let by_host =
        credentials::insert_credential(&mut conn, credential(CredentialScope::Host(host), "a-host", 9))
            .await
            .unwrap();
    assert_eq!(by_host.scope, CredentialScope::Host(host));
    let sealed = credentials::resolve_for_host(&mut conn, host).await.unwrap().unwrap();
    assert!(!format!("{sealed:?}").contains("9, 9"), "{sealed:?}");

    // One per scope.
    for (scope, constraint) in [
        (CredentialScope::System, "credentials_one_system_key"),
        (CredentialScope::Group(group), "credentials_group_id_key"),
        (CredentialScope::Host(host), "credentials_host_id_key"),
    ] {
        let err =
            credentials::insert_credential(&mut conn, credential(scope, "second", 1)).await.unwrap_err();
        assert!(matches!(&err, DbError::Conflict { constraint: c } if c == constraint), "{err:?}");
    }
    let reused_id =
        NewCredential { id: system.id, ..credential(CredentialScope::Host(HostId::new()), "x", 1) };
    assert!(matches!(
        credentials::insert_credential(&mut conn, reused_id).await,
        Err(DbError::Conflict { .. })
    ));
    let unknown =
        credentials::insert_credential(&mut conn, credential(CredentialScope::Host(HostId::new()), "x", 1))
            .await;
    assert!(matches!(unknown, Err(DbError::Constraint { .. })), "{unknown:?}");
    let empty = NewCredential {
        ciphertext: vec![],
        ..credential(CredentialScope::Group(HostGroupId::new()), "x", 1)
    };
    assert!(matches!(
        credentials::insert_credential(&mut conn, empty).await,
        Err(DbError::Constraint { .. })
    ));

    // Lists by name, filtered by kind or exact scope.
    let listed = credentials::list_credentials(&mut conn, None, all()).await.unwrap();
    assert_eq!(
        (listed.items.iter().map(|c| c.id).collect::<Vec<_>>(), listed.total),
        (vec![by_host.id, by_group.id, system.id], 3)
    );
    let paged = credentials::list_credentials(&mut conn, None, page(1, 1)).await.unwrap();
    assert_eq!((paged.items[0].id, paged.total), (by_group.id, 3));
    for (filter, expected) in [
        (ScopeFilter::Kind(CredentialScopeKind::Host), by_host.id),
        (ScopeFilter::Kind(CredentialScopeKind::Group), by_group.id),
        (ScopeFilter::Kind(CredentialScopeKind::System), system.id),
        (ScopeFilter::Exactly(CredentialScope::Host(host)), by_host.id),
        (ScopeFilter::Exactly(CredentialScope::Group(group)), by_group.id),
        (ScopeFilter::Exactly(CredentialScope::System), system.id),
    ] {
        let found = credentials::list_credentials(&mut conn, Some(filter), all()).await.unwrap();
        assert_eq!(
            (found.items.iter().map(|c| c.id).collect::<Vec<_>>(), found.total),
            (vec![expected], 1),
            "{filter:?}"
        );
    }
    let none = credentials::list_credentials(
        &mut conn,
        Some(ScopeFilter::Exactly(CredentialScope::Host(HostId::new()))),
        all(),
    )
    .await
    .unwrap();
    assert_eq!((none.items.len(), none.total), (0, 0));

    // Replace the secret: same id and scope, new method, user, ciphertext and key.
    let replaced = credentials::replace_secret(
        &mut conn,
        by_host.id,
        AuthMethod::Password,
        "root",
        &[5; 20],
        &[6; 12],
        "k2",
    )
    .await
    .unwrap();
    assert_eq!(
        (replaced.id, replaced.scope, replaced.auth_method),
        (by_host.id, by_host.scope, AuthMethod::Password)
    );
    assert_eq!(
        (replaced.username.as_str(), replaced.key_id.as_str(), replaced.name.as_str()),
        ("root", "k2", "a-host")
    );
    let sealed = credentials::resolve_for_host(&mut conn, host).await.unwrap().unwrap();
    assert_eq!((sealed.ciphertext, sealed.nonce, sealed.key_id.as_str()), (vec![5; 20], [6; 12], "k2"));
    let missing = credentials::replace_secret(
        &mut conn,
        CredentialId::new(),
        AuthMethod::Password,
        "u",
        &[1],
        &[1; 12],
        "k",
    )
    .await;
    assert!(matches!(missing, Err(DbError::NotFound)));

    let renamed = credentials::update_metadata(&mut conn, by_group.id, "renamed").await.unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(credentials::get_metadata(&mut conn, by_group.id).await.unwrap(), renamed);
    assert!(matches!(
        credentials::update_metadata(&mut conn, by_group.id, "").await,
        Err(DbError::Constraint { .. })
    ));
    assert!(matches!(
        credentials::update_metadata(&mut conn, CredentialId::new(), "x").await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        credentials::get_metadata(&mut conn, CredentialId::new()).await,
        Err(DbError::NotFound)
    ));

    // The spellings round-trip and unknown ones are refused.
    assert_eq!("private_key".parse::<AuthMethod>().unwrap(), AuthMethod::PrivateKey);
    assert_eq!(AuthMethod::Password.as_str(), "password");
    assert!("kerberos".parse::<AuthMethod>().is_err());
    assert_eq!("group".parse::<CredentialScopeKind>().unwrap(), CredentialScopeKind::Group);
}

#[tokio::test(flavor = "multi_thread")]
async fn known_hosts_tofu_approval_rotation_and_revocation() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("h", "10.6.0.1", &[])).await.unwrap().id;
    let other_host = insert_host(&mut conn, new_host("o", "10.6.0.2", &[])).await.unwrap().id;
    let admin = insert_user(&mut conn, "admin").await;

    // Trust on first use: the first key of a type is trusted.
    let first = known_hosts::record_seen(&mut conn, host, ED25519, "SHA256:first", None, true).await.unwrap();
    assert_eq!(
        (first.status, first.approved_by, first.public_key.as_deref()),
        (KnownHostStatus::Trusted, None, None)
    );
    // Seen again: the same row, now with its public key filled in.
    let again =
        known_hosts::record_seen(&mut conn, host, ED25519, "SHA256:first", Some("AAAA"), true).await.unwrap();
    assert_eq!(
        (again.id, again.status, again.public_key.as_deref()),
        (first.id, KnownHostStatus::Trusted, Some("AAAA"))
    );
    let third = known_hosts::record_seen(&mut conn, host, ED25519, "SHA256:first", Some("BBBB"), false)
        .await
        .unwrap();
    assert_eq!(third, again);
    // A different key of the same type is pending, even with TOFU allowed.
    let second = known_hosts::record_seen(&mut conn, host, ED25519, "SHA256:second", Some("CCCC"), true)
        .await
        .unwrap();
    assert_eq!(second.status, KnownHostStatus::Pending);
    // Another type is independent; without TOFU a new key is pending.
    let rsa = known_hosts::record_seen(&mut conn, host, "ssh-rsa", "SHA256:rsa", None, true).await.unwrap();
    assert_eq!(rsa.status, KnownHostStatus::Trusted);
    let strict =
        known_hosts::record_seen(&mut conn, other_host, ED25519, "SHA256:other", None, false).await.unwrap();
    assert_eq!(strict.status, KnownHostStatus::Pending);

    let bad = known_hosts::record_seen(&mut conn, host, ED25519, "MD5:aa", None, true).await.unwrap_err();
    assert!(matches!(bad, DbError::Constraint { .. }), "{bad:?}");
    let unknown = known_hosts::record_seen(&mut conn, HostId::new(), ED25519, "SHA256:x", None, true)
        .await
        .unwrap_err();
    assert!(matches!(unknown, DbError::Constraint { .. }), "{unknown:?}");

    let trusted: Vec<_> = known_hosts::trusted_keys_for_host(&mut conn, host)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(trusted, [first.id, rsa.id]); // by key type
    assert!(known_hosts::trusted_keys_for_host(&mut conn, other_host).await.unwrap().is_empty());

    // Approving the pending key rotates: it becomes trusted, the old one revoked.
    let now = Utc::now();
    let approved = known_hosts::approve(&mut conn, second.id, admin, now).await.unwrap();
    assert_eq!(
        (approved.id, approved.status, approved.approved_by),
        (second.id, KnownHostStatus::Trusted, Some(admin))
    );
    assert_eq!(approved.approved_at.map(|t| t.timestamp_micros()), Some(now.timestamp_micros()));
    let old = known_hosts::get(&mut conn, first.id).await.unwrap();
    assert_eq!(old.status, KnownHostStatus::Revoked);
    assert_eq!(old.revoked_at.map(|t| t.timestamp_micros()), Some(now.timestamp_micros()));
    // The other key type is untouched.
    assert_eq!(known_hosts::get(&mut conn, rsa.id).await.unwrap().status, KnownHostStatus::Trusted);
    let trusted: Vec<_> = known_hosts::trusted_keys_for_host(&mut conn, host)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(trusted, [second.id, rsa.id]);
    // Approving again changes nothing.
    let later = now + TimeDelta::minutes(1);
    assert_eq!(known_hosts::approve(&mut conn, second.id, admin, later).await.unwrap(), approved);

    // A revoked key stays revoked: approval is refused, seeing it again does not reset it.
    let refused = known_hosts::approve(&mut conn, first.id, admin, later).await.unwrap_err();
    assert!(
        matches!(&refused, DbError::Constraint { constraint, .. } if constraint == STATUS_TRANSITION_CONSTRAINT),
        "{refused:?}"
    );
    assert_eq!(known_hosts::get(&mut conn, second.id).await.unwrap().status, KnownHostStatus::Trusted);
    let seen = known_hosts::record_seen(&mut conn, host, ED25519, "SHA256:first", None, true).await.unwrap();
    assert_eq!((seen.id, seen.status), (first.id, KnownHostStatus::Revoked));
    assert!(matches!(
        known_hosts::approve(&mut conn, KnownHostId::new(), admin, later).await,
        Err(DbError::NotFound)
    ));
    let no_user = known_hosts::approve(&mut conn, strict.id, UserId::new(), later).await.unwrap_err();
    assert!(matches!(no_user, DbError::Constraint { .. }), "{no_user:?}");
    assert_eq!(known_hosts::get(&mut conn, strict.id).await.unwrap().status, KnownHostStatus::Pending);

    // Revocation of pending and trusted keys; revoking twice keeps the first time.
    let revoked = known_hosts::revoke(&mut conn, rsa.id, later).await.unwrap();
    assert_eq!(
        (revoked.status, revoked.revoked_at.map(|t| t.timestamp_micros())),
        (KnownHostStatus::Revoked, Some(later.timestamp_micros()))
    );
    let twice = known_hosts::revoke(&mut conn, rsa.id, later + TimeDelta::minutes(5)).await.unwrap();
    assert_eq!(twice, revoked);
    let pending_revoked = known_hosts::revoke(&mut conn, strict.id, later).await.unwrap();
    assert_eq!(pending_revoked.status, KnownHostStatus::Revoked);
    assert!(matches!(
        known_hosts::revoke(&mut conn, KnownHostId::new(), later).await,
        Err(DbError::NotFound)
    ));
    // With no trusted ed25519 key left on `other_host`, TOFU trusts the next one.
    let fresh =
        known_hosts::record_seen(&mut conn, other_host, ED25519, "SHA256:fresh", None, true).await.unwrap();
    assert_eq!(fresh.status, KnownHostStatus::Trusted);

    // Lists filter by host and status, oldest first, with totals.
    let everything = known_hosts::list(&mut conn, None, None, all()).await.unwrap();
    let ids: Vec<_> = everything.items.iter().map(|k| k.id).collect();
    assert_eq!(everything.total, 5);
    assert_eq!(ids.len(), 5);
    let of_host = known_hosts::list(&mut conn, Some(host), None, all()).await.unwrap();
    assert_eq!(of_host.items.iter().map(|k| k.id).collect::<Vec<_>>(), [first.id, second.id, rsa.id]);
    let revoked_of_host =
        known_hosts::list(&mut conn, Some(host), Some(KnownHostStatus::Revoked), all()).await.unwrap();
    assert_eq!(
        (revoked_of_host.items.iter().map(|k| k.id).collect::<Vec<_>>(), revoked_of_host.total),
        (vec![first.id, rsa.id], 2)
    );
    let trusted_all =
        known_hosts::list(&mut conn, None, Some(KnownHostStatus::Trusted), page(1, 0)).await.unwrap();
    assert_eq!((trusted_all.items.len(), trusted_all.total), (1, 2));
    let pending = known_hosts::list(&mut conn, None, Some(KnownHostStatus::Pending), all()).await.unwrap();
    assert_eq!(pending.total, 0);
    assert!(matches!(known_hosts::get(&mut conn, KnownHostId::new()).await, Err(DbError::NotFound)));

    // Keys go with their host.
    hosts::delete_host(&mut conn, host).await.unwrap();
    assert_eq!(known_hosts::list(&mut conn, None, None, all()).await.unwrap().total, 2);
    assert_eq!("trusted".parse::<KnownHostStatus>().unwrap(), KnownHostStatus::Trusted);
    assert!("valid".parse::<KnownHostStatus>().is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_windows_activity_listing_and_deletion() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool().get().await.unwrap();
    let host = insert_host(&mut conn, new_host("h", "10.7.0.1", &[])).await.unwrap().id;
    let other = insert_host(&mut conn, new_host("o", "10.7.0.2", &[])).await.unwrap().id;
    let quiet = insert_host(&mut conn, new_host("q", "10.7.0.3", &[])).await.unwrap().id;
    let user = insert_user(&mut conn, "planner").await;
    let now = Utc::now();
    let hours = |h: i64| now + TimeDelta::hours(h);
    let window = |host_id, starts_at, ends_at| NewMaintenanceWindow {
        id: Uuid::now_v7(),
        host_id,
        starts_at,
        ends_at,
        reason: Some("patching".into()),
        created_by: Some(user),
    };

    let past = maintenance_windows::insert(&mut conn, window(host, hours(-5), hours(-3))).await.unwrap();
    let current = maintenance_windows::insert(&mut conn, window(host, hours(-1), hours(1))).await.unwrap();
    let upcoming = maintenance_windows::insert(&mut conn, window(host, hours(4), hours(6))).await.unwrap();
    let overlapping =
        maintenance_windows::insert(&mut conn, window(host, hours(0) - TimeDelta::minutes(1), hours(2)))
            .await
            .unwrap();
    let other_now = maintenance_windows::insert(
        &mut conn,
        NewMaintenanceWindow { reason: None, created_by: None, ..window(other, hours(-2), hours(3)) },
    )
    .await
    .unwrap();
    maintenance_windows::insert(&mut conn, window(quiet, hours(1), hours(2))).await.unwrap();
    assert_eq!((current.reason.as_deref(), current.created_by), (Some("patching"), Some(user)));
    assert_eq!(current.starts_at.timestamp_micros(), hours(-1).timestamp_micros());
    assert_eq!((other_now.reason, other_now.created_by), (None, None));

    let bad = maintenance_windows::insert(&mut conn, window(host, hours(2), hours(2))).await.unwrap_err();
    assert!(matches!(bad, DbError::Constraint { .. }), "{bad:?}");
    let no_host =
        maintenance_windows::insert(&mut conn, window(HostId::new(), hours(1), hours(2))).await.unwrap_err();
    assert!(matches!(no_host, DbError::Constraint { .. }), "{no_host:?}");
    let reused = maintenance_windows::insert(
        &mut conn,
        NewMaintenanceWindow { id: past.id, ..window(host, hours(1), hours(2)) },
    )
    .await
    .unwrap_err();
    assert!(matches!(reused, DbError::Conflict { .. }), "{reused:?}");

    // Current and upcoming, by start; the past one is not listed.
    let listed = maintenance_windows::list_for_host(&mut conn, host, now, all()).await.unwrap();
    assert_eq!(
        (listed.items.iter().map(|w| w.id).collect::<Vec<_>>(), listed.total),
        (vec![current.id, overlapping.id, upcoming.id], 3)
    );
    let second_page = maintenance_windows::list_for_host(&mut conn, host, now, page(2, 2)).await.unwrap();
    assert_eq!(
        (second_page.items.iter().map(|w| w.id).collect::<Vec<_>>(), second_page.total),
        (vec![upcoming.id], 3)
    );
    assert_eq!(
        maintenance_windows::list_for_host(&mut conn, HostId::new(), now, all()).await.unwrap().total,
        0
    );

    // Active: start inclusive, end exclusive.
    assert!(maintenance_windows::active_at(&mut conn, host, now).await.unwrap());
    assert!(!maintenance_windows::active_at(&mut conn, host, hours(3)).await.unwrap());
    assert!(maintenance_windows::active_at(&mut conn, host, upcoming.starts_at).await.unwrap());
    assert!(!maintenance_windows::active_at(&mut conn, host, upcoming.ends_at).await.unwrap());
    assert!(!maintenance_windows::active_at(&mut conn, quiet, now).await.unwrap());

    let mut expected = vec![host, other];
    expected.sort();
    assert_eq!(maintenance_windows::hosts_in_maintenance(&mut conn, now).await.unwrap(), expected);
    assert_eq!(maintenance_windows::hosts_in_maintenance(&mut conn, hours(5)).await.unwrap(), [host]);
    assert!(maintenance_windows::hosts_in_maintenance(&mut conn, hours(10)).await.unwrap().is_empty());

    // Deleting needs the right host.
    assert!(matches!(
        maintenance_windows::delete(&mut conn, other, current.id).await,
        Err(DbError::NotFound)
    ));
    maintenance_windows::delete(&mut conn, host, current.id).await.unwrap();
    assert!(maintenance_windows::active_at(&mut conn, host, now).await.unwrap()); // the overlapping one
    maintenance_windows::delete(&mut conn, host, overlapping.id).await.unwrap();
    assert!(!maintenance_windows::active_at(&mut conn, host, now).await.unwrap());
    assert_eq!(maintenance_windows::hosts_in_maintenance(&mut conn, now).await.unwrap(), [other]);
    assert!(matches!(maintenance_windows::delete(&mut conn, host, current.id).await, Err(DbError::NotFound)));

    // Windows go with their host.
    hosts::delete_host(&mut conn, other).await.unwrap();
    assert!(maintenance_windows::hosts_in_maintenance(&mut conn, now).await.unwrap().is_empty());
}
