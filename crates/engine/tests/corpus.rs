//! The rule corpus in `rules/`: every rule loads strictly, and every rule passes its
//! passing fixtures and fails its failing fixtures (a rule that cannot fail, or cannot
//! pass, fails this test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use openwatch_engine::fixtures::check_corpus;
use openwatch_engine::rules::RuleSet;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

#[test]
fn every_rule_loads_and_meets_its_fixtures() {
    let rules = RuleSet::load_dir(&corpus_dir()).unwrap_or_else(|errors| {
        panic!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    });
    assert!(!rules.rules.is_empty());
    let problems = check_corpus(&rules, &corpus_dir().join("fixtures"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_fixture_file_belongs_to_a_rule() {
    let rules = RuleSet::load_dir(&corpus_dir()).unwrap();
    for entry in std::fs::read_dir(corpus_dir().join("fixtures")).unwrap() {
        let path = entry.unwrap().path();
        let id = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(rules.rules.contains_key(&id), "orphan fixture {}", path.display());
    }
}

/// Values where a DISA STIG is stricter than the CIS default: a host compliant with the
/// CIS value fails under the STIG's own values, and a scan for all frameworks does not
/// count that CIS pass for the STIG.
#[test]
fn stig_values_are_stricter_where_the_stig_says_so() {
    use openwatch_common::domain::FindingStatus;
    use openwatch_engine::eval::evaluate_rule;
    use openwatch_engine::fixtures::{FixtureCase, facts_of};

    let rules = RuleSet::load_dir(&corpus_dir()).unwrap();
    let rhel9 = "ID=rhel\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Red Hat Enterprise Linux 9.4\"\n";
    let cases: [(&str, FixtureCase); 4] = [
        (
            "accounts_maximum_age_login_defs",
            FixtureCase {
                files: [("/etc/login.defs".into(), Some("PASS_MAX_DAYS 90\n".into()))].into(),
                ..Default::default()
            },
        ),
        (
            "file_permissions_etc_shadow",
            FixtureCase {
                stat: vec!["640|0|0|root|root|regular file|/etc/shadow".into()],
                ..Default::default()
            },
        ),
        (
            "accounts_umask_etc_login_defs",
            FixtureCase {
                files: [("/etc/login.defs".into(), Some("UMASK 027\n".into()))].into(),
                ..Default::default()
            },
        ),
        (
            "set_password_hashing_algorithm_logindefs",
            FixtureCase {
                files: [("/etc/login.defs".into(), Some("ENCRYPT_METHOD yescrypt\n".into()))].into(),
                ..Default::default()
            },
        ),
    ];
    for (id, mut case) in cases {
        case.root = true;
        case.os_release = Some(rhel9.into());
        let rule = &rules.rules[id];
        let facts = facts_of(rule, &case).unwrap();
        let all = evaluate_rule(rule, None, &facts);
        assert_eq!(all.status, FindingStatus::Pass, "{id} passes with the CIS values");
        assert!(all.frameworks.contains_key("cis-rhel9"), "{id}");
        assert!(!all.frameworks.contains_key("stig-rhel9"), "{id}: the CIS pass is not counted for the STIG");
        assert_eq!(
            evaluate_rule(rule, Some("stig-rhel9"), &facts).status,
            FindingStatus::Fail,
            "{id} under the STIG"
        );
    }
}
