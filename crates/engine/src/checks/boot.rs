//! Boot checks: kernel command line arguments, running and as configured for boot.
//!
//! A [`GrubCmdline`] check holds only when every source that exists agrees:
//!
//! * the running kernel's `/proc/cmdline`;
//! * every boot entry of the generated GRUB configuration: the `linux`/`linuxefi`/`linux16`
//!   lines of `/boot/grub/grub.cfg` (Debian, Ubuntu) and `/boot/grub2/grub.cfg` (RHEL),
//!   recovery entries included;
//! * every Boot Loader Specification entry (`/boot/loader/entries/*.conf`, RHEL 8+): its
//!   `options` lines, with `$kernelopts`-style variables expanded from
//!   `/boot/grub2/grubenv`;
//! * the persisted source `/etc/default/grub` followed by `/etc/default/grub.d/*.cfg`:
//!   both command lines GRUB generates from it — `GRUB_CMDLINE_LINUX` alone (recovery
//!   entries) and `GRUB_CMDLINE_LINUX` + `GRUB_CMDLINE_LINUX_DEFAULT` (normal entries).
//!
//! For a repeated argument the last occurrence is the one in effect (as the kernel parses
//! it). A source that exists but cannot be read is an `error` ("requires privilege" without
//! root: `grub.cfg`, `grubenv` and `/boot/loader/entries` are root-only on RHEL), never a
//! `fail`. A host without any GRUB or BLS configuration (a container) is `not_applicable`.
//! EFI-partition copies (`/boot/efi/EFI/*/grub.cfg`) are not read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::expect::Expect;
use super::{Outcome, evidence};
use crate::facts::{Facts, FileFact, Probe};

const PROC_CMDLINE: &str = "/proc/cmdline";
const GRUB_CFGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
const BLS_ENTRIES: &str = "/boot/loader/entries/*.conf";
const GRUBENV: &str = "/boot/grub2/grubenv";
const DEFAULT_GRUB: &str = "/etc/default/grub";
const DEFAULT_GRUB_D: &str = "/etc/default/grub.d/*.cfg";

fn yes() -> bool {
    true
}

/// A kernel command line argument, running and configured for every boot entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrubCmdline {
    /// `key=value` (`audit=1`: that exact value), or a bare `key` (present in any form,
    /// or with a value satisfying `expect`).
    pub argument: String,
    /// Constraint on the value of a bare `key` argument (e.g. `audit_backlog_limit`
    /// `{min: 8192}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Whether the argument must be in effect (default) or must not.
    #[serde(default = "yes")]
    pub present: bool,
}

/// What was read from one source: the command lines it yields, with their raw lines.
struct Cmdlines {
    source: String,
    lines: Vec<(String, String)>,
}

impl GrubCmdline {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        for path in [PROC_CMDLINE, BLS_ENTRIES, GRUBENV, DEFAULT_GRUB, DEFAULT_GRUB_D].iter().chain(GRUB_CFGS)
        {
            probes.insert(Probe::File((*path).to_owned()));
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let (key, value) = self.split();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("`argument` `{}` must be one kernel argument", self.argument));
        }
        match (&self.expect, value) {
            (Some(_), Some(_)) => Err("`expect` needs a bare key as `argument` (no `=value`)".into()),
            (Some(expect), None) => expect.validate(),
            (None, _) => Ok(()),
        }
    }

    fn split(&self) -> (&str, Option<&str>) {
        match self.argument.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (self.argument.as_str(), None),
        }
    }

    /// Whether the argument (as specified) is in effect on a command line.
    fn in_effect(&self, cmdline: &str) -> bool {
        let (key, wanted) = self.split();
        let value = cmdline
            .split_whitespace()
            .filter_map(|token| match token.split_once('=') {
                Some((k, v)) if k == key => Some(v.trim_matches('"')),
                None if token == key => Some(""),
                _ => None,
            })
            .next_back();
        match (value, wanted, &self.expect) {
            (None, _, _) => false,
            (Some(v), Some(w), _) => v == w,
            (Some(v), None, Some(expect)) => expect.check(Some(v)),
            (Some(_), None, None) => true,
        }
    }

    fn expected(&self) -> String {
        let what = match &self.expect {
            Some(expect) => format!("{} {}", self.argument, expect.describe()),
            None => self.argument.clone(),
        };
        let verb = if self.present { "in effect" } else { "not in effect" };
        format!("{what} {verb}: running kernel and every configured boot entry")
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = "/proc/cmdline; grub.cfg; /boot/loader/entries; /etc/default/grub";
        let expected = Some(self.expected());
        let mut sources = Vec::new();
        // Any unreadable source makes the result an error: say which, and why.
        let unreadable = std::iter::once(PROC_CMDLINE)
            .chain(GRUB_CFGS.iter().copied())
            .chain([GRUBENV, DEFAULT_GRUB])
            .filter(|p| facts.files.get(*p) == Some(&FileFact::Unreadable))
            .map(str::to_owned)
            .chain(
                [BLS_ENTRIES, DEFAULT_GRUB_D]
                    .iter()
                    .flat_map(|g| facts.files_matching(g))
                    .filter(|(_, f)| **f == FileFact::Unreadable)
                    .map(|(p, _)| p.clone()),
            )
            .next();
        if let Some(path) = unreadable {
            return Outcome::unreadable(facts, &path, source);
        }
        match facts.files.get(PROC_CMDLINE) {
            Some(FileFact::Content { text, .. }) => sources.push(Cmdlines {
                source: "running (/proc/cmdline)".into(),
                lines: vec![(text.trim().to_owned(), text.trim().to_owned())],
            }),
            _ => return Outcome::error("cannot read /proc/cmdline", source),
        }
        let mut uses_bls = false;
        for path in GRUB_CFGS {
            if let Some(FileFact::Content { text, .. }) = facts.files.get(*path) {
                uses_bls |= text.lines().any(|l| l.split_whitespace().next() == Some("blscfg"));
                sources.push(Cmdlines { source: (*path).to_owned(), lines: grub_cfg_cmdlines(text) });
            }
        }
        let grubenv = match facts.files.get(GRUBENV) {
            // grubenv is `name=value` per line, the value running to the end of the line.
            Some(FileFact::Content { text, .. }) => text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let entries: Vec<_> = facts
            .files_matching(BLS_ENTRIES)
            .filter_map(|(path, fact)| match fact {
                FileFact::Content { text, .. } => Some((path, text)),
                _ => None,
            })
            .collect();
        if uses_bls && entries.is_empty() {
            let reason = if facts.privileged() {
                "grub.cfg loads Boot Loader Specification entries (blscfg) but /boot/loader/entries has none"
            } else {
                "requires privilege: /boot/loader/entries"
            };
            return Outcome::error(reason, source);
        }
        for (path, text) in entries {
            sources.push(Cmdlines { source: path.clone(), lines: vec![bls_options(text, &grubenv)] });
        }
        let mut defaults = String::new();
        let mut default_files = Vec::new();
        if let Some(FileFact::Content { text, .. }) = facts.files.get(DEFAULT_GRUB) {
            defaults.push_str(text);
            defaults.push('\n');
            default_files.push(DEFAULT_GRUB.to_owned());
        }
        for (path, fact) in facts.files_matching(DEFAULT_GRUB_D) {
            if let FileFact::Content { text, .. } = fact {
                defaults.push_str(text);
                defaults.push('\n');
                default_files.push(path.clone());
            }
        }
        if !default_files.is_empty() {
            let vars = shell_vars(&defaults);
            let linux = vars.get("GRUB_CMDLINE_LINUX").cloned().unwrap_or_default();
            let normal =
                format!("{linux} {}", vars.get("GRUB_CMDLINE_LINUX_DEFAULT").cloned().unwrap_or_default());
            sources.push(Cmdlines {
                source: default_files.join(" + "),
                lines: vec![
                    (linux.clone(), format!("GRUB_CMDLINE_LINUX=\"{linux}\"")),
                    (
                        normal.trim().to_owned(),
                        format!("GRUB_CMDLINE_LINUX + _DEFAULT = \"{}\"", normal.trim()),
                    ),
                ],
            });
        }
        if sources.len() == 1 {
            return Outcome::not_applicable(
                "no GRUB or boot loader entry configuration on this host",
                evidence(source, &sources[0].lines[0].1, expected, None),
            );
        }
        let mut ok = true;
        let mut actual = Vec::new();
        let mut excerpt = Vec::new();
        for cmdlines in &sources {
            if cmdlines.lines.is_empty() {
                // A grub.cfg without kernel lines (BLS stub): the entries are the source.
                continue;
            }
            let bad: Vec<&(String, String)> =
                cmdlines.lines.iter().filter(|(line, _)| self.in_effect(line) != self.present).collect();
            ok &= bad.is_empty();
            actual.push(format!(
                "{}: {}/{} compliant",
                cmdlines.source,
                cmdlines.lines.len() - bad.len(),
                cmdlines.lines.len()
            ));
            let shown = if bad.is_empty() { cmdlines.lines.first() } else { bad.first().copied() };
            if let Some((_, raw)) = shown {
                excerpt.push(format!("{}: {raw}", cmdlines.source));
            }
        }
        Outcome::decided(ok, evidence(source, &excerpt.join("\n"), expected, Some(actual.join("; "))))
    }
}

/// The kernel arguments of every `linux` line of a generated `grub.cfg` (the kernel
/// image path dropped), with the raw lines.
fn grub_cfg_cmdlines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("linux" | "linuxefi" | "linux16")).then(|| {
                words.next();
                (words.collect::<Vec<_>>().join(" "), line.trim().to_owned())
            })
        })
        .collect()
}

/// The kernel arguments of one BLS entry: its `options` lines joined, `$var` expanded.
fn bls_options(text: &str, env: &BTreeMap<String, String>) -> (String, String) {
    let options: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("options").filter(|r| r.starts_with(char::is_whitespace)))
        .map(str::trim)
        .collect();
    let raw = options.join(" ");
    let expanded = raw
        .split_whitespace()
        .map(|word| match word.strip_prefix('$') {
            Some(var) => env.get(var.trim_matches(['{', '}'])).cloned().unwrap_or_default(),
            None => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    (expanded, format!("options {raw}"))
}

/// `NAME=value` assignments of a shell-like file (later ones win), with `"…"` and `'…'`
/// quoting and `$NAME`/`${NAME}` expansion of earlier values (enough for
/// `/etc/default/grub` and `grubenv`).
fn shell_vars(text: &str) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once('=') else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let mut value = String::new();
        let mut chars = rest.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '#') => break,
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('"') | None, '\\') => value.extend(chars.next()),
                (Some('"') | None, '$') => {
                    let braced = chars.peek() == Some(&'{');
                    if braced {
                        chars.next();
                    }
                    let mut var = String::new();
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_alphanumeric() || n == '_' {
                            var.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if braced && chars.peek() == Some(&'}') {
                        chars.next();
                    }
                    value.push_str(vars.get(&var).map_or("", String::as_str));
                }
                (_, c) => value.push(c),
            }
        }
        vars.insert(name.to_owned(), value);
    }
    vars
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;

    fn facts(uid: u32, files: &[(&str, Option<&str>)]) -> Facts {
        Facts::for_test(uid, &[], files)
    }

    fn check(argument: &str) -> GrubCmdline {
        GrubCmdline { argument: argument.into(), expect: None, present: true }
    }

    const DEBIAN_CFG: &str = "menuentry 'Debian' {\n\tlinux\t/vmlinuz-6.1.0-18-amd64 root=UUID=ab ro audit=1 quiet\n}\n\
                              menuentry 'Debian (recovery mode)' {\n\tlinux\t/vmlinuz-6.1.0-18-amd64 root=UUID=ab ro single audit=1\n}\n";

    #[test]
    fn running_grub_cfg_and_defaults_must_all_agree() {
        let good = facts(
            0,
            &[
                (PROC_CMDLINE, Some("BOOT_IMAGE=/vmlinuz root=UUID=ab ro audit=1 quiet\n")),
                ("/boot/grub/grub.cfg", Some(DEBIAN_CFG)),
                (
                    DEFAULT_GRUB,
                    Some("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"audit=1\"\n"),
                ),
            ],
        );
        let outcome = check("audit=1").evaluate(&good);
        assert_eq!(outcome.status, FindingStatus::Pass, "{outcome:?}");

        let mut not_running = good.clone();
        not_running.files.insert(
            PROC_CMDLINE.into(),
            FileFact::Content { text: "root=UUID=ab ro quiet\n".into(), truncated: false },
        );
        assert_eq!(check("audit=1").evaluate(&not_running).status, FindingStatus::Fail);

        let recovery_missing = facts(
            0,
            &[
                (PROC_CMDLINE, Some("ro audit=1\n")),
                ("/boot/grub/grub.cfg", Some(&DEBIAN_CFG.replace("single audit=1", "single"))),
            ],
        );
        let outcome = check("audit=1").evaluate(&recovery_missing);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert!(outcome.evidence.excerpt.contains("single"), "{outcome:?}");

        let overridden_by_default = facts(
            0,
            &[
                (PROC_CMDLINE, Some("ro audit=1\n")),
                (
                    DEFAULT_GRUB,
                    Some("GRUB_CMDLINE_LINUX=\"audit=1\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"audit=0\"\n"),
                ),
            ],
        );
        assert_eq!(check("audit=1").evaluate(&overridden_by_default).status, FindingStatus::Fail);
    }

    #[test]
    fn bls_entries_expand_kernelopts_and_values_can_be_bounded() {
        let rhel = |entry: &str| {
            facts(
                0,
                &[
                    (
                        PROC_CMDLINE,
                        Some("BOOT_IMAGE=(hd0,gpt2)/vmlinuz ro audit=1 audit_backlog_limit=8192\n"),
                    ),
                    ("/boot/grub2/grub.cfg", Some("insmod blscfg\nblscfg\n")),
                    (
                        GRUBENV,
                        Some(
                            "# GRUB Environment Block\nkernelopts=root=/dev/rl/root ro audit=1 audit_backlog_limit=8192\n",
                        ),
                    ),
                    ("/boot/loader/entries/abc-5.14.0.conf", Some(entry)),
                    (
                        DEFAULT_GRUB,
                        Some("GRUB_CMDLINE_LINUX='crashkernel=auto audit=1 audit_backlog_limit=8192'\n"),
                    ),
                ],
            )
        };
        let backlog = GrubCmdline {
            argument: "audit_backlog_limit".into(),
            expect: Some(Expect { min: Some(8192), ..Expect::default() }),
            present: true,
        };
        let f = rhel("title Rocky\nlinux /vmlinuz\noptions $kernelopts\n");
        assert_eq!(backlog.evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(check("audit=1").evaluate(&f).status, FindingStatus::Pass);
        let low = rhel("options root=/dev/rl/root ro audit=1 audit_backlog_limit=64\n");
        assert_eq!(backlog.evaluate(&low).status, FindingStatus::Fail);
        let selinux_off = GrubCmdline { argument: "selinux=0".into(), expect: None, present: false };
        assert_eq!(selinux_off.evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            selinux_off.evaluate(&rhel("options $kernelopts selinux=0\n")).status,
            FindingStatus::Fail
        );
    }

    #[test]
    fn unreadable_boot_configuration_without_root_is_an_error() {
        let f = facts(1000, &[(PROC_CMDLINE, Some("ro audit=1\n")), ("/boot/grub2/grub.cfg", None)]);
        let outcome = check("audit=1").evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("requires privilege: /boot/grub2/grub.cfg"));
        // BLS entries hidden by a root-only directory: the glob matched nothing.
        let hidden =
            facts(1000, &[(PROC_CMDLINE, Some("ro audit=1\n")), ("/boot/grub2/grub.cfg", Some("blscfg\n"))]);
        assert_eq!(check("audit=1").evaluate(&hidden).status, FindingStatus::Error);
    }

    #[test]
    fn hosts_without_a_boot_loader_configuration_are_not_applicable() {
        let container = facts(0, &[(PROC_CMDLINE, Some("ro audit=1\n"))]);
        assert_eq!(check("audit=1").evaluate(&container).status, FindingStatus::NotApplicable);
    }

    #[test]
    fn default_grub_assignments_expand_like_the_shell() {
        let vars = shell_vars(
            "GRUB_CMDLINE_LINUX=\"quiet\"\n# GRUB_CMDLINE_LINUX=\"x\"\n\
             GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX apparmor=1 security=apparmor\"\nexport A='$B' # c\n",
        );
        assert_eq!(vars["GRUB_CMDLINE_LINUX"], "quiet apparmor=1 security=apparmor");
        assert_eq!(vars["A"], "$B");
        assert!(check("apparmor=1").in_effect("quiet apparmor=1"));
        assert!(!check("apparmor=1").in_effect("apparmor=1 apparmor=0"), "the last occurrence wins");
        assert!(check("nousb").in_effect("ro nousb"));
        assert!(check("audit=1").validate().is_ok());
        assert!(GrubCmdline { expect: Some(Expect::default()), ..check("audit") }.validate().is_err());
    }
}
