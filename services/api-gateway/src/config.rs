//! Settings of the api-gateway beyond the shared runtime ones (see `docs/CONFIGURATION.md`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENWATCH_SECRET_KEY` | required | JWT signing material (≥ 32 characters); every replica that shares it verifies every token. The Ed25519 key pair is derived from it. |
//! | `OPENWATCH_SECRET_KEY_PREVIOUS` | empty | comma-separated earlier secret keys, still accepted for verification while their tokens live (key rotation). |
//! | `OPENWATCH_MASTER_KEY` | required | 32-byte credential encryption key (base64 or 64 hex), shared with the scan workers. |
//! | `OPENWATCH_MASTER_KEY_PREVIOUS` | empty | comma-separated earlier master keys (decrypt only). |
//! | `OPENWATCH_ACCESS_TOKEN_TTL_SECS` | 900 | lifetime of access tokens (60–3600). |
//! | `OPENWATCH_REFRESH_TOKEN_TTL_SECS` | 604800 | lifetime of refresh tokens (300–2592000). |
//! | `OPENWATCH_CORS_ORIGINS` | empty | comma-separated origins allowed to call the API from a browser. |
//! | `OPENWATCH_TRUSTED_PROXIES` | empty | comma-separated addresses or CIDRs whose `X-Forwarded-For` is believed (the nginx-lb). |
//! | `OPENWATCH_API_BODY_LIMIT_BYTES` | 1048576 | largest accepted request body (CSV imports included). |
//! | `OPENWATCH_RATE_LIMIT_PER_MINUTE` | 600 | requests per minute per principal (or client address when anonymous). |
//! | `OPENWATCH_AUTH_RATE_LIMIT_PER_MINUTE` | 20 | login, refresh and MFA attempts per minute per client address. |
//! | `OPENWATCH_REDIS_KEY_PREFIX` | `openwatch:` | prefix of every Redis key the gateway writes. |
//! | `OPENWATCH_HTTP_WORKERS` | CPUs | HTTP worker threads. |
//! | `OPENWATCH_RULES_DIR` | `rules` | the rule corpus served by the rules catalogue (`/api/rules`). |

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use openwatch_service_kit::config::{env_or_from, env_parse_from};
use secrecy::{ExposeSecret, SecretString};

/// Lockout: failed logins in a row before an account locks.
pub const LOCKOUT_THRESHOLD: u32 = 5;
/// Lockout: how long a locked account stays locked.
pub const LOCKOUT_DURATION: Duration = Duration::from_secs(30 * 60);

/// An address range (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr =
            addr.trim().parse().with_context(|| format!("`{text}` is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .with_context(|| format!("`{text}`: bad prefix length"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Settings of the HTTP API. Tests build it with [`GatewayConfig::for_tests`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `OPENWATCH_SECRET_KEY`.
    pub secret_key: SecretString,
    /// `OPENWATCH_SECRET_KEY_PREVIOUS`.
    pub previous_secret_keys: Vec<SecretString>,
    /// `OPENWATCH_MASTER_KEY`.
    pub master_key: SecretString,
    /// `OPENWATCH_MASTER_KEY_PREVIOUS`.
    pub previous_master_keys: Vec<SecretString>,
    /// `OPENWATCH_ACCESS_TOKEN_TTL_SECS`.
    pub access_token_ttl: Duration,
    /// `OPENWATCH_REFRESH_TOKEN_TTL_SECS`.
    pub refresh_token_ttl: Duration,
    /// `OPENWATCH_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// `OPENWATCH_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpRange>,
    /// `OPENWATCH_API_BODY_LIMIT_BYTES`.
    pub body_limit_bytes: usize,
    /// `OPENWATCH_RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: u32,
    /// `OPENWATCH_AUTH_RATE_LIMIT_PER_MINUTE`.
    pub auth_rate_limit_per_minute: u32,
    /// `OPENWATCH_REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
    /// `OPENWATCH_HTTP_WORKERS`.
    pub http_workers: usize,
    /// `OPENWATCH_RULES_DIR`.
    pub rules_dir: std::path::PathBuf,
}

fn list(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    lookup(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl GatewayConfig {
    /// Reads the settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// [`GatewayConfig::from_env`] reading from `lookup`; errors name the variable.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let secret_key = lookup("OPENWATCH_SECRET_KEY")
            .filter(|v| !v.trim().is_empty())
            .context("OPENWATCH_SECRET_KEY is required (JWT signing material, at least 32 characters)")?;
        if secret_key.len() < 32 {
            bail!("OPENWATCH_SECRET_KEY is too short: at least 32 characters are required");
        }
        let master_key = lookup("OPENWATCH_MASTER_KEY")
            .filter(|v| !v.trim().is_empty())
            .context("OPENWATCH_MASTER_KEY is required (32-byte credential encryption key, base64 or hex)")?;
        let secs =
            |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> anyhow::Result<Duration> {
                let value: u64 = env_parse_from(lookup, name, default)?;
                if !range.contains(&value) {
                    bail!("{name}={value} is invalid: must be between {} and {}", range.start(), range.end());
                }
                Ok(Duration::from_secs(value))
            };
        let trusted_proxies = list(lookup, "OPENWATCH_TRUSTED_PROXIES")
            .iter()
            .map(|s| IpRange::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("OPENWATCH_TRUSTED_PROXIES")?;
        let cors_origins = list(lookup, "OPENWATCH_CORS_ORIGINS");
        for origin in &cors_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) || origin.ends_with('/') {
                bail!("OPENWATCH_CORS_ORIGINS: `{origin}` is not an origin like https://console.example.com");
            }
        }
        let positive = |name: &str, default: u32| -> anyhow::Result<u32> {
            let value: u32 = env_parse_from(lookup, name, default)?;
            if value == 0 {
                bail!("{name} must be at least 1");
            }
            Ok(value)
        };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Ok(Self {
            secret_key: SecretString::from(secret_key),
            previous_secret_keys: list(lookup, "OPENWATCH_SECRET_KEY_PREVIOUS")
                .into_iter()
                .map(SecretString::from)
                .collect(),
            master_key: SecretString::from(master_key),
            previous_master_keys: list(lookup, "OPENWATCH_MASTER_KEY_PREVIOUS")
                .into_iter()
                .map(SecretString::from)
                .collect(),
            access_token_ttl: secs("OPENWATCH_ACCESS_TOKEN_TTL_SECS", 900, 60..=3600)?,
            refresh_token_ttl: secs("OPENWATCH_REFRESH_TOKEN_TTL_SECS", 7 * 86_400, 300..=30 * 86_400)?,
            cors_origins,
            trusted_proxies,
            body_limit_bytes: env_parse_from(lookup, "OPENWATCH_API_BODY_LIMIT_BYTES", 1_048_576usize)?
                .max(1024),
            rate_limit_per_minute: positive("OPENWATCH_RATE_LIMIT_PER_MINUTE", 600)?,
            auth_rate_limit_per_minute: positive("OPENWATCH_AUTH_RATE_LIMIT_PER_MINUTE", 20)?,
            redis_key_prefix: env_or_from(lookup, "OPENWATCH_REDIS_KEY_PREFIX", "openwatch:"),
            http_workers: env_parse_from(lookup, "OPENWATCH_HTTP_WORKERS", cpus)?.max(1),
            rules_dir: env_or_from(lookup, "OPENWATCH_RULES_DIR", "rules").into(),
        })
    }

    /// A configuration for tests: fixed keys, the given Redis key prefix, generous limits.
    pub fn for_tests(redis_key_prefix: &str) -> Self {
        Self {
            secret_key: SecretString::from("test-secret-key-test-secret-key-0123456789"),
            previous_secret_keys: Vec::new(),
            master_key: SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            previous_master_keys: Vec::new(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(86_400),
            cors_origins: vec!["https://console.example.test".to_owned()],
            trusted_proxies: vec![IpRange { network: IpAddr::from([127, 0, 0, 1]), prefix: 32 }],
            body_limit_bytes: 1_048_576,
            rate_limit_per_minute: 100_000,
            auth_rate_limit_per_minute: 100_000,
            redis_key_prefix: redis_key_prefix.to_owned(),
            http_workers: 1,
            rules_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules"),
        }
    }

    /// Whether the secret key is at least the required length (used by `/health`-like checks).
    pub fn secret_key_len(&self) -> usize {
        self.secret_key.expose_secret().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges_match_their_members_only() {
        let range = IpRange::parse("10.1.0.0/16").unwrap_or_else(|e| panic!("{e}"));
        assert!(range.contains("10.1.200.3".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!range.contains("10.2.0.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        let single = IpRange::parse("::1").unwrap_or_else(|e| panic!("{e}"));
        assert!(single.contains("::1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("nginx").is_err());
    }

    #[test]
    fn missing_or_short_keys_are_refused_with_the_variable_named() {
        let err = GatewayConfig::from_lookup(&|_| None).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("OPENWATCH_SECRET_KEY"), "{err}");
        let short = |n: &str| (n == "OPENWATCH_SECRET_KEY").then(|| "short".to_owned());
        let err = GatewayConfig::from_lookup(&short).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
    }
}
