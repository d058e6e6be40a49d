//! File checks: existence, permissions and ownership, content patterns.

use regex::RegexBuilder;
use serde::{Deserialize, Serialize};

use super::{Outcome, evidence};
use crate::facts::script::is_safe_path;
use crate::facts::{Facts, FileFact, StatFact};

/// Rejects paths the collection script would refuse.
pub fn validate_path(path: &str) -> Result<(), String> {
    if is_safe_path(path) {
        Ok(())
    } else {
        Err(format!("path `{path}` must be absolute and use only letters, digits and / . _ - + @ : * ?"))
    }
}

fn stats_matching<'a>(facts: &'a Facts, pattern: &'a str) -> Vec<(&'a String, &'a StatFact)> {
    facts.stats_matching(pattern).collect()
}

/// A path exists, or (with `present: false`) does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileExists {
    /// Path or glob.
    pub path: String,
    /// Whether it must exist (default) or must not.
    #[serde(default = "present_default")]
    pub present: bool,
}

fn present_default() -> bool {
    true
}

impl FileExists {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let found = stats_matching(facts, &self.path);
        let listing: Vec<String> = found.iter().map(|(p, s)| format!("{p} ({})", s.file_type)).collect();
        let exists = !found.is_empty();
        Outcome::decided(
            exists == self.present,
            evidence(
                format!("stat {}", self.path),
                &listing.join("\n"),
                Some(if self.present { "exists" } else { "absent" }.into()),
                Some(if exists { "exists" } else { "absent" }.into()),
            ),
        )
    }
}

/// Mode (at most: a stricter mode passes), owner and group of every path matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePermissions {
    /// Path or glob.
    pub path: String,
    /// Most permissive allowed mode, octal (e.g. `"0640"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mode: Option<String>,
    /// Allowed owners (names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Vec<String>>,
    /// Allowed groups (names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<String>>,
    /// A missing path passes (nothing to protect) instead of being `not_applicable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_passes: bool,
}

impl FilePermissions {
    pub(crate) fn validate(&self) -> Result<(), String> {
        validate_path(&self.path)?;
        if self.max_mode.is_none() && self.owner.is_none() && self.group.is_none() {
            return Err("set at least one of `max_mode`, `owner`, `group`".into());
        }
        if let Some(mode) = &self.max_mode {
            parse_mode(mode)?;
        }
        Ok(())
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = format!("stat {}", self.path);
        let max_mode = match self.max_mode.as_deref().map(parse_mode).transpose() {
            Ok(mode) => mode,
            Err(reason) => return Outcome::error(reason, source),
        };
        let mut expected = Vec::new();
        if let Some(mode) = max_mode {
            expected.push(format!("mode {mode:04o} or stricter"));
        }
        if let Some(owners) = &self.owner {
            expected.push(format!("owner {}", owners.join("|")));
        }
        if let Some(groups) = &self.group {
            expected.push(format!("group {}", groups.join("|")));
        }
        let expected = Some(expected.join(", "));
        let found = stats_matching(facts, &self.path);
        if found.is_empty() {
            let ev = evidence(source, "", expected, Some("absent".into()));
            return if self.missing_passes {
                Outcome::decided(true, ev)
            } else {
                Outcome::not_applicable("path does not exist", ev)
            };
        }
        let mut ok = true;
        let mut lines = Vec::new();
        let mut violations = Vec::new();
        for (path, stat) in &found {
            lines.push(format!("{:04o} {}:{} {path}", stat.mode, stat.owner, stat.group));
            if max_mode.is_some_and(|max| more_permissive(stat.mode, max)) {
                violations.push(format!("{path} mode {:04o}", stat.mode));
            }
            if self.owner.as_ref().is_some_and(|o| !o.contains(&stat.owner)) {
                violations.push(format!("{path} owner {}", stat.owner));
            }
            if self.group.as_ref().is_some_and(|g| !g.contains(&stat.group)) {
                violations.push(format!("{path} group {}", stat.group));
            }
            ok &= violations.is_empty();
        }
        let actual = if violations.is_empty() { "compliant".to_owned() } else { violations.join("; ") };
        Outcome::decided(ok, evidence(source, &lines.join("\n"), expected, Some(actual)))
    }
}

/// Whether `mode` grants a permission bit (or a special bit) `max` does not: a stricter
/// mode is never "more permissive".
pub(crate) fn more_permissive(mode: u32, max: u32) -> bool {
    mode & !max & 0o7777 != 0
}

pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("`{text}` is not an octal file mode"))
}

/// A regular expression must match (or, with `present: false`, must not match) a line
/// of the files matching `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileContent {
    /// Path or glob.
    pub path: String,
    /// Regular expression, applied per line (`^`/`$` anchor lines).
    pub pattern: String,
    /// Whether a match is required (default) or forbidden.
    #[serde(default = "present_default")]
    pub present: bool,
    /// Ignore case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
    /// Skip lines starting with `#`.
    #[serde(default = "present_default")]
    pub skip_comments: bool,
    /// When no file matches `path`: `not_applicable` (instead of treating the content as
    /// empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_is_not_applicable: bool,
}

impl FileContent {
    pub(crate) fn validate(&self) -> Result<(), String> {
        validate_path(&self.path)?;
        RegexBuilder::new(&self.pattern)
            .multi_line(true)
            .build()
            .map(|_| ())
            .map_err(|e| format!("invalid `pattern`: {e}"))
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = self.path.clone();
        let regex = match super::cached_regex(&self.pattern, self.ignore_case) {
            Ok(regex) => regex,
            Err(e) => return Outcome::error(format!("invalid pattern: {e}"), source),
        };
        let expected = Some(format!(
            "{} /{}/",
            if self.present { "a line matching" } else { "no line matching" },
            self.pattern
        ));
        let mut matches = Vec::new();
        let mut any_file = false;
        for (path, fact) in facts.files_matching(&self.path) {
            match fact {
                FileFact::Content { text, truncated } => {
                    any_file = true;
                    if *truncated && !self.present {
                        return Outcome::error(
                            format!("{path} exceeds the read limit; cannot prove absence"),
                            source,
                        );
                    }
                    for line in text.lines() {
                        if self.skip_comments && line.trim_start().starts_with('#') {
                            continue;
                        }
                        if regex.is_match(line) {
                            matches.push(format!("{path}: {line}"));
                        }
                    }
                }
                FileFact::Unreadable => {
                    return Outcome::unreadable(facts, path, source);
                }
                FileFact::Missing | FileFact::NotAFile => {}
            }
        }
        if !any_file && self.missing_is_not_applicable {
            return Outcome::not_applicable(
                "no such file",
                evidence(source, "", expected, Some("(no file)".into())),
            );
        }
        let found = !matches.is_empty();
        let actual = match (found, any_file) {
            (true, _) => format!("{} matching line(s)", matches.len()),
            (false, true) => "no matching line".to_owned(),
            (false, false) => "no such file".to_owned(),
        };
        Outcome::decided(found == self.present, evidence(source, &matches.join("\n"), expected, Some(actual)))
    }
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;

    fn stat(mode: u32, owner: &str, group: &str) -> StatFact {
        StatFact {
            mode,
            uid: 0,
            gid: 0,
            owner: owner.into(),
            group: group.into(),
            file_type: "regular file".into(),
        }
    }

    fn with_stats(stats: &[(&str, StatFact)]) -> Facts {
        Facts {
            uid: Some(0),
            stats: stats.iter().map(|(p, s)| (p.to_string(), s.clone())).collect(),
            ..Facts::default()
        }
    }

    #[test]
    fn stricter_modes_pass_and_wider_ones_fail() {
        let check = FilePermissions {
            path: "/etc/shadow".into(),
            max_mode: Some("0640".into()),
            owner: Some(vec!["root".into()]),
            group: Some(vec!["root".into(), "shadow".into()]),
            missing_passes: false,
        };
        assert_eq!(
            check.evaluate(&with_stats(&[("/etc/shadow", stat(0o600, "root", "shadow"))])).status,
            FindingStatus::Pass
        );
        assert_eq!(
            check.evaluate(&with_stats(&[("/etc/shadow", stat(0o644, "root", "shadow"))])).status,
            FindingStatus::Fail
        );
        assert_eq!(
            check.evaluate(&with_stats(&[("/etc/shadow", stat(0o600, "bin", "shadow"))])).status,
            FindingStatus::Fail
        );
        assert_eq!(check.evaluate(&with_stats(&[])).status, FindingStatus::NotApplicable);
        assert!(FilePermissions { max_mode: Some("0999".into()), ..check.clone() }.validate().is_err());
    }

    #[test]
    fn globs_check_every_match() {
        let check = FilePermissions {
            path: "/etc/ssh/ssh_host_*_key".into(),
            max_mode: Some("0600".into()),
            owner: None,
            group: None,
            missing_passes: false,
        };
        let facts = with_stats(&[
            ("/etc/ssh/ssh_host_ed25519_key", stat(0o600, "root", "root")),
            ("/etc/ssh/ssh_host_rsa_key", stat(0o640, "root", "ssh_keys")),
        ]);
        let outcome = check.evaluate(&facts);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert!(outcome.evidence.actual.unwrap().contains("ssh_host_rsa_key mode 0640"));
    }

    #[test]
    fn content_patterns_skip_comments_and_respect_absence() {
        let facts = Facts {
            uid: Some(1000),
            files: [
                (
                    "/etc/motd".to_string(),
                    FileFact::Content {
                        text: "# Ubuntu 22.04\nAuthorized use only\n".into(),
                        truncated: false,
                    },
                ),
                ("/etc/shadow".to_string(), FileFact::Unreadable),
            ]
            .into(),
            ..Facts::default()
        };
        let banner = |pattern: &str, present| FileContent {
            path: "/etc/motd".into(),
            pattern: pattern.into(),
            present,
            ignore_case: false,
            skip_comments: true,
            missing_is_not_applicable: false,
        };
        assert_eq!(banner("Authorized", true).evaluate(&facts).status, FindingStatus::Pass);
        assert_eq!(
            banner("Ubuntu", false).evaluate(&facts).status,
            FindingStatus::Pass,
            "comment lines are skipped"
        );
        let shadow = FileContent { path: "/etc/shadow".into(), ..banner("x", false) };
        assert_eq!(shadow.evaluate(&facts).reason.as_deref(), Some("requires privilege: /etc/shadow"));
    }

    #[test]
    fn existence_checks() {
        let facts = with_stats(&[("/etc/cron.allow", stat(0o600, "root", "root"))]);
        assert_eq!(
            FileExists { path: "/etc/cron.allow".into(), present: true }.evaluate(&facts).status,
            FindingStatus::Pass
        );
        assert_eq!(
            FileExists { path: "/etc/cron.deny".into(), present: false }.evaluate(&facts).status,
            FindingStatus::Pass
        );
        assert_eq!(
            FileExists { path: "/etc/at.allow".into(), present: true }.evaluate(&facts).status,
            FindingStatus::Fail
        );
    }
}
