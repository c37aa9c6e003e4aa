//! Brute-force protection for login. Failed attempts are counted per email and per
//! client address in fixed windows; past the limit the answer is 429 with
//! Retry-After. An address gets ten times the allowance of an email, since many
//! users may share one (an office NAT, a proxy) and one of them guessing must not
//! lock the others out.
//!
//! The counters live in the database, so every replica sees the same ones: N
//! replicas give an attacker the allowance of one. The retention job deletes
//! counters whose window has passed.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{Logins, Retention, StoreResult};

/// How long failed attempts are remembered.
pub const LOGIN_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// How many times an email's allowance one client address gets.
const ADDRESS_FACTOR: i64 = 10;

/// The failed-login policy: `per_email` failures per email (ten times as many per
/// client address) within `window`.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimiter {
    per_email: i64,
    window: TimeDelta,
}

fn email_key(email: &str) -> String {
    format!("email:{email}")
}

fn keys(email: &str, address: Option<IpAddr>) -> Vec<String> {
    std::iter::once(email_key(email))
        .chain(address.map(|a| format!("addr:{a}")))
        .collect()
}

impl LoginLimiter {
    pub fn new(per_email: u32, window: TimeDelta) -> Self {
        LoginLimiter {
            per_email: per_email.into(),
            window,
        }
    }

    fn limit(&self, key: &str) -> i64 {
        if key.starts_with("addr:") {
            self.per_email.saturating_mul(ADDRESS_FACTOR)
        } else {
            self.per_email
        }
    }

    /// Seconds to wait if the email or the address is over its limit.
    pub async fn retry_after(
        &self,
        store: &dyn Logins,
        email: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<u64>> {
        let counters = store.login_failures(&keys(email, address)).await?;
        Ok(counters
            .iter()
            .filter_map(|c| {
                let left = c.window_start + self.window - now;
                (c.failures >= self.limit(&c.key) && left > TimeDelta::zero())
                    .then(|| (left.num_milliseconds() as u64).div_ceil(1000).max(1))
            })
            .max())
    }

    /// Counts a failed attempt against the email and the address.
    pub async fn record_failure(
        &self,
        store: &dyn Logins,
        email: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        store
            .record_login_failure(&keys(email, address), now, now - self.window)
            .await
    }

    /// Forgets the failures of `email` after a successful login. The address keeps
    /// its count, or an attacker could reset it by logging into an account of their own.
    pub async fn reset(&self, store: &dyn Logins, email: &str) -> StoreResult<()> {
        store.clear_login_failures(&email_key(email)).await
    }

    /// Deletes the counters whose window has passed.
    pub async fn purge(&self, store: &dyn Retention, now: DateTime<Utc>) -> StoreResult<u64> {
        store.purge_login_failures(now - self.window).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PoolSettings, SqliteStore};

    const A: &str = "a@example.com";

    async fn store() -> SqliteStore {
        SqliteStore::connect("sqlite::memory:", &PoolSettings::default())
            .await
            .unwrap()
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    /// A limiter over its own store, so each test step reads as one line.
    struct Limited {
        store: SqliteStore,
        limiter: LoginLimiter,
    }

    impl Limited {
        async fn new(limit: u32, window: TimeDelta) -> Self {
            Limited {
                store: store().await,
                limiter: LoginLimiter::new(limit, window),
            }
        }

        async fn fail(&self, email: &str, address: Option<IpAddr>, now: DateTime<Utc>) {
            self.limiter
                .record_failure(&self.store, email, address, now)
                .await
                .unwrap();
        }

        async fn wait(
            &self,
            email: &str,
            address: Option<IpAddr>,
            now: DateTime<Utc>,
        ) -> Option<u64> {
            self.limiter
                .retry_after(&self.store, email, address, now)
                .await
                .unwrap()
        }

        async fn reset(&self, email: &str) {
            self.limiter.reset(&self.store, email).await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_email_is_blocked_after_the_limit_until_the_window_passes() {
        let limited = Limited::new(3, secs(60)).await;
        let t0 = Utc::now();
        for _ in 0..2 {
            limited.fail(A, None, t0).await;
        }
        assert_eq!(limited.wait(A, None, t0).await, None);
        limited.fail(A, None, t0).await;
        assert_eq!(limited.wait(A, None, t0 + secs(10)).await, Some(50));
        assert_eq!(limited.wait("b@example.com", None, t0).await, None);
        assert_eq!(limited.wait(A, None, t0 + secs(60)).await, None);
        limited.reset(A).await;
        assert_eq!(limited.wait(A, None, t0).await, None);
    }

    #[tokio::test]
    async fn an_address_gets_ten_times_the_allowance_and_survives_a_success() {
        let limited = Limited::new(2, secs(60)).await;
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Utc::now();
        for i in 0..19 {
            limited
                .fail(&format!("user{i}@example.com"), Some(ip), t0)
                .await;
        }
        let new = "new@example.com";
        assert_eq!(limited.wait(new, Some(ip), t0).await, None);
        limited.fail("user19@example.com", Some(ip), t0).await;
        limited.reset("user19@example.com").await;
        assert_eq!(limited.wait(new, Some(ip), t0).await, Some(60));
        let other = Some([10, 0, 0, 2].into());
        assert_eq!(limited.wait(new, other, t0).await, None);
    }

    #[tokio::test]
    async fn a_counter_restarts_after_its_window_and_expired_ones_are_purged() {
        let limited = Limited::new(2, secs(60)).await;
        let t0 = Utc::now();
        limited.fail(A, None, t0).await;
        limited.fail(A, None, t0 + secs(61)).await;
        assert_eq!(
            limited.wait(A, None, t0 + secs(61)).await,
            None,
            "the first failure's window had passed, so the count restarted at 1"
        );
        let Limited { store, limiter } = limited;
        let counters = store.login_failures(&keys(A, None)).await.unwrap();
        assert_eq!(counters[0].failures, 1);
        assert_eq!(limiter.purge(&store, t0 + secs(100)).await.unwrap(), 0);
        assert_eq!(limiter.purge(&store, t0 + secs(122)).await.unwrap(), 1);
        assert!(
            store
                .login_failures(&keys(A, None))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
