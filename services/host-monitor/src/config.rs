//! Settings of `host-monitor` beyond the shared ones (`ServiceConfig`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENWATCH_PROBE_TIMEOUT_MS` | `5000` | a TCP connect to the SSH port taking longer means `down` |
//! | `OPENWATCH_PROBE_DEGRADED_MS` | `1000` | a successful connect slower than this means `degraded` |
//! | `OPENWATCH_CHECK_INTERVAL_SECS` | `60` | when the next liveness check of a host is due |

use std::time::Duration;

use openwatch_service_kit::config::env_parse;

/// Liveness probe settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Connect timeout.
    pub timeout: Duration,
    /// Slower than this is `degraded`.
    pub degraded_after: Duration,
    /// Interval between checks of one host.
    pub check_interval: Duration,
}

impl ProbeConfig {
    /// Reads the variables of the table above.
    pub fn from_env() -> anyhow::Result<Self> {
        let timeout_ms: u64 = env_parse("OPENWATCH_PROBE_TIMEOUT_MS", 5_000)?;
        let degraded_ms: u64 = env_parse("OPENWATCH_PROBE_DEGRADED_MS", 1_000)?;
        let interval_secs: u64 = env_parse("OPENWATCH_CHECK_INTERVAL_SECS", 60)?;
        anyhow::ensure!(timeout_ms >= 1, "OPENWATCH_PROBE_TIMEOUT_MS must be at least 1");
        anyhow::ensure!(interval_secs >= 1, "OPENWATCH_CHECK_INTERVAL_SECS must be at least 1");
        anyhow::ensure!(
            degraded_ms < timeout_ms,
            "OPENWATCH_PROBE_DEGRADED_MS ({degraded_ms}) must be below OPENWATCH_PROBE_TIMEOUT_MS ({timeout_ms})"
        );
        Ok(Self {
            timeout: Duration::from_millis(timeout_ms),
            degraded_after: Duration::from_millis(degraded_ms),
            check_interval: Duration::from_secs(interval_secs),
        })
    }
}
