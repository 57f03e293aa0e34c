//! One `.env` shared by every PM2 app (the checklist's way): sections registre-api does not read
//! (REGISTRE_FETCHER=directory without REGISTRE_SOURCE_DIR, a bad OCR_WORKER_POOL_SIZE, a bad
//! MONITOR_INTERVAL_MS) do not stop it; a bad API_PORT still does, in one line with exit 2.

use std::process::{Command, Stdio};
use std::time::Duration;

use registre_testkit::binary::{stop_with_sigterm, wait_for_200};
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{free_port, shared_redis_url, unique};

fn registre_api(db_url: &str, port: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registre-api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("shared-env-api"))
        .env("PROD_DATABASE_URL", db_url)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port)
        .env("REGISTRE_FETCHER", "directory")
        .env("OCR_WORKER_POOL_SIZE", "abc")
        .env("MONITOR_INTERVAL_MS", "soon")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn sections_it_does_not_read_do_not_stop_it() {
    let db = TestDatabase::create();
    let port = free_port();
    let mut child = registre_api(db.url(), &port.to_string()).spawn().expect("registre-api starts");
    wait_for_200(&mut child, port, "/health", Duration::from_secs(60), "registre-api");
    let (status, logs) = stop_with_sigterm(child);
    assert!(status.success(), "{status}: {logs}");
}

#[test]
fn a_bad_value_of_its_own_section_is_one_line_and_exit_2() {
    let db = TestDatabase::create();
    let out = registre_api(db.url(), "99999").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.trim().ends_with("API_PORT=99999: expected a port from 1 to 65535"), "{stderr}");
}
