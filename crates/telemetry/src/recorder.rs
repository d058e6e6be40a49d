//! The process-wide Prometheus recorder behind the `metrics` macros.
//!
//! There is no built-in HTTP listener: the service's ops server renders the handle at
//! `GET /metrics`, next to `/health`, on the port it already serves.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::metrics::{LATENCY_BUCKETS, SCAN_BUCKETS, SCAN_DURATION_SECONDS, describe_all};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder on first call and returns a handle to render the
/// text exposition; later calls return the same handle. Histograms are rendered as true
/// Prometheus histograms (buckets), so they can be aggregated across instances.
///
/// If another global recorder was installed first (by a test, say), the returned handle is
/// not connected to the `metrics` macros and renders only help texts; a warning is logged.
pub fn prometheus() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn with_buckets() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SCAN_DURATION_SECONDS.to_owned()), SCAN_BUCKETS)
}

fn install() -> PrometheusHandle {
    // Only fails on empty bucket lists, which the constants are not; fall back to summaries.
    let builder = with_buckets().unwrap_or_else(|_| PrometheusBuilder::new());
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(err) = metrics::set_global_recorder(recorder) {
        tracing::warn!(error = %err, "a metrics recorder was already installed; /metrics will not see recorded values");
    }
    describe_all();
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_contains_a_recorded_counter() {
        let handle = prometheus();
        metrics::counter!(crate::metrics::SCANS_TOTAL, "status" => "completed", "trigger" => "manual")
            .increment(3);
        metrics::histogram!(crate::metrics::HTTP_REQUEST_DURATION_SECONDS, "method" => "GET", "route" => "/health")
            .record(0.004);
        handle.run_upkeep();
        let text = handle.render();
        assert!(text.contains("# TYPE openwatch_scans_total counter"), "{text}");
        assert!(text.contains("# HELP openwatch_scans_total Scans that reached a status."), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("openwatch_scans_total{")
                && l.contains("status=\"completed\"")
                && l.ends_with(" 3")),
            "{text}"
        );
        assert!(text.contains("openwatch_http_request_duration_seconds_bucket{"), "{text}");
        // The same handle comes back: installing is idempotent.
        assert!(prometheus().render().contains("openwatch_scans_total"));
    }
}
