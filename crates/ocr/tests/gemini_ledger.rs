//! Honest token accounting (issue 10, item 3): the shared Redis limiter's ledger holds exactly
//! what the Gemini API used, also for calls slower than the limiter's window, calls whose
//! connection dropped and calls that timed out. The API is a local stand-in speaking raw HTTP/1.1
//! (so it can hold a call, drop a connection or never answer), checking every request (method,
//! path, API key header, JSON body) and answering in generateContent's documented shape, with
//! `usageMetadata.totalTokenCount` = prompt + candidates + thoughts tokens. It counts the tokens
//! it reported; the test compares that count with the limiter's rolling-window total.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_config::Secret;
use registre_ocr::{GeminiEngine, GeminiSettings, OcrEngine, Parallelism};
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_testkit::pdf;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "test-key-AIza-ledger-0123";
/// The limiter's window in this test (OCR_RATE_LIMIT_WINDOW_MS; 60 s in production). The late
/// charges (made at HOLD..TIMEOUT) stay in it until HOLD + WINDOW: the retries, the boosts and the
/// read that follow them have WINDOW - (TIMEOUT - HOLD) = 13 s, far more than a loaded machine needs.
const WINDOW: Duration = Duration::from_secs(15);
/// How long the stand-in holds every first extraction call: longer than the window, so each of
/// them is settled (or fails) after its grant left the window.
const HOLD: Duration = Duration::from_secs(16);
/// The engine's request timeout: above HOLD (held answers arrive), so a call that never gets an
/// answer times out at TIMEOUT, also after its grant left the window.
const TIMEOUT: Duration = Duration::from_secs(18);
/// The engine's estimate of a 2-page extraction call: 2 × (258 + 1000) + 300 (asserted against
/// the engine in gemini.rs, `extraction_then_boost_with_documented_requests_and_settled_usage`).
const EXTRACTION_ESTIMATE: u64 = 2 * (258 + 1000) + 300;

const EXTRACTED: &str = "=== PAGE 1 ===\nREGISTRE FONCIER DU QUEBEC\nLot 1 2O4 567   2O21-O3-15   Vente\n=== PAGE 2 ===\nLot 2 345 678   2019-11-02   Hypotheque\n";
const CORRECTED: &str = "=== PAGE 1 ===\nREGISTRE FONCIER DU QUÉBEC\nLot 1 204 567   2021-03-15   Vente\n=== PAGE 2 ===\nLot 2 345 678   2019-11-02   Hypothèque\n";

/// What the stand-in does with one request.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Answers 200 after `hold` with this usage (prompt, candidates, thoughts).
    Answer { hold: Duration, usage: (u64, u64, u64) },
    /// Reads the request, holds it, then closes the connection without a response.
    Drop { hold: Duration },
    /// Reads the request and never answers (the client times out).
    Hang,
}

#[derive(Default)]
struct StandIn {
    extraction_calls: AtomicUsize,
    boost_calls: AtomicUsize,
    /// Sum of the totalTokenCount of every answer it sent.
    reported: AtomicU64,
    /// Requests that were not what the real API accepts.
    violations: Mutex<Vec<String>>,
    /// Calls that got no answer (dropped or hung).
    unanswered: AtomicUsize,
}

impl StandIn {
    /// The script: the first four extraction calls are held past the window, then two answer (with
    /// more tokens than estimated), one is dropped, one never answered; every later call (the
    /// engine's retries and the boost calls) answers at once.
    fn act(&self, model: &str) -> Act {
        if model == "gemini-2.0-flash" {
            match self.extraction_calls.fetch_add(1, Ordering::SeqCst) {
                0 | 3 => Act::Answer { hold: HOLD, usage: (600, 2400, 900) },
                1 => Act::Drop { hold: HOLD },
                2 => Act::Hang,
                _ => Act::Answer { hold: Duration::ZERO, usage: (600, 2200, 0) },
            }
        } else {
            self.boost_calls.fetch_add(1, Ordering::SeqCst);
            // gemini-2.5-pro thinks: thoughts tokens are part of the total, far above the estimate.
            Act::Answer { hold: Duration::ZERO, usage: (500, 450, 2600) }
        }
    }

    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

/// Reads one HTTP/1.1 request: (request line, headers lower-cased, body).
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((request_line, headers, body))
}

async fn serve_one(stand_in: Arc<StandIn>, mut socket: TcpStream) {
    let Some((request_line, headers, body)) = read_request(&mut socket).await else { return };
    // POST /v1beta/models/{model}:generateContent HTTP/1.1, key in x-goog-api-key, JSON body.
    let model = request_line
        .strip_prefix("POST /v1beta/models/")
        .and_then(|rest| rest.strip_suffix(":generateContent HTTP/1.1"))
        .unwrap_or("")
        .to_string();
    if model.is_empty() {
        stand_in.violation(format!("unexpected request line {request_line:?}"));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if header("x-goog-api-key") != Some(KEY) {
        stand_in.violation(format!("{model}: missing or wrong x-goog-api-key"));
    }
    if header("content-type") != Some("application/json") {
        stand_in.violation(format!("{model}: content-type {:?}", header("content-type")));
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parts = json["contents"][0]["parts"].as_array().cloned().unwrap_or_default();
    if json["contents"][0]["role"] != "user" || parts.is_empty() {
        stand_in.violation(format!("{model}: body is not a generateContent request: {json}"));
    }
    if model == "gemini-2.0-flash" && parts[0]["inline_data"]["mime_type"] != "application/pdf" {
        stand_in.violation("extraction call without the inline PDF".into());
    }

    match stand_in.act(&model) {
        Act::Answer { hold, usage: (prompt, candidates, thoughts) } => {
            tokio::time::sleep(hold).await;
            let total = prompt + candidates + thoughts;
            let text = if model == "gemini-2.0-flash" { EXTRACTED } else { CORRECTED };
            let answer = json!({
                "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": candidates,
                    "thoughtsTokenCount": thoughts,
                    "totalTokenCount": total,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
                },
                "modelVersion": model,
                "responseId": "ledger-test"
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            if socket.write_all(response.as_bytes()).await.is_ok() {
                // Counted once the answer is on its way: the client reads it and settles it.
                stand_in.reported.fetch_add(total, Ordering::SeqCst);
            }
            let _ = socket.shutdown().await;
        }
        Act::Drop { hold } => {
            tokio::time::sleep(hold).await;
            stand_in.unanswered.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
        Act::Hang => {
            stand_in.unanswered.fetch_add(1, Ordering::SeqCst);
            // Until the client gives up and closes the connection.
            let mut sink = [0u8; 1024];
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}

async fn serve() -> (String, Arc<StandIn>) {
    let stand_in = Arc::new(StandIn::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = stand_in.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_one(s.clone(), socket));
        }
    });
    (format!("http://{addr}/v1beta"), stand_in)
}

fn document() -> Vec<u8> {
    let (pages, _) = pdf::registry_index(2, 3);
    pdf::pdf(&pages)
}

/// Four documents at once through one engine and the real Redis limiter with a 15 s window. Their
/// first extraction calls are all held 16 s: two then answer with more tokens than estimated (late
/// settles), one connection is dropped and one call times out (late failures: their estimates
/// stay charged); the retries and the boost calls (thinking tokens, far above their estimates)
/// answer at once. Every grant-time estimate has left the window by the end, so the window holds
/// exactly the late and later charges: what the stand-in reported plus the two failed calls'
/// estimates. The old code dropped late settles and refunded failed calls (window total 4 boosts
/// + 2 retries only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_holds_what_the_api_reported_for_late_dropped_and_timed_out_calls() {
    let url = registre_testkit::shared_redis_url();
    let conn = redis::Client::open(url.as_str()).unwrap().get_connection_manager().await.unwrap();
    let limiter = RateLimiter::new(
        conn,
        RateLimitSettings {
            name: registre_testkit::unique("ocr-ledger"),
            requests_per_window: 1000,
            tokens_per_window: 10_000_000,
            window: WINDOW,
            arrival_margin: Duration::ZERO,
        },
    )
    .unwrap();
    let (base, stand_in) = serve().await;
    let settings = GeminiSettings {
        request_timeout: TIMEOUT,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        max_attempts: 3,
        ..GeminiSettings::new(&base, Secret::new(KEY))
    };
    let engine = Arc::new(GeminiEngine::new(settings, limiter.clone()).unwrap());

    let mut documents = Vec::new();
    for _ in 0..4 {
        let engine = engine.clone();
        documents.push(tokio::spawn(async move { engine.extract(&document(), Parallelism::ONE).await }));
    }
    let mut tokens_used = 0;
    for d in documents {
        let out = d.await.unwrap().unwrap_or_else(|e| panic!("document failed: {e}"));
        assert_eq!(out.pages.len(), 2);
        tokens_used += out.tokens_used;
    }
    let status = limiter.status().await.unwrap();
    let mut sync = registre_testkit::redis_sync(&url);
    let charges: Vec<(String, u64)> =
        redis::cmd("ZRANGE").arg(&limiter.keys().charges).arg(0).arg(-1).arg("WITHSCORES").query(&mut sync).unwrap();
    let tokens: Vec<(String, u64)> = redis::cmd("HGETALL").arg(&limiter.keys().tokens).query(&mut sync).unwrap();
    println!("charges (id, ms): {charges:?}\ntokens: {tokens:?}\nnow {}", status.now_ms);

    let violations = stand_in.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "requests the real API would refuse: {violations:?}");
    assert_eq!(stand_in.extraction_calls.load(Ordering::SeqCst), 6, "4 first calls + 2 retries of the failed ones");
    assert_eq!(stand_in.boost_calls.load(Ordering::SeqCst), 4);
    assert_eq!(stand_in.unanswered.load(Ordering::SeqCst), 2);
    let reported = stand_in.reported.load(Ordering::SeqCst);
    assert_eq!(reported, 2 * 3900 + 2 * 2800 + 4 * 3550);
    assert_eq!(tokens_used, reported, "the engine reports the totalTokenCount of every answer");
    println!(
        "ledger: {} tokens in the {} s window; stand-in reported {reported} + 2 failed calls × {EXTRACTION_ESTIMATE}",
        status.tokens_in_window,
        WINDOW.as_secs()
    );
    assert_eq!(
        status.tokens_in_window,
        reported + 2 * EXTRACTION_ESTIMATE,
        "the window must hold every reported token and the estimates of the calls that failed after being sent"
    );
}
