//! The audit log: query and streamed export. There is no route that writes it.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use openwatch_common::ids::UserId;
use openwatch_db::queries::audit::{self, AuditActor, AuditEvent, AuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::http::pagination::{Order, PageBody, PageParams, page_response};
use crate::state::ApiState;

/// Events fetched per round of an export.
const EXPORT_BATCH: i64 = 1000;

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    /// Position in the log.
    pub id: i64,
    /// The acting user (null for the system or a deleted account).
    pub actor_user_id: Option<uuid::Uuid>,
    /// The actor's name at the time.
    pub actor_name: String,
    /// What was done, e.g. `host.create`, `auth.login`.
    pub action: String,
    /// Kind of resource.
    pub resource_type: String,
    /// Which resource.
    pub resource_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Client address.
    pub ip: Option<String>,
    /// Further details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

impl From<AuditEvent> for AuditEventResponse {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            actor_user_id: e.actor_user_id.map(|u| u.0),
            actor_name: e.actor_name,
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            outcome: e.outcome.as_str().to_owned(),
            ip: e.ip,
            details: e.details,
            occurred_at: e.occurred_at,
        }
    }
}

/// Filters of the audit log.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A user id, or an actor name.
    pub actor: Option<String>,
    /// Action, e.g. `auth.login`.
    pub action: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// From this time (inclusive, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Until this time (exclusive, RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

impl AuditQuery {
    fn filter(self) -> Result<AuditFilter, ApiError> {
        let outcome = self
            .outcome
            .map(|o| {
                o.parse().map_err(|e: openwatch_common::UnknownVariant| {
                    ApiError::bad_request("invalid_query", e.to_string())
                })
            })
            .transpose()?;
        Ok(AuditFilter {
            actor: self.actor.map(|a| match a.parse::<uuid::Uuid>() {
                Ok(id) => AuditActor::User(UserId(id)),
                Err(_) => AuditActor::Name(a),
            }),
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            outcome,
            since: self.since,
            until: self.until,
        })
    }
}

/// Sort order of the list (by position in the log).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditOrder {
    /// `desc` (default: newest first) or `asc`.
    pub order: Option<Order>,
}

/// Audit events matching the filters.
#[utoipa::path(
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(AuditQuery, AuditOrder, PageParams),
    responses((status = 200, description = "A page of events", body = PageBody<AuditEventResponse>))
)]
#[get("/audit-events")]
pub async fn list_audit_events(
    state: web::Data<ApiState>,
    query: web::Query<AuditQuery>,
    order: web::Query<AuditOrder>,
    paging: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.into_inner().page()?;
    let filter = query.into_inner().filter()?;
    let mut conn = state.pool.get().await?;
    let events = audit::query(&mut conn, &filter, page, order.order.unwrap_or(Order::Desc).into()).await?;
    Ok(page_response(events, page, AuditEventResponse::from))
}

/// Export format.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array.
    Json,
}

/// Export parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `json`.
    pub format: Option<ExportFormat>,
}

/// One CSV field, quoted when it needs to be.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn csv_row(e: &AuditEvent) -> String {
    let fields = [
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        e.actor_user_id.map(|u| u.0.to_string()).unwrap_or_default(),
        e.actor_name.clone(),
        e.action.clone(),
        e.resource_type.clone(),
        e.resource_id.clone().unwrap_or_default(),
        e.outcome.as_str().to_owned(),
        e.ip.clone().unwrap_or_default(),
        e.details.to_string(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

const CSV_HEADER: &str =
    "id,occurred_at,actor_user_id,actor_name,action,resource_type,resource_id,outcome,ip,details\r\n";

/// The whole matching log as a file, oldest first, streamed.
#[utoipa::path(
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(AuditQuery, ExportQuery),
    responses(
        (status = 200, description = "The events (CSV or a JSON array)", content((String = "text/csv"), (Vec<AuditEventResponse> = "application/json"))),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    )
)]
#[get("/audit-events/export")]
pub async fn export_audit_events(
    state: web::Data<ApiState>,
    query: web::Query<AuditQuery>,
    export: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().filter()?;
    let format = export.format.unwrap_or(ExportFormat::Csv);
    // Fail before the 200 is sent when the database is unreachable or the filter unusable:
    // the first batch is read here, the rest while streaming.
    let mut conn = state.pool.get().await?;
    let first_batch = audit::stream_after(&mut conn, &filter, 0, EXPORT_BATCH).await?;
    struct Cursor {
        conn: openwatch_db::PooledConnection,
        after: i64,
        first: bool,
        done: bool,
        pending: Option<Vec<AuditEvent>>,
    }
    let cursor = Cursor { conn, after: 0, first: true, done: false, pending: Some(first_batch) };
    let stream = futures_util::stream::unfold(cursor, move |mut cursor| {
        let filter = filter.clone();
        async move {
            if cursor.done {
                return None;
            }
            let mut chunk = String::new();
            if cursor.first {
                chunk.push_str(if format == ExportFormat::Csv { CSV_HEADER } else { "[" });
            }
            let batch = match cursor.pending.take() {
                Some(events) => Ok(events),
                None => audit::stream_after(&mut cursor.conn, &filter, cursor.after, EXPORT_BATCH).await,
            };
            match batch {
                Ok(events) => {
                    for event in &events {
                        match format {
                            ExportFormat::Csv => chunk.push_str(&csv_row(event)),
                            ExportFormat::Json => {
                                if !cursor.first || !chunk.ends_with('[') {
                                    chunk.push(',');
                                }
                                let body = serde_json::to_string(&AuditEventResponse::from(event.clone()))
                                    .unwrap_or_default();
                                chunk.push_str(&body);
                                cursor.first = false;
                            }
                        }
                    }
                    cursor.first = false;
                    match events.last() {
                        Some(last) if events.len() as i64 == EXPORT_BATCH => cursor.after = last.id,
                        _ => {
                            cursor.done = true;
                            if format == ExportFormat::Json {
                                chunk.push(']');
                            }
                        }
                    }
                    Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), cursor))
                }
                Err(e) => {
                    // Headers are gone: end the body early; the truncated file does not parse.
                    tracing::error!(error = %e, "audit export aborted");
                    cursor.done = true;
                    Some((Err(actix_web::error::ErrorInternalServerError("export aborted")), cursor))
                }
            }
        }
    });
    let (content_type, name) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "audit-events.csv"),
        ExportFormat::Json => ("application/json", "audit-events.json"),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .streaming(stream))
}
