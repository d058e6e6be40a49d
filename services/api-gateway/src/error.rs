//! `ApiError`: the one error type of every handler, and the whole HTTP status mapping.
//!
//! The body is always `{"error":{"code":"…","message":"…"}}` with a stable snake_case
//! `code` clients can branch on. 5xx bodies are generic: the cause is logged once here,
//! never serialised.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use openwatch_db::DbError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    retry_after_secs: Option<u64>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `host_not_found`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), retry_after_secs: None }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: not authenticated (or the credentials are not valid).
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404: the resource does not exist (or is not visible).
    pub fn not_found(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: conflicts with the current state.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed but semantically invalid.
    pub fn unprocessable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; retry later")
        }
    }

    /// 503: a dependency is unavailable; the cause is logged, not returned.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "a dependency is unavailable; retry later",
        )
    }

    /// 500: a bug or an unexpected state; the cause is logged, not returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Maps a database error, naming the resource for 404s (`host` → `host_not_found`).
    pub fn from_db(resource: &'static str, error: DbError) -> Self {
        match error {
            DbError::NotFound => {
                Self::not_found(format!("{resource}_not_found"), format!("{resource} not found"))
            }
            other => Self::from(other),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => Self::not_found("not_found", "not found"),
            DbError::Conflict { constraint } => {
                Self::conflict("conflict", format!("conflicts with an existing record ({constraint})"))
            }
            DbError::Constraint { constraint, .. } => {
                Self::unprocessable("constraint_violation", format!("the request violates `{constraint}`"))
            }
            e @ (DbError::Unavailable(_) | DbError::Retry(_)) => Self::unavailable(e),
            // PostgreSQL text cannot hold NUL: input the client sent, not a server fault.
            DbError::Query(source) if source.to_string().contains("0x00") => {
                Self::bad_request("invalid_body", "NUL characters are not allowed in text")
            }
            other => Self::internal(other),
        }
    }
}

impl From<openwatch_db::QueryError> for ApiError {
    fn from(error: openwatch_db::QueryError) -> Self {
        Self::from(DbError::from(error))
    }
}

impl From<openwatch_db::PoolError> for ApiError {
    fn from(error: openwatch_db::PoolError) -> Self {
        Self::from(DbError::from(error))
    }
}

impl From<deadpool_redis::PoolError> for ApiError {
    fn from(error: deadpool_redis::PoolError) -> Self {
        Self::unavailable(format!("redis: {error}"))
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        Self::unavailable(format!("redis: {error}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody {
            error: ErrorDetail { code: self.code.to_string(), message: self.message.clone() },
        })
    }
}

/// Error handlers that turn extractor failures (bad JSON, query or path, too large a body)
/// into `ApiError` 4xx bodies instead of actix's plain-text ones.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{Error, HttpRequest};

    use super::ApiError;

    /// For `web::JsonConfig`.
    pub fn json(error: JsonPayloadError, _req: &HttpRequest) -> Error {
        match error {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                ApiError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                )
                .into()
            }
            JsonPayloadError::ContentType => ApiError::new(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            )
            .into(),
            JsonPayloadError::Deserialize(e) => {
                ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")).into()
            }
            other => ApiError::bad_request("invalid_body", format!("invalid request body: {other}")).into(),
        }
    }

    /// For `web::QueryConfig`.
    pub fn query(error: QueryPayloadError, _req: &HttpRequest) -> Error {
        ApiError::bad_request("invalid_query", format!("invalid query string: {error}")).into()
    }

    /// For `web::PathConfig`.
    pub fn path(error: PathError, _req: &HttpRequest) -> Error {
        ApiError::bad_request("invalid_path", format!("invalid path parameter: {error}")).into()
    }
}
