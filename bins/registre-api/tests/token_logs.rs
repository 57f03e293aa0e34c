//! The API token never reaches a log line: `registre-api` runs as a real process with API_TOKEN set,
//! RUST_LOG=trace (every log of every crate, HTTP internals included) and each LOG_FORMAT (text,
//! json); authorised calls (enqueue, cancel, a retry of an unknown row) and refused ones (wrong
//! token that starts with the real one, no token, malformed header) are made, the process is
//! stopped, and the token must be absent from everything it wrote on stdout and stderr.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_config::EnvName;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{free_port, shared_redis_url, unique};
use sqlx::{Connection, PgConnection};

const TOKEN: &str = "tok-SHOULD-NEVER-BE-LOGGED-7f3a9c2e41d8";

/// (status code, body) of one HTTP/1.0 request, or None while nothing listens.
fn call(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn run_and_call(db_url: &str, log_format: &str) -> String {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_registre-api"))
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("registre-api starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(port, "GET", "/health", &[], "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "registre-api did not answer /health within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}-but-longer");
    let json = ("Content-Type", "application/json");
    let body = r#"{"document_source":"index","document_number":"4 866 594","circonscription_fonciere":"Montréal","cadastre":"Cadastre du Québec"}"#;

    let (code, created) = call(port, "POST", "/api/extractions", &[("Authorization", &bearer), json], body).expect("enqueue");
    assert_eq!(code, 201, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).expect("JSON")["extraction"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (code, answer) = call(port, "DELETE", &format!("/api/extractions/{id}"), &[("Authorization", &bearer)], "").expect("cancel");
    assert_eq!(code, 200, "{answer}");
    let missing = uuid::Uuid::new_v4();
    let (code, _) = call(port, "POST", &format!("/api/extractions/{missing}/retry"), &[("Authorization", &bearer)], "").expect("retry");
    assert_eq!(code, 404);
    for headers in [vec![("Authorization", wrong.as_str()), json], vec![json], vec![("Authorization", TOKEN), json]] {
        let (code, answer) = call(port, "POST", "/api/extractions", &headers, body).expect("refused enqueue");
        assert_eq!(code, 401, "{answer}");
        assert!(!answer.contains(TOKEN), "the answer repeats the token: {answer}");
    }
    for path in ["/api/overview", "/metrics", "/ready", "/api/extractions?limit=5"] {
        assert_eq!(call(port, "GET", path, &[("Authorization", &bearer)], "").map(|r| r.0), Some(200), "{path}");
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_any_log_line() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
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
