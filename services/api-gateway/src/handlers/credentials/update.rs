//! `PATCH /api/credentials/{id}` (rename), `PUT /api/credentials/{id}/secret` (replace the
//! secret, write-only) and `DELETE /api/credentials/{id}`.

use actix_web::{HttpResponse, delete, patch, put, web};
use openwatch_common::ids::CredentialId;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::credentials;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    AuthMethodDto, CredentialResponse, ValidSecret, audit_details, credential_db_error, valid_name,
    valid_username,
};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A new name for a credential.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCredential {
    /// The new display name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
}

/// A replacement secret, with the user name and method that go with it. Exactly the
/// secret matching `auth_method` must be present (as for creation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCredentialSecret {
    /// SSH user name.
    #[schema(min_length = 1, max_length = 255)]
    pub username: String,
    /// How it authenticates.
    pub auth_method: AuthMethodDto,
    /// The SSH password (write-only).
    #[schema(value_type = Option<String>, format = Password, write_only, min_length = 1, max_length = 1024)]
    pub password: Option<SecretString>,
    /// The private key, PEM or OpenSSH format, at most 16 KiB (write-only).
    #[schema(value_type = Option<String>, format = Password, write_only, max_length = 16384)]
    pub private_key: Option<SecretString>,
    /// The private key's passphrase, when it is encrypted (write-only).
    #[schema(value_type = Option<String>, format = Password, write_only, min_length = 1, max_length = 1024)]
    pub passphrase: Option<SecretString>,
}

/// Renames a credential.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:write"])),
    params(("id" = uuid::Uuid, Path, description = "Credential id")),
    request_body = RenameCredential,
    responses(
        (status = 200, description = "Renamed (metadata only)", body = CredentialResponse),
        (status = 400, description = "`invalid_body` or `invalid_name`", body = ErrorBody),
        (status = 404, description = "`credential_not_found`", body = ErrorBody),
    )
)]
#[patch("/credentials/{id}")]
pub async fn rename_credential(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<RenameCredential>,
) -> Result<HttpResponse, ApiError> {
    let id = CredentialId(path.into_inner());
    let name = valid_name(&body.name)?;
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let before = credentials::get_metadata(conn, id).await.map_err(credential_db_error)?;
            let updated = credentials::update_metadata(conn, id, &name).await.map_err(credential_db_error)?;
            let mut details = audit_details(&updated);
            details["previous_name"] = before.name.into();
            let event = audit::event(
                &principal,
                &client,
                "credential.rename",
                "credential",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                details,
            );
            audit::record(conn, &event).await?;
            Ok(updated)
        })
        .await?;
    tracing::info!(credential.id = %id.0, "credential renamed");
    Ok(HttpResponse::Ok().json(CredentialResponse::from(updated)))
}

/// Replaces a credential's secret (and its user name and method), keeping its id and
/// scope. The secret is sealed afresh with the active master key.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:write"])),
    params(("id" = uuid::Uuid, Path, description = "Credential id")),
    request_body = ReplaceCredentialSecret,
    responses(
        (status = 200, description = "Replaced (metadata only)", body = CredentialResponse),
        (status = 400, description = "`invalid_body`, `invalid_username`, `invalid_secret`, `invalid_password`, `invalid_private_key`, `invalid_passphrase`", body = ErrorBody),
        (status = 404, description = "`credential_not_found`", body = ErrorBody),
    )
)]
#[put("/credentials/{id}/secret")]
pub async fn replace_credential_secret(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
    body: web::Json<ReplaceCredentialSecret>,
) -> Result<HttpResponse, ApiError> {
    let id = CredentialId(path.into_inner());
    let ReplaceCredentialSecret { username, auth_method, password, private_key, passphrase } =
        body.into_inner();
    let username = valid_username(&username)?;
    let secret = ValidSecret::check(auth_method, password, private_key, passphrase)?;
    let method = secret.method();
    let sealed = secret.seal(&state.cipher, id)?;
    drop(secret);
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let updated = credentials::replace_secret(
                conn,
                id,
                method,
                &username,
                &sealed.ciphertext,
                &sealed.nonce,
                &sealed.key_id,
            )
            .await
            .map_err(credential_db_error)?;
            let event = audit::event(
                &principal,
                &client,
                "credential.replace_secret",
                "credential",
                Some(id.0.to_string()),
                AuditOutcome::Success,
                audit_details(&updated),
            );
            audit::record(conn, &event).await?;
            Ok(updated)
        })
        .await?;
    tracing::info!(
        credential.id = %id.0,
        credential.auth_method = updated.auth_method.as_str(),
        credential.key_id = %updated.key_id,
        "credential secret replaced"
    );
    Ok(HttpResponse::Ok().json(CredentialResponse::from(updated)))
}

/// Deletes a credential.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:write"])),
    params(("id" = uuid::Uuid, Path, description = "Credential id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`credential_not_found`", body = ErrorBody),
    )
)]
#[delete("/credentials/{id}")]
pub async fn delete_credential(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = CredentialId(path.into_inner());
    let mut conn = state.pool.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let before = credentials::get_metadata(conn, id).await.map_err(credential_db_error)?;
        credentials::delete_credential(conn, id).await.map_err(credential_db_error)?;
        let event = audit::event(
            &principal,
            &client,
            "credential.delete",
            "credential",
            Some(id.0.to_string()),
            AuditOutcome::Success,
            audit_details(&before),
        );
        audit::record(conn, &event).await?;
        Ok(())
    })
    .await?;
    tracing::info!(credential.id = %id.0, "credential deleted");
    Ok(HttpResponse::NoContent().finish())
}
