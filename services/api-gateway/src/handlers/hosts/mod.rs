//! `/api/hosts/…` and `/api/host-groups/…`: the inventory (`hosts:read` / `hosts:write`).
//!
//! # Layout
//! * `read.rs`, `write.rs`: host list, one host, create, change, delete.
//! * `import.rs` (+ `csv.rs`, the parser): `POST /api/hosts/import`, a CSV file in, a
//!   per-row report out; valid rows are created even when others fail.
//! * `maintenance.rs`: planned maintenance windows of a host.
//! * `groups.rs`, `members.rs`: host groups and their membership.
//!
//! Field rules (shared by the JSON routes and the CSV import, so both accept the same
//! hosts): a name of 1–255 printable characters; an address that is an IP address or a
//! DNS name (no spaces, slashes, ports or schemes; at most 255 characters); a port
//! 1–65535 (default 22); at most 32 tags of 1–64 printable characters each.

mod csv;
mod groups;
mod import;
mod maintenance;
mod members;
mod read;
mod write;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use openwatch_common::domain::{ComplianceState, MonitoringState};
use openwatch_common::ids::HostId;
use openwatch_db::DbError;
use openwatch_db::queries::hosts::Host;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers the routes (`/hosts/import` before `/hosts/{id}`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(import::import_hosts)
        .service(read::list_hosts)
        .service(read::get_host)
        .service(write::create_host)
        .service(write::update_host)
        .service(write::delete_host)
        .service(maintenance::list_windows)
        .service(maintenance::create_window)
        .service(maintenance::delete_window)
        .service(groups::list_groups)
        .service(groups::get_group)
        .service(groups::create_group)
        .service(groups::update_group)
        .service(groups::delete_group)
        .service(members::list_members)
        .service(members::add_members)
        .service(members::remove_member);
}

/// A managed host.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostResponse {
    /// Host id.
    #[schema(value_type = uuid::Uuid)]
    pub id: HostId,
    /// Unique display name.
    pub name: String,
    /// DNS name or IP address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// os-release `ID`, once detected.
    pub os_family: Option<String>,
    /// os-release `VERSION_ID`, once detected.
    pub os_version: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Liveness: `unknown`, `online`, `degraded`, `down`, `maintenance`.
    #[schema(value_type = String, example = "online")]
    pub monitoring_state: MonitoringState,
    /// Compliance band: `unknown`, `critical`, `low`, `partial`, `mostly_compliant`, `compliant`.
    #[schema(value_type = String, example = "partial")]
    pub compliance_state: ComplianceState,
    /// Score (0–100) of the last completed scan.
    pub last_score: Option<f64>,
    /// Last liveness check.
    pub last_check_at: Option<DateTime<Utc>>,
    /// Next scheduled scan.
    pub next_scan_at: DateTime<Utc>,
    /// Checks and scans are paused until then.
    pub maintenance_until: Option<DateTime<Utc>>,
    /// The groups the host belongs to (only on `GET /api/hosts/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_ids: Option<Vec<uuid::Uuid>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last updated.
    pub updated_at: DateTime<Utc>,
}

impl From<Host> for HostResponse {
    fn from(host: Host) -> Self {
        Self {
            id: host.id,
            name: host.name,
            address: host.address,
            port: host.port,
            os_family: host.os_family,
            os_version: host.os_version,
            tags: host.tags,
            monitoring_state: host.monitoring_state,
            compliance_state: host.compliance_state,
            last_score: host.last_score,
            last_check_at: host.last_check_at,
            next_scan_at: host.next_scan_at,
            maintenance_until: host.maintenance_until,
            group_ids: None,
            created_at: host.created_at,
            updated_at: host.updated_at,
        }
    }
}

/// Longest host or group name.
const MAX_NAME_CHARS: usize = 255;
/// Longest address.
const MAX_ADDRESS_LEN: usize = 255;
/// Most tags on a host.
const MAX_TAGS: usize = 32;
/// Longest tag.
const MAX_TAG_CHARS: usize = 64;
/// Port when none is given.
const DEFAULT_PORT: u16 = 22;

/// A field that fails its rule: a stable code and a message. A 400 on the JSON routes,
/// a row error in the CSV import report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invalid {
    code: &'static str,
    message: String,
}

impl Invalid {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::bad_request(invalid.code, invalid.message)
    }
}

/// The trimmed name, or `invalid_name`.
fn clean_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Invalid::new("invalid_name", "name must be 1–255 printable characters"));
    }
    Ok(name.to_owned())
}

/// Whether `label` is a DNS label: 1–63 of letters, digits, `-` (not at either end) and
/// `_` (seen in internal names).
fn dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The trimmed address, or `invalid_address`: an IPv4/IPv6 address, or a DNS name whose
/// labels are valid and which is not all-numeric (`10.0.0.300` is neither).
fn clean_address(address: &str) -> Result<String, Invalid> {
    let address = address.trim();
    let invalid = || {
        Invalid::new(
            "invalid_address",
            "address must be an IP address or a DNS name (no port, path or spaces)",
        )
    };
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return Err(invalid());
    }
    if address.parse::<IpAddr>().is_ok() {
        return Ok(address.to_owned());
    }
    let name = address.strip_suffix('.').unwrap_or(address);
    let labels: Vec<&str> = name.split('.').collect();
    let all_numeric = labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.len() > 253 || all_numeric || !labels.iter().all(|l| dns_label(l)) {
        return Err(invalid());
    }
    Ok(address.to_owned())
}

/// The port (default 22), or `invalid_port` outside 1–65535.
fn check_port(port: Option<i64>) -> Result<u16, Invalid> {
    match port {
        None => Ok(DEFAULT_PORT),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Invalid::new("invalid_port", "port must be 1–65535")),
    }
}

/// Trimmed tags without repeats (first occurrence kept), or `invalid_tags`.
fn clean_tags(tags: impl IntoIterator<Item = String>) -> Result<Vec<String>, Invalid> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(Invalid::new("invalid_tags", "each tag must be 1–64 printable characters"));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(Invalid::new("invalid_tags", "at most 32 tags"));
    }
    Ok(out)
}

/// Maps a write error on `hosts`: a taken name is `host_name_taken`, a missing row
/// `host_not_found`.
fn map_host_error(error: DbError) -> ApiError {
    match error {
        DbError::Conflict { .. } => ApiError::conflict("host_name_taken", "a host with this name exists"),
        other => ApiError::from_db("host", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ip_addresses_or_dns_names() {
        for ok in
            ["10.0.0.1", "::1", "fe80::1", "web-01", "web-01.corp.example.org", "db_1.lan", "host.example."]
        {
            assert!(clean_address(ok).is_ok(), "{ok}");
        }
        assert_eq!(clean_address("  web  ").unwrap(), "web");
        for bad in [
            "",
            "has space",
            "a/b",
            "http://x",
            "web:22",
            "10.0.0.300",
            "-web",
            "web..corp",
            &"a".repeat(64),
            // 255 characters: within the column, beyond DNS's 253.
            &format!("{}com", "a.".repeat(126)),
        ] {
            assert_eq!(clean_address(bad).unwrap_err().code, "invalid_address", "{bad}");
        }
    }

    #[test]
    fn names_ports_and_tags_are_bounded() {
        assert_eq!(clean_name(" a ").unwrap(), "a");
        assert!(clean_name("").is_err());
        assert!(clean_name(&"n".repeat(256)).is_err());
        assert_eq!(check_port(None).unwrap(), 22);
        assert_eq!(check_port(Some(65535)).unwrap(), 65535);
        for bad in [0, -1, 65536] {
            assert_eq!(check_port(Some(bad)).unwrap_err().code, "invalid_port");
        }
        assert_eq!(clean_tags(["a".into(), " b ".into(), "a".into()]).unwrap(), ["a", "b"]);
        assert!(clean_tags(["".into()]).is_err());
        assert!(clean_tags(["t".repeat(65)]).is_err());
        assert!(clean_tags((0..33).map(|i| format!("t{i}"))).is_err());
        assert!(clean_tags((0..32).map(|i| format!("t{i}"))).is_ok());
    }
}
