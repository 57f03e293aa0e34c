//! start-all-workers' start-up failures through the binary, against the real Redis: an OCR pool
//! that cannot start stops the registre workers and releases their capacity leases before the
//! process exits (2: it is a configuration error), and every configuration-class error found at
//! start-up (no environment left for OCR, an unreadable REGISTRE_SITE_CONFIG) exits 2 with one line.

use std::collections::HashMap;
use std::process::{Command, Output};

use redis::Commands;
use registre_testkit::{redis_sync, shared_redis_url, unique};

/// Runs start-all-workers to its exit with a registre half that can start (directory fetcher,
/// local storage, an unreachable database that nothing touches before the workers begin).
fn run(server_id: &str, extra: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(unique("start-all"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_start-all-workers"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", server_id)
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("STORAGE_URL", format!("file://{}", dir.display()))
        .env("REGISTRE_FETCHER", "directory")
        .env("REGISTRE_SOURCE_DIR", dir.display().to_string())
        // Leases far longer than the test: if they are gone, they were released, not expired.
        .env("CAPACITY_LEASE_TTL_MS", "600000")
        .env("RUST_LOG", "info");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("start-all-workers runs")
}

#[test]
fn a_pool_that_cannot_start_stops_the_registre_workers_and_releases_their_leases() {
    let id = unique("all");
    let out = run(&id, &[("WORKER_COUNT", "2"), ("SERVER_MAX_CPU", "16"), ("OCR_PROD", "false")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The registre half had started and taken its leases...
    assert_eq!(stdout.matches("✅ Started registre-worker-").count(), 2, "{stdout}{stderr}");
    // ...then the pool refused its configuration: exit 2, one line saying why.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        "start-all-workers: OCR pool: OCR_PROD, OCR_STAGING and OCR_DEV leave no configured environment for the OCR pool (configured: prod): set OCR_PROD=true"
    );
    assert!(stdout.contains("👋 registre workers stopped, leases released"), "{stdout}");
    // Nothing is left in Redis, though the leases' TTL is 10 minutes.
    let mut c = redis_sync(&shared_redis_url());
    let workers: HashMap<String, String> = c.hgetall(format!("server:{{{id}}}:workers")).unwrap();
    assert!(workers.is_empty(), "leases left behind: {workers:?}");
    let leases: usize = c.zcard(format!("server:{{{id}}}:leases")).unwrap();
    assert_eq!(leases, 0);
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    assert_eq!(cpu, "0");
}

#[test]
fn an_unreadable_registre_site_config_exits_2_with_one_line() {
    let id = unique("all");
    let out = run(&id, &[("REGISTRE_FETCHER", "registry"), ("REGISTRE_SITE_CONFIG", "/nonexistent/registry-site.toml")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("start-all-workers: registre workers: fetcher set-up failed: REGISTRE_SITE_CONFIG=/nonexistent/registry-site.toml: cannot read it"),
        "{stderr}"
    );
    let mut c = redis_sync(&shared_redis_url());
    let workers: HashMap<String, String> = c.hgetall(format!("server:{{{id}}}:workers")).unwrap();
    assert!(workers.is_empty(), "no lease is taken before the configuration is known good: {workers:?}");
}
