//! Assembles the API: state, the `/api` scope with its middleware, and the OpenAPI document.
//!
//! [`mount`] is what the service runtime serves next to `/health` and `/metrics`; tests
//! call [`build_state`] and [`mount`] to run the real app on a loopback port.

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::web;
use openwatch_db::Pool;
use openwatch_secrets::cipher::Cipher;
use openwatch_service_kit::HttpMount;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::auth::jwt::JwtKeys;
use crate::config::GatewayConfig;
use crate::error::extractors;
use crate::handlers;
use crate::http::route_table::RouteTable;
use crate::http::{cors, gate, request_id, security_headers};
use crate::openapi::ApiDoc;
use crate::state::ApiState;

fn api_scope() -> utoipa_actix_web::scope::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope("/api")
        .configure(handlers::configure)
        .wrap(from_fn(gate::gate))
        .wrap(from_fn(cors))
        .wrap(security_headers())
        .wrap(from_fn(request_id))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(api_scope())
        .split_for_parts();
    doc
}

/// Builds the shared state: keys, cipher, route table and the serialised document.
pub fn build_state(
    pool: Pool,
    redis: deadpool_redis::Pool,
    config: GatewayConfig,
) -> anyhow::Result<web::Data<ApiState>> {
    let jwt = JwtKeys::derive(&config.secret_key, &config.previous_secret_keys, config.access_token_ttl)?;
    let cipher = Cipher::from_config(&config.master_key, &config.previous_master_keys)
        .map_err(|e| anyhow::anyhow!("OPENWATCH_MASTER_KEY: {e}"))?;
    let mut document = serde_json::to_value(openapi())?;
    crate::openapi::add_standard_errors(&mut document);
    let routes = RouteTable::from_openapi(&document)?;
    let openapi_json = Arc::new(serde_json::to_string(&document)?);
    Ok(web::Data::new(ApiState { pool, redis, jwt, cipher, config, routes, openapi_json }))
}

/// The `/api` routes with their state and extractor limits, for the service runtime.
pub fn mount(state: web::Data<ApiState>) -> HttpMount {
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        let limit = state.config.body_limit_bytes;
        cfg.app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(limit).error_handler(extractors::json))
            .app_data(web::PayloadConfig::default().limit(limit))
            .app_data(web::QueryConfig::default().error_handler(extractors::query))
            .app_data(web::PathConfig::default().error_handler(extractors::path))
            .service(api_scope());
    })
}
