//! Builds the one POSIX `sh` script that collects every requested fact.
//!
//! Layout of the output: every section is framed by marker lines carrying a per-scan
//! random nonce (so file content can never forge a marker):
//!
//! ```text
//! @@OW-<nonce> BEGIN <section>
//! …command output (capped)…
//! @@OW-<nonce> RC <exit status>
//! @@OW-<nonce> END <section>
//! ```
//!
//! A missing `RC` line means the section was cut (size cap reached). Each probe runs under
//! `timeout` so one hung command cannot eat the scan. Files are read in one loop with
//! their own markers (`FILE <path> CAP <n>` … `FILE-END`, or `MISSING` / `UNREADABLE` /
//! `NOT-A-FILE`), and all paths are `stat`ed by one `stat` call. The script only reads.
//!
//! The filesystem walk ([`Probe::FilesystemWalk`], [`WALK_COMMAND`]) runs beside all other
//! probes, under its own time budget ([`ScriptOptions::walk_timeout_secs`]) instead of the
//! per-probe one; its section comes last in the output.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::Probe;

/// Limits baked into the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Seconds one probe command may run.
    pub probe_timeout_secs: u32,
    /// Bytes kept of one section's output.
    pub section_cap_bytes: usize,
    /// Bytes kept of one file.
    pub file_cap_bytes: usize,
    /// Seconds the filesystem walk may run (keep it below the transport's exec timeout).
    pub walk_timeout_secs: u32,
}

impl Default for ScriptOptions {
    /// 10 s per probe, 8 MiB per section, 512 KiB per file, 60 s for the filesystem walk.
    fn default() -> Self {
        Self {
            probe_timeout_secs: 10,
            section_cap_bytes: 8 * 1024 * 1024,
            file_cap_bytes: 512 * 1024,
            walk_timeout_secs: 60,
        }
    }
}

/// Characters allowed in a path or glob given to a probe: enough for every real path of
/// the corpus, and nothing the shell would interpret beyond globbing.
pub fn is_safe_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("..")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@*?:".contains(&b))
}

/// Characters allowed in a kernel parameter name (`net.ipv4.conf.all.rp_filter`, or the
/// `/` spelling).
pub fn is_safe_sysctl_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// A fresh random nonce for the section markers.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Fixed sections every scan collects: platform detection and identity.
const ALWAYS: &[(&str, &str)] =
    &[("os-release", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"), ("id", "id -u")];

/// Section name of the filesystem walk.
pub const WALK_SECTION: &str = "walk";

/// The filesystem walk over local filesystems (ext2/3/4, xfs, btrfs as listed by
/// `findmnt`), never crossing into another mount (`-xdev`, so network, pseudo and
/// temporary filesystems mounted below are not entered; `/proc`, `/sys`, `/dev` and `/run`
/// are pruned in case they are bind-mounted). One pass prints every finding kind, tagged
/// (GNU find's `,` operator evaluates all branches for each path):
///
/// * `WW <path>` — world-writable regular file;
/// * `WD <path>` — world-writable directory without the sticky bit;
/// * `NU <path>` / `NG <path>` — owner / group matches no known user / group;
/// * `SS <path>` — regular file with the SUID or SGID bit.
///
/// Speed, since the walk is the slowest part of a scan (it must `stat` every file, where a
/// plain `find` reads directory entries only):
///
/// * owners are compared numerically against the account database (`getent`), not by
///   `-nouser`/`-nogroup`, which look every file's owner up;
/// * a file owned by `root:root` without the SUID, SGID or world-write bit (most of them)
///   is dismissed after three tests;
/// * each mount is split: one `find` covers depth 0–2, then the directories at depth 2 on
///   the same device are walked by two `find`s in parallel (`xargs -P 2`, four start
///   points per `find`), with line-buffered output (`stdbuf -oL -eL`) so lines of the two
///   never interleave — without `stdbuf` the batches run one at a time. The prune tests run
///   in the first `find` only, where `/proc` and the like can appear.
///
/// Framing lines: `MOUNT <m>` before and `DONE <m> <status of the last find batch>` after
/// each mount, `SKIP <m>` for a mount point with escaped blanks (not walked), `E <message>`
/// for each `find` error (stderr, printed after that mount's findings), and `ERR <reason>`
/// (exit 3) when GNU find (`-printf`), `xargs`, `findmnt` or `timeout` is missing. A cut
/// walk (time budget) ends without its last `DONE` and exits 124.
pub const WALK_COMMAND: &str = r#"command -v timeout >/dev/null 2>&1 || { echo 'ERR timeout(1) is not available, so the walk cannot be bounded'; exit 3; }
find / -maxdepth 0 -printf '' >/dev/null 2>&1 || { echo 'ERR find does not support -printf (GNU find is required; busybox find is not enough)'; exit 3; }
command -v findmnt >/dev/null 2>&1 || { echo 'ERR findmnt is not available'; exit 3; }
command -v xargs >/dev/null 2>&1 || { echo 'ERR xargs is not available'; exit 3; }
set -f; exec 3>&1
KU=$( (getent passwd 2>/dev/null || cat /etc/passwd) | cut -d: -f3 | sort -un | sed 's/^/! -uid /' | tr '\n' ' ')
KG=$( (getent group 2>/dev/null || cat /etc/group) | cut -d: -f3 | sort -un | sed 's/^/! -gid /' | tr '\n' ' ')
[ -n "$KU" ] && [ -n "$KG" ] || { echo 'ERR the account databases could not be read'; exit 3; }
if command -v stdbuf >/dev/null 2>&1; then SB='stdbuf -oL -eL'; J=2; else SB=; J=1; fi
export KU KG SB
W='set -f; D=$1; shift; for a do shift; case $a in "$MD "*) set -- "$@" "${a#* }";; esac; done; [ $# -eq 0 ] || exec $SB find "$@" $D -xdev $P \( -uid 0 -gid 0 ! -perm /6002 \) -o \( \( -type f -perm -0002 -printf "WW %p\n" \) , \( -type d -perm -0002 ! -perm -1000 -printf "WD %p\n" \) , \( $KU -printf "NU %p\n" \) , \( $KG -printf "NG %p\n" \) , \( -type f \( -perm -4000 -o -perm -2000 \) -printf "SS %p\n" \) \)'
PR='( -path /proc -o -path /sys -o -path /dev -o -path /run ) -prune -o'
for m in $(findmnt -rn -o TARGET -t ext2,ext3,ext4,xfs,btrfs | sort -u); do
case "$m" in *\\*) echo "SKIP $m"; continue;; esac
echo "MOUNT $m"
MD=$(stat -c %d "$m") || { echo "E cannot stat mount point $m"; echo "DONE $m 1"; continue; }
export MD
e=$( { P=$PR sh -c "$W" sh '-maxdepth 2' "$MD $m"; find "$m" -xdev -mindepth 2 -maxdepth 2 $PR -type d -printf '%D %p\0' | P= xargs -0 -r -n 4 -P $J sh -c "$W" sh '-mindepth 1'; } 2>&1 >&3); rc=$?
[ -n "$e" ] && printf '%s\n' "$e" | sed 's/^/E /'
echo "DONE $m $rc"
done"#;

/// The section name and command of a bulk probe (`None` for files, stats, commands and
/// the walk).
pub fn bulk_command(probe: &Probe) -> Option<(&'static str, &'static str)> {
    Some(match probe {
        Probe::SshdEffective => ("sshd", "sshd -T"),
        Probe::Packages => (
            "packages",
            "if command -v dpkg-query >/dev/null 2>&1; then echo format=dpkg; \
             dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}\\n'; \
             elif command -v rpm >/dev/null 2>&1; then echo format=rpm; \
             rpm -qa --qf 'ii |%{NAME}|%{VERSION}-%{RELEASE}\\n'; else exit 127; fi",
        ),
        // Without a running systemd (containers), systemctl spends ~0.5 s failing to reach
        // it: report "not available" at once instead (exit 127).
        Probe::SystemdUnitFiles => (
            "unit-files",
            "[ -d /run/systemd/system ] || exit 127; systemctl list-unit-files --no-legend --no-pager --full",
        ),
        Probe::SystemdUnits => (
            "units",
            "[ -d /run/systemd/system ] || exit 127; systemctl list-units --all --no-legend --no-pager --full --plain",
        ),
        Probe::Mounts => ("mounts", "findmnt -rn -o TARGET,FSTYPE,OPTIONS"),
        // Exit 3 with a message: a kernel without /proc/modules (no loadable module support,
        // or a sandbox hiding it) is not a failed command.
        Probe::LoadedModules => (
            "modules",
            "[ -e /proc/modules ] || { echo \"/proc/modules does not exist: this kernel has no loadable module support, or hides it\"; exit 3; }; cat /proc/modules",
        ),
        Probe::ModprobeConfig => ("modprobe", "modprobe --showconfig"),
        Probe::AuditRules => ("audit-rules", "auditctl -l"),
        Probe::Nftables => ("nft", "nft list ruleset"),
        Probe::Ufw => ("ufw", "ufw status verbose"),
        Probe::Firewalld => (
            "firewalld",
            "firewall-cmd --state && firewall-cmd --get-default-zone && firewall-cmd --list-all",
        ),
        Probe::HomeDirectories => (crate::checks::homes::HOMES_SECTION, crate::checks::homes::HOMES_COMMAND),
        Probe::File(_)
        | Probe::Stat(_)
        | Probe::Command { .. }
        | Probe::FilesystemWalk
        | Probe::SysctlRuntime(_) => return None,
    })
}

/// Builds the collection script for `probes`. Paths that fail [`is_safe_path`] are
/// skipped (rules are validated at load time, so this is a second line of defence).
pub fn build(probes: &BTreeSet<Probe>, nonce: &str, options: &ScriptOptions) -> String {
    let mut script = String::with_capacity(4096);
    let _ = write!(
        script,
        "# OpenWatch fact collection (generated; read-only)\n\
         export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         N='{nonce}'; T={timeout}; C={cap}; F={file_cap}; W={walk_timeout}\n\
         if command -v timeout >/dev/null 2>&1; then TO=\"timeout $T\"; else TO=; fi\n\
         ow_run() {{\n\
         \x20 printf '@@OW-%s BEGIN %s\\n' \"$N\" \"$1\"\n\
         \x20 {{ $TO sh -c \"$2\"; printf '\\n@@OW-%s RC %s\\n' \"$N\" \"$?\"; }} 2>/dev/null | head -c \"$C\"\n\
         \x20 printf '\\n@@OW-%s END %s\\n' \"$N\" \"$1\"\n\
         }}\n",
        timeout = options.probe_timeout_secs,
        cap = options.section_cap_bytes,
        file_cap = options.file_cap_bytes,
        walk_timeout = options.walk_timeout_secs,
    );
    let walk = probes.contains(&Probe::FilesystemWalk);
    if walk {
        // The walk starts first and runs beside every other probe (it is the slowest, and
        // the others mostly use one CPU); its output waits in the pipe and is copied out
        // by the `cat` at the end, after every other section. The other probes read
        // /dev/null, never the pipe. Its own budget, not $T.
        script.push_str("{ TO=${TO:+timeout $W}; ");
        push_run(&mut script, WALK_SECTION, WALK_COMMAND);
        script.push_str("} | {\n{\n");
    }
    for (name, command) in ALWAYS {
        push_run(&mut script, name, command);
    }
    let mut files = Vec::new();
    let mut stats = Vec::new();
    let mut sysctl_keys = Vec::new();
    let mut command_sections: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for probe in probes {
        match probe {
            Probe::File(path) if is_safe_path(path) => files.push(path.as_str()),
            Probe::Stat(path) if is_safe_path(path) => stats.push(path.as_str()),
            Probe::SysctlRuntime(key) if is_safe_sysctl_key(key) => sysctl_keys.push(key.as_str()),
            // The same command for several checks runs once; the others get an alias.
            Probe::Command { id, command } => match command_sections.get(command.as_str()) {
                Some(first) => {
                    let _ = writeln!(script, "printf '@@OW-%s ALIAS %s %s\\n' \"$N\" 'cmd:{id}' '{first}'");
                }
                None => {
                    let name = format!("cmd:{id}");
                    push_run(&mut script, &name, command);
                    command_sections.insert(command.as_str(), name);
                }
            },
            other => {
                if let Some((name, command)) = bulk_command(other) {
                    push_run(&mut script, name, command);
                }
            }
        }
    }
    if !sysctl_keys.is_empty() {
        // Only the parameters rules ask for (`sysctl -a` reads every one, ~60 ms); `-e`
        // leaves out those this kernel lacks (their rules are not applicable).
        // Errors go to the section (a parameter only root may read says so there); the
        // status is not the verdict on the other parameters.
        push_run(
            &mut script,
            "sysctl",
            &format!(
                "command -v sysctl >/dev/null || exit 127; sysctl -e {} 2>&1; exit 0",
                sysctl_keys.join(" ")
            ),
        );
    }
    if !stats.is_empty() {
        // Numeric owners only; the parser names them from /etc/passwd and /etc/group.
        push_run(&mut script, "stat", &format!("stat -L -c '%a|%u|%g|||%F|%n' {}", stats.join(" ")));
        for accounts in ["/etc/passwd", "/etc/group"] {
            if !files.contains(&accounts) {
                files.push(accounts);
            }
        }
    }
    if !files.is_empty() {
        let _ = write!(
            script,
            "printf '@@OW-%s BEGIN files\\n' \"$N\"\n\
             for f in {paths}; do\n\
             \x20 if [ ! -e \"$f\" ]; then printf '@@OW-%s FILE %s MISSING\\n' \"$N\" \"$f\"\n\
             \x20 elif [ ! -f \"$f\" ]; then printf '@@OW-%s FILE %s NOT-A-FILE\\n' \"$N\" \"$f\"\n\
             \x20 elif [ ! -r \"$f\" ]; then printf '@@OW-%s FILE %s UNREADABLE\\n' \"$N\" \"$f\"\n\
             \x20 else printf '@@OW-%s FILE %s CAP %s\\n' \"$N\" \"$f\" \"$F\"; head -c $((F + 1)) \"$f\"; \
             printf '\\n@@OW-%s FILE-END\\n' \"$N\"; fi\n\
             done\n\
             printf '@@OW-%s RC 0\\n@@OW-%s END files\\n' \"$N\" \"$N\"\n",
            paths = files.join(" "),
        );
    }
    if walk {
        script.push_str("} </dev/null\ncat\n}\n");
    }
    script
}

fn push_run(script: &mut String, name: &str, command: &str) {
    let _ = writeln!(script, "ow_run '{}' '{}'", name, command.replace('\'', "'\\''"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_shared_by_several_checks_runs_once() {
        let command = |id: &str| Probe::Command { id: id.into(), command: "ufw status verbose".into() };
        let probes = BTreeSet::from([command("a#0"), command("a#1"), command("b#0")]);
        let script = build(&probes, "abc", &ScriptOptions::default());
        assert_eq!(script.matches("ufw status verbose").count(), 1);
        assert!(script.contains("ALIAS %s %s\\n' \"$N\" 'cmd:a#1' 'cmd:a#0'"));
        assert!(script.contains("'cmd:b#0' 'cmd:a#0'"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(is_safe_path("/etc/sysctl.d/*.conf"));
        assert!(is_safe_path("/etc/ssh/sshd_config"));
        assert!(!is_safe_path("etc/passwd"));
        assert!(!is_safe_path("/etc/$(reboot)"));
        assert!(!is_safe_path("/etc/a b"));
        assert!(!is_safe_path("/etc/../root/x"));
        assert!(!is_safe_path("/etc/x;rm"));
    }

    #[test]
    fn the_script_holds_each_probe_once_and_skips_unsafe_paths() {
        let probes = BTreeSet::from([
            Probe::SysctlRuntime("kernel.randomize_va_space".into()),
            Probe::SysctlRuntime("net.ipv4.ip_forward".into()),
            Probe::SysctlRuntime("x;reboot".into()),
            Probe::File("/etc/login.defs".into()),
            Probe::File("/etc/x`id`".into()),
            Probe::Stat("/etc/passwd".into()),
            Probe::Stat("/etc/shadow".into()),
        ]);
        let script = build(&probes, "abc", &ScriptOptions::default());
        assert_eq!(script.matches("sysctl -e").count(), 1);
        assert!(
            script.contains("sysctl -e kernel.randomize_va_space net.ipv4.ip_forward 2>&1"),
            "one call, unsafe keys left out"
        );
        assert!(!script.contains("`id`"));
        assert!(script.contains("stat -L -c '\\''%a|%u|%g|||%F|%n'\\'' /etc/passwd /etc/shadow"));
        assert!(
            script.contains("for f in /etc/login.defs /etc/passwd /etc/group; do"),
            "owner names come from these"
        );
    }

    #[test]
    fn the_walk_runs_beside_the_other_probes_under_its_own_budget_and_firewalls_are_bulk_sections() {
        let probes = BTreeSet::from([Probe::FilesystemWalk, Probe::Nftables, Probe::File("/etc/x".into())]);
        let script =
            build(&probes, "abc", &ScriptOptions { walk_timeout_secs: 42, ..ScriptOptions::default() });
        assert!(script.contains("W=42"));
        let walk = script.find("ow_run 'walk'").unwrap();
        assert!(walk < script.find("ow_run 'os-release'").unwrap(), "started first");
        assert!(script[..walk].ends_with("{ TO=${TO:+timeout $W}; "));
        assert!(script.ends_with("} </dev/null\ncat\n}\n"), "the others never read the walk's pipe");
        assert!(script.contains("ow_run 'nft' 'nft list ruleset'"));
        let without = build(&BTreeSet::from([Probe::Nftables]), "abc", &ScriptOptions::default());
        assert!(!without.contains("ow_run 'walk'") && !without.contains("cat\n}"));
    }
}
