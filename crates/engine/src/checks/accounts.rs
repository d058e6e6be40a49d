//! Account database checks: `/etc/passwd`, `/etc/shadow`, `/etc/group`, with `/etc/shells`
//! and `/etc/login.defs` where a property needs them.
//!
//! Evidence names accounts, groups, ids, ages and shells, never a password hash: a
//! password field is only ever described as empty, locked or set.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Outcome, evidence};
use crate::facts::{Facts, FileFact, Probe};

const PASSWD: &str = "/etc/passwd";
const SHADOW: &str = "/etc/shadow";
const GROUP: &str = "/etc/group";
const SHELLS: &str = "/etc/shells";
const LOGIN_DEFS: &str = "/etc/login.defs";

/// `UID_MIN` when `/etc/login.defs` does not set it (shadow-utils' default).
const DEFAULT_UID_MIN: u32 = 1000;

/// System accounts that legitimately keep a login shell (CIS exempts them): `root`, and
/// the `sync`, `shutdown` and `halt` accounts whose "shells" run one command.
const SHELL_EXEMPT: &[&str] = &["root", "sync", "shutdown", "halt"];

/// Account database properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "property", rename_all = "snake_case", deny_unknown_fields)]
pub enum Accounts {
    /// Only `root` has UID 0.
    Uid0OnlyRoot,
    /// No account has an empty password field in `/etc/shadow`.
    NoEmptyPasswords,
    /// Every account with a password has a maximum password age of at most `max_days`.
    PasswordMaxDays {
        /// Upper bound.
        max_days: u32,
    },
    /// Every account with a password has a minimum password age of at least `min_days`.
    PasswordMinDays {
        /// Lower bound.
        min_days: u32,
    },
    /// Every account with a password is warned at least `min_days` before it expires.
    PasswordWarnDays {
        /// Lower bound.
        min_days: u32,
    },
    /// Every account with a password is disabled at most `max_days` after its password
    /// expired (the shadow "inactive" field is set and within the bound).
    PasswordInactiveDays {
        /// Upper bound.
        max_days: u32,
    },
    /// No account's last password change lies in the future (by this scanner's clock).
    PasswordLastChangeInPast,
    /// No legacy `+` NIS entries in passwd, shadow or group.
    NoLegacyPlusEntries,
    /// No two accounts share a UID.
    UniqueUids,
    /// No two groups share a GID.
    UniqueGids,
    /// No two accounts share a name.
    UniqueUserNames,
    /// No two groups share a name.
    UniqueGroupNames,
    /// Every primary GID in `/etc/passwd` exists in `/etc/group`.
    PasswdGroupsExist,
    /// The `shadow` group has no members, and no account has it as primary group.
    ShadowGroupEmpty,
    /// Accounts below `UID_MIN` (from `/etc/login.defs`), except root, sync, shutdown and
    /// halt, have no login shell (a shell listed in `/etc/shells` other than `nologin`).
    SystemAccountsNoLoginShell,
    /// Accounts without a login shell have a locked password (`!` or `*`), root excepted.
    NoLoginShellAccountsLocked,
    /// `root` has a password set or is locked (its password field is not empty).
    RootPasswordSetOrLocked,
}

/// What a password field says, without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordState {
    Empty,
    Locked,
    Set,
}

fn password_state(field: &str) -> PasswordState {
    if field.is_empty() {
        PasswordState::Empty
    } else if field.starts_with('!') || field.starts_with('*') {
        PasswordState::Locked
    } else {
        PasswordState::Set
    }
}

/// The files read, split into `:` fields per non-blank line.
struct Databases<'a> {
    texts: BTreeMap<&'static str, &'a str>,
}

impl<'a> Databases<'a> {
    fn entries(&self, file: &str) -> Vec<Vec<&'a str>> {
        self.texts
            .get(file)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split(':').collect()).collect())
            .unwrap_or_default()
    }

    /// Lines of `/etc/shells` naming a shell (comments and blanks skipped).
    fn shells(&self) -> BTreeSet<&'a str> {
        self.texts
            .get(SHELLS)
            .map(|t| t.lines().map(str::trim).filter(|l| l.starts_with('/')).collect())
            .unwrap_or_default()
    }

    /// `UID_MIN` from `/etc/login.defs` (last setting wins), or the default.
    fn uid_min(&self) -> u32 {
        self.texts
            .get(LOGIN_DEFS)
            .and_then(|t| {
                t.lines().rev().find_map(|l| {
                    let mut words = l.split_whitespace();
                    if words.next() != Some("UID_MIN") {
                        return None;
                    }
                    words.next()?.parse().ok()
                })
            })
            .unwrap_or(DEFAULT_UID_MIN)
    }
}

/// Whether `shell` is a login shell: listed in `/etc/shells` and not a `nologin`/`false`.
fn is_login_shell(shells: &BTreeSet<&str>, shell: &str) -> bool {
    shells.contains(shell) && !shell.ends_with("/nologin") && !shell.ends_with("/false")
}

/// Names sharing a key, as "key: a, b" lines.
fn duplicates<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, what: &str) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, name) in pairs {
        by_key.entry(key).or_default().push(name);
    }
    by_key
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(key, names)| format!("{what} {key} shared by {}", names.join(", ")))
        .collect()
}

/// Field `i` of an entry, `None` when absent or empty.
fn field<'a>(entry: &[&'a str], i: usize) -> Option<&'a str> {
    entry.get(i).copied().filter(|v| !v.is_empty())
}

/// Field `i` as a number of days.
fn days(entry: &[&str], i: usize) -> Option<u64> {
    field(entry, i).and_then(|d| d.parse().ok())
}

/// Field `i` for evidence (`unset` when empty).
fn shown(entry: &[&str], i: usize) -> String {
    field(entry, i).unwrap_or("unset").to_owned()
}

/// Days since 1970-01-01 by this machine's clock.
fn today() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
}

impl Accounts {
    /// The files a property needs, and whether each one must exist.
    fn files(self) -> &'static [(&'static str, bool)] {
        match self {
            Accounts::Uid0OnlyRoot | Accounts::UniqueUids | Accounts::UniqueUserNames => &[(PASSWD, true)],
            Accounts::NoEmptyPasswords
            | Accounts::PasswordMaxDays { .. }
            | Accounts::PasswordMinDays { .. }
            | Accounts::PasswordWarnDays { .. }
            | Accounts::PasswordInactiveDays { .. }
            | Accounts::PasswordLastChangeInPast
            | Accounts::RootPasswordSetOrLocked => &[(SHADOW, true)],
            Accounts::NoLegacyPlusEntries => &[(PASSWD, true), (SHADOW, true), (GROUP, true)],
            Accounts::UniqueGids | Accounts::UniqueGroupNames => &[(GROUP, true)],
            Accounts::PasswdGroupsExist | Accounts::ShadowGroupEmpty => &[(PASSWD, true), (GROUP, true)],
            Accounts::SystemAccountsNoLoginShell => &[(PASSWD, true), (SHELLS, true), (LOGIN_DEFS, false)],
            Accounts::NoLoginShellAccountsLocked => &[(PASSWD, true), (SHADOW, true), (SHELLS, true)],
        }
    }

    pub(crate) fn probes(self, probes: &mut BTreeSet<Probe>) {
        for (file, _) in self.files() {
            probes.insert(Probe::File((*file).to_owned()));
        }
    }

    pub(crate) fn evaluate(self, facts: &Facts) -> Outcome {
        let source = self.files().iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ");
        let mut texts = BTreeMap::new();
        for (file, required) in self.files() {
            match facts.files.get(*file) {
                Some(FileFact::Content { truncated: true, .. }) => {
                    return Outcome::error(format!("{file} is larger than the read limit"), source);
                }
                Some(FileFact::Content { text, .. }) => {
                    texts.insert(*file, text.as_str());
                }
                Some(FileFact::Unreadable) => return Outcome::unreadable(facts, file, source),
                _ if !required => {}
                _ => return Outcome::error(format!("{file} not found"), source),
            }
        }
        let db = Databases { texts };
        let (offenders, expected) = self.offenders(&db);
        let actual = if offenders.is_empty() { "compliant".to_owned() } else { offenders.join("; ") };
        Outcome::decided(
            offenders.is_empty(),
            evidence(source, &offenders.join("\n"), Some(expected), Some(actual)),
        )
    }

    /// The offending entries (described without password hashes) and the expectation.
    fn offenders(self, db: &Databases<'_>) -> (Vec<String>, String) {
        let passwd = || db.entries(PASSWD);
        let group = || db.entries(GROUP);
        // Shadow entries of accounts that have a usable password.
        let with_password = || {
            db.entries(SHADOW)
                .into_iter()
                .filter(|f| f.get(1).is_some_and(|p| password_state(p) == PasswordState::Set))
                .collect::<Vec<_>>()
        };
        // Accounts with a password whose shadow field `field` is unset or out of bounds.
        let ageing = |field: usize, label: &str, within: &dyn Fn(u64) -> bool| -> Vec<String> {
            with_password()
                .iter()
                .filter(|f| days(f, field).is_none_or(|d| !within(d)))
                .map(|f| format!("{} {label} {}", f[0], shown(f, field)))
                .collect()
        };
        match self {
            Accounts::Uid0OnlyRoot => (
                passwd()
                    .iter()
                    .filter(|f| f.get(2) == Some(&"0") && f[0] != "root")
                    .map(|f| format!("{} has UID 0", f[0]))
                    .collect(),
                "only root has UID 0".into(),
            ),
            Accounts::NoEmptyPasswords => (
                db.entries(SHADOW)
                    .iter()
                    .filter(|f| f.get(1) == Some(&""))
                    .map(|f| format!("{} has an empty password", f[0]))
                    .collect(),
                "no empty password fields".into(),
            ),
            Accounts::PasswordMaxDays { max_days } => (
                ageing(4, "max days", &|d| d <= u64::from(max_days)),
                format!("maximum password age <= {max_days} days for every account with a password"),
            ),
            Accounts::PasswordMinDays { min_days } => (
                ageing(3, "min days", &|d| d >= u64::from(min_days)),
                format!("minimum password age >= {min_days} days for every account with a password"),
            ),
            Accounts::PasswordWarnDays { min_days } => (
                ageing(5, "warn days", &|d| d >= u64::from(min_days)),
                format!("expiry warning >= {min_days} days for every account with a password"),
            ),
            Accounts::PasswordInactiveDays { max_days } => (
                ageing(6, "inactive days", &|d| d <= u64::from(max_days)),
                format!(
                    "account disabled <= {max_days} days after password expiry for every account with a password"
                ),
            ),
            Accounts::PasswordLastChangeInPast => {
                let today = today();
                (
                    db.entries(SHADOW)
                        .iter()
                        .filter(|f| days(f, 2).is_some_and(|d| d > today))
                        .map(|f| {
                            format!("{} last changed on day {} (today is day {today})", f[0], shown(f, 2))
                        })
                        .collect(),
                    "every last password change in the past".into(),
                )
            }
            Accounts::NoLegacyPlusEntries => (
                [PASSWD, SHADOW, GROUP]
                    .iter()
                    .flat_map(|file| {
                        db.entries(file)
                            .into_iter()
                            .filter(|f| f[0].starts_with('+'))
                            // The name only: a shadow `+` line may carry a hash.
                            .map(move |f| format!("{file}: {}", f[0]))
                    })
                    .collect(),
                "no '+' entries".into(),
            ),
            Accounts::UniqueUids => (
                duplicates(passwd().iter().filter_map(|f| Some((*f.get(2)?, f[0]))), "UID"),
                "every UID used by one account".into(),
            ),
            Accounts::UniqueGids => (
                duplicates(group().iter().filter_map(|f| Some((*f.get(2)?, f[0]))), "GID"),
                "every GID used by one group".into(),
            ),
            Accounts::UniqueUserNames => (
                duplicates(passwd().iter().map(|f| (f[0], f[0])), "account name"),
                "every account name used once".into(),
            ),
            Accounts::UniqueGroupNames => (
                duplicates(group().iter().map(|f| (f[0], f[0])), "group name"),
                "every group name used once".into(),
            ),
            Accounts::PasswdGroupsExist => {
                let gids: BTreeSet<&str> = group().iter().filter_map(|f| f.get(2).copied()).collect();
                (
                    passwd()
                        .iter()
                        .filter(|f| f.get(3).is_some_and(|gid| !gids.contains(gid)))
                        .map(|f| format!("{} has primary GID {} which no group has", f[0], f[3]))
                        .collect(),
                    "every primary GID exists in /etc/group".into(),
                )
            }
            Accounts::ShadowGroupEmpty => {
                let shadow_group = group().into_iter().find(|f| f[0] == "shadow");
                let mut offenders = Vec::new();
                if let Some(g) = &shadow_group {
                    let members: Vec<&str> = g
                        .get(3)
                        .map(|m| m.split(',').filter(|m| !m.is_empty()).collect())
                        .unwrap_or_default();
                    if !members.is_empty() {
                        offenders.push(format!("shadow group members: {}", members.join(", ")));
                    }
                    if let Some(gid) = g.get(2) {
                        offenders.extend(
                            passwd()
                                .iter()
                                .filter(|f| f.get(3) == Some(gid))
                                .map(|f| format!("{} has the shadow group as primary group", f[0])),
                        );
                    }
                }
                (offenders, "no members in the shadow group (no group of that name also passes)".into())
            }
            Accounts::SystemAccountsNoLoginShell => {
                let (shells, uid_min) = (db.shells(), db.uid_min());
                (
                    passwd()
                        .iter()
                        .filter(|f| !SHELL_EXEMPT.contains(&f[0]))
                        .filter(|f| f.get(2).and_then(|u| u.parse::<u32>().ok()).is_some_and(|u| u < uid_min))
                        .filter(|f| f.get(6).is_some_and(|shell| is_login_shell(&shells, shell)))
                        .map(|f| format!("{} (UID {}) has login shell {}", f[0], f[2], f[6]))
                        .collect(),
                    format!(
                        "no login shell for accounts below UID_MIN {uid_min} other than {}",
                        SHELL_EXEMPT.join(", ")
                    ),
                )
            }
            Accounts::NoLoginShellAccountsLocked => {
                let shells = db.shells();
                let no_shell: BTreeSet<&str> = passwd()
                    .iter()
                    .filter(|f| f[0] != "root")
                    .filter(|f| !f.get(6).is_some_and(|shell| is_login_shell(&shells, shell)))
                    .map(|f| f[0])
                    .collect();
                (
                    db.entries(SHADOW)
                        .iter()
                        .filter(|f| no_shell.contains(f[0]))
                        .filter(|f| f.get(1).is_some_and(|p| password_state(p) != PasswordState::Locked))
                        .map(|f| {
                            let state = if f[1].is_empty() { "an empty password" } else { "a password set" };
                            format!("{} has no login shell but {state}", f[0])
                        })
                        .collect(),
                    "every account without a login shell is locked".into(),
                )
            }
            Accounts::RootPasswordSetOrLocked => {
                let root = db.entries(SHADOW).into_iter().find(|f| f[0] == "root");
                let offenders = match root.as_ref().and_then(|f| f.get(1)).map(|p| password_state(p)) {
                    Some(PasswordState::Set | PasswordState::Locked) => Vec::new(),
                    Some(PasswordState::Empty) => vec!["root has an empty password".to_owned()],
                    None => vec!["root has no entry in /etc/shadow".to_owned()],
                };
                (offenders, "root has a password set or is locked".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwatch_common::domain::FindingStatus;

    fn facts(files: &[(&str, &str)]) -> Facts {
        Facts {
            uid: Some(0),
            files: files
                .iter()
                .map(|(path, text)| {
                    ((*path).to_owned(), FileFact::Content { text: (*text).into(), truncated: false })
                })
                .collect(),
            ..Facts::default()
        }
    }

    const PASSWD_TEXT: &str = "root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\ndaemon:x:1:1::/:/usr/sbin/nologin\n\
                               www:x:33:33::/var/www:/bin/sh\nsync:x:4:65534::/bin:/bin/sync\nalice:x:1000:1000::/home/alice:/bin/bash\n\
                               bob:x:1000:4242::/home/bob:/bin/bash\n";
    const SHADOW_TEXT: &str = "root:$y$abc:19000:0:99999:7:::\nsvc:!:19000::::::\nbob::19000:0:90:7:::\n\
                               alice:$6$salt$hash:99999:1:60:7:30::\nwww:$6$x:19000:7:60:7:30::\n";

    #[test]
    fn password_fields_never_reach_evidence() {
        let f =
            facts(&[(PASSWD, PASSWD_TEXT), (SHADOW, SHADOW_TEXT), (GROUP, "+::0:\n"), (SHELLS, "/bin/sh\n")]);
        for property in [
            Accounts::NoEmptyPasswords,
            Accounts::PasswordMaxDays { max_days: 365 },
            Accounts::PasswordMinDays { min_days: 1 },
            Accounts::PasswordLastChangeInPast,
            Accounts::NoLoginShellAccountsLocked,
            Accounts::RootPasswordSetOrLocked,
        ] {
            let outcome = property.evaluate(&f);
            let text = format!("{:?} {:?}", outcome.evidence.excerpt, outcome.evidence.actual);
            assert!(!text.contains('$'), "{property:?}: {text}");
        }
        let plus =
            facts(&[(PASSWD, "root:x:0:0::/root:/bin/sh\n"), (SHADOW, "+alice:$6$h:1::::::\n"), (GROUP, "")]);
        let outcome = Accounts::NoLegacyPlusEntries.evaluate(&plus);
        assert_eq!(outcome.status, FindingStatus::Fail);
        assert!(!outcome.evidence.excerpt.contains('$'), "{}", outcome.evidence.excerpt);
    }

    #[test]
    fn password_ageing_of_accounts_with_a_password() {
        let f = facts(&[(SHADOW, SHADOW_TEXT)]);
        let max = Accounts::PasswordMaxDays { max_days: 365 }.evaluate(&f);
        assert_eq!(max.status, FindingStatus::Fail);
        assert_eq!(max.evidence.actual.as_deref(), Some("root max days 99999"), "locked and empty skipped");
        let min = Accounts::PasswordMinDays { min_days: 1 }.evaluate(&f);
        assert_eq!(min.evidence.actual.as_deref(), Some("root min days 0"));
        assert_eq!(Accounts::PasswordWarnDays { min_days: 7 }.evaluate(&f).status, FindingStatus::Pass);
        let inactive = Accounts::PasswordInactiveDays { max_days: 45 }.evaluate(&f);
        assert_eq!(inactive.evidence.actual.as_deref(), Some("root inactive days unset"));
        let future = Accounts::PasswordLastChangeInPast.evaluate(&f);
        assert_eq!(future.status, FindingStatus::Fail);
        assert!(future.evidence.actual.unwrap().starts_with("alice last changed on day 99999"));
    }

    #[test]
    fn uniqueness_and_group_consistency() {
        let f = facts(&[
            (PASSWD, PASSWD_TEXT),
            (
                GROUP,
                "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nshadow:x:42:bob\nalice:x:1000:\nstaff:x:1000:\n",
            ),
        ]);
        let uids = Accounts::UniqueUids.evaluate(&f);
        assert_eq!(
            uids.evidence.actual.as_deref(),
            Some("UID 0 shared by root, toor; UID 1000 shared by alice, bob")
        );
        assert_eq!(
            Accounts::UniqueGids.evaluate(&f).evidence.actual.as_deref(),
            Some("GID 1000 shared by alice, staff")
        );
        assert_eq!(Accounts::UniqueUserNames.evaluate(&f).status, FindingStatus::Pass);
        assert_eq!(Accounts::UniqueGroupNames.evaluate(&f).status, FindingStatus::Pass);
        let missing = Accounts::PasswdGroupsExist.evaluate(&f);
        assert_eq!(
            missing.evidence.actual.as_deref(),
            Some(
                "sync has primary GID 65534 which no group has; bob has primary GID 4242 which no group has"
            )
        );
        let shadow = Accounts::ShadowGroupEmpty.evaluate(&f);
        assert_eq!(shadow.evidence.actual.as_deref(), Some("shadow group members: bob"));
        let no_shadow_group = facts(&[(PASSWD, PASSWD_TEXT), (GROUP, "root:x:0:\n")]);
        assert_eq!(Accounts::ShadowGroupEmpty.evaluate(&no_shadow_group).status, FindingStatus::Pass);
    }

    #[test]
    fn login_shells_of_system_accounts() {
        let shells = "# /etc/shells\n/bin/sh\n/bin/bash\n/usr/sbin/nologin\n";
        let f = facts(&[(PASSWD, PASSWD_TEXT), (SHELLS, shells), (SHADOW, SHADOW_TEXT)]);
        let system = Accounts::SystemAccountsNoLoginShell.evaluate(&f);
        // toor (UID 0, not root) and www have /bin/sh; sync is exempt; daemon has nologin.
        assert_eq!(
            system.evidence.actual.as_deref(),
            Some("toor (UID 0) has login shell /bin/sh; www (UID 33) has login shell /bin/sh")
        );
        // A raised UID_MIN makes alice a system account; the last setting wins.
        let raised = facts(&[
            (PASSWD, "alice:x:1000:1000::/home/alice:/bin/bash\n"),
            (SHELLS, shells),
            (LOGIN_DEFS, "UID_MIN 500\n# UID_MIN 9\nUID_MIN\t1001\n"),
        ]);
        assert_eq!(Accounts::SystemAccountsNoLoginShell.evaluate(&raised).status, FindingStatus::Fail);
        // svc has no passwd entry; daemon (nologin) has none in shadow: only accounts in both count.
        let locked = Accounts::NoLoginShellAccountsLocked.evaluate(&facts(&[
            (
                PASSWD,
                "root:x:0:0::/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\nsvc:x:2:2::/:/bin/false\n",
            ),
            (SHADOW, "root:$6$x:1::::::\ndaemon:*:1::::::\nsvc:$6$y:1::::::\n"),
            (SHELLS, shells),
        ]));
        assert_eq!(locked.evidence.actual.as_deref(), Some("svc has no login shell but a password set"));
        let missing_shells = Accounts::SystemAccountsNoLoginShell.evaluate(&facts(&[(PASSWD, PASSWD_TEXT)]));
        assert_eq!(missing_shells.status, FindingStatus::Error);
    }

    #[test]
    fn root_password_and_unreadable_or_cut_files() {
        let root = |field: &str| {
            Accounts::RootPasswordSetOrLocked
                .evaluate(&facts(&[(SHADOW, &format!("root:{field}:19000:0:99999:7:::\n"))]))
        };
        assert_eq!(root("$6$s$h").status, FindingStatus::Pass);
        assert_eq!(root("!*").status, FindingStatus::Pass);
        assert_eq!(root("").status, FindingStatus::Fail);
        let cut = Facts {
            files: [(SHADOW.to_owned(), FileFact::Content { text: "root:x".into(), truncated: true })].into(),
            ..Facts::default()
        };
        let outcome = Accounts::NoEmptyPasswords.evaluate(&cut);
        assert_eq!(outcome.status, FindingStatus::Error);
        let unreadable = Facts {
            uid: Some(1000),
            files: [(SHADOW.to_owned(), FileFact::Unreadable)].into(),
            ..Facts::default()
        };
        let outcome = Accounts::NoEmptyPasswords.evaluate(&unreadable);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert!(outcome.reason.unwrap().contains("requires privilege"));
    }
}
