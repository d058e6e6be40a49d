//! The gate every `/api` request passes: client address, authentication, rate limit and
//! permission, in that order, before any extractor or handler runs.
//!
//! * The client address is the peer, or — when the peer is a trusted proxy — the last
//!   address in `X-Forwarded-For` that is not a trusted proxy.
//! * A bearer token, when present, must be valid (401 otherwise, even on public routes,
//!   so a broken client notices).
//! * Rate limits: login, refresh and MFA routes count per client address in the `auth`
//!   bucket (strict); other requests count per principal, or per address when anonymous.
//! * Permission: from the route table (the OpenAPI document). Unknown routes need an
//!   authenticated principal and then get 404 from the gate itself, so the API's shape is
//!   not probed anonymously and no undocumented route can be reached.
//!   Refusals are audited (`outcome = denied`).

use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};

use crate::auth::principal::authenticate;
use crate::auth::{ClientInfo, Principal};
use crate::config::IpRange;
use crate::error::ApiError;
use crate::http::route_table::Access;
use crate::http::{RequestId, audit, rate_limit};
use crate::state::ApiState;

/// Routes rate-limited in the strict `auth` bucket (per client address).
pub const AUTH_RATE_LIMITED_PATHS: &[&str] =
    &["/api/auth/login", "/api/auth/refresh", "/api/auth/mfa/confirm", "/api/auth/mfa/disable"];

/// The client address: see the module doc.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpRange]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded_for else { return Some(peer) };
    let mut client = peer;
    for hop in chain.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip.to_canonical()) => client = ip.to_canonical(),
            Ok(ip) => return Some(ip.to_canonical()),
            // A malformed entry: stop believing the chain here.
            Err(_) => return Some(client),
        }
    }
    Some(client)
}

fn bearer(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_token", "malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(ApiError::unauthorized("invalid_token", "expected `Authorization: Bearer <token>`")),
    }
}

/// NUL cannot be stored in PostgreSQL text, so a NUL in the path or query string could only
/// fail later as a server error: refuse it up front.
fn reject_nul(req: &ServiceRequest) -> Result<(), ApiError> {
    let has_nul = |s: &str| s.contains('\0') || s.to_ascii_lowercase().contains("%00");
    if has_nul(req.path()) || has_nul(req.query_string()) {
        return Err(ApiError::bad_request("invalid_query", "NUL characters are not allowed in the URL"));
    }
    Ok(())
}

async fn admit(state: &ApiState, req: &ServiceRequest) -> Result<(), ApiError> {
    reject_nul(req)?;
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, forwarded, &state.config.trusted_proxies);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect::<String>());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let client = ClientInfo { ip, user_agent, request_id };
    req.extensions_mut().insert(client.clone());

    let access = state.routes.lookup(req.method(), req.path());
    let address = ip.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".to_owned());
    let prefix = &state.config.redis_key_prefix;
    if AUTH_RATE_LIMITED_PATHS.contains(&req.path()) {
        rate_limit::hit(&state.redis, prefix, "auth", &address, state.config.auth_rate_limit_per_minute)
            .await?;
    }

    let principal = match bearer(req)? {
        Some(token) => Some(authenticate(state, &token).await?),
        None => None,
    };
    match &principal {
        Some(p) => {
            rate_limit::hit(
                &state.redis,
                prefix,
                "principal",
                &p.user_id.0.to_string(),
                state.config.rate_limit_per_minute,
            )
            .await?
        }
        None => {
            rate_limit::hit(&state.redis, prefix, "address", &address, state.config.rate_limit_per_minute)
                .await?
        }
    }

    match (access, &principal) {
        (Some(Access::Public), _) => {}
        (_, None) => return Err(ApiError::unauthorized("unauthenticated", "authentication required")),
        // Only documented routes are served: a route missing from the OpenAPI document
        // (hence from the permission table) is unreachable.
        (None, Some(_)) => return Err(ApiError::not_found("route_not_found", "no such route")),
        (Some(Access::Requires(permission)), Some(p)) if !p.allows(permission) => {
            deny(state, p, &client, req, permission.as_str()).await;
            return Err(ApiError::forbidden(
                "permission_denied",
                format!("this action requires the `{permission}` permission"),
            ));
        }
        _ => {}
    }
    if let Some(p) = principal {
        req.extensions_mut().insert::<Principal>(p);
    }
    Ok(())
}

async fn deny(
    state: &ApiState,
    principal: &Principal,
    client: &ClientInfo,
    req: &ServiceRequest,
    permission: &str,
) {
    let details =
        serde_json::json!({"method": req.method().as_str(), "path": req.path(), "permission": permission});
    if let Err(e) = audit::record_denied(&state.pool, principal, client, details).await {
        tracing::warn!(error = %e, "could not audit a denied request");
    }
}

/// Middleware: see the module doc. Refusals become error responses here, so the outer
/// middleware (request id, headers, CORS) still decorate them.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() else {
        let error = ApiError::internal("api state missing");
        return Ok(req.into_response(error.error_response()).map_into_right_body());
    };
    match admit(&state, &req).await {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(error) => Ok(req.into_response(error.error_response()).map_into_right_body()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![IpRange::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: its header is ignored.
        assert_eq!(client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted), Some(ip("203.0.113.9")));
        // Trusted peer: the right-most untrusted hop is the client.
        assert_eq!(
            client_ip(Some(ip("10.0.0.5")), Some("1.2.3.4, 198.51.100.7, 10.0.0.9"), &trusted),
            Some(ip("198.51.100.7"))
        );
        // Trusted peer without a header.
        assert_eq!(client_ip(Some(ip("10.0.0.5")), None, &trusted), Some(ip("10.0.0.5")));
        // Garbage in the chain stops the walk.
        assert_eq!(client_ip(Some(ip("10.0.0.5")), Some("1.2.3.4, junk"), &trusted), Some(ip("10.0.0.5")));
    }
}
