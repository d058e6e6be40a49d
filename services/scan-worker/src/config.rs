//! Settings of `scan-worker` beyond the shared ones (`ServiceConfig`), read once at start-up.
//! An invalid value stops the process with an error naming the variable.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENWATCH_MASTER_KEY` | required | credential encryption key, the same as the api-gateway's (32 bytes, base64 or 64 hex). **Secret.** |
//! | `OPENWATCH_MASTER_KEY_PREVIOUS` | empty | comma-separated earlier master keys, to open credentials sealed before a rotation. **Secret.** |
//! | `OPENWATCH_RULES_DIR` | `rules` | the rule corpus, loaded once at start-up (a load error stops the process) |
//! | `OPENWATCH_HOST_KEY_POLICY` | `tofu` | `tofu`: a host without a trusted key has the key it presents recorded as trusted on first contact; `strict`: only keys an operator approved are accepted (an unknown key is recorded `pending`) |
//! | `OPENWATCH_SCAN_SUDO` | `auto` | `auto`: run the collection script through `sudo -n` unless the credential's user is `root`; `always`; `never` |
//! | `OPENWATCH_SCAN_CONNECT_TIMEOUT_SECS` | `10` | TCP connect and SSH handshake, each (1–300) |
//! | `OPENWATCH_SCAN_AUTH_TIMEOUT_SECS` | `10` | SSH authentication (1–300) |
//! | `OPENWATCH_SCAN_EXEC_TIMEOUT_SECS` | `120` | running the collection script and reading its output (5–3600) |
//! | `OPENWATCH_SCAN_MAX_OUTPUT_BYTES` | `16777216` | largest script output accepted; more fails the scan `output_too_large` (≥ 65536) |
//! | `OPENWATCH_SCAN_WALK` | `true` | collect the filesystem walk (world-writable, unowned, SUID files) for the rules that need it; `false` reports those rules `not_applicable` and saves seconds per host |
//! | `OPENWATCH_SCAN_WALK_INTERVAL_SECS` | `0` | with the walk on: run it at most once per host in this many seconds (0 = every scan). Scans in between leave the walk rules out of their results, so each host keeps its last walk results (result-processor carries rules a scan did not evaluate); the time of a host's last walk is a Redis key `<prefix>host:<id>:walked` expiring after the interval (0–2592000) |
//! | `OPENWATCH_SCAN_LEASE_SECS` | `600` | how long a started scan is held before the stale-scan reaper may call it abandoned; must exceed the whole-scan bound (2 × connect + auth + exec + 30 s to publish) |
//! | `OPENWATCH_REDIS_KEY_PREFIX` | `openwatch:` | prefix of the live progress keys (`<prefix>scan:<id>:progress`) |
//!
//! The concurrency (`OPENWATCH_CONCURRENCY`, shared) is also the number of scans that run
//! at once in a process, whichever queue they came from.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use openwatch_engine::transport::ExecLimits;
use openwatch_service_kit::config::{env_or_from, env_parse_from};
use secrecy::SecretString;

/// How long the worker waits for its publisher to be connected before a result counts as
/// not publishable (the message is then retried). Part of the whole-scan bound.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// Which host keys a scan accepts (`OPENWATCH_HOST_KEY_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyMode {
    /// Trust on first use: a host without a trusted key gets the key it presents recorded
    /// as trusted; afterwards only trusted keys are accepted.
    Tofu,
    /// Only keys an operator approved; an unknown key is recorded `pending`.
    Strict,
}

/// When the collection script runs through `sudo -n` (`OPENWATCH_SCAN_SUDO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SudoMode {
    /// Unless the user is `root`.
    Auto,
    /// Always.
    Always,
    /// Never (an unprivileged user then gets `error` results for root-only facts).
    Never,
}

impl SudoMode {
    /// Whether a scan logging in as `username` uses sudo.
    pub fn applies_to(self, username: &str) -> bool {
        match self {
            SudoMode::Auto => username != "root",
            SudoMode::Always => true,
            SudoMode::Never => false,
        }
    }
}

/// The scan settings. Tests build it with [`ScanConfig::from_lookup`].
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// `OPENWATCH_MASTER_KEY`.
    pub master_key: SecretString,
    /// `OPENWATCH_MASTER_KEY_PREVIOUS`.
    pub previous_master_keys: Vec<SecretString>,
    /// `OPENWATCH_RULES_DIR`.
    pub rules_dir: PathBuf,
    /// `OPENWATCH_HOST_KEY_POLICY`.
    pub host_keys: HostKeyMode,
    /// `OPENWATCH_SCAN_SUDO`.
    pub sudo: SudoMode,
    /// `OPENWATCH_SCAN_*_TIMEOUT_SECS`, `OPENWATCH_SCAN_MAX_OUTPUT_BYTES`.
    pub limits: ExecLimits,
    /// `OPENWATCH_SCAN_WALK`.
    pub walk: bool,
    /// `OPENWATCH_SCAN_WALK_INTERVAL_SECS` (zero: every scan).
    pub walk_interval: Duration,
    /// `OPENWATCH_SCAN_LEASE_SECS`.
    pub lease: Duration,
    /// `OPENWATCH_REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
}

impl ScanConfig {
    /// Reads the variables of the table above from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// [`ScanConfig::from_env`] reading from `lookup`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let master_key = lookup("OPENWATCH_MASTER_KEY")
            .filter(|v| !v.trim().is_empty())
            .context("OPENWATCH_MASTER_KEY is required (the api-gateway's credential encryption key)")?;
        let previous_master_keys = lookup("OPENWATCH_MASTER_KEY_PREVIOUS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        let host_keys = match env_or_from(lookup, "OPENWATCH_HOST_KEY_POLICY", "tofu").as_str() {
            "tofu" => HostKeyMode::Tofu,
            "strict" => HostKeyMode::Strict,
            other => bail!("OPENWATCH_HOST_KEY_POLICY={other:?} is invalid: expected `tofu` or `strict`"),
        };
        let sudo = match env_or_from(lookup, "OPENWATCH_SCAN_SUDO", "auto").as_str() {
            "auto" => SudoMode::Auto,
            "always" => SudoMode::Always,
            "never" => SudoMode::Never,
            other => bail!("OPENWATCH_SCAN_SUDO={other:?} is invalid: expected `auto`, `always` or `never`"),
        };
        let secs =
            |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> anyhow::Result<Duration> {
                let value: u64 = env_parse_from(lookup, name, default)?;
                if !range.contains(&value) {
                    bail!("{name}={value} is invalid: must be between {} and {}", range.start(), range.end());
                }
                Ok(Duration::from_secs(value))
            };
        let limits = ExecLimits {
            connect_timeout: secs("OPENWATCH_SCAN_CONNECT_TIMEOUT_SECS", 10, 1..=300)?,
            auth_timeout: secs("OPENWATCH_SCAN_AUTH_TIMEOUT_SECS", 10, 1..=300)?,
            exec_timeout: secs("OPENWATCH_SCAN_EXEC_TIMEOUT_SECS", 120, 5..=3600)?,
            max_output_bytes: env_parse_from(lookup, "OPENWATCH_SCAN_MAX_OUTPUT_BYTES", 16 * 1024 * 1024)?,
        };
        if limits.max_output_bytes < 64 * 1024 {
            bail!(
                "OPENWATCH_SCAN_MAX_OUTPUT_BYTES={} is invalid: must be at least 65536",
                limits.max_output_bytes
            );
        }
        let lease = secs("OPENWATCH_SCAN_LEASE_SECS", 600, 1..=86_400)?;
        let bound = whole_scan_bound(&limits);
        if lease <= bound {
            bail!(
                "OPENWATCH_SCAN_LEASE_SECS={} is invalid: it must exceed the whole-scan bound of {} s \
                 (2 × connect + auth + exec timeouts + {} s to publish)",
                lease.as_secs(),
                bound.as_secs(),
                PUBLISH_WAIT.as_secs()
            );
        }
        Ok(Self {
            master_key: SecretString::from(master_key),
            previous_master_keys,
            rules_dir: env_or_from(lookup, "OPENWATCH_RULES_DIR", "rules").into(),
            host_keys,
            sudo,
            limits,
            walk: env_parse_from(lookup, "OPENWATCH_SCAN_WALK", true)?,
            walk_interval: secs("OPENWATCH_SCAN_WALK_INTERVAL_SECS", 0, 0..=2_592_000)?,
            lease,
            redis_key_prefix: env_or_from(lookup, "OPENWATCH_REDIS_KEY_PREFIX", "openwatch:"),
        })
    }
}

/// The longest a scan can hold its slot: a first-contact host key probe (handshake), the
/// scan's connect, authentication and exec, and waiting for the publisher.
pub fn whole_scan_bound(limits: &ExecLimits) -> Duration {
    limits.connect_timeout * 2 + limits.auth_timeout + limits.exec_timeout + PUBLISH_WAIT
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    const KEY: (&str, &str) = ("OPENWATCH_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");

    #[test]
    fn defaults_are_safe_and_the_lease_exceeds_the_whole_scan() {
        let config = ScanConfig::from_lookup(&env(&[KEY])).unwrap();
        assert_eq!(config.master_key.expose_secret(), KEY.1);
        assert!(config.previous_master_keys.is_empty());
        assert_eq!(config.rules_dir, PathBuf::from("rules"));
        assert_eq!(config.host_keys, HostKeyMode::Tofu);
        assert_eq!(config.sudo, SudoMode::Auto);
        assert_eq!(config.limits, ExecLimits::default());
        assert!(config.walk);
        assert_eq!(config.walk_interval, Duration::ZERO);
        assert_eq!(config.lease, Duration::from_secs(600));
        assert!(config.lease > whole_scan_bound(&config.limits));
        assert_eq!(config.redis_key_prefix, "openwatch:");
    }

    #[test]
    fn every_setting_is_read() {
        let config = ScanConfig::from_lookup(&env(&[
            KEY,
            ("OPENWATCH_MASTER_KEY_PREVIOUS", " a , b ,"),
            ("OPENWATCH_RULES_DIR", "/usr/share/openwatch/rules"),
            ("OPENWATCH_HOST_KEY_POLICY", "strict"),
            ("OPENWATCH_SCAN_SUDO", "never"),
            ("OPENWATCH_SCAN_CONNECT_TIMEOUT_SECS", "3"),
            ("OPENWATCH_SCAN_AUTH_TIMEOUT_SECS", "4"),
            ("OPENWATCH_SCAN_EXEC_TIMEOUT_SECS", "30"),
            ("OPENWATCH_SCAN_MAX_OUTPUT_BYTES", "1048576"),
            ("OPENWATCH_SCAN_WALK", "false"),
            ("OPENWATCH_SCAN_WALK_INTERVAL_SECS", "86400"),
            ("OPENWATCH_SCAN_LEASE_SECS", "120"),
            ("OPENWATCH_REDIS_KEY_PREFIX", "test:1:"),
        ]))
        .unwrap();
        let previous: Vec<&str> = config.previous_master_keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(previous, ["a", "b"]);
        assert_eq!(config.rules_dir, PathBuf::from("/usr/share/openwatch/rules"));
        assert_eq!(config.host_keys, HostKeyMode::Strict);
        assert_eq!(config.sudo, SudoMode::Never);
        assert_eq!(
            config.limits,
            ExecLimits {
                connect_timeout: Duration::from_secs(3),
                auth_timeout: Duration::from_secs(4),
                exec_timeout: Duration::from_secs(30),
                max_output_bytes: 1_048_576,
            }
        );
        assert!(!config.walk);
        assert_eq!(config.walk_interval, Duration::from_secs(86_400));
        assert_eq!(config.lease, Duration::from_secs(120));
        assert_eq!(config.redis_key_prefix, "test:1:");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let error = |pairs: &[(&str, &str)]| ScanConfig::from_lookup(&env(pairs)).unwrap_err().to_string();
        assert!(error(&[]).contains("OPENWATCH_MASTER_KEY is required"));
        assert!(error(&[KEY, ("OPENWATCH_HOST_KEY_POLICY", "yolo")]).contains("OPENWATCH_HOST_KEY_POLICY"));
        assert!(error(&[KEY, ("OPENWATCH_SCAN_SUDO", "sometimes")]).contains("OPENWATCH_SCAN_SUDO"));
        assert!(error(&[KEY, ("OPENWATCH_SCAN_EXEC_TIMEOUT_SECS", "0")]).contains("between 5 and 3600"));
        assert!(error(&[KEY, ("OPENWATCH_SCAN_WALK", "maybe")]).contains("OPENWATCH_SCAN_WALK"));
        assert!(
            error(&[KEY, ("OPENWATCH_SCAN_WALK_INTERVAL_SECS", "-1")])
                .contains("OPENWATCH_SCAN_WALK_INTERVAL_SECS")
        );
        assert!(error(&[KEY, ("OPENWATCH_SCAN_MAX_OUTPUT_BYTES", "10")]).contains("at least 65536"));
        let lease = error(&[KEY, ("OPENWATCH_SCAN_LEASE_SECS", "170")]);
        assert!(lease.contains("must exceed the whole-scan bound of 180 s"), "{lease}");
    }

    #[test]
    fn sudo_applies_to_non_root_users_by_default() {
        assert!(SudoMode::Auto.applies_to("openwatch-scan"));
        assert!(!SudoMode::Auto.applies_to("root"));
        assert!(SudoMode::Always.applies_to("root"));
        assert!(!SudoMode::Never.applies_to("openwatch-scan"));
    }
}
