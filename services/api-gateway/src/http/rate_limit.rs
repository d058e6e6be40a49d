//! Rate limits shared by every gateway replica: fixed one-minute windows counted in Redis.
//!
//! Key: `<prefix>rl:<bucket>:<who>:<minute>`; `INCR` and `EXPIRE` in one transaction, so
//! concurrent replicas count the same window. A fixed window admits at most twice the
//! limit across a window boundary; for abuse protection that is the accepted trade for
//! one round trip per request. Over the limit: 429 with `Retry-After` = seconds to the
//! next window.

use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_redis::Pool;

use crate::error::ApiError;

/// Window length.
pub const WINDOW_SECS: u64 = 60;

/// Counts one request of `who` in `bucket`; `Err(429)` when the window's count exceeds `limit`.
pub async fn hit(redis: &Pool, prefix: &str, bucket: &str, who: &str, limit: u32) -> Result<(), ApiError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let window = now / WINDOW_SECS;
    let key = format!("{prefix}rl:{bucket}:{who}:{window}");
    let mut conn = redis.get().await?;
    let (count,): (u64,) = redis::pipe()
        .atomic()
        .incr(&key, 1u64)
        .expire(&key, (WINDOW_SECS + 1) as i64)
        .ignore()
        .query_async(&mut conn)
        .await?;
    if count > u64::from(limit) {
        metrics::counter!(openwatch_telemetry::metrics::RATE_LIMITED_TOTAL, "bucket" => bucket.to_owned())
            .increment(1);
        return Err(ApiError::too_many_requests(WINDOW_SECS - now % WINDOW_SECS));
    }
    Ok(())
}
