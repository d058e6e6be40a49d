//! The typed check kinds and their evaluation against [`Facts`].
//!
//! A rule holds one or more [`Check`]s (YAML, tagged by `type`, unknown fields rejected).
//! Each check declares the [`Probe`]s it needs and evaluates to an [`Outcome`]: a status
//! and evidence (what was examined, a bounded raw excerpt, what was expected, what was
//! found). A check never turns "could not read" into `fail`: missing privilege, a command
//! that is absent or timed out, a truncated source — all are `error` with a reason.
//!
//! # Layout
//! * [`expect`] — value expectations (`equals`, `one_of`, `min`/`max`, `matches`, …).
//! * [`config`] — sshd effective config, sysctl, key/value config files.
//! * [`files`] — existence, permissions/ownership, content patterns.
//! * [`system`] — packages, systemd services, kernel modules, mounts, audit rules, and the
//!   restricted `command` escape hatch.
//! * [`accounts`] — `/etc/passwd`, `/etc/shadow`, `/etc/group` properties (UID 0, empty
//!   passwords, password ageing, uniqueness, login shells of system accounts).
//! * [`boot`] — kernel command line arguments, running and configured in GRUB/BLS.
//! * [`pam`] — PAM modules, controls and options in service files (includes followed).
//! * [`firewall`] — an active host firewall (nftables, ufw, firewalld) and its inbound
//!   default policy.
//! * [`homes`] — interactive users' home directories and dot files (paths read from
//!   `/etc/passwd` on the host).
//! * [`walk`] — findings of the one shared filesystem walk (world-writable, unowned,
//!   ungrouped, SUID/SGID).

pub mod accounts;
pub mod boot;
pub mod config;
pub mod expect;
pub mod files;
pub mod firewall;
pub mod homes;
pub mod pam;
pub mod system;
pub mod walk;

use std::collections::BTreeSet;

use openwatch_common::domain::FindingStatus;
use openwatch_common::messages::v1::EvidenceV1;
use serde::{Deserialize, Serialize};

use crate::facts::{Facts, Probe, Section};

/// Compiled rule patterns, shared by every scan of this process: a corpus holds a few
/// hundred patterns, and compiling each on every evaluation took a quarter of a scan's
/// parse-and-evaluate time. Bounded: cleared when full (a reloaded corpus with new patterns).
static REGEX_CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<(String, bool), regex::Regex>>,
> = std::sync::LazyLock::new(Default::default);
const REGEX_CACHE_CAPACITY: usize = 4096;

/// `pattern` compiled (case-insensitively when asked), from [`REGEX_CACHE`] when seen before.
pub(crate) fn cached_regex(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, regex::Error> {
    let key = (pattern.to_owned(), case_insensitive);
    if let Some(regex) = REGEX_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
        return Ok(regex.clone());
    }
    let regex = regex::RegexBuilder::new(pattern).case_insensitive(case_insensitive).build()?;
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= REGEX_CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(key, regex.clone());
    Ok(regex)
}

/// Bytes of raw source kept in one result's evidence excerpt.
pub const EXCERPT_LIMIT: usize = 2048;

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `pass`, `fail`, `error` or `not_applicable`.
    pub status: FindingStatus,
    /// Why, for `error` and `not_applicable`.
    pub reason: Option<String>,
    /// What was examined and found.
    pub evidence: EvidenceV1,
}

impl Outcome {
    /// A pass or fail, decided by `ok`.
    pub fn decided(ok: bool, evidence: EvidenceV1) -> Self {
        let status = if ok { FindingStatus::Pass } else { FindingStatus::Fail };
        Self { status, reason: None, evidence }
    }

    /// Could not evaluate.
    pub fn error(reason: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            status: FindingStatus::Error,
            reason: Some(reason.into()),
            evidence: evidence(source, "", None, None),
        }
    }

    /// `path` exists but could not be read: for lack of privilege when the script did not
    /// run as root, otherwise for another reason (an ACL, a race).
    pub fn unreadable(facts: &Facts, path: &str, source: impl Into<String>) -> Self {
        let reason = if facts.privileged() { "cannot read file" } else { "requires privilege" };
        Self::error(format!("{reason}: {path}"), source)
    }

    /// Does not apply to this host.
    pub fn not_applicable(reason: impl Into<String>, evidence: EvidenceV1) -> Self {
        Self { status: FindingStatus::NotApplicable, reason: Some(reason.into()), evidence }
    }
}

/// Builds evidence with a bounded excerpt.
pub fn evidence(
    source: impl Into<String>,
    excerpt: &str,
    expected: Option<String>,
    actual: Option<String>,
) -> EvidenceV1 {
    EvidenceV1 { source: source.into(), excerpt: bounded(excerpt), expected, actual }
}

/// Cuts `text` to [`EXCERPT_LIMIT`] bytes on a character boundary, marking the cut.
pub fn bounded(text: &str) -> String {
    if text.len() <= EXCERPT_LIMIT {
        return text.to_owned();
    }
    let mut end = EXCERPT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &text[..end], text.len() - end)
}

/// The usable output of a bulk section, or the `error` outcome explaining why there is
/// none (privilege, missing command, timeout, truncation).
pub fn usable_section<'a>(
    facts: &'a Facts,
    probe: &Probe,
    name: &str,
    source: &str,
) -> Result<&'a Section, Box<Outcome>> {
    let Some(section) = facts.section(name) else {
        return Err(Box::new(Outcome::error("not collected", source)));
    };
    let reason = match section.exit_code {
        Some(0) => return Ok(section),
        None => "output exceeded the size limit".to_owned(),
        Some(124) => "timed out".to_owned(),
        Some(126 | 127) => "command not available on this host".to_owned(),
        Some(_) if probe.needs_root() && !facts.privileged() => "requires privilege".to_owned(),
        Some(code) => format!("command failed with exit status {code}"),
    };
    Err(Box::new(Outcome::error(reason, source)))
}

/// One typed check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A keyword of the effective sshd configuration (`sshd -T`).
    SshdConfig(config::SshdConfig),
    /// A kernel parameter, at runtime and/or as configured to persist.
    Sysctl(config::Sysctl),
    /// A key of a key/value configuration file (with include files).
    KvConfig(config::KvConfig),
    /// A path exists (or must not).
    FileExists(files::FileExists),
    /// Mode (at most), owner and group of paths.
    FilePermissions(files::FilePermissions),
    /// A pattern is present in (or absent from) files.
    FileContent(files::FileContent),
    /// A package is installed (or absent).
    Package(system::Package),
    /// A systemd service's enablement, activity or mask.
    Service(system::Service),
    /// A kernel module is not loaded and cannot be loaded.
    KernelModuleDisabled(system::KernelModuleDisabled),
    /// A mount point is separate, and/or carries options.
    Mount(system::Mount),
    /// An audit rule is loaded.
    AuditRule(system::AuditRule),
    /// Account database properties (`/etc/passwd`, `/etc/shadow`).
    Accounts(accounts::Accounts),
    /// A fixed read-only command's exit status and/or output.
    Command(system::CommandCheck),
    /// A kernel command line argument, running and in every configured boot entry.
    GrubCmdline(boot::GrubCmdline),
    /// A PAM module (type, control, options) in service files, includes followed.
    PamModule(pam::PamModule),
    /// An active host firewall, optionally denying inbound traffic by default.
    Firewall(firewall::Firewall),
    /// No finding of a kind in the shared filesystem walk outside an allow list.
    FilesystemWalk(walk::FilesystemWalk),
    /// Interactive users' home directories or the dot files in them.
    HomeFiles(homes::HomeFiles),
}

impl Check {
    /// The probes this check needs (`id` makes command sections unique per rule).
    pub fn probes(&self, id: &str, probes: &mut BTreeSet<Probe>) {
        match self {
            Check::SshdConfig(_) => {
                probes.insert(Probe::SshdEffective);
            }
            Check::Sysctl(c) => c.probes(probes),
            Check::KvConfig(c) => c.probes(probes),
            Check::FileExists(c) => {
                probes.insert(Probe::Stat(c.path.clone()));
            }
            Check::FilePermissions(c) => {
                probes.insert(Probe::Stat(c.path.clone()));
            }
            Check::FileContent(c) => {
                probes.insert(Probe::File(c.path.clone()));
            }
            Check::Package(_) => {
                probes.insert(Probe::Packages);
            }
            Check::Service(_) => {
                probes.insert(Probe::SystemdUnitFiles);
                probes.insert(Probe::SystemdUnits);
            }
            Check::KernelModuleDisabled(_) => {
                probes.insert(Probe::LoadedModules);
                probes.insert(Probe::ModprobeConfig);
            }
            Check::Mount(_) => {
                probes.insert(Probe::Mounts);
            }
            Check::AuditRule(_) => {
                probes.insert(Probe::AuditRules);
            }
            Check::Accounts(c) => c.probes(probes),
            Check::Command(c) => {
                probes.insert(Probe::Command { id: id.to_owned(), command: c.command.clone() });
            }
            Check::GrubCmdline(c) => c.probes(probes),
            Check::PamModule(c) => c.probes(probes),
            Check::Firewall(c) => c.probes(probes),
            Check::FilesystemWalk(c) => c.probes(probes),
            Check::HomeFiles(c) => c.probes(probes),
        }
    }

    /// Evaluates against collected facts; `id` as given to [`Check::probes`].
    pub fn evaluate(&self, id: &str, facts: &Facts) -> Outcome {
        match self {
            Check::SshdConfig(c) => c.evaluate(facts),
            Check::Sysctl(c) => c.evaluate(facts),
            Check::KvConfig(c) => c.evaluate(facts),
            Check::FileExists(c) => c.evaluate(facts),
            Check::FilePermissions(c) => c.evaluate(facts),
            Check::FileContent(c) => c.evaluate(facts),
            Check::Package(c) => c.evaluate(facts),
            Check::Service(c) => c.evaluate(facts),
            Check::KernelModuleDisabled(c) => c.evaluate(facts),
            Check::Mount(c) => c.evaluate(facts),
            Check::AuditRule(c) => c.evaluate(facts),
            Check::Accounts(c) => c.evaluate(facts),
            Check::Command(c) => c.evaluate(id, facts),
            Check::GrubCmdline(c) => c.evaluate(facts),
            Check::PamModule(c) => c.evaluate(facts),
            Check::Firewall(c) => c.evaluate(facts),
            Check::FilesystemWalk(c) => c.evaluate(facts),
            Check::HomeFiles(c) => c.evaluate(facts),
        }
    }

    /// Problems a loader should reject (unsafe paths, invalid patterns, empty lists).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Check::SshdConfig(c) => c.expect.validate(),
            Check::Sysctl(c) if !crate::facts::script::is_safe_sysctl_key(&c.key) => {
                Err(format!("`key` {:?} is not a kernel parameter name", c.key))
            }
            Check::Sysctl(c) => c.expect.validate(),
            Check::KvConfig(c) => c.validate(),
            Check::FileExists(c) => files::validate_path(&c.path),
            Check::FilePermissions(c) => c.validate(),
            Check::FileContent(c) => c.validate(),
            Check::Command(c) => c.validate(),
            Check::GrubCmdline(c) => c.validate(),
            Check::PamModule(c) => c.validate(),
            Check::Firewall(c) => c.validate(),
            Check::FilesystemWalk(c) => c.validate(),
            Check::HomeFiles(c) => c.validate(),
            Check::Package(_)
            | Check::Service(_)
            | Check::KernelModuleDisabled(_)
            | Check::Mount(_)
            | Check::AuditRule(_)
            | Check::Accounts(_) => Ok(()),
        }
    }
}
