//! Interactive users' home directories and the dot files in them.
//!
//! The paths are not known in advance (they come from `/etc/passwd`), so one probe
//! ([`Probe::HomeDirectories`], [`HOMES_COMMAND`]) lists every account whose shell is a
//! login shell (listed in `/etc/shells`, not `nologin`/`false`) and `stat`s its home
//! directory and the dot files directly in it. Every home rule reads that one section.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::files::{more_permissive, parse_mode};
use super::{Outcome, evidence, usable_section};
use crate::facts::{Facts, Probe, glob_matches};

/// Section name of the home directory probe.
pub const HOMES_SECTION: &str = "homes";

/// Lists interactive accounts and stats their homes and dot files:
///
/// * `U <name>|<uid>|<gid>|<home>` — an account whose shell is a login shell;
/// * `S <mode>|<uid>|<gid>|<type>|<path>` — the home (`stat -L`), then each dot file
///   (`stat`, so a symbolic link is reported as one);
/// * `R <home>` — the home exists but cannot be listed.
///
/// Exits 3 with `ERR <reason>` when `/etc/passwd` or `/etc/shells` cannot be read.
pub const HOMES_COMMAND: &str = r#"[ -r /etc/passwd ] && [ -r /etc/shells ] || { echo 'ERR /etc/passwd or /etc/shells cannot be read'; exit 3; }
awk -F: 'NR == FNR { sub(/[ \t]+$/, ""); if ($0 ~ /^\//) s[$0] = 1; next } ($7 in s) && $7 !~ /\/(nologin|false)$/ { print $1 "|" $3 "|" $4 "|" $6 }' /etc/shells /etc/passwd | while IFS='|' read -r u uid gid h; do
printf 'U %s|%s|%s|%s\n' "$u" "$uid" "$gid" "$h"
case "$h" in /*) ;; *) continue;; esac
[ -e "$h" ] || continue
stat -L -c 'S %a|%u|%g|%F|%n' -- "$h" 2>/dev/null || :
[ -d "$h" ] || continue
[ -r "$h" ] && [ -x "$h" ] || { echo "R $h"; continue; }
set -- "$h"/.[!.]* "$h"/..?*
for f do shift; { [ -e "$f" ] || [ -L "$f" ]; } && set -- "$@" "$f"; done
[ $# -eq 0 ] || stat -c 'S %a|%u|%g|%F|%n' -- "$@" 2>/dev/null || :
done"#;

/// What a home rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HomeTarget {
    /// The home directory itself (a missing home is a violation).
    Home,
    /// The dot files directly in the home directory.
    DotFiles,
}

/// Properties of interactive users' home directories or dot files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeFiles {
    /// The home directory, or the dot files in it.
    pub target: HomeTarget,
    /// Dot files only: the names (or globs) this check covers; empty means every dot file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Dot files only: names (or globs) left to other checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Dot files only: the covered files must not exist at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// Most permissive allowed mode, octal (symbolic links are not judged by mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mode: Option<String>,
    /// The account owns the path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owner_is_user: bool,
    /// The path's group is the account's primary group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_is_primary: bool,
}

/// One stat line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: String,
    gid: String,
    file_type: String,
    path: String,
}

/// One interactive account and what the probe saw of its home.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Account {
    name: String,
    uid: String,
    gid: String,
    home: String,
    entries: Vec<Entry>,
    unreadable: bool,
}

fn parse_homes(output: &str) -> Vec<Account> {
    let mut accounts: Vec<Account> = Vec::new();
    for line in output.lines() {
        let Some((tag, rest)) = line.split_once(' ') else { continue };
        match tag {
            "U" => {
                let mut parts = rest.splitn(4, '|');
                let mut next = || parts.next().unwrap_or_default().to_owned();
                let (name, uid, gid, home) = (next(), next(), next(), next());
                accounts.push(Account { name, uid, gid, home, ..Account::default() });
            }
            "S" => {
                let parts: Vec<&str> = rest.splitn(5, '|').collect();
                let (Some(account), [mode, uid, gid, file_type, path]) =
                    (accounts.last_mut(), parts.as_slice())
                else {
                    continue;
                };
                let Ok(mode) = u32::from_str_radix(mode, 8) else { continue };
                account.entries.push(Entry {
                    mode,
                    uid: (*uid).to_owned(),
                    gid: (*gid).to_owned(),
                    file_type: (*file_type).to_owned(),
                    path: (*path).to_owned(),
                });
            }
            "R" => {
                if let Some(account) = accounts.last_mut() {
                    account.unreadable = true;
                }
            }
            _ => {}
        }
    }
    accounts
}

impl HomeFiles {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        probes.insert(Probe::HomeDirectories);
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.target == HomeTarget::Home
            && (self.absent || !self.names.is_empty() || !self.exclude.is_empty())
        {
            return Err("`absent`, `names` and `exclude` apply to `target: dot_files` only".into());
        }
        if self.target == HomeTarget::DotFiles
            && !self.absent
            && self.max_mode.is_none()
            && !self.owner_is_user
            && !self.group_is_primary
        {
            return Err("set `absent`, `max_mode`, `owner_is_user` or `group_is_primary`".into());
        }
        if self.absent && (self.max_mode.is_some() || self.owner_is_user || self.group_is_primary) {
            return Err("`absent` files have no mode or owner to check".into());
        }
        if let Some(bad) =
            self.names.iter().chain(&self.exclude).find(|n| !n.starts_with('.') || n.contains('/'))
        {
            return Err(format!("`{bad}` is not a dot file name"));
        }
        self.max_mode.as_deref().map(parse_mode).transpose().map(|_| ())
    }

    fn covers(&self, name: &str) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| glob_matches(n, name)))
            && !self.exclude.iter().any(|n| glob_matches(n, name))
    }

    fn expected(&self, max_mode: Option<u32>) -> String {
        let what = match self.target {
            HomeTarget::Home if max_mode.is_none() && !self.owner_is_user && !self.group_is_primary => {
                "every interactive user's home directory exists".to_owned()
            }
            HomeTarget::Home => "interactive users' existing home directories".to_owned(),
            HomeTarget::DotFiles if self.names.is_empty() => {
                "every dot file in interactive users' homes".to_owned()
            }
            HomeTarget::DotFiles => format!("{} in interactive users' homes", self.names.join(", ")),
        };
        let mut parts = vec![what];
        if self.absent {
            parts.push("absent".into());
        }
        if !self.exclude.is_empty() {
            parts.push(format!("except {}", self.exclude.join(", ")));
        }
        if let Some(mode) = max_mode {
            parts.push(format!("mode {mode:04o} or stricter"));
        }
        if self.owner_is_user {
            parts.push("owned by the user".into());
        }
        if self.group_is_primary {
            parts.push("group is the user's primary group".into());
        }
        parts.join(", ")
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "/etc/passwd, /etc/shells; stat of interactive users' homes and dot files";
        let section = match usable_section(facts, &Probe::HomeDirectories, HOMES_SECTION, source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let max_mode = match self.max_mode.as_deref().map(parse_mode).transpose() {
            Ok(mode) => mode,
            Err(reason) => return Outcome::error(reason, source),
        };
        let expected = Some(self.expected(max_mode));
        let accounts = parse_homes(&section.output);
        let mut lines = Vec::new();
        let mut violations = Vec::new();
        for account in &accounts {
            let home = account.entries.iter().find(|e| e.path == account.home);
            if self.target == HomeTarget::Home {
                // Without properties the check is "every home exists"; with them, a
                // missing or odd home is left to that check instead of being reported twice.
                let existence_only = max_mode.is_none() && !self.owner_is_user && !self.group_is_primary;
                match home {
                    None if existence_only => {
                        violations.push(format!("{}: home {} does not exist", account.name, account.home));
                    }
                    Some(entry) if existence_only => {
                        lines.push(format!("{} {}", entry.file_type, entry.path));
                        if entry.file_type != "directory" {
                            violations.push(format!(
                                "{}: home {} is a {}, not a directory",
                                account.name, account.home, entry.file_type
                            ));
                        }
                    }
                    None => {}
                    Some(entry) => self.judge(account, entry, max_mode, &mut lines, &mut violations),
                }
                continue;
            }
            if home.is_some_and(|h| h.file_type == "directory") && account.unreadable {
                let reason =
                    if facts.privileged() { "cannot list" } else { "requires privilege: cannot list" };
                return Outcome::error(format!("{reason} {}", account.home), source);
            }
            let dot_files = account.entries.iter().filter(|e| e.path != account.home);
            for entry in dot_files {
                let name = entry.path.rsplit('/').next().unwrap_or_default();
                // Dot directories (`.cache`, `.ssh`, …) are not dot files; absence checks
                // still see them (a `.forward` directory is still a `.forward`).
                if !self.covers(name) || (!self.absent && entry.file_type == "directory") {
                    continue;
                }
                if self.absent {
                    lines.push(format!("{} {}", entry.file_type, entry.path));
                    violations.push(format!("{}: {} exists", account.name, entry.path));
                } else {
                    self.judge(account, entry, max_mode, &mut lines, &mut violations);
                }
            }
        }
        let actual = if violations.is_empty() {
            format!("compliant ({} interactive accounts)", accounts.len())
        } else {
            violations.join("; ")
        };
        Outcome::decided(violations.is_empty(), evidence(source, &lines.join("\n"), expected, Some(actual)))
    }

    fn judge(
        &self,
        account: &Account,
        entry: &Entry,
        max_mode: Option<u32>,
        lines: &mut Vec<String>,
        violations: &mut Vec<String>,
    ) {
        lines.push(format!(
            "{:04o} {}:{} {} {}",
            entry.mode, entry.uid, entry.gid, entry.file_type, entry.path
        ));
        let symlink = entry.file_type == "symbolic link";
        if !symlink && max_mode.is_some_and(|max| more_permissive(entry.mode, max)) {
            violations.push(format!("{} mode {:04o}", entry.path, entry.mode));
        }
        if self.owner_is_user && entry.uid != account.uid {
            violations.push(format!(
                "{} owned by uid {}, not {} ({})",
                entry.path, entry.uid, account.name, account.uid
            ));
        }
        if self.group_is_primary && entry.gid != account.gid {
            violations.push(format!(
                "{} group gid {}, not {}'s primary group {}",
                entry.path, entry.gid, account.name, account.gid
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Section;
    use openwatch_common::domain::FindingStatus;

    const HOMES: &str = "U root|0|0|/root\nS 700|0|0|directory|/root\nS 600|0|0|regular file|/root/.bash_history\n\
                         U alice|1000|1000|/home/alice\nS 750|1000|1000|directory|/home/alice\n\
                         S 644|1000|1000|regular file|/home/alice/.bashrc\nS 664|1000|1000|regular file|/home/alice/.profile\n\
                         S 777|1000|1000|symbolic link|/home/alice/.vimrc\nS 600|1000|1000|regular file|/home/alice/.netrc\n\
                         S 755|1000|1000|directory|/home/alice/.cache\nU bob|1001|1001|/home/bob\nU carol|1002|1002|/home/carol\nS 755|0|0|directory|/home/carol\n";

    fn facts(output: &str, uid: u32) -> Facts {
        Facts {
            uid: Some(uid),
            sections: [(HOMES_SECTION.to_owned(), Section { output: output.into(), exit_code: Some(0) })]
                .into(),
            ..Facts::default()
        }
    }

    fn check(target: HomeTarget) -> HomeFiles {
        HomeFiles {
            target,
            names: Vec::new(),
            exclude: Vec::new(),
            absent: false,
            max_mode: None,
            owner_is_user: false,
            group_is_primary: false,
        }
    }

    #[test]
    fn home_directories_exist_are_owned_and_closed() {
        let f = facts(HOMES, 0);
        let homes =
            HomeFiles { max_mode: Some("750".into()), owner_is_user: true, ..check(HomeTarget::Home) };
        assert!(homes.validate().is_ok());
        let outcome = homes.evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert_eq!(
            outcome.evidence.actual.as_deref(),
            Some("/home/carol mode 0755; /home/carol owned by uid 0, not carol (1002)")
        );
        let fine = facts("U alice|1000|1000|/home/alice\nS 700|1000|1000|directory|/home/alice\n", 0);
        assert_eq!(homes.evaluate(&fine).status, FindingStatus::Pass);
        // Existence alone: bob's missing home is the one violation; with properties it is not repeated.
        let exists = check(HomeTarget::Home);
        assert!(exists.validate().is_ok());
        assert_eq!(
            exists.evaluate(&f).evidence.actual.as_deref(),
            Some("bob: home /home/bob does not exist")
        );
    }

    #[test]
    fn dot_files_by_name_mode_and_absence() {
        let f = facts(HOMES, 0);
        let writable = HomeFiles {
            max_mode: Some("644".into()),
            exclude: vec![".netrc".into(), ".bash_history".into()],
            ..check(HomeTarget::DotFiles)
        };
        // .profile is group-writable; the symbolic link is not judged by its mode.
        assert_eq!(writable.evaluate(&f).evidence.actual.as_deref(), Some("/home/alice/.profile mode 0664"));
        let netrc_absent =
            HomeFiles { names: vec![".netrc".into()], absent: true, ..check(HomeTarget::DotFiles) };
        assert_eq!(netrc_absent.evaluate(&f).status, FindingStatus::Fail);
        let rhosts_absent = HomeFiles {
            names: vec![".rhosts".into(), ".forward".into()],
            absent: true,
            ..check(HomeTarget::DotFiles)
        };
        assert_eq!(rhosts_absent.evaluate(&f).status, FindingStatus::Pass);
        let history = HomeFiles {
            names: vec![".bash_history".into()],
            max_mode: Some("600".into()),
            ..check(HomeTarget::DotFiles)
        };
        assert_eq!(history.evaluate(&f).status, FindingStatus::Pass);
    }

    #[test]
    fn unlistable_homes_and_invalid_checks_are_errors() {
        let hidden = facts(
            "U alice|1000|1000|/home/alice\nS 700|1000|1000|directory|/home/alice\nR /home/alice\n",
            1000,
        );
        let dot = HomeFiles { max_mode: Some("644".into()), ..check(HomeTarget::DotFiles) };
        let outcome = dot.evaluate(&hidden);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert!(outcome.reason.unwrap().starts_with("requires privilege"));
        let not_collected = Facts { uid: Some(0), ..Facts::default() };
        assert_eq!(dot.evaluate(&not_collected).status, FindingStatus::Error);
        assert!(check(HomeTarget::DotFiles).validate().is_err(), "nothing to check");
        assert!(HomeFiles { absent: true, ..check(HomeTarget::Home) }.validate().is_err());
        assert!(
            HomeFiles { names: vec!["netrc".into()], absent: true, ..check(HomeTarget::DotFiles) }
                .validate()
                .is_err()
        );
        assert!(HomeFiles { max_mode: Some("9".into()), ..check(HomeTarget::Home) }.validate().is_err());
    }
}
