//! The worker binaries' metrics server: /metrics in the OpenMetrics text format with the recorded
//! work and the process's RSS/CPU, /health, and /ready answering 503 when Redis is gone.

use std::time::Duration;

use registre_config::SecretUrl;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_recorded_work_and_readiness() {
    registre_telemetry::job("extraction", "completed", Duration::from_millis(1500));
    registre_telemetry::job("ocr", "failed", Duration::from_millis(20));
    registre_telemetry::fetch(Duration::from_millis(800));
    registre_telemetry::ocr_pages(3);
    registre_telemetry::capacity_wait("registre", Duration::from_millis(5));
    registre_telemetry::ratelimit_wait(Duration::from_millis(7));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let stop = CancellationToken::new();
    // A Redis URL where nothing listens: /ready must say so.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = SecretUrl::new(format!("redis://127.0.0.1:{dead}").parse().unwrap());
    registre_telemetry::spawn_server(addr, url.into(), stop.clone());
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        match client.get(format!("{base}/metrics")).send().await {
            Ok(r) => break r.text().await.unwrap(),
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("metrics server did not answer: {e}"),
        }
    };
    for line in [
        "registre_jobs_total{stage=\"extraction\",outcome=\"completed\"} 1",
        "registre_jobs_total{stage=\"ocr\",outcome=\"failed\"} 1",
        "registre_job_duration_seconds_count{stage=\"extraction\"} 1",
        "registre_fetch_duration_seconds_count 1",
        "registre_ocr_pages_total 3",
        "registre_capacity_wait_seconds_count{type=\"registre\"} 1",
        "registre_ratelimit_wait_seconds_count 1",
        "# TYPE registre_process_resident_memory_bytes gauge",
        "# EOF",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("registre_process_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("an RSS sample");
    assert!(rss > 1e6, "RSS {rss}");
    // The host's load, one gauge per window, read through sysinfo.
    for window in ["1m", "5m", "15m"] {
        let prefix = format!("registre_host_load{{window=\"{window}\"}} ");
        let load: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} sample in\n{text}"));
        assert!(load >= 0.0, "load {load}");
    }
    assert_eq!(client.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("Redis"));
    stop.cancel();
}
