//! Brute-force protection for login. Failed attempts are counted per email and per
//! client address in fixed windows; past the limit the answer is 429 with
//! Retry-After. An address gets ten times the allowance of an email, since many
//! users may share one (an office NAT, a proxy) and one of them guessing must not
//! lock the others out. Counts live in this process: each replica keeps its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failed attempts are remembered.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How many times an email's allowance one client address gets.
const ADDRESS_FACTOR: u32 = 10;

/// Entries kept before expired ones are swept, bounding memory under a flood.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Email(String),
    Address(IpAddr),
}

/// Failed-login counters.
#[derive(Debug)]
pub struct LoginLimiter {
    per_email: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl LoginLimiter {
    /// `per_email` failures per email (and ten times as many per address) in `window`.
    pub fn new(per_email: u32, window: Duration) -> Self {
        LoginLimiter {
            per_email,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Email(email.to_owned())).chain(address.map(Key::Address))
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Email(_) => self.per_email,
            Key::Address(_) => self.per_email.saturating_mul(ADDRESS_FACTOR),
        }
    }

    /// Seconds to wait if the email or the address is over its limit.
    pub fn retry_after(&self, email: &str, address: Option<IpAddr>, now: Instant) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::keys(email, address)
            .filter_map(|key| {
                let (count, start) = failures.get(&key)?;
                let age = now.duration_since(*start);
                (*count >= self.limit(&key) && age < self.window)
                    .then(|| (self.window - age).as_secs().max(1))
            })
            .max()
    }

    /// Counts a failed attempt against the email and the address.
    pub fn record_failure(&self, email: &str, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        for key in Self::keys(email, address) {
            let entry = failures.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// Forgets the failures of `email` after a successful login. The address keeps
    /// its count, or an attacker could reset it by logging into an account of their own.
    pub fn reset(&self, email: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Key::Email(email.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a@example.com";

    #[test]
    fn an_email_is_blocked_after_the_limit_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.record_failure(A, None, t0);
        }
        assert_eq!(limiter.retry_after(A, None, t0), None);
        limiter.record_failure(A, None, t0);
        assert_eq!(
            limiter.retry_after(A, None, t0 + Duration::from_secs(10)),
            Some(50)
        );
        assert_eq!(limiter.retry_after("b@example.com", None, t0), None);
        assert_eq!(
            limiter.retry_after(A, None, t0 + Duration::from_secs(60)),
            None
        );
        limiter.reset(A);
        assert_eq!(limiter.retry_after(A, None, t0), None);
    }

    #[test]
    fn an_address_gets_ten_times_the_allowance_and_survives_a_success() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        for i in 0..19 {
            limiter.record_failure(&format!("user{i}@example.com"), Some(ip), t0);
        }
        assert_eq!(limiter.retry_after("new@example.com", Some(ip), t0), None);
        limiter.record_failure("user19@example.com", Some(ip), t0);
        limiter.reset("user19@example.com");
        assert_eq!(
            limiter.retry_after("new@example.com", Some(ip), t0),
            Some(60)
        );
        assert_eq!(
            limiter.retry_after("new@example.com", Some([10, 0, 0, 2].into()), t0),
            None
        );
    }
}
