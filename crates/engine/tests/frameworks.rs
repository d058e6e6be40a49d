//! Framework control lists in `rules/frameworks/` and the coverage computed from them:
//! every list loads, every control id the corpus references exists in its framework's
//! list, coverage numbers are consistent, and a small synthetic corpus gives exactly the
//! expected counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use openwatch_engine::frameworks::{self, Control, Framework, UnknownControl, coverage};
use openwatch_engine::rules::{RuleSet, parse_rule};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn corpus() -> RuleSet {
    RuleSet::load_dir(&corpus_dir()).unwrap_or_else(|errors| {
        panic!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })
}

fn lists() -> Vec<Framework> {
    frameworks::load_dir(&corpus_dir().join("frameworks")).unwrap_or_else(|errors| {
        panic!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })
}

#[test]
fn every_framework_list_loads_and_is_not_empty() {
    let lists = lists();
    let ids: BTreeSet<&str> = lists.iter().map(|f| f.id.as_str()).collect();
    for expected in [
        "cis-debian12",
        "cis-ubuntu2204",
        "cis-ubuntu2404",
        "cis-rhel8",
        "cis-rhel9",
        "pci-dss-4",
        "stig-rhel9",
        "stig-ubuntu2204",
    ] {
        assert!(ids.contains(expected), "no list rules/frameworks/{expected}.csv");
    }
    for framework in &lists {
        assert!(!framework.controls.is_empty(), "{} has no controls", framework.id);
        assert!(framework.controls.iter().all(|c| !c.id.is_empty() && !c.status.is_empty()));
    }
}

#[test]
fn every_referenced_control_exists_in_its_framework_list() {
    let report = coverage(&corpus(), &lists());
    let offenders: Vec<String> = report
        .unknown_controls()
        .map(|(framework, UnknownControl { rule, control })| {
            format!("rule `{rule}` references {framework} `{control}`, which is not in the list")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "{} unknown control reference(s):\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

#[test]
fn coverage_numbers_are_consistent() {
    let rules = corpus();
    let lists = lists();
    let report = coverage(&rules, &lists);
    assert_eq!(report.frameworks.len(), lists.len());
    for f in &report.frameworks {
        assert!(f.covered_automated <= f.automated, "{}: covered automated > automated", f.framework);
        assert!(f.automated <= f.total, "{}: automated > total", f.framework);
        assert!(f.covered <= f.total, "{}: covered > total", f.framework);
        assert!(f.covered_automated <= f.covered, "{}: covered automated > covered", f.framework);
        assert!(f.covered + f.manual_only <= f.total, "{}", f.framework);
        assert!((0.0..=100.0).contains(&f.covered_percent()));
        assert!((0.0..=100.0).contains(&f.covered_automated_percent()));
        let list = lists.iter().find(|l| l.id == f.framework).unwrap();
        assert_eq!(f.total, list.controls.len());
        assert_eq!(f.automated, list.controls.iter().filter(|c| c.is_automated()).count());
    }
    // Every framework a rule references appears either as a list or as unlisted.
    let referenced: BTreeSet<&str> =
        rules.rules.values().flat_map(|r| r.file.references.keys()).map(String::as_str).collect();
    let reported: BTreeSet<&str> = report
        .frameworks
        .iter()
        .map(|f| f.framework.as_str())
        .chain(report.unlisted_frameworks.iter().map(|u| u.framework.as_str()))
        .collect();
    assert!(referenced.is_subset(&reported), "{referenced:?} ⊄ {reported:?}");
    // The JSON form serializes.
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["frameworks"].is_array());
}

fn rule(id: &str, references: &str, manual: bool) -> openwatch_engine::rules::Rule {
    let checks = if manual {
        "manual: true\n".to_owned()
    } else {
        "checks:\n  - type: file_permissions\n    path: /etc/passwd\n    max_mode: '0644'\n".to_owned()
    };
    let text = format!(
        "id: {id}\ntitle: t\ndescription: d\nrationale: r\nseverity: low\ncategory: test\n\
         references:\n{references}platforms:\n  - family: debian\n{checks}"
    );
    parse_rule(Path::new(&format!("{id}.yml")), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn control(id: &str, status: &str) -> Control {
    Control { id: id.into(), levels: vec!["l1_server".into()], status: status.into() }
}

#[test]
fn synthetic_corpus_gives_exactly_the_expected_counts() {
    let framework = Framework {
        id: "fw".into(),
        controls: vec![
            control("1.1", "automated"),
            control("1.2", "automated"),
            control("1.3", "automated"),
            control("2.1", "manual"),
            control("2.2", "partial"),
        ],
    };
    let other = Framework { id: "empty".into(), controls: vec![] };
    let mut rules = RuleSet::default();
    for rule in [
        // 1.1 twice (counted once), 2.2 (not automated) by a checked rule.
        rule("a", "  fw: [\"1.1\", \"2.2\"]\n", false),
        rule("b", "  fw: [\"1.1\"]\n  nolist: [\"X-1\", \"X-2\"]\n", false),
        // 2.1 only by a manual rule: not covered.
        rule("c", "  fw: [\"2.1\"]\n", true),
        // A typo, and a reference to a framework without a list.
        rule("d", "  fw: [\"1.9\"]\n  nolist: [\"X-1\"]\n", false),
    ] {
        rules.rules.insert(rule.file.id.clone(), rule);
    }
    let report = coverage(&rules, &[other, framework]);

    assert_eq!(report.frameworks.len(), 2);
    let empty = &report.frameworks[0];
    assert_eq!((empty.framework.as_str(), empty.total, empty.covered, empty.rules), ("empty", 0, 0, 0));
    assert_eq!(empty.covered_percent(), 0.0);

    let fw = &report.frameworks[1];
    assert_eq!(fw.framework, "fw");
    assert_eq!(fw.total, 5);
    assert_eq!(fw.automated, 3);
    assert_eq!(fw.covered, 2, "1.1 and 2.2");
    assert_eq!(fw.covered_automated, 1, "1.1");
    assert_eq!(fw.manual_only, 1, "2.1");
    assert_eq!(fw.rules, 4);
    assert_eq!(fw.unknown_controls, [UnknownControl { rule: "d".into(), control: "1.9".into() }]);
    assert_eq!(fw.covered_percent(), 40.0);
    assert!((fw.covered_automated_percent() - 100.0 / 3.0).abs() < 1e-9);

    assert_eq!(report.unlisted_frameworks.len(), 1);
    let unlisted = &report.unlisted_frameworks[0];
    assert_eq!(unlisted.framework, "nolist");
    assert_eq!(unlisted.rules, ["b", "d"]);
    assert_eq!(unlisted.controls, 2);

    assert!(report.has_unknown_controls());
    let text = report.to_text();
    assert!(text.contains("1/3 (33.3%)"), "{text}");
    assert!(text.contains("2/5 (40.0%)"), "{text}");
    assert!(text.contains("rule `d` references fw `1.9`"), "{text}");
    assert!(text.contains("no control list for framework `nolist`"), "{text}");
}

#[test]
fn load_errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("openwatch-frameworks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.csv"), "control_id,levels,status\n1,,automated\n").unwrap();
    std::fs::write(dir.join("bad.csv"), "control_id,levels,status\n1,,automated\n2,automated\n").unwrap();
    std::fs::write(dir.join("README.md"), "not a list\n").unwrap();
    let errors = frameworks::load_dir(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(
        message.ends_with("bad.csv:3: expected 3 fields (control_id,levels,status), found 2"),
        "{message}"
    );
}
