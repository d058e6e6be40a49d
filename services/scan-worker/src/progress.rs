//! Live scan progress in Redis, for the api-gateway to show while a scan runs.
//!
//! Key `<OPENWATCH_REDIS_KEY_PREFIX>scan:<scan_id>:progress`, a JSON string with a one-hour
//! TTL:
//! `{"status":"running","phase":"connecting","rules_done":0,"rules_total":289,"updated_at":"2026-11-28T12:00:00Z"}`.
//! `phase` is `connecting` (credential, host key, SSH), `collecting` (the one collection
//! script runs), `evaluating` (rules are evaluated locally) or `publishing` (the result goes
//! to `results`); `rules_done` reaches `rules_total` when evaluation is over. Once the
//! result is published, `status` becomes the outcome (`completed` or `failed`) — the
//! scan row follows when `result-processor` has recorded it. A scan cancelled while it ran
//! has its key deleted.
//!
//! Progress is best effort: Redis being slow or down never fails or delays a scan by more
//! than [`WRITE_TIMEOUT`] per write; the error is logged and the scan goes on.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use openwatch_common::ids::ScanId;
use serde::Serialize;

/// Lifetime of a progress key.
pub const TTL_SECS: u64 = 3600;
/// Longest a progress write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a scan is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the credential and host keys, opening the SSH connection.
    Connecting,
    /// The collection script runs on the host.
    Collecting,
    /// Rules are evaluated against the collected facts.
    Evaluating,
    /// The result is being published.
    Publishing,
}

impl Phase {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Collecting => "collecting",
            Phase::Evaluating => "evaluating",
            Phase::Publishing => "publishing",
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    status: &'a str,
    phase: &'a str,
    rules_done: usize,
    rules_total: usize,
    updated_at: String,
}

/// The progress key of one scan.
#[derive(Clone)]
pub struct Progress {
    redis: Option<deadpool_redis::Pool>,
    key: String,
    rules_total: usize,
}

/// The key of `scan`'s progress under `prefix`.
pub fn key(prefix: &str, scan: ScanId) -> String {
    format!("{prefix}scan:{scan}:progress")
}

impl Progress {
    /// Progress of `scan`, which evaluates `rules_total` rules; writes nothing without Redis.
    pub fn new(redis: Option<deadpool_redis::Pool>, prefix: &str, scan: ScanId, rules_total: usize) -> Self {
        Self { redis, key: key(prefix, scan), rules_total }
    }

    /// Records `status` (`running`, or the outcome) in `phase` with `rules_done` evaluated.
    pub async fn set(&self, status: &str, phase: Phase, rules_done: usize) {
        let document = Document {
            status,
            phase: phase.as_str(),
            rules_done,
            rules_total: self.rules_total,
            updated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let Ok(json) = serde_json::to_string(&document) else { return };
        let mut command = redis::cmd("SET");
        command.arg(&self.key).arg(json).arg("EX").arg(TTL_SECS);
        self.run(command, "write").await;
    }

    /// Deletes the key (a cancelled scan has no progress to show).
    pub async fn clear(&self) {
        let mut command = redis::cmd("DEL");
        command.arg(&self.key);
        self.run(command, "delete").await;
    }

    async fn run(&self, command: redis::Cmd, action: &'static str) {
        let Some(pool) = &self.redis else { return };
        if let Err(error) = query_within::<()>(pool, &command, WRITE_TIMEOUT).await {
            tracing::warn!(redis.key = self.key.as_str(), %error, "cannot {action} scan progress");
        }
    }
}

/// Runs `command` on a pooled connection, giving up after `timeout`; the error is text for
/// a log line (Redis is best effort for this service: never a reason to fail a scan).
pub async fn query_within<T: redis::FromRedisValue>(
    pool: &deadpool_redis::Pool,
    command: &redis::Cmd,
    timeout: Duration,
) -> Result<T, String> {
    let attempt = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        command.query_async::<T>(&mut conn).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {} ms", timeout.as_millis())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_scan() {
        let scan = ScanId::new();
        assert_eq!(key("openwatch:", scan), format!("openwatch:scan:{scan}:progress"));
    }
}
