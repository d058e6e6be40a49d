//! `/api/auth/…`: login, refresh, logout, own profile and password, MFA, API tokens.
//!
//! # Sessions
//! A login creates a refresh-session family and returns an access token (JWT, 15 min)
//! bound to it plus an opaque refresh token. Refreshing rotates the refresh token; a
//! rotated token presented again revokes the whole family (theft detection). Logout
//! revokes the family in PostgreSQL and its access tokens in Redis at once.
//!
//! Password change, MFA changes and API-token management need an interactive session:
//! an API token cannot be used to mint more tokens or to change the account.

mod login;
mod mfa;
mod profile;
mod refresh;
mod tokens;

use chrono::{DateTime, TimeDelta, Utc};
use openwatch_common::access::{Permission, Role};
use openwatch_common::ids::{SessionId, UserId};
use openwatch_db::AsyncPgConnection;
use openwatch_db::queries::sessions::{self, NewSession};
use openwatch_db::queries::users::User;
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{ClientInfo, Principal};
use crate::error::ApiError;
use crate::state::ApiState;

/// Registers the routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(login::login)
        .service(refresh::refresh)
        .service(refresh::logout)
        .service(profile::get_me)
        .service(profile::update_me)
        .service(profile::change_password)
        .service(mfa::enroll_mfa)
        .service(mfa::confirm_mfa)
        .service(mfa::disable_mfa)
        .service(tokens::create_api_token)
        .service(tokens::list_api_tokens)
        .service(tokens::revoke_api_token);
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Access token (JWT) for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque refresh token; single use (rotates).
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_expires_at: DateTime<Utc>,
    /// The signed-in user.
    pub user: UserSummary,
}

/// Who is signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    /// User id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Username.
    pub username: String,
    /// Role.
    #[schema(value_type = String, example = "security_analyst")]
    pub role: Role,
    /// Whether MFA is enabled.
    pub mfa_enabled: bool,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self { id: user.id, username: user.username.clone(), role: user.role, mfa_enabled: user.mfa_enabled }
    }
}

/// A fresh refresh token: the secret (returned once) and the row to store (hash only).
pub(crate) struct IssuedRefresh {
    pub token: String,
    pub hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

pub(crate) fn new_refresh(state: &ApiState, now: DateTime<Utc>) -> Result<IssuedRefresh, ApiError> {
    let token = openwatch_secrets::tokens::generate_refresh_token().map_err(ApiError::internal)?;
    let token = token.expose_secret().to_owned();
    let hash = openwatch_secrets::tokens::sha256(&token);
    let ttl = TimeDelta::from_std(state.config.refresh_token_ttl).map_err(ApiError::internal)?;
    Ok(IssuedRefresh { token, hash, expires_at: now + ttl })
}

/// Starts a session family for `user` and returns its tokens.
pub(crate) async fn start_session(
    state: &ApiState,
    conn: &mut AsyncPgConnection,
    user: &User,
    client: &ClientInfo,
    now: DateTime<Utc>,
) -> Result<TokenResponse, ApiError> {
    let family = SessionId::new();
    let refresh = new_refresh(state, now)?;
    sessions::insert_session(
        conn,
        &NewSession {
            id: uuid::Uuid::now_v7(),
            family_id: family,
            user_id: user.id,
            token_hash: refresh.hash,
            expires_at: refresh.expires_at,
            user_agent: client.user_agent.clone(),
            ip: client.ip,
        },
    )
    .await?;
    token_response(state, user, family, refresh, now)
}

pub(crate) fn token_response(
    state: &ApiState,
    user: &User,
    family: SessionId,
    refresh: IssuedRefresh,
    now: DateTime<Utc>,
) -> Result<TokenResponse, ApiError> {
    let (access_token, _) =
        state.jwt.issue(user.id, &user.username, user.role, family, now).map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl().as_secs(),
        refresh_token: refresh.token,
        refresh_expires_at: refresh.expires_at,
        user: UserSummary::from(user),
    })
}

/// 403 unless the principal signed in interactively (not with an API token).
pub(crate) fn require_session(principal: &Principal) -> Result<SessionId, ApiError> {
    principal.session().ok_or_else(|| {
        ApiError::forbidden("session_required", "this action needs an interactive session, not an API token")
    })
}

/// The permissions of `role`, as strings (profile, token scopes).
pub(crate) fn permission_names(role: Role) -> Vec<String> {
    role.permissions().iter().map(|p: &Permission| p.as_str().to_owned()).collect()
}
