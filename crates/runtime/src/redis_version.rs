//! The minimum Redis version (docs/design.md §13): every worker binary asks the server for its version
//! (`INFO server`, field `redis_version`) at start-up and refuses anything older than 6.0 with one
//! line naming REDIS_URL, the version found and what is needed (exit 2, like a configuration
//! error). The scripts use only commands of Redis 6.0 (SET ... KEEPTTL is the newest), so an older
//! server would fail later in confusing ways (unknown command inside a Lua script) instead.

use std::fmt;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use registre_config::SecretUrl;

/// The oldest Redis accepted: Ubuntu 22.04's package.
pub const MINIMUM_REDIS: (u32, u32) = (6, 0);

/// `redis_version` as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The field's text as reported (e.g. `6.2.14`).
    pub text: String,
}

impl RedisVersion {
    /// Parses `redis_version:x.y.z` out of an `INFO` reply (any section order, CRLF or LF lines).
    /// Missing minor/patch numbers count as 0; anything that is not a number is refused.
    pub fn from_info(info: &str) -> Option<RedisVersion> {
        let text = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:"))?.trim().to_string();
        let mut numbers = text.split('.');
        let mut next = || -> Option<u32> {
            match numbers.next() {
                None => Some(0),
                Some(n) => n.parse().ok(),
            }
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        Some(RedisVersion { major, minor, patch, text })
    }

    pub fn is_supported(&self) -> bool {
        (self.major, self.minor) >= MINIMUM_REDIS
    }
}

impl fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The server cannot be used: the one line a binary prints before exiting 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisVersionError {
    #[error("REDIS_URL={url}: Redis {found} is too old: Redis {}.{} or newer is needed", MINIMUM_REDIS.0, MINIMUM_REDIS.1)]
    TooOld {
        /// Redacted.
        url: String,
        found: RedisVersion,
    },
    #[error(
        "REDIS_URL={url}: the server reports no usable redis_version in INFO server ({found}): Redis {}.{} or newer is needed",
        MINIMUM_REDIS.0,
        MINIMUM_REDIS.1
    )]
    Unknown {
        /// Redacted.
        url: String,
        /// What was there instead (`missing` or the field's text).
        found: String,
    },
}

/// The decision on one `INFO server` reply.
pub fn check_info(url: &SecretUrl, info: &str) -> Result<RedisVersion, RedisVersionError> {
    match RedisVersion::from_info(info) {
        Some(version) if version.is_supported() => Ok(version),
        Some(found) => Err(RedisVersionError::TooOld { url: url.redacted(), found }),
        None => {
            let found = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("redis_version:"))
                .map(|v| format!("redis_version:{}", v.trim()))
                .unwrap_or_else(|| "missing".to_string());
            Err(RedisVersionError::Unknown { url: url.redacted(), found })
        }
    }
}

/// One attempt: connect (2 s), `INFO server` (5 s), decide. `Err(_)` of the outer result means the
/// server did not answer (the caller retries or lets the workers' own retry loops deal with it).
pub async fn probe_redis_version(url: &SecretUrl) -> Result<Result<RedisVersion, RedisVersionError>, redis::RedisError> {
    let client = redis::Client::open(url.expose())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
    Ok(check_info(url, &info))
}

/// The same for what REDIS_URL / REDIS_CLUSTER name: a single server, or the nodes of a cluster,
/// asked in turn until one answers (`INFO` is per node; every node of a cluster runs the same
/// version in practice, and a mixed cluster during an upgrade is caught by each binary's start).
/// A node that answers with a refused version decides; only "no node answers" is an `Err`.
pub async fn probe_redis_target(
    target: &registre_config::RedisTarget,
) -> Result<Result<RedisVersion, RedisVersionError>, redis::RedisError> {
    let mut last = None;
    for node in target.nodes() {
        match probe_redis_version(node).await {
            Ok(decided) => return Ok(decided),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no Redis node configured"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> SecretUrl {
        SecretUrl::new(url::Url::parse("redis://:hunter2@10.0.0.5:6379").unwrap())
    }

    fn info(version: &str) -> String {
        format!("# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n")
    }

    #[test]
    fn versions_from_6_0_on_are_accepted() {
        for v in ["6.0.0", "6.0.16", "6.2.14", "7.0.15", "7.2.4", "8.0.2", "10.1"] {
            let version = check_info(&url(), &info(v)).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(version.text, v);
        }
        assert_eq!(
            RedisVersion::from_info(&info("6.2.14")),
            Some(RedisVersion { major: 6, minor: 2, patch: 14, text: "6.2.14".into() })
        );
    }

    #[test]
    fn older_versions_are_refused_with_one_line_naming_redis_url() {
        for v in ["5.0.7", "5.9.99", "4.0.14", "3.2.12", "2.8"] {
            let err = check_info(&url(), &info(v)).expect_err(v);
            let line = err.to_string();
            assert_eq!(line, format!("REDIS_URL=redis://:***@10.0.0.5:6379: Redis {v} is too old: Redis 6.0 or newer is needed"));
            assert!(!line.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
        }
    }

    #[test]
    fn a_missing_or_unreadable_version_is_refused() {
        let err = check_info(&url(), "# Server\r\nredis_mode:standalone\r\n").unwrap_err();
        assert!(matches!(err, RedisVersionError::Unknown { .. }), "{err:?}");
        assert!(err.to_string().contains("(missing)"), "{err}");
        let err = check_info(&url(), &info("six")).unwrap_err();
        assert!(err.to_string().contains("(redis_version:six)"), "{err}");
    }
}
