//! Metrics only `result-processor` records, beyond the shared ones it also uses
//! (`openwatch_findings_ingested_total`, `openwatch_scans_total`).
//!
//! Every label has a small fixed set of values (no per-host or per-rule label). These
//! names belong in `openwatch_telemetry::metrics` and `docs/OBSERVABILITY.md` with the
//! others; they live here until that crate adopts them.

/// Counter of drift events written. Labels: `kind` (`rule`, `score`).
pub const DRIFT_EVENTS_TOTAL: &str = "openwatch_drift_events_total";
/// Counter of alerts raised by result processing (new or re-raised). Labels: `alert_type`
/// (`rule_failed`, `score_dropped`, `host_below_threshold`, `mass_drift`,
/// `host_key_mismatch`, `scan_failed`), `opened` (`true` for a new alert).
pub const ALERTS_RAISED_TOTAL: &str = "openwatch_alerts_raised_total";
/// Counter of alerts resolved automatically by result processing.
pub const ALERTS_RESOLVED_TOTAL: &str = "openwatch_alerts_resolved_total";
/// Counter of completed scans by the compliance state they left their host in (the
/// distribution of host scores in bands). Labels: `state`.
pub const HOST_COMPLIANCE_STATES_TOTAL: &str = "openwatch_host_compliance_states_total";

/// Registers the help texts (call once, after the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(DRIFT_EVENTS_TOTAL, "Drift events written, by kind (rule or score).");
    metrics::describe_counter!(ALERTS_RAISED_TOTAL, "Alerts raised by result processing, by type.");
    metrics::describe_counter!(ALERTS_RESOLVED_TOTAL, "Alerts resolved automatically by result processing.");
    metrics::describe_counter!(
        HOST_COMPLIANCE_STATES_TOTAL,
        "Completed scans by the compliance state they left the host in."
    );
}
