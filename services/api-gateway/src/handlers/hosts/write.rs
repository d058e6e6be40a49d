//! `POST /api/hosts`, `PATCH /api/hosts/{id}`, `DELETE /api/hosts/{id}`.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, patch, post, web};
use openwatch_common::ids::HostId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::hosts::{self, HostChangeset, NewHost};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{HostResponse, check_port, clean_address, clean_name, clean_tags, map_host_error};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A host to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHost {
    /// Unique display name (1–255 characters).
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// IP address or DNS name (no port, path or spaces).
    #[schema(max_length = 255, example = "web-01.corp.example.org")]
    pub address: String,
    /// SSH port (1–65535, default 22).
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    /// Labels: at most 32, each 1–64 characters.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tags: Vec<String>,
}

/// Changes to a host; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHost {
    /// New unique name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// New address.
    #[schema(max_length = 255)]
    pub address: Option<String>,
    /// New SSH port.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    /// New labels, replacing the old ones.
    #[schema(max_items = 32)]
    pub tags: Option<Vec<String>>,
}

/// Registers a host; its first liveness check and scan are due at once.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    request_body = CreateHost,
    responses(
        (status = 201, description = "Created", body = HostResponse),
        (status = 400, description = "`invalid_name`, `invalid_address`, `invalid_port`, `invalid_tags`", body = ErrorBody),
        (status = 409, description = "`host_name_taken`", body = ErrorBody),
    )
)]
#[post("/hosts")]
pub async fn create_host(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<CreateHost>,
) -> Result<HttpResponse, ApiError> {
    let CreateHost { name, address, port, tags } = body.into_inner();
    let new = NewHost {
        id: HostId::new(),
        name: clean_name(&name)?,
        address: clean_address(&address)?,
        port: check_port(port)?,
        tags: clean_tags(tags)?,
    };
    let mut conn = state.pool.get().await?;
    let host = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let host = hosts::insert_host(conn, new).await.map_err(map_host_error)?;
            let event = audit::event(
                &principal,
                &client,
                "host.create",
                "host",
                Some(host.id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"name": host.name, "address": host.address, "port": host.port}),
            );
            audit::record(conn, &event).await?;
            Ok(host)
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/hosts/{}", host.id.0)))
        .json(HostResponse::from(host)))
}

/// Changes a host's name, address, port or tags.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    request_body = UpdateHost,
    responses(
        (status = 200, description = "Updated", body = HostResponse),
        (status = 400, description = "`invalid_name`, `invalid_address`, `invalid_port`, `invalid_tags`", body = ErrorBody),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
        (status = 409, description = "`host_name_taken`", body = ErrorBody),
    )
)]
#[patch("/hosts/{id}")]
pub async fn update_host(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<UpdateHost>,
) -> Result<HttpResponse, ApiError> {
    let id = HostId(path.into_inner());
    let UpdateHost { name, address, port, tags } = body.into_inner();
    let changes = HostChangeset {
        name: name.as_deref().map(clean_name).transpose()?,
        address: address.as_deref().map(clean_address).transpose()?,
        port: port.map(|p| check_port(Some(p))).transpose()?,
        tags: tags.map(clean_tags).transpose()?,
    };
    let fields: Vec<&str> = [
        ("name", changes.name.is_some()),
        ("address", changes.address.is_some()),
        ("port", changes.port.is_some()),
        ("tags", changes.tags.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    let mut conn = state.pool.get().await?;
    let host = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let host = hosts::update_host(conn, id, changes).await.map_err(map_host_error)?;
            let event = audit::event(
                &principal,
                &client,
                "host.update",
                "host",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                serde_json::json!({"fields": fields, "name": host.name, "address": host.address, "port": host.port}),
            );
            audit::record(conn, &event).await?;
            Ok(host)
        })
        .await?;
    Ok(HttpResponse::Ok().json(HostResponse::from(host)))
}

/// Deletes a host with its memberships, credential, known keys, scans and findings.
#[utoipa::path(
    tag = "hosts",
    security(("bearer" = ["hosts:write"])),
    params(("id" = uuid::Uuid, Path, description = "Host id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`host_not_found`", body = ErrorBody),
    )
)]
#[delete("/hosts/{id}")]
pub async fn delete_host(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = HostId(path.into_inner());
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let host = hosts::get_host(conn, id).await.map_err(|e| ApiError::from_db("host", e))?;
        hosts::delete_host(conn, id).await.map_err(|e| ApiError::from_db("host", e))?;
        let event = audit::event(
            &principal,
            &client,
            "host.delete",
            "host",
            Some(id.0.to_string()),
            AuditOutcome::Success,
            serde_json::json!({"name": host.name, "address": host.address}),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
