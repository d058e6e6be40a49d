//! Exponential backoff with full jitter, for reconnect and retry loops (PostgreSQL,
//! RabbitMQ, Redis restarting under a running service; the outbox relay after errors).
//!
//! Full jitter (a uniformly random delay between zero and the exponential ceiling) spreads
//! the retries of many service instances that lost a dependency at the same moment, so
//! they do not hammer it in lockstep when it comes back. This is the policy only (pure
//! computation); callers sleep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

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
        Self::RECONNECT
    }
}

impl Backoff {
    /// Reconnecting to a dependency: 200 ms, doubling, capped at 30 s, full jitter.
    pub const RECONNECT: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: true,
    };

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

#[cfg(test)]
mod tests {
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
}
