//! Configuration checks: effective sshd settings, kernel parameters, key/value files.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::expect::Expect;
use super::files::validate_path;
use super::{Outcome, evidence, usable_section};
use crate::facts::{Facts, FileFact, Probe};

/// A keyword of the effective sshd configuration, as `sshd -T` prints it (lower-case
/// keywords, built-in defaults filled in, first-match semantics of `sshd_config` already
/// applied). `Match` blocks are not evaluated: the values are those of a connection that
/// matches no `Match` block (documented in `docs/RULES.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshdConfig {
    /// Keyword, e.g. `permitrootlogin` (case-insensitive).
    pub key: String,
    /// Expected value.
    pub expect: Expect,
}

impl SshdConfig {
    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let section = match usable_section(facts, &Probe::SshdEffective, "sshd", "sshd -T") {
            Ok(section) => section,
            Err(outcome) => return *outcome,
        };
        let key = self.key.to_ascii_lowercase();
        let lines: Vec<&str> = section
            .output
            .lines()
            .filter(|line| line.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(&key)))
            .collect();
        let values: Vec<&str> = lines
            .iter()
            .map(|line| line.split_once(char::is_whitespace).map_or("", |(_, v)| v.trim()))
            .collect();
        let actual = (!values.is_empty()).then(|| values.join(","));
        Outcome::decided(
            self.expect.check(actual.as_deref()),
            evidence(
                "sshd -T",
                &lines.join("\n"),
                Some(format!("{key} {}", self.expect.describe())),
                actual.or(Some("(unset)".into())),
            ),
        )
    }
}

/// Where sysctl settings persist, in systemd-sysctl precedence order (a file in `/etc`
/// masks a same-named file in the later directories; `/etc/sysctl.conf` is read last).
const SYSCTL_DIRS: &[&str] =
    &["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];

/// A kernel parameter: the running value and/or the persisted configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// Parameter, e.g. `net.ipv4.ip_forward`.
    pub key: String,
    /// Expected value.
    pub expect: Expect,
    /// Check the running value (`sysctl -e <key>`). Default true.
    #[serde(default = "yes")]
    pub runtime: bool,
    /// Check the value configured to apply at boot. Default true.
    #[serde(default = "yes")]
    pub persistent: bool,
}

fn yes() -> bool {
    true
}

impl Sysctl {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        if self.runtime {
            probes.insert(Probe::SysctlRuntime(self.key.replace('/', ".")));
        }
        if self.persistent {
            probes.insert(Probe::File("/etc/sysctl.conf".into()));
            for dir in SYSCTL_DIRS {
                probes.insert(Probe::File(format!("{dir}/*.conf")));
            }
        }
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let key = self.key.replace('/', ".");
        let expected = Some(format!("{key} {}", self.expect.describe()));
        let mut excerpt = Vec::new();
        let mut ok = true;
        let mut actual = Vec::new();
        if self.runtime {
            let section = match usable_section(facts, &Probe::SysctlRuntime(key.clone()), "sysctl", "sysctl")
            {
                Ok(section) => section,
                Err(outcome) => return *outcome,
            };
            let running = section.output.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
            });
            let denied = format!("sysctl: permission denied on key '{key}'");
            if let Some(line) = section.output.lines().find(|l| l.trim() == denied) {
                let reason = if facts.privileged() { "cannot read" } else { "requires privilege" };
                return Outcome::error(
                    format!("{reason}: kernel parameter {key}"),
                    format!("sysctl {key}: {line}"),
                );
            }
            let Some(running) = running else {
                return Outcome::not_applicable(
                    format!("kernel parameter {key} does not exist on this kernel"),
                    evidence(format!("sysctl {key}"), "", expected, None),
                );
            };
            ok &= self.expect.check(Some(&running));
            excerpt.push(format!("sysctl: {key} = {running}"));
            actual.push(format!("running: {running}"));
        }
        if self.persistent {
            let configured = persisted_sysctl(facts, &key);
            match &configured {
                Some((file, value)) => {
                    ok &= self.expect.check(Some(value));
                    excerpt.push(format!("{file}: {key} = {value}"));
                    actual.push(format!("configured: {value} ({file})"));
                }
                None => {
                    ok = false;
                    actual.push("configured: not set in any sysctl configuration file".into());
                }
            }
            if let Some(unreadable) =
                facts.files.iter().find(|(p, f)| is_sysctl_file(p) && **f == FileFact::Unreadable)
            {
                return Outcome::error(format!("cannot read {}", unreadable.0), "sysctl configuration");
            }
        }
        Outcome::decided(
            ok,
            evidence("sysctl; sysctl.d", &excerpt.join("\n"), expected, Some(actual.join("; "))),
        )
    }
}

fn is_sysctl_file(path: &str) -> bool {
    path == "/etc/sysctl.conf" || SYSCTL_DIRS.iter().any(|dir| path.starts_with(dir))
}

/// The value systemd-sysctl would apply for `key`, and the file that sets it last.
fn persisted_sysctl(facts: &Facts, key: &str) -> Option<(String, String)> {
    // Effective files by basename: the first directory in precedence order wins.
    let mut by_name: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
    for dir in SYSCTL_DIRS {
        for (path, fact) in facts.files_matching(&format!("{dir}/*.conf")) {
            if let (FileFact::Content { .. }, Some(name)) = (fact, path.rsplit('/').next()) {
                by_name.entry(name.to_owned()).or_insert(path);
            }
        }
    }
    let mut ordered: Vec<&str> = by_name.into_values().collect();
    ordered.push("/etc/sysctl.conf");
    let mut found = None;
    for path in ordered {
        let Some(FileFact::Content { text, .. }) = facts.files.get(path) else { continue };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=')
                && k.trim().trim_start_matches('-').replace('/', ".") == key
            {
                found = Some((path.to_owned(), v.trim().to_owned()));
            }
        }
    }
    found
}

/// How keys and values are separated in a key/value file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Separator {
    /// `KEY value` or `KEY=value` (whichever comes first on the line).
    #[default]
    Auto,
    /// `KEY value` (`login.defs`).
    Whitespace,
    /// `key = value` (`pwquality.conf`, `journald.conf`).
    Equals,
}

/// A key of key/value configuration files, read in order (later files override earlier
/// ones, as with a main file followed by its `.d` drop-ins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    /// Files and globs in precedence order (globs expand in name order).
    pub paths: Vec<String>,
    /// The key (case-insensitive).
    pub key: String,
    /// Expected value.
    pub expect: Expect,
    /// Key/value separator.
    #[serde(default)]
    pub separator: Separator,
    /// Only keys inside this `[section]` count (INI-style files such as journald.conf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The first assignment wins instead of the last (sshd_config style).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_wins: bool,
    /// When no file exists at all, the result is `not_applicable` (the component is not
    /// installed) instead of `fail`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_is_not_applicable: bool,
}

impl KvConfig {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        for path in &self.paths {
            probes.insert(Probe::File(path.clone()));
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() {
            return Err("`paths` is empty".into());
        }
        self.paths.iter().try_for_each(|p| validate_path(p))?;
        self.expect.validate()
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = self.paths.join(", ");
        let expected = Some(format!("{} {}", self.key, self.expect.describe()));
        let mut found: Option<(String, String, String)> = None;
        let mut any_file = false;
        for pattern in &self.paths {
            for (path, fact) in facts.files_matching(pattern) {
                match fact {
                    FileFact::Content { text, .. } => {
                        any_file = true;
                        if let Some((value, line)) = self.lookup(text)
                            && (found.is_none() || !self.first_wins)
                        {
                            found = Some((path.clone(), value, line));
                        }
                    }
                    FileFact::Unreadable => {
                        return Outcome::unreadable(facts, path, source);
                    }
                    FileFact::Missing | FileFact::NotAFile => {}
                }
            }
        }
        if !any_file && self.missing_is_not_applicable {
            return Outcome::not_applicable(
                "no configuration file present",
                evidence(source, "", expected, None),
            );
        }
        let (actual, excerpt) = match &found {
            Some((path, value, line)) => (Some(value.clone()), format!("{path}: {line}")),
            None => (None, String::new()),
        };
        let shown =
            actual.clone().or_else(|| Some(if any_file { "(unset)".into() } else { "(no file)".into() }));
        Outcome::decided(self.expect.check(actual.as_deref()), evidence(source, &excerpt, expected, shown))
    }

    /// The value of the key in one file's text (last or first assignment), with its line.
    fn lookup(&self, text: &str) -> Option<(String, String)> {
        let mut in_section = self.section.is_none();
        let mut found = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                in_section = self
                    .section
                    .as_deref()
                    .is_none_or(|s| line[1..line.len() - 1].trim().eq_ignore_ascii_case(s));
                continue;
            }
            if !in_section {
                continue;
            }
            let split = match self.separator {
                Separator::Equals => line.split_once('='),
                Separator::Whitespace => line.split_once(char::is_whitespace),
                Separator::Auto => {
                    let eq = line.find('=');
                    let ws = line.find(char::is_whitespace);
                    match (eq, ws) {
                        (Some(e), Some(w)) if w < e && line[w..e].trim().is_empty() => line.split_once('='),
                        (Some(e), Some(w)) if w < e => line.split_once(char::is_whitespace),
                        (Some(_), _) => line.split_once('='),
                        (None, Some(_)) => line.split_once(char::is_whitespace),
                        (None, None) => None,
                    }
                }
            };
            let Some((key, value)) = split else { continue };
            if key.trim().eq_ignore_ascii_case(&self.key) {
                let value = value.trim().trim_matches('"').to_owned();
                found = Some((value, line.to_owned()));
                if self.first_wins {
                    return found;
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {

    use openwatch_common::domain::FindingStatus;

    use super::*;
    use crate::facts::Section;

    fn facts_with(sections: &[(&str, &str)], files: &[(&str, &str)]) -> Facts {
        let files: Vec<(&str, Option<&str>)> =
            files.iter().map(|(path, text)| (*path, Some(*text))).collect();
        Facts::for_test(0, sections, &files)
    }

    fn expect(yaml: &str) -> Expect {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn sshd_values_come_from_sshd_t() {
        let facts =
            facts_with(&[("sshd", "port 22\npermitrootlogin without-password\nmaxauthtries 6\n")], &[]);
        let root = SshdConfig { key: "PermitRootLogin".into(), expect: expect("one_of: [no]\n") };
        let outcome = root.evaluate(&facts);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert_eq!(outcome.evidence.actual.as_deref(), Some("without-password"));
        assert_eq!(outcome.evidence.excerpt, "permitrootlogin without-password");
        let tries = SshdConfig { key: "maxauthtries".into(), expect: expect("max: 4\n") };
        assert_eq!(tries.evaluate(&facts).status, FindingStatus::Fail);
    }

    #[test]
    fn sshd_without_privilege_is_an_error_not_a_fail() {
        let mut facts = facts_with(&[], &[]);
        facts.uid = Some(1000);
        facts.sections.insert("sshd".into(), Section { output: String::new(), exit_code: Some(1) });
        let outcome = SshdConfig { key: "x".into(), expect: expect("equals: y\n") }.evaluate(&facts);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("requires privilege"));
    }

    #[test]
    fn sysctl_needs_runtime_and_persisted_values() {
        let check = Sysctl {
            key: "net.ipv4.ip_forward".into(),
            expect: expect("equals: '0'\n"),
            runtime: true,
            persistent: true,
        };
        let good = facts_with(
            &[("sysctl", "net.ipv4.ip_forward = 0\n")],
            &[
                ("/etc/sysctl.d/60-net.conf", "net.ipv4.ip_forward=0\n"),
                ("/usr/lib/sysctl.d/50-x.conf", "net.ipv4.ip_forward = 1"),
            ],
        );
        assert_eq!(check.evaluate(&good).status, FindingStatus::Pass);
        let unpersisted = facts_with(&[("sysctl", "net.ipv4.ip_forward = 0\n")], &[]);
        assert_eq!(check.evaluate(&unpersisted).status, FindingStatus::Fail);
        // A same-named file in /etc masks the one in /usr/lib; sysctl.conf is read last.
        let masked = facts_with(
            &[("sysctl", "net.ipv4.ip_forward = 0\n")],
            &[
                ("/etc/sysctl.d/50-x.conf", "net/ipv4/ip_forward = 0\n"),
                ("/usr/lib/sysctl.d/50-x.conf", "net.ipv4.ip_forward = 1\n"),
                ("/etc/sysctl.conf", "# net.ipv4.ip_forward = 1\n"),
            ],
        );
        assert_eq!(check.evaluate(&masked).status, FindingStatus::Pass);
        let overridden = facts_with(
            &[("sysctl", "net.ipv4.ip_forward = 0\n")],
            &[
                ("/etc/sysctl.d/60-net.conf", "net.ipv4.ip_forward=0\n"),
                ("/etc/sysctl.conf", "net.ipv4.ip_forward = 1\n"),
            ],
        );
        assert_eq!(check.evaluate(&overridden).status, FindingStatus::Fail);
        // A parameter only root may read is an error, never "does not exist".
        let jit = Sysctl { key: "net.core.bpf_jit_harden".into(), persistent: false, ..check.clone() };
        let mut denied = facts_with(
            &[(
                "sysctl",
                "net.ipv4.ip_forward = 0\nsysctl: permission denied on key 'net.core.bpf_jit_harden'\n",
            )],
            &[],
        );
        denied.uid = Some(1000);
        let outcome = jit.evaluate(&denied);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(
            outcome.reason.as_deref(),
            Some("requires privilege: kernel parameter net.core.bpf_jit_harden")
        );
        assert_eq!(check.evaluate(&denied).status, FindingStatus::Fail, "the others are still read");
        let absent = Sysctl { key: "kernel.no_such".into(), ..jit };
        assert_eq!(absent.evaluate(&denied).status, FindingStatus::NotApplicable);
    }

    #[test]
    fn unknown_kernel_parameters_are_not_applicable() {
        let check = Sysctl {
            key: "net.ipv6.x".into(),
            expect: expect("equals: '0'\n"),
            runtime: true,
            persistent: false,
        };
        assert_eq!(
            check.evaluate(&facts_with(&[("sysctl", "a = 1\n")], &[])).status,
            FindingStatus::NotApplicable
        );
    }

    #[test]
    fn kv_files_later_drop_ins_override_and_sections_scope_keys() {
        let check = KvConfig {
            paths: vec![
                "/etc/security/pwquality.conf".into(),
                "/etc/security/pwquality.conf.d/*.conf".into(),
            ],
            key: "minlen".into(),
            expect: expect("min: 14\n"),
            separator: Separator::Equals,
            section: None,
            first_wins: false,
            missing_is_not_applicable: false,
        };
        let facts = facts_with(
            &[],
            &[
                ("/etc/security/pwquality.conf", "# minlen = 20\nminlen = 8\n"),
                ("/etc/security/pwquality.conf.d/50.conf", "minlen=15\n"),
            ],
        );
        let outcome = check.evaluate(&facts);
        assert_eq!(outcome.status, FindingStatus::Pass, "{outcome:?}");
        assert_eq!(outcome.evidence.actual.as_deref(), Some("15"));

        let journald = KvConfig {
            paths: vec!["/etc/systemd/journald.conf".into()],
            key: "Storage".into(),
            expect: expect("equals: persistent\n"),
            separator: Separator::Equals,
            section: Some("Journal".into()),
            first_wins: false,
            missing_is_not_applicable: false,
        };
        let other_section =
            facts_with(&[], &[("/etc/systemd/journald.conf", "[Other]\nStorage=persistent\n[Journal]\n")]);
        assert_eq!(journald.evaluate(&other_section).status, FindingStatus::Fail);
        let in_section =
            facts_with(&[], &[("/etc/systemd/journald.conf", "[Journal]\nStorage=persistent\n")]);
        assert_eq!(journald.evaluate(&in_section).status, FindingStatus::Pass);
    }

    #[test]
    fn login_defs_style_whitespace_pairs() {
        let check = KvConfig {
            paths: vec!["/etc/login.defs".into()],
            key: "PASS_MAX_DAYS".into(),
            expect: expect("min: 1\nmax: 365\n"),
            separator: Separator::Auto,
            section: None,
            first_wins: false,
            missing_is_not_applicable: false,
        };
        assert_eq!(
            check.evaluate(&facts_with(&[], &[("/etc/login.defs", "PASS_MAX_DAYS\t99999\n")])).status,
            FindingStatus::Fail
        );
        assert_eq!(
            check.evaluate(&facts_with(&[], &[("/etc/login.defs", "PASS_MAX_DAYS   365\n")])).status,
            FindingStatus::Pass
        );
    }
}
