//! TOTP multi-factor authentication: enrol, confirm (enables it, returns backup codes),
//! disable (with the password).

use actix_web::{HttpResponse, post, web};
use chrono::Utc;
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::AuditOutcome;
use openwatch_db::queries::mfa::{self, BACKUP_CODE_COUNT, SealedTotp};
use openwatch_db::queries::users;
use openwatch_secrets::{SealedRef, TotpSecret, password, tokens};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::require_session;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::http::audit;
use crate::state::ApiState;

/// A new TOTP secret to add to an authenticator app; MFA is enabled once a code from it
/// is confirmed.
#[derive(Serialize, ToSchema)]
pub struct EnrollResponse {
    /// The secret, base32 (for manual entry).
    pub secret: String,
    /// `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

/// A TOTP code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmMfa {
    /// The current 6-digit code from the authenticator.
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// The single-use backup codes, shown once.
#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    /// Ten codes; each signs in once in place of a TOTP code.
    pub backup_codes: Vec<String>,
}

/// The password, to turn MFA off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableMfa {
    /// The account password.
    #[schema(format = Password)]
    pub password: String,
}

fn audit_event(
    principal: &Principal,
    client: &ClientInfo,
    action: &str,
) -> openwatch_db::queries::audit::NewAuditEvent {
    audit::event(
        principal,
        client,
        action,
        "user",
        Some(principal.user_id.0.to_string()),
        AuditOutcome::Success,
        serde_json::json!({}),
    )
}

/// Starts MFA enrolment: a new secret, not active until confirmed.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    responses(
        (status = 200, description = "Secret to add to an authenticator", body = EnrollResponse),
        (status = 409, description = "`mfa_already_enabled`", body = ErrorBody),
    )
)]
#[post("/auth/mfa/enroll")]
pub async fn enroll_mfa(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    require_session(&principal)?;
    let secret = TotpSecret::generate().map_err(ApiError::internal)?;
    let sealed = state
        .cipher
        .seal(secret.expose_bytes(), principal.user_id.0.as_bytes())
        .map_err(ApiError::internal)?;
    let mut conn = state.pool.get().await?;
    let stored = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let stored = mfa::set_pending_totp(
                conn,
                principal.user_id,
                &SealedTotp { ciphertext: sealed.ciphertext, nonce: sealed.nonce, key_id: sealed.key_id },
            )
            .await?;
            if stored {
                audit::record(conn, &audit_event(&principal, &client, "mfa.enroll")).await?;
            }
            Ok(stored)
        })
        .await?;
    if !stored {
        return Err(ApiError::conflict("mfa_already_enabled", "MFA is already enabled; disable it first"));
    }
    Ok(HttpResponse::Ok().json(EnrollResponse {
        secret: secret.to_base32().expose_secret().to_owned(),
        otpauth_uri: secret.provisioning_uri("OpenWatch", &principal.username).expose_secret().to_owned(),
    }))
}

/// Confirms enrolment with a code from the app: MFA is enforced at every later login.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    request_body = ConfirmMfa,
    responses(
        (status = 200, description = "Enabled; keep the backup codes", body = BackupCodes),
        (status = 400, description = "`invalid_mfa_code` or `mfa_not_enrolled`", body = ErrorBody),
        (status = 409, description = "`mfa_already_enabled`", body = ErrorBody),
    )
)]
#[post("/auth/mfa/confirm")]
pub async fn confirm_mfa(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<ConfirmMfa>,
) -> Result<HttpResponse, ApiError> {
    require_session(&principal)?;
    let mut conn = state.pool.get().await?;
    let credentials = users::find_for_login(&mut conn, &principal.username)
        .await?
        .filter(|c| c.user.id == principal.user_id)
        .ok_or_else(|| ApiError::not_found("user_not_found", "user not found"))?;
    if credentials.user.mfa_enabled {
        return Err(ApiError::conflict("mfa_already_enabled", "MFA is already enabled"));
    }
    let sealed = credentials
        .totp
        .ok_or_else(|| ApiError::bad_request("mfa_not_enrolled", "start with POST /api/auth/mfa/enroll"))?;
    let secret = state
        .cipher
        .open(
            &SealedRef { ciphertext: &sealed.ciphertext, nonce: &sealed.nonce, key_id: &sealed.key_id },
            principal.user_id.0.as_bytes(),
        )
        .map_err(ApiError::internal)?;
    let secret = TotpSecret::from_bytes(secret.expose_secret()).map_err(ApiError::internal)?;
    let step = secret
        .verify(body.code.trim(), Utc::now().timestamp().max(0) as u64, credentials.totp_last_step)
        .ok_or_else(|| ApiError::bad_request("invalid_mfa_code", "the code is wrong or expired"))?;
    let codes = tokens::generate_backup_codes(BACKUP_CODE_COUNT).map_err(ApiError::internal)?;
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| tokens::sha256(c.expose_secret())).collect();
    conn.transaction::<_, ApiError, _>(async |conn| {
        if !mfa::advance_totp_step(conn, principal.user_id, step.max(0) as u64).await? {
            return Err(ApiError::bad_request("invalid_mfa_code", "the code was already used"));
        }
        mfa::enable_mfa(conn, principal.user_id, &hashes).await?;
        audit::record(conn, &audit_event(&principal, &client, "mfa.enable")).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(BackupCodes { backup_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect() }))
}

/// Turns MFA off (the password is required).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = ["profile:self"])),
    request_body = DisableMfa,
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
    )
)]
#[post("/auth/mfa/disable")]
pub async fn disable_mfa(
    state: web::Data<ApiState>,
    principal: Principal,
    client: ClientInfo,
    body: web::Json<DisableMfa>,
) -> Result<HttpResponse, ApiError> {
    require_session(&principal)?;
    let given = SecretString::from(body.into_inner().password);
    let mut conn = state.pool.get().await?;
    let credentials = users::find_for_login(&mut conn, &principal.username)
        .await?
        .filter(|c| c.user.id == principal.user_id)
        .ok_or_else(|| ApiError::unauthorized("invalid_credentials", "the password is wrong"))?;
    let hash = credentials.password_hash;
    let ok =
        web::block(move || password::verify_password(&given, &hash)).await.map_err(ApiError::internal)?;
    if !ok {
        return Err(ApiError::unauthorized("invalid_credentials", "the password is wrong"));
    }
    conn.transaction::<_, ApiError, _>(async |conn| {
        mfa::disable_mfa(conn, principal.user_id).await?;
        audit::record(conn, &audit_event(&principal, &client, "mfa.disable")).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
