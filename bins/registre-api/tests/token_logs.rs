//! The API token never reaches a log line: `registre-api` runs as a real process with API_TOKEN set,
//! RUST_LOG=trace (every log of every crate, HTTP internals included) and each LOG_FORMAT (text,
//! json); authorised calls (enqueue, cancel, a retry of an unknown row) and refused ones (wrong
//! token that starts with the real one, no token, malformed header) are made, the process is
//! stopped, and the token must be absent from everything it wrote on stdout and stderr.
//! Also: registre-api ignores METRICS_ADDR (it serves /metrics on API_PORT), so the one shared
//! `.env` that gives the workers METRICS_ADDR cannot make it take their port.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_config::EnvName;
use registre_testkit::binary::http_call;
use registre_testkit::{free_port, shared_redis_url, unique};
use sqlx::PgConnection;

const TOKEN: &str = "tok-SHOULD-NEVER-BE-LOGGED-7f3a9c2e41d8";

/// Starts registre-api on a free API_PORT with `extra` variables; returns the child and its port
/// once /health answers.
fn start_api(db_url: &str, log_format: &str, extra: &[(&str, String)]) -> (std::process::Child, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_registre-api"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("token-logs"))
        .env("PROD_DATABASE_URL", db_url)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("API_TOKEN", TOKEN)
        .env("LOG_FORMAT", log_format)
        .env("RUST_LOG", "trace")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = command.spawn().expect("registre-api starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_call(port, "GET", "/health", &[], "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "registre-api did not answer /health within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// SIGTERM, wait for the exit (0), and everything it wrote on stdout and stderr.
fn stop_api(mut child: std::process::Child) -> String {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "registre-api did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let mut all = String::from_utf8_lossy(&output.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{}\n{all}", output.status);
    all
}

fn run_and_call(db_url: &str, log_format: &str) -> String {
    let (child, port) = start_api(db_url, log_format, &[]);
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}-but-longer");
    let json = ("Content-Type", "application/json");
    let body = r#"{"document_source":"index","document_number":"4 866 594","circonscription_fonciere":"Montréal","cadastre":"Cadastre du Québec"}"#;

    let (code, created) = http_call(port, "POST", "/api/extractions", &[("Authorization", &bearer), json], body).expect("enqueue");
    assert_eq!(code, 201, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).expect("JSON")["extraction"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (code, answer) = http_call(port, "DELETE", &format!("/api/extractions/{id}"), &[("Authorization", &bearer)], "").expect("cancel");
    assert_eq!(code, 200, "{answer}");
    let missing = uuid::Uuid::new_v4();
    let (code, _) = http_call(port, "POST", &format!("/api/extractions/{missing}/retry"), &[("Authorization", &bearer)], "").expect("retry");
    assert_eq!(code, 404);
    for headers in [vec![("Authorization", wrong.as_str()), json], vec![json], vec![("Authorization", TOKEN), json]] {
        let (code, answer) = http_call(port, "POST", "/api/extractions", &headers, body).expect("refused enqueue");
        assert_eq!(code, 401, "{answer}");
        assert!(!answer.contains(TOKEN), "the answer repeats the token: {answer}");
    }
    for path in ["/api/overview", "/metrics", "/ready", "/api/extractions?limit=5"] {
        assert_eq!(http_call(port, "GET", path, &[("Authorization", &bearer)], "").map(|r| r.0), Some(200), "{path}");
    }

    stop_api(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_any_log_line() {
    let (db, _pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let url = db.url().to_string();
    for format in ["text", "json"] {
        let url = url.clone();
        let logs = tokio::task::spawn_blocking(move || run_and_call(&url, format)).await.expect("run");
        // The run logged (so the absence below means something): the banner, the enqueue and the
        // cancel, and the debug/trace lines of our crates.
        assert!(logs.contains("registre-api listening"), "{format}: {logs}");
        assert!(logs.contains("queued index"), "{format}: {logs}");
        assert!(logs.contains("cancelled by an operator"), "{format}: {logs}");
        assert!(logs.lines().count() >= 10, "{format}: only {} lines", logs.lines().count());
        if format == "json" {
            for line in logs.lines().filter(|l| !l.trim().is_empty()) {
                assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not a JSON line: {line}");
            }
        }
        for (n, line) in logs.lines().enumerate() {
            assert!(!line.contains(TOKEN), "{format}: line {} holds the API token: {line}", n + 1);
        }
        // Not even a fragment long enough to guess from.
        assert!(!logs.contains(&TOKEN[4..24]), "{format}: a fragment of the token was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_is_ignored_registre_api_serves_its_own_metrics() {
    let (db, _pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let url = db.url().to_string();
    // One address free (a worker's, not started yet) and one taken (a worker already on it).
    let free = free_port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let logs = tokio::task::spawn_blocking(move || {
        let mut all = String::new();
        for metrics_port in [free, taken_port] {
            let extra = [("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")), ("RUST_LOG", "debug".to_string())];
            let (child, port) = start_api(&url, "text", &extra);
            let (code, text) = http_call(port, "GET", "/metrics", &[], "").expect("/metrics on API_PORT");
            assert_eq!(code, 200, "{text}");
            assert!(text.contains("registre_queue_rows"), "{text}");
            if metrics_port == free {
                // Serving, yet nothing listens on METRICS_ADDR: the port stays the workers'.
                assert!(http_call(metrics_port, "GET", "/metrics", &[], "").is_none(), "registre-api answered on METRICS_ADDR");
            }
            all.push_str(&stop_api(child));
        }
        all
    })
    .await
    .expect("run");
    drop(taken);
    assert!(logs.contains("registre-api listening"), "{logs}");
    assert!(!logs.contains("cannot listen"), "registre-api tried METRICS_ADDR: {logs}");
    for port in [free, taken_port] {
        assert!(!logs.contains(&format!("METRICS_ADDR=127.0.0.1:{port}")), "{logs}");
    }
}
