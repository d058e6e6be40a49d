//! PAM checks: a module's presence, control and options in PAM service files.
//!
//! Lines are parsed as Linux-PAM does: `#` starts a comment, a trailing backslash joins
//! the next line, the type may carry a leading `-` (module loaded only if installed), the
//! control is a keyword or the bracket syntax (`[success=1 default=ignore]`, compared as
//! a set of `value=action` pairs), the module is a name or a path (compared by file name),
//! and options are words or `[bracketed words]`, `key=value` or flags.
//!
//! Includes are followed: `@include <file>` (Debian) inserts every line of the file, and
//! `include <file>` / `substack <file>` in the control column insert the file's lines of
//! that type (relative names resolve under `/etc/pam.d/`, depth limited to 8). That is
//! why the check collects all of `/etc/pam.d/*`: the module counts as configured for a
//! service file when the service's effective stack holds it, wherever it is written.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::expect::Expect;
use super::files::validate_path;
use super::{Outcome, evidence};
use crate::facts::{Facts, FileFact, Probe};

const PAM_DIR: &str = "/etc/pam.d";
const MAX_INCLUDE_DEPTH: usize = 8;

/// What a module option must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PamOption {
    /// `present` (flag or `key=…`) or `absent`.
    Presence(Presence),
    /// The value of `key=value` satisfies these constraints.
    Value(Expect),
}

/// Whether an option must appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// The option is given (as a flag or with a value).
    Present,
    /// The option is not given.
    Absent,
}

/// A PAM module configured (or not) in service files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PamModule {
    /// Service files; each one that exists must satisfy the check (at least one must
    /// exist unless `absent`). E.g. `[/etc/pam.d/common-password]` or
    /// `[/etc/pam.d/system-auth, /etc/pam.d/password-auth]`.
    pub service_files: Vec<String>,
    /// Module name (`pam_pwhistory.so`) or path; compared by file name.
    pub module: String,
    /// Required control: a keyword (`required`, `requisite`, …) or bracket syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Required PAM type (`auth`, `account`, `password`, `session`). Named `module_type`
    /// because `type` selects the check kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_type: Option<String>,
    /// Options by name: `present`, `absent`, or value constraints (`{min: 24}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, PamOption>,
    /// The module must not be configured (with that type and control, when given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
}

/// One parsed PAM rule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamLine {
    /// `auth`, `account`, `password` or `session` (leading `-` removed).
    pub module_type: String,
    /// The control as written (bracket form normalised to single spaces).
    pub control: String,
    /// Module path or name as written.
    pub module: String,
    /// Options, in order.
    pub options: Vec<String>,
    /// The file and the logical line, for evidence.
    pub origin: String,
}

/// The logical lines of a PAM file: comments removed, continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let without_comment = raw.split('#').next().unwrap_or("");
        match without_comment.strip_suffix('\\') {
            Some(head) if !raw.contains('#') => {
                current.push_str(head);
                current.push(' ');
            }
            _ => {
                current.push_str(without_comment);
                if !current.trim().is_empty() {
                    lines.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current.trim().to_owned());
    }
    lines
}

/// Splits a line into words, keeping `[ … ]` groups (bracket controls and options) as
/// one word (`\]` inside brackets is a literal bracket).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '[' {
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&']') {
                    word.push(']');
                    chars.next();
                    continue;
                }
                word.push(c);
                if c == ']' {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

/// A bracket control as its set of pairs (`[a=b c=d]` → {a=b, c=d}); a keyword as itself.
fn control_key(control: &str) -> BTreeSet<String> {
    let inner = control.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split_whitespace().map(str::to_ascii_lowercase).collect()
}

fn module_name(module: &str) -> &str {
    let name = module.rsplit('/').next().unwrap_or(module);
    name.strip_suffix(".so").unwrap_or(name)
}

/// Why a service's stack could not be resolved.
enum StackError {
    Unreadable(String),
    Missing(String),
    TooDeep(String),
}

/// The effective stack of `path`, includes expanded (`type_filter`: only lines of that
/// type, for `include`/`substack`).
fn stack(
    facts: &Facts,
    path: &str,
    type_filter: Option<&str>,
    depth: usize,
    out: &mut Vec<PamLine>,
) -> Result<(), StackError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(StackError::TooDeep(path.to_owned()));
    }
    let text = match facts.files.get(path) {
        Some(FileFact::Content { text, .. }) => text,
        Some(FileFact::Unreadable) => return Err(StackError::Unreadable(path.to_owned())),
        _ => return Err(StackError::Missing(path.to_owned())),
    };
    let resolve =
        |name: &str| if name.starts_with('/') { name.to_owned() } else { format!("{PAM_DIR}/{name}") };
    for line in logical_lines(text) {
        let words = words(&line);
        if let [directive, target, ..] = words.as_slice()
            && directive == "@include"
        {
            stack(facts, &resolve(target), type_filter, depth + 1, out)?;
            continue;
        }
        let [module_type, control, module, options @ ..] = words.as_slice() else { continue };
        let module_type = module_type.trim_start_matches('-').to_ascii_lowercase();
        if type_filter.is_some_and(|t| t != module_type) {
            continue;
        }
        if matches!(control.as_str(), "include" | "substack") {
            stack(facts, &resolve(module), Some(&module_type), depth + 1, out)?;
            continue;
        }
        out.push(PamLine {
            module_type,
            control: control.split_whitespace().collect::<Vec<_>>().join(" "),
            module: module.clone(),
            options: options.to_vec(),
            origin: format!("{path}: {line}"),
        });
    }
    Ok(())
}

impl PamModule {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        probes.insert(Probe::File(format!("{PAM_DIR}/*")));
        for path in &self.service_files {
            probes.insert(Probe::File(path.clone()));
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.service_files.is_empty() {
            return Err("`service_files` is empty".into());
        }
        self.service_files.iter().try_for_each(|p| validate_path(p))?;
        if self.absent && !self.options.is_empty() {
            return Err("`options` cannot be combined with `absent: true`".into());
        }
        if let Some(t) = &self.module_type
            && !matches!(t.as_str(), "auth" | "account" | "password" | "session")
        {
            return Err(format!("`module_type` `{t}` is not auth, account, password or session"));
        }
        for (name, option) in &self.options {
            if let PamOption::Value(expect) = option {
                expect.validate().map_err(|e| format!("option `{name}`: {e}"))?;
            }
        }
        Ok(())
    }

    fn matches(&self, line: &PamLine) -> bool {
        module_name(&line.module) == module_name(&self.module)
            && self.module_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&line.module_type))
            && self.control.as_deref().is_none_or(|c| control_key(c) == control_key(&line.control))
    }

    /// Options of `line` that do not satisfy the expectation (empty: all do).
    fn option_problems(&self, line: &PamLine) -> Vec<String> {
        let value_of = |name: &str| {
            line.options.iter().rev().find_map(|o| match o.split_once('=') {
                Some((k, v)) if k == name => Some(Some(v)),
                None if o == name => Some(None),
                _ => None,
            })
        };
        self.options
            .iter()
            .filter_map(|(name, want)| {
                let have = value_of(name);
                let ok = match want {
                    PamOption::Presence(Presence::Present) => have.is_some(),
                    PamOption::Presence(Presence::Absent) => have.is_none(),
                    PamOption::Value(expect) => expect.check(have.flatten()),
                };
                (!ok).then(|| match have {
                    Some(Some(v)) => format!("{name}={v}"),
                    Some(None) => format!("{name} set"),
                    None => format!("{name} not set"),
                })
            })
            .collect()
    }

    fn expected(&self) -> String {
        let mut parts = vec![self.module.clone()];
        parts.extend(self.module_type.iter().map(|t| format!("type {t}")));
        parts.extend(self.control.iter().map(|c| format!("control {c}")));
        for (name, option) in &self.options {
            parts.push(match option {
                PamOption::Presence(Presence::Present) => format!("{name} present"),
                PamOption::Presence(Presence::Absent) => format!("{name} absent"),
                PamOption::Value(expect) => format!("{name} {}", expect.describe()),
            });
        }
        let what = parts.join(", ");
        if self.absent { format!("not configured: {what}") } else { format!("configured: {what}") }
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = self.service_files.join(", ");
        let expected = Some(self.expected());
        let mut ok = true;
        let mut existing = 0;
        let mut actual = Vec::new();
        let mut excerpt = Vec::new();
        for path in &self.service_files {
            let mut lines = Vec::new();
            match stack(facts, path, None, 0, &mut lines) {
                Ok(()) => {}
                Err(StackError::Missing(missing)) if missing == *path => continue,
                Err(StackError::Missing(missing)) => {
                    return Outcome::error(
                        format!("{path} includes {missing}, which does not exist"),
                        source,
                    );
                }
                Err(StackError::Unreadable(file)) => {
                    return Outcome::unreadable(facts, &file, source);
                }
                Err(StackError::TooDeep(file)) => {
                    return Outcome::error(format!("includes nested too deep at {file}"), source);
                }
            }
            existing += 1;
            let matching: Vec<&PamLine> = lines.iter().filter(|l| self.matches(l)).collect();
            if self.absent {
                ok &= matching.is_empty();
                actual.push(format!(
                    "{path}: {}",
                    if matching.is_empty() {
                        "not configured".into()
                    } else {
                        format!("{} line(s)", matching.len())
                    }
                ));
                excerpt.extend(matching.iter().map(|l| l.origin.clone()));
                continue;
            }
            let good = matching.iter().find(|l| self.option_problems(l).is_empty());
            match (good, matching.first()) {
                (Some(line), _) => {
                    actual.push(format!("{path}: configured"));
                    excerpt.push(line.origin.clone());
                }
                (None, Some(line)) => {
                    ok = false;
                    actual.push(format!("{path}: {}", self.option_problems(line).join(", ")));
                    excerpt.push(line.origin.clone());
                }
                (None, None) => {
                    ok = false;
                    actual.push(format!("{path}: {} not configured", self.module));
                    // Show what the stack holds for the type, to help the reader.
                    excerpt.extend(
                        lines
                            .iter()
                            .filter(|l| self.module_type.as_deref().is_none_or(|t| t == l.module_type))
                            .map(|l| l.origin.clone()),
                    );
                }
            }
        }
        if existing == 0 {
            let ev = evidence(source, "", expected, Some("no service file exists".into()));
            return Outcome::decided(self.absent, ev);
        }
        Outcome::decided(
            ok,
            evidence(self.service_files.join(", "), &excerpt.join("\n"), expected, Some(actual.join("; "))),
        )
    }
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;

    fn facts(uid: u32, files: &[(&str, Option<&str>)]) -> Facts {
        Facts::for_test(uid, &[], files)
    }

    fn pwhistory(files: &[&str]) -> PamModule {
        serde_saphyr::from_str(&format!(
            "service_files: [{}]\nmodule: pam_pwhistory.so\nmodule_type: password\n\
             options: {{remember: {{min: 24}}, use_authtok: present, enforce_for_root: present}}\n",
            files.join(", ")
        ))
        .unwrap()
    }

    const COMMON_PASSWORD: &str = "# here are the per-package modules\n\
        password\trequisite\t\t\tpam_pwquality.so retry=3\n\
        password\trequired\tpam_pwhistory.so remember=24 \\\n    enforce_for_root use_authtok # history\n\
        password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n\
        password\trequisite\t\t\tpam_deny.so\n";

    #[test]
    fn options_controls_and_continuations() {
        let f = facts(0, &[("/etc/pam.d/common-password", Some(COMMON_PASSWORD))]);
        let outcome = pwhistory(&["/etc/pam.d/common-password"]).evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Pass, "{outcome:?}");
        let weak = facts(
            0,
            &[("/etc/pam.d/common-password", Some(&COMMON_PASSWORD.replace("remember=24", "remember=5")))],
        );
        let outcome = pwhistory(&["/etc/pam.d/common-password"]).evaluate(&weak);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert!(outcome.evidence.actual.unwrap().contains("remember=5"));
        let commented = facts(
            0,
            &[(
                "/etc/pam.d/common-password",
                Some(&COMMON_PASSWORD.replace("password\trequired\tpam_pwh", "#password\trequired\tpam_pwh")),
            )],
        );
        assert_eq!(
            pwhistory(&["/etc/pam.d/common-password"]).evaluate(&commented).status,
            FindingStatus::Fail
        );

        let unix = PamModule {
            service_files: vec!["/etc/pam.d/common-password".into()],
            module: "/lib/x86_64-linux-gnu/security/pam_unix.so".into(),
            control: Some("[default=ignore  success=1]".into()),
            module_type: Some("password".into()),
            options: BTreeMap::new(),
            absent: false,
        };
        assert_eq!(unix.evaluate(&f).status, FindingStatus::Pass, "bracket controls compare as sets");
        let nullok = PamModule {
            options: [("nullok".to_string(), PamOption::Presence(Presence::Absent))].into(),
            ..unix
        };
        assert_eq!(nullok.evaluate(&f).status, FindingStatus::Pass);
    }

    #[test]
    fn includes_and_substacks_are_followed() {
        let f = facts(
            0,
            &[
                ("/etc/pam.d/passwd", Some("@include common-password\n")),
                ("/etc/pam.d/common-password", Some(COMMON_PASSWORD)),
                (
                    "/etc/pam.d/system-auth",
                    Some("auth required pam_env.so\npassword substack password-auth\n"),
                ),
                (
                    "/etc/pam.d/password-auth",
                    Some(
                        "auth required pam_deny.so\n-password required pam_pwhistory.so remember=24 use_authtok enforce_for_root\n",
                    ),
                ),
            ],
        );
        assert_eq!(pwhistory(&["/etc/pam.d/passwd"]).evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(
            pwhistory(&["/etc/pam.d/system-auth", "/etc/pam.d/password-auth", "/etc/pam.d/nope"])
                .evaluate(&f)
                .status,
            FindingStatus::Pass,
            "missing service files are skipped"
        );
        let absent =
            PamModule { absent: true, options: BTreeMap::new(), ..pwhistory(&["/etc/pam.d/system-auth"]) };
        assert_eq!(absent.evaluate(&f).status, FindingStatus::Fail);
        let broken = facts(0, &[("/etc/pam.d/passwd", Some("@include common-password\n"))]);
        assert_eq!(pwhistory(&["/etc/pam.d/passwd"]).evaluate(&broken).status, FindingStatus::Error);
        assert_eq!(pwhistory(&["/etc/pam.d/nope"]).evaluate(&broken).status, FindingStatus::Fail);
    }

    #[test]
    fn unreadable_service_files_without_root_are_an_error() {
        let f = facts(1000, &[("/etc/pam.d/common-password", None)]);
        let outcome = pwhistory(&["/etc/pam.d/common-password"]).evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("requires privilege: /etc/pam.d/common-password"));
    }

    #[test]
    fn words_keep_brackets_together() {
        assert_eq!(
            words("auth [success=1 default=ignore] pam_exec.so [a b\\]c] x=1"),
            vec!["auth", "[success=1 default=ignore]", "pam_exec.so", "[a b]c]", "x=1"]
        );
        assert!(
            serde_saphyr::from_str::<PamModule>("service_files: [/x]\nmodule: m\ntype: password\n").is_err()
        );
    }
}
