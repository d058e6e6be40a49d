//! `rules/schema/rule.schema.json` is exactly the schema generated from the rule types,
//! so editors and external tools validate rules the way the loader does.
//! Regenerate with `OPENWATCH_UPDATE_SCHEMA=1 cargo test -p openwatch-engine --test schema`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use openwatch_engine::rules::rule_schema;

#[test]
fn the_committed_schema_matches_the_rule_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules/schema/rule.schema.json");
    let generated = serde_json::to_string_pretty(&rule_schema()).unwrap() + "\n";
    if std::env::var_os("OPENWATCH_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run OPENWATCH_UPDATE_SCHEMA=1 cargo test -p openwatch-engine --test schema",
        path.display()
    );
    let schema = rule_schema();
    let kinds = serde_json::to_string(&schema).unwrap();
    for kind in ["sshd_config", "sysctl", "kv_config", "file_permissions", "pam_module", "filesystem_walk"] {
        assert!(kinds.contains(&format!("\"{kind}\"")), "check kind {kind} missing from the schema");
    }
}
