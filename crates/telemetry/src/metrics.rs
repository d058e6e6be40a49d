//! Metric names shared by all services. Every name is prefixed `openwatch_`; labels are
//! listed per metric and are always low-cardinality (queue, status, outcome, route pattern),
//! except the per-host compliance score. The table in `docs/OBSERVABILITY.md` mirrors this
//! file: change both together.
//!
//! Record with the `metrics` macros, e.g.
//! `metrics::counter!(SCANS_TOTAL, "status" => "completed").increment(1)`.

/// Counter of HTTP requests served. Labels: `method`, `route` (the route pattern, e.g.
/// `/api/v1/hosts/{id}`, or `unmatched`), `status` (numeric code).
pub const HTTP_REQUESTS_TOTAL: &str = "openwatch_http_requests_total";
/// Histogram of HTTP request latency in seconds. Labels: `method`, `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "openwatch_http_request_duration_seconds";
/// Counter of RabbitMQ messages consumed. Labels: `queue`, `outcome` (`acked`, `retried`,
/// `dead_lettered`, `rejected`, `unsettled`).
pub const MQ_MESSAGES_CONSUMED_TOTAL: &str = "openwatch_mq_messages_consumed_total";
/// Counter of RabbitMQ messages published (confirmed by the broker or not). Labels: `queue`,
/// `outcome` (`confirmed`, `failed`).
pub const MQ_MESSAGES_PUBLISHED_TOTAL: &str = "openwatch_mq_messages_published_total";
/// Gauge of messages waiting in a queue, as last observed by a consumer. Labels: `queue`.
pub const MQ_QUEUE_DEPTH: &str = "openwatch_mq_queue_depth";
/// Counter of outbox rows relayed to RabbitMQ (published, confirmed and deleted).
pub const OUTBOX_RELAYED_TOTAL: &str = "openwatch_outbox_relayed_total";
/// Gauge of the age in seconds of the oldest outbox row not yet relayed (0 when empty).
pub const OUTBOX_LAG_SECONDS: &str = "openwatch_outbox_lag_seconds";
/// Counter of scans that reached a status. Labels: `status` (`queued`, `running`,
/// `completed`, `failed`, `cancelled`, `timed_out`), `trigger` (`manual`, `scheduled`).
pub const SCANS_TOTAL: &str = "openwatch_scans_total";
/// Histogram of scan wall-clock duration in seconds, connect to last result. Labels: `outcome`.
pub const SCAN_DURATION_SECONDS: &str = "openwatch_scan_duration_seconds";
/// Counter of rule evaluations by result. Labels: `status` (`pass`, `fail`, `error`,
/// `not_applicable`, …, as in `openwatch_common`).
pub const RULES_EVALUATED_TOTAL: &str = "openwatch_rules_evaluated_total";
/// Counter of findings (per-rule results) stored by the result processor.
pub const FINDINGS_INGESTED_TOTAL: &str = "openwatch_findings_ingested_total";
/// Histogram of consumer handler run time in seconds. Labels: `queue`.
pub const MQ_HANDLER_DURATION_SECONDS: &str = "openwatch_mq_handler_duration_seconds";
/// Counter of failed attempts to connect to RabbitMQ.
pub const MQ_CONNECT_FAILURES_TOTAL: &str = "openwatch_mq_connect_failures_total";
/// Counter of re-established RabbitMQ connections (after a loss).
pub const MQ_RECONNECTS_TOTAL: &str = "openwatch_mq_reconnects_total";
/// Counter of host liveness checks. Labels: `state` (the recorded monitoring state).
pub const HOST_CHECKS_TOTAL: &str = "openwatch_host_checks_total";
/// Histogram of liveness probe (TCP connect) time in seconds.
pub const HOST_PROBE_DURATION_SECONDS: &str = "openwatch_host_probe_duration_seconds";
/// Gauge of hosts per monitoring state. Labels: `state` (`online`, `degraded`, `offline`, …).
pub const HOSTS_BY_STATE: &str = "openwatch_hosts";
/// Gauge of the latest compliance score (0–100) per host. Labels: `host_id`.
pub const COMPLIANCE_SCORE: &str = "openwatch_compliance_score";
/// Gauge, 1 when the last health check of a dependency passed, 0 otherwise. Labels:
/// `dependency` (`postgres`, `rabbitmq`, `redis`, …).
pub const DEPENDENCY_UP: &str = "openwatch_dependency_up";
/// Gauge of the last health check latency of a dependency, in seconds. Labels: `dependency`.
pub const DEPENDENCY_CHECK_DURATION_SECONDS: &str = "openwatch_dependency_check_duration_seconds";
/// Gauge, always 1, whose labels identify the running build. Labels: `service`, `version`.
pub const BUILD_INFO: &str = "openwatch_build_info";
/// Counter: API requests refused with 429, by `bucket` (`auth`, `principal`, `address`).
pub const RATE_LIMITED_TOTAL: &str = "openwatch_api_rate_limited_total";
/// Counter: login attempts, by `outcome` (`success`, `failure`, `locked`, `mfa_required`).
pub const LOGINS_TOTAL: &str = "openwatch_api_logins_total";

/// Bucket upper bounds (seconds) for request-sized latencies.
pub(crate) const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bucket upper bounds (seconds) for scans, which take seconds to many minutes.
pub(crate) const SCAN_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Registers the `# HELP` text of every metric with the installed recorder.
pub(crate) fn describe_all() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests served, by method, route and status.");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request latency.");
    describe_counter!(MQ_MESSAGES_CONSUMED_TOTAL, "RabbitMQ messages consumed, by queue and outcome.");
    describe_counter!(MQ_MESSAGES_PUBLISHED_TOTAL, "RabbitMQ messages published, by queue and outcome.");
    describe_gauge!(MQ_QUEUE_DEPTH, "Messages waiting in a queue, as last observed.");
    describe_counter!(OUTBOX_RELAYED_TOTAL, "Outbox rows relayed to RabbitMQ.");
    describe_gauge!(OUTBOX_LAG_SECONDS, Unit::Seconds, "Age of the oldest outbox row not yet relayed.");
    describe_counter!(SCANS_TOTAL, "Scans that reached a status.");
    describe_histogram!(SCAN_DURATION_SECONDS, Unit::Seconds, "Scan wall-clock duration.");
    describe_counter!(RULES_EVALUATED_TOTAL, "Rule evaluations, by result status.");
    describe_counter!(FINDINGS_INGESTED_TOTAL, "Findings stored by the result processor.");
    describe_histogram!(MQ_HANDLER_DURATION_SECONDS, Unit::Seconds, "Consumer handler run time, by queue.");
    describe_counter!(MQ_CONNECT_FAILURES_TOTAL, "Failed attempts to connect to RabbitMQ.");
    describe_counter!(MQ_RECONNECTS_TOTAL, "RabbitMQ connections re-established after a loss.");
    describe_counter!(HOST_CHECKS_TOTAL, "Host liveness checks, by recorded state.");
    describe_histogram!(HOST_PROBE_DURATION_SECONDS, Unit::Seconds, "Liveness probe (TCP connect) time.");
    describe_gauge!(HOSTS_BY_STATE, "Hosts per monitoring state.");
    describe_gauge!(COMPLIANCE_SCORE, "Latest compliance score (0-100) per host.");
    describe_gauge!(DEPENDENCY_UP, "1 when the last health check of a dependency passed, else 0.");
    describe_gauge!(DEPENDENCY_CHECK_DURATION_SECONDS, Unit::Seconds, "Last health check latency.");
    describe_gauge!(BUILD_INFO, "Always 1; labels identify the running service and version.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_valid() {
        let names = [
            HTTP_REQUESTS_TOTAL,
            HTTP_REQUEST_DURATION_SECONDS,
            MQ_MESSAGES_CONSUMED_TOTAL,
            MQ_MESSAGES_PUBLISHED_TOTAL,
            MQ_QUEUE_DEPTH,
            OUTBOX_RELAYED_TOTAL,
            OUTBOX_LAG_SECONDS,
            SCANS_TOTAL,
            SCAN_DURATION_SECONDS,
            RULES_EVALUATED_TOTAL,
            FINDINGS_INGESTED_TOTAL,
            MQ_HANDLER_DURATION_SECONDS,
            MQ_CONNECT_FAILURES_TOTAL,
            MQ_RECONNECTS_TOTAL,
            HOST_CHECKS_TOTAL,
            HOST_PROBE_DURATION_SECONDS,
            HOSTS_BY_STATE,
            COMPLIANCE_SCORE,
            DEPENDENCY_UP,
            DEPENDENCY_CHECK_DURATION_SECONDS,
            BUILD_INFO,
        ];
        for name in names {
            assert!(name.starts_with("openwatch_"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
        }
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "names are unique");
    }
}
