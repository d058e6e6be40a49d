//! `TestApp`: the real API on a loopback port, over a fresh database and Redis prefix.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use chrono::Utc;
use openwatch_api_gateway::app;
use openwatch_api_gateway::config::GatewayConfig;
use openwatch_api_gateway::state::ApiState;
use openwatch_common::access::Role;
use openwatch_common::ids::{SessionId, UserId};
use openwatch_db::queries::users::{self, NewUser};
use openwatch_test_support::database::TestDatabase;
use openwatch_test_support::http::{self, HttpResponse};
use openwatch_test_support::redis::TestRedis;
use secrecy::SecretString;
use serde_json::Value;

/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// One running API.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDatabase,
    pub redis: TestRedis,
    pub state: web::Data<ApiState>,
    server: actix_web::dev::ServerHandle,
}

/// A user created for a test.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: UserId,
    pub username: String,
    #[allow(dead_code)]
    pub password: String,
    pub role: Role,
}

/// A response with its JSON body (Null when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub raw: HttpResponse,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.header(name)
    }

    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Self {
        let db = TestDatabase::new().await;
        let redis = TestRedis::new();
        Self::spawn_on(db, redis, adjust).await
    }

    pub async fn spawn_on(
        db: TestDatabase,
        redis: TestRedis,
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let mut config = GatewayConfig::for_tests(redis.prefix());
        adjust(&mut config);
        let state = app::build_state(db.pool(), redis.pool(), config).expect("api state");
        let (addr, server) = serve(state.clone());
        Self { addr, db, redis, state, server }
    }

    /// Starts one more server over the same state (database, Redis prefix, keys).
    pub fn another_server_over_same_state(
        &self,
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> (SocketAddr, actix_web::dev::ServerHandle) {
        let mut config = self.state.config.clone();
        adjust(&mut config);
        let state = app::build_state(self.db.pool(), self.redis.pool(), config).expect("api state");
        serve(state)
    }

    pub async fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        self.request_with(method, path, token, body, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        send(self.addr, method, path, token, body, extra).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(token), Some(body)).await
    }

    /// Creates an active user with `role` and [`PASSWORD`] directly in the database.
    pub async fn create_user(&self, role: Role) -> TestUser {
        let username = format!(
            "{}-{}",
            role.as_str().replace('_', "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let hash = openwatch_secrets::password::hash_password(&SecretString::from(PASSWORD)).expect("hash");
        let id = UserId::new();
        let mut conn = self.db.pool().get().await.expect("conn");
        users::insert_user(
            &mut conn,
            NewUser {
                id,
                username: username.clone(),
                email: None,
                display_name: None,
                password_hash: hash,
                role,
            },
        )
        .await
        .expect("insert user");
        TestUser { id, username, password: PASSWORD.to_owned(), role }
    }

    /// An access token for `user` without going through login (no refresh session).
    pub fn token_for(&self, user: &TestUser) -> String {
        self.state
            .jwt
            .issue(user.id, &user.username, user.role, SessionId::new(), Utc::now())
            .expect("token")
            .0
    }

    /// A user with `role` and an access token for it.
    pub async fn user_with_token(&self, role: Role) -> (TestUser, String) {
        let user = self.create_user(role).await;
        let token = self.token_for(&user);
        (user, token)
    }

    /// `POST /api/auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> Resp {
        let body = serde_json::json!({"username": username, "password": password});
        self.request("POST", "/api/auth/login", None, Some(&body)).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let server = self.server.clone();
        // Stopping needs the runtime; when it is gone the server dies with it anyway.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { server.stop(false).await });
        }
    }
}

fn serve(state: web::Data<ApiState>) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mount = app::mount(state);
    let server = HttpServer::new(move || {
        let mount = mount.clone();
        App::new().configure(move |cfg| mount(cfg))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}

/// One request to `addr`.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let payload = body.map(|b| serde_json::to_vec(b).expect("json"));
    if payload.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let raw = http::request(addr, method, path, &headers, payload.as_deref(), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    let json = serde_json::from_str(&raw.body).unwrap_or(Value::Null);
    Resp { status: raw.status, raw, json }
}
