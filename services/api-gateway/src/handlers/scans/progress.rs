//! The live progress of running scans, read from Redis.
//!
//! The scan-worker writes `<OPENWATCH_REDIS_KEY_PREFIX>scan:<scan_id>:progress`, a JSON
//! string `{"status":"running","phase":"evaluating","rules_done":120,"rules_total":289,
//! "updated_at":"…"}` with a one-hour TTL. Progress is informative only: when Redis is
//! slow, down, or holds something unreadable, the gateway shows the stored progress of the
//! scan row instead of failing the request (the failure is logged).

use std::collections::HashMap;
use std::time::Duration;

use openwatch_common::ids::ScanId;
use serde::Deserialize;

/// Longest the gateway waits for Redis before showing the stored progress.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The part of the worker's progress document the API shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LiveProgress {
    /// `connecting`, `collecting`, `evaluating` or `publishing`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Rules evaluated so far.
    pub rules_done: u32,
    /// Rules to evaluate.
    pub rules_total: u32,
}

/// The Redis key of `scan`'s progress under `prefix` (the scan-worker's spelling).
pub fn key(prefix: &str, scan: ScanId) -> String {
    format!("{prefix}scan:{scan}:progress")
}

/// The live progress of each of `scans` that has a readable one, in one `MGET`.
pub async fn read_many(
    redis: &deadpool_redis::Pool,
    prefix: &str,
    scans: &[ScanId],
) -> HashMap<ScanId, LiveProgress> {
    if scans.is_empty() {
        return HashMap::new();
    }
    let mut command = redis::cmd("MGET");
    for scan in scans {
        command.arg(key(prefix, *scan));
    }
    let attempt = async {
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        command.query_async::<Vec<Option<String>>>(&mut conn).await.map_err(|e| e.to_string())
    };
    let values = match tokio::time::timeout(READ_TIMEOUT, attempt).await {
        Ok(Ok(values)) => values,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot read scan progress; showing the stored progress");
            return HashMap::new();
        }
        Err(_) => {
            tracing::warn!(timeout_ms = READ_TIMEOUT.as_millis(), "scan progress read timed out");
            return HashMap::new();
        }
    };
    scans
        .iter()
        .zip(values)
        .filter_map(|(scan, value)| {
            let value = value?;
            match serde_json::from_str::<LiveProgress>(&value) {
                Ok(progress) => Some((*scan, progress)),
                Err(error) => {
                    tracing::warn!(scan.id = %scan, %error, "unreadable scan progress ignored");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_and_document_match_the_scan_worker() {
        let scan = ScanId(uuid::Uuid::nil());
        assert_eq!(key("ow:", scan), "ow:scan:00000000-0000-0000-0000-000000000000:progress");
        let doc = r#"{"status":"running","phase":"evaluating","rules_done":3,"rules_total":9,"updated_at":"2026-11-28T12:00:00Z"}"#;
        let progress: LiveProgress = serde_json::from_str(doc).unwrap();
        assert_eq!(
            progress,
            LiveProgress { phase: Some("evaluating".into()), rules_done: 3, rules_total: 9 }
        );
        assert!(serde_json::from_str::<LiveProgress>(r#"{"rules_done":-1,"rules_total":2}"#).is_err());
    }
}
