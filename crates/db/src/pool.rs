//! The connection pool: configuration from the environment, construction and a health
//! probe.
//!
//! Connections are created lazily (the first `pool.get()` connects), so a service starts
//! even when PostgreSQL is briefly unavailable and reports it through [`ping`]. Every wait
//! is bounded by [`PoolConfig::connect_timeout`]: acquiring a slot, connecting and
//! recycling, so a hung server yields [`DbError::Unavailable`] instead of blocking forever.
//! Long-running statements are bounded server-side if the URL sets one, e.g.
//! `?options=-c%20statement_timeout%3D30s`.

use std::time::Duration;

use deadpool::Runtime;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};

use crate::DbError;

/// A pool of async PostgreSQL connections (deadpool). Cheap to clone (shared).
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// A connection checked out of a [`Pool`]; derefs to [`AsyncPgConnection`] and returns to
/// the pool on drop.
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// How to reach PostgreSQL and how many connections to keep.
///
/// Environment ([`PoolConfig::from_env`]):
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `OPENWATCH_DATABASE_URL` | required | `postgres://user:password@host:port/database` |
/// | `OPENWATCH_DATABASE_POOL_SIZE` | `10` | maximum open connections of this process |
/// | `OPENWATCH_DATABASE_CONNECT_TIMEOUT_SECS` | `5` | bound on connecting and on waiting for a free connection |
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connection URL; secret because it may carry a password.
    pub url: SecretString,
    /// Maximum number of connections (≥ 1).
    pub max_size: usize,
    /// Bound on connecting, on waiting for a free connection and on recycling one.
    pub connect_timeout: Duration,
}

impl PoolConfig {
    /// Default of [`PoolConfig::max_size`].
    pub const DEFAULT_MAX_SIZE: usize = 10;
    /// Default of [`PoolConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A configuration with the defaults, for tests and tools that already have a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_size: Self::DEFAULT_MAX_SIZE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Reads the configuration from the environment (variables in the type's docs).
    ///
    /// Fails with [`DbError::Config`] naming the variable when one is missing or invalid.
    pub fn from_env() -> Result<Self, DbError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`PoolConfig::from_env`], reading variables through `lookup` (testable).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, DbError> {
        let url = lookup("OPENWATCH_DATABASE_URL").filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            DbError::Config("OPENWATCH_DATABASE_URL is not set (postgres://user@host:5432/db)".into())
        })?;
        database_name(&url)?;
        // A blank value means "use the default", as for every other variable.
        let lookup = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let max_size = match lookup("OPENWATCH_DATABASE_POOL_SIZE") {
            None => Self::DEFAULT_MAX_SIZE,
            Some(raw) => raw.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                DbError::Config(format!(
                    "OPENWATCH_DATABASE_POOL_SIZE must be a positive integer, got `{raw}`"
                ))
            })?,
        };
        let connect_timeout = match lookup("OPENWATCH_DATABASE_CONNECT_TIMEOUT_SECS") {
            None => Self::DEFAULT_CONNECT_TIMEOUT,
            Some(raw) => {
                raw.trim().parse::<u64>().ok().filter(|n| *n > 0).map(Duration::from_secs).ok_or_else(
                    || {
                        DbError::Config(format!(
                            "OPENWATCH_DATABASE_CONNECT_TIMEOUT_SECS must be a positive integer, got `{raw}`"
                        ))
                    },
                )?
            }
        };
        Ok(Self { url: SecretString::from(url), max_size, connect_timeout })
    }
}

/// Builds the pool. No connection is opened yet (see the module docs).
pub fn build_pool(config: &PoolConfig) -> Result<Pool, DbError> {
    if config.max_size == 0 {
        return Err(DbError::Config("database pool size must be at least 1".into()));
    }
    let url = config.url.expose_secret();
    database_name(url)?;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    let timeout = Some(config.connect_timeout);
    Pool::builder(manager)
        .max_size(config.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .map_err(|e| DbError::Config(format!("cannot build the database pool: {e}")))
}

/// Checks that a connection can be obtained and answers `SELECT 1` (readiness probes).
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// The database name in a `postgres://…/name?…` URL.
pub fn database_name(url: &str) -> Result<String, DbError> {
    let (_, name, _) = split_url(url)?;
    Ok(name.to_owned())
}

/// The same URL pointing at another database on the same server (credentials and query
/// parameters kept). Used to reach the `postgres` maintenance database, or test databases.
pub fn with_database(url: &str, database: &str) -> Result<String, DbError> {
    let (server, _, query) = split_url(url)?;
    Ok(format!("{server}/{database}{query}"))
}

/// Splits `scheme://authority/name?query` into (`scheme://authority`, `name`, `?query`).
fn split_url(url: &str) -> Result<(&str, &str, &str), DbError> {
    let invalid = |why: &str| {
        DbError::Config(format!("invalid database URL ({why}); expected postgres://user@host:port/database"))
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| invalid("scheme must be postgres:// or postgresql://"))?;
    let scheme_len = url.len() - rest.len();
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let slash = before_query.rfind('/').ok_or_else(|| invalid("no database name"))?;
    let name = &before_query[slash + 1..];
    if name.is_empty() || before_query[..slash].contains('/') {
        return Err(invalid("no database name"));
    }
    Ok((&url[..scheme_len + slash], name, query))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn from_lookup_applies_defaults_and_rejects_bad_values() {
        let config =
            PoolConfig::from_lookup(lookup(&[("OPENWATCH_DATABASE_URL", "postgres://u@h/db")])).unwrap();
        assert_eq!(config.max_size, 10);
        assert_eq!(config.connect_timeout, Duration::from_secs(5));

        let err = PoolConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("OPENWATCH_DATABASE_URL is not set"), "{err}");

        let err = PoolConfig::from_lookup(lookup(&[
            ("OPENWATCH_DATABASE_URL", "postgres://u@h/db"),
            ("OPENWATCH_DATABASE_POOL_SIZE", "zero"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("OPENWATCH_DATABASE_POOL_SIZE"), "{err}");

        let err = PoolConfig::from_lookup(lookup(&[("OPENWATCH_DATABASE_URL", "mysql://h/db")])).unwrap_err();
        assert!(err.to_string().contains("scheme"), "{err}");
    }

    #[test]
    fn urls_are_split_and_rewritten() {
        let url = "postgres://u:p@127.0.0.1:5432/openwatch?sslmode=disable";
        assert_eq!(database_name(url).unwrap(), "openwatch");
        assert_eq!(
            with_database(url, "postgres").unwrap(),
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert!(database_name("postgres://host").is_err());
        assert!(database_name("postgres://host/").is_err());
    }
}
