//! `POST /api/credentials`: stores a new credential, sealed (see the module docs).

use actix_web::{HttpResponse, post, web};
use openwatch_common::ids::{CredentialId, HostGroupId, HostId};
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::credentials::{self, CredentialScope, NewCredential};
use openwatch_db::{AsyncConnection, DbError};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    AuthMethodDto, CredentialResponse, CredentialScopeDto, ValidSecret, audit_details, credential_db_error,
    unknown_target, valid_name, valid_username,
};
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A new credential. Exactly the secret matching `auth_method` must be present:
/// `password` for `password`; `private_key` (and optionally `passphrase`) for `private_key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// Display name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// What it applies to; `host` needs `host_id`, `group` needs `group_id`, `system` neither.
    pub scope: CredentialScopeDto,
    /// The host of a `host` credential.
    pub host_id: Option<uuid::Uuid>,
    /// The group of a `group` credential.
    pub group_id: Option<uuid::Uuid>,
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

/// The scope a request names, checked against its target ids.
fn scope_of(
    scope: CredentialScopeDto,
    host_id: Option<uuid::Uuid>,
    group_id: Option<uuid::Uuid>,
) -> Result<CredentialScope, ApiError> {
    match (scope, host_id, group_id) {
        (CredentialScopeDto::System, None, None) => Ok(CredentialScope::System),
        (CredentialScopeDto::Group, None, Some(group)) => Ok(CredentialScope::Group(HostGroupId(group))),
        (CredentialScopeDto::Host, Some(host), None) => Ok(CredentialScope::Host(HostId(host))),
        _ => Err(ApiError::bad_request(
            "invalid_scope",
            "scope `host` takes host_id only, `group` group_id only, `system` neither",
        )),
    }
}

/// Creates a credential; the secret is sealed and never returned.
#[utoipa::path(
    tag = "credentials",
    security(("bearer" = ["credentials:write"])),
    request_body = CreateCredential,
    responses(
        (status = 201, description = "Created (metadata only)", body = CredentialResponse),
        (status = 400, description = "`invalid_body`, `invalid_name`, `invalid_username`, `invalid_scope`, `invalid_secret` (missing, extra or mismatched secret), `invalid_password`, `invalid_private_key`, `invalid_passphrase`", body = ErrorBody),
        (status = 409, description = "`credential_exists`: this host, group or the system already has one", body = ErrorBody),
        (status = 422, description = "`unknown_host` or `unknown_group`", body = ErrorBody),
    )
)]
#[post("/credentials")]
pub async fn create_credential(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<CreateCredential>,
) -> Result<HttpResponse, ApiError> {
    let CreateCredential {
        name,
        scope,
        host_id,
        group_id,
        username,
        auth_method,
        password,
        private_key,
        passphrase,
    } = body.into_inner();
    let name = valid_name(&name)?;
    let username = valid_username(&username)?;
    let scope = scope_of(scope, host_id, group_id)?;
    let secret = ValidSecret::check(auth_method, password, private_key, passphrase)?;
    let id = CredentialId::new();
    let sealed = secret.seal(&state.cipher, id)?;
    drop(secret);
    let credential = NewCredential {
        id,
        scope,
        name,
        username,
        auth_method: auth_method.into(),
        ciphertext: sealed.ciphertext,
        nonce: sealed.nonce,
        key_id: sealed.key_id,
    };
    let mut conn = state.pool.get().await?;
    let stored = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let stored = credentials::insert_credential(conn, credential).await.map_err(|e| match e {
                DbError::Constraint { constraint, .. } if constraint.ends_with("_fkey") => {
                    unknown_target(scope)
                }
                other => credential_db_error(other),
            })?;
            let event = audit::event(
                &principal,
                &client,
                "credential.create",
                "credential",
                Some(stored.id.0.to_string()),
                AuditOutcome::Success,
                audit_details(&stored),
            );
            audit::record(conn, &event).await?;
            Ok(stored)
        })
        .await?;
    tracing::info!(
        credential.id = %stored.id.0,
        credential.scope = stored.scope.kind().as_str(),
        credential.auth_method = stored.auth_method.as_str(),
        "credential created"
    );
    Ok(HttpResponse::Created().json(CredentialResponse::from(stored)))
}
