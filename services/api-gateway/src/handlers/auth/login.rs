//! `POST /api/auth/login`.

use actix_web::{HttpResponse, post, web};
use chrono::{TimeDelta, Utc};
use openwatch_db::AsyncConnection;
use openwatch_db::queries::audit::{AuditOutcome, NewAuditEvent, record};
use openwatch_db::queries::mfa;
use openwatch_db::queries::users::{self, UserCredentials};
use openwatch_secrets::{SealedRef, TotpSecret, password, tokens};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{TokenResponse, start_session};
use crate::auth::ClientInfo;
use crate::config::{LOCKOUT_DURATION, LOCKOUT_THRESHOLD};
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// Credentials. With MFA enabled, one of `totp_code` or `backup_code` is required too.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username (case-insensitive).
    #[schema(max_length = 128)]
    pub username: String,
    /// Password.
    #[schema(max_length = 1024, format = Password)]
    pub password: String,
    /// Current 6-digit TOTP code.
    pub totp_code: Option<String>,
    /// One of the backup codes (each works once).
    pub backup_code: Option<String>,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "invalid username or password, or the account is locked")
}

fn login_event(
    user: Option<&users::User>,
    name: &str,
    client: &ClientInfo,
    outcome: AuditOutcome,
    reason: &str,
) -> NewAuditEvent {
    NewAuditEvent {
        actor_user_id: user.map(|u| u.id),
        actor_name: user.map(|u| u.username.clone()).unwrap_or_else(|| name.chars().take(128).collect()),
        action: "auth.login".to_owned(),
        resource_type: "user".to_owned(),
        resource_id: user.map(|u| u.id.0.to_string()),
        outcome,
        ip: client.ip,
        details: serde_json::json!({"reason": reason, "request_id": client.request_id}),
    }
}

/// Signs in with username and password (and a second factor when enabled).
///
/// Five failed attempts in a row lock the account for 30 minutes; unknown users take the
/// same time as known ones. Every attempt is audited.
#[utoipa::path(
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`, `mfa_required` or `invalid_mfa_code`", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<ApiState>,
    client: ClientInfo,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password, totp_code, backup_code } = body.into_inner();
    let password = SecretString::from(password);
    let now = Utc::now();
    let mut conn = state.pool.get().await?;
    let found =
        if username.len() <= 128 { users::find_for_login(&mut conn, username.trim()).await? } else { None };

    let Some(UserCredentials { user, password_hash, totp, totp_last_step }) = found else {
        // Same work as a real check, so timing does not reveal which usernames exist.
        password::verify_dummy(&password);
        record(&mut conn, &login_event(None, &username, &client, AuditOutcome::Failure, "unknown_user"))
            .await?;
        metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "failure").increment(1);
        return Err(invalid_credentials());
    };
    let password_ok = web::block({
        let password = password.clone();
        move || password::verify_password(&password, &password_hash)
    })
    .await
    .map_err(ApiError::internal)?;

    if user.locked_until.is_some_and(|until| until > now) {
        record(&mut conn, &login_event(Some(&user), &username, &client, AuditOutcome::Failure, "locked"))
            .await?;
        metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "locked").increment(1);
        return Err(invalid_credentials());
    }
    if !password_ok || !user.is_active {
        let reason = if user.is_active { "bad_password" } else { "inactive" };
        let lock = TimeDelta::from_std(LOCKOUT_DURATION).map_err(ApiError::internal)?;
        let failure = users::record_login_failure(&mut conn, user.id, now, LOCKOUT_THRESHOLD, lock).await?;
        let mut event = login_event(Some(&user), &username, &client, AuditOutcome::Failure, reason);
        event.details["locked_until"] = serde_json::json!(failure.locked_until);
        record(&mut conn, &event).await?;
        metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "failure").increment(1);
        return Err(invalid_credentials());
    }

    if user.mfa_enabled {
        let second_factor_ok = match (totp_code.as_deref(), backup_code.as_deref(), totp.as_ref()) {
            (Some(code), _, Some(sealed)) => {
                let sealed = SealedRef {
                    ciphertext: &sealed.ciphertext,
                    nonce: &sealed.nonce,
                    key_id: &sealed.key_id,
                };
                let secret = state.cipher.open(&sealed, user.id.0.as_bytes()).map_err(ApiError::internal)?;
                let secret = TotpSecret::from_bytes(secret.expose_secret()).map_err(ApiError::internal)?;
                match secret.verify(code.trim(), now.timestamp().max(0) as u64, totp_last_step) {
                    // The step must advance in the database too: a replay on another replica fails here.
                    Some(step) => mfa::advance_totp_step(&mut conn, user.id, step.max(0) as u64).await?,
                    None => false,
                }
            }
            (None, Some(code), _) => match tokens::normalize_backup_code(code) {
                Some(normalized) => {
                    mfa::use_backup_code(&mut conn, user.id, &tokens::sha256(&normalized)).await?
                }
                None => false,
            },
            _ => {
                record(
                    &mut conn,
                    &login_event(Some(&user), &username, &client, AuditOutcome::Failure, "mfa_required"),
                )
                .await?;
                metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "mfa_required")
                    .increment(1);
                return Err(ApiError::unauthorized(
                    "mfa_required",
                    "this account requires a TOTP or backup code",
                ));
            }
        };
        if !second_factor_ok {
            let lock = TimeDelta::from_std(LOCKOUT_DURATION).map_err(ApiError::internal)?;
            users::record_login_failure(&mut conn, user.id, now, LOCKOUT_THRESHOLD, lock).await?;
            record(
                &mut conn,
                &login_event(Some(&user), &username, &client, AuditOutcome::Failure, "bad_mfa_code"),
            )
            .await?;
            metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "failure")
                .increment(1);
            return Err(ApiError::unauthorized(
                "invalid_mfa_code",
                "the second-factor code is wrong or was already used",
            ));
        }
    }

    let state_ref = state.get_ref();
    let tokens: TokenResponse = conn
        .transaction::<_, ApiError, _>(async |conn| {
            users::record_login_success(conn, user.id, now).await?;
            let tokens = start_session(state_ref, conn, &user, &client, now).await?;
            record(conn, &login_event(Some(&user), &username, &client, AuditOutcome::Success, "ok")).await?;
            Ok(tokens)
        })
        .await?;
    metrics::counter!(openwatch_telemetry::metrics::LOGINS_TOTAL, "outcome" => "success").increment(1);
    Ok(HttpResponse::Ok().json(tokens))
}
