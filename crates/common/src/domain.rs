//! The domain enums and their stable wire spellings.
//!
//! Each enum serialises as snake_case, parses from the same spelling (rejecting anything
//! else with [`UnknownVariant`]), and exposes `as_str()` for storage layers, which keep
//! these values as `TEXT` guarded by `CHECK` constraints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnknownVariant;

macro_rules! wire_enum {
    (
        $(#[$doc:meta])* $name:ident : $kind:literal {
            $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire and storage spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// How bad a failing rule is. Ordered from worst to mildest.
    Severity: "severity" {
        /// Exploitable or directly exposing the host.
        Critical => "critical",
        /// Serious weakness.
        High => "high",
        /// Moderate weakness.
        Medium => "medium",
        /// Hardening improvement.
        Low => "low",
        /// Informational, never affects posture alerts.
        Info => "info",
    }
);

wire_enum!(
    /// The outcome of evaluating one rule on one host.
    ///
    /// `error` means the rule could not be evaluated (with a reason) and is never counted
    /// as a pass or a fail; `not_applicable` means the platform or a condition excludes it;
    /// `manual` means a human must review it.
    FindingStatus: "finding status" {
        /// The host satisfies the rule.
        Pass => "pass",
        /// The host violates the rule.
        Fail => "fail",
        /// The rule could not be evaluated.
        Error => "error",
        /// The rule does not apply to this host.
        NotApplicable => "not_applicable",
        /// The rule needs human review.
        Manual => "manual",
    }
);

wire_enum!(
    /// Life cycle of a scan: `queued → running → completed | failed | cancelled`.
    ScanStatus: "scan status" {
        /// Written, waiting for a worker.
        Queued => "queued",
        /// A worker is evaluating it.
        Running => "running",
        /// Results were stored.
        Completed => "completed",
        /// The scan could not be completed (with a reason).
        Failed => "failed",
        /// A user cancelled it.
        Cancelled => "cancelled",
    }
);

impl ScanStatus {
    /// Whether the scan can no longer change.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

wire_enum!(
    /// Why a scan was started.
    ScanTrigger: "scan trigger" {
        /// Requested by a user or API client (queue `scans`, high priority).
        Manual => "manual",
        /// Due by the adaptive schedule (queue `compliance_scanning`).
        Scheduled => "scheduled",
    }
);

wire_enum!(
    /// Liveness of a host as seen by `host-monitor`.
    MonitoringState: "monitoring state" {
        /// Never checked yet.
        Unknown => "unknown",
        /// Reachable.
        Online => "online",
        /// Reachable but slow or partially failing.
        Degraded => "degraded",
        /// Unreachable: scans are not dispatched.
        Down => "down",
        /// In a maintenance window: checks and scans are paused.
        Maintenance => "maintenance",
    }
);

wire_enum!(
    /// Compliance band of a host, which drives its adaptive scan interval.
    ///
    /// Bands by score: `< 20` critical, `20–49` low, `50–79` partial, `80–99`
    /// mostly_compliant, `100` compliant; any failing critical rule makes it critical.
    ComplianceState: "compliance state" {
        /// Never scanned: scan now.
        Unknown => "unknown",
        /// Score below 20, or a failing critical rule.
        Critical => "critical",
        /// Score 20–49.
        Low => "low",
        /// Score 50–79.
        Partial => "partial",
        /// Score 80–99.
        MostlyCompliant => "mostly_compliant",
        /// Score 100.
        Compliant => "compliant",
    }
);

impl ComplianceState {
    /// The band for a score in percent (0–100) and whether any critical rule fails.
    pub fn from_score(score_percent: f64, has_failing_critical: bool) -> Self {
        if has_failing_critical || score_percent < 20.0 {
            Self::Critical
        } else if score_percent < 50.0 {
            Self::Low
        } else if score_percent < 80.0 {
            Self::Partial
        } else if score_percent < 100.0 {
            Self::MostlyCompliant
        } else {
            Self::Compliant
        }
    }
}

/// Compliance score in percent: `pass / (pass + fail) × 100` over applicable rules.
///
/// `error`, `not_applicable` and `manual` results count neither way (an error is never a
/// pass nor a fail). `None` when nothing was passed or failed: no score is better than a
/// made-up one.
pub fn compliance_score(passed: u64, failed: u64) -> Option<f64> {
    let applicable = passed + failed;
    (applicable > 0).then(|| passed as f64 * 100.0 / applicable as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_its_wire_spelling() {
        for status in FindingStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<FindingStatus>().unwrap(), *status);
        }
        for state in ComplianceState::ALL {
            assert_eq!(state.as_str().parse::<ComplianceState>().unwrap(), *state);
        }
    }

    #[test]
    fn the_finding_statuses_are_exactly_the_five_of_the_contract() {
        let spellings: Vec<_> = FindingStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(spellings, ["pass", "fail", "error", "not_applicable", "manual"]);
    }

    #[test]
    fn unknown_spellings_are_rejected_with_the_accepted_list() {
        let err = "severe".parse::<Severity>().unwrap_err();
        assert_eq!(err.kind, "severity");
        assert!(err.to_string().contains("critical, high, medium, low, info"));
        assert!(serde_json::from_str::<ScanStatus>("\"done\"").is_err());
    }

    #[test]
    fn compliance_bands_follow_the_score_thresholds() {
        assert_eq!(ComplianceState::from_score(19.9, false), ComplianceState::Critical);
        assert_eq!(ComplianceState::from_score(20.0, false), ComplianceState::Low);
        assert_eq!(ComplianceState::from_score(49.9, false), ComplianceState::Low);
        assert_eq!(ComplianceState::from_score(50.0, false), ComplianceState::Partial);
        assert_eq!(ComplianceState::from_score(80.0, false), ComplianceState::MostlyCompliant);
        assert_eq!(ComplianceState::from_score(99.9, false), ComplianceState::MostlyCompliant);
        assert_eq!(ComplianceState::from_score(100.0, false), ComplianceState::Compliant);
        assert_eq!(ComplianceState::from_score(100.0, true), ComplianceState::Critical);
    }

    #[test]
    fn score_counts_only_passes_and_fails() {
        assert_eq!(compliance_score(0, 0), None);
        assert_eq!(compliance_score(3, 1), Some(75.0));
        assert_eq!(compliance_score(5, 0), Some(100.0));
        assert_eq!(compliance_score(0, 2), Some(0.0));
    }

    #[test]
    fn terminal_scan_statuses() {
        assert!(!ScanStatus::Queued.is_terminal());
        assert!(!ScanStatus::Running.is_terminal());
        assert!(ScanStatus::Completed.is_terminal());
        assert!(ScanStatus::Failed.is_terminal());
        assert!(ScanStatus::Cancelled.is_terminal());
    }
}
