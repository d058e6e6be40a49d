//! Pins the JSON wire format of every v1 message to a fixture file: a change that would
//! break consumers (renamed field, changed spelling) fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use openwatch_common::domain::{FindingStatus, ScanStatus, ScanTrigger, Severity};
use openwatch_common::ids::{HostId, ScanId, UserId};
use openwatch_common::messages::Message;
use openwatch_common::messages::v1::*;
use openwatch_common::queues::QueueName;
use serde_json::Value;
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn scan_id() -> ScanId {
    ScanId(Uuid::parse_str("0191c0de-0000-7000-8000-000000000001").unwrap())
}

fn host_id() -> HostId {
    HostId(Uuid::parse_str("0191c0de-0000-7000-8000-000000000002").unwrap())
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/v1/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The message serialises to exactly the fixture, and the fixture decodes to the message.
fn assert_pinned<M: Message + PartialEq + std::fmt::Debug>(name: &str, message: &M) {
    let expected = fixture(name);
    assert_eq!(serde_json::to_value(message).unwrap(), expected, "wire format of {name} changed");
    let decoded: M = serde_json::from_value(expected).unwrap();
    assert_eq!(&decoded, message);
}

#[test]
fn scan_requested_v1_wire_format() {
    let message = ScanRequestedV1 {
        scan_id: scan_id(),
        host_id: host_id(),
        trigger: ScanTrigger::Manual,
        framework: Some("cis-debian12".into()),
        requested_by: Some(UserId(Uuid::parse_str("0191c0de-0000-7000-8000-000000000003").unwrap())),
        requested_at: at("2026-11-28T10:00:00Z"),
    };
    assert_pinned("scan_requested", &message);
    assert_eq!((ScanRequestedV1::TYPE, ScanRequestedV1::VERSION), ("scan_requested", 1));
    assert_eq!(ScanRequestedV1::QUEUE, QueueName::Scans);
}

#[test]
fn scan_completed_v1_wire_format() {
    let message = ScanCompletedV1 {
        scan_id: scan_id(),
        host_id: host_id(),
        outcome: ScanStatus::Completed,
        started_at: at("2026-11-28T10:00:01Z"),
        finished_at: at("2026-11-28T10:00:02.500Z"),
        failure_reason: None,
        platform: Some(PlatformV1 { family: "debian".into(), version: "12".into() }),
        results: vec![
            RuleResultV1 {
                rule_id: "sshd_disable_root_login".into(),
                status: FindingStatus::Fail,
                severity: Severity::High,
                reason: None,
                evidence: EvidenceV1 {
                    source: "sshd -T".into(),
                    excerpt: "permitrootlogin yes".into(),
                    expected: Some("permitrootlogin no".into()),
                    actual: Some("permitrootlogin yes".into()),
                },
                frameworks: BTreeMap::from([("cis-debian12".to_string(), vec!["5.1.20".to_string()])]),
                duration_us: 42,
            },
            RuleResultV1 {
                rule_id: "auditd_installed".into(),
                status: FindingStatus::Error,
                severity: Severity::Medium,
                reason: Some("requires privilege".into()),
                evidence: EvidenceV1 {
                    source: "dpkg-query -W".into(),
                    excerpt: String::new(),
                    expected: None,
                    actual: None,
                },
                frameworks: BTreeMap::new(),
                duration_us: 3,
            },
        ],
    };
    assert_pinned("scan_completed", &message);
    assert_eq!(ScanCompletedV1::QUEUE, QueueName::Results);
}

#[test]
fn host_check_requested_v1_wire_format() {
    let message = HostCheckRequestedV1 { host_id: host_id(), requested_at: at("2026-11-28T10:00:00Z") };
    assert_pinned("host_check_requested", &message);
    assert_eq!(HostCheckRequestedV1::QUEUE, QueueName::HostMonitoring);
}

#[test]
fn maintenance_job_requested_v1_wire_format() {
    let message = MaintenanceJobRequestedV1 {
        job: MaintenanceJob::ExpireExceptions,
        requested_at: at("2026-11-28T10:00:00Z"),
    };
    assert_pinned("maintenance_job_requested", &message);
    assert_eq!(MaintenanceJobRequestedV1::QUEUE, QueueName::Maintenance);
}

#[test]
fn decoding_ignores_fields_added_by_newer_producers() {
    let mut value = fixture("host_check_requested");
    value["added_in_a_later_release"] = Value::from(true);
    let decoded: HostCheckRequestedV1 = serde_json::from_value(value).unwrap();
    assert_eq!(decoded.host_id, host_id());
}

#[test]
fn decoding_rejects_missing_required_fields_and_bad_enums() {
    let mut value = fixture("scan_requested");
    value.as_object_mut().unwrap().remove("host_id");
    assert!(serde_json::from_value::<ScanRequestedV1>(value).is_err());

    let mut value = fixture("scan_completed");
    value["results"][0]["status"] = Value::from("passed");
    assert!(serde_json::from_value::<ScanCompletedV1>(value).is_err());
}
