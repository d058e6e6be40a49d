//! Firewall checks: at least one host firewall is active, optionally denying inbound
//! traffic by default.
//!
//! Each firewall named in `any_of` is examined from its own section (all need root):
//!
//! * `nftables` — `nft list ruleset`. Active when a base chain hooks `input` in an
//!   `inet`, `ip` or `ip6` table. Default deny when such a chain in an `inet` or `ip`
//!   table (IPv4 is covered) has `policy drop`. A chain that accepts by policy and ends
//!   in an unconditional `drop`/`reject` rule is *not* counted (only the policy is read).
//!   ufw and firewalld program the kernel through nftables on current distributions, so
//!   their rulesets are seen here too.
//! * `ufw` — `ufw status verbose`: `Status: active`; default deny when the line
//!   `Default: deny (incoming)` (or `reject`) is shown.
//! * `firewalld` — `firewall-cmd --state`, `--get-default-zone`, `--list-all` (the default
//!   zone): active when `running`; default deny when the zone's `target` is `DROP`,
//!   `%%REJECT%%`/`REJECT` or `default`. Interpretation: firewalld's `default` target
//!   rejects every packet no rule of the zone accepts (ICMP aside), which is a deny-by-
//!   default inbound policy, so the stock `public` zone counts; only `ACCEPT` (the
//!   `trusted` zone) does not. Interfaces bound to other zones are not examined.
//!
//! A firewall whose command is not installed (exit 126/127), reports `inactive` /
//! `not running`, or has an empty ruleset is inactive. The check passes when one listed
//! firewall is active (and denies by default, if required); when none does and one of
//! them could not be examined (no privilege, timeout, …) the result is `error`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Outcome, evidence};
use crate::facts::{Facts, Probe, Section};

/// A host firewall implementation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FirewallKind {
    /// The kernel nftables ruleset.
    Nftables,
    /// Uncomplicated Firewall.
    Ufw,
    /// firewalld.
    Firewalld,
}

impl FirewallKind {
    fn probe(self) -> Probe {
        match self {
            FirewallKind::Nftables => Probe::Nftables,
            FirewallKind::Ufw => Probe::Ufw,
            FirewallKind::Firewalld => Probe::Firewalld,
        }
    }

    fn section(self) -> &'static str {
        match self {
            FirewallKind::Nftables => "nft",
            FirewallKind::Ufw => "ufw",
            FirewallKind::Firewalld => "firewalld",
        }
    }

    fn command(self) -> &'static str {
        match self {
            FirewallKind::Nftables => "nft list ruleset",
            FirewallKind::Ufw => "ufw status verbose",
            FirewallKind::Firewalld => "firewall-cmd --state/--get-default-zone/--list-all",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FirewallKind::Nftables => "nftables",
            FirewallKind::Ufw => "ufw",
            FirewallKind::Firewalld => "firewalld",
        }
    }
}

/// At least one of the firewalls is active (and, with `default_deny`, drops or rejects
/// inbound traffic by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// The inbound default policy must be drop/deny/reject.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_deny: bool,
    /// Acceptable firewalls.
    pub any_of: Vec<FirewallKind>,
}

/// What one firewall's section says.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Not installed or not running.
    Inactive(String),
    /// Running; whether inbound is denied by default, with the deciding line.
    Active { deny: bool, detail: String },
    /// Could not be examined.
    Unknown(String),
}

fn nftables_state(output: &str) -> State {
    let mut family = String::new();
    let mut hooks_input = false;
    let mut denies = false;
    let mut detail = String::new();
    for line in output.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() == Some("table") {
            family = words.next().unwrap_or("").to_owned();
            continue;
        }
        if line.starts_with("type ")
            && line.contains("hook input")
            && matches!(family.as_str(), "inet" | "ip" | "ip6")
        {
            hooks_input = true;
            let drop = line.contains("policy drop");
            if drop && family != "ip6" {
                denies = true;
                detail = format!("table {family}: {line}");
            } else if detail.is_empty() || (!denies && !drop) {
                detail = format!("table {family}: {line}");
            }
        }
    }
    if hooks_input {
        State::Active { deny: denies, detail }
    } else {
        State::Inactive("no base chain hooks input".into())
    }
}

fn ufw_state(output: &str) -> State {
    let status = output.lines().find_map(|l| l.trim().strip_prefix("Status:")).map(str::trim);
    match status {
        Some("active") => {
            let default =
                output.lines().find(|l| l.trim_start().starts_with("Default:")).unwrap_or("").trim();
            let incoming = default
                .trim_start_matches("Default:")
                .split(',')
                .find(|p| p.contains("(incoming)"))
                .map(|p| p.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_default();
            State::Active { deny: matches!(incoming.as_str(), "deny" | "reject"), detail: default.to_owned() }
        }
        Some(other) => State::Inactive(format!("Status: {other}")),
        None => State::Unknown("unrecognised `ufw status` output".into()),
    }
}

fn firewalld_state(output: &str) -> State {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some("running") => {}
        Some("not running") | None => return State::Inactive("not running".into()),
        Some(other) => return State::Unknown(format!("unrecognised state `{other}`")),
    }
    let zone = lines.next().unwrap_or("").to_owned();
    let target = lines.find_map(|l| l.strip_prefix("target:")).map(str::trim);
    match target {
        Some(target) => State::Active {
            deny: matches!(target, "default" | "DROP" | "%%REJECT%%" | "REJECT"),
            detail: format!("default zone {zone}, target: {target}"),
        },
        None => State::Unknown(format!("no target in `firewall-cmd --list-all` for zone {zone}")),
    }
}

fn state(kind: FirewallKind, facts: &Facts) -> State {
    let Some(Section { output, exit_code }) = facts.section(kind.section()) else {
        return State::Unknown("not collected".into());
    };
    match exit_code {
        Some(126 | 127) => return State::Inactive("not installed".into()),
        Some(124) => return State::Unknown("timed out".into()),
        None => return State::Unknown("output exceeded the size limit".into()),
        // firewall-cmd --state exits 252 with "not running".
        Some(252) if kind == FirewallKind::Firewalld && output.contains("not running") => {
            return State::Inactive("not running".into());
        }
        Some(0) => {}
        Some(_) if !facts.privileged() => return State::Unknown("requires privilege".into()),
        Some(code) => return State::Unknown(format!("command failed with exit status {code}")),
    }
    match kind {
        FirewallKind::Nftables => nftables_state(output),
        FirewallKind::Ufw => ufw_state(output),
        FirewallKind::Firewalld => firewalld_state(output),
    }
}

impl Firewall {
    pub(crate) fn probes(&self, probes: &mut BTreeSet<Probe>) {
        probes.extend(self.any_of.iter().map(|k| k.probe()));
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.any_of.is_empty() { Err("`any_of` is empty".into()) } else { Ok(()) }
    }

    pub(crate) fn evaluate(&self, facts: &Facts) -> Outcome {
        let source = self.any_of.iter().map(|k| k.command()).collect::<Vec<_>>().join("; ");
        let names: Vec<&str> = self.any_of.iter().map(|k| k.name()).collect();
        let expected = format!(
            "one of [{}] active{}",
            names.join(", "),
            if self.default_deny { " with a drop/deny/reject inbound default" } else { "" }
        );
        let mut passing = None;
        let mut unknown = Vec::new();
        let mut actual = Vec::new();
        let mut excerpt = Vec::new();
        for kind in &self.any_of {
            let state = state(*kind, facts);
            let name = kind.name();
            match &state {
                State::Inactive(why) => actual.push(format!("{name}: inactive ({why})")),
                State::Unknown(why) => {
                    actual.push(format!("{name}: unknown ({why})"));
                    unknown.push(format!("{name}: {why}"));
                }
                State::Active { deny, detail } => {
                    let ok = *deny || !self.default_deny;
                    actual.push(format!(
                        "{name}: active, inbound default {}",
                        if *deny { "deny" } else { "allow" }
                    ));
                    excerpt.push(format!("{name}: {detail}"));
                    if ok && passing.is_none() {
                        passing = Some(name);
                    }
                }
            }
        }
        let ev = evidence(source.clone(), &excerpt.join("\n"), Some(expected), Some(actual.join("; ")));
        if passing.is_some() {
            return Outcome::decided(true, ev);
        }
        if !unknown.is_empty() {
            let reason = if unknown.iter().all(|u| u.ends_with("requires privilege")) {
                "requires privilege".to_owned()
            } else {
                format!("could not examine {}", unknown.join("; "))
            };
            let mut outcome = Outcome::error(reason, source);
            outcome.evidence = ev;
            return outcome;
        }
        Outcome::decided(false, ev)
    }
}

#[cfg(test)]
mod tests {
    use openwatch_common::domain::FindingStatus;

    use super::*;

    fn facts(uid: u32, sections: &[(&str, &str, i32)]) -> Facts {
        Facts {
            uid: Some(uid),
            sections: sections
                .iter()
                .map(|(n, o, rc)| (n.to_string(), Section { output: o.to_string(), exit_code: Some(*rc) }))
                .collect(),
            ..Facts::default()
        }
    }

    fn all(default_deny: bool) -> Firewall {
        Firewall {
            default_deny,
            any_of: vec![FirewallKind::Nftables, FirewallKind::Ufw, FirewallKind::Firewalld],
        }
    }

    const NFT_DROP: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t}\n}\n";
    const NFT_ACCEPT: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n";

    #[test]
    fn nftables_policy_decides() {
        let good = facts(0, &[("nft", NFT_DROP, 0), ("ufw", "", 127), ("firewalld", "", 127)]);
        assert_eq!(all(true).evaluate(&good).status, FindingStatus::Pass);
        let open = facts(0, &[("nft", NFT_ACCEPT, 0), ("ufw", "", 127), ("firewalld", "", 127)]);
        assert_eq!(all(true).evaluate(&open).status, FindingStatus::Fail);
        assert_eq!(all(false).evaluate(&open).status, FindingStatus::Pass, "active is enough");
        let v6_only = NFT_DROP.replace("inet", "ip6");
        let v6 = facts(0, &[("nft", &v6_only, 0), ("ufw", "", 127), ("firewalld", "", 127)]);
        assert_eq!(all(true).evaluate(&v6).status, FindingStatus::Fail, "IPv4 must be covered");
        let none = facts(0, &[("nft", "", 0), ("ufw", "", 127), ("firewalld", "", 127)]);
        assert_eq!(all(false).evaluate(&none).status, FindingStatus::Fail);
    }

    #[test]
    fn ufw_and_firewalld_defaults() {
        let ufw = |default: &str| {
            facts(
                0,
                &[
                    ("nft", "", 0),
                    (
                        "ufw",
                        &format!(
                            "Status: active\nLogging: on (low)\nDefault: {default}\nNew profiles: skip\n"
                        ),
                        0,
                    ),
                    ("firewalld", "", 127),
                ],
            )
        };
        assert_eq!(
            all(true).evaluate(&ufw("deny (incoming), allow (outgoing), disabled (routed)")).status,
            FindingStatus::Pass
        );
        assert_eq!(
            all(true).evaluate(&ufw("allow (incoming), allow (outgoing), disabled (routed)")).status,
            FindingStatus::Fail
        );
        let inactive = facts(0, &[("nft", "", 0), ("ufw", "Status: inactive\n", 0), ("firewalld", "", 127)]);
        assert_eq!(all(false).evaluate(&inactive).status, FindingStatus::Fail);

        let firewalld = |target: &str| {
            facts(
                0,
                &[
                    ("nft", "", 0),
                    ("ufw", "", 127),
                    (
                        "firewalld",
                        &format!(
                            "running\npublic\npublic (active)\n  target: {target}\n  interfaces: eth0\n"
                        ),
                        0,
                    ),
                ],
            )
        };
        for target in ["default", "DROP", "%%REJECT%%"] {
            assert_eq!(all(true).evaluate(&firewalld(target)).status, FindingStatus::Pass, "{target}");
        }
        assert_eq!(all(true).evaluate(&firewalld("ACCEPT")).status, FindingStatus::Fail);
        let stopped = facts(0, &[("nft", "", 0), ("ufw", "", 127), ("firewalld", "not running\n", 252)]);
        assert_eq!(all(false).evaluate(&stopped).status, FindingStatus::Fail);
    }

    #[test]
    fn firewalls_without_privilege_are_an_error() {
        let f = facts(
            1000,
            &[
                ("nft", "", 1),
                ("ufw", "ERROR: You need to be root to run this script\n", 1),
                ("firewalld", "", 127),
            ],
        );
        let outcome = all(true).evaluate(&f);
        assert_eq!(outcome.status, FindingStatus::Error);
        assert_eq!(outcome.reason.as_deref(), Some("requires privilege"));
        // One passing firewall decides even when another could not be examined.
        let mixed = facts(1000, &[("nft", "", 1), ("ufw", "Status: active\nDefault: deny (incoming)\n", 0)]);
        let ufw_only =
            Firewall { default_deny: true, any_of: vec![FirewallKind::Nftables, FirewallKind::Ufw] };
        assert_eq!(ufw_only.evaluate(&mixed).status, FindingStatus::Pass);
    }
}
