//! HTTP plumbing around the handlers: the middleware chain and request helpers.
//!
//! Order, outermost first: [`request_id`] (every response carries `X-Request-Id`, every
//! log line of the request its `request.id`) → security headers → [`cors`] → [`gate`]
//! (client address, authentication, rate limit, permission) → the handler.
//!
//! # Layout
//! * [`route_table`] — the permission of each route, read from the OpenAPI document.
//! * [`gate`] — authentication, rate limiting and authorisation in one middleware.
//! * [`rate_limit`] — fixed-window counters in Redis shared by all replicas.
//! * [`pagination`] — `limit`/`offset` query parameters and `X-Total-Count`.
//! * [`audit`] — writing audit events from handlers.

pub mod audit;
pub mod gate;
pub mod pagination;
pub mod rate_limit;
pub mod route_table;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{Error, HttpMessage, HttpResponse};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::ApiState;

/// `X-Request-Id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id the client sent is kept when it is short and plain; otherwise a new one is made.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The id a request carries through logs, traces and its response.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware: request id on the request, the response and the tracing span, and one
/// access-log line per request (method, path, status, duration — never headers or bodies).
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request_id_of(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "http.request",
        request.id = %id,
        http.method = %req.method(),
        http.path = %req.path(),
    );
    let started = std::time::Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;
    span.in_scope(|| {
        tracing::info!(
            http.status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Security headers on every API response (added only where a handler set none).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
        .add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add((HeaderName::from_static("permissions-policy"), "interest-cohort=()"))
        .add((HeaderName::from_static("cross-origin-resource-policy"), "same-origin"))
}

const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const CORS_HEADERS: &str = "authorization, content-type, x-request-id";

/// Middleware: CORS for the configured origins only. A preflight from an allowed origin
/// gets 204 with the allowed methods and headers; from any other origin 403. Simple
/// requests from other origins get no CORS headers (the browser blocks the response).
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = match (&origin, req.app_data::<actix_web::web::Data<ApiState>>()) {
        (Some(origin), Some(state)) => state.config.cors_origins.iter().any(|o| o == origin),
        _ => false,
    };
    let preflight = req.method() == actix_web::http::Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let response = if allowed {
            HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone().unwrap_or_default()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .insert_header((header::VARY, "Origin"))
                .finish()
        } else {
            actix_web::ResponseError::error_response(&ApiError::forbidden(
                "cors_origin_denied",
                "this origin may not call the API",
            ))
        };
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?.map_into_left_body();
    if allowed && let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, x-total-count, retry-after"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response)
}
