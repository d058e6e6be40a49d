//! The migrations against a real PostgreSQL: they apply, fully revert and re-apply; every
//! foreign key is indexed and has an explicit delete rule; enum CHECKs match the domain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use openwatch_common::domain::{
    ComplianceState, FindingStatus, MonitoringState, ScanStatus, ScanTrigger, Severity,
};
use openwatch_common::queues::QueueName;
use openwatch_db::migrate;
use openwatch_test_support::database::TestDatabase;

#[derive(QueryableByName, Debug)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn names(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(sql).load(conn).await.unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

const PUBLIC_OBJECTS: &str = "SELECT c.relname::text AS name FROM pg_class c \
     WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1";
const PUBLIC_FUNCTIONS: &str =
    "SELECT proname::text AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1";

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_revert_completely_and_reapply() {
    let db = TestDatabase::empty().await;
    let url = db.url();
    let all = migrate::all().unwrap();
    assert!(all.len() >= 5, "{all:?}");
    assert_eq!(migrate::pending(&url).await.unwrap().len(), all.len());

    let applied = migrate::run_pending(&url).await.unwrap();
    assert_eq!(applied.len(), all.len());
    assert!(migrate::pending(&url).await.unwrap().is_empty());

    let reverted = migrate::revert_all(&url).await.unwrap();
    assert_eq!(reverted.len(), all.len());
    let mut conn = db.connect().await;
    let left = names(&mut conn, PUBLIC_OBJECTS).await;
    assert!(
        left.iter().all(|n| n.starts_with("__diesel_schema_migrations")),
        "objects left after reverting every migration: {left:?}"
    );
    assert_eq!(names(&mut conn, PUBLIC_FUNCTIONS).await, Vec::<String>::new());

    assert_eq!(migrate::run_pending(&url).await.unwrap().len(), all.len());
    assert!(migrate::pending(&url).await.unwrap().is_empty());
    assert_eq!(migrate::applied(&url).await.unwrap().len(), all.len());

    // Seed data is back.
    let roles = names(&mut conn, "SELECT name FROM roles ORDER BY name").await;
    assert_eq!(
        roles,
        ["auditor", "compliance_officer", "guest", "security_admin", "security_analyst", "super_admin"]
    );
    let config = names(
        &mut conn,
        "SELECT concat_ws(',', interval_critical_minutes, interval_low_minutes, interval_partial_minutes, \
         interval_mostly_compliant_minutes, interval_compliant_minutes, interval_unknown_minutes, \
         max_interval_minutes, failure_backoff_base_minutes) AS name FROM scheduler_config",
    )
    .await;
    assert_eq!(config, ["60,120,360,720,1440,0,2880,5"]);
}

#[derive(QueryableByName, Debug)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    constraint_name: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
    #[diesel(sql_type = Bool)]
    indexed: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_foreign_key_is_indexed_and_has_an_explicit_delete_rule() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    // An FK is covered by a non-partial index whose leading columns are exactly the FK's
    // columns (in any order).
    let fks: Vec<ForeignKey> = diesel::sql_query(
        "SELECT c.conrelid::regclass::text AS table_name, c.conname::text AS constraint_name, \
                c.confdeltype::text AS on_delete, \
                EXISTS ( \
                    SELECT 1 FROM pg_index i \
                    WHERE i.indrelid = c.conrelid AND i.indpred IS NULL \
                      AND (SELECT array_agg(k ORDER BY k) FROM unnest( \
                              (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)]) k) \
                        = (SELECT array_agg(k ORDER BY k) FROM unnest(c.conkey) k) \
                ) AS indexed \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace \
         ORDER BY 1, 2",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(fks.len() >= 20, "expected the schema's foreign keys, found {fks:?}");

    let unindexed: Vec<_> = fks
        .iter()
        .filter(|fk| !fk.indexed)
        .map(|fk| format!("{}.{}", fk.table_name, fk.constraint_name))
        .collect();
    assert!(unindexed.is_empty(), "foreign keys without a leading index: {unindexed:?}");

    // 'a' = NO ACTION, the implicit default: every delete rule must be chosen.
    let implicit: Vec<_> = fks
        .iter()
        .filter(|fk| !matches!(fk.on_delete.as_str(), "c" | "n" | "r"))
        .map(|fk| format!("{}.{} (confdeltype {})", fk.table_name, fk.constraint_name, fk.on_delete))
        .collect();
    assert!(implicit.is_empty(), "foreign keys without an explicit ON DELETE: {implicit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_checks_accept_exactly_the_domain_spellings() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;

    fn spellings<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> Vec<String> {
        let mut v: Vec<String> = all.iter().map(|x| as_str(*x).to_owned()).collect();
        v.sort();
        v
    }
    let expectations = [
        ("hosts", "monitoring_state", spellings(MonitoringState::ALL, MonitoringState::as_str)),
        ("hosts", "compliance_state", spellings(ComplianceState::ALL, ComplianceState::as_str)),
        ("scans", "status", spellings(ScanStatus::ALL, ScanStatus::as_str)),
        ("scans", "trigger", spellings(ScanTrigger::ALL, ScanTrigger::as_str)),
        ("scan_findings", "status", spellings(FindingStatus::ALL, FindingStatus::as_str)),
        ("scan_findings", "severity", spellings(Severity::ALL, Severity::as_str)),
        ("host_rule_state", "status", spellings(FindingStatus::ALL, FindingStatus::as_str)),
        ("host_rule_state", "severity", spellings(Severity::ALL, Severity::as_str)),
        ("drift_events", "current_status", spellings(FindingStatus::ALL, FindingStatus::as_str)),
        ("alerts", "severity", spellings(Severity::ALL, Severity::as_str)),
        ("outbox", "queue", spellings(&QueueName::ALL, QueueName::as_str)),
    ];
    for (table, column, expected) in expectations {
        // The single-column CHECK on that column.
        let defs: Vec<Name> = diesel::sql_query(
            "SELECT pg_get_constraintdef(c.oid) AS name FROM pg_constraint c \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             WHERE c.contype = 'c' AND c.conrelid = $1::regclass AND cardinality(c.conkey) = 1 \
               AND a.attname = $2",
        )
        .bind::<Text, _>(table)
        .bind::<Text, _>(column)
        .load(&mut conn)
        .await
        .unwrap();
        assert_eq!(defs.len(), 1, "{table}.{column}: {defs:?}");
        let mut literals: Vec<String> =
            defs[0].name.split('\'').skip(1).step_by(2).map(ToOwned::to_owned).collect();
        literals.sort();
        assert_eq!(literals, expected, "{table}.{column}: {}", defs[0].name);
    }
}
