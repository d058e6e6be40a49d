//! Access tokens: short-lived JWTs signed with Ed25519 (`alg: EdDSA`).
//!
//! The key pair is derived from `OPENWATCH_SECRET_KEY` (seed = SHA-256 of a domain label and
//! the secret), so every replica sharing the secret signs and verifies the same tokens
//! without distributing PEM files; the public key's hash is the `kid`. Earlier secrets
//! (`OPENWATCH_SECRET_KEY_PREVIOUS`) stay valid for verification during a rotation.
//! Verification accepts only `EdDSA`, a known `kid`, our issuer and audience, a live `exp`
//! and `typ = access` (a refresh token is opaque and never a JWT, so it cannot pass).

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openwatch_common::access::Role;
use openwatch_common::ids::{SessionId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// `iss` of every token.
pub const ISSUER: &str = "openwatch";
/// `aud` of every access token.
pub const AUDIENCE: &str = "openwatch-api";
/// `typ` claim of access tokens.
pub const ACCESS_TYPE: &str = "access";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// Issuer ([`ISSUER`]).
    pub iss: String,
    /// Audience ([`AUDIENCE`]).
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The refresh-session family the token belongs to (logout revokes it).
    pub sid: SessionId,
    /// Username at issue time (audit).
    pub name: String,
    /// Role at issue time. Role changes revoke the user's tokens, so it cannot go stale.
    pub role: Role,
    /// Token type ([`ACCESS_TYPE`]).
    pub typ: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Issued at in milliseconds (revocation compares at this precision).
    pub iat_ms: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Unique id.
    pub jti: uuid::Uuid,
}

/// Why a token was refused. Only the code reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, bad signature, wrong algorithm, issuer or audience.
    #[error("invalid token")]
    Invalid,
    /// The `kid` names no key we know.
    #[error("unknown signing key")]
    UnknownKey,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
}

/// Signing and verification keys.
pub struct JwtKeys {
    active_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("active_kid", &self.active_kid)
            .field("kids", &self.decoding.keys())
            .finish()
    }
}

struct DerivedKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

fn derive(secret: &SecretString) -> anyhow::Result<DerivedKey> {
    let mut material = b"openwatch-jwt-ed25519-v1\0".to_vec();
    material.extend_from_slice(secret.expose_secret().as_bytes());
    let seed = digest(&SHA256, &material);
    let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot derive the JWT signing key"))?;
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| anyhow::anyhow!("cannot encode the JWT signing key"))?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = digest(&SHA256, &public).as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(DerivedKey { kid, pkcs8: pkcs8.as_ref().to_vec(), public })
}

impl JwtKeys {
    /// Derives the active key from `active` and verification keys from `previous`.
    pub fn derive(active: &SecretString, previous: &[SecretString], ttl: Duration) -> anyhow::Result<Self> {
        let current = derive(active)?;
        let mut decoding = HashMap::new();
        decoding.insert(current.kid.clone(), DecodingKey::from_ed_der(&current.public));
        for secret in previous {
            let old = derive(secret)?;
            decoding.insert(old.kid, DecodingKey::from_ed_der(&old.public));
        }
        Ok(Self {
            active_kid: current.kid,
            encoding: EncodingKey::from_ed_der(&current.pkcs8),
            decoding,
            ttl,
        })
    }

    /// The `kid` new tokens carry.
    pub fn active_kid(&self) -> &str {
        &self.active_kid
    }

    /// Access-token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token; returns it and its expiry.
    pub fn issue(
        &self,
        user: UserId,
        name: &str,
        role: Role,
        session: SessionId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let expires = now + self.ttl;
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user,
            sid: session,
            name: name.to_owned(),
            role,
            typ: ACCESS_TYPE.to_owned(),
            iat: now.timestamp(),
            iat_ms: now.timestamp_millis(),
            exp: expires.timestamp(),
            jti: uuid::Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.active_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok((token, expires))
    }

    /// Verifies an access token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key =
            header.kid.as_deref().and_then(|kid| self.decoding.get(kid)).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.typ != ACCESS_TYPE {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::derive(&SecretString::from(secret), &[], Duration::from_secs(900)).unwrap()
    }

    fn issue(keys: &JwtKeys, now: DateTime<Utc>) -> String {
        keys.issue(UserId::new(), "alice", Role::Auditor, SessionId::new(), now).unwrap().0
    }

    #[test]
    fn replicas_sharing_the_secret_verify_each_others_tokens() {
        let a = keys("a-shared-secret-of-at-least-thirty-two-chars");
        let b = keys("a-shared-secret-of-at-least-thirty-two-chars");
        assert_eq!(a.active_kid(), b.active_kid());
        let claims = b.verify(&issue(&a, Utc::now())).unwrap();
        assert_eq!(claims.role, Role::Auditor);
    }

    #[test]
    fn a_token_from_another_key_is_refused_and_rotation_keeps_old_tokens_valid() {
        let old = keys("the-old-secret-of-at-least-thirty-two-chars!");
        let token = issue(&old, Utc::now());
        let new = keys("the-new-secret-of-at-least-thirty-two-chars!");
        assert_eq!(new.verify(&token), Err(TokenError::UnknownKey));
        let rotated = JwtKeys::derive(
            &SecretString::from("the-new-secret-of-at-least-thirty-two-chars!"),
            &[SecretString::from("the-old-secret-of-at-least-thirty-two-chars!")],
            Duration::from_secs(900),
        )
        .unwrap();
        assert!(rotated.verify(&token).is_ok());
    }

    #[test]
    fn expired_tampered_and_alg_none_tokens_are_refused() {
        let k = keys("a-shared-secret-of-at-least-thirty-two-chars");
        let expired = issue(&k, Utc::now() - chrono::TimeDelta::hours(1));
        assert_eq!(k.verify(&expired), Err(TokenError::Expired));

        let token = issue(&k, Utc::now());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["role"] = "super_admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(k.verify(&parts.join(".")), Err(TokenError::Invalid));

        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(k.verify(&format!("{none_header}.{}.", parts[1])), Err(TokenError::Invalid));
        assert_eq!(k.verify("not-a-jwt"), Err(TokenError::Invalid));
    }
}
