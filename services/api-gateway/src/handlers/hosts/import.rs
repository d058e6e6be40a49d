//! `POST /api/hosts/import`: register hosts from a CSV file.
//!
//! The body is `text/csv` (at most the configured body limit, 5,000 rows). The first line
//! is a header naming the columns `name` and `address`, optionally `port` and `tags`
//! (`;`-separated), in any order, case-insensitively. Each row is checked with the same
//! rules as `POST /api/hosts`; the valid rows are inserted one savepoint each, so a
//! duplicate name refuses that row only. The answer is a report with one entry per row.
//! The file as a whole is refused (400) only when it cannot be read as such: empty, not
//! UTF-8, no header, an unclosed quote, too many rows.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use openwatch_common::ids::HostId;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::hosts::{self, NewHost};
use openwatch_db::{AsyncConnection, DbError};
use serde::Serialize;
use utoipa::ToSchema;

use super::csv::{self, Record};
use super::{Invalid, check_port, clean_address, clean_name, clean_tags};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// Most data rows in one import.
pub const MAX_IMPORT_ROWS: usize = 5_000;

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// The host was created.
    Created,
    /// The row was refused; see `code` and `message`.
    Error,
}

/// The outcome of one data row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRow {
    /// Line of the file where the row starts (the header is line 1).
    pub line: usize,
    /// `created` or `error`.
    pub status: ImportStatus,
    /// The host's name as read from the row, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The new host's id (created rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<uuid::Uuid>,
    /// Why the row was refused: `duplicate_name`, `invalid_name`, `invalid_address`,
    /// `invalid_port`, `invalid_tags`, `invalid_row` (wrong number of fields),
    /// `malformed_row` (bad quoting), `invalid_value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ImportRow {
    fn error(line: usize, name: Option<String>, invalid: Invalid) -> Self {
        Self {
            line,
            status: ImportStatus::Error,
            name,
            host_id: None,
            code: Some(invalid.code.to_owned()),
            message: Some(invalid.message),
        }
    }
}

/// The import report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Rows that created a host.
    pub created: usize,
    /// Rows refused.
    pub failed: usize,
    /// One entry per data row, in file order.
    pub rows: Vec<ImportRow>,
}

/// Where each known column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    name: usize,
    address: usize,
    port: Option<usize>,
    tags: Option<usize>,
    count: usize,
}

fn columns(header: &Record) -> Result<Columns, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_header", message);
    if let Some(error) = &header.error {
        return Err(invalid(format!("line 1: {error}")));
    }
    let missing = || {
        ApiError::bad_request(
            "missing_header",
            "the first line must be a header naming the columns: name,address[,port][,tags]",
        )
    };
    let known = |column: &String| {
        matches!(column.trim().to_ascii_lowercase().as_str(), "name" | "address" | "port" | "tags")
    };
    if !header.fields.iter().any(known) {
        return Err(missing());
    }
    let (mut name, mut address, mut port, mut tags) = (None, None, None, None);
    for (index, column) in header.fields.iter().enumerate() {
        let slot = match column.trim().to_ascii_lowercase().as_str() {
            "name" => &mut name,
            "address" => &mut address,
            "port" => &mut port,
            "tags" => &mut tags,
            _ => {
                return Err(invalid(format!(
                    "unknown column {:?}: expected name, address, port, tags",
                    column.chars().take(64).collect::<String>()
                )));
            }
        };
        if slot.replace(index).is_some() {
            return Err(invalid(format!("column {:?} appears twice", column.trim())));
        }
    }
    match (name, address) {
        (Some(name), Some(address)) => Ok(Columns { name, address, port, tags, count: header.fields.len() }),
        _ => Err(missing()),
    }
}

fn host_from_row(record: &Record, columns: Columns) -> Result<NewHost, Invalid> {
    if let Some(error) = &record.error {
        return Err(Invalid::new("malformed_row", error.clone()));
    }
    if record.fields.len() != columns.count {
        return Err(Invalid::new(
            "invalid_row",
            format!("expected {} fields, found {}", columns.count, record.fields.len()),
        ));
    }
    let field = |index: usize| record.fields[index].trim();
    let port = match columns.port.map(field).filter(|p| !p.is_empty()) {
        None => None,
        Some(text) => {
            Some(text.parse::<i64>().map_err(|_| Invalid::new("invalid_port", "port must be 1–65535"))?)
        }
    };
    let tags = columns
        .tags
        .map(field)
        .unwrap_or_default()
        .split(';')
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned);
    Ok(NewHost {
        id: HostId::new(),
        name: clean_name(field(columns.name))?,
        address: clean_address(field(columns.address))?,
        port: check_port(port)?,
        tags: clean_tags(tags)?,
    })
}

/// Reads the body up to `limit` bytes (413 `payload_too_large` beyond).
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Registers hosts from a CSV file; answers with a report per row.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    request_body(
        content = String,
        content_type = "text/csv",
        description = "Header `name,address[,port][,tags]`, then one host per line; tags separated by `;`",
        example = "name,address,port,tags\nweb-01,10.0.0.11,22,prod;web\n\"db, primary\",db1.corp.example.org,2222,prod"
    ),
    responses(
        (status = 200, description = "Per-row report; valid rows were created", body = ImportReport),
        (status = 400, description = "`empty_csv`, `missing_header`, `invalid_header`, `invalid_csv`, `invalid_encoding`, `too_many_rows`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `Content-Type: text/csv`", body = ErrorBody),
    )
)]
#[post("/hosts/import")]
pub async fn import_hosts(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let is_csv = matches!(req.mime_type(), Ok(Some(mime)) if mime.essence_str() == "text/csv");
    if !is_csv {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: text/csv",
        ));
    }
    let body = read_body(payload, state.config.body_limit_bytes).await?;
    let text = String::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_encoding", "the CSV file must be UTF-8"))?;
    let records = csv::parse(&text)
        .map_err(|e| ApiError::bad_request("invalid_csv", format!("line {}: {}", e.line, e.message)))?;
    let Some((header, rows)) = records.split_first() else {
        return Err(ApiError::bad_request("empty_csv", "the CSV file is empty"));
    };
    let columns = columns(header)?;
    if rows.len() > MAX_IMPORT_ROWS {
        return Err(ApiError::bad_request(
            "too_many_rows",
            format!("at most {MAX_IMPORT_ROWS} rows per import; split the file"),
        ));
    }

    // Validate every row; keep the valid ones with their position in the report.
    let mut report: Vec<Option<ImportRow>> = Vec::with_capacity(rows.len());
    let mut valid: Vec<(usize, NewHost)> = Vec::new();
    for record in rows {
        let raw_name = record.fields.get(columns.name).map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        match host_from_row(record, columns) {
            Ok(host) => {
                valid.push((report.len(), host));
                report.push(None);
            }
            Err(invalid) => report.push(Some(ImportRow::error(record.line, raw_name, invalid))),
        }
    }

    let (positions, new_hosts): (Vec<usize>, Vec<NewHost>) = valid.into_iter().unzip();
    let names: Vec<String> = new_hosts.iter().map(|h| h.name.clone()).collect();
    let failed_rows = report.iter().filter(|r| r.is_some()).count();
    let mut conn = state.pool.get().await?;
    let outcomes = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let outcomes = hosts::insert_hosts_bulk(conn, new_hosts).await?;
            let created: Vec<String> =
                outcomes.iter().filter_map(|o| o.as_ref().ok()).map(|id| id.0.to_string()).collect();
            let event = audit::event(
                &principal,
                &client,
                "host.import",
                "host",
                None,
                AuditOutcome::Success,
                serde_json::json!({
                    "rows": rows.len(),
                    "created": created.len(),
                    "failed": failed_rows + (outcomes.len() - created.len()),
                    "host_ids": created,
                }),
            );
            audit::record(conn, &event).await?;
            Ok(outcomes)
        })
        .await?;

    for ((position, outcome), name) in positions.into_iter().zip(outcomes).zip(names) {
        let line = rows[position].line;
        report[position] = Some(match outcome {
            Ok(id) => ImportRow {
                line,
                status: ImportStatus::Created,
                name: Some(name),
                host_id: Some(id.0),
                code: None,
                message: None,
            },
            Err(DbError::Conflict { .. }) => ImportRow::error(
                line,
                Some(name),
                Invalid::new("duplicate_name", "a host with this name exists or appears earlier in the file"),
            ),
            Err(other) => {
                ImportRow::error(line, Some(name), Invalid::new("invalid_value", other.to_string()))
            }
        });
    }
    let rows: Vec<ImportRow> = report.into_iter().flatten().collect();
    let created = rows.iter().filter(|r| r.status == ImportStatus::Created).count();
    Ok(HttpResponse::Ok().json(ImportReport { created, failed: rows.len() - created, rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: usize, fields: &[&str]) -> Record {
        Record { line, fields: fields.iter().map(|f| (*f).to_owned()).collect(), error: None }
    }

    #[test]
    fn header_columns_are_found_in_any_order_and_unknown_ones_refused() {
        let cols = columns(&record(1, &["Address", " name ", "tags"])).unwrap();
        assert_eq!(cols, Columns { name: 1, address: 0, port: None, tags: Some(2), count: 3 });
        assert_eq!(columns(&record(1, &["web-01", "10.0.0.1"])).unwrap_err().code(), "missing_header");
        assert_eq!(columns(&record(1, &["name", "adress"])).unwrap_err().code(), "invalid_header");
        assert_eq!(columns(&record(1, &["name", "port"])).unwrap_err().code(), "missing_header");
        assert_eq!(columns(&record(1, &["name", "address", "name"])).unwrap_err().code(), "invalid_header");
    }

    #[test]
    fn rows_are_checked_with_the_api_rules() {
        let cols = columns(&record(1, &["name", "address", "port", "tags"])).unwrap();
        let host = host_from_row(&record(2, &["web", "10.0.0.1", "", "a; b;;"]), cols).unwrap();
        assert_eq!((host.port, host.tags), (22, vec!["a".to_owned(), "b".to_owned()]));
        let code = |fields: &[&str]| host_from_row(&record(2, fields), cols).unwrap_err().code;
        assert_eq!(code(&["web", "no such/host", "22", ""]), "invalid_address");
        assert_eq!(code(&["web", "h", "0", ""]), "invalid_port");
        assert_eq!(code(&["web", "h", "ssh", ""]), "invalid_port");
        assert_eq!(code(&["web", "h"]), "invalid_row");
        assert_eq!(code(&["", "h", "22", ""]), "invalid_name");
    }
}
