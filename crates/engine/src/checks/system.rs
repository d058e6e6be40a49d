//! System checks: packages, services, kernel modules, mounts, audit rules, and the
//! restricted `command` escape hatch.

use std::collections::BTreeSet;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Outcome, evidence, usable_section};
use crate::facts::{Facts, Probe, installed_status};

/// Whether packages must be installed or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageState {
    /// At least one of the names is installed.
    Installed,
    /// None of the names is installed.
    Absent,
}

/// Package state in the dpkg or rpm database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Package names (alternatives: `[chrony, ntp]`).
    pub names: Vec<String>,
    /// Required state.
    pub state: PackageState,
}

impl Package {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "package database (dpkg-query -W / rpm -qa)";
        let section = match usable_section(facts, &Probe::Packages, "packages", source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        // One pass: the database lines of these names (evidence) and which are installed.
        let mut installed: Vec<&str> = Vec::new();
        let mut excerpt: Vec<&str> = Vec::new();
        for line in section.output.lines() {
            let mut parts = line.split('|');
            let (Some(status), Some(name)) = (parts.next(), parts.next()) else { continue };
            if !self.names.iter().any(|n| n == name) {
                continue;
            }
            excerpt.push(line);
            if installed_status(status) {
                installed.push(name);
            }
        }
        let any = !installed.is_empty();
        let (ok, expected) = match self.state {
            PackageState::Installed => (any, format!("installed: one of {}", self.names.join(", "))),
            PackageState::Absent => (!any, format!("absent: {}", self.names.join(", "))),
        };
        let actual =
            if any { format!("installed: {}", installed.join(", ")) } else { "not installed".into() };
        Outcome::decided(ok, evidence(source, &excerpt.join("\n"), Some(expected), Some(actual)))
    }
}

/// A systemd service's enablement, activity and mask. A unit that does not exist counts
/// as disabled, inactive and not masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unit name (`.service` is added when no suffix is given).
    pub name: String,
    /// Must (or must not) be enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Must (or must not) be active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Must (or must not) be masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<bool>,
}

impl Service {
    fn unit(&self) -> String {
        if self.name.contains('.') { self.name.clone() } else { format!("{}.service", self.name) }
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let unit = self.unit();
        let source = format!("systemctl list-unit-files / list-units {unit}");
        let files = match usable_section(facts, &Probe::SystemdUnitFiles, "unit-files", &source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let units = match usable_section(facts, &Probe::SystemdUnits, "units", &source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let file_line = files.output.lines().find(|l| l.split_whitespace().next() == Some(unit.as_str()));
        let unit_line = units.output.lines().find(|l| l.split_whitespace().next() == Some(unit.as_str()));
        let state = file_line.and_then(|l| l.split_whitespace().nth(1)).unwrap_or("not-found");
        let active_state = unit_line.and_then(|l| l.split_whitespace().nth(2)).unwrap_or("inactive");
        let enabled =
            matches!(state, "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated");
        let masked = state.starts_with("masked");
        let active = matches!(active_state, "active" | "activating" | "reloading");
        let mut expected = Vec::new();
        let mut ok = true;
        for (want, have, word) in [
            (self.enabled, enabled, "enabled"),
            (self.active, active, "active"),
            (self.masked, masked, "masked"),
        ] {
            if let Some(want) = want {
                ok &= want == have;
                expected.push(if want { word.to_owned() } else { format!("not {word}") });
            }
        }
        let excerpt = [file_line, unit_line].into_iter().flatten().collect::<Vec<_>>().join("\n");
        Outcome::decided(
            ok,
            evidence(
                source,
                &excerpt,
                Some(expected.join(", ")),
                Some(format!("unit file {state}, {active_state}")),
            ),
        )
    }
}

/// A kernel module is not loaded, cannot be loaded (`install <name> /bin/false` or
/// `/bin/true`) and is deny-listed (`blacklist <name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelModuleDisabled {
    /// Module name (`-` and `_` are equivalent).
    pub name: String,
}

impl KernelModuleDisabled {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let name = self.name.replace('-', "_");
        let source = "/proc/modules; modprobe --showconfig";
        let modules = match usable_section(facts, &Probe::LoadedModules, "modules", source) {
            Ok(section) => section,
            Err(_) if facts.section("modules").is_some_and(|s| s.exit_code == Some(3)) => {
                let reason = facts.section("modules").map(|s| s.output.trim().to_owned()).unwrap_or_default();
                return Outcome::error(reason, source);
            }
            Err(outcome) => return *outcome,
        };
        let config = match usable_section(facts, &Probe::ModprobeConfig, "modprobe", source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let loaded = modules.output.lines().any(|l| l.split_whitespace().next() == Some(name.as_str()));
        let relevant: Vec<&str> = config
            .output
            .lines()
            .filter(|l| {
                l.split_whitespace().nth(1).is_some_and(|m| {
                    m.len() == name.len()
                        && m.bytes().zip(name.bytes()).all(|(a, b)| a == b || (a == b'-' && b == b'_'))
                })
            })
            .collect();
        let not_loadable = relevant.iter().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("install")
                && words.nth(1).is_some_and(|cmd| cmd.ends_with("/false") || cmd.ends_with("/true"))
        });
        let denied = relevant.iter().any(|l| l.starts_with("blacklist "));
        let actual = format!(
            "{}, {}, {}",
            if loaded { "loaded" } else { "not loaded" },
            if not_loadable { "install disabled" } else { "loadable" },
            if denied { "deny-listed" } else { "not deny-listed" }
        );
        Outcome::decided(
            !loaded && not_loadable && denied,
            evidence(
                source,
                &relevant.join("\n"),
                Some("not loaded, install disabled, deny-listed".into()),
                Some(actual),
            ),
        )
    }
}

/// A mount point: separate filesystem, and/or mount options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Mount point, e.g. `/tmp`.
    pub target: String,
    /// It must be a separate mount (fails when it is not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub separate: bool,
    /// Options that must be set (e.g. `nodev`, `nosuid`, `noexec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Mount {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "findmnt -rn -o TARGET,FSTYPE,OPTIONS";
        let section = match usable_section(facts, &Probe::Mounts, "mounts", source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        // findmnt -r escapes blanks as \x20; the last mount over a target is the one in use.
        let line = section.output.lines().rev().find(|l| {
            l.split_whitespace().next().map(|t| t.replace("\\x20", " ")).as_deref()
                == Some(self.target.as_str())
        });
        let expected = {
            let mut parts = Vec::new();
            if self.separate {
                parts.push("separate mount".to_owned());
            }
            if !self.options.is_empty() {
                parts.push(format!("options {}", self.options.join(",")));
            }
            Some(parts.join(", "))
        };
        let Some(line) = line else {
            let ev = evidence(source, "", expected, Some(format!("{} is not a separate mount", self.target)));
            return if self.separate {
                Outcome::decided(false, ev)
            } else {
                Outcome::not_applicable("not a separate mount", ev)
            };
        };
        let options: BTreeSet<&str> = line.split_whitespace().nth(2).unwrap_or("").split(',').collect();
        let missing: Vec<&str> =
            self.options.iter().map(String::as_str).filter(|o| !options.contains(o)).collect();
        let actual = if missing.is_empty() {
            "all required options set".to_owned()
        } else {
            format!("missing {}", missing.join(","))
        };
        Outcome::decided(missing.is_empty(), evidence(source, line, expected, Some(actual)))
    }
}

/// An audit rule is loaded (`auditctl -l`). Compared normalised: keys (`-k`,
/// `-F key=`) are ignored, syscall lists and permission letters are sets, and a loaded
/// rule may carry more than the required fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRule {
    /// The rule as `auditctl` syntax, e.g. `-w /etc/passwd -p wa`.
    pub rule: String,
}

/// A rule as comparable parts: syscalls, permissions and other `flag value` pairs.
#[derive(Debug, Default, PartialEq, Eq)]
struct NormalisedRule {
    syscalls: BTreeSet<String>,
    perms: BTreeSet<char>,
    fields: BTreeSet<(String, String)>,
}

/// `path` without trailing slashes (`/` stays `/`).
fn trim_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { path } else { trimmed }
}

fn normalise_audit_rule(rule: &str) -> NormalisedRule {
    let mut normalised = NormalisedRule::default();
    let tokens: Vec<&str> = rule.split_whitespace().collect();
    let mut i = 0;
    while i < tokens.len() {
        let flag = tokens[i];
        let value = tokens.get(i + 1).copied().unwrap_or("");
        i += 2;
        match flag {
            "-k" => {}
            "-S" => normalised.syscalls.extend(value.split(',').map(str::to_owned)),
            "-p" => normalised.perms.extend(value.chars()),
            "-F" if value.starts_with("key=") => {}
            "-F" if value.starts_with("perm=") => normalised.perms.extend(value["perm=".len()..].chars()),
            // A watch is an always,exit rule on a path (`-F dir=` for a directory); the
            // trailing slash of a directory watch is not kept by the kernel.
            "-w" => {
                normalised.fields.insert(("-a".to_owned(), "always,exit".to_owned()));
                normalised.fields.insert(("-F".to_owned(), format!("path={}", trim_slash(value))));
            }
            "-F" if value.starts_with("path=") || value.starts_with("dir=") => {
                let path = value.split_once('=').map_or("", |(_, p)| p);
                normalised.fields.insert(("-F".to_owned(), format!("path={}", trim_slash(path))));
            }
            "-a" | "-A" => {
                let mut parts: Vec<&str> = value.split(',').collect();
                parts.sort_unstable();
                normalised.fields.insert(("-a".to_owned(), parts.join(",")));
            }
            // auditctl -l prints `-F auid>=1000 -F auid!=-1` (unset is -1 or 4294967295).
            "-F" => {
                normalised
                    .fields
                    .insert((flag.to_owned(), value.replace("4294967295", "-1").replace("unset", "-1")));
            }
            _ => {
                normalised.fields.insert((flag.to_owned(), value.to_owned()));
            }
        }
    }
    normalised
}

impl AuditRule {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "auditctl -l";
        let section = match usable_section(facts, &Probe::AuditRules, "audit-rules", source) {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let wanted = normalise_audit_rule(&self.rule);
        let hit = section.output.lines().find(|line| {
            let loaded = normalise_audit_rule(line);
            wanted.syscalls.is_subset(&loaded.syscalls)
                && wanted.perms.is_subset(&loaded.perms)
                && wanted.fields.is_subset(&loaded.fields)
        });
        Outcome::decided(
            hit.is_some(),
            evidence(
                source,
                hit.unwrap_or(""),
                Some(self.rule.clone()),
                Some(if hit.is_some() { "loaded".into() } else { "no matching loaded rule".into() }),
            ),
        )
    }
}

/// Words that make a command line unfit for a read-only scan.
const FORBIDDEN_COMMAND_WORDS: &[&str] = &[
    "rm", "mv", "cp", "dd", "tee", "chmod", "chown", "chattr", "mkfs", "mount", "umount", "kill", "pkill",
    "reboot", "shutdown", "halt", "poweroff", "useradd", "userdel", "usermod", "passwd", "truncate",
    "install", "ln", "curl", "wget",
];

/// A fixed, read-only command: its exit status and/or output. Output redirection and
/// commands that change state are refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// The command line (run by `sh -c` under a timeout).
    pub command: String,
    /// Required exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_exit: Option<i32>,
    /// Regular expression some output line must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_output: Option<String>,
    /// Regular expression no output line may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbid_output: Option<String>,
    /// The command needs root (without it the result is an error, not a fail).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_root: bool,
}

impl CommandCheck {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.command.contains('>') || self.command.contains('`') || self.command.contains("$(") {
            return Err("`command` may not redirect output or substitute commands".into());
        }
        let words =
            self.command.split(|c: char| c.is_whitespace() || "|;&()".contains(c)).filter(|w| !w.is_empty());
        for word in words {
            let program = word.rsplit('/').next().unwrap_or(word);
            if FORBIDDEN_COMMAND_WORDS.contains(&program)
                || (program == "sed" && self.command.contains(" -i"))
            {
                return Err(format!("`command` may not run `{program}`: scans are read-only"));
            }
        }
        if self.expect_exit.is_none() && self.expect_output.is_none() && self.forbid_output.is_none() {
            return Err("set at least one of `expect_exit`, `expect_output`, `forbid_output`".into());
        }
        for pattern in [&self.expect_output, &self.forbid_output].into_iter().flatten() {
            Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn evaluate(&self, id: &str, facts: &Facts) -> Outcome {
        let Some(section) = facts.section(&format!("cmd:{id}")) else {
            return Outcome::error("not collected", self.command.clone());
        };
        let Some(code) = section.exit_code else {
            return Outcome::error("output exceeded the size limit", self.command.clone());
        };
        if section.timed_out() {
            return Outcome::error("timed out", self.command.clone());
        }
        if section.command_missing() {
            return Outcome::error("command not available on this host", self.command.clone());
        }
        if self.needs_root && !facts.privileged() {
            return Outcome::error("requires privilege", self.command.clone());
        }
        let mut ok = true;
        let mut expected = Vec::new();
        if let Some(want) = self.expect_exit {
            ok &= code == want;
            expected.push(format!("exit status {want}"));
        }
        let line_matches = |pattern: &str| {
            super::cached_regex(pattern, false).is_ok_and(|re| section.output.lines().any(|l| re.is_match(l)))
        };
        if let Some(pattern) = &self.expect_output {
            ok &= line_matches(pattern);
            expected.push(format!("output matching /{pattern}/"));
        }
        if let Some(pattern) = &self.forbid_output {
            ok &= !line_matches(pattern);
            expected.push(format!("no output matching /{pattern}/"));
        }
        Outcome::decided(
            ok,
            evidence(
                self.command.clone(),
                &section.output,
                Some(expected.join(", ")),
                Some(format!("exit status {code}")),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;
    use crate::facts::Section;

    fn facts(sections: &[(&str, &str)]) -> Facts {
        Facts::for_test(0, sections, &[])
    }

    #[test]
    fn packages_installed_or_absent_with_removed_but_configured_ignored() {
        let f = facts(&[(
            "packages",
            "format=dpkg\nii |openssh-server|1:9.2p1\nrc |telnetd|0.17\nii |chrony|4.3\n",
        )]);
        let installed =
            |names: &[&str], state| Package { names: names.iter().map(|s| s.to_string()).collect(), state };
        assert_eq!(
            installed(&["chrony", "ntp"], PackageState::Installed).evaluate(&f).status,
            FindingStatus::Pass
        );
        assert_eq!(installed(&["telnetd"], PackageState::Absent).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            installed(&["openssh-server"], PackageState::Absent).evaluate(&f).status,
            FindingStatus::Fail
        );
    }

    #[test]
    fn services_enabled_active_masked() {
        let f = facts(&[
            ("unit-files", "ssh.service enabled enabled\nrsync.service masked enabled\n"),
            ("units", "ssh.service loaded active running OpenBSD Secure Shell server\n"),
        ]);
        let svc =
            |name: &str, enabled, active, masked| Service { name: name.into(), enabled, active, masked };
        assert_eq!(svc("ssh", Some(true), Some(true), None).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(svc("rsync", Some(false), Some(false), None).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            svc("avahi-daemon", Some(false), Some(false), None).evaluate(&f).status,
            FindingStatus::Pass,
            "absent units are off"
        );
        assert_eq!(svc("ssh", Some(false), None, None).evaluate(&f).status, FindingStatus::Fail);
    }

    #[test]
    fn kernel_modules_need_all_three_conditions() {
        let check = KernelModuleDisabled { name: "cramfs".into() };
        let good = facts(&[
            ("modules", "ext4 1 0 - Live\n"),
            ("modprobe", "install cramfs /bin/false\nblacklist cramfs\n"),
        ]);
        assert_eq!(check.evaluate(&good).status, FindingStatus::Pass);
        let loaded = facts(&[
            ("modules", "cramfs 1 0 - Live\n"),
            ("modprobe", "install cramfs /bin/false\nblacklist cramfs\n"),
        ]);
        assert_eq!(check.evaluate(&loaded).status, FindingStatus::Fail);
        let loadable = facts(&[("modules", ""), ("modprobe", "blacklist cramfs\n")]);
        assert_eq!(check.evaluate(&loadable).status, FindingStatus::Fail);
    }

    #[test]
    fn mounts_separate_and_options() {
        let f = facts(&[(
            "mounts",
            "/ ext4 rw,relatime\n/tmp tmpfs rw,nosuid,nodev\n/dev/shm tmpfs rw,nosuid,nodev,noexec\n",
        )]);
        let mount = |target: &str, separate, options: &[&str]| Mount {
            target: target.into(),
            separate,
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(mount("/tmp", true, &[]).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(mount("/tmp", false, &["noexec"]).evaluate(&f).status, FindingStatus::Fail);
        assert_eq!(
            mount("/dev/shm", false, &["nodev", "nosuid", "noexec"]).evaluate(&f).status,
            FindingStatus::Pass
        );
        assert_eq!(mount("/var/tmp", false, &["nodev"]).evaluate(&f).status, FindingStatus::NotApplicable);
        assert_eq!(mount("/var/log", true, &[]).evaluate(&f).status, FindingStatus::Fail);
    }

    #[test]
    fn audit_rules_compare_normalised() {
        let f = facts(&[(
            "audit-rules",
            "-w /etc/passwd -p wa -k identity\n-a always,exit -F arch=b64 -S settimeofday,adjtimex -F key=time-change\n",
        )]);
        let rule = |r: &str| AuditRule { rule: r.into() };
        assert_eq!(rule("-w /etc/passwd -p aw -k anything").evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            rule("-a always,exit -F arch=b64 -S adjtimex,settimeofday").evaluate(&f).status,
            FindingStatus::Pass
        );
        assert_eq!(rule("-w /etc/group -p wa").evaluate(&f).status, FindingStatus::Fail);
        // Watches: trailing slashes, the always,exit spelling and `-A` (prepend) compare equal.
        let watches = facts(&[(
            "audit-rules",
            "-w /etc/sudoers.d -p wa -k scope\n-a always,exit -F dir=/var/log/sudo-io/ -F perm=wa -F key=x\n\
             -A exit,always -F arch=b64 -S sethostname -F key=net\n",
        )]);
        assert_eq!(rule("-w /etc/sudoers.d/ -p wa -k scope").evaluate(&watches).status, FindingStatus::Pass);
        assert_eq!(
            rule("-a always,exit -F path=/etc/sudoers.d -F perm=w").evaluate(&watches).status,
            FindingStatus::Pass
        );
        assert_eq!(rule("-w /var/log/sudo-io -p wa").evaluate(&watches).status, FindingStatus::Pass);
        assert_eq!(
            rule("-a always,exit -F arch=b64 -S sethostname").evaluate(&watches).status,
            FindingStatus::Pass
        );
        assert_eq!(rule("-w /etc/sudoers -p wa").evaluate(&watches).status, FindingStatus::Fail);
        assert_eq!(rule("-w /etc/sudoers.d -p rwa").evaluate(&watches).status, FindingStatus::Fail);
        assert_eq!(rule("-w /etc/passwd -p rwa").evaluate(&f).status, FindingStatus::Fail);
    }

    #[test]
    fn a_kernel_without_proc_modules_says_so() {
        let mut f = facts(&[("modprobe", "blacklist cramfs\n")]);
        f.sections.insert(
            "modules".into(),
            Section {
                output:
                    "/proc/modules does not exist: this kernel has no loadable module support, or hides it\n"
                        .into(),
                exit_code: Some(3),
            },
        );
        let outcome = KernelModuleDisabled { name: "cramfs".into() }.evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert!(outcome.reason.unwrap().starts_with("/proc/modules does not exist"));
    }

    #[test]
    fn commands_are_read_only_and_checked() {
        let ok = CommandCheck {
            command: "grep -c x /etc/y".into(),
            expect_exit: Some(0),
            expect_output: None,
            forbid_output: None,
            needs_root: false,
        };
        assert!(ok.validate().is_ok());
        for bad in ["rm -rf /", "echo x > /etc/y", "cat $(id)", "sed -i s/a/b/ f", "x; /bin/reboot"] {
            assert!(CommandCheck { command: bad.into(), ..ok.clone() }.validate().is_err(), "{bad}");
        }
        let f = Facts {
            uid: Some(0),
            sections: [("cmd:r1".to_string(), Section { output: "3\n".into(), exit_code: Some(0) })].into(),
            ..Facts::default()
        };
        assert_eq!(ok.evaluate("r1", &f).status, FindingStatus::Pass);
        assert_eq!(
            CommandCheck { expect_output: Some("^0$".into()), ..ok }.evaluate("r1", &f).status,
            FindingStatus::Fail
        );
    }
}
