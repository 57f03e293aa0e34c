//! One `.env` shared by every PM2 app (the checklist's way): a section ocr-pool does not read
//! (REGISTRE_FETCHER=directory without REGISTRE_SOURCE_DIR, a bad API_PORT or MONITOR_INTERVAL_MS)
//! does not stop it; a bad value of a section it reads still does, in one line with exit 2.

use std::process::{Command, Stdio};
use std::time::Duration;

use registre_testkit::binary::{stop_with_sigterm, wait_for_200};
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{free_port, shared_redis_url, unique};

fn ocr_pool(db_url: &str, extra: &[(&str, &str)]) -> Command {
    let storage = std::env::temp_dir().join(unique("shared-env-storage"));
    std::fs::create_dir_all(&storage).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocr-pool"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("shared-env"))
        .env("OCR_RATE_LIMIT_NAME", unique("shared-env-rl"))
        .env("PROD_DATABASE_URL", db_url)
        .env("STORAGE_URL", format!("file://{}", storage.display()))
        .env("OCR_ENGINE", "tesseract")
        .env("REGISTRE_FETCHER", "directory")
        .env("API_PORT", "not-a-port")
        .env("MONITOR_INTERVAL_MS", "soon")
        .current_dir(&storage)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn a_section_it_does_not_read_does_not_stop_it() {
    let db = TestDatabase::create();
    let port = free_port();
    let child = ocr_pool(db.url(), &[("METRICS_ADDR", &format!("127.0.0.1:{port}"))]).spawn().expect("ocr-pool starts");
    let mut child = child;
    wait_for_200(&mut child, port, "/health", Duration::from_secs(60), "ocr-pool");
    let (status, logs) = stop_with_sigterm(child);
    assert!(status.success(), "{status}: {logs}");
    assert!(!logs.contains("REGISTRE_SOURCE_DIR"), "{logs}");
}

#[test]
fn a_bad_value_of_its_own_section_is_one_line_and_exit_2() {
    let db = TestDatabase::create();
    let out = ocr_pool(db.url(), &[("OCR_WORKER_POOL_SIZE", "abc")]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.trim().ends_with("OCR_WORKER_POOL_SIZE=abc: expected a whole number"), "{stderr}");
}
