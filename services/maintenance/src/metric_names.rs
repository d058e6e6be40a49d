//! Metrics only `maintenance` records.
//!
//! Labels have small fixed sets of values (no per-host or per-scan label). These names
//! belong in `openwatch_telemetry::metrics` and `docs/OBSERVABILITY.md` with the others;
//! they live here until that crate adopts them.

/// Counter of scheduled scans queued by the dispatcher. Labels: `compliance_state` (the
/// host's state when dispatched: `critical`, `unknown`, `low`, `partial`,
/// `mostly_compliant`, `compliant`).
pub const SCANS_DISPATCHED_TOTAL: &str = "openwatch_scans_dispatched_total";
/// Counter of stale scans handled by the reaper. Labels: `status` (`running`: lease
/// passed; `queued`: request not picked up), `action` (`requeued`, `failed`), `trigger`
/// (`manual`, `scheduled`).
pub const STALE_SCANS_TOTAL: &str = "openwatch_stale_scans_total";

/// Registers the help texts (call once, after the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(
        SCANS_DISPATCHED_TOTAL,
        "Scheduled scans queued by the dispatcher, by the host's compliance state."
    );
    metrics::describe_counter!(
        STALE_SCANS_TOTAL,
        "Stale scans re-enqueued or failed `abandoned` by the reaper, by status found, action and trigger."
    );
}
