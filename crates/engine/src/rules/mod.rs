//! Rules: one YAML file per rule under `rules/`, strictly typed.
//!
//! Unknown keys and wrong types are load errors naming the file, line and field — a typo
//! in a rule must never become a silent pass. Variables are written `"{{ name }}"` (with
//! the quotes) inside checks and are substituted textually before parsing, so line
//! numbers stay exact; each framework override produces its own compiled variant of the
//! rule. See `docs/RULES.md` for the format.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use openwatch_common::domain::Severity;
use serde::{Deserialize, Serialize};

use crate::checks::Check;
use crate::facts::Probe;
use crate::platform::{Family, Platform, PlatformSpec};

/// A rule file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Stable id (`[a-z0-9_]+`), equal to the file name without `.yml`.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// What the rule checks.
    pub description: String,
    /// Why it matters.
    pub rationale: String,
    /// Severity of a failure.
    pub severity: Severity,
    /// Grouping (`ssh`, `kernel`, `filesystem`, …).
    pub category: String,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Framework id → control ids (at least one framework).
    pub references: BTreeMap<String, Vec<String>>,
    /// Platforms the rule applies to (at least one).
    pub platforms: Vec<PlatformSpec>,
    /// Variables with defaults and per-framework overrides.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// The checks. Empty only for manual rules.
    #[serde(default)]
    pub checks: Vec<ConditionalCheck>,
    /// How check outcomes combine: `all` (default) must pass, or `any` one passing is
    /// enough (CIS "package removed OR service masked").
    #[serde(default)]
    pub combine: Combine,
    /// The control needs human review (no automated check).
    #[serde(default)]
    pub manual: bool,
    /// How to fix a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
}

/// How a rule's check outcomes combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Every check that applies must pass.
    #[default]
    All,
    /// At least one check that applies must pass.
    Any,
}

/// The JSON Schema of a rule file, generated from [`RuleFile`] (committed as
/// `rules/schema/rule.schema.json`; a test keeps the two identical).
pub fn rule_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RuleFile)).unwrap_or_default()
}

/// A rule variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Value unless a framework overrides it (a number or a string).
    pub default: Scalar,
    /// Framework id → value.
    #[serde(default)]
    pub overrides: BTreeMap<String, Scalar>,
}

/// A variable value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// An integer.
    Integer(i64),
    /// Text.
    Text(String),
}

impl Scalar {
    fn as_yaml(&self) -> String {
        match self {
            Scalar::Integer(n) => n.to_string(),
            Scalar::Text(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }
}

/// A check with an optional condition on detected facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConditionalCheck {
    /// Evaluate only when this holds; otherwise the check does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// The check.
    #[serde(flatten)]
    pub check: Check,
}

/// Conditions on facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The platform family is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// This package is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_installed: Option<String>,
    /// This package is not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_absent: Option<String>,
}

impl When {
    fn probes(&self, probes: &mut BTreeSet<Probe>) {
        if self.package_installed.is_some() || self.package_absent.is_some() {
            probes.insert(Probe::Packages);
        }
    }

    /// Whether the condition holds (`None`: cannot tell, the facts are missing).
    pub fn holds(&self, facts: &crate::facts::Facts) -> Option<bool> {
        if let Some(family) = self.family
            && facts.platform.as_ref().and_then(Platform::family) != Some(family)
        {
            return Some(false);
        }
        for (package, wanted) in [(&self.package_installed, true), (&self.package_absent, false)]
            .into_iter()
            .filter_map(|(p, w)| Some((p.as_ref()?, w)))
        {
            if facts.package_installed(package)? != wanted {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Remediation guidance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Remediation {
    /// What to do, in words.
    pub description: String,
    /// Commands that apply the fix (shown, not run).
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A loaded rule: its metadata and its checks compiled per framework.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as written, with checks compiled from variable defaults.
    pub file: RuleFile,
    /// Checks compiled with a framework's variable overrides, by framework id.
    pub overridden: BTreeMap<String, Vec<ConditionalCheck>>,
    /// Where it was loaded from.
    pub path: PathBuf,
}

impl Rule {
    /// The checks to evaluate when scanning for `framework` (defaults when it has no
    /// overrides).
    pub fn checks_for(&self, framework: Option<&str>) -> &[ConditionalCheck] {
        framework.and_then(|f| self.overridden.get(f)).unwrap_or(&self.file.checks)
    }

    /// Whether the rule applies to `platform`.
    pub fn applies_to(&self, platform: &Platform) -> bool {
        self.file.platforms.iter().any(|spec| spec.matches(platform))
    }

    /// Probes needed to evaluate this rule's checks for `framework`.
    /// Without a framework, the probes of every variant: a scan for all frameworks also
    /// evaluates each framework's own values (see [`crate::eval::evaluate_rule`]).
    pub fn probes(&self, framework: Option<&str>, probes: &mut BTreeSet<Probe>) {
        let variants: Vec<&[ConditionalCheck]> = match framework {
            Some(_) => vec![self.checks_for(framework)],
            None => std::iter::once(self.file.checks.as_slice())
                .chain(self.overridden.values().map(Vec::as_slice))
                .collect(),
        };
        for checks in variants {
            for (index, conditional) in checks.iter().enumerate() {
                if let Some(when) = &conditional.when {
                    when.probes(probes);
                }
                conditional.check.probes(&self.check_id(index), probes);
            }
        }
    }

    /// Whether a check of the rule (any framework's variant) reads the filesystem walk.
    pub fn needs_walk(&self) -> bool {
        std::iter::once(&self.file.checks)
            .chain(self.overridden.values())
            .flatten()
            .any(|c| matches!(c.check, Check::FilesystemWalk(_)))
    }

    /// The id of a check's own fact section (for `command` checks).
    pub fn check_id(&self, index: usize) -> String {
        format!("{}#{index}", self.file.id)
    }
}

/// A rule file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// What is wrong (names the field).
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// Parses one rule file's text (`path` is used for messages and the id check).
pub fn parse_rule(path: &Path, text: &str) -> Result<Rule, LoadError> {
    let error = |line: Option<u64>, message: String| LoadError { path: path.to_owned(), line, message };
    let yaml_error = |e: serde_saphyr::Error| {
        let line = e.location().map(|l| l.line());
        // The first line of saphyr's message is the reason; the rest is a source snippet.
        let message = e.to_string().lines().next().unwrap_or("invalid YAML").to_owned();
        error(line, message)
    };
    // Variables first (their block has no placeholders), then the whole file per context.
    let variables: BTreeMap<String, Variable> =
        serde_saphyr::from_str::<VariablesOnly>(text).map_err(yaml_error)?.variables;
    let defaults: BTreeMap<&str, &Scalar> = variables.iter().map(|(k, v)| (k.as_str(), &v.default)).collect();
    let file: RuleFile = serde_saphyr::from_str(&substitute(text, &defaults, path)?).map_err(yaml_error)?;

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if file.id != stem {
        return Err(error(None, format!("id `{}` must equal the file name `{stem}`", file.id)));
    }
    if !file.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(error(None, format!("id `{}` may contain only a-z, 0-9 and _", file.id)));
    }
    if file.references.is_empty() || file.references.values().any(Vec::is_empty) {
        return Err(error(
            None,
            "`references` must map at least one framework to at least one control".into(),
        ));
    }
    if file.platforms.is_empty() {
        return Err(error(None, "`platforms` must list at least one platform".into()));
    }
    if file.manual != file.checks.is_empty() {
        return Err(error(None, "a rule has checks, or is `manual: true` without checks".into()));
    }
    for (index, conditional) in file.checks.iter().enumerate() {
        conditional.check.validate().map_err(|m| error(None, format!("checks[{index}]: {m}")))?;
    }

    let mut overridden = BTreeMap::new();
    let frameworks: BTreeSet<&String> = variables.values().flat_map(|v| v.overrides.keys()).collect();
    for framework in frameworks {
        let values: BTreeMap<&str, &Scalar> = variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.overrides.get(framework).unwrap_or(&v.default)))
            .collect();
        let compiled: RuleFile =
            serde_saphyr::from_str(&substitute(text, &values, path)?).map_err(yaml_error)?;
        overridden.insert(framework.clone(), compiled.checks);
    }
    Ok(Rule { file, overridden, path: path.to_owned() })
}

#[derive(Deserialize, schemars::JsonSchema)]
struct VariablesOnly {
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
}

/// Replaces `"{{ name }}"` placeholders (quotes included) with YAML scalars.
fn substitute(text: &str, values: &BTreeMap<&str, &Scalar>, path: &Path) -> Result<String, LoadError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("\"{{") {
        let Some(end) = rest[start..].find("}}\"") else { break };
        let name = rest[start + 3..start + end].trim();
        let Some(value) = values.get(name) else {
            let line = text[..text.len() - rest.len() + start].lines().count() as u64;
            return Err(LoadError {
                path: path.to_owned(),
                line: Some(line.max(1)),
                message: format!("unknown variable `{name}`"),
            });
        };
        out.push_str(&rest[..start]);
        out.push_str(&value.as_yaml());
        rest = &rest[start + end + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// All rules of a corpus directory.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Rules by id.
    pub rules: BTreeMap<String, Rule>,
}

impl RuleSet {
    /// Loads every `*.yml` file under `dir` (recursively, skipping the `frameworks` and
    /// `fixtures` directories). Returns every error, not just the first.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<LoadError>> {
        let mut files = Vec::new();
        collect_rule_files(dir, &mut files)
            .map_err(|e| vec![LoadError { path: dir.to_owned(), line: None, message: e.to_string() }])?;
        Self::load_files(files)
    }

    /// Loads the rules named by `spec`: a directory (recursively), or a glob of rule
    /// files such as `rules/ssh/*.yml` (`*` and `?` match within one path component).
    pub fn load(spec: &str) -> Result<RuleSet, Vec<LoadError>> {
        if !spec.contains(['*', '?']) {
            return Self::load_dir(Path::new(spec));
        }
        let fixed =
            spec[..spec.find(['*', '?']).unwrap_or(spec.len())].rsplit_once('/').map_or(".", |(dir, _)| dir);
        let base = if fixed.is_empty() { "/" } else { fixed };
        let mut files = Vec::new();
        collect_rule_files(Path::new(base), &mut files)
            .map_err(|e| vec![LoadError { path: PathBuf::from(base), line: None, message: e.to_string() }])?;
        let prefix = if base == "." && !spec.starts_with("./") { "./" } else { "" };
        files.retain(|f| crate::facts::glob_matches(&format!("{prefix}{spec}"), &f.to_string_lossy()));
        if files.is_empty() {
            return Err(vec![LoadError {
                path: PathBuf::from(spec),
                line: None,
                message: "no rule file matches".into(),
            }]);
        }
        Self::load_files(files)
    }

    fn load_files(mut files: Vec<PathBuf>) -> Result<RuleSet, Vec<LoadError>> {
        files.sort();
        let mut rules = BTreeMap::new();
        let mut errors = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    errors.push(LoadError { path, line: None, message: e.to_string() });
                    continue;
                }
            };
            match parse_rule(&path, &text) {
                Ok(rule) => {
                    if let Some(previous) = rules.insert(rule.file.id.clone(), rule) {
                        errors.push(LoadError {
                            path: previous.path,
                            line: None,
                            message: "duplicate rule id".into(),
                        });
                    }
                }
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() { Ok(RuleSet { rules }) } else { Err(errors) }
    }

    /// Rules applying to `platform`, optionally restricted to one framework.
    pub fn select<'a>(
        &'a self,
        platform: &'a Platform,
        framework: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.values().filter(move |rule| {
            rule.applies_to(platform) && framework.is_none_or(|f| rule.file.references.contains_key(f))
        })
    }
}

fn collect_rule_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "frameworks" && name != "fixtures" {
                collect_rule_files(&path, files)?;
            }
        } else if name.ends_with(".yml") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
