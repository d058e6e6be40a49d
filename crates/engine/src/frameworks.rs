//! Framework control lists and coverage: "coverage is computed, not claimed".
//!
//! Each framework a rule may reference has a complete list of its controls in
//! `rules/frameworks/<framework_id>.csv`, with the header `control_id,levels,status`:
//!
//! * `control_id` — the id exactly as the framework writes it (`1.1.1.1`, `AC-2(1)`,
//!   `RHEL-09-211010`);
//! * `levels` — level ids joined by `;` (CIS profiles, NIST baselines, STIG categories),
//!   possibly empty;
//! * `status` — `automated`, `manual` or another value copied from the source list.
//!
//! [`coverage`] compares a [`RuleSet`] with these lists: per framework, how many controls
//! (and how many automated controls) at least one non-manual rule references, plus every
//! reference to a control id that the list does not hold (a corpus defect, usually a typo)
//! and every framework id that has no list at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::rules::RuleSet;

/// The header every framework list starts with.
pub const CSV_HEADER: &str = "control_id,levels,status";

/// The status of a control that can be checked by a machine.
pub const STATUS_AUTOMATED: &str = "automated";

/// One control of a framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    /// The control id as the framework writes it.
    pub id: String,
    /// Level ids (profiles, baselines, categories); may be empty.
    pub levels: Vec<String>,
    /// `automated`, `manual` or another status copied from the source list.
    pub status: String,
}

impl Control {
    /// Whether the source list marks the control as automatable.
    pub fn is_automated(&self) -> bool {
        self.status == STATUS_AUTOMATED
    }
}

/// A framework and its complete list of controls, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Framework {
    /// Framework id, as rules write it under `references` (the file name without `.csv`).
    pub id: String,
    /// Every control of the framework.
    pub controls: Vec<Control>,
}

impl Framework {
    /// The control with this id, if the framework has one.
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|control| control.id == id)
    }
}

/// A framework list that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FrameworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for FrameworkError {}

/// Parses the text of one framework list; `path` names the file in errors.
///
/// Strict: the header must be exactly [`CSV_HEADER`], every line must have three fields
/// (no quoting: ids, levels and statuses never contain commas or quotes), control ids and
/// statuses must not be empty, and a control id may appear only once.
pub fn parse_framework(id: &str, path: &Path, text: &str) -> Result<Framework, FrameworkError> {
    let error =
        |line: usize, message: String| FrameworkError { path: path.to_owned(), line: Some(line), message };
    let mut lines = text.lines().enumerate().map(|(index, line)| (index + 1, line.trim_end_matches('\r')));
    match lines.next() {
        Some((_, header)) if header == CSV_HEADER => {}
        Some((number, header)) => {
            return Err(error(number, format!("the header must be `{CSV_HEADER}`, found `{header}`")));
        }
        None => return Err(error(1, format!("empty file; the header must be `{CSV_HEADER}`"))),
    }
    let mut controls = Vec::new();
    let mut seen = BTreeMap::new();
    for (number, line) in lines {
        if line.contains('"') {
            return Err(error(number, "quoted fields are not supported".into()));
        }
        let fields: Vec<&str> = line.split(',').collect();
        let [control_id, levels, status] = fields[..] else {
            return Err(error(
                number,
                format!("expected 3 fields (control_id,levels,status), found {}", fields.len()),
            ));
        };
        let (control_id, status) = (control_id.trim(), status.trim());
        if control_id.is_empty() {
            return Err(error(number, "empty control_id".into()));
        }
        if status.is_empty() {
            return Err(error(number, format!("empty status for control `{control_id}`")));
        }
        if let Some(first) = seen.insert(control_id.to_owned(), number) {
            return Err(error(number, format!("control `{control_id}` is already listed on line {first}")));
        }
        let levels =
            levels.split(';').map(str::trim).filter(|level| !level.is_empty()).map(str::to_owned).collect();
        controls.push(Control { id: control_id.to_owned(), levels, status: status.to_owned() });
    }
    Ok(Framework { id: id.to_owned(), controls })
}

/// Loads one framework list; its id is the file name without `.csv`.
pub fn load_framework(path: &Path) -> Result<Framework, FrameworkError> {
    let id = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
    if id.is_empty() {
        return Err(FrameworkError { path: path.to_owned(), line: None, message: "no framework id".into() });
    }
    let text = std::fs::read_to_string(path).map_err(|e| FrameworkError {
        path: path.to_owned(),
        line: None,
        message: e.to_string(),
    })?;
    parse_framework(id, path, &text)
}

/// Loads every `*.csv` file of `dir` (not recursive), sorted by framework id. Returns every
/// error, not just the first.
pub fn load_dir(dir: &Path) -> Result<Vec<Framework>, Vec<FrameworkError>> {
    let io_error =
        |e: std::io::Error| vec![FrameworkError { path: dir.to_owned(), line: None, message: e.to_string() }];
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "csv") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut frameworks = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_framework(&path) {
            Ok(framework) => frameworks.push(framework),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(frameworks) } else { Err(errors) }
}

/// A rule's reference to a control id that its framework's list does not hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct UnknownControl {
    /// The rule id.
    pub rule: String,
    /// The control id as the rule writes it.
    pub control: String,
}

/// Coverage of one framework that has a control list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameworkCoverage {
    /// Framework id.
    pub framework: String,
    /// Controls in the list.
    pub total: usize,
    /// Controls in the list whose status is `automated`.
    pub automated: usize,
    /// Controls referenced by at least one non-manual rule.
    pub covered: usize,
    /// Automated controls referenced by at least one non-manual rule.
    pub covered_automated: usize,
    /// Controls referenced only by manual rules (not counted as covered).
    pub manual_only: usize,
    /// Rules referencing the framework (manual ones included).
    pub rules: usize,
    /// References to control ids that are not in the list, sorted.
    pub unknown_controls: Vec<UnknownControl>,
}

impl FrameworkCoverage {
    /// `covered / total` in percent (0 for an empty list).
    pub fn covered_percent(&self) -> f64 {
        percent(self.covered, self.total)
    }

    /// `covered_automated / automated` in percent (0 when nothing is automated).
    pub fn covered_automated_percent(&self) -> f64 {
        percent(self.covered_automated, self.automated)
    }
}

/// A framework id referenced by rules but without a control list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnlistedFramework {
    /// Framework id.
    pub framework: String,
    /// Rules referencing it, sorted.
    pub rules: Vec<String>,
    /// Distinct control ids referenced.
    pub controls: usize,
}

/// Coverage of every framework, computed from a rule corpus and the control lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageReport {
    /// One entry per framework list, sorted by framework id.
    pub frameworks: Vec<FrameworkCoverage>,
    /// Framework ids that rules reference but that have no list, sorted.
    pub unlisted_frameworks: Vec<UnlistedFramework>,
}

impl CoverageReport {
    /// Every reference to an unknown control id, as `(framework, reference)`.
    pub fn unknown_controls(&self) -> impl Iterator<Item = (&str, &UnknownControl)> {
        self.frameworks
            .iter()
            .flat_map(|f| f.unknown_controls.iter().map(move |unknown| (f.framework.as_str(), unknown)))
    }

    /// Whether any rule references a control id its framework list does not hold.
    pub fn has_unknown_controls(&self) -> bool {
        self.unknown_controls().next().is_some()
    }

    /// The report as a plain-text table followed by the problems, one per line.
    pub fn to_text(&self) -> String {
        let mut rows = vec![[
            "framework".to_owned(),
            "automated covered/total".to_owned(),
            "all covered/total".to_owned(),
            "unknown refs".to_owned(),
        ]];
        for f in &self.frameworks {
            rows.push([
                f.framework.clone(),
                format!("{}/{} ({:.1}%)", f.covered_automated, f.automated, f.covered_automated_percent()),
                format!("{}/{} ({:.1}%)", f.covered, f.total, f.covered_percent()),
                f.unknown_controls.len().to_string(),
            ]);
        }
        let mut widths = [0; 4];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for (framework, unknown) in self.unknown_controls() {
            out.push_str(&format!(
                "unknown control: rule `{}` references {framework} `{}`, which is not in the list\n",
                unknown.rule, unknown.control
            ));
        }
        for unlisted in &self.unlisted_frameworks {
            out.push_str(&format!(
                "no control list for framework `{}` ({} rule(s), {} control id(s) referenced)\n",
                unlisted.framework,
                unlisted.rules.len(),
                unlisted.controls
            ));
        }
        out
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Computes the coverage of every framework in `frameworks` by the rules of `rules`.
///
/// A control is covered when at least one non-manual rule references it; manual rules only
/// count in [`FrameworkCoverage::rules`] and [`FrameworkCoverage::manual_only`]. Unknown
/// control ids are reported whether the referencing rule is manual or not.
pub fn coverage(rules: &RuleSet, frameworks: &[Framework]) -> CoverageReport {
    // framework id → control id → (rules, referenced by a non-manual rule)
    let mut references: BTreeMap<&str, BTreeMap<&str, (BTreeSet<&str>, bool)>> = BTreeMap::new();
    for rule in rules.rules.values() {
        for (framework, controls) in &rule.file.references {
            let by_control = references.entry(framework.as_str()).or_default();
            for control in controls {
                let entry = by_control.entry(control.as_str()).or_default();
                entry.0.insert(rule.file.id.as_str());
                entry.1 |= !rule.file.manual;
            }
        }
    }
    let empty = BTreeMap::new();
    let mut listed: Vec<&Framework> = frameworks.iter().collect();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let report = listed
        .iter()
        .map(|framework| {
            let referenced = references.get(framework.id.as_str()).unwrap_or(&empty);
            let mut coverage = FrameworkCoverage {
                framework: framework.id.clone(),
                total: framework.controls.len(),
                automated: framework.controls.iter().filter(|c| c.is_automated()).count(),
                covered: 0,
                covered_automated: 0,
                manual_only: 0,
                rules: referenced.values().flat_map(|(rules, _)| rules).collect::<BTreeSet<_>>().len(),
                unknown_controls: Vec::new(),
            };
            for control in &framework.controls {
                match referenced.get(control.id.as_str()) {
                    Some((_, true)) => {
                        coverage.covered += 1;
                        coverage.covered_automated += usize::from(control.is_automated());
                    }
                    Some((_, false)) => coverage.manual_only += 1,
                    None => {}
                }
            }
            let known: BTreeSet<&str> = framework.controls.iter().map(|c| c.id.as_str()).collect();
            for (control, (rules, _)) in referenced {
                if !known.contains(control) {
                    coverage.unknown_controls.extend(rules.iter().map(|rule| UnknownControl {
                        rule: (*rule).to_owned(),
                        control: (*control).to_owned(),
                    }));
                }
            }
            coverage.unknown_controls.sort();
            coverage
        })
        .collect();
    let listed_ids: BTreeSet<&str> = frameworks.iter().map(|f| f.id.as_str()).collect();
    let unlisted_frameworks = references
        .iter()
        .filter(|(framework, _)| !listed_ids.contains(*framework))
        .map(|(framework, controls)| UnlistedFramework {
            framework: (*framework).to_owned(),
            rules: controls
                .values()
                .flat_map(|(rules, _)| rules.iter().map(|rule| (*rule).to_owned()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            controls: controls.len(),
        })
        .collect();
    CoverageReport { frameworks: report, unlisted_frameworks }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<Framework, FrameworkError> {
        parse_framework("x", Path::new("x.csv"), text)
    }

    #[test]
    fn parses_levels_and_statuses() {
        let framework =
            parse("control_id,levels,status\n1.1,l1_server;l2_server,automated\n1.2,,manual\n").unwrap();
        assert_eq!(framework.controls.len(), 2);
        assert_eq!(framework.controls[0].levels, ["l1_server", "l2_server"]);
        assert!(framework.controls[0].is_automated());
        assert!(framework.controls[1].levels.is_empty());
        assert!(!framework.controls[1].is_automated());
        assert_eq!(framework.control("1.2").map(|c| c.status.as_str()), Some("manual"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let error = parse("control_id,levels,status\n1.1,,automated\n1.2,automated\n").unwrap_err();
        assert_eq!(error.to_string(), "x.csv:3: expected 3 fields (control_id,levels,status), found 2");
        let error = parse("control_id,levels,status\n1.1,,automated\n1.1,,manual\n").unwrap_err();
        assert_eq!(error.line, Some(3));
        assert!(error.message.contains("already listed on line 2"), "{error}");
        assert_eq!(parse("id,levels,status\n").unwrap_err().line, Some(1));
        assert_eq!(parse("").unwrap_err().line, Some(1));
        assert!(parse("control_id,levels,status\n,,automated\n").is_err());
        assert!(parse("control_id,levels,status\n1.1,,\n").is_err());
        assert!(parse("control_id,levels,status\n\"1.1\",,manual\n").is_err());
    }

    #[test]
    fn percentages_of_empty_lists_are_zero() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }
}
