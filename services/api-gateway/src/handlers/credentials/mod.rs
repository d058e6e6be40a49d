//! `/api/credentials/…`, `/api/hosts/{id}/effective-credential` and `/api/known-hosts/…`:
//! the SSH credentials OpenWatch logs in with, and the host keys it accepts.
//!
//! # Credentials are write-only
//! A credential's secret (a password, or a private key with an optional passphrase) is
//! accepted by `POST /api/credentials` and `PUT /api/credentials/{id}/secret` and never
//! leaves the gateway again: every response carries [`CredentialResponse`] (metadata only),
//! the secret is sealed before the database sees it, and neither logs nor audit details
//! contain it. Request bodies hold the secret as [`secrecy::SecretString`], whose `Debug`
//! is redacted, and the serialised plaintext lives in a buffer wiped on drop.
//!
//! # Resolution order
//! A credential is scoped to one host, one group or the whole system, with at most one per
//! host, per group and one system default (a second one is 409 `credential_exists`). When
//! OpenWatch connects to a host it uses, in order (`GET /api/hosts/{id}/effective-credential`
//! shows the outcome and `resolved_from`):
//! 1. the host's own credential (`host`);
//! 2. else the credential of one of the host's groups — the group with the lowest name,
//!    then lowest id, so the choice is deterministic (`group`);
//! 3. else the system default (`system`);
//! 4. else none (404 `no_credential`).
//!
//! # Encryption
//! The secret is serialised as JSON — `{"password": "…"}` or
//! `{"private_key": "-----BEGIN … PRIVATE KEY-----…", "passphrase": "…" | null}`
//! ([`openwatch_secrets::CredentialSecret`]) — and sealed with AES-256-GCM under the master key
//! (`OPENWATCH_MASTER_KEY`, 32 bytes) with a fresh random 96-bit nonce. The associated data
//! is the credential id's 16 UUID bytes, so a ciphertext copied onto another row does not
//! open. Each row stores the ciphertext (with its tag), the nonce and the `key_id` (a
//! truncated SHA-256 of the key) that sealed it; the id is chosen before sealing and kept
//! when the secret is replaced. Rotation: set the new key as `OPENWATCH_MASTER_KEY` and list
//! the old one in `OPENWATCH_MASTER_KEY_PREVIOUS` (comma-separated, decrypt only); records
//! name their key, so old ones still open, and new or replaced secrets are sealed with the
//! active key (responses show `key_id`, so records still under an old key can be found and
//! re-sealed). Scan workers hold the same keys to open the secret when they connect.
//!
//! # Known hosts
//! Host keys are recorded by the scanner (trust on first use or `pending`). An operator
//! approves a pending key (`trusted`, recording who approved it; the previously trusted key
//! of that host and type is revoked in the same transaction) or revokes a key. A revoked
//! key stays revoked: approving it is 409 `invalid_transition`.
//!
//! Every change is audited in the same transaction as the change, with name, scope, user
//! name and auth method, never the secret.
//!
//! # Layout
//! * `create.rs` — `POST /api/credentials`.
//! * `read.rs` — list, get and the effective credential of a host.
//! * `update.rs` — rename, replace the secret, delete.
//! * `known_hosts.rs` — list, get, approve and revoke host keys.

mod create;
mod known_hosts;
mod read;
mod update;

use chrono::{DateTime, Utc};
use openwatch_common::ids::CredentialId;
use openwatch_db::DbError;
use openwatch_db::queries::credentials::{
    AuthMethod, CredentialMetadata, CredentialScope, CredentialScopeKind,
};
use openwatch_secrets::CredentialSecret;
use openwatch_secrets::cipher::{Cipher, Sealed};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

pub use create::CreateCredential;
pub use known_hosts::{KnownHostQuery, KnownHostResponse, KnownHostStatusDto};
pub use read::{CredentialQuery, EffectiveCredentialResponse};
pub use update::{RenameCredential, ReplaceCredentialSecret};

/// Largest accepted private key (PEM text), in bytes.
pub const MAX_PRIVATE_KEY_BYTES: usize = 16 * 1024;
/// Longest accepted password or passphrase, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest credential name and SSH user name, in characters (the table's limit).
pub const MAX_NAME_CHARS: usize = 255;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create::create_credential)
        .service(read::list_credentials)
        .service(read::get_credential)
        .service(read::get_effective_credential)
        .service(update::rename_credential)
        .service(update::replace_credential_secret)
        .service(update::delete_credential)
        .service(known_hosts::list_known_hosts)
        .service(known_hosts::get_known_host)
        .service(known_hosts::approve_known_host)
        .service(known_hosts::revoke_known_host);
}

/// What a credential applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CredentialScope)]
pub enum CredentialScopeDto {
    /// The system default.
    System,
    /// Every member of a group without a credential of its own.
    Group,
    /// One host.
    Host,
}

impl From<CredentialScopeKind> for CredentialScopeDto {
    fn from(kind: CredentialScopeKind) -> Self {
        match kind {
            CredentialScopeKind::System => Self::System,
            CredentialScopeKind::Group => Self::Group,
            CredentialScopeKind::Host => Self::Host,
        }
    }
}

impl From<CredentialScopeDto> for CredentialScopeKind {
    fn from(kind: CredentialScopeDto) -> Self {
        match kind {
            CredentialScopeDto::System => Self::System,
            CredentialScopeDto::Group => Self::Group,
            CredentialScopeDto::Host => Self::Host,
        }
    }
}

/// How a credential authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AuthMethod)]
pub enum AuthMethodDto {
    /// SSH password authentication (`password` is required).
    Password,
    /// SSH public-key authentication (`private_key` is required, `passphrase` optional).
    PrivateKey,
}

impl From<AuthMethod> for AuthMethodDto {
    fn from(method: AuthMethod) -> Self {
        match method {
            AuthMethod::Password => Self::Password,
            AuthMethod::PrivateKey => Self::PrivateKey,
        }
    }
}

impl From<AuthMethodDto> for AuthMethod {
    fn from(method: AuthMethodDto) -> Self {
        match method {
            AuthMethodDto::Password => Self::Password,
            AuthMethodDto::PrivateKey => Self::PrivateKey,
        }
    }
}

/// A credential's metadata: everything but the secret, which is never returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialResponse {
    /// Credential id.
    #[schema(value_type = uuid::Uuid)]
    pub id: CredentialId,
    /// Display name.
    pub name: String,
    /// What it applies to.
    pub scope: CredentialScopeDto,
    /// The host, for a host-scoped credential.
    pub host_id: Option<uuid::Uuid>,
    /// The group, for a group-scoped credential.
    pub group_id: Option<uuid::Uuid>,
    /// SSH user name.
    pub username: String,
    /// Password or private key.
    pub auth_method: AuthMethodDto,
    /// Id of the master key that sealed the secret (rotation).
    pub key_id: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (rename or secret replacement).
    pub updated_at: DateTime<Utc>,
}

impl From<CredentialMetadata> for CredentialResponse {
    fn from(m: CredentialMetadata) -> Self {
        let (host_id, group_id) = match m.scope {
            CredentialScope::System => (None, None),
            CredentialScope::Group(group) => (None, Some(group.into_uuid())),
            CredentialScope::Host(host) => (Some(host.into_uuid()), None),
        };
        Self {
            id: m.id,
            name: m.name,
            scope: m.scope.kind().into(),
            host_id,
            group_id,
            username: m.username,
            auth_method: m.auth_method.into(),
            key_id: m.key_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The audit details of a credential change: what it is, never its secret.
fn audit_details(m: &CredentialMetadata) -> serde_json::Value {
    let response = CredentialResponse::from(m.clone());
    serde_json::json!({
        "name": response.name,
        "scope": response.scope,
        "host_id": response.host_id,
        "group_id": response.group_id,
        "username": response.username,
        "auth_method": response.auth_method,
        "key_id": response.key_id,
    })
}

/// A secret as submitted, checked: exactly the secret matching the method, well-formed.
pub(crate) struct ValidSecret {
    method: AuthMethod,
    password: Option<SecretString>,
    private_key: Option<SecretString>,
    passphrase: Option<SecretString>,
}

impl ValidSecret {
    /// Checks the submitted fields against `method` (400 on any mismatch).
    pub(crate) fn check(
        method: AuthMethodDto,
        password: Option<SecretString>,
        private_key: Option<SecretString>,
        passphrase: Option<SecretString>,
    ) -> Result<Self, ApiError> {
        match method {
            AuthMethodDto::Password => {
                if private_key.is_some() || passphrase.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_secret",
                        "auth_method `password` takes `password` only (no `private_key` or `passphrase`)",
                    ));
                }
                let Some(password) = password else {
                    return Err(ApiError::bad_request(
                        "invalid_secret",
                        "auth_method `password` requires `password`",
                    ));
                };
                let chars = password.expose_secret().chars().count();
                if chars == 0 || chars > MAX_PASSWORD_CHARS {
                    return Err(ApiError::bad_request(
                        "invalid_password",
                        format!("password must be 1–{MAX_PASSWORD_CHARS} characters"),
                    ));
                }
                Ok(Self {
                    method: AuthMethod::Password,
                    password: Some(password),
                    private_key: None,
                    passphrase: None,
                })
            }
            AuthMethodDto::PrivateKey => {
                if password.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_secret",
                        "auth_method `private_key` takes `private_key` (and `passphrase`), not `password`",
                    ));
                }
                let Some(key) = private_key else {
                    return Err(ApiError::bad_request(
                        "invalid_secret",
                        "auth_method `private_key` requires `private_key`",
                    ));
                };
                if key.expose_secret().len() > MAX_PRIVATE_KEY_BYTES {
                    return Err(ApiError::bad_request(
                        "invalid_private_key",
                        format!("private_key must be at most {MAX_PRIVATE_KEY_BYTES} bytes"),
                    ));
                }
                if !looks_like_private_key(key.expose_secret()) {
                    return Err(ApiError::bad_request(
                        "invalid_private_key",
                        "private_key must be a PEM or OpenSSH private key \
                         (`-----BEGIN … PRIVATE KEY-----` … `-----END … PRIVATE KEY-----`)",
                    ));
                }
                if let Some(pass) = &passphrase {
                    let chars = pass.expose_secret().chars().count();
                    if chars == 0 || chars > MAX_PASSWORD_CHARS {
                        return Err(ApiError::bad_request(
                            "invalid_passphrase",
                            format!("passphrase must be 1–{MAX_PASSWORD_CHARS} characters when given"),
                        ));
                    }
                }
                Ok(Self {
                    method: AuthMethod::PrivateKey,
                    password: None,
                    private_key: Some(key),
                    passphrase,
                })
            }
        }
    }

    /// The auth method the secret belongs to.
    pub(crate) fn method(&self) -> AuthMethod {
        self.method
    }

    /// Seals the secret ([`openwatch_secrets::CredentialSecret`], the document the scan
    /// workers open) for credential `id` (associated data: the id's 16 bytes).
    pub(crate) fn seal(&self, cipher: &Cipher, id: CredentialId) -> Result<Sealed, ApiError> {
        let secret = match (self.method, &self.password, &self.private_key) {
            (AuthMethod::Password, Some(password), _) => CredentialSecret::Password(password.clone()),
            (AuthMethod::PrivateKey, _, Some(key)) => {
                CredentialSecret::PrivateKey { key: key.clone(), passphrase: self.passphrase.clone() }
            }
            _ => return Err(ApiError::internal("credential secret does not match its auth method")),
        };
        secret
            .seal(cipher, id.0.as_bytes())
            .map_err(|e| ApiError::internal(format!("sealing a credential secret: {e}")))
    }
}

/// Whether `text` looks like a PEM or OpenSSH private key: a `-----BEGIN <X> PRIVATE
/// KEY-----` line, a body, and the matching `-----END <X> PRIVATE KEY-----` line. The key is
/// not parsed (libssh2 does that when connecting); this catches pasting a public key, a
/// certificate or a file name.
pub(crate) fn looks_like_private_key(text: &str) -> bool {
    let mut lines = text.trim().lines().map(str::trim);
    let Some(first) = lines.next() else { return false };
    let Some(label) = first.strip_prefix("-----BEGIN ").and_then(|rest| rest.strip_suffix("-----")) else {
        return false;
    };
    if !label.ends_with("PRIVATE KEY") {
        return false;
    }
    let body: Vec<&str> = lines.collect();
    let Some((last, body)) = body.split_last() else { return false };
    let ascii_body = body.iter().all(|line| line.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    !body.is_empty() && ascii_body && *last == format!("-----END {label}-----")
}

/// Validates a display name (trimmed, 1–255 characters).
pub(crate) fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("name must be 1–{MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// Validates an SSH user name (1–255 characters, no whitespace or control characters).
pub(crate) fn valid_username(username: &str) -> Result<String, ApiError> {
    if username.is_empty()
        || username.chars().count() > MAX_NAME_CHARS
        || username.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::bad_request(
            "invalid_username",
            format!("username must be 1–{MAX_NAME_CHARS} characters without whitespace"),
        ));
    }
    Ok(username.to_owned())
}

/// Maps a credential write's database error: unknown credential 404, duplicate scope 409.
fn credential_db_error(error: DbError) -> ApiError {
    match error {
        DbError::Conflict { .. } => ApiError::conflict(
            "credential_exists",
            "a credential already exists for this scope (one per host, per group, and one system default)",
        ),
        other => ApiError::from_db("credential", other),
    }
}

/// 422 for an unknown host or group named by a credential's scope.
fn unknown_target(scope: CredentialScope) -> ApiError {
    match scope {
        CredentialScope::Host(_) => ApiError::unprocessable("unknown_host", "host_id names no host"),
        CredentialScope::Group(_) => ApiError::unprocessable("unknown_group", "group_id names no host group"),
        CredentialScope::System => {
            ApiError::unprocessable("constraint_violation", "the credential violates a constraint")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_shapes() {
        let ok = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(looks_like_private_key(ok));
        assert!(looks_like_private_key(&ok.replace("OPENSSH ", "RSA ")));
        assert!(looks_like_private_key(&ok.replace("OPENSSH ", "")));
        assert!(!looks_like_private_key(&ok.replace("END OPENSSH", "END RSA")));
        assert!(!looks_like_private_key(&ok.replace("PRIVATE", "PUBLIC")));
        assert!(!looks_like_private_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----"
        ));
        assert!(!looks_like_private_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host"));
        assert!(!looks_like_private_key(""));
        assert!(!looks_like_private_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"));
    }

    #[test]
    fn usernames_and_names() {
        assert!(valid_username("root").is_ok());
        assert!(valid_username("").is_err());
        assert!(valid_username("a b").is_err());
        assert!(valid_username(&"x".repeat(256)).is_err());
        assert_eq!(valid_name("  ops  ").ok().as_deref(), Some("ops"));
        assert!(valid_name("   ").is_err());
    }
}
