//! The ops HTTP server every service runs: `GET /health` (dependency report, 200/503) and
//! `GET /metrics` (Prometheus text exposition).
//!
//! Workers run [`OpsServer`] on their own port. The api-gateway, which already serves HTTP,
//! mounts the same routes in its app with [`configure_ops`] and wraps its app in
//! [`HttpMetrics`]. HTTP/1.1 only (actix-web is built without HTTP/2); process signals are
//! not handled by actix: the server stops gracefully when the service's shutdown
//! [`CancellationToken`] fires (see [`crate::shutdown`]).

use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::future::LocalBoxFuture;
use openwatch_telemetry::PrometheusHandle;
use openwatch_telemetry::metrics::{BUILD_INFO, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
use tokio_util::sync::CancellationToken;

use crate::health::HealthRegistry;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How long in-flight ops requests may take to finish once shutdown fires, in seconds.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Mounts `GET /health` and `GET /metrics` on `cfg`, and sets the `openwatch_build_info`
/// gauge. Used by [`OpsServer`] and by the api-gateway in its own app.
pub fn configure_ops(cfg: &mut web::ServiceConfig, registry: HealthRegistry, prometheus: PrometheusHandle) {
    metrics::gauge!(
        BUILD_INFO,
        "service" => registry.service().to_owned(),
        "version" => registry.version().to_owned()
    )
    .set(1.0);
    cfg.route(
        "/health",
        web::get().to(move || {
            let registry = registry.clone();
            async move { health(&registry).await }
        }),
    )
    .route(
        "/metrics",
        web::get().to(move || {
            let prometheus = prometheus.clone();
            async move { render_metrics(&prometheus) }
        }),
    );
}

async fn health(registry: &HealthRegistry) -> HttpResponse {
    let report = registry.run().await;
    let status = if report.is_healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(report)
}

fn render_metrics(prometheus: &PrometheusHandle) -> HttpResponse {
    // Upkeep drains histogram samples into their buckets; doing it per scrape keeps the
    // exposition current without a background thread.
    prometheus.run_upkeep();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(prometheus.render())
}

/// Extra routes a service mounts next to `/health` and `/metrics` (the api-gateway's
/// `/api`). Called once per HTTP worker.
pub type HttpMount = std::sync::Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A running ops server. Dropping it does not stop the server: cancel the shutdown token.
#[derive(Debug)]
pub struct OpsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Binds `addr` (port 0 picks a free port, see [`OpsServer::local_addr`]) and serves the
    /// ops routes with one worker until `shutdown` is cancelled, then stops gracefully,
    /// giving in-flight requests [`SHUTDOWN_TIMEOUT_SECS`]. Must be called inside a Tokio
    /// runtime. Fails when the address cannot be bound; the message names it.
    pub fn start(
        addr: SocketAddr,
        registry: HealthRegistry,
        prometheus: PrometheusHandle,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        Self::start_with(addr, registry, prometheus, shutdown, None, 1)
    }

    /// [`OpsServer::start`] with extra routes (`mount`) served by `workers` HTTP workers.
    pub fn start_with(
        addr: SocketAddr,
        registry: HealthRegistry,
        prometheus: PrometheusHandle,
        shutdown: CancellationToken,
        mount: Option<HttpMount>,
        workers: usize,
    ) -> std::io::Result<Self> {
        let with_addr = |what: &str, err: std::io::Error| {
            std::io::Error::new(err.kind(), format!("{what} {addr}: {err}"))
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| with_addr("cannot bind ops server on", e))?;
        listener.set_nonblocking(true).map_err(|e| with_addr("cannot configure listener on", e))?;
        let local_addr =
            listener.local_addr().map_err(|e| with_addr("cannot read address of listener on", e))?;
        let server = HttpServer::new(move || {
            let registry = registry.clone();
            let prometheus = prometheus.clone();
            let mount = mount.clone();
            App::new().wrap(HttpMetrics).configure(move |cfg| {
                configure_ops(cfg, registry, prometheus);
                if let Some(mount) = mount {
                    mount(cfg);
                }
            })
        })
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)
        .map_err(|e| with_addr("cannot listen on", e))?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::debug!(%local_addr, "stopping ops server");
            handle.stop(true).await;
        });
        tracing::info!(addr = %local_addr, "ops server listening (/health, /metrics)");
        Ok(Self { local_addr, task })
    }

    /// The bound address (useful when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after the shutdown token fired).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(std::io::Error::other(format!("ops server task failed: {join_error}"))),
        }
    }
}

/// Middleware recording `openwatch_http_requests_total` and
/// `openwatch_http_request_duration_seconds` for every request, labelled by method, route
/// pattern (not the raw path, to keep cardinality bounded) and status.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetrics;

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsMiddleware { service }))
    }
}

/// The service built by [`HttpMetrics`].
#[derive(Debug)]
pub struct HttpMetricsMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.method());
        let response = self.service.call(req);
        Box::pin(async move {
            let result = response.await;
            let (route, status) = match &result {
                Ok(res) => (
                    res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned()),
                    res.status().as_u16(),
                ),
                Err(err) => ("unmatched".to_owned(), err.as_response_error().status_code().as_u16()),
            };
            metrics::counter!(
                HTTP_REQUESTS_TOTAL,
                "method" => method,
                "route" => route.clone(),
                "status" => status.to_string()
            )
            .increment(1);
            metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Standard methods by name; anything else is `other` (method strings are client input).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::health::HealthCheck;

    /// Minimal HTTP/1.1 GET: (status, head, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    fn start(registry: HealthRegistry) -> (OpsServer, CancellationToken) {
        let shutdown = CancellationToken::new();
        let server = OpsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            registry,
            openwatch_telemetry::prometheus(),
            shutdown.clone(),
        )
        .unwrap();
        (server, shutdown)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_health_and_metrics_then_stops_on_cancel() {
        let registry = HealthRegistry::new("scan-worker", "0.1.0")
            .with_check(HealthCheck::new("postgres", || async { Ok(()) }));
        let (server, shutdown) = start(registry);
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, head, body) = get(addr, "/health").await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["service"], "scan-worker");
        assert_eq!(json["checks"]["postgres"]["status"], "ok");

        let (status, _, _) = get(addr, "/nope").await;
        assert_eq!(status, 404);

        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        assert!(
            body.lines().any(|l| l.starts_with("openwatch_http_requests_total{")
                && l.contains("route=\"/health\"")
                && l.contains("status=\"200\"")),
            "{body}"
        );
        assert!(body.contains("route=\"unmatched\""), "{body}");
        assert!(body.contains("openwatch_dependency_up{dependency=\"postgres\"} 1"), "{body}");
        assert!(body.contains("openwatch_build_info{"), "{body}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server.wait()).await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_answers_503_within_two_seconds_when_a_dependency_hangs() {
        let registry = HealthRegistry::new("result-processor", "0.1.0")
            .with_check(HealthCheck::new("postgres", || async { Ok(()) }))
            .with_check(HealthCheck::new("rabbitmq", || async {
                std::future::pending::<()>().await;
                Ok(())
            }));
        let (server, shutdown) = start(registry);
        let started = std::time::Instant::now();
        let (status, _, body) = get(server.local_addr(), "/health").await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(status, 503);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["checks"]["rabbitmq"]["error"], "timed out after 1500 ms");
        assert_eq!(json["checks"]["postgres"]["status"], "ok");
        shutdown.cancel();
        server.wait().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binding_a_used_port_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = OpsServer::start(
            addr,
            HealthRegistry::new("x", "1"),
            openwatch_telemetry::prometheus(),
            CancellationToken::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
