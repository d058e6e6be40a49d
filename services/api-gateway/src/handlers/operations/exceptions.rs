//! `/api/exceptions/…`: requesting, deciding and revoking rule exceptions.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Months, Utc};
use openwatch_common::ids::{ExceptionId, HostId, UserId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::exceptions::{self, Exception, ExceptionFilter, ExceptionStatus, NewException};
use openwatch_db::{AsyncConnection, AsyncPgConnection, DbError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::transition_error;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::http::pagination::{PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Longest reason or note.
const MAX_TEXT_CHARS: usize = 2000;
/// Longest rule id.
const MAX_RULE_ID_CHARS: usize = 128;
/// Furthest an exception may expire: this many months after the request.
const MAX_VALIDITY_MONTHS: u32 = 12;

/// A rule exception.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionResponse {
    /// Id.
    #[schema(value_type = uuid::Uuid)]
    pub id: ExceptionId,
    /// The host it applies to.
    #[schema(value_type = uuid::Uuid)]
    pub host_id: HostId,
    /// The waived rule.
    pub rule_id: String,
    /// Why the rule should not apply.
    pub reason: String,
    /// `requested`, `approved`, `rejected`, `revoked` or `expired`.
    #[schema(value_type = String, example = "requested")]
    pub status: ExceptionStatus,
    /// Whether it waives its rule now (approved and unexpired).
    pub active: bool,
    /// Who asked for it (`null` once that account is deleted).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub requested_by: Option<UserId>,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// Who approved or rejected it.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub decided_by: Option<UserId>,
    /// When it was approved or rejected.
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's note.
    pub decision_note: Option<String>,
    /// When the waiver ends.
    pub expires_at: DateTime<Utc>,
}

impl From<Exception> for ExceptionResponse {
    fn from(e: Exception) -> Self {
        Self {
            active: e.is_active(Utc::now()),
            id: e.id,
            host_id: e.host_id,
            rule_id: e.rule_id,
            reason: e.reason,
            status: e.status,
            requested_by: e.requested_by,
            requested_at: e.requested_at,
            decided_by: e.decided_by,
            decided_at: e.decided_at,
            decision_note: e.decision_note,
            expires_at: e.expires_at,
        }
    }
}

/// Filters of the exception list (combined with AND).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExceptionQuery {
    /// Only this host's.
    pub host_id: Option<uuid::Uuid>,
    /// Only this rule's.
    #[param(max_length = 128)]
    pub rule_id: Option<String>,
    /// Only in this stored status: `requested`, `approved`, `rejected`, `revoked`, `expired`.
    #[param(value_type = Option<String>, example = "requested")]
    pub status: Option<ExceptionStatus>,
}

/// Lists exceptions, newest request first.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:read"])),
    params(ExceptionQuery, PageParams),
    responses(
        (status = 200, description = "One page of exceptions; `X-Total-Count` has the total", body = PageBody<ExceptionResponse>),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = ErrorBody),
    )
)]
#[get("/exceptions")]
pub async fn list_exceptions(
    state: web::Data<ApiState>,
    query: web::Query<ExceptionQuery>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let ExceptionQuery { host_id, rule_id, status } = query.into_inner();
    if rule_id.as_ref().is_some_and(|r| r.chars().count() > MAX_RULE_ID_CHARS) {
        return Err(ApiError::bad_request("invalid_query", "rule_id must be at most 128 characters"));
    }
    let filter = ExceptionFilter { host_id: host_id.map(HostId), rule_id, status };
    let mut conn = state.pool.get().await?;
    let found = exceptions::list_exceptions(&mut conn, &filter, page).await?;
    Ok(page_response(found, page, ExceptionResponse::from))
}

/// One exception.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:read"])),
    params(("id" = uuid::Uuid, Path, description = "Exception id")),
    responses(
        (status = 200, description = "The exception", body = ExceptionResponse),
        (status = 404, description = "`exception_not_found`", body = ErrorBody),
    )
)]
#[get("/exceptions/{id}")]
pub async fn get_exception(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ExceptionId(path.into_inner());
    let mut conn = state.pool.get().await?;
    let exception =
        exceptions::get_exception(&mut conn, id).await.map_err(|e| ApiError::from_db("exception", e))?;
    Ok(HttpResponse::Ok().json(ExceptionResponse::from(exception)))
}

/// A request to waive one rule on one host.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestException {
    /// The host.
    pub host_id: uuid::Uuid,
    /// The rule to waive (its catalogue id: lowercase letters, digits, `_`).
    #[schema(min_length = 1, max_length = 128, example = "sshd_disable_root_login")]
    pub rule_id: String,
    /// Why (compensating control, vendor constraint, …): 1–2000 characters.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// When the waiver ends: in the future, at most one year away.
    pub expires_at: DateTime<Utc>,
}

/// Checks a request against `now` and returns the trimmed reason.
fn validate_request(request: &RequestException, now: DateTime<Utc>) -> Result<String, ApiError> {
    let rule = request.rule_id.as_bytes();
    if rule.is_empty()
        || rule.len() > MAX_RULE_ID_CHARS
        || !rule.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(ApiError::bad_request(
            "invalid_rule_id",
            "rule_id must be 1–128 lowercase letters, digits or underscores",
        ));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request("invalid_reason", "reason must be 1–2000 characters"));
    }
    let latest = now.checked_add_months(Months::new(MAX_VALIDITY_MONTHS)).unwrap_or(DateTime::<Utc>::MAX_UTC);
    if request.expires_at <= now || request.expires_at > latest {
        return Err(ApiError::bad_request(
            "invalid_expiry",
            "expires_at must be in the future and at most one year away",
        ));
    }
    Ok(reason.to_owned())
}

/// Requests an exception; someone else with `exceptions:approve` decides on it.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:request"])),
    request_body = RequestException,
    responses(
        (status = 201, description = "Requested", body = ExceptionResponse),
        (status = 400, description = "`invalid_rule_id`, `invalid_reason`, `invalid_expiry`, `invalid_body`", body = ErrorBody),
        (status = 409, description = "`exception_exists`: one is already requested or approved for this host and rule", body = ErrorBody),
        (status = 422, description = "`unknown_host`", body = ErrorBody),
    )
)]
#[post("/exceptions")]
pub async fn request_exception(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<RequestException>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let reason = validate_request(&request, Utc::now())?;
    let new = NewException {
        id: ExceptionId::new(),
        host_id: HostId(request.host_id),
        rule_id: request.rule_id,
        reason,
        requested_by: principal.user_id,
        expires_at: request.expires_at,
    };
    let mut conn = state.pool.get().await?;
    let exception = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let host = new.host_id;
            let exception = exceptions::request_exception(conn, new).await.map_err(|e| match e {
                DbError::Conflict { .. } => ApiError::conflict(
                    "exception_exists",
                    "an exception for this host and rule is already requested or approved",
                ),
                DbError::Constraint { constraint, .. } if constraint.ends_with("host_id_fkey") => {
                    ApiError::unprocessable("unknown_host", format!("no host {host}"))
                }
                other => other.into(),
            })?;
            let details = serde_json::json!({
                "host_id": exception.host_id,
                "rule_id": exception.rule_id,
                "reason": exception.reason,
                "expires_at": exception.expires_at,
            });
            record(
                conn,
                &principal,
                &client,
                "exception.request",
                exception.id,
                AuditOutcome::Success,
                details,
            )
            .await?;
            Ok(exception)
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::LOCATION, format!("/api/exceptions/{}", exception.id)))
        .json(ExceptionResponse::from(exception)))
}

/// An optional note with a decision or revocation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionNote {
    /// Why (at most 2000 characters).
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// The optional JSON body `{"note": …}`: empty → no note.
fn parse_note(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let ExceptionNote { note } = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))?;
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_TEXT_CHARS) {
        return Err(ApiError::bad_request("invalid_note", "note must be at most 2000 characters"));
    }
    Ok(note)
}

async fn record(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    client: &ClientInfo,
    action: &str,
    id: ExceptionId,
    outcome: AuditOutcome,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let event = audit::event(principal, client, action, "exception", Some(id.to_string()), outcome, details);
    audit::record(conn, &event).await?;
    Ok(())
}

/// Approves (`approve`) or rejects a requested exception, enforcing four eyes.
async fn decide(
    state: &ApiState,
    principal: &Principal,
    client: &ClientInfo,
    id: ExceptionId,
    body: &[u8],
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let note = parse_note(body)?;
    let action = if approve { "exception.approve" } else { "exception.reject" };
    let mut conn = state.pool.get().await?;
    let current =
        exceptions::get_exception(&mut conn, id).await.map_err(|e| ApiError::from_db("exception", e))?;
    if current.requested_by == Some(principal.user_id) {
        let details = serde_json::json!({"refused": "four_eyes_required"});
        record(&mut conn, principal, client, action, id, AuditOutcome::Denied, details).await?;
        return Err(four_eyes_required());
    }
    let exception = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let exception = exceptions::decide(conn, id, principal.user_id, approve, note, Utc::now())
                .await
                .map_err(|e| match e {
                    DbError::Constraint { constraint, .. } if constraint == "exceptions_four_eyes" => {
                        four_eyes_required()
                    }
                    other => transition_error("exception", other),
                })?;
            let details = serde_json::json!({
                "host_id": exception.host_id,
                "rule_id": exception.rule_id,
                "status": exception.status,
                "note": exception.decision_note,
            });
            record(conn, principal, client, action, id, AuditOutcome::Success, details).await?;
            Ok(exception)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExceptionResponse::from(exception)))
}

fn four_eyes_required() -> ApiError {
    ApiError::forbidden("four_eyes_required", "the requester of an exception cannot decide on it")
}

/// Approves a requested exception: the rule is waived on the host until `expires_at`.
/// The requester cannot approve their own request.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:approve"])),
    params(("id" = uuid::Uuid, Path, description = "Exception id")),
    request_body(content = Option<ExceptionNote>, description = "Optional note", content_type = "application/json"),
    responses(
        (status = 200, description = "Approved", body = ExceptionResponse),
        (status = 400, description = "`invalid_body`, `invalid_note`", body = ErrorBody),
        (status = 403, description = "`four_eyes_required`: you requested it", body = ErrorBody),
        (status = 404, description = "`exception_not_found`", body = ErrorBody),
        (status = 409, description = "`exception_not_requested` (already decided), `exception_already_expired`", body = ErrorBody),
    )
)]
#[post("/exceptions/{id}/approve")]
pub async fn approve_exception(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &principal, &client, ExceptionId(path.into_inner()), &body, true).await
}

/// Rejects a requested exception. The requester cannot reject their own request.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:approve"])),
    params(("id" = uuid::Uuid, Path, description = "Exception id")),
    request_body(content = Option<ExceptionNote>, description = "Optional note", content_type = "application/json"),
    responses(
        (status = 200, description = "Rejected", body = ExceptionResponse),
        (status = 400, description = "`invalid_body`, `invalid_note`", body = ErrorBody),
        (status = 403, description = "`four_eyes_required`: you requested it", body = ErrorBody),
        (status = 404, description = "`exception_not_found`", body = ErrorBody),
        (status = 409, description = "`exception_not_requested` (already decided)", body = ErrorBody),
    )
)]
#[post("/exceptions/{id}/reject")]
pub async fn reject_exception(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &principal, &client, ExceptionId(path.into_inner()), &body, false).await
}

/// Revokes an approved exception: the rule counts again at once. Who revoked it and why
/// is recorded in the audit log.
#[utoipa::path(
    tag = "exceptions",
    security(("bearer" = ["exceptions:approve"])),
    params(("id" = uuid::Uuid, Path, description = "Exception id")),
    request_body(content = Option<ExceptionNote>, description = "Optional note (kept in the audit log)", content_type = "application/json"),
    responses(
        (status = 200, description = "Revoked", body = ExceptionResponse),
        (status = 400, description = "`invalid_body`, `invalid_note`", body = ErrorBody),
        (status = 404, description = "`exception_not_found`", body = ErrorBody),
        (status = 409, description = "`exception_not_approved`", body = ErrorBody),
    )
)]
#[post("/exceptions/{id}/revoke")]
pub async fn revoke_exception(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = ExceptionId(path.into_inner());
    let note = parse_note(&body)?;
    let mut conn = state.pool.get().await?;
    let exception = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let exception = exceptions::revoke(conn, id, principal.user_id, Utc::now())
                .await
                .map_err(|e| transition_error("exception", e))?;
            let details = serde_json::json!({
                "host_id": exception.host_id,
                "rule_id": exception.rule_id,
                "note": note,
            });
            record(conn, &principal, &client, "exception.revoke", id, AuditOutcome::Success, details).await?;
            Ok(exception)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExceptionResponse::from(exception)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeDelta;

    use super::*;

    fn request(rule: &str, reason: &str, expires_at: DateTime<Utc>) -> RequestException {
        RequestException {
            host_id: uuid::Uuid::nil(),
            rule_id: rule.into(),
            reason: reason.into(),
            expires_at,
        }
    }

    #[test]
    fn requests_are_checked_for_rule_reason_and_expiry() {
        let now = Utc::now();
        let ok = request("sshd_root_login", "  compensating control  ", now + TimeDelta::days(30));
        assert_eq!(validate_request(&ok, now).unwrap(), "compensating control");
        let code = |r: RequestException| validate_request(&r, now).unwrap_err().code().to_owned();
        assert_eq!(code(request("", "x", now + TimeDelta::days(1))), "invalid_rule_id");
        assert_eq!(code(request("Bad-Id", "x", now + TimeDelta::days(1))), "invalid_rule_id");
        assert_eq!(code(request("r", "   ", now + TimeDelta::days(1))), "invalid_reason");
        assert_eq!(code(request("r", &"x".repeat(2001), now + TimeDelta::days(1))), "invalid_reason");
        assert_eq!(code(request("r", "x", now)), "invalid_expiry");
        assert_eq!(code(request("r", "x", now + TimeDelta::days(367))), "invalid_expiry");
        assert!(validate_request(&request("r", &"x".repeat(2000), now + TimeDelta::days(365)), now).is_ok());
    }

    #[test]
    fn notes_are_optional_bounded_and_strict() {
        assert_eq!(parse_note(b"").unwrap(), None);
        assert_eq!(parse_note(b" \n").unwrap(), None);
        assert_eq!(parse_note(b"{}").unwrap(), None);
        assert_eq!(parse_note(br#"{"note":" ok "}"#).unwrap().as_deref(), Some("ok"));
        assert_eq!(parse_note(br#"{"nope":1}"#).unwrap_err().code(), "invalid_body");
        assert_eq!(parse_note(b"not json").unwrap_err().code(), "invalid_body");
        let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(2001));
        assert_eq!(parse_note(long.as_bytes()).unwrap_err().code(), "invalid_note");
    }
}
