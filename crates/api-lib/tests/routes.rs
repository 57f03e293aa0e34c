//! Every route of registre-api against a real PostgreSQL and Redis: success, each validation error,
//! 401 / 403 / 404 / 409, pagination across pages with rows inserted meanwhile, cancel fencing
//! through the queue API, /ready naming what is down, /metrics parsed as Prometheus text, the SSE
//! stream delivering a change, and bad input of every kind answered 4xx with a JSON error. The
//! guards: a foreign Host gets 403, every /api/* route (reads included) needs the token, the
//! session cookie reads and streams but never writes, the security headers are on every answer,
//! and the stream and request caps answer 503 with a reason.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::{start, TOKEN};
use registre_testkit::postgres::{insert_row, set_columns};
use registre_config::EnvName;
use registre_queue::{PgQueue, Queue, QueueSettings, Transition};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SETTINGS: QueueSettings =
    QueueSettings { lease_ttl_ms: 30_000, backoff_base_ms: 100, backoff_max_ms: 150, default_max_attempts: 3 };

fn index_body(number: &str) -> Value {
    json!({"document_source": "index", "document_number": number, "circonscription_fonciere": "Montréal", "cadastre": "Cadastre du Québec"})
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_ready_and_what_is_down() {
    let api = start(Some(TOKEN), &[]).await;
    let (s, v) = json_of(api.client.get(api.url("/health")).send().await.unwrap()).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = json_of(api.client.get(api.url("/ready")).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["checks"]["redis"].as_str(), v["checks"]["prod"].as_str()), (Some("ok"), Some("ok")));

    // A staging database that does not answer and a Redis that is gone: 503 naming both.
    let mut redis = registre_testkit::RedisServer::start();
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/nothing", registre_testkit::free_port());
    let api = start(Some(TOKEN), &[("STAGING_DATABASE_URL", dead_pg), ("REDIS_URL", redis.url())]).await;
    redis.kill();
    let (s, v) = json_of(api.client.get(api.url("/ready")).send().await.unwrap()).await;
    assert_eq!(s, 503, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("Redis") && error.contains("staging") && !error.contains("prod ("), "{error}");
    // /health still answers: it checks nothing.
    assert_eq!(api.client.get(api.url("/health")).send().await.unwrap().status(), 200);
    // The overview reports what is down in place, without failing.
    let (s, v) = json_of(api.client.get(api.url("/api/overview")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert!(v["live_error"].as_str().is_some(), "{v}");
    assert!(v["environments"][1]["error"].as_str().is_some_and(|e| e.contains("staging")), "{v}");
    assert!(v["environments"][0]["overview"]["counts"].is_array(), "{v}");
    // /api/workers needs Redis: 503 with a JSON error.
    let (s, v) = json_of(api.client.get(api.url("/api/workers")).send().await.unwrap()).await;
    assert_eq!(s, 503, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_changing_routes_need_the_token() {
    let api = start(Some(TOKEN), &[]).await;
    let id = insert_row(&api.pool, "index", "1", 4).await;
    let routes = [
        api.bare.post(api.url("/api/extractions")).json(&index_body("1")),
        api.bare.post(api.url(&format!("/api/extractions/{id}/retry"))),
        api.bare.delete(api.url(&format!("/api/extractions/{id}"))),
    ];
    for r in routes {
        let missing = r.try_clone().unwrap();
        let missing = { let req = missing.build().unwrap(); api.bare.execute(req) };
        let (s, v) = json_of(missing.await.unwrap()).await;
        assert_eq!(s, 401, "{v}");
        assert!(v["error"].as_str().unwrap().contains("missing"));
        let wrong = r.try_clone().unwrap().bearer_auth("test-token-0123456789abcdeX");
        let resp = wrong.send().await.unwrap();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"registre-api\"");
        let (s, v) = json_of(resp).await;
        assert_eq!((s, v["error"].as_str()), (401, Some("wrong token")));
        assert!(!v.to_string().contains(TOKEN));
    }
    // Nothing changed.
    let status: i32 = sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(&api.pool).await.unwrap();
    assert_eq!(status, 4);
    let (s, _) = json_of(api.client.post(api.url(&format!("/api/extractions/{id}/retry"))).bearer_auth(TOKEN).send().await.unwrap()).await;
    assert_eq!(s, 200);

    // API_TOKEN unset: 403 saying so, even with a token.
    let open = start(None, &[]).await;
    let (s, v) = json_of(open.client.post(open.url("/api/extractions")).bearer_auth(TOKEN).json(&index_body("1")).send().await.unwrap()).await;
    assert_eq!(s, 403);
    assert!(v["error"].as_str().unwrap().contains("API_TOKEN is not set"), "{v}");
    // Reading too: every /api/* route is closed until API_TOKEN is set.
    for path in ["/api/extractions", "/api/overview", "/api/workers", "/api/stream", &format!("/api/extractions/{id}"), "/api/login"] {
        let (s, v) = json_of(open.bare.get(open.url(path)).bearer_auth(TOKEN).send().await.unwrap()).await;
        let method_ok = if path == "/api/login" { 405 } else { 403 };
        assert_eq!(s, method_ok, "{path}: {v}");
        if s == 403 {
            assert_eq!(v["error"].as_str(), Some(registre_api_lib::TOKEN_UNSET), "{path}");
        }
    }
    let (s, v) = json_of(open.bare.post(open.url("/api/login")).bearer_auth(TOKEN).send().await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (403, Some(registre_api_lib::TOKEN_UNSET)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_api_route_needs_the_token_reads_included_and_the_page_stays_open() {
    let api = start(Some(TOKEN), &[]).await;
    let id = insert_row(&api.pool, "index", "1", 5).await;
    set_columns(&api.pool, id, "file_content = 'TEXTE OCR SECRET', error_message = 'chemin/secret'").await;
    for path in ["/api/extractions", "/api/overview", "/api/workers", "/api/stream", &format!("/api/extractions/{id}")] {
        let resp = api.bare.get(api.url(path)).send().await.unwrap();
        let (s, v) = json_of(resp).await;
        assert_eq!((s, v["error"].as_str()), (401, Some("missing Authorization: Bearer <API_TOKEN> header")), "{path}");
        let (s, v) = json_of(api.bare.get(api.url(path)).bearer_auth("test-token-0123456789abcdeX").send().await.unwrap()).await;
        assert_eq!((s, v["error"].as_str()), (401, Some("wrong token")), "{path}");
        assert!(!v.to_string().contains("SECRET"), "{path}: {v}");
    }
    // With the token, the same reads answer.
    let (s, v) = json_of(api.client.get(api.url(&format!("/api/extractions/{id}"))).send().await.unwrap()).await;
    assert_eq!((s, v["file_content_excerpt"].as_str()), (200, Some("TEXTE OCR SECRET")));
    // The page, its assets and the probes hold no row data and stay open.
    for path in ["/", "/assets/dashboard.js", "/assets/dashboard.css", "/health", "/ready", "/metrics"] {
        let resp = api.bare.get(api.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains("SECRET"), "{path}");
    }
}

/// The status line, the headers (name: value, lower-case names, sorted, `date` left out) and the
/// body of a raw HTTP answer.
fn split_answer(answer: &str) -> (String, Vec<String>, String) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {answer}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let mut headers: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).filter(|l| !l.starts_with("date:")).collect();
    headers.sort();
    (status, headers, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_host_gets_403_with_a_json_reason_whatever_the_route() {
    let api = start(Some(TOKEN), &[("API_ALLOWED_HOSTS", "registre.example.com, 10.0.0.5".to_string())]).await;
    insert_row(&api.pool, "index", "1", 1).await;
    let expected_body = format!(r#"{{"error":"{}","reason":"host_not_allowed"}}"#, registre_api_lib::HOST_REFUSED);
    let request = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
    };
    let answer = registre_testkit::binary::raw_request(api.addr(), &request("/api/extractions", "evil.example")).await;
    eprintln!("answer to a foreign Host:\n{answer}");
    let (status, headers, body) = split_answer(&answer);
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(
        headers,
        vec![
            "connection: close".to_string(),
            format!("content-length: {}", expected_body.len()),
            "content-security-policy: frame-ancestors 'none'".to_string(),
            "content-type: application/json".to_string(),
            "x-content-type-options: nosniff".to_string(),
        ]
    );
    assert_eq!(body, expected_body);
    // A rebinding page's name, with or without port, on every kind of route, even with the token.
    let port = api.addr().rsplit(':').next().unwrap().to_string();
    for host in ["evil.example", &format!("evil.example:{port}"), "localhost.evil.example", "127.0.0.1.nip.io:3000", "[::2]", "localhost:x"] {
        for path in ["/api/extractions", "/api/overview", "/", "/health", "/metrics", "/api/login", "/nothing"] {
            let (status, _, body) = split_answer(&registre_testkit::binary::raw_request(api.addr(), &request(path, host)).await);
            assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 403 Forbidden", expected_body.as_str()), "Host {host}, {path}");
        }
    }
    // No Host at all (HTTP/1.0): refused too.
    let (status, _, _) = split_answer(&registre_testkit::binary::raw_request(api.addr(), "GET /health HTTP/1.0\r\n\r\n").await);
    assert_eq!(status, "HTTP/1.0 403 Forbidden");
    // The names an operator uses, with or without port, in any case.
    for host in ["localhost", &format!("localhost:{port}"), "LocalHost", "127.0.0.1", &format!("127.0.0.1:{port}"), "[::1]", &format!("[::1]:{port}"), "registre.example.com", "REGISTRE.example.com:443", "10.0.0.5:3000"] {
        let (status, _, body) = split_answer(&registre_testkit::binary::raw_request(api.addr(), &request("/api/extractions", host)).await);
        assert!(status.ends_with("200 OK"), "Host {host}: {status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_cookie_reads_and_streams_but_never_writes() {
    let api = start(Some(TOKEN), &[]).await;
    let waiting = insert_row(&api.pool, "index", "1", 1).await;
    let failed = insert_row(&api.pool, "acte", "2", 4).await;
    // A wrong token gets no cookie.
    let resp = api.bare.post(api.url("/api/login")).bearer_auth("test-token-0123456789abcdeX").send().await.unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
    assert_eq!(json_of(resp).await.0, 401);
    assert_eq!(json_of(api.bare.post(api.url("/api/login")).send().await.unwrap()).await.0, 401);

    let resp = api.bare.post(api.url("/api/login")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let attributes: HashSet<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    assert_eq!(attributes, HashSet::from(["Path=/api", "HttpOnly", "SameSite=Strict"]), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with(&format!("{}=", registre_api_lib::SESSION_COOKIE)));
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");

    // Reads with the cookie alone.
    let (s, v) = json_of(api.bare.get(api.url("/api/extractions")).header("cookie", &cookie).send().await.unwrap()).await;
    assert_eq!((s, v["rows"].as_array().map(Vec::len)), (200, Some(2)), "{v}");
    let (s, _) = json_of(api.bare.get(api.url(&format!("/api/extractions/{waiting}"))).header("cookie", &cookie).send().await.unwrap()).await;
    assert_eq!(s, 200);
    // The stream with the cookie alone: its first event.
    let request = format!("GET /api/stream HTTP/1.1\r\nHost: {}\r\nCookie: theme=dark; {cookie}\r\nAccept: text/event-stream\r\n\r\n", api.addr());
    let mut socket = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(socket).lines();
    let status = lines.next_line().await.unwrap().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await.expect("an event in time").unwrap().expect("open");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v["environments"][0]["overview"]["counts"].is_array(), "{v}");
            break;
        }
    }
    // Writes with the cookie: refused, nothing changed.
    let writes = [
        api.bare.delete(api.url(&format!("/api/extractions/{waiting}"))),
        api.bare.post(api.url(&format!("/api/extractions/{failed}/retry"))),
        api.bare.post(api.url("/api/extractions")).json(&index_body("3")),
    ];
    for w in writes {
        let (s, v) = json_of(w.header("cookie", &cookie).send().await.unwrap()).await;
        assert_eq!(s, 401, "{v}");
        assert!(v["error"].as_str().unwrap().contains("only reads"), "{v}");
    }
    let statuses: Vec<i32> = sqlx::query_scalar("SELECT status_id FROM extraction_queue ORDER BY status_id").fetch_all(&api.pool).await.unwrap();
    assert_eq!(statuses, vec![1, 4]);
    // Another process's session (a restart) is no session here.
    let other = start(Some(TOKEN), &[]).await;
    let other_cookie = other.bare.post(other.url("/api/login")).bearer_auth(TOKEN).send().await.unwrap().headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(other_cookie, cookie);
    assert_eq!(json_of(api.bare.get(api.url("/api/extractions")).header("cookie", &other_cookie).send().await.unwrap()).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answer_carries_the_security_headers() {
    let api = start(Some(TOKEN), &[]).await;
    let id = insert_row(&api.pool, "index", "1", 4).await;
    let requests = [
        api.bare.get(api.url("/")),
        api.bare.get(api.url("/assets/dashboard.js")),
        api.bare.get(api.url("/health")),
        api.bare.get(api.url("/ready")),
        api.bare.get(api.url("/metrics")),
        api.bare.get(api.url("/nothing")),
        api.bare.get(api.url("/api/extractions")),
        api.client.get(api.url("/api/extractions")),
        api.client.get(api.url(&format!("/api/extractions/{id}"))),
        api.client.post(api.url(&format!("/api/extractions/{id}/retry"))),
        api.client.post(api.url("/api/extractions")).header("content-type", "application/json").body(vec![b' '; 20_000]),
        api.bare.post(api.url("/api/login")).bearer_auth(TOKEN),
        api.bare.patch(api.url("/health")),
    ];
    for r in requests {
        let req = r.build().unwrap();
        let shown = format!("{} {}", req.method(), req.url());
        let resp = api.bare.execute(req).await.unwrap();
        assert_eq!(resp.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{shown}");
        assert_eq!(
            resp.headers().get("content-security-policy").map(|v| v.to_str().unwrap()),
            Some("frame-ancestors 'none'"),
            "{shown}"
        );
    }
    // The stream's answer too (read its head only).
    let mut socket = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    socket.write_all(format!("GET /api/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes()).await.unwrap();
    let mut lines = BufReader::new(socket).lines();
    let mut head = Vec::new();
    loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if line.is_empty() {
            break;
        }
        head.push(line.to_ascii_lowercase());
    }
    assert!(head.contains(&"x-content-type-options: nosniff".to_string()), "{head:?}");
    assert!(head.contains(&"content-security-policy: frame-ancestors 'none'".to_string()), "{head:?}");
    assert!(head.contains(&"content-type: text/event-stream".to_string()), "{head:?}");
}

/// Opens a stream with the token; returns the status and, on 200, the reader (kept open).
async fn open_stream(addr: &str) -> (u16, Option<tokio::io::Lines<BufReader<tokio::net::TcpStream>>>, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut lines = BufReader::new(socket).lines();
    let status: u16 = lines.next_line().await.unwrap().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    if status == 200 {
        return (status, Some(lines), String::new());
    }
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    (status, None, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_over_api_max_streams_get_503_and_a_closed_one_frees_its_place() {
    let api = start(Some(TOKEN), &[("API_MAX_STREAMS", "2".to_string())]).await;
    let (s1, first, _) = open_stream(api.addr()).await;
    let (s2, _second, _) = open_stream(api.addr()).await;
    assert_eq!((s1, s2), (200, 200));
    let (s3, none, body) = open_stream(api.addr()).await;
    assert_eq!(s3, 503, "{body}");
    assert!(none.is_none());
    assert!(body.contains(r#""reason":"too_many_streams""#) && body.contains("API_MAX_STREAMS"), "{body}");
    // The capped streams still get their events; a closed stream frees its place (the server sees
    // the close when it next writes, so poll until a new stream is accepted).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, _keep, body) = open_stream(api.addr()).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 503, "{body}");
        assert!(Instant::now() < deadline, "the closed stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_api_max_concurrent_a_read_gets_503_and_a_write_waits_its_turn() {
    let api = start(Some(TOKEN), &[("API_MAX_CONCURRENT", "1".to_string())]).await;
    let id = insert_row(&api.pool, "index", "1", 1).await;
    // Hold the table so the one request in progress (a list) stays in progress.
    let mut lock = api.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE extraction_queue IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let slow = tokio::spawn(api.client.get(api.url("/api/extractions")).send());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT id, document_source%'")
            .fetch_one(&api.pool)
            .await
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the list never reached the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = json_of(api.client.get(api.url("/api/workers")).send().await.unwrap()).await;
    assert_eq!((s, v["reason"].as_str()), (503, Some("too_many_requests_in_progress")), "{v}");
    // /health is not counted.
    assert_eq!(api.bare.get(api.url("/health")).send().await.unwrap().status(), 200);
    // A write waits for the place instead of being refused.
    let cancel = tokio::spawn(api.client.delete(api.url(&format!("/api/extractions/{id}"))).send());
    // Still full: reads are still refused while the write waits.
    assert_eq!(json_of(api.client.get(api.url("/api/overview")).send().await.unwrap()).await.0, 503);
    lock.rollback().await.unwrap();
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    let (s, v) = json_of(cancel.await.unwrap().unwrap()).await;
    assert_eq!((s, v["extraction"]["status_id"].as_i64()), (200, Some(4)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_validates_each_field_and_answers_duplicates_with_the_existing_row() {
    let api = start(Some(TOKEN), &[]).await;
    let post = |body: Value| api.client.post(api.url("/api/extractions")).bearer_auth(TOKEN).json(&body);
    let (s, v) = json_of(post(index_body("4 866 594")).send().await.unwrap()).await;
    assert_eq!((s, v["duplicate"].as_bool()), (201, Some(false)), "{v}");
    let id = v["extraction"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["extraction"]["status"], "En attente");
    let (s, v) = json_of(post(index_body("4 866 594")).send().await.unwrap()).await;
    assert_eq!((s, v["duplicate"].as_bool(), v["extraction"]["id"].as_str()), (200, Some(true), Some(id.as_str())));

    // One message per bad field.
    let cases = [
        (json!({"document_source": "index", "document_number": "1", "circonscription_fonciere": "Montréal"}), vec!["cadastre"]),
        (json!({"document_source": "plan_cadastraux", "document_number": "1"}), vec!["cadastre"]),
        (json!({"document_source": "acte", "document_number": "1", "circonscription_fonciere": "Québec"}), vec!["acte_type"]),
        (json!({"document_source": "deed", "document_number": "x".repeat(41)}), vec!["document_source", "document_number"]),
        (json!({"document_source": "index", "document_number": "1;", "circonscription_fonciere": "<b>", "cadastre": "c".repeat(101)}), vec!["document_number", "circonscription_fonciere", "cadastre"]),
        (json!({}), vec!["document_source", "document_number"]),
    ];
    for (body, fields) in cases {
        let (s, v) = json_of(post(body.clone()).send().await.unwrap()).await;
        assert_eq!(s, 400, "{body}: {v}");
        let got: Vec<&str> = v["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(got, fields, "{body}: {v}");
        assert!(v["fields"].as_array().unwrap().iter().all(|f| f["message"].as_str().is_some_and(|m| !m.is_empty())));
    }
    // Malformed JSON, wrong types, unknown fields, oversized bodies, unknown environments.
    let raw = |body: Vec<u8>| {
        api.client.post(api.url("/api/extractions")).bearer_auth(TOKEN).header("content-type", "application/json").body(body)
    };
    for (body, status) in [
        (b"{not json".to_vec(), 400),
        (b"".to_vec(), 400),
        (b"[1,2]".to_vec(), 400),
        (br#"{"document_source": 3}"#.to_vec(), 400),
        (br#"{"document_source": "index", "colour": "red"}"#.to_vec(), 400),
        (format!(r#"{{"document_number": "{}"}}"#, "9".repeat(20_000)).into_bytes(), 413),
    ] {
        let (s, v) = json_of(raw(body.clone()).send().await.unwrap()).await;
        assert_eq!(s, status, "{}: {v}", String::from_utf8_lossy(&body[..body.len().min(60)]));
        assert!(v["error"].as_str().is_some());
    }
    let (s, v) = json_of(api.client.post(api.url("/api/extractions?environment=staging")).bearer_auth(TOKEN).json(&index_body("2")).send().await.unwrap()).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("\"staging\" is not configured"), "{v}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue").fetch_one(&api.pool).await.unwrap();
    assert_eq!(rows, 1, "no bad request queued anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_pages_through_rows_inserted_meanwhile_and_refuses_bad_parameters() {
    let api = start(Some(TOKEN), &[]).await;
    let mut original = Vec::new();
    for i in 0..12 {
        original.push(insert_row(&api.pool, if i % 3 == 0 { "acte" } else { "index" }, &format!("{i}"), 1).await.to_string());
    }
    let mut seen = Vec::new();
    let mut url = api.url("/api/extractions?limit=5&environment=prod");
    let mut pages = 0;
    loop {
        let (s, v) = json_of(api.client.get(&url).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        pages += 1;
        seen.extend(v["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        insert_row(&api.pool, "index", &format!("late-{pages}"), 1).await;
        match v["next_cursor"].as_str() {
            Some(c) => url = api.url(&format!("/api/extractions?limit=5&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    original.reverse();
    assert_eq!(seen, original);

    let (s, v) = json_of(api.client.get(api.url("/api/extractions?source=acte&status=1")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);
    for bad in ["status=9", "status=abc", "source=deed", "limit=0", "limit=501", "limit=x", "cursor=nope", "environment=qa", "colour=red", "cursor=dj E6eDp4"] {
        let (s, v) = json_of(api.client.get(api.url(&format!("/api/extractions?{bad}"))).send().await.unwrap()).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn show_retry_and_cancel_with_their_conflicts_and_the_fencing_of_a_late_worker() {
    let api = start(Some(TOKEN), &[]).await;
    let failed = insert_row(&api.pool, "index", "1", 4).await;
    let (s, v) = json_of(api.client.get(api.url(&format!("/api/extractions/{failed}"))).send().await.unwrap()).await;
    assert_eq!((s, v["status"].as_str(), v["status_id"].as_i64()), (200, Some("Erreur"), Some(4)));
    let (s, _) = json_of(api.client.get(api.url(&format!("/api/extractions/{}", uuid::Uuid::new_v4()))).send().await.unwrap()).await;
    assert_eq!(s, 404);
    let (s, v) = json_of(api.client.get(api.url("/api/extractions/not-a-uuid")).send().await.unwrap()).await;
    assert_eq!(s, 400, "{v}");

    let retry = |id: String| api.client.post(api.url(&format!("/api/extractions/{id}/retry"))).bearer_auth(TOKEN);
    let (s, v) = json_of(retry(failed.to_string()).send().await.unwrap()).await;
    assert_eq!((s, v["extraction"]["status_id"].as_i64(), v["extraction"]["attempts"].as_i64()), (200, Some(1), Some(0)), "{v}");
    let (s, v) = json_of(retry(failed.to_string()).send().await.unwrap()).await;
    assert_eq!(s, 409);
    assert!(v["error"].as_str().unwrap().contains("only a row in Erreur"), "{v}");
    assert_eq!(json_of(retry(uuid::Uuid::new_v4().to_string()).send().await.unwrap()).await.0, 404);
    assert_eq!(json_of(retry("x".into()).send().await.unwrap()).await.0, 400);

    // A worker claims the row, an operator cancels it, the worker cannot complete it.
    let queue = PgQueue::from_pool(EnvName::Prod, api.pool.clone(), SETTINGS);
    let job = queue.claim_extraction("registre-worker-1", uuid::Uuid::new_v4()).await.unwrap().expect("claimed");
    assert_eq!(job.id, failed);
    let cancel = |id: String| api.client.delete(api.url(&format!("/api/extractions/{id}?by=alice"))).bearer_auth(TOKEN);
    let (s, v) = json_of(cancel(failed.to_string()).send().await.unwrap()).await;
    assert_eq!((s, v["extraction"]["status_id"].as_i64()), (200, Some(4)), "{v}");
    assert!(v["extraction"]["error_message"].as_str().unwrap().starts_with("cancelled by alice through registre-api at "), "{v}");
    assert_eq!(queue.complete_extraction(&job, "index/1.pdf", None).await.unwrap(), Transition::NotOwner);
    let (_, v) = json_of(api.client.get(api.url(&format!("/api/extractions/{failed}"))).send().await.unwrap()).await;
    assert_eq!((v["status_id"].as_i64(), v["supabase_path"].as_str()), (Some(4), None));
    // Final rows: 409.
    let (s, v) = json_of(cancel(failed.to_string()).send().await.unwrap()).await;
    assert_eq!(s, 409, "{v}");
    let done = insert_row(&api.pool, "acte", "2", 5).await;
    assert_eq!(json_of(cancel(done.to_string()).send().await.unwrap()).await.0, 409);
    assert_eq!(json_of(cancel(uuid::Uuid::new_v4().to_string()).send().await.unwrap()).await.0, 404);
    let bad_by = api.client.delete(api.url(&format!("/api/extractions/{done}?by=%3Cscript%3E"))).bearer_auth(TOKEN);
    assert_eq!(json_of(bad_by.send().await.unwrap()).await.0, 400);

    // What delivered a completed row's document after the fetcher's fallbacks is in its detail.
    let fetched = insert_row(&api.pool, "acte", "3", 1).await;
    let (_, v) = json_of(api.client.get(api.url(&format!("/api/extractions/{fetched}"))).send().await.unwrap()).await;
    assert!(v.get("fetched_as").is_some_and(|f| f.is_null()), "{v}");
    let job = queue.claim_extraction("registre-worker-1", uuid::Uuid::new_v4()).await.unwrap().expect("claimed");
    assert_eq!(job.id, fetched);
    let delivered = "circonscription_fonciere=Montréal, acte_type=Acte divers";
    assert_eq!(queue.complete_extraction(&job, "actes/3.pdf", Some(delivered)).await.unwrap(), Transition::Applied);
    let (s, v) = json_of(api.client.get(api.url(&format!("/api/extractions/{fetched}"))).send().await.unwrap()).await;
    assert_eq!((s, v["status_id"].as_i64(), v["fetched_as"].as_str()), (200, Some(3), Some(delivered)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overview_workers_and_metrics_in_prometheus_text() {
    let api = start(Some(TOKEN), &[]).await;
    for (source, status) in [("index", 1), ("index", 1), ("acte", 3), ("plan_cadastraux", 5)] {
        insert_row(&api.pool, source, "n", status).await;
    }
    let conn = registre_runtime::redis_connection(&api.config.redis_url).unwrap();
    let capacity = registre_capacity::CapacityManager::new(conn, registre_capacity::CapacitySettings::from_config(&api.config));
    assert!(capacity.try_lease("registre-worker-1-aa", registre_capacity::WorkerType::Registre).await.unwrap().is_ok());

    let (s, v) = json_of(api.client.get(api.url("/api/overview")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["statuses"]["6"], "OCR en traitement");
    let counts = v["environments"][0]["overview"]["counts"].as_array().unwrap();
    assert_eq!(counts.iter().map(|c| c["count"].as_u64().unwrap()).sum::<u64>(), 4);
    let (s, v) = json_of(api.client.get(api.url("/api/workers")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let server = api.config.server.id.clone().unwrap();
    assert!(v["workers"].as_array().unwrap().iter().any(|w| w["worker_id"] == "registre-worker-1-aa" && w["server"] == server.as_str()), "{v}");

    let resp = api.client.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{text}"))
    };
    assert_eq!(get("registre_queue_rows", &[("env", "prod"), ("status", "1"), ("source", "index")]), 2.0);
    assert_eq!(get("registre_queue_rows", &[("env", "prod"), ("status", "3"), ("source", "acte")]), 1.0);
    assert_eq!(get("registre_queue_rows", &[("env", "prod"), ("status", "2"), ("source", "acte")]), 0.0);
    assert!(get("registre_queue_oldest_waiting_seconds", &[("env", "prod"), ("stage", "extraction")]) >= 0.0);
    assert_eq!(get("registre_queue_completed_last_hour", &[("env", "prod")]), 1.0);
    assert_eq!(get("registre_capacity_cpu_allocated_vcpus", &[("server", &server)]), 3.0);
    assert_eq!(get("registre_capacity_ram_allocated_bytes", &[("server", &server)]), 1e9);
    assert_eq!(get("registre_workers", &[("server", &server), ("type", "registre")]), 1.0);
    assert_eq!(get("registre_ratelimit_requests_limit", &[]), 1600.0);
    assert_eq!(get("registre_up", &[("dependency", "redis")]), 1.0);
    capacity.release("registre-worker-1-aa").await.unwrap();
}

/// A strict reader of the Prometheus text format 0.0.4: every family has HELP and TYPE before its
/// samples, names and labels are well-formed, values parse. Returns (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut typed = HashSet::new();
    let mut helped = HashSet::new();
    let mut out = Vec::new();
    let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') && !n.starts_with(|c: char| c.is_ascii_digit());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_ok(name) && helped.insert(name.to_string()), "bad or repeated HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "repeated TYPE: {line}");
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(name_ok(k), "bad label name {k}: {line}");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => value.push(chars.next().unwrap().1),
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value: {line}"),
                        }
                    };
                    labels.insert(k.to_string(), value);
                    rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
                }
                (name.to_string(), labels)
            }
        };
        assert!(name.starts_with("registre_") && name_ok(&name), "{line}");
        assert!(typed.contains(&name) && helped.contains(&name), "sample before its HELP/TYPE: {line}");
        out.push((name, labels, value));
    }
    assert!(!out.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_delivers_a_change_without_polling_the_api() {
    let api = start(Some(TOKEN), &[]).await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(format!("GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut lines = BufReader::new(socket).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next_overview = async || -> Value {
        loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await.expect("an event within the deadline").unwrap().expect("stream open");
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str(data).unwrap();
            }
        }
    };
    let total = |v: &Value| -> u64 {
        v["environments"][0]["overview"]["counts"].as_array().map(|c| c.iter().map(|c| c["count"].as_u64().unwrap()).sum()).unwrap_or(0)
    };
    assert_eq!(total(&next_overview().await), 0);
    insert_row(&api.pool, "index", "live", 1).await;
    loop {
        let v = next_overview().await;
        if total(&v) == 1 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_requests_get_a_4xx_json_error_never_a_500() {
    let api = start(Some(TOKEN), &[]).await;
    let c = &api.client;
    let cases = [
        c.get(api.url("/nothing")),
        c.get(api.url("/api/extractions/%ZZ")),
        c.get(api.url("/api/extractions?status=%ZZ")),
        c.put(api.url("/api/extractions")).bearer_auth(TOKEN),
        c.patch(api.url("/health")),
        c.post(api.url("/api/extractions/00000000-0000-0000-0000-000000000000/retry?environment=%00")).bearer_auth(TOKEN),
        c.get(api.url(&format!("/api/extractions?cursor={}", "A".repeat(5000)))),
        c.get(api.url("/api/extractions/00000000-0000-0000-0000-000000000000?environment=")),
    ];
    for r in cases {
        let req = r.build().unwrap();
        let shown = format!("{} {}", req.method(), req.url());
        let resp = c.execute(req).await.unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{shown}: {status}");
        let (_, v) = json_of(resp).await;
        assert!(v["error"].as_str().is_some(), "{shown}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_supabase_rest_only_environment_answers_501_with_a_json_reason() {
    let extra = [
        ("STAGING_SUPABASE_URL", "http://127.0.0.1:9".to_string()),
        ("STAGING_SUPABASE_SERVICE_KEY", "service-key-not-shown-0123456789".to_string()),
    ];
    let api = start(Some(TOKEN), &extra).await;
    let id = uuid::Uuid::new_v4();
    let requests = [
        api.client.get(api.url("/api/extractions?environment=staging")),
        api.client.get(api.url(&format!("/api/extractions/{id}?environment=staging"))),
        api.client.post(api.url(&format!("/api/extractions/{id}/retry?environment=staging"))).bearer_auth(TOKEN),
        api.client.delete(api.url(&format!("/api/extractions/{id}?environment=staging"))).bearer_auth(TOKEN),
        api.client.post(api.url("/api/extractions?environment=staging")).bearer_auth(TOKEN).json(&index_body("4 866 594")),
    ];
    for request in requests {
        let (s, v) = json_of(request.send().await.unwrap()).await;
        assert_eq!(s, 501, "{v}");
        assert_eq!(v["reason"].as_str(), Some("supabase_rest_only"), "{v}");
        assert_eq!(v["needs"].as_str(), Some("STAGING_DATABASE_URL"), "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains("staging") && error.contains("STAGING_DATABASE_URL"), "{error}");
        assert!(!v.to_string().contains("service-key-not-shown"), "{v}");
    }
    // prod (direct) still works, and /ready does not call the REST-only environment down.
    let (s, _) = json_of(api.client.get(api.url("/api/extractions")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let (s, v) = json_of(api.client.get(api.url("/ready")).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["checks"]["staging"].as_str().is_some_and(|c| c.contains("Supabase REST")), "{v}");
}
