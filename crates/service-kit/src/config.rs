//! Environment parsing shared by the services' `Config::from_env()`, with errors that name
//! the variable and the bad value so a misconfigured deployment fails fast and clearly.
//!
//! An empty (or all-blank) variable counts as unset: `FOO=` in a compose file means "use
//! the default", not "use the empty string".
//!
//! Shared settings:
//! * `OPENWATCH_HTTP_ADDR`: the address of the ops (or API) HTTP server ([`HttpConfig`]).
//! * `OPENWATCH_QUEUES`: comma separated queues a worker consumes; only the service's own
//!   queues are accepted ([`WorkerConfig`]).
//! * `OPENWATCH_CONCURRENCY`: messages handled in parallel, 1..=1024; default CPUs × a
//!   per-service factor ([`WorkerConfig`]).
//!
//! Every reader has a `*_from` twin taking a lookup function, so tests need no process env.

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;

use openwatch_common::queues::QueueName;

/// Variable of [`HttpConfig`].
pub const HTTP_ADDR_VAR: &str = "OPENWATCH_HTTP_ADDR";
/// Queue list variable of [`WorkerConfig`].
pub const QUEUES_VAR: &str = "OPENWATCH_QUEUES";
/// Concurrency variable of [`WorkerConfig`].
pub const CONCURRENCY_VAR: &str = "OPENWATCH_CONCURRENCY";
/// The largest accepted `OPENWATCH_CONCURRENCY`.
pub const MAX_CONCURRENCY: usize = 1024;

/// A configuration error; the service should print it and exit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set: set it.
    #[error("environment variable {name} is required but not set")]
    Missing {
        /// The variable.
        name: String,
    },
    /// A variable has a value that cannot be used: fix it.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: String,
        /// Its value as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(name: &str, value: &str, reason: impl Display) -> Self {
        Self::Invalid { name: name.to_owned(), value: value.to_owned(), reason: reason.to_string() }
    }
}

/// Reads `name` from the process environment; `None` when unset or blank.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn lookup_set(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The value of `name`, or `default` when unset or blank.
pub fn env_or(name: &str, default: &str) -> String {
    env_or_from(&process_env, name, default)
}

/// [`env_or`] reading from `lookup`.
pub fn env_or_from(lookup: &dyn Fn(&str) -> Option<String>, name: &str, default: &str) -> String {
    lookup_set(lookup, name).unwrap_or_else(|| default.to_owned())
}

/// `name` parsed as `T`, or `default` when unset or blank; a value that does not parse is
/// an error naming the variable, the value and the parser's message.
pub fn env_parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    env_parse_from(&process_env, name, default)
}

/// [`env_parse`] reading from `lookup`.
pub fn env_parse_from<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match lookup_set(lookup, name) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|err| ConfigError::invalid(name, &value, err)),
    }
}

/// The value of `name`, which must be set and not blank.
pub fn required(name: &str) -> Result<String, ConfigError> {
    required_from(&process_env, name)
}

/// [`required`] reading from `lookup`.
pub fn required_from(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String, ConfigError> {
    lookup_set(lookup, name).ok_or_else(|| ConfigError::Missing { name: name.to_owned() })
}

/// Where a service's HTTP server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// `OPENWATCH_HTTP_ADDR`, e.g. `0.0.0.0:9102`; port 0 picks a free port (tests).
    pub addr: SocketAddr,
}

impl HttpConfig {
    /// Reads `OPENWATCH_HTTP_ADDR`, defaulting to the service's `default_addr`.
    pub fn from_env(default_addr: SocketAddr) -> Result<Self, ConfigError> {
        Self::from_lookup(&process_env, default_addr)
    }

    /// [`HttpConfig::from_env`] reading from `lookup`.
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        default_addr: SocketAddr,
    ) -> Result<Self, ConfigError> {
        Ok(Self { addr: env_parse_from(lookup, HTTP_ADDR_VAR, default_addr)? })
    }
}

/// What a queue worker consumes and how many messages it handles at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `OPENWATCH_QUEUES`: a non-empty subset of the service's own queues (so one binary can
    /// run as dedicated pools, e.g. scan-worker on `scans` only).
    pub queues: Vec<QueueName>,
    /// `OPENWATCH_CONCURRENCY`: messages in flight at once, 1..=1024.
    pub concurrency: usize,
}

impl WorkerConfig {
    /// Reads `OPENWATCH_QUEUES` (default: `own_queues`; queues not in `own_queues` are
    /// rejected) and `OPENWATCH_CONCURRENCY` (default: available CPUs × `per_cpu`, at least 1
    /// and at most [`MAX_CONCURRENCY`]).
    pub fn from_env(own_queues: &[QueueName], per_cpu: usize) -> Result<Self, ConfigError> {
        Self::from_lookup(&process_env, own_queues, per_cpu)
    }

    /// [`WorkerConfig::from_env`] reading from `lookup`.
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        own_queues: &[QueueName],
        per_cpu: usize,
    ) -> Result<Self, ConfigError> {
        let queues = match lookup_set(lookup, QUEUES_VAR) {
            None => own_queues.to_vec(),
            Some(list) => {
                let queues = QueueName::parse_list(&list)
                    .map_err(|err| ConfigError::invalid(QUEUES_VAR, &list, err))?;
                let foreign: Vec<&str> =
                    queues.iter().filter(|q| !own_queues.contains(q)).map(|q| q.as_str()).collect();
                if !foreign.is_empty() {
                    let own: Vec<&str> = own_queues.iter().map(|q| q.as_str()).collect();
                    return Err(ConfigError::invalid(
                        QUEUES_VAR,
                        &list,
                        format!(
                            "{} not consumed by this service (it consumes: {})",
                            foreign.join(", "),
                            own.join(", ")
                        ),
                    ));
                }
                queues
            }
        };
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let default = cpus.saturating_mul(per_cpu).clamp(1, MAX_CONCURRENCY);
        let concurrency = env_parse_from(lookup, CONCURRENCY_VAR, default)?;
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(ConfigError::invalid(
                CONCURRENCY_VAR,
                &concurrency.to_string(),
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        Ok(Self { queues, concurrency })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    const OWN: &[QueueName] = &[QueueName::Scans, QueueName::ComplianceScanning];

    #[test]
    fn helpers_default_parse_and_require() {
        let lookup = env(&[("A", "7"), ("B", "  "), ("C", "x")]);
        assert_eq!(env_or_from(&lookup, "A", "1"), "7");
        assert_eq!(env_or_from(&lookup, "B", "1"), "1", "blank is unset");
        assert_eq!(env_parse_from(&lookup, "A", 1u16), Ok(7));
        assert_eq!(env_parse_from(&lookup, "MISSING", 1u16), Ok(1));
        let err = env_parse_from(&lookup, "C", 1u16).unwrap_err();
        assert_eq!(err.to_string(), "environment variable C=\"x\" is invalid: invalid digit found in string");
        assert_eq!(required_from(&lookup, "A"), Ok("7".to_owned()));
        assert_eq!(
            required_from(&lookup, "B").unwrap_err().to_string(),
            "environment variable B is required but not set"
        );
    }

    #[test]
    fn http_addr_has_a_default_and_rejects_garbage() {
        let default: SocketAddr = "0.0.0.0:9102".parse().unwrap();
        assert_eq!(HttpConfig::from_lookup(&env(&[]), default).unwrap().addr, default);
        let set = env(&[(HTTP_ADDR_VAR, "127.0.0.1:0")]);
        assert_eq!(HttpConfig::from_lookup(&set, default).unwrap().addr, "127.0.0.1:0".parse().unwrap());
        let err = HttpConfig::from_lookup(&env(&[(HTTP_ADDR_VAR, "localhost")]), default).unwrap_err();
        assert!(err.to_string().contains("OPENWATCH_HTTP_ADDR=\"localhost\""), "{err}");
    }

    #[test]
    fn worker_defaults_to_own_queues_and_cpus_times_factor() {
        let config = WorkerConfig::from_lookup(&env(&[]), OWN, 4).unwrap();
        assert_eq!(config.queues, OWN);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.concurrency, (cpus * 4).min(MAX_CONCURRENCY));
        assert_eq!(WorkerConfig::from_lookup(&env(&[]), OWN, 0).unwrap().concurrency, 1);
    }

    #[test]
    fn worker_accepts_a_subset_of_own_queues() {
        let config =
            WorkerConfig::from_lookup(&env(&[(QUEUES_VAR, "scans"), (CONCURRENCY_VAR, "16")]), OWN, 4)
                .unwrap();
        assert_eq!(config.queues, [QueueName::Scans]);
        assert_eq!(config.concurrency, 16);
    }

    #[test]
    fn worker_rejects_foreign_unknown_and_out_of_range() {
        let err = WorkerConfig::from_lookup(&env(&[(QUEUES_VAR, "scans,results")]), OWN, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable OPENWATCH_QUEUES=\"scans,results\" is invalid: results not consumed by this \
             service (it consumes: scans, compliance_scanning)"
        );
        let err = WorkerConfig::from_lookup(&env(&[(QUEUES_VAR, "scan")]), OWN, 4).unwrap_err();
        assert!(err.to_string().contains("OPENWATCH_QUEUES=\"scan\""), "{err}");
        assert!(err.to_string().contains("unknown queue `scan`"), "{err}");
        for bad in ["0", "1025", "-1", "many"] {
            let err = WorkerConfig::from_lookup(&env(&[(CONCURRENCY_VAR, bad)]), OWN, 4).unwrap_err();
            assert!(err.to_string().contains(&format!("OPENWATCH_CONCURRENCY=\"{bad}\"")), "{err}");
        }
    }
}
