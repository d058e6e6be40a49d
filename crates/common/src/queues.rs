//! The eight logical queues of the scaling guide.
//!
//! Each logical queue `Q` becomes, on the broker, an exchange and a queue named
//! `openwatch.Q` (see `openwatch-mq`). Operators pick which queues a worker consumes with
//! `OPENWATCH_QUEUES=scans,compliance_scanning`, parsed by [`QueueName::parse_list`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnknownVariant;

/// A logical queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    /// Manual scans (high priority), consumed by `scan-worker`.
    Scans,
    /// Scheduled scans, consumed by `scan-worker`.
    ComplianceScanning,
    /// Scan results, consumed by `result-processor`.
    Results,
    /// Host liveness checks, consumed by `host-monitor`.
    HostMonitoring,
    /// Deeper health checks, consumed by `host-monitor`.
    HealthMonitoring,
    /// Server intelligence (inventory) collection, consumed by `host-monitor`.
    Monitoring,
    /// Maintenance jobs (expiries, retention), consumed by `maintenance`.
    Maintenance,
    /// Everything else (exports, reports, notifications), consumed by `maintenance`.
    Default,
}

impl QueueName {
    /// All queues, in the order of the scaling guide.
    pub const ALL: [QueueName; 8] = [
        QueueName::Scans,
        QueueName::ComplianceScanning,
        QueueName::Results,
        QueueName::HostMonitoring,
        QueueName::HealthMonitoring,
        QueueName::Monitoring,
        QueueName::Maintenance,
        QueueName::Default,
    ];

    /// The logical name, as written in `OPENWATCH_QUEUES` and the outbox.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueName::Scans => "scans",
            QueueName::ComplianceScanning => "compliance_scanning",
            QueueName::Results => "results",
            QueueName::HostMonitoring => "host_monitoring",
            QueueName::HealthMonitoring => "health_monitoring",
            QueueName::Monitoring => "monitoring",
            QueueName::Maintenance => "maintenance",
            QueueName::Default => "default",
        }
    }

    /// Parses a comma separated list (`"scans, results"`), ignoring blanks and duplicates.
    /// An empty list is an error: a worker consuming nothing is a misconfiguration.
    pub fn parse_list(list: &str) -> Result<Vec<QueueName>, UnknownVariant> {
        let mut queues = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let queue = part.parse()?;
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
        if queues.is_empty() {
            return Err(UnknownVariant {
                kind: "queue list",
                value: list.to_owned(),
                expected: Self::expected(),
            });
        }
        Ok(queues)
    }

    fn expected() -> String {
        Self::ALL.map(QueueName::as_str).join(", ")
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|q| q.as_str() == s).ok_or_else(|| UnknownVariant {
            kind: "queue",
            value: s.to_owned(),
            expected: Self::expected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_eight_of_the_scaling_guide() {
        let names: Vec<_> = QueueName::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(
            names,
            [
                "scans",
                "compliance_scanning",
                "results",
                "host_monitoring",
                "health_monitoring",
                "monitoring",
                "maintenance",
                "default"
            ]
        );
        for q in QueueName::ALL {
            assert_eq!(serde_json::to_string(&q).unwrap(), format!("\"{q}\""));
        }
    }

    #[test]
    fn lists_parse_trimmed_and_deduplicated() {
        assert_eq!(
            QueueName::parse_list(" scans, compliance_scanning ,scans,").unwrap(),
            vec![QueueName::Scans, QueueName::ComplianceScanning]
        );
    }

    #[test]
    fn bad_lists_are_rejected_with_a_readable_message() {
        let err = QueueName::parse_list("scans,scan").unwrap_err();
        assert!(err.to_string().contains("unknown queue `scan`"), "{err}");
        assert!(QueueName::parse_list(" , ").is_err());
    }
}
