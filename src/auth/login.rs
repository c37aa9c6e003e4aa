//! The login flow, one call for the handler (as zero2prod's `validate_credentials`):
//! the attempt limiter, the password check against a fallback hash for unknown
//! emails, counting the failure or forgetting the earlier ones, and the token.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{JwtKeys, LoginLimiter, verify_password};
use crate::store::{Store, StoreError};

/// Why a login gave no token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The email or the address failed too often; retry after this many seconds.
    #[error("too many failed attempts; retry after {0} s")]
    TooManyAttempts(u64),
    /// An unknown email or a wrong password, alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or signing failed.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Checks `email` (normalised) and `password` from `address` at `now`; a token for
/// the user when they match.
pub async fn login(
    store: &dyn Store,
    limiter: &LoginLimiter,
    keys: &JwtKeys,
    email: &str,
    password: String,
    address: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<String, LoginError> {
    if let Some(retry_after) = limiter.retry_after(store, email, address, now).await? {
        return Err(LoginError::TooManyAttempts(retry_after));
    }
    let user = store.user_by_email(email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.expose().to_owned());
    // Unknown emails are checked against a fallback hash: same cost, same answer.
    let ok = verify_password(password, stored)
        .await
        .map_err(LoginError::Internal)?;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            limiter.record_failure(store, email, address, now).await?;
            return Err(LoginError::InvalidCredentials);
        }
    };
    limiter.reset(store, email).await?;
    keys.issue(user.id, now).map_err(LoginError::Internal)
}
