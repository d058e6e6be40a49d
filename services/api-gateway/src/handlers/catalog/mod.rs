//! Read-mostly reference data: the rules catalogue and framework coverage (`rules:read`),
//! the audit log (`audit:read`; query and streamed export, never written through the API)
//! and the scheduler configuration (`scheduler:read` / `scheduler:write`).
//!
//! # Layout
//! * `rules.rs` — `/api/rules`, `/api/frameworks`: the corpus is loaded once per process from
//!   `OPENWATCH_RULES_DIR` (rules and `frameworks/`), on first use, off the async threads;
//!   coverage is computed by the engine exactly as `openwatch rules coverage` prints it.
//! * `audit.rs` — `/api/audit-events`, `/api/audit-events/export` (CSV or JSON, streamed in
//!   keyset batches, so an export of millions of events holds bounded memory).
//! * `scheduler.rs` — `/api/scheduler/config`.

mod audit;
mod rules;
mod scheduler;

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(rules::list_rules)
        .service(rules::get_rule)
        .service(rules::list_frameworks)
        .service(rules::get_framework)
        .service(audit::export_audit_events)
        .service(audit::list_audit_events)
        .service(scheduler::get_scheduler_config)
        .service(scheduler::update_scheduler_config);
}
