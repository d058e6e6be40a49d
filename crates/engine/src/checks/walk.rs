//! Filesystem walk checks: world-writable files and directories, unowned and ungrouped
//! files, SUID/SGID files.
//!
//! Every walk rule reads the one shared walk section ([`Probe::FilesystemWalk`], built by
//! [`crate::facts::script::WALK_COMMAND`]): one GNU `find` pass per local filesystem
//! (ext2/3/4, xfs, btrfs), never crossing mounts. A walk result decides only when the walk
//! is complete: when it was cut by its time budget, could not read part of the tree
//! (`Permission denied` — normally a scan without root), or could not run (no GNU find,
//! `findmnt` or `timeout`), the result is `error` with the reason and whatever findings
//! were seen so far in the evidence. Errors about paths that vanished during the walk
//! (`No such file or directory`) are ignored. With the walk switched off
//! ([`crate::scan::ScanOptions::walk`], `openwatch scan --no-walk`) walk rules are
//! `not_applicable`.
//!
//! Paths containing a newline are reported up to the newline (the section is
//! line-oriented); mount points with blanks are skipped and named in the evidence.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Outcome, evidence};
use crate::facts::script::WALK_SECTION;
use crate::facts::{Facts, Probe, glob_matches};

/// What a walk rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalkFinding {
    /// Regular files writable by everyone (`-type f -perm -0002`).
    WorldWritableFiles,
    /// Directories writable by everyone without the sticky bit.
    WorldWritableDirsWithoutSticky,
    /// Files and directories whose owner uid matches no account (`getent passwd`, or
    /// `/etc/passwd`; compared numerically, which is ~5x faster than `find -nouser`).
    Unowned,
    /// Files and directories whose group gid matches no group (`getent group`, or
    /// `/etc/group`).
    Ungrouped,
    /// Regular files with the SUID or SGID bit.
    SuidSgid,
}

impl WalkFinding {
    /// The tag of this finding's lines in the walk section.
    fn tag(self) -> &'static str {
        match self {
            WalkFinding::WorldWritableFiles => "WW",
            WalkFinding::WorldWritableDirsWithoutSticky => "WD",
            WalkFinding::Unowned => "NU",
            WalkFinding::Ungrouped => "NG",
            WalkFinding::SuidSgid => "SS",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            WalkFinding::WorldWritableFiles => "world-writable files",
            WalkFinding::WorldWritableDirsWithoutSticky => {
                "world-writable directories without the sticky bit"
            }
            WalkFinding::Unowned => "files without a known owner",
            WalkFinding::Ungrouped => "files without a known group",
            WalkFinding::SuidSgid => "SUID/SGID files",
        }
    }
}

/// No path of the `finding` kind exists on local filesystems outside `allow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemWalk {
    /// The kind of finding.
    pub finding: WalkFinding,
    /// Allowed paths: exact paths, shell globs (`*`/`?` within one component), or a
    /// subtree written `/dir/**`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// The walk section, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WalkReport {
    /// Findings by tag (`WW`, `WD`, `NU`, `NG`, `SS`) and path.
    pub findings: BTreeSet<(String, String)>,
    /// Mount points walked to the end.
    pub completed: Vec<String>,
    /// Mount points started but not finished (the walk was cut).
    pub unfinished: Vec<String>,
    /// Mount points not walked (escaped blanks in the name).
    pub skipped: Vec<String>,
    /// `find` errors that make the walk incomplete (vanished paths excluded).
    pub errors: Vec<String>,
    /// Why the walk could not run at all.
    pub fatal: Option<String>,
}

/// Parses the walk section's output (see [`crate::facts::script::WALK_COMMAND`]).
pub fn parse_walk(output: &str) -> WalkReport {
    let mut report = WalkReport::default();
    let mut open: Option<String> = None;
    for line in output.lines() {
        let Some((tag, rest)) = line.split_once(' ') else { continue };
        match tag {
            "WW" | "WD" | "NU" | "NG" | "SS" => {
                report.findings.insert((tag.to_owned(), rest.to_owned()));
            }
            "MOUNT" => {
                if let Some(previous) = open.replace(rest.to_owned()) {
                    report.unfinished.push(previous);
                }
            }
            "DONE" => {
                let mount = rest.rsplit_once(' ').map_or(rest, |(m, _)| m);
                open = None;
                report.completed.push(mount.to_owned());
            }
            "SKIP" => report.skipped.push(rest.to_owned()),
            "E" if !rest.ends_with("No such file or directory") => report.errors.push(rest.to_owned()),
            "ERR" => report.fatal = Some(rest.to_owned()),
            _ => {}
        }
    }
    report.unfinished.extend(open);
    report
}

/// Whether `path` is covered by one of the `allow` patterns.
fn allowed(allow: &[String], path: &str) -> bool {
    allow.iter().any(|pattern| match pattern.strip_suffix("/**") {
        Some(dir) => path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')) || path == dir,
        None => glob_matches(pattern, path),
    })
}

impl FilesystemWalk {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        probes.insert(Probe::FilesystemWalk);
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.allow.iter().find(|p| !p.starts_with('/')) {
            Some(bad) => Err(format!("`allow` entry `{bad}` must be an absolute path or glob")),
            None => Ok(()),
        }
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "filesystem walk (find -xdev over ext2/3/4, xfs and btrfs mounts)";
        let expected = if self.allow.is_empty() {
            format!("no {}", self.finding.describe())
        } else {
            format!("no {} outside [{}]", self.finding.describe(), self.allow.join(", "))
        };
        if facts.walk_disabled {
            return Outcome::not_applicable(
                "filesystem walk disabled (--no-walk)",
                evidence(source, "", Some(expected), None),
            );
        }
        let Some(section) = facts.section(WALK_SECTION) else {
            return Outcome::error("not collected", source);
        };
        let report = parse_walk(&section.output);
        let offenders: Vec<&str> = report
            .findings
            .iter()
            .filter(|(tag, path)| tag == self.finding.tag() && !allowed(&self.allow, path))
            .map(|(_, path)| path.as_str())
            .collect();
        let mut excerpt = offenders.join("\n");
        if !report.skipped.is_empty() {
            excerpt = format!("not walked (blank in mount point): {}\n{excerpt}", report.skipped.join(", "));
        }
        let incomplete = match section.exit_code {
            _ if report.fatal.is_some() => report.fatal.clone(),
            Some(124) => Some("filesystem walk exceeded its time budget".to_owned()),
            None => Some("filesystem walk output exceeded the size limit".to_owned()),
            Some(126 | 127) => Some("command not available on this host".to_owned()),
            Some(0) if !report.unfinished.is_empty() => {
                Some(format!("filesystem walk cut short in {}", report.unfinished.join(", ")))
            }
            Some(0) if !report.errors.is_empty() => Some(if facts.privileged() {
                format!("filesystem walk incomplete: {} path(s) could not be read", report.errors.len())
            } else {
                "requires privilege".to_owned()
            }),
            Some(0) if report.completed.is_empty() => {
                Some("no local filesystem (ext2/3/4, xfs, btrfs) to walk".to_owned())
            }
            Some(0) => None,
            Some(code) => Some(format!("filesystem walk failed with exit status {code}")),
        };
        if let Some(reason) = incomplete {
            let mut outcome = Outcome::error(reason, source);
            let seen = format!("{} found so far", offenders.len());
            let errors = report.errors.iter().take(20).cloned().collect::<Vec<_>>().join("\n");
            outcome.evidence = evidence(
                source,
                format!("{excerpt}\n{errors}").trim_matches('\n'),
                Some(expected),
                Some(seen),
            );
            return outcome;
        }
        let actual = if offenders.is_empty() {
            format!("none in {} walked filesystem(s)", report.completed.len())
        } else {
            format!(
                "{} found: {}",
                offenders.len(),
                offenders.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            )
        };
        Outcome::decided(offenders.is_empty(), evidence(source, &excerpt, Some(expected), Some(actual)))
    }
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;
    use crate::facts::Section;

    fn facts(output: &str, exit_code: Option<i32>, uid: u32) -> Facts {
        Facts {
            uid: Some(uid),
            sections: [(WALK_SECTION.to_string(), Section { output: output.into(), exit_code })].into(),
            ..Facts::default()
        }
    }

    fn check(finding: WalkFinding, allow: &[&str]) -> FilesystemWalk {
        FilesystemWalk { finding, allow: allow.iter().map(|s| s.to_string()).collect() }
    }

    const WALK: &str = "MOUNT /\nWW /srv/share/notes.txt\nSS /usr/bin/passwd\nSS /usr/bin/sudo\n\
                        NU /opt/app/data\nE find: '/proc/1/fd/3': No such file or directory\nDONE / 1\n\
                        MOUNT /home\nWD /home/drop\nDONE /home 0\n";

    #[test]
    fn findings_outside_the_allow_list_fail() {
        let f = facts(WALK, Some(0), 0);
        assert_eq!(check(WalkFinding::WorldWritableFiles, &[]).evaluate(&f).status, FindingStatus::Fail);
        let suid = check(WalkFinding::SuidSgid, &["/usr/bin/passwd"]).evaluate(&f);
        assert_eq!(suid.status, FindingStatus::Fail);
        assert_eq!(suid.evidence.excerpt, "/usr/bin/sudo");
        assert_eq!(
            check(WalkFinding::SuidSgid, &["/usr/bin/passwd", "/usr/bin/s*"]).evaluate(&f).status,
            FindingStatus::Pass
        );
        assert_eq!(check(WalkFinding::Unowned, &["/opt/**"]).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            check(WalkFinding::WorldWritableDirsWithoutSticky, &[]).evaluate(&f).status,
            FindingStatus::Fail
        );
    }

    #[test]
    fn a_complete_walk_without_findings_passes() {
        let outcome = check(WalkFinding::Ungrouped, &[]).evaluate(&facts(WALK, Some(0), 0));
        assert_eq!(outcome.status, FindingStatus::Pass, "{outcome:?}");
        assert_eq!(outcome.evidence.actual.as_deref(), Some("none in 2 walked filesystem(s)"));
    }

    #[test]
    fn an_unreadable_tree_without_root_is_an_error() {
        let output = "MOUNT /\nE find: '/root': Permission denied\nDONE / 1\n";
        let outcome = check(WalkFinding::Unowned, &[]).evaluate(&facts(output, Some(0), 1000));
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("requires privilege"));
    }

    #[test]
    fn a_cut_or_impossible_walk_is_an_error() {
        let cut = facts("MOUNT /\nWW /tmp/x\n", Some(124), 0);
        let outcome = check(WalkFinding::WorldWritableFiles, &[]).evaluate(&cut);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("filesystem walk exceeded its time budget"));
        assert!(outcome.evidence.excerpt.contains("/tmp/x"), "partial findings are shown");
        let busybox = facts("ERR find does not support -printf (GNU find is required)\n", Some(3), 0);
        let outcome = check(WalkFinding::SuidSgid, &[]).evaluate(&busybox);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert!(outcome.reason.unwrap().contains("GNU find"));
    }

    #[test]
    fn a_disabled_walk_is_not_applicable() {
        let f = Facts { uid: Some(0), walk_disabled: true, ..Facts::default() };
        let outcome = check(WalkFinding::Unowned, &[]).evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::NotApplicable);
        assert_eq!(outcome.reason.as_deref(), Some("filesystem walk disabled (--no-walk)"));
    }
}
