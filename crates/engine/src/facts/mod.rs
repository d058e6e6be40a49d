//! Facts: everything the rules of one scan need from a host, collected in one round trip.
//!
//! Each check declares the [`Probe`]s it needs. The engine merges the probes of all
//! selected rules, [`script::build`]s one POSIX `sh` script that gathers them with a few
//! bulk commands (one `sysctl -e` for every parameter asked, one package query, one `stat` over every path, one
//! loop over every file to read, …), runs it once, and [`parse::parse`]s the sectioned
//! output into [`Facts`]. Every probe knows whether it needs root: without privilege, a
//! probe that could not read its source yields an `error` result ("requires privilege"),
//! never a `fail`.

pub mod parse;
pub mod script;

use std::collections::BTreeMap;

use crate::platform::Platform;

/// Something to collect from a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Effective sshd configuration (`sshd -T`).
    SshdEffective,
    /// One runtime kernel parameter; all of them are read by one `sysctl -e` call.
    SysctlRuntime(String),
    /// Installed packages (dpkg or rpm database).
    Packages,
    /// systemd unit files and their enablement state.
    SystemdUnitFiles,
    /// systemd units and their active state.
    SystemdUnits,
    /// Mounted filesystems with options (`findmnt`).
    Mounts,
    /// Loaded kernel modules (`/proc/modules`).
    LoadedModules,
    /// Effective modprobe configuration (`modprobe --showconfig`).
    ModprobeConfig,
    /// Loaded audit rules (`auditctl -l`).
    AuditRules,
    /// The nftables ruleset (`nft list ruleset`).
    Nftables,
    /// ufw status and default policies (`ufw status verbose`).
    Ufw,
    /// firewalld state, default zone and that zone's settings (`firewall-cmd --state`,
    /// `--get-default-zone`, `--list-all`).
    Firewalld,
    /// One pruned walk of the local filesystems listing world-writable files,
    /// world-writable directories without the sticky bit, unowned and ungrouped files,
    /// and SUID/SGID files (see [`script::WALK_COMMAND`]). Shared by every walk rule.
    FilesystemWalk,
    /// Interactive accounts with `stat`s of their home directories and the dot files in
    /// them (see [`crate::checks::homes::HOMES_COMMAND`]).
    HomeDirectories,
    /// Content of files matching a path or shell glob (size capped).
    File(String),
    /// Metadata (mode, owner, group, type) of a path or shell glob.
    Stat(String),
    /// A fixed command from a rule's `command` check, by its rule-scoped id.
    Command {
        /// Section id (unique per rule and check).
        id: String,
        /// The shell command line.
        command: String,
    },
}

impl Probe {
    /// Whether the probe's source is normally readable only by root.
    pub fn needs_root(&self) -> bool {
        match self {
            Probe::SshdEffective
            | Probe::AuditRules
            | Probe::Nftables
            | Probe::Ufw
            | Probe::Firewalld
            | Probe::FilesystemWalk
            | Probe::HomeDirectories => true,
            Probe::File(path) | Probe::Stat(path) => ROOT_ONLY_PATHS.iter().any(|p| path.starts_with(p)),
            _ => false,
        }
    }
}

/// Paths (prefixes) that are not world-readable on the supported distributions.
const ROOT_ONLY_PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/security/opasswd",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/grub2/user.cfg",
    "/boot/grub2/grubenv",
    "/boot/loader/",
    "/etc/sudoers",
    "/etc/audit/",
    "/var/log/audit",
];

/// The output of one section of the collection script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Captured standard output (size capped).
    pub output: String,
    /// Exit status of the probe command; `None` when the section was cut (size cap or
    /// overall timeout) before the command finished.
    pub exit_code: Option<i32>,
}

impl Section {
    /// Exit status 124 is `timeout`'s "the probe ran out of time".
    pub fn timed_out(&self) -> bool {
        self.exit_code == Some(124)
    }

    /// 126/127: the command does not exist or cannot be run on this host.
    pub fn command_missing(&self) -> bool {
        matches!(self.exit_code, Some(126 | 127))
    }
}

/// What reading one file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFact {
    /// The content (capped at the script's file size limit).
    Content {
        /// The text read.
        text: String,
        /// Whether the file was larger than the cap.
        truncated: bool,
    },
    /// The file does not exist.
    Missing,
    /// The file exists but could not be read (permissions).
    Unreadable,
    /// The path exists but is not a regular file (a directory, a device, …).
    NotAFile,
}

/// Metadata of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFact {
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Owner name (or the uid when unknown).
    pub owner: String,
    /// Group name (or the gid when unknown).
    pub group: String,
    /// `stat`'s file type (`regular file`, `directory`, `symbolic link`, …).
    pub file_type: String,
}

/// Everything collected from one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The detected platform (from `/etc/os-release`).
    pub platform: Option<Platform>,
    /// The uid the script ran as (0 = root).
    pub uid: Option<u32>,
    /// Bulk sections by name (`sshd`, `sysctl`, `packages`, …, `cmd:<id>`).
    pub sections: BTreeMap<String, Section>,
    /// Files read, by path (globs expanded).
    pub files: BTreeMap<String, FileFact>,
    /// Stat results by path (globs expanded); absent paths are not present.
    pub stats: BTreeMap<String, StatFact>,
    /// Paths or globs that were stat'ed (so an absent key means "does not exist").
    pub stat_requested: Vec<String>,
    /// The filesystem walk was switched off for this scan (`--no-walk`): walk checks are
    /// `not_applicable` instead of `error`.
    pub walk_disabled: bool,
    /// Installed package names, built from the `packages` section on first use (hundreds
    /// of package rules and `when` conditions ask).
    pub installed_index: std::sync::OnceLock<Option<std::collections::HashSet<String>>>,
}

impl Facts {
    /// Whether the script ran as root.
    pub fn privileged(&self) -> bool {
        self.uid == Some(0)
    }

    /// The named bulk section.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }

    /// Whether `package` is installed (dpkg `ii`/`hi`, or any rpm line); `None` when the
    /// package database could not be read.
    pub fn package_installed(&self, package: &str) -> Option<bool> {
        self.installed_index
            .get_or_init(|| {
                let section = self.section("packages").filter(|s| s.exit_code == Some(0))?;
                Some(
                    section
                        .output
                        .lines()
                        .filter_map(|line| {
                            let mut parts = line.split('|');
                            let status = parts.next()?;
                            let name = parts.next()?;
                            installed_status(status).then(|| name.to_owned())
                        })
                        .collect(),
                )
            })
            .as_ref()
            .map(|installed| installed.contains(package))
    }

    /// Files whose path matches `pattern` (a path, or a shell glob with `*`), in path order.
    pub fn files_matching<'a>(
        &'a self,
        pattern: &str,
    ) -> impl Iterator<Item = (&'a String, &'a FileFact)> + use<'a> {
        entries_matching(&self.files, pattern)
    }

    /// Stat results whose path matches `pattern` (a path or shell glob).
    pub fn stats_matching<'a>(
        &'a self,
        pattern: &str,
    ) -> impl Iterator<Item = (&'a String, &'a StatFact)> + use<'a> {
        entries_matching(&self.stats, pattern)
    }
}

/// Whether a package database status (the `packages` section's first field) means
/// installed: dpkg `ii` (or `hi`, installed and held); rpm lines are written `ii`.
pub fn installed_status(status: &str) -> bool {
    status.starts_with("ii") || status.starts_with("hi")
}

/// Entries of a path-keyed map matching `pattern`: only the keys that share the pattern's
/// literal prefix (the part before its first `*`, `?` or `[`) are glob-matched, so a scan
/// with thousands of stat results does not glob every one for every rule.
fn entries_matching<'a, V>(
    map: &'a BTreeMap<String, V>,
    pattern: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> + use<'a, V> {
    let pattern = pattern.to_owned();
    let prefix = pattern[..pattern.find(['*', '?', '[']).unwrap_or(pattern.len())].to_owned();
    map.range(prefix.clone()..)
        .take_while(move |(path, _)| path.starts_with(&prefix))
        .filter(move |(path, _)| glob_matches(&pattern, path))
}

#[cfg(test)]
impl Facts {
    /// Facts for unit tests: bulk sections that exited 0, and files with their content
    /// (`None`: the file exists but is unreadable).
    pub(crate) fn for_test(uid: u32, sections: &[(&str, &str)], files: &[(&str, Option<&str>)]) -> Facts {
        Facts {
            uid: Some(uid),
            sections: sections
                .iter()
                .map(|(name, output)| {
                    (name.to_string(), Section { output: output.to_string(), exit_code: Some(0) })
                })
                .collect(),
            files: files
                .iter()
                .map(|(path, text)| {
                    let fact = match text {
                        Some(text) => FileFact::Content { text: text.to_string(), truncated: false },
                        None => FileFact::Unreadable,
                    };
                    (path.to_string(), fact)
                })
                .collect(),
            ..Facts::default()
        }
    }
}

/// Minimal shell-glob matching (`*` within one path component, `?`), enough to map
/// expanded paths back to the pattern that produced them.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    fn matches(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && matches(p, &s[1..])),
            (Some(b'?'), Some(&c)) if c != b'/' => matches(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &s[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_component() {
        assert!(glob_matches("/etc/sysctl.d/*.conf", "/etc/sysctl.d/99-x.conf"));
        assert!(!glob_matches("/etc/sysctl.d/*.conf", "/etc/sysctl.d/sub/x.conf"));
        assert!(glob_matches("/etc/login.defs", "/etc/login.defs"));
        assert!(!glob_matches("/etc/login.defs", "/etc/login.defs.bak"));
        assert!(glob_matches("/etc/cron.?", "/etc/cron.d"));
    }

    #[test]
    fn matching_entries_come_from_the_literal_prefix_only() {
        let map: BTreeMap<String, u8> =
            ["/etc/a", "/etc/a-b", "/etc/a/x.conf", "/etc/a/y.conf", "/etc/ab", "/usr/a"]
                .iter()
                .map(|p| ((*p).to_owned(), 0))
                .collect();
        let keys =
            |pattern: &str| entries_matching(&map, pattern).map(|(k, _)| k.as_str()).collect::<Vec<_>>();
        assert_eq!(keys("/etc/a"), ["/etc/a"]);
        assert_eq!(keys("/etc/a/*.conf"), ["/etc/a/x.conf", "/etc/a/y.conf"]);
        assert_eq!(keys("/etc/a*"), ["/etc/a", "/etc/a-b", "/etc/ab"]);
        assert_eq!(keys("/*/a"), ["/etc/a", "/usr/a"]);
        assert!(keys("/nope/*").is_empty());
    }

    #[test]
    fn root_only_sources_are_flagged() {
        assert!(Probe::File("/etc/shadow".into()).needs_root());
        assert!(Probe::SshdEffective.needs_root());
        assert!(!Probe::File("/etc/passwd".into()).needs_root());
        assert!(!Probe::SysctlRuntime("kernel.ostype".into()).needs_root());
    }
}
