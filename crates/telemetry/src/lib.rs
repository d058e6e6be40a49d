//! Telemetry for every OpenWatch service: structured logs, OpenTelemetry traces and the
//! Prometheus metrics recorder, plus the shared metric names.
//!
//! A service calls [`init`] first thing in `main` and keeps the returned [`TelemetryGuard`]
//! alive until exit (dropping it flushes pending spans). The `/metrics` endpoint renders the
//! handle returned by [`prometheus`]. Traces cross RabbitMQ as a W3C `traceparent` header:
//! the publisher stores [`current_traceparent`], the consumer calls
//! [`span_with_remote_parent`] on its handling span.
//!
//! Environment (read by [`init`]):
//! * `RUST_LOG`: the `tracing` filter, default `info`.
//! * `LOG_FORMAT=json`: one JSON object per line; anything else gives human readable text.
//! * `OTEL_EXPORTER_OTLP_ENDPOINT`: when set, spans are exported over OTLP/HTTP (protobuf);
//!   when unset nothing is exported (trace ids are still generated and propagated). The
//!   exporter appends `/v1/traces`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used verbatim) and
//!   the other standard `OTEL_EXPORTER_OTLP_*` variables are honoured by the exporter.
//! * `OTEL_SERVICE_NAME`: overrides the `service.name` resource attribute of exported spans.
//!
//! # Layout
//! * `lib.rs`: [`init`], [`TelemetryGuard`], [`TelemetryError`].
//! * `format.rs`: the log line formatter that stamps the service name on every line.
//! * `propagation.rs`: W3C trace context in and out of message headers.
//! * `recorder.rs`: the process-wide Prometheus recorder.
//! * [`metrics`]: metric names shared by all services (documented in `docs/OBSERVABILITY.md`).

mod format;
pub mod metrics;
mod propagation;
mod recorder;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

pub use metrics_exporter_prometheus::PrometheusHandle;
pub use propagation::{TRACEPARENT_HEADER, current_traceparent, span_with_remote_parent};
pub use recorder::prometheus;

/// How long dropping the guard waits for pending spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Set once [`init`] has started; a second call returns [`TelemetryError::AlreadyInitialized`].
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Why telemetry could not be set up. Every variant is a startup misconfiguration: the
/// service should exit with the message.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `init` was already called in this process (the global subscriber can be set once).
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
    /// `RUST_LOG` is not a valid filter; fix the variable.
    #[error("RUST_LOG is not a valid tracing filter: {0}")]
    InvalidFilter(String),
    /// The OTLP exporter could not be built from `OTEL_EXPORTER_OTLP_*`; fix the variables.
    #[error("cannot build the OTLP exporter for OTEL_EXPORTER_OTLP_ENDPOINT={endpoint:?}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// What the exporter builder said.
        reason: String,
    },
    /// Another global `tracing` subscriber is already installed.
    #[error("cannot install the global tracing subscriber: {0}")]
    Subscriber(String),
}

/// Keeps telemetry alive; dropping it flushes and shuts down the tracer provider, so keep it
/// in `main` until the service has finished its work.
#[must_use = "dropping the guard shuts tracing export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP (that is, `OTEL_EXPORTER_OTLP_ENDPOINT` was set).
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else { return };
        if !self.exporting {
            return;
        }
        // The batch processor runs on the Tokio runtime; shutting down blocks until it has
        // answered. Do it on a helper thread and wait a bounded time, so a stuck collector
        // (or a current-thread runtime that cannot make progress while we block) never
        // prevents the process from exiting.
        let (done_tx, done_rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("otel-shutdown".into()).spawn(move || {
            let result = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
            let _ = done_tx.send(result);
        });
        if spawned.is_err() {
            return;
        }
        match done_rx.recv_timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("telemetry: flushing spans on shutdown failed: {err}"),
            Err(_) => eprintln!("telemetry: flushing spans on shutdown timed out"),
        }
    }
}

/// Installs the global `tracing` subscriber for `service`: the `RUST_LOG` filter (default
/// `info`), text or JSON (`LOG_FORMAT=json`) lines on stdout carrying the service name, and
/// an OpenTelemetry layer. Spans are exported over OTLP/HTTP only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set; in that case `init` must run inside a Tokio runtime.
///
/// Also installs the W3C TraceContext propagator globally. Calling `init` twice returns
/// [`TelemetryError::AlreadyInitialized`] and changes nothing.
pub fn init(service: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(TelemetryError::AlreadyInitialized);
    }
    let result = try_init(service);
    if result.is_err() {
        INITIALIZED.store(false, Ordering::SeqCst);
    }
    result
}

fn try_init(service: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(|err| TelemetryError::InvalidFilter(err.to_string()))?;
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let endpoint = non_empty_env("OTEL_EXPORTER_OTLP_ENDPOINT");
    let service_name = non_empty_env("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned());

    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build().map_err(|err| {
            TelemetryError::Exporter { endpoint: endpoint.clone(), reason: err.to_string() }
        })?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service);

    let otel_layer = tracing_opentelemetry::layer().with_tracer(tracer);
    let fmt_layer = format::layer(service, json);
    let subscriber = tracing_subscriber::registry().with(filter).with(otel_layer).with(fmt_layer);
    if let Err(err) = tracing::subscriber::set_global_default(subscriber) {
        let _ = provider.shutdown();
        return Err(TelemetryError::Subscriber(err.to_string()));
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    tracing::debug!(otlp.endpoint = endpoint.as_deref().unwrap_or("none"), "telemetry initialised");
    Ok(TelemetryGuard { provider: Some(provider), exporting: endpoint.is_some() })
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_an_error_not_a_panic() {
        if non_empty_env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            return; // exporting needs a Tokio runtime; this test is about the subscriber
        }
        let guard = init("test-service").expect("first init");
        assert!(!guard.exporting());
        assert!(matches!(init("test-service"), Err(TelemetryError::AlreadyInitialized)));
        tracing::info!("logged once telemetry is up");
        drop(guard);
    }
}
