//! Brute-force protection for login: failed attempts are counted per email and per
//! client address in fixed windows; past the limit the answer is 429 with Retry-After.
//! Counts live in this process: behind several replicas each keeps its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failed attempts are remembered.
pub(super) const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Entries kept before expired ones are swept, bounding memory under a flood.
const SWEEP_AT: usize = 10_000;

/// Failed-login counters.
#[derive(Debug)]
pub struct LoginLimiter {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        LoginLimiter {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait if any of `keys` is over the limit.
    pub fn retry_after(&self, keys: &[&str], now: Instant) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| failures.get(*k))
            .filter(|(count, start)| {
                *count >= self.limit && now.duration_since(*start) < self.window
            })
            .map(|(_, start)| (self.window - now.duration_since(*start)).as_secs().max(1))
            .max()
    }

    /// Counts a failed attempt against each of `keys`.
    pub fn record_failure(&self, keys: &[&str], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        for key in keys {
            let entry = failures.entry((*key).to_owned()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// Forgets the failures of `key` (after a successful login).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.record_failure(&["email:a"], t0);
        }
        assert_eq!(limiter.retry_after(&["email:a"], t0), None);
        limiter.record_failure(&["email:a"], t0);
        assert_eq!(
            limiter.retry_after(&["email:a"], t0 + Duration::from_secs(10)),
            Some(50)
        );
        assert_eq!(limiter.retry_after(&["email:b"], t0), None);
        assert_eq!(
            limiter.retry_after(&["email:a"], t0 + Duration::from_secs(60)),
            None
        );
        limiter.reset("email:a");
        assert_eq!(limiter.retry_after(&["email:a"], t0), None);
    }
}
