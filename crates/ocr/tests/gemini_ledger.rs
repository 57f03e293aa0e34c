//! Honest token accounting (issue 10, item 3): the shared Redis limiter's ledger holds exactly
//! what the Gemini API used, also for calls slower than the limiter's window, calls whose
//! connection dropped and calls that timed out. The API is the testkit's Gemini stand-in
//! (registre_testkit::gemini: raw HTTP/1.1, so it can hold a call, drop a connection or never
//! answer; it checks every request and answers in generateContent's documented shape, with
//! `usageMetadata.totalTokenCount` = prompt + candidates + thoughts tokens). It counts the tokens
//! it reported; the test compares that count with the limiter's rolling-window total.

use std::sync::Arc;
use std::time::Duration;

use registre_config::Secret;
use registre_ocr::{GeminiEngine, GeminiSettings, OcrEngine, Parallelism};
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_testkit::gemini::{Act, GeminiStandIn, Usage, EXTRACT_MODEL};
use registre_testkit::pdf;

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

const BOOST_MODEL: &str = "gemini-2.5-pro";

/// The script: the first four extraction calls are held past the window, then two answer (with
/// more tokens than estimated), one is dropped, one never answered; every later call (the engine's
/// retries and the boost calls) answers at once.
fn act(model: &str, before: usize) -> Act {
    let answer = |hold, text: &str, (prompt, candidates, thoughts)| Act::Answer {
        hold,
        text: text.to_string(),
        usage: Usage { prompt, candidates, thoughts },
    };
    if model == EXTRACT_MODEL {
        match before {
            0 | 3 => answer(HOLD, EXTRACTED, (600, 2400, 900)),
            1 => Act::Drop { hold: HOLD },
            2 => Act::Hang,
            _ => answer(Duration::ZERO, EXTRACTED, (600, 2200, 0)),
        }
    } else {
        // gemini-2.5-pro thinks: thoughts tokens are part of the total, far above the estimate.
        answer(Duration::ZERO, CORRECTED, (500, 450, 2600))
    }
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
    let stand_in = GeminiStandIn::scripted(&[KEY], act).await;
    let settings = GeminiSettings {
        request_timeout: TIMEOUT,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        max_attempts: 3,
        ..GeminiSettings::new(&stand_in.base_url, Secret::new(KEY))
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

    let violations = stand_in.violations();
    assert!(violations.is_empty(), "requests the real API would refuse: {violations:?}");
    assert_eq!(stand_in.calls_to(EXTRACT_MODEL), 6, "4 first calls + 2 retries of the failed ones");
    assert_eq!(stand_in.calls_to(BOOST_MODEL), 4);
    assert_eq!(stand_in.calls(), 10, "no call to any other model");
    assert_eq!(stand_in.unanswered(), 2);
    let reported = stand_in.reported_tokens();
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
