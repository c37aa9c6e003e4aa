//! Passwords (argon2id) and access tokens (HS256 JWT).

mod limit;
mod login;

pub use limit::{LOGIN_WINDOW, LoginLimiter};
pub use login::{LoginError, login};

use std::sync::{Arc, LazyLock};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long an issued token is valid.
pub const TOKEN_LIFETIME: TimeDelta = TimeDelta::hours(24);

/// Hashes a password with argon2id (see [`hash_password_blocking`]) on a blocking
/// thread, so the runtime's workers stay free while it runs.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password)).await?
}

/// Checks a password (see [`verify_password_blocking`]) on a blocking thread.
pub async fn verify_password(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    Ok(
        tokio::task::spawn_blocking(move || verify_password_blocking(&password, stored.as_deref()))
            .await?,
    )
}

/// Hashes a password with argon2id at the crate's defaults, which are OWASP's
/// recommended parameters (19 MiB, 2 passes, 1 lane). CPU-heavy: tens of
/// milliseconds.
pub fn hash_password_blocking(password: &str) -> anyhow::Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))?;
    Ok(hash.to_string())
}

/// A hash of a password nobody has, verified against when an email is unknown so a
/// failed login takes as long whether or not the account exists.
static FALLBACK_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_password_blocking("not-a-real-password: timing equaliser")
        .expect("argon2 with default params")
});

/// Checks `password` against a stored hash, or against the fallback hash when there
/// is no account (and then always fails). CPU-heavy, as hashing is.
pub fn verify_password_blocking(password: &str, stored: Option<&str>) -> bool {
    let hash = stored.unwrap_or(FALLBACK_HASH.as_str());
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok();
    ok && stored.is_some()
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token has expired")]
    Expired,
    #[error("Token is invalid")]
    Invalid,
}

/// Signs and checks access tokens with one HS256 secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // We issue and check our own tokens: "expired" means expired.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(validation),
        }
    }

    /// Issues a token for `user`, valid for [`TOKEN_LIFETIME`] from `now`.
    pub fn issue(&self, user: Uuid, now: DateTime<Utc>) -> anyhow::Result<String> {
        self.issue_until(user, now, now + TOKEN_LIFETIME)
    }

    /// Issues a token with an explicit expiry (tests use it for expired tokens).
    pub fn issue_until(
        &self,
        user: Uuid,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user,
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Checks signature, algorithm (HS256 only, so `alg: none` fails) and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password_blocking("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password_blocking("correct horse", Some(&hash)));
        assert!(!verify_password_blocking("wrong horse", Some(&hash)));
        assert!(!verify_password_blocking("correct horse", None));
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let user = Uuid::new_v4();
        let now = Utc::now();
        let token = keys.issue(user, now).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, user);
        assert_eq!(
            keys.verify(&token).unwrap().exp - keys.verify(&token).unwrap().iat,
            86_400
        );

        let expired = keys
            .issue_until(user, now - TimeDelta::hours(25), now - TimeDelta::hours(1))
            .unwrap();
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_unsigned_tokens_are_invalid() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let other = JwtKeys::new(b"another-secret-of-enough-length!");
        let token = other.issue(Uuid::new_v4(), Utc::now()).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Invalid));

        // alg: none, with the payload of a valid token and no signature.
        let payload = token.split('.').nth(1).unwrap();
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(keys.verify(&unsigned), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not a token"), Err(TokenError::Invalid));
    }
}
