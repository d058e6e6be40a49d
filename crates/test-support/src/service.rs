//! Running a real service binary against isolated real dependencies, and the checks every
//! service must pass (`/health`, `/metrics`, failing dependencies, SIGTERM).
//!
//! A [`ServiceHarness`] owns a fresh database, a broker prefix and a Redis key prefix; it
//! starts the binary with those (or with one dependency routed through a [`TcpProxy`] that
//! refuses or swallows connections) on a free loopback port.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::broker::TestBroker;
use crate::database::TestDatabase;
use crate::http;
use crate::process::ServiceProcess;
use crate::prometheus::{self, Sample};
use crate::proxy::{ProxyMode, TcpProxy};
use crate::redis::TestRedis;

/// How long a service may take to become healthy on a loaded CI machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound the product promises for `/health`, even when a dependency hangs.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// A dependency a service may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// PostgreSQL (check `postgres`).
    Postgres,
    /// RabbitMQ (checks `rabbitmq`, and `rabbitmq_outbox` where the service relays).
    RabbitMq,
    /// Redis (check `redis`).
    Redis,
}

impl Dependency {
    /// The health check names reporting this dependency start with this.
    pub fn check_prefix(self) -> &'static str {
        match self {
            Dependency::Postgres => "postgres",
            Dependency::RabbitMq => "rabbitmq",
            Dependency::Redis => "redis",
        }
    }
}

/// Isolated dependencies for one service binary.
pub struct ServiceHarness {
    bin: PathBuf,
    db: TestDatabase,
    broker: TestBroker,
    redis: TestRedis,
    extra_env: Vec<(String, String)>,
}

/// A started service.
pub struct RunningService {
    /// The process (killed on drop).
    pub process: ServiceProcess,
    /// Where `/health` and `/metrics` listen.
    pub addr: SocketAddr,
    /// The proxy standing in for a dependency, when one was broken on purpose.
    pub proxy: Option<TcpProxy>,
}

/// JWT signing material given to services under test.
pub const TEST_SECRET_KEY: &str = "service-test-secret-key-0123456789abcdef";
/// Credential encryption key (base64 of 32 bytes) given to services under test.
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

impl ServiceHarness {
    /// Fresh database, broker prefix and Redis prefix for `bin`
    /// (`env!("CARGO_BIN_EXE_openwatch-…")`).
    pub async fn new(bin: &str) -> Self {
        Self {
            bin: PathBuf::from(bin),
            db: TestDatabase::new().await,
            broker: TestBroker::new().await,
            redis: TestRedis::new(),
            extra_env: Vec::new(),
        }
    }

    /// Adds an environment variable for the service.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.extra_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The service's database.
    pub fn database(&self) -> &TestDatabase {
        &self.db
    }

    /// The service's Redis namespace.
    pub fn redis(&self) -> &TestRedis {
        &self.redis
    }

    /// The service's broker prefix.
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    /// Starts the service with every dependency reachable and waits until it is healthy.
    pub async fn start_healthy(&self) -> RunningService {
        let mut service = self.spawn(None).await;
        if let Err(error) = service.process.wait_healthy(service.addr, START_TIMEOUT).await {
            panic!("{} did not become healthy: {error}\n{}", self.bin.display(), service.process.output());
        }
        service
    }

    /// Starts the service with `broken` reached through a proxy in `mode`, and waits until
    /// it answers `/health` (with any status).
    pub async fn start_with(&self, broken: Dependency, mode: ProxyMode) -> RunningService {
        let mut service = self.spawn(Some((broken, mode))).await;
        if let Err(error) = service.process.wait_listening(service.addr, START_TIMEOUT).await {
            panic!("{} did not start listening: {error}\n{}", self.bin.display(), service.process.output());
        }
        service
    }

    /// Starts another service binary over the same database, broker prefix, Redis prefix
    /// and extra environment (a whole stack in one test), and waits until it is healthy.
    pub async fn start_other_healthy(&self, bin: &Path) -> RunningService {
        let mut service = self.spawn_bin(bin, None).await;
        if let Err(error) = service.process.wait_healthy(service.addr, START_TIMEOUT).await {
            panic!("{} did not become healthy: {error}\n{}", bin.display(), service.process.output());
        }
        service
    }

    /// [`ServiceHarness::start_other_healthy`] with `dependency` reached through its own
    /// proxy (initially forwarding; flip it with `running.proxy`), waiting until healthy.
    pub async fn start_other_proxied(&self, bin: &Path, dependency: Dependency) -> RunningService {
        let mut service = self.spawn_bin(bin, Some((dependency, ProxyMode::Forward))).await;
        if let Err(error) = service.process.wait_healthy(service.addr, START_TIMEOUT).await {
            panic!("{} did not become healthy: {error}\n{}", bin.display(), service.process.output());
        }
        service
    }

    async fn spawn(&self, broken: Option<(Dependency, ProxyMode)>) -> RunningService {
        self.spawn_bin(&self.bin, broken).await
    }

    async fn spawn_bin(&self, bin: &Path, broken: Option<(Dependency, ProxyMode)>) -> RunningService {
        let mut database_url = self.db.url();
        let mut broker_url = self.broker.config().url;
        let mut redis_url = self.redis.url().to_owned();
        let mut proxy = None;
        if let Some((dependency, mode)) = broken {
            let url = match dependency {
                Dependency::Postgres => &mut database_url,
                Dependency::RabbitMq => &mut broker_url,
                Dependency::Redis => &mut redis_url,
            };
            let started = TcpProxy::start(authority_addr(url)).await;
            started.set_mode(mode);
            *url = with_authority(url, started.addr());
            proxy = Some(started);
        }
        let addr = free_loopback_addr();
        let addr_text = addr.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("OPENWATCH_DATABASE_URL", &database_url),
            ("OPENWATCH_DATABASE_CONNECT_TIMEOUT_SECS", "3"),
            ("OPENWATCH_RABBITMQ_URL", &broker_url),
            ("OPENWATCH_MQ_PREFIX", self.broker.prefix()),
            ("OPENWATCH_MQ_RETRY_DELAY_MS", "200"),
            ("OPENWATCH_MQ_CONNECT_TIMEOUT_MS", "3000"),
            ("OPENWATCH_REDIS_URL", &redis_url),
            ("OPENWATCH_HTTP_ADDR", &addr_text),
            ("OPENWATCH_OUTBOX_POLL_MS", "50"),
            // The api-gateway's keys (other services ignore them) and its Redis namespace.
            ("OPENWATCH_SECRET_KEY", TEST_SECRET_KEY),
            ("OPENWATCH_MASTER_KEY", TEST_MASTER_KEY),
            ("OPENWATCH_REDIS_KEY_PREFIX", self.redis.prefix()),
            ("RUST_LOG", "info"),
            ("LOG_FORMAT", "json"),
        ];
        env.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        RunningService { process: ServiceProcess::spawn(bin, &env), addr, proxy }
    }
}

impl RunningService {
    /// `GET /health` within [`HEALTH_DEADLINE`]: status code and JSON body.
    pub async fn health(&self) -> (u16, Value) {
        let response = http::get_with_timeout(self.addr, "/health", HEALTH_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("/health did not answer within {HEALTH_DEADLINE:?}: {e}"));
        let body = response.json().unwrap_or_else(|e| panic!("/health is not JSON: {e}: {}", response.body));
        (response.status, body)
    }

    /// `GET /metrics`, parsed strictly as Prometheus text.
    pub async fn metrics(&self) -> Vec<Sample> {
        let response = http::get(self.addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(response.status, 200);
        assert!(
            response.header("content-type").is_some_and(|t| t.starts_with("text/plain")),
            "content type {:?}",
            response.header("content-type")
        );
        prometheus::parse_exposition(&response.body)
            .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{}", response.body))
    }
}

/// Starts `bin` with all dependencies up: `/health` is 200 listing exactly
/// `expected_checks`, all ok; `/metrics` parses and reports the build and dependencies.
pub async fn assert_healthy_with_metrics(bin: &str, service: &str, expected_checks: &[&str]) {
    let harness = ServiceHarness::new(bin).await;
    let running = harness.start_healthy().await;
    let (status, body) = running.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["service"], service, "{body}");
    let checks = body["checks"].as_object().expect("checks object");
    let mut names: Vec<&str> = checks.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = expected_checks.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "{body}");
    assert!(checks.values().all(|c| c["status"] == "ok"), "{body}");

    let samples = running.metrics().await;
    assert_eq!(
        prometheus::value(&samples, "openwatch_build_info", &[("service", service)]),
        Some(1.0),
        "build info missing"
    );
    for check in expected_checks {
        assert_eq!(
            prometheus::value(&samples, "openwatch_dependency_up", &[("dependency", check)]),
            Some(1.0),
            "dependency gauge of {check}"
        );
    }
}

/// Starts `bin` with `broken` behind a proxy in `mode`: `/health` answers 503 within
/// [`HEALTH_DEADLINE`], naming that dependency (and only it) as failing, while the
/// process keeps serving. Returns the failing check's error text.
pub async fn assert_unhealthy_naming(bin: &str, broken: Dependency, mode: ProxyMode) -> String {
    let harness = ServiceHarness::new(bin).await;
    let running = harness.start_with(broken, mode).await;
    // Dependencies that are up may need a moment to connect; the broken one never will.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let (status, body) = running.health().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "degraded", "{body}");
        let checks = body["checks"].as_object().expect("checks object");
        let (failing, healthy): (Vec<_>, Vec<_>) =
            checks.iter().partition(|(name, _)| name.starts_with(broken.check_prefix()));
        assert!(!failing.is_empty(), "no check named after {broken:?}: {body}");
        for (name, check) in &failing {
            assert_eq!(check["status"], "error", "{name} should fail: {body}");
        }
        if healthy.iter().all(|(_, check)| check["status"] == "ok") {
            return failing[0].1["error"].as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "other dependencies never became healthy: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A transaction held open by a test to make a service's work block on a row or table
/// lock — how a test keeps work "in flight" for as long as it wants.
pub struct HeldLock {
    conn: diesel_async::AsyncPgConnection,
}

impl HeldLock {
    /// Opens a transaction on `db` and runs `lock_sql` (e.g. `SELECT … FOR UPDATE` or
    /// `LOCK TABLE …`) in it.
    pub async fn acquire(db: &TestDatabase, lock_sql: &str) -> HeldLock {
        use diesel_async::RunQueryDsl;
        let mut conn = db.connect().await;
        diesel::sql_query("BEGIN").execute(&mut conn).await.expect("BEGIN");
        diesel::sql_query(lock_sql).execute(&mut conn).await.expect("lock statement");
        HeldLock { conn }
    }

    /// Waits until another session of `db` is blocked on a lock (the service's work is in
    /// flight and stuck behind this transaction).
    pub async fn wait_for_waiter(&mut self, db: &TestDatabase) {
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = BigInt)]
            waiting: i64,
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let row: Waiting = diesel::sql_query(format!(
                "SELECT count(*) AS waiting FROM pg_stat_activity \
                 WHERE datname = '{}' AND wait_event_type = 'Lock'",
                db.name()
            ))
            .get_result(&mut self.conn)
            .await
            .expect("query pg_stat_activity");
            if row.waiting > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no session ever waited on the held lock");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Commits, letting the blocked work proceed.
    pub async fn release(mut self) {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("COMMIT").execute(&mut self.conn).await.expect("COMMIT");
    }
}

/// SIGTERM while `lock` holds the service's work in flight: the process keeps running
/// (finishing that work) until the lock is released, then exits 0.
pub async fn assert_sigterm_finishes_in_flight_work(service: &mut RunningService, lock: HeldLock) {
    service.process.sigterm();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        service.process.try_status().is_none(),
        "the service exited with work still in flight:\n{}",
        service.process.output()
    );
    lock.release().await;
    let status = service.process.wait_exit(START_TIMEOUT).await;
    assert!(status.success(), "exit status {status:?}:\n{}", service.process.output());
}

/// SIGTERM with nothing in flight: the process exits 0 promptly.
pub async fn assert_sigterm_exits_cleanly(service: &mut RunningService) {
    service.process.sigterm();
    let status = service.process.wait_exit(START_TIMEOUT).await;
    assert!(status.success(), "exit status {status:?}:\n{}", service.process.output());
}

/// A loopback address with a port free right now.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// The socket address of a URL's `host:port` authority.
pub fn authority_addr(url: &str) -> SocketAddr {
    let (_, rest) = url.split_once("://").expect("URL with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    host_port.to_socket_addrs().expect("resolvable host:port").next().expect("an address")
}

/// `url` with its `host:port` replaced by `addr` (credentials, path and query kept).
pub fn with_authority(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let userinfo = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_swapped_keeping_the_rest() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            with_authority("postgres://postgres@127.0.0.1:5432/test_x", addr),
            "postgres://postgres@127.0.0.1:4000/test_x"
        );
        assert_eq!(
            with_authority("amqp://guest:guest@127.0.0.1:5672/%2f", addr),
            "amqp://guest:guest@127.0.0.1:4000/%2f"
        );
        assert_eq!(with_authority("redis://127.0.0.1:6379/0", addr), "redis://127.0.0.1:4000/0");
        assert_eq!(authority_addr("amqp://guest:guest@127.0.0.1:5672/%2f").port(), 5672);
    }
}
