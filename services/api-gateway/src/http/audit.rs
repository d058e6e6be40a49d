//! Writing audit events from handlers: who (principal or named actor), from where (client
//! address, request id), what, on which resource, with what outcome.
//!
//! State changes record their event in the same transaction as the change
//! ([`event`] + `queries::audit::record` on the transaction's connection), so the log
//! cannot miss a change nor record one that rolled back.

use openwatch_db::queries::audit::{self, AuditOutcome, NewAuditEvent};
use openwatch_db::{AsyncPgConnection, DbError, Pool};

use crate::auth::{ClientInfo, Principal};

/// An audit event by `principal`.
pub fn event(
    principal: &Principal,
    client: &ClientInfo,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    outcome: AuditOutcome,
    mut details: serde_json::Value,
) -> NewAuditEvent {
    annotate(&mut details, client, principal);
    NewAuditEvent {
        actor_user_id: Some(principal.user_id),
        actor_name: principal.username.clone(),
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id,
        outcome,
        ip: client.ip,
        details,
    }
}

fn annotate(details: &mut serde_json::Value, client: &ClientInfo, principal: &Principal) {
    if !details.is_object() {
        *details = serde_json::json!({});
    }
    if let Some(map) = details.as_object_mut() {
        map.insert("request_id".into(), client.request_id.clone().into());
        if let crate::auth::PrincipalKind::ApiToken { id, .. } = &principal.kind {
            map.insert("api_token_id".into(), id.0.to_string().into());
        }
    }
}

/// Records `event` on `conn` (inside the caller's transaction).
pub async fn record(conn: &mut AsyncPgConnection, event: &NewAuditEvent) -> Result<(), DbError> {
    audit::record(conn, event).await.map(drop)
}

/// Records a refused request (permission denied) on its own connection.
pub async fn record_denied(
    pool: &Pool,
    principal: &Principal,
    client: &ClientInfo,
    details: serde_json::Value,
) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    let event = event(principal, client, "request.denied", "route", None, AuditOutcome::Denied, details);
    audit::record(&mut conn, &event).await.map(drop)
}
