//! Dependency health checks and the `/health` report.
//!
//! A service registers one [`HealthCheck`] per dependency (PostgreSQL, RabbitMQ, Redis, …).
//! [`HealthRegistry::run`] runs them all **concurrently, each bounded by a timeout**
//! (default 1.5 s), so `/health` answers within about that time even when a dependency
//! hangs instead of refusing: load balancers and orchestrators must get an answer, and a
//! hanging health endpoint is indistinguishable from a dead service.
//!
//! Report (HTTP 200 when every check passed, 503 otherwise):
//! ```json
//! {"status":"degraded","service":"scan-worker","version":"0.1.0",
//!  "checks":{"postgres":{"status":"ok","latency_ms":3},
//!            "rabbitmq":{"status":"error","error":"connection refused","latency_ms":0}}}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openwatch_telemetry::metrics::{DEPENDENCY_CHECK_DURATION_SECONDS, DEPENDENCY_UP};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// The default bound on one check: keeps `/health` under 2 s with margin.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The boxed future a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

type CheckFn = dyn Fn() -> CheckFuture + Send + Sync + 'static;

/// One named dependency check: an async closure that returns `Ok(())` when the dependency
/// answers, or a short human readable error (no secrets: it is served over HTTP).
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl HealthCheck {
    /// A check called `name` (`postgres`, `rabbitmq`, `redis`; it becomes the key in the
    /// report and the `dependency` label of the metrics) that runs `check` on each `/health`.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name: name.into(), check: Arc::new(move || Box::pin(check()) as CheckFuture) }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The set of checks of one service, cheap to clone (shared by all HTTP workers).
#[derive(Clone, Debug)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

/// Cloned only while building (`Arc::make_mut`), before the registry is shared.
#[derive(Debug, Clone)]
struct Inner {
    service: String,
    version: String,
    checks: Vec<HealthCheck>,
    timeout: Duration,
    /// The runtime the service was built on: checks run there, next to the pools they use,
    /// rather than on the HTTP worker's runtime.
    runtime: Option<Handle>,
}

impl HealthRegistry {
    /// An empty registry for `service` at `version` (usually `env!("CARGO_PKG_VERSION")`).
    /// When created inside a Tokio runtime, checks are spawned on that runtime.
    pub fn new(service: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: service.into(),
                version: version.into(),
                checks: Vec::new(),
                timeout: DEFAULT_CHECK_TIMEOUT,
                runtime: Handle::try_current().ok(),
            }),
        }
    }

    /// Adds a check (replacing one with the same name).
    #[must_use]
    pub fn with_check(mut self, check: HealthCheck) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.checks.retain(|c| c.name != check.name);
        inner.checks.push(check);
        self
    }

    /// Sets the per-check timeout (default [`DEFAULT_CHECK_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// The service name reported.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The version reported.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Runs every check concurrently, each bounded by the timeout, updates the
    /// `openwatch_dependency_*` gauges and returns the report.
    pub async fn run(&self) -> HealthReport {
        let runs = self.inner.checks.iter().map(|check| self.run_one(check));
        let results = futures_util::future::join_all(runs).await;
        let checks: BTreeMap<String, CheckReport> = results.into_iter().collect();
        let status = if checks.values().all(|c| c.status == CheckStatus::Ok) {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        };
        HealthReport {
            status,
            service: self.inner.service.clone(),
            version: self.inner.version.clone(),
            checks,
        }
    }

    async fn run_one(&self, check: &HealthCheck) -> (String, CheckReport) {
        let timeout = self.inner.timeout;
        let started = Instant::now();
        let future = (check.check)();
        let task = match &self.inner.runtime {
            Some(runtime) => runtime.spawn(future),
            None => tokio::spawn(future),
        };
        let abort = task.abort_handle();
        let outcome = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) if join_error.is_panic() => Err("check panicked".to_owned()),
            Ok(Err(_)) => Err("check was cancelled".to_owned()),
            Err(_) => {
                abort.abort();
                Err(format!("timed out after {} ms", timeout.as_millis()))
            }
        };
        let elapsed = started.elapsed();
        let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let up = outcome.is_ok();
        metrics::gauge!(DEPENDENCY_UP, "dependency" => check.name.clone()).set(if up { 1.0 } else { 0.0 });
        metrics::gauge!(DEPENDENCY_CHECK_DURATION_SECONDS, "dependency" => check.name.clone())
            .set(elapsed.as_secs_f64());
        let report = match outcome {
            Ok(()) => CheckReport { status: CheckStatus::Ok, error: None, latency_ms },
            Err(error) => {
                tracing::warn!(dependency = %check.name, error = %error, latency_ms, "health check failed");
                CheckReport { status: CheckStatus::Error, error: Some(error), latency_ms }
            }
        };
        (check.name.clone(), report)
    }
}

/// Overall status: `ok` when every check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every dependency answered.
    Ok,
    /// At least one dependency failed or timed out; the service may still be partly useful.
    Degraded,
}

/// Status of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The dependency answered.
    Ok,
    /// The dependency failed or timed out; see `error`.
    Error,
}

/// Result of one check in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Whether it passed.
    pub status: CheckStatus,
    /// Why it failed (absent when it passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
}

/// The `/health` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok` or `degraded`.
    pub status: HealthStatus,
    /// The service name.
    pub service: String,
    /// The service version.
    pub version: String,
    /// One entry per dependency, by name.
    pub checks: BTreeMap<String, CheckReport>,
}

impl HealthReport {
    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Ok
    }

    /// The HTTP status to serve: 200 when healthy, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        if self.is_healthy() { 200 } else { 503 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> HealthRegistry {
        HealthRegistry::new("scan-worker", "0.1.0")
            .with_check(HealthCheck::new("postgres", || async { Ok(()) }))
            .with_check(HealthCheck::new("rabbitmq", || async { Err("connection refused".to_owned()) }))
    }

    #[tokio::test]
    async fn all_ok_is_ok_and_200() {
        let report = HealthRegistry::new("maintenance", "0.1.0")
            .with_check(HealthCheck::new("postgres", || async { Ok(()) }))
            .run()
            .await;
        assert_eq!(report.status, HealthStatus::Ok);
        assert_eq!(report.http_status(), 200);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"]["postgres"]["status"], "ok");
        assert!(json["checks"]["postgres"].get("error").is_none());
    }

    #[tokio::test]
    async fn a_failing_check_degrades_with_the_documented_json() {
        let report = registry().run().await;
        assert_eq!(report.http_status(), 503);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["service"], "scan-worker");
        assert_eq!(json["version"], "0.1.0");
        assert_eq!(json["checks"]["postgres"]["status"], "ok");
        assert_eq!(json["checks"]["rabbitmq"]["status"], "error");
        assert_eq!(json["checks"]["rabbitmq"]["error"], "connection refused");
        assert!(json["checks"]["rabbitmq"]["latency_ms"].is_u64());
    }

    #[tokio::test]
    async fn hanging_checks_time_out_concurrently() {
        let hang = || async {
            std::future::pending::<()>().await;
            Ok(())
        };
        let registry = HealthRegistry::new("api-gateway", "0.1.0")
            .with_check(HealthCheck::new("postgres", hang))
            .with_check(HealthCheck::new("redis", hang))
            .with_check(HealthCheck::new("rabbitmq", hang))
            .with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let report = registry.run().await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(900), "checks ran concurrently: {elapsed:?}");
        for check in report.checks.values() {
            assert_eq!(check.error.as_deref(), Some("timed out after 300 ms"));
        }
    }

    #[tokio::test]
    async fn default_timeout_message() {
        let report = HealthRegistry::new("x", "1")
            .with_check(HealthCheck::new("stuck", || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }))
            .run()
            .await;
        assert_eq!(report.checks["stuck"].error.as_deref(), Some("timed out after 1500 ms"));
        assert!(report.checks["stuck"].latency_ms < 2000);
    }

    #[tokio::test]
    async fn a_panicking_check_is_an_error_not_a_crash() {
        let report = HealthRegistry::new("x", "1")
            .with_check(HealthCheck::new("boom", || async { panic!("bug in check") }))
            .run()
            .await;
        assert_eq!(report.checks["boom"].error.as_deref(), Some("check panicked"));
    }

    #[test]
    fn same_name_replaces() {
        let registry = registry().with_check(HealthCheck::new("postgres", || async { Err("x".into()) }));
        assert_eq!(registry.inner.checks.len(), 2);
    }
}
