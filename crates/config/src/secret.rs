//! Wrappers that keep secrets (service keys, passwords inside URLs) out of logs and Debug output.
//! The only way to read the real value is `expose()`, so a leak is greppable.

use std::fmt;
use url::Url;

/// A secret string (API key, service key). Debug and Display print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for the one place that must send it (an HTTP header, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL that may carry credentials (`redis://:pw@host`, `postgres://user:pw@host/db`).
/// Debug and Display show it with the password replaced by `***`; `expose()` gives the real one.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn new(url: Url) -> Self {
        SecretUrl(url)
    }
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
    pub fn url(&self) -> &Url {
        &self.0
    }
    /// The URL with its password masked: safe for logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// `url` with any password replaced by `***` (and secret-looking query values masked).
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // set_password only fails for URLs that cannot have credentials, which had none.
        let _ = shown.set_password(Some("***"));
    }
    let secret_query = shown
        .query_pairs()
        .any(|(k, _)| is_secret_query_key(&k));
    if secret_query {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_query_key(&k) { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

fn is_secret_query_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "pass", "key", "token", "secret", "apikey"]
        .iter()
        .any(|s| key.contains(s))
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn url_password_is_masked() {
        let u = SecretUrl::new(Url::parse("postgres://postgres:hunter2@db.example:5432/app").unwrap());
        let shown = format!("{u:?} {u}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres:***@db.example:5432/app"), "{shown}");
        assert!(u.expose().contains("hunter2"));
    }

    #[test]
    fn query_secrets_are_masked() {
        let u = SecretUrl::new(Url::parse("s3://bucket?region=ca&secret_access_key=abc123").unwrap());
        let shown = u.to_string();
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(shown.contains("region=ca"), "{shown}");
    }
}
