//! registre-workers' configuration-class start-up errors through the binary: an unreadable
//! REGISTRE_SITE_CONFIG is found before any lease is taken, and exits 2 with one line, like every
//! other configuration error (start-all-workers does the same: bins/start-all-workers/tests/startup.rs).

use std::collections::HashMap;
use std::process::Command;

use redis::Commands;
use registre_testkit::{redis_sync, shared_redis_url, unique};

#[test]
fn an_unreadable_registre_site_config_exits_2_with_one_line() {
    let id = unique("registre");
    let dir = std::env::temp_dir().join(unique("registre-startup"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_registre-workers"))
        .env_clear()
        .current_dir(&dir) // no .env there
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", &id)
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("STORAGE_URL", format!("file://{}", dir.display()))
        .env("REGISTRE_FETCHER", "registry")
        .env("REGISTRE_SITE_CONFIG", "/nonexistent/registry-site.toml")
        .env("RUST_LOG", "info")
        .output()
        .expect("registre-workers runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("REGISTRE_SITE_CONFIG=/nonexistent/registry-site.toml: cannot read it"), "{stderr}");
    let mut c = redis_sync(&shared_redis_url());
    let workers: HashMap<String, String> = c.hgetall(format!("server:{{{id}}}:workers")).unwrap();
    assert!(workers.is_empty(), "no lease is taken before the configuration is known good: {workers:?}");
}
