//! `gemini-stand-in`: testkit's Gemini generateContent stand-in (crates/testkit/src/gemini.rs) as a
//! small program, so a script (scripts/soak.sh) can run it beside the fleet. It checks every
//! request as the library does and prints each request the real API would refuse on stderr.
//!
//! Usage: gemini-stand-in --keys K1[,K2...] [--port N] [--rpm N] [--refuse-marker TEXT] [--hold-ms N]
//! - `--port`: 0 (default) takes a free port; the first stdout line is the base URL to give as
//!   GEMINI_API_BASE_URL (`http://127.0.0.1:<port>/v1beta`).
//! - `--rpm`: the key's quota of calls per rolling minute, enforced as the API does (429
//!   RESOURCE_EXHAUSTED with Retry-After); 0 (default) for none.
//! - `--refuse-marker`: an extraction call whose inline PDF contains TEXT is refused with the API's
//!   400 INVALID_ARGUMENT for an input it cannot process, as every retry of it would be.
//! - `--hold-ms`: how long each answer takes (default 200).
//!
//! Exit 2 with one line naming the argument when the arguments are wrong.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use registre_testkit::gemini::{Act, Call, GeminiStandIn, Usage, DEFAULT_TEXT, EXTRACT_MODEL};

struct Args {
    port: u16,
    keys: Vec<String>,
    rpm: usize,
    refuse_marker: Option<Vec<u8>>,
    hold: Duration,
}

fn usage(problem: &str) -> ! {
    eprintln!("gemini-stand-in: {problem} (usage: gemini-stand-in --keys K1[,K2] [--port N] [--rpm N] [--refuse-marker TEXT] [--hold-ms N])");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut args = Args { port: 0, keys: Vec::new(), rpm: 0, refuse_marker: None, hold: Duration::from_millis(200) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => args.port = value().parse().unwrap_or_else(|_| usage("--port must be a port number")),
            "--keys" => args.keys = value().split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect(),
            "--rpm" => args.rpm = value().parse().unwrap_or_else(|_| usage("--rpm must be a whole number")),
            "--refuse-marker" => args.refuse_marker = Some(value().into_bytes()).filter(|m| !m.is_empty()),
            "--hold-ms" => args.hold = Duration::from_millis(value().parse().unwrap_or_else(|_| usage("--hold-ms must be a whole number"))),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if args.keys.is_empty() {
        usage("--keys is required");
    }
    args
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .unwrap_or_else(|e| usage(&format!("--port {}: cannot listen: {e}", args.port)));
    // Arrival times per key over the last minute: the quota the API enforces per key.
    let arrivals: Mutex<HashMap<String, VecDeque<Instant>>> = Mutex::new(HashMap::new());
    let (rpm, marker, hold) = (args.rpm, args.refuse_marker.clone(), args.hold);
    let script = move |call: &Call, _before: usize| {
        if rpm > 0 {
            let now = Instant::now();
            let mut all = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            let seen = all.entry(call.key.clone()).or_default();
            while seen.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                seen.pop_front();
            }
            if seen.len() >= rpm {
                let wait = seen.front().map(|t| 60 - now.duration_since(*t).as_secs().min(59)).unwrap_or(1);
                eprintln!("gemini-stand-in: 429 RESOURCE_EXHAUSTED: {rpm} calls of this key in the last minute");
                return Act::error(429, Some(wait), "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED");
            }
            seen.push_back(now);
        }
        if call.model == EXTRACT_MODEL {
            if let (Some(marker), Some(pdf)) = (&marker, call.inline_pdf()) {
                if contains(&pdf, marker) {
                    return Act::error(
                        400,
                        None,
                        "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                        "INVALID_ARGUMENT",
                    );
                }
            }
        }
        Act::Answer { hold, text: DEFAULT_TEXT.to_string(), usage: Usage { prompt: 400, candidates: 100, thoughts: 0 } }
    };
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    let stand_in = GeminiStandIn::serve_on(listener, &keys, script);
    println!("{}", stand_in.base_url);
    // Requests the real API would refuse, as they arrive (a soak counts these lines).
    let mut reported = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let violations = stand_in.violations();
        for v in &violations[reported..] {
            eprintln!("gemini-stand-in: VIOLATION {v}");
        }
        reported = violations.len();
    }
}
