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
