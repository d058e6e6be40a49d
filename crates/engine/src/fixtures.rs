//! Rule fixtures: captured fact sections under which a rule must pass, and under which
//! it must fail. A rule that cannot fail (or cannot pass) is a defect; `openwatch rules
//! lint` and CI run every fixture through the real parser and evaluator.
//!
//! `rules/fixtures/<rule_id>.yml`:
//! ```yaml
//! pass:
//!   - sections: { sshd: "permitrootlogin no\n" }
//! fail:
//!   - sections: { sshd: "permitrootlogin yes\n" }
//!     root: true
//!     files: { /etc/login.defs: "PASS_MAX_DAYS 99999\n", /etc/nope: null }
//!     stat: ["640|0|42|root|shadow|regular file|/etc/shadow"]
//!     os_release: "ID=debian\nVERSION_ID=12\n"
//! ```
//! Each case is rendered to the collection script's output format (marker lines and
//! all) and parsed like a real scan's output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use openwatch_common::domain::FindingStatus;
use serde::Deserialize;

use crate::eval::evaluate_rule;
use crate::facts::{Facts, parse};
use crate::platform::Family;
use crate::rules::{Rule, RuleSet};

/// Fixture cases of one rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFixtures {
    /// Cases that must pass.
    #[serde(default)]
    pub pass: Vec<FixtureCase>,
    /// Cases that must fail.
    #[serde(default)]
    pub fail: Vec<FixtureCase>,
}

/// One captured host state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCase {
    /// `/etc/os-release` content (default: the rule's first platform).
    #[serde(default)]
    pub os_release: Option<String>,
    /// Whether the script ran as root (default true).
    #[serde(default = "root_default")]
    pub root: bool,
    /// Bulk sections by name, with exit status 0.
    #[serde(default)]
    pub sections: BTreeMap<String, String>,
    /// Files read: content, or null for a missing file.
    #[serde(default)]
    pub files: BTreeMap<String, Option<String>>,
    /// `stat` lines (`mode|uid|gid|owner|group|type|path`).
    #[serde(default)]
    pub stat: Vec<String>,
}

fn root_default() -> bool {
    true
}

const NONCE: &str = "FIXTURE";

fn default_os_release(rule: &Rule) -> String {
    let spec = rule.file.platforms.first();
    let (id, version) = match spec.map(|s| s.family) {
        Some(Family::Ubuntu) => ("ubuntu", "22.04"),
        Some(Family::Rhel) => ("rhel", "9.4"),
        _ => ("debian", "12"),
    };
    let version = spec.and_then(|s| s.min_version.clone()).unwrap_or_else(|| version.to_owned());
    format!("ID={id}\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"fixture {id} {version}\"\n")
}

/// Renders a case to the collection script's output format.
pub fn render(rule: &Rule, case: &FixtureCase) -> String {
    let mut out = String::new();
    let mut section = |name: &str, body: &str| {
        let _ =
            write!(out, "@@OW-{NONCE} BEGIN {name}\n{body}\n@@OW-{NONCE} RC 0\n@@OW-{NONCE} END {name}\n");
    };
    section("os-release", &case.os_release.clone().unwrap_or_else(|| default_os_release(rule)));
    section("id", if case.root { "0" } else { "1000" });
    for (name, body) in &case.sections {
        section(name, body);
    }
    if !case.stat.is_empty() {
        section("stat", &case.stat.join("\n"));
    }
    if !case.files.is_empty() {
        let mut files = String::new();
        for (path, content) in &case.files {
            match content {
                Some(text) => {
                    let _ = write!(
                        files,
                        "@@OW-{NONCE} FILE {path} SIZE {}\n{text}\n@@OW-{NONCE} FILE-END\n",
                        text.len()
                    );
                }
                None => {
                    let _ = writeln!(files, "@@OW-{NONCE} FILE {path} MISSING");
                }
            }
        }
        section("files", files.trim_end_matches('\n'));
    }
    out
}

/// The facts a case of `rule` stands for.
pub fn facts_of(rule: &Rule, case: &FixtureCase) -> Result<Facts, String> {
    let stat_requested = case.stat.iter().filter_map(|l| l.rsplit('|').next().map(str::to_owned)).collect();
    parse::parse(&render(rule, case), NONCE, stat_requested).map_err(|e| e.to_string())
}

/// Evaluates one case of `rule`.
pub fn evaluate_case(rule: &Rule, case: &FixtureCase) -> Result<FindingStatus, String> {
    Ok(evaluate_rule(rule, None, &facts_of(rule, case)?).status)
}

/// Runs every rule's fixtures; returns one message per problem (missing fixtures, a case
/// with the wrong status, a rule without a failing or passing case).
pub fn check_corpus(rules: &RuleSet, fixtures_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for rule in rules.rules.values() {
        let id = &rule.file.id;
        if rule.file.manual {
            continue;
        }
        let path = fixtures_dir.join(format!("{id}.yml"));
        let fixtures: RuleFixtures = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_saphyr::from_str(&text) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!(
                        "{}: {}",
                        path.display(),
                        e.to_string().lines().next().unwrap_or("")
                    ));
                    continue;
                }
            },
            Err(_) => {
                problems.push(format!("{id}: no fixture file {}", path.display()));
                continue;
            }
        };
        if fixtures.pass.is_empty() || fixtures.fail.is_empty() {
            problems.push(format!("{id}: needs at least one passing and one failing fixture"));
        }
        for (expected, cases) in
            [(FindingStatus::Pass, &fixtures.pass), (FindingStatus::Fail, &fixtures.fail)]
        {
            for (index, case) in cases.iter().enumerate() {
                match evaluate_case(rule, case) {
                    Ok(status) if status == expected => {}
                    Ok(status) => problems
                        .push(format!("{id}: {} case {index} evaluated to {status}", expected.as_str())),
                    Err(e) => problems.push(format!("{id}: {} case {index}: {e}", expected.as_str())),
                }
            }
        }
    }
    problems
}
