//! Operator workflows: alert triage and rule exceptions (waivers under four-eyes approval).
//!
//! * Alerts (`alerts:read` / `alerts:write`): `open → acknowledged → resolved` (or
//!   `open → resolved`); raised and deduplicated by the processing services.
//! * Exceptions (`exceptions:read` / `exceptions:request` / `exceptions:approve`):
//!   `requested → approved | rejected`, `approved → revoked` (or `expired`, by the
//!   maintenance job). The requester can never decide their own request (403
//!   `four_eyes_required`; the database's CHECK is the backstop). An approved, unexpired
//!   exception waives its rule on its host: results are flagged `excepted` and left out
//!   of scores.
//!
//! Every change is audited in the transaction that makes it; the audit log is also the
//! record of who revoked an exception (the table keeps only the decision).
//! A refused transition is 409 with the database's refusal as the code
//! (`alert_not_open`, `alert_already_resolved`, `exception_not_requested`,
//! `exception_not_approved`, `exception_already_expired`).
//!
//! # Layout
//! * `alerts.rs` — list, read, acknowledge, resolve.
//! * `exceptions.rs` — list, read, request, approve, reject, revoke.

mod alerts;
mod exceptions;

use openwatch_db::DbError;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(alerts::list_alerts)
        .service(alerts::get_alert)
        .service(alerts::acknowledge_alert)
        .service(alerts::resolve_alert)
        .service(exceptions::list_exceptions)
        .service(exceptions::get_exception)
        .service(exceptions::request_exception)
        .service(exceptions::approve_exception)
        .service(exceptions::reject_exception)
        .service(exceptions::revoke_exception);
}

/// Maps a refused state transition (a [`DbError::Constraint`] naming the refusal) to 409
/// with that name as the code; 404 `<resource>_not_found` and the rest as usual.
fn transition_error(resource: &'static str, error: DbError) -> ApiError {
    match error {
        DbError::Constraint { constraint, message } => ApiError::conflict(constraint, message),
        other => ApiError::from_db(resource, other),
    }
}
