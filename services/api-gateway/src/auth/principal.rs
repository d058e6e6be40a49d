//! [`Principal`]: the authenticated caller, put in the request by the gate middleware.
//!
//! A bearer token is either an access JWT (a user in a session) or an API token
//! (`owk_…`, looked up by its SHA-256). An API token acts with the intersection of its
//! owner's role and its scopes.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use chrono::Utc;
use openwatch_common::access::{Permission, Role};
use openwatch_common::ids::{ApiTokenId, SessionId, UserId};
use openwatch_db::queries::api_tokens;

use crate::auth::jwt::TokenError;
use crate::auth::revocation;
use crate::error::ApiError;
use crate::state::ApiState;

/// How the principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An access token of a login session.
    Session(SessionId),
    /// An API token with its scopes.
    ApiToken {
        /// Token id.
        id: ApiTokenId,
        /// Scopes the token was created with.
        scopes: Vec<Permission>,
    },
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user (an API token acts as its owner).
    pub user_id: UserId,
    /// Username (audit).
    pub username: String,
    /// Role.
    pub role: Role,
    /// Session or API token.
    pub kind: PrincipalKind,
}

impl Principal {
    /// Whether the principal may do `permission`.
    pub fn allows(&self, permission: Permission) -> bool {
        self.role.allows(permission)
            && match &self.kind {
                PrincipalKind::Session(_) => true,
                PrincipalKind::ApiToken { scopes, .. } => scopes.contains(&permission),
            }
    }

    /// The session, when authenticated by an access token.
    pub fn session(&self) -> Option<SessionId> {
        match self.kind {
            PrincipalKind::Session(id) => Some(id),
            PrincipalKind::ApiToken { .. } => None,
        }
    }
}

/// Where the request came from (after trusted-proxy resolution) and its user agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("unauthenticated", "authentication required")),
        )
    }
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.extensions().get::<ClientInfo>().cloned().unwrap_or_default()))
    }
}

/// Turns a bearer token into a principal, or a 401 saying why (or 503 when Redis or
/// PostgreSQL cannot answer: authentication fails closed).
pub async fn authenticate(state: &ApiState, token: &str) -> Result<Principal, ApiError> {
    if token.starts_with(openwatch_secrets::tokens::API_TOKEN_PREFIX) {
        let hash = openwatch_secrets::tokens::sha256(token);
        let mut conn = state.pool.get().await?;
        let (api_token, user) =
            api_tokens::authenticate(&mut conn, &hash, Utc::now()).await?.ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "the API token is invalid, expired or revoked")
            })?;
        return Ok(Principal {
            user_id: user.id,
            username: user.username,
            role: user.role,
            kind: PrincipalKind::ApiToken { id: api_token.id, scopes: api_token.permissions },
        });
    }
    let claims = state.jwt.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized("token_expired", "the access token has expired"),
        TokenError::UnknownKey | TokenError::Invalid => {
            ApiError::unauthorized("invalid_token", "the access token is invalid")
        }
    })?;
    if revocation::is_revoked(
        &state.redis,
        &state.config.redis_key_prefix,
        claims.sub,
        claims.sid,
        claims.iat_ms,
    )
    .await?
    {
        return Err(ApiError::unauthorized("token_revoked", "the session has ended"));
    }
    Ok(Principal {
        user_id: claims.sub,
        username: claims.name,
        role: claims.role,
        kind: PrincipalKind::Session(claims.sid),
    })
}
