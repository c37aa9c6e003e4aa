//! A string that must never reach a log line: the JWT key, the metrics token,
//! webhook signing secrets and password hashes.
//!
//! `Debug` and `Display` print `[redacted]`, so `{:?}` of a struct holding one (the
//! settings, a user, a webhook) is safe to log. Reading the value takes an explicit
//! [`Secret::expose`], which is easy to find in review.

use std::fmt;

/// A secret string; see the module documentation.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// What `Debug` and `Display` print in place of a secret.
pub const REDACTED: &str = "[redacted]";

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (signing, verifying,
    /// the webhook creation answer).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (an unset setting).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes, for rules such as "at least 16 characters".
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// Stored as the text it is, on both databases: binding a `Secret` writes the string.
impl<DB: sqlx::Database> sqlx::Type<DB> for Secret
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Secret
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2-hunter2-hunter2");
    }

    #[test]
    fn users_webhooks_and_settings_print_no_secret() {
        use crate::model::{DueEvent, User, Webhook};
        let (id, now) = (uuid::Uuid::nil(), chrono::Utc::now());
        let user = User {
            id,
            email: "u@example.com".into(),
            password_hash: "$argon2id$v=19$the-hash".into(),
            created_at: now,
        };
        let webhook = Webhook {
            id,
            user_id: id,
            url: "https://example.com/hook".into(),
            events: vec!["scale_up".into()],
            description: None,
            secret: "whsec_the-signing-key".into(),
            created_at: now,
        };
        let due = DueEvent {
            id,
            url: webhook.url.clone(),
            secret: webhook.secret.clone(),
            payload: "{}".into(),
            attempt: 1,
            created_at: now,
        };
        let settings = crate::config::Settings::from_lookup(|name| match name {
            "JWT_SECRET_KEY" => Some("the-jwt-signing-key-0123".into()),
            "METRICS_TOKEN" => Some("the-metrics-token".into()),
            _ => None,
        })
        .unwrap();
        let shown = format!("{user:?} {webhook:?} {due:?} {settings:?}");
        for secret in [
            "the-hash",
            "the-signing-key",
            "the-jwt-signing-key",
            "the-metrics-token",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("u@example.com"),
            "the rest still shows: {shown}"
        );
    }
}
