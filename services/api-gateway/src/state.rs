//! [`ApiState`]: what every handler shares (pools, keys, configuration, route table).

use std::sync::Arc;

use openwatch_db::Pool;
use openwatch_secrets::cipher::Cipher;

use crate::auth::jwt::JwtKeys;
use crate::config::GatewayConfig;
use crate::http::route_table::RouteTable;

/// Shared state of the API, one per process (cloned cheaply into each HTTP worker).
pub struct ApiState {
    /// PostgreSQL.
    pub pool: Pool,
    /// Redis (rate limits, revocations).
    pub redis: deadpool_redis::Pool,
    /// Access-token keys.
    pub jwt: JwtKeys,
    /// Credential and TOTP-secret encryption.
    pub cipher: Cipher,
    /// Settings.
    pub config: GatewayConfig,
    /// Permission per route.
    pub routes: RouteTable,
    /// The OpenAPI document, serialised once.
    pub openapi_json: Arc<String>,
}
