//! The Gemini engine against testkit's stand-in for the generateContent API (the one the fleet
//! and ledger tests use): it checks method, path, API key header and JSON body of every request
//! and answers in the API's documented shape (candidates[0].content.parts[0].text,
//! usageMetadata); scripted failures check the rate-limiter protocol (admit → settle with usage,
//! 429 → cooldown with Retry-After), retries of 5xx, and the readable error of a 400.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use registre_config::Secret;
use registre_ocr::{ApiLimiter, GeminiEngine, GeminiSettings, LimiterError, OcrEngine, OcrError, Parallelism, PAGE_SEPARATOR};
use registre_testkit::gemini::{Act, GeminiStandIn, Usage};
use registre_testkit::pdf;
use serde_json::json;

const KEY: &str = "test-key-AIza-0123456789";

/// Starts the stand-in answering `acts` in order; returns its base URL and the stand-in.
async fn serve(acts: Vec<Act>) -> (String, GeminiStandIn) {
    let server = GeminiStandIn::sequence(&[KEY], acts).await;
    (server.base_url.clone(), server)
}

/// The documented success shape of generateContent, without thinking tokens.
fn answer(text: &str, prompt: u64, candidates: u64) -> Act {
    thinking_answer(text, prompt, candidates, 0)
}

/// A thinking model (gemini-2.5-pro) also reports `thoughtsTokenCount`, and `totalTokenCount`
/// (what the quota counts) includes them.
fn thinking_answer(text: &str, prompt: u64, candidates: u64, thoughts: u64) -> Act {
    Act::answer(text, Usage { prompt, candidates, thoughts })
}

/// The requests the stand-in saw, after checking none of them is one the real API would refuse.
fn seen(server: &GeminiStandIn) -> Vec<registre_testkit::gemini::Call> {
    assert_eq!(server.violations(), Vec::<String>::new(), "requests the real API would refuse");
    server.requests()
}

/// Records the limiter protocol instead of talking to Redis.
#[derive(Default)]
struct RecordingLimiter {
    admitted: Mutex<Vec<u64>>,
    settled: Mutex<Vec<(usize, u64)>>,
    cooldowns: Mutex<Vec<Duration>>,
}

impl ApiLimiter for RecordingLimiter {
    type Ticket = usize;

    async fn admit(&self, estimated_tokens: u64) -> Result<usize, LimiterError> {
        let mut admitted = self.admitted.lock().unwrap();
        admitted.push(estimated_tokens);
        Ok(admitted.len() - 1)
    }

    async fn settle(&self, ticket: usize, actual_tokens: u64) {
        self.settled.lock().unwrap().push((ticket, actual_tokens));
    }

    async fn cooldown(&self, duration: Duration) {
        self.cooldowns.lock().unwrap().push(duration);
    }
}

fn engine(base: &str, limiter: Arc<RecordingLimiter>) -> GeminiEngine<Arc<RecordingLimiter>> {
    let settings = GeminiSettings {
        extract_model: "gemini-2.0-flash".into(),
        boost_model: "gemini-2.5-pro".into(),
        temperature: 0.2,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_attempts: 4,
        ..GeminiSettings::new(base, Secret::new(KEY))
    };
    GeminiEngine::new(settings, limiter).unwrap()
}

fn document() -> Vec<u8> {
    let (pages, _) = pdf::registry_index(2, 3);
    pdf::pdf(&pages)
}

const EXTRACTED: &str = "=== PAGE 1 ===\nREGISTRE FONCIER DU QUEBEC\nLot 1 2O4 567   2O21-O3-15   Vente   Tremblay, Jean\n=== PAGE 2 ===\nLot 2 345 678   2019-11-02   Hypotheque   Gagnon, Marie\n";
const CORRECTED: &str = "=== PAGE 1 ===\nREGISTRE FONCIER DU QUÉBEC\nLot 1 204 567   2O21-O3-15   Vente   Tremblay, Jean\n=== PAGE 2 ===\nLot 2 345 678   2019-11-02   Hypothèque   Gagnon, Marie\n";

#[tokio::test]
async fn extraction_then_boost_with_documented_requests_and_settled_usage() {
    // The boost model thinks: 1500 thoughts tokens count in its usage.
    let (base, server) = serve(vec![answer(EXTRACTED, 1200, 300), thinking_answer(CORRECTED, 400, 380, 1500)]).await;
    let limiter = Arc::new(RecordingLimiter::default());
    let pdf_bytes = document();

    let out = engine(&base, limiter.clone()).extract(&pdf_bytes, Parallelism::ONE).await.unwrap();

    // Raw = the extraction's pages; boosted = the boost model's text with the rules applied.
    assert_eq!(out.engine, "gemini");
    assert_eq!(out.pages.len(), 2);
    assert_eq!(out.pages[0], "REGISTRE FONCIER DU QUEBEC\nLot 1 2O4 567   2O21-O3-15   Vente   Tremblay, Jean");
    assert_eq!(out.raw, out.pages.join(PAGE_SEPARATOR));
    assert_eq!(
        out.boosted,
        format!("REGISTRE FONCIER DU QUÉBEC\nLot 1 204 567   2021-03-15   Vente   Tremblay, Jean{PAGE_SEPARATOR}Lot 2 345 678   2019-11-02   Hypothèque   Gagnon, Marie")
    );
    assert_eq!(out.tokens_used, 1500 + 2280, "totalTokenCount, thinking tokens included");

    // Method, path (the model), key header and content type are checked by the stand-in.
    let seen = seen(&server);
    assert_eq!(seen.len(), 2);
    for (request, model) in seen.iter().zip(["gemini-2.0-flash", "gemini-2.5-pro"]) {
        assert_eq!(request.model, model);
        assert_eq!(request.key, KEY);
        assert_eq!(request.body["generationConfig"]["temperature"], json!(0.2));
        assert_eq!(request.body["contents"][0]["role"], "user");
    }
    // Extraction: the PDF inline (base64) and the prompt.
    let parts = seen[0].body["contents"][0]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["inline_data"]["mime_type"], "application/pdf");
    let sent = base64::engine::general_purpose::STANDARD.decode(parts[0]["inline_data"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(sent, pdf_bytes, "the PDF is sent unchanged");
    assert!(parts[1]["text"].as_str().unwrap().contains("=== PAGE n ==="));
    // Boost: the extracted text, pages marked.
    let boost_text = seen[1].body["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(boost_text.contains("=== PAGE 2 ===\nLot 2 345 678"), "{boost_text}");

    // Rate limiter: admitted with estimates, settled with usageMetadata.totalTokenCount (thinking
    // tokens included, not prompt + candidates).
    let admitted = limiter.admitted.lock().unwrap().clone();
    assert_eq!(admitted.len(), 2);
    assert_eq!(admitted[0], 2 * (258 + 1000) + 300, "2 PDF pages estimated");
    assert!(admitted[1] > 300);
    assert_eq!(*limiter.settled.lock().unwrap(), vec![(0, 1500), (1, 2280)]);
    assert!(limiter.cooldowns.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_429_sets_the_shared_cooldown_from_retry_after_then_retries() {
    let (base, server) = serve(vec![
        Act::error(429, Some(1), "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
        answer(EXTRACTED, 1000, 200),
        answer(CORRECTED, 300, 300),
    ])
    .await;
    let limiter = Arc::new(RecordingLimiter::default());

    let out = engine(&base, limiter.clone()).extract(&document(), Parallelism::ONE).await.unwrap();
    assert_eq!(out.pages.len(), 2);

    assert_eq!(*limiter.cooldowns.lock().unwrap(), vec![Duration::from_secs(1)], "Retry-After: 1 → 1 s shared cooldown");
    // The rejected call is settled with 0 tokens, the retry is admitted again.
    assert_eq!(*limiter.settled.lock().unwrap(), vec![(0, 0), (1, 1200), (2, 600)]);
    let seen = seen(&server);
    assert_eq!(seen.len(), 3);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_millis(950), "the retry came {waited:?} after the 429, before Retry-After");
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_then_succeeds() {
    let (base, server) = serve(vec![
        Act::error(500, None, "An internal error has occurred.", "INTERNAL"),
        Act::error(503, None, "The model is overloaded.", "UNAVAILABLE"),
        answer(EXTRACTED, 1000, 200),
        answer(CORRECTED, 300, 300),
    ])
    .await;
    let limiter = Arc::new(RecordingLimiter::default());

    let out = engine(&base, limiter.clone()).extract(&document(), Parallelism::ONE).await.unwrap();
    assert_eq!(out.tokens_used, 1800);
    assert_eq!(seen(&server).len(), 4);
    assert!(limiter.cooldowns.lock().unwrap().is_empty(), "a 5xx is no reason for a shared cooldown");
    assert_eq!(*limiter.settled.lock().unwrap(), vec![(0, 0), (1, 0), (2, 1200), (3, 600)]);
}

#[tokio::test]
async fn a_400_is_a_readable_error_with_the_api_message_and_no_retry() {
    let (base, server) = serve(vec![Act::error(400, None, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")]).await;
    let limiter = Arc::new(RecordingLimiter::default());

    let err = engine(&base, limiter.clone()).extract(&document(), Parallelism::ONE).await.unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, OcrError::ApiRejected { status: 400, .. }), "{err:?}");
    assert_eq!(
        message,
        "Gemini API refused the extraction call (HTTP 400): API key not valid. Please pass a valid API key. (INVALID_ARGUMENT)"
    );
    assert!(!message.contains(KEY) && !format!("{err:?}").contains(KEY));
    assert_eq!(seen(&server).len(), 1, "a 400 is not retried");
    assert_eq!(*limiter.settled.lock().unwrap(), vec![(0, 0)]);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_attempts_with_the_last_error() {
    let script = (0..4).map(|_| Act::error(502, None, "Bad gateway", "UNAVAILABLE")).collect();
    let (base, server) = serve(script).await;
    let err = engine(&base, Arc::new(RecordingLimiter::default())).extract(&document(), Parallelism::ONE).await.unwrap_err();
    assert_eq!(err.to_string(), "Gemini API extraction call failed after 4 attempts: HTTP 502: Bad gateway (UNAVAILABLE)");
    assert_eq!(seen(&server).len(), 4);
}

#[tokio::test]
async fn not_a_pdf_is_refused_before_any_call() {
    let (base, server) = serve(vec![]).await;
    let err = engine(&base, Arc::new(RecordingLimiter::default())).extract(b"hello", Parallelism::ONE).await.unwrap_err();
    assert!(err.to_string().starts_with("PDF could not be rendered: "), "{err}");
    assert!(seen(&server).is_empty());
}

#[test]
fn the_engine_debug_output_hides_the_key() {
    let engine = GeminiEngine::new(GeminiSettings::new("http://127.0.0.1:9/v1beta", Secret::new(KEY)), registre_ocr::Unlimited).unwrap();
    assert!(!format!("{engine:?}").contains(KEY));
}

/// With the real shared limiter in Redis (what the pool passes in): every call is counted in the
/// window, the 429'd call's estimate is refunded (settled with 0), the others are charged exactly
/// the reported totalTokenCount, and the 429 set the shared cooldown.
#[tokio::test]
async fn with_the_shared_redis_limiter_usage_is_settled_and_429_cools_everyone_down() {
    use registre_ratelimit::{RateLimitSettings, RateLimiter};
    let url = registre_testkit::shared_redis_url();
    let conn = redis::Client::open(url.as_str()).unwrap().get_connection_manager().await.unwrap();
    let settings = RateLimitSettings {
        name: registre_testkit::unique("ocr-gemini"),
        requests_per_window: 100,
        tokens_per_window: 1_000_000,
        window: Duration::from_secs(60),
        arrival_margin: Duration::ZERO,
    };
    let limiter = RateLimiter::new(conn, settings).unwrap();
    let (base, server) = serve(vec![
        Act::error(429, Some(5), "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
        answer(EXTRACTED, 1000, 200),
        answer(CORRECTED, 300, 300),
    ])
    .await;
    let engine = GeminiEngine::new(GeminiSettings::new(&base, Secret::new(KEY)), limiter.clone()).unwrap();

    let running = tokio::spawn(async move { engine.extract(&document(), Parallelism::ONE).await.map(|o| o.tokens_used) });
    // While the engine waits out the 429, another worker asking the same limiter is told to wait:
    // polled until the cooldown shows (deadline 30 s), then asked while it runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while limiter.status().await.unwrap().cooldown_remaining.is_none() {
        assert!(Instant::now() < deadline, "the 429 never set the shared cooldown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match limiter.acquire(10).await.unwrap() {
        registre_ratelimit::Decision::Wait { reason, wait } => {
            assert_eq!(reason, registre_ratelimit::WaitReason::Cooldown);
            assert!(wait <= Duration::from_secs(5), "{wait:?}");
        }
        other => panic!("expected a cooldown wait, got {other:?}"),
    }
    assert_eq!(running.await.unwrap().unwrap(), 1800);

    let status = limiter.status().await.unwrap();
    assert_eq!(status.requests_in_window, 3, "the 429'd call, the retry and the boost call");
    assert_eq!(status.tokens_in_window, 1200 + 600, "charged the reported totalTokenCount, the 429 refunded");
    let seen = seen(&server);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(4900), "retry before the cooldown ended");
}

/// A call that never connected cannot have been served: settled with 0 tokens at every attempt.
/// (A call that failed after it was sent stays charged: see gemini_ledger.rs.)
#[tokio::test]
async fn a_call_that_never_connected_is_settled_with_zero_tokens() {
    let port = registre_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}/v1beta");
    let limiter = Arc::new(RecordingLimiter::default());
    let err = engine(&base, limiter.clone()).extract(&document(), Parallelism::ONE).await.unwrap_err();
    assert!(err.to_string().contains("connection failed"), "{err}");
    assert_eq!(*limiter.settled.lock().unwrap(), vec![(0, 0), (1, 0), (2, 0), (3, 0)]);
}
