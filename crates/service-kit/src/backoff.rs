//! Retrying with exponential backoff and full jitter, for startup connections and
//! reconnect loops (PostgreSQL, RabbitMQ, Redis restarting under a running service).
//!
//! Full jitter (a uniformly random delay between zero and the exponential ceiling) spreads
//! the retries of many service instances that lost a dependency at the same moment, so they
//! do not hammer it in lockstep when it comes back.

use std::collections::hash_map::RandomState;
use std::fmt::Display;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// The largest delay ever used.
    pub max: Duration,
    /// Growth of the ceiling per attempt (values below 1 are treated as 1).
    pub multiplier: f64,
    /// Full jitter: each delay is uniformly random in `[0, ceiling]` instead of the ceiling.
    pub jitter: bool,
}

impl Default for Backoff {
    /// 200 ms, doubling, capped at 30 s, full jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The ceiling after `failures` failed attempts (1 → `initial`), capped at `max`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let max = self.max.as_secs_f64();
        let secs = (self.initial.as_secs_f64() * factor).min(max);
        if secs.is_finite() { Duration::from_secs_f64(secs.max(0.0)) } else { self.max }
    }

    /// The delay to sleep after `failures` failed attempts: the ceiling, or a random delay
    /// up to it when `jitter` is set.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        if self.jitter { ceiling.mul_f64(random_unit()) } else { ceiling }
    }
}

/// A uniformly distributed number in `[0, 1)`; std's randomly seeded hasher is enough for
/// jitter (no cryptographic need, no extra dependency).
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `op` until it succeeds, sleeping per `backoff` between attempts and logging each
/// failure at `warn` (what, attempt number, error, next delay). Returns `None` as soon as
/// `shutdown` is cancelled, even in the middle of an attempt or a sleep.
pub async fn retry_until_ok<T, E, F, Fut>(
    what: &str,
    backoff: &Backoff,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut attempt: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        attempt = attempt.saturating_add(1);
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            result = op() => result,
        };
        match result {
            Ok(value) => {
                if attempt > 1 {
                    tracing::info!(what, attempt, "succeeded after retrying");
                }
                return Some(value);
            }
            Err(error) => {
                let delay = backoff.delay(attempt);
                tracing::warn!(
                    what,
                    attempt,
                    error = %error,
                    next_delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "attempt failed; retrying"
                );
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let backoff = Backoff { jitter: false, ..Backoff::default() };
        let delays: Vec<_> = (1..=10).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jittered_delays_stay_under_the_ceiling_and_vary() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (0..50).map(|_| backoff.delay(5)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(3200)));
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "jitter varies");
    }

    #[tokio::test]
    async fn retries_until_success() {
        let calls = Arc::new(AtomicU32::new(0));
        let backoff = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            ..Backoff::default()
        };
        let counter = calls.clone();
        let value = retry_until_ok("thing", &backoff, &CancellationToken::new(), || {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 4 { Err(format!("failure {n}")) } else { Ok(n) }
            }
        })
        .await;
        assert_eq!(value, Some(4));
    }

    #[tokio::test]
    async fn stops_on_cancel_during_the_sleep() {
        let shutdown = CancellationToken::new();
        let backoff = Backoff { initial: Duration::from_secs(60), jitter: false, ..Backoff::default() };
        let canceller = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let started = Instant::now();
        let result: Option<()> =
            retry_until_ok("broker", &backoff, &shutdown, || async { Err::<(), _>("refused") }).await;
        assert_eq!(result, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn stops_on_cancel_during_a_hanging_attempt() {
        let shutdown = CancellationToken::new();
        let canceller = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let result: Option<()> = retry_until_ok("db", &Backoff::default(), &shutdown, || async {
            std::future::pending::<Result<(), String>>().await
        })
        .await;
        assert_eq!(result, None);
    }

    #[tokio::test]
    async fn already_cancelled_means_no_attempt() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let calls = AtomicU32::new(0);
        let result = retry_until_ok("x", &Backoff::default(), &shutdown, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(()) }
        })
        .await;
        assert_eq!(result, None);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
