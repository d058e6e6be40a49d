//! How often the filesystem walk runs per host (`OPENWATCH_SCAN_WALK_INTERVAL_SECS`).
//!
//! The walk is the slowest part of a scan (it `stat`s every local file), while what it finds
//! (world-writable, unowned, SUID files) changes slowly. With an interval, a host's walk
//! runs at most once per interval: a Redis key `<prefix>host:<id>:walked`, set after a
//! completed scan that walked and expiring with the interval, says "walked recently". Scans
//! in between leave the walk rules out of their results, and result-processor carries the
//! host's last walk results (it keeps every rule a scan did not evaluate).
//!
//! Redis unreachable or slow: the walk runs (more checking, never a silent gap).

use std::time::Duration;

use openwatch_common::ids::HostId;

use crate::progress::query_within;

/// Longest wait for Redis before deciding without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The per-host walk schedule.
#[derive(Clone)]
pub struct WalkSchedule {
    redis: Option<deadpool_redis::Pool>,
    prefix: String,
    /// `OPENWATCH_SCAN_WALK`.
    enabled: bool,
    /// Zero: every scan walks.
    interval: Duration,
}

/// The key saying `host` was walked recently.
pub fn key(prefix: &str, host: HostId) -> String {
    format!("{prefix}host:{host}:walked")
}

impl WalkSchedule {
    /// The schedule for `enabled` (the walk at all) and `interval`.
    pub fn new(redis: Option<deadpool_redis::Pool>, prefix: &str, enabled: bool, interval: Duration) -> Self {
        Self { redis, prefix: prefix.to_owned(), enabled, interval }
    }

    /// Whether the walk runs at all and less often than every scan.
    fn has_interval(&self) -> bool {
        self.enabled && !self.interval.is_zero()
    }

    /// Whether this scan of `host` leaves the walk out because the host was walked within
    /// the interval (not when the walk is switched off altogether: then the walk rules are
    /// reported `not_applicable`).
    pub async fn skip(&self, host: HostId) -> bool {
        if !self.has_interval() {
            return false;
        }
        let Some(pool) = &self.redis else { return false };
        let key = key(&self.prefix, host);
        let mut command = redis::cmd("EXISTS");
        command.arg(&key);
        query_within::<bool>(pool, &command, REDIS_TIMEOUT).await.unwrap_or_else(|error| {
            tracing::warn!(redis.key = key.as_str(), %error, "cannot read the walk schedule: walking");
            false
        })
    }

    /// Records that a completed scan of `host` walked (nothing to record without an interval).
    pub async fn walked(&self, host: HostId) {
        if !self.has_interval() {
            return;
        }
        let Some(pool) = &self.redis else { return };
        let key = key(&self.prefix, host);
        let mut command = redis::cmd("SET");
        command.arg(&key).arg(chrono::Utc::now().to_rfc3339()).arg("EX").arg(self.interval.as_secs());
        if let Err(error) = query_within::<()>(pool, &command, REDIS_TIMEOUT).await {
            tracing::warn!(redis.key = key.as_str(), %error, "cannot record the walk (the next scan walks again)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_host() {
        let host = HostId::new();
        assert_eq!(key("openwatch:", host), format!("openwatch:host:{host}:walked"));
    }
}
