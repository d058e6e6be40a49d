//! Settings of `maintenance` beyond the shared ones (`ServiceConfig`): housekeeping, the
//! scheduled-scan dispatcher and the stale-scan reaper. Every instance runs all three.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENWATCH_HOUSEKEEPING_INTERVAL_SECS` | `900` | seconds between housekeeping rounds (expire exceptions, purge expired sessions), enqueued through the outbox at start and then every interval (≥ 1) |
//! | `OPENWATCH_DISPATCH_INTERVAL_SECS` | `10` | seconds between dispatcher rounds; each round claims due hosts batch after batch until none is left (1–3600) |
//! | `OPENWATCH_DISPATCH_BATCH` | `200` | hosts claimed per transaction (1–10000) |
//! | `OPENWATCH_DISPATCH_LEASE_SECS` | `900` | a dispatched host's `next_scan_at` moves this far ahead until `result-processor` sets the real next time (60–172800) |
//! | `OPENWATCH_STALE_SCAN_INTERVAL_SECS` | `60` | seconds between stale-scan rounds (1–3600) |
//! | `OPENWATCH_QUEUED_SCAN_TIMEOUT_SECS` | `3600` | a `queued` scan not picked up within this is re-enqueued once, then failed `abandoned` after the same time again; keep it above the longest expected queue wait (60–604800) |

use std::time::Duration;

use openwatch_db::queries::dispatch::StalePolicy;
use openwatch_service_kit::config::env_parse_from;

/// `OPENWATCH_HOUSEKEEPING_INTERVAL_SECS`.
pub const HOUSEKEEPING_INTERVAL_VAR: &str = "OPENWATCH_HOUSEKEEPING_INTERVAL_SECS";
/// `OPENWATCH_DISPATCH_INTERVAL_SECS`.
pub const DISPATCH_INTERVAL_VAR: &str = "OPENWATCH_DISPATCH_INTERVAL_SECS";
/// `OPENWATCH_DISPATCH_BATCH`.
pub const DISPATCH_BATCH_VAR: &str = "OPENWATCH_DISPATCH_BATCH";
/// `OPENWATCH_DISPATCH_LEASE_SECS`.
pub const DISPATCH_LEASE_VAR: &str = "OPENWATCH_DISPATCH_LEASE_SECS";
/// `OPENWATCH_STALE_SCAN_INTERVAL_SECS`.
pub const STALE_SCAN_INTERVAL_VAR: &str = "OPENWATCH_STALE_SCAN_INTERVAL_SECS";
/// `OPENWATCH_QUEUED_SCAN_TIMEOUT_SECS`.
pub const QUEUED_SCAN_TIMEOUT_VAR: &str = "OPENWATCH_QUEUED_SCAN_TIMEOUT_SECS";

/// How the dispatcher claims due hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchSettings {
    /// Pause between rounds.
    pub interval: Duration,
    /// Hosts per transaction.
    pub batch: u32,
    /// How far a claimed host's `next_scan_at` moves ahead.
    pub lease: Duration,
}

/// How often the reaper looks, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleScanSettings {
    /// Pause between rounds.
    pub interval: Duration,
    /// Attempts, queued timeout and batch size.
    pub policy: StalePolicy,
}

/// Everything `maintenance` reads beyond `ServiceConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Pause between housekeeping rounds.
    pub housekeeping_interval: Duration,
    /// The scheduled-scan dispatcher.
    pub dispatch: DispatchSettings,
    /// The stale-scan reaper.
    pub stale_scans: StaleScanSettings,
}

impl MaintenanceConfig {
    /// Reads the variables of the table above from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the variables of the table above through `lookup`, checking their ranges;
    /// an error names the variable.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let ranged = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<u64> {
            let value: u64 = env_parse_from(lookup, name, default)?;
            anyhow::ensure!(
                (min..=max).contains(&value),
                "{name}={value} is invalid: must be between {min} and {max}"
            );
            Ok(value)
        };
        let seconds = |name: &str, default: u64, min: u64, max: u64| {
            ranged(name, default, min, max).map(Duration::from_secs)
        };
        let defaults = StalePolicy::default();
        let batch = ranged(DISPATCH_BATCH_VAR, 200, 1, 10_000)?;
        Ok(MaintenanceConfig {
            housekeeping_interval: seconds(HOUSEKEEPING_INTERVAL_VAR, 900, 1, u64::from(u32::MAX))?,
            dispatch: DispatchSettings {
                interval: seconds(DISPATCH_INTERVAL_VAR, 10, 1, 3_600)?,
                batch: u32::try_from(batch)?,
                lease: seconds(DISPATCH_LEASE_VAR, 900, 60, 172_800)?,
            },
            stale_scans: StaleScanSettings {
                interval: seconds(STALE_SCAN_INTERVAL_VAR, 60, 1, 3_600)?,
                policy: StalePolicy {
                    queued_timeout: seconds(
                        QUEUED_SCAN_TIMEOUT_VAR,
                        defaults.queued_timeout.as_secs(),
                        60,
                        604_800,
                    )?,
                    ..defaults
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<MaintenanceConfig> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        MaintenanceConfig::from_lookup(&|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let defaults = config(&[]).unwrap();
        assert_eq!(
            defaults,
            MaintenanceConfig {
                housekeeping_interval: Duration::from_secs(900),
                dispatch: DispatchSettings {
                    interval: Duration::from_secs(10),
                    batch: 200,
                    lease: Duration::from_secs(900),
                },
                stale_scans: StaleScanSettings {
                    interval: Duration::from_secs(60),
                    policy: StalePolicy {
                        max_attempts: 2,
                        queued_timeout: Duration::from_secs(3_600),
                        batch: 200
                    },
                },
            }
        );
        assert_eq!(config(&[(DISPATCH_BATCH_VAR, " ")]).unwrap(), defaults);
    }

    #[test]
    fn values_are_read_and_ranges_checked() {
        let read = config(&[
            (HOUSEKEEPING_INTERVAL_VAR, "30"),
            (DISPATCH_INTERVAL_VAR, "1"),
            (DISPATCH_BATCH_VAR, "10000"),
            (DISPATCH_LEASE_VAR, "60"),
            (STALE_SCAN_INTERVAL_VAR, "5"),
            (QUEUED_SCAN_TIMEOUT_VAR, "600"),
        ])
        .unwrap();
        assert_eq!(read.housekeeping_interval, Duration::from_secs(30));
        assert_eq!(
            read.dispatch,
            DispatchSettings {
                interval: Duration::from_secs(1),
                batch: 10_000,
                lease: Duration::from_secs(60)
            }
        );
        assert_eq!(read.stale_scans.interval, Duration::from_secs(5));
        assert_eq!(read.stale_scans.policy.queued_timeout, Duration::from_secs(600));

        for (name, value) in [
            (HOUSEKEEPING_INTERVAL_VAR, "0"),
            (DISPATCH_INTERVAL_VAR, "0"),
            (DISPATCH_INTERVAL_VAR, "ten"),
            (DISPATCH_BATCH_VAR, "0"),
            (DISPATCH_BATCH_VAR, "10001"),
            (DISPATCH_LEASE_VAR, "59"),
            (STALE_SCAN_INTERVAL_VAR, "-1"),
            (QUEUED_SCAN_TIMEOUT_VAR, "59"),
            (QUEUED_SCAN_TIMEOUT_VAR, "604801"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{name}={value}: {error}");
        }
    }
}
