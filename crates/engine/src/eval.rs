//! Evaluation: from rules and facts to results, evidence and scores.
//!
//! Combination is honest. With `combine: all` (default) any `fail` makes the rule fail,
//! otherwise any `error` makes it an error (never a pass). With `combine: any` one `pass`
//! decides, otherwise any `error` makes it an error, otherwise it fails. A rule whose
//! checks all do not apply, or whose platform does not match, is `not_applicable`;
//! `manual` rules are reported as `manual`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use openwatch_common::domain::{FindingStatus, Severity, compliance_score};
use openwatch_common::messages::v1::{EvidenceV1, RuleResultV1};
use serde::Serialize;

use crate::checks::{Outcome, evidence};
use crate::facts::{Facts, Probe};
use crate::rules::{Combine, Rule};

/// The union of probes needed by `rules` (for `framework`'s variable values).
pub fn probes_for<'a>(rules: impl IntoIterator<Item = &'a Rule>, framework: Option<&str>) -> BTreeSet<Probe> {
    let mut probes = BTreeSet::new();
    for rule in rules {
        rule.probes(framework, &mut probes);
    }
    probes
}

/// Evaluates every rule against `facts`.
pub fn evaluate<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    framework: Option<&str>,
    facts: &Facts,
) -> Vec<RuleResultV1> {
    rules.into_iter().map(|rule| evaluate_rule(rule, framework, facts)).collect()
}

/// Evaluates one rule.
///
/// Scanning for one framework uses that framework's variable values. Scanning for all
/// (`framework` = `None`) uses the defaults, and also evaluates each framework that
/// overrides a value with its own values: a framework whose status differs (a STIG that
/// wants 60 days where the default allows 365) is left out of the result's `frameworks`,
/// so its score never counts a status its own values would not give. Its own result comes
/// from a scan for that framework.
pub fn evaluate_rule(rule: &Rule, framework: Option<&str>, facts: &Facts) -> RuleResultV1 {
    let started = Instant::now();
    let outcome = decide(rule, framework, facts);
    let mut frameworks = rule.file.references.clone();
    if framework.is_none() {
        for variant in rule.overridden.keys() {
            if frameworks.contains_key(variant) && decide(rule, Some(variant), facts).status != outcome.status
            {
                frameworks.remove(variant);
            }
        }
    }
    RuleResultV1 {
        rule_id: rule.file.id.clone(),
        status: outcome.status,
        severity: rule.file.severity,
        reason: outcome.reason,
        evidence: outcome.evidence,
        frameworks,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

fn decide(rule: &Rule, framework: Option<&str>, facts: &Facts) -> Outcome {
    let Some(platform) = &facts.platform else {
        return Outcome::error("platform not detected (/etc/os-release unreadable)", "/etc/os-release");
    };
    if !rule.applies_to(platform) {
        let platforms: Vec<String> = rule.file.platforms.iter().map(|p| p.family.to_string()).collect();
        return Outcome::not_applicable(
            format!("rule is for {}", platforms.join(", ")),
            evidence("/etc/os-release", "", Some(platforms.join(", ")), Some(platform.pretty_name.clone())),
        );
    }
    if rule.file.manual {
        return Outcome {
            status: FindingStatus::Manual,
            reason: Some("requires human review".into()),
            evidence: evidence("manual review", "", None, None),
        };
    }
    let mut outcomes = Vec::new();
    for (index, conditional) in rule.checks_for(framework).iter().enumerate() {
        match conditional.when.as_ref().map(|w| w.holds(facts)) {
            Some(Some(false)) => continue,
            Some(None) => outcomes.push(Outcome::error("condition could not be evaluated", "when")),
            _ => outcomes.push(conditional.check.evaluate(&rule.check_id(index), facts)),
        }
    }
    if outcomes.is_empty() {
        return Outcome::not_applicable("no check applies to this host", evidence("when", "", None, None));
    }
    let any = |status| outcomes.iter().any(|o: &Outcome| o.status == status);
    let status = if outcomes.iter().all(|o| o.status == FindingStatus::NotApplicable) {
        FindingStatus::NotApplicable
    } else {
        match rule.file.combine {
            // Every applicable check must pass: one fail decides; an error leaves it open.
            Combine::All if any(FindingStatus::Fail) => FindingStatus::Fail,
            Combine::All if any(FindingStatus::Error) => FindingStatus::Error,
            Combine::All => FindingStatus::Pass,
            // One passing alternative decides; an error might have been the passing one.
            Combine::Any if any(FindingStatus::Pass) => FindingStatus::Pass,
            Combine::Any if any(FindingStatus::Error) => FindingStatus::Error,
            Combine::Any => FindingStatus::Fail,
        }
    };
    // Evidence of the checks that decided the status (all of them for a pass).
    let deciding: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| {
            o.status == status || (status == FindingStatus::Pass && o.status != FindingStatus::NotApplicable)
        })
        .collect();
    let reason = deciding.iter().find_map(|o| o.reason.clone());
    Outcome { status, reason, evidence: merge(&deciding) }
}

fn merge(outcomes: &[&Outcome]) -> EvidenceV1 {
    if let [single] = outcomes {
        return single.evidence.clone();
    }
    let join = |f: &dyn Fn(&EvidenceV1) -> Option<String>, sep: &str| {
        let parts: Vec<String> =
            outcomes.iter().filter_map(|o| f(&o.evidence)).filter(|s| !s.is_empty()).collect();
        (!parts.is_empty()).then(|| parts.join(sep))
    };
    // The same expectation over several sources (one pattern in several files) once.
    let expected_parts: Vec<&str> =
        outcomes.iter().filter_map(|o| o.evidence.expected.as_deref()).filter(|s| !s.is_empty()).collect();
    let expected = match expected_parts.as_slice() {
        [] => None,
        [first, rest @ ..] if rest.iter().all(|e| e == first) => Some((*first).to_owned()),
        parts => Some(parts.join("; ")),
    };
    evidence(
        join(&|e| Some(e.source.clone()), "; ").unwrap_or_default(),
        &join(&|e| Some(e.excerpt.clone()), "\n").unwrap_or_default(),
        expected,
        join(&|e| e.actual.clone(), "; "),
    )
}

/// Passes and fails of a group of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Passed rules.
    pub pass: u64,
    /// Failed rules.
    pub fail: u64,
    /// Rules that could not be evaluated.
    pub error: u64,
    /// Rules that do not apply.
    pub not_applicable: u64,
    /// Rules needing human review.
    pub manual: u64,
}

impl Tally {
    fn add(&mut self, status: FindingStatus) {
        match status {
            FindingStatus::Pass => self.pass += 1,
            FindingStatus::Fail => self.fail += 1,
            FindingStatus::Error => self.error += 1,
            FindingStatus::NotApplicable => self.not_applicable += 1,
            FindingStatus::Manual => self.manual += 1,
        }
    }

    /// pass / (pass + fail) in percent; `None` without applicable results.
    pub fn score(&self) -> Option<f64> {
        compliance_score(self.pass, self.fail)
    }
}

/// Scores overall, per severity and per framework.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    /// All results.
    pub overall: Tally,
    /// By rule severity.
    pub by_severity: BTreeMap<Severity, Tally>,
    /// By framework id (a rule counts for every framework it references).
    pub by_framework: BTreeMap<String, Tally>,
}

/// Tallies `results`.
pub fn score(results: &[RuleResultV1]) -> Score {
    let mut score = Score::default();
    for result in results {
        score.overall.add(result.status);
        score.by_severity.entry(result.severity).or_default().add(result.status);
        for framework in result.frameworks.keys() {
            score.by_framework.entry(framework.clone()).or_default().add(result.status);
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fixtures::{FixtureCase, evaluate_case};
    use crate::rules::parse_rule;

    const HEAD: &str = "title: t\ndescription: d\nrationale: r\nseverity: low\ncategory: c\n\
                        references: {cis-debian12: ['2.1.1']}\nplatforms: [{family: debian}]\n";

    fn rule(id: &str, body: &str) -> Rule {
        parse_rule(Path::new(&format!("{id}.yml")), &format!("id: {id}\n{HEAD}{body}")).unwrap()
    }

    fn case(packages: &str, units: &str) -> FixtureCase {
        FixtureCase {
            root: true,
            sections: [
                ("packages".to_string(), format!("format=dpkg\n{packages}")),
                ("unit-files".to_string(), units.to_string()),
                ("units".to_string(), String::new()),
            ]
            .into(),
            ..FixtureCase::default()
        }
    }

    #[test]
    fn any_passes_with_one_alternative_and_fails_with_none() {
        let removed_or_masked = rule(
            "cups_removed_or_masked",
            "combine: any\nchecks:\n  - {type: package, names: [cups], state: absent}\n  \
             - {type: service, name: cups, masked: true}\n",
        );
        let status = |c| evaluate_case(&removed_or_masked, &c).unwrap();
        assert_eq!(status(case("", "")), FindingStatus::Pass, "removed");
        assert_eq!(
            status(case("ii |cups|2.4\n", "cups.service masked enabled\n")),
            FindingStatus::Pass,
            "masked"
        );
        assert_eq!(status(case("ii |cups|2.4\n", "cups.service enabled enabled\n")), FindingStatus::Fail);
    }

    #[test]
    fn all_is_the_default_and_package_absent_conditions_skip_checks() {
        let unit_off_unless_removed = rule(
            "avahi_off",
            "checks:\n  - {type: service, name: avahi-daemon, enabled: false, when: {package_installed: avahi-daemon}}\n  \
             - {type: package, names: [avahi-daemon], state: absent, when: {package_absent: avahi-daemon}}\n",
        );
        let status = |c| evaluate_case(&unit_off_unless_removed, &c).unwrap();
        assert_eq!(status(case("", "")), FindingStatus::Pass);
        assert_eq!(
            status(case("ii |avahi-daemon|0.8\n", "avahi-daemon.service enabled enabled\n")),
            FindingStatus::Fail
        );
        assert_eq!(
            status(case("ii |avahi-daemon|0.8\n", "avahi-daemon.service disabled enabled\n")),
            FindingStatus::Pass
        );
    }

    #[test]
    fn a_framework_whose_values_disagree_is_left_out_of_an_all_frameworks_result() {
        let max_age = parse_rule(
            Path::new("max_age.yml"),
            "id: max_age\ntitle: t\ndescription: d\nrationale: r\nseverity: low\ncategory: c\n\
             references: {cis-debian12: ['5.4.1.1'], stig-ubuntu2204: ['UBTU-22-411030']}\n\
             platforms: [{family: debian}]\nvariables: {days: {default: 365, overrides: {stig-ubuntu2204: 60}}}\n\
             checks:\n  - {type: kv_config, paths: [/etc/login.defs], key: PASS_MAX_DAYS, separator: whitespace, \
             expect: {min: 1, max: \"{{ days }}\"}}\n",
        )
        .unwrap();
        let facts_with = |days: u32| {
            let case = FixtureCase {
                root: true,
                files: [("/etc/login.defs".to_string(), Some(format!("PASS_MAX_DAYS {days}\n")))].into(),
                ..FixtureCase::default()
            };
            crate::fixtures::facts_of(&max_age, &case).unwrap()
        };
        let keys = |r: &RuleResultV1| r.frameworks.keys().cloned().collect::<Vec<_>>();
        // 90 days: compliant for CIS (365), not for the STIG (60).
        let all = evaluate_rule(&max_age, None, &facts_with(90));
        assert_eq!(all.status, FindingStatus::Pass);
        assert_eq!(keys(&all), ["cis-debian12"]);
        let stig = evaluate_rule(&max_age, Some("stig-ubuntu2204"), &facts_with(90));
        assert_eq!(stig.status, FindingStatus::Fail);
        // 30 days: both agree, so the result counts for both.
        assert_eq!(
            keys(&evaluate_rule(&max_age, None, &facts_with(30))),
            ["cis-debian12", "stig-ubuntu2204"]
        );
        let mut probes = BTreeSet::new();
        max_age.probes(None, &mut probes);
        assert!(probes.contains(&Probe::File("/etc/login.defs".into())));
    }

    #[test]
    fn merged_evidence_states_a_repeated_expectation_once() {
        let outcome = |source: &str, expected: &str| Outcome {
            status: FindingStatus::Fail,
            reason: None,
            evidence: evidence(source, "", Some(expected.into()), Some("no matching line".into())),
        };
        let (a, b) =
            (outcome("/etc/profile", "a line matching /x/"), outcome("/etc/bashrc", "a line matching /x/"));
        let merged = merge(&[&a, &b]);
        assert_eq!(merged.source, "/etc/profile; /etc/bashrc");
        assert_eq!(merged.expected.as_deref(), Some("a line matching /x/"));
        assert_eq!(merged.actual.as_deref(), Some("no matching line; no matching line"));
        let c = outcome("/etc/login.defs", "UMASK 027");
        assert_eq!(merge(&[&a, &c]).expected.as_deref(), Some("a line matching /x/; UMASK 027"));
    }

    #[test]
    fn scores_count_only_passes_and_fails() {
        let result = |status| RuleResultV1 {
            rule_id: "r".into(),
            status,
            severity: Severity::High,
            reason: None,
            evidence: evidence("s", "", None, None),
            frameworks: [("cis-debian12".to_string(), vec!["1".to_string()])].into(),
            duration_us: 0,
        };
        let results = [
            FindingStatus::Pass,
            FindingStatus::Pass,
            FindingStatus::Fail,
            FindingStatus::Error,
            FindingStatus::NotApplicable,
        ]
        .map(result);
        let score = score(&results);
        assert_eq!(score.overall.score(), Some(200.0 / 3.0));
        assert_eq!(score.by_severity[&Severity::High].error, 1);
        assert_eq!(score.by_framework["cis-debian12"].pass, 2);
    }
}
