//! Settings of `result-processor` beyond the shared ones (`ServiceConfig`): the thresholds
//! of drift and alerts ([`ResultPolicy`]).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENWATCH_SCORE_DRIFT_POINTS` | `5` | a host score change of at least this many points since the previous completed scan is recorded as a score drift event |
//! | `OPENWATCH_ALERT_SCORE_THRESHOLD` | `80` | a host score below this raises `host_below_threshold`; at or above resolves it |
//! | `OPENWATCH_ALERT_SCORE_DROP_POINTS` | `20` | a fall of at least this many points below the higher of the previous scan's score and yesterday's snapshot raises `score_dropped` |
//! | `OPENWATCH_ALERT_MASS_DRIFT_PERCENT` | `10` | rule drifts in one scan of at least this percentage of the rules it evaluated raise `mass_drift` |
//! | `OPENWATCH_ALERT_SCAN_FAILURES` | `3` | this many consecutive failed scans of a host raise `scan_failed` |

use openwatch_db::queries::results::ResultPolicy;
use openwatch_service_kit::config::env_parse_from;

/// Reads the variables of the table above from the process environment.
pub fn policy_from_env() -> anyhow::Result<ResultPolicy> {
    policy_from(&|name| std::env::var(name).ok())
}

/// Reads the variables of the table above through `lookup`, checking their ranges.
pub fn policy_from(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ResultPolicy> {
    let defaults = ResultPolicy::default();
    let points = |name: &str, default: f64, min_exclusive: bool| -> anyhow::Result<f64> {
        let value: f64 = env_parse_from(lookup, name, default)?;
        let low_ok = if min_exclusive { value > 0.0 } else { value >= 0.0 };
        anyhow::ensure!(
            value.is_finite() && low_ok && value <= 100.0,
            "{name} must be a number {} 0 and at most 100 (got {value})",
            if min_exclusive { "above" } else { "of at least" }
        );
        Ok(value)
    };
    let policy = ResultPolicy {
        score_drift_points: points("OPENWATCH_SCORE_DRIFT_POINTS", defaults.score_drift_points, true)?,
        score_threshold: points("OPENWATCH_ALERT_SCORE_THRESHOLD", defaults.score_threshold, false)?,
        score_drop_points: points("OPENWATCH_ALERT_SCORE_DROP_POINTS", defaults.score_drop_points, true)?,
        mass_drift_percent: points("OPENWATCH_ALERT_MASS_DRIFT_PERCENT", defaults.mass_drift_percent, true)?,
        scan_failures_before_alert: env_parse_from(
            lookup,
            "OPENWATCH_ALERT_SCAN_FAILURES",
            defaults.scan_failures_before_alert,
        )?,
    };
    anyhow::ensure!(
        policy.scan_failures_before_alert >= 1,
        "OPENWATCH_ALERT_SCAN_FAILURES must be at least 1"
    );
    Ok(policy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn policy(vars: &[(&str, &str)]) -> anyhow::Result<ResultPolicy> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        policy_from(&|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        assert_eq!(policy(&[]).unwrap(), ResultPolicy::default());
        assert_eq!(policy(&[("OPENWATCH_ALERT_SCORE_THRESHOLD", " ")]).unwrap(), ResultPolicy::default());
    }

    #[test]
    fn values_are_read_and_ranges_checked() {
        let read = policy(&[
            ("OPENWATCH_SCORE_DRIFT_POINTS", "2.5"),
            ("OPENWATCH_ALERT_SCORE_THRESHOLD", "90"),
            ("OPENWATCH_ALERT_SCORE_DROP_POINTS", "15"),
            ("OPENWATCH_ALERT_MASS_DRIFT_PERCENT", "25"),
            ("OPENWATCH_ALERT_SCAN_FAILURES", "5"),
        ])
        .unwrap();
        assert_eq!(
            read,
            ResultPolicy {
                score_drift_points: 2.5,
                score_threshold: 90.0,
                score_drop_points: 15.0,
                mass_drift_percent: 25.0,
                scan_failures_before_alert: 5,
            }
        );
        for (name, value) in [
            ("OPENWATCH_SCORE_DRIFT_POINTS", "0"),
            ("OPENWATCH_SCORE_DRIFT_POINTS", "NaN"),
            ("OPENWATCH_ALERT_SCORE_THRESHOLD", "101"),
            ("OPENWATCH_ALERT_SCORE_THRESHOLD", "-1"),
            ("OPENWATCH_ALERT_MASS_DRIFT_PERCENT", "inf"),
            ("OPENWATCH_ALERT_SCAN_FAILURES", "0"),
            ("OPENWATCH_ALERT_SCAN_FAILURES", "three"),
        ] {
            let error = policy(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{name}={value}: {error}");
        }
        assert_eq!(policy(&[("OPENWATCH_ALERT_SCORE_THRESHOLD", "0")]).unwrap().score_threshold, 0.0);
    }
}
