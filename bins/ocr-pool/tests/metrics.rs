//! `ocr-pool` with METRICS_ADDR serves /metrics, /health and /ready (registre-telemetry, started by
//! registre_runtime::run_binary): the work histograms and the process RSS/CPU in the OpenMetrics
//! text format, with registre_capacity_wait_seconds recorded for each OCR worker's lease (index-ocr
//! and acte-ocr, the default pool of two); SIGTERM still ends it with exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_config::EnvName;
use registre_testkit::binary::http_get;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{free_port, shared_redis_url, unique};
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_the_pool_metrics() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    registre_queue::migrate(&mut conn, EnvName::Prod).await.unwrap();
    let storage = std::env::temp_dir().join(unique("metrics-storage"));
    std::fs::create_dir_all(&storage).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocr-pool"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("metrics"))
        .env("PROD_DATABASE_URL", db.url())
        .env("STORAGE_URL", format!("file://{}", storage.display()))
        .env("OCR_ENGINE", "tesseract")
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .current_dir(&storage)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ocr-pool starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = http_get(port, "/metrics") {
            // Both OCR workers took their capacity lease: one capacity-wait sample per type.
            if body.contains("registre_process_resident_memory_bytes ")
                && body.contains("registre_capacity_wait_seconds_count{type=\"index-ocr\"} 1")
                && body.contains("registre_capacity_wait_seconds_count{type=\"acte-ocr\"} 1")
                && body.contains("# EOF")
            {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no /metrics within 60 s: {:?}", http_get(port, "/metrics"));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("registre_process_resident_memory_bytes "), "{body}");
    assert!(body.contains("registre_process_cpu_seconds_total "), "{body}");
    assert!(body.contains("# TYPE registre_ratelimit_wait_seconds histogram"), "{body}");
    assert_eq!(http_get(port, "/health").map(|r| r.0), Some(200));
    assert_eq!(http_get(port, "/ready").map(|r| r.0), Some(200));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ocr-pool did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_dir_all(&storage);
}
