//! A local stand-in for the Gemini generateContent API, speaking raw HTTP/1.1 so a test can also
//! hold a call, drop its connection or never answer. It answers like the real API documents
//! (`candidates[0].content.parts[0].text`, `usageMetadata` whose `totalTokenCount` is prompt +
//! candidates + thoughts tokens) and checks the exact request the engine must send: `POST
//! /v1beta/models/{model}:generateContent HTTP/1.1`, one of the accepted keys in
//! `x-goog-api-key`, `content-type: application/json`, a body whose `contents[0]` is the user's
//! non-empty parts, and, for the extraction model, the PDF inline first (unless the call asks for
//! structured output: the index call sends text). A `generationConfig.responseSchema` is checked
//! as the API documents its Schema object (an OpenAPI 3.0 subset: known fields only, `type` one of
//! the Type enum, OBJECT with non-empty `properties`, `required` and `propertyOrdering` naming
//! properties, ARRAY with `items`, `enum` on STRING) and requires `responseMimeType:
//! application/json`. A request the real API
//! would refuse is recorded as a violation (tests assert there are none) and still answered, so
//! one bad request does not hang the code under test.
//!
//! It records every call (when, with which key, to which model, with which body) for the
//! rate-limit checks (busiest rolling window) and the request checks, and the tokens it reported,
//! for the ledger checks. A script may also answer with one of the API's documented errors (429
//! with Retry-After, 400, 5xx) to test retries and cooldowns.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The engine's default extraction model (GeminiSettings, OCR_EXTRACT_MODEL_GEMINI): its calls
/// must carry the PDF inline.
pub const EXTRACT_MODEL: &str = "gemini-2.0-flash";

/// The text of [`GeminiStandIn::start`]'s answers: one page of a registry index.
pub const DEFAULT_TEXT: &str = "=== PAGE 1 ===\nREGISTRE FONCIER DU QUÉBEC\nLot 1 234 567\n";

/// Tokens one answer reports in `usageMetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub candidates: u64,
    /// Thinking tokens (models that think); omitted from the answer when 0, as the API does.
    pub thoughts: u64,
}

impl Usage {
    /// What the API reports as `totalTokenCount`.
    pub fn total(&self) -> u64 {
        self.prompt + self.candidates + self.thoughts
    }
}

/// What the stand-in does with one call.
#[derive(Debug, Clone)]
pub enum Act {
    /// Answers 200 after `hold` with `text` and `usage`.
    Answer { hold: Duration, text: String, usage: Usage },
    /// Reads the request, holds it, then closes the connection without a response.
    Drop { hold: Duration },
    /// Reads the request and never answers (the client times out and closes).
    Hang,
    /// Answers `status` with the API's error body (`{"error": {"code", "message", "status"}}`)
    /// and, when given, a `Retry-After` header in seconds.
    Error { status: u16, retry_after: Option<u64>, message: String, code: String },
}

impl Act {
    /// A 200 answered at once.
    pub fn answer(text: &str, usage: Usage) -> Act {
        Act::Answer { hold: Duration::ZERO, text: text.to_string(), usage }
    }

    /// One of the API's documented errors.
    pub fn error(status: u16, retry_after: Option<u64>, message: &str, code: &str) -> Act {
        Act::Error { status, retry_after, message: message.to_string(), code: code.to_string() }
    }
}

/// Decides what to do with a call: (model, how many calls to that model came before it).
pub type Script = dyn Fn(&str, usize) -> Act + Send + Sync;

/// Decides what to do with a call from the whole call (its key, model and body, e.g. the PDF it
/// carries) and how many calls to that model came before it.
pub type CallScript = dyn Fn(&Call, usize) -> Act + Send + Sync;

/// One call received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Since the stand-in started.
    pub at: Duration,
    /// The `x-goog-api-key` header (empty when missing).
    pub key: String,
    /// From the path `/v1beta/models/{model}:generateContent` (empty when the path was not that).
    pub model: String,
    /// The JSON body (Null when it was not JSON).
    pub body: Value,
}

struct State {
    start: Instant,
    keys: Vec<String>,
    script: Box<CallScript>,
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    /// Sum of the totalTokenCount of every answer written to its connection.
    reported: Mutex<u64>,
    /// Calls that got no answer (dropped or hung).
    unanswered: Mutex<usize>,
}

/// The stand-in: a server on a free port of 127.0.0.1, on the tokio runtime that started it.
#[derive(Clone)]
pub struct GeminiStandIn {
    /// What GEMINI_API_BASE_URL / GeminiSettings take: `http://127.0.0.1:<port>/v1beta`.
    pub base_url: String,
    state: Arc<State>,
}

/// A poisoned lock only means another test thread panicked; its data is still what was recorded.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GeminiStandIn {
    /// Accepts `keys` and answers every call at once with [`DEFAULT_TEXT`] (400 prompt + 100
    /// candidates tokens).
    pub async fn start(keys: &[&str]) -> GeminiStandIn {
        GeminiStandIn::scripted(keys, |_, _| Act::Answer {
            hold: Duration::ZERO,
            text: DEFAULT_TEXT.to_string(),
            usage: Usage { prompt: 400, candidates: 100, thoughts: 0 },
        })
        .await
    }

    /// Accepts `keys` and does with each call what `script` says.
    pub async fn scripted(keys: &[&str], script: impl Fn(&str, usize) -> Act + Send + Sync + 'static) -> GeminiStandIn {
        GeminiStandIn::scripted_calls(keys, move |call, before| script(&call.model, before)).await
    }

    /// Accepts `keys` and does with each call what `script` says, seeing the whole call.
    pub async fn scripted_calls(keys: &[&str], script: impl Fn(&Call, usize) -> Act + Send + Sync + 'static) -> GeminiStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("Gemini stand-in: bind: {e}"));
        GeminiStandIn::serve_on(listener, keys, script)
    }

    /// The same on a listener the caller bound (the `gemini-stand-in` binary binds a chosen port).
    pub fn serve_on(listener: TcpListener, keys: &[&str], script: impl Fn(&Call, usize) -> Act + Send + Sync + 'static) -> GeminiStandIn {
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("Gemini stand-in: local_addr: {e}"));
        let state = Arc::new(State {
            start: Instant::now(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            reported: Mutex::new(0),
            unanswered: Mutex::new(0),
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(s.clone(), socket));
            }
        });
        GeminiStandIn { base_url: format!("http://{addr}/v1beta"), state }
    }

    /// Answers the calls with `acts`, in order of arrival; once they run out, with a 500 "script
    /// exhausted" (tests count the calls, so an unplanned one shows).
    pub async fn sequence(keys: &[&str], acts: Vec<Act>) -> GeminiStandIn {
        let acts = Mutex::new(VecDeque::from(acts));
        GeminiStandIn::scripted(keys, move |_, _| {
            lock(&acts).pop_front().unwrap_or_else(|| Act::error(500, None, "script exhausted", "INTERNAL"))
        })
        .await
    }

    /// Every call received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Call> {
        lock(&self.state.calls).clone()
    }

    /// Calls received (answered or not).
    pub fn calls(&self) -> usize {
        lock(&self.state.calls).len()
    }

    /// Calls received per API key.
    pub fn calls_by_key(&self) -> HashMap<String, usize> {
        let mut by = HashMap::new();
        for c in lock(&self.state.calls).iter() {
            *by.entry(c.key.clone()).or_default() += 1;
        }
        by
    }

    /// Calls received for `model`.
    pub fn calls_to(&self, model: &str) -> usize {
        lock(&self.state.calls).iter().filter(|c| c.model == model).count()
    }

    /// The most calls that arrived within any `window` (a rolling window over arrival times).
    pub fn busiest(&self, window: Duration) -> usize {
        self.busiest_window(window).0
    }

    /// The same, with when that window started (ms since the stand-in started).
    pub fn busiest_window(&self, window: Duration) -> (usize, u64) {
        let mut times: Vec<u64> = lock(&self.state.calls).iter().map(|c| millis(c.at)).collect();
        times.sort_unstable();
        let w = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let (mut best, mut at, mut lo) = (0, 0, 0);
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= w {
                lo += 1;
            }
            if hi - lo + 1 > best {
                (best, at) = (hi - lo + 1, times[lo]);
            }
        }
        (best, at)
    }

    /// Milliseconds since the stand-in started (the time base of its records).
    pub fn elapsed_ms(&self) -> u64 {
        self.state.elapsed_ms()
    }

    /// Requests the real API would refuse, one line each.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state.violations).clone()
    }

    /// Sum of the `totalTokenCount` of every answer sent.
    pub fn reported_tokens(&self) -> u64 {
        *lock(&self.state.reported)
    }

    /// Calls that got no answer (dropped or hung by the script).
    pub fn unanswered(&self) -> usize {
        *lock(&self.state.unanswered)
    }
}

impl Call {
    /// The PDF the call carries inline (`contents[0].parts[0].inline_data.data`, base64), if any.
    pub fn inline_pdf(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let data = self.body["contents"][0]["parts"][0]["inline_data"]["data"].as_str()?;
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl State {
    fn elapsed_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn violation(&self, what: String) {
        lock(&self.violations).push(what);
    }

    /// Records a call and returns how many calls to its model came before it.
    fn record(&self, call: Call) -> usize {
        let mut calls = lock(&self.calls);
        let before = calls.iter().filter(|c| c.model == call.model).count();
        calls.push(call);
        before
    }

    /// Checks one request against what the real API accepts; returns it as a call.
    fn check(&self, request_line: &str, headers: &[(String, String)], body: &[u8]) -> Call {
        let model = request_line
            .strip_prefix("POST /v1beta/models/")
            .and_then(|rest| rest.strip_suffix(":generateContent HTTP/1.1"))
            .unwrap_or("")
            .to_string();
        if model.is_empty() {
            self.violation(format!("unexpected request line {request_line:?}"));
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let key = header("x-goog-api-key").unwrap_or_default().to_string();
        if !self.keys.contains(&key) {
            self.violation(format!("{model}: missing or wrong x-goog-api-key {key:?}"));
        }
        if header("content-type") != Some("application/json") {
            self.violation(format!("{model}: content-type {:?}", header("content-type")));
        }
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let parts = json["contents"][0]["parts"].as_array().cloned().unwrap_or_default();
        if json["contents"][0]["role"] != "user" || parts.is_empty() {
            self.violation(format!("{model}: body is not a generateContent request: {json}"));
        }
        let config = &json["generationConfig"];
        let structured = !config["responseSchema"].is_null();
        if model == EXTRACT_MODEL && !structured && parts.first().map(|p| &p["inline_data"]["mime_type"]) != Some(&json!("application/pdf")) {
            self.violation(format!("{model}: extraction call without the inline PDF"));
        }
        if let Some(fields) = config.as_object() {
            for key in fields.keys() {
                if !GENERATION_CONFIG_FIELDS.contains(&key.as_str()) {
                    self.violation(format!("{model}: unknown generationConfig field {key:?}"));
                }
            }
        }
        if structured {
            if config["responseMimeType"] != "application/json" {
                self.violation(format!("{model}: responseSchema without responseMimeType application/json ({})", config["responseMimeType"]));
            }
            for problem in schema_problems(&config["responseSchema"], "responseSchema") {
                self.violation(format!("{model}: {problem}"));
            }
        }
        Call { at: self.start.elapsed(), key, model, body: json }
    }
}

/// Fields of `generationConfig` (GenerationConfig of the API reference).
const GENERATION_CONFIG_FIELDS: &[&str] = &[
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities", "candidateCount", "maxOutputTokens",
    "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers",
    "speechConfig", "thinkingConfig", "mediaResolution",
];

/// Fields of the API's Schema object.
const SCHEMA_FIELDS: &[&str] = &[
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties", "required", "minProperties",
    "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
];

/// Values of the Schema's `type` (the Type enum).
const SCHEMA_TYPES: &[&str] = &["TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"];

/// What the API would refuse in a Schema object, one line each, with the path to it.
pub fn schema_problems(schema: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(fields) = schema.as_object() else {
        return vec![format!("{path}: a Schema must be an object, got {schema}")];
    };
    for key in fields.keys() {
        if !SCHEMA_FIELDS.contains(&key.as_str()) {
            out.push(format!("{path}: unknown Schema field {key:?}"));
        }
    }
    let kind = schema["type"].as_str().unwrap_or("");
    if !SCHEMA_TYPES.contains(&kind) && schema["anyOf"].is_null() {
        out.push(format!("{path}.type: {} is not a Type (STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT, NULL)", schema["type"]));
    }
    if !schema["nullable"].is_null() && !schema["nullable"].is_boolean() {
        out.push(format!("{path}.nullable: must be a boolean"));
    }
    let names: Vec<&str> = schema["properties"].as_object().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
    if kind == "OBJECT" {
        match schema["properties"].as_object() {
            Some(props) if !props.is_empty() => {
                for (name, sub) in props {
                    out.extend(schema_problems(sub, &format!("{path}.properties.{name}")));
                }
            }
            _ => out.push(format!("{path}.properties: should be non-empty for OBJECT type")),
        }
    }
    for list in ["required", "propertyOrdering"] {
        if let Some(items) = schema[list].as_array() {
            for item in items {
                if !item.as_str().is_some_and(|n| names.contains(&n)) {
                    out.push(format!("{path}.{list}: {item} is not one of the properties"));
                }
            }
        } else if !schema[list].is_null() {
            out.push(format!("{path}.{list}: must be a list of property names"));
        }
    }
    if kind == "ARRAY" {
        if schema["items"].is_null() {
            out.push(format!("{path}.items: missing field for ARRAY type"));
        } else {
            out.extend(schema_problems(&schema["items"], &format!("{path}.items")));
        }
    }
    if !schema["enum"].is_null() {
        let strings = schema["enum"].as_array().is_some_and(|e| !e.is_empty() && e.iter().all(Value::is_string));
        if !strings || !matches!(kind, "STRING" | "INTEGER") {
            out.push(format!("{path}.enum: only a non-empty list of strings on a STRING (or INTEGER) type"));
        }
    }
    out
}

/// Reads one HTTP/1.1 request: (request line, headers lower-cased, body); None once the client
/// closed the connection.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
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
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
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

/// Serves one connection; keep-alive, so one connection may carry many calls.
async fn serve(state: Arc<State>, mut socket: TcpStream) {
    while let Some((request_line, headers, body)) = read_request(&mut socket).await {
        let call = state.check(&request_line, &headers, &body);
        let model = call.model.clone();
        let before = state.record(call.clone());
        match (state.script)(&call, before) {
            Act::Answer { hold, text, usage } => {
                tokio::time::sleep(hold).await;
                let mut metadata = json!({
                    "promptTokenCount": usage.prompt,
                    "candidatesTokenCount": usage.candidates,
                    "totalTokenCount": usage.total(),
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.prompt}]
                });
                if usage.thoughts > 0 {
                    metadata["thoughtsTokenCount"] = json!(usage.thoughts);
                }
                let answer = json!({
                    "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": metadata,
                    "modelVersion": model,
                    "responseId": "stand-in"
                })
                .to_string();
                if respond(&mut socket, 200, "", &answer).await.is_err() {
                    return;
                }
                // Counted once the answer is on its way: the client reads it and settles it.
                *lock(&state.reported) += usage.total();
            }
            Act::Error { status, retry_after, message, code } => {
                let body = json!({"error": {"code": status, "message": message, "status": code}}).to_string();
                let retry_after = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                if respond(&mut socket, status, &retry_after, &body).await.is_err() {
                    return;
                }
            }
            Act::Drop { hold } => {
                tokio::time::sleep(hold).await;
                *lock(&state.unanswered) += 1;
                return;
            }
            Act::Hang => {
                *lock(&state.unanswered) += 1;
                // Until the client gives up and closes the connection.
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

/// Writes one JSON response; `extra_headers` are whole header lines ("Name: value\r\n").
async fn respond(socket: &mut TcpStream, status: u16, extra_headers: &str, json: &str) -> std::io::Result<()> {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n{extra_headers}Content-Length: {}\r\n\r\n{json}",
        json.len()
    );
    socket.write_all(response.as_bytes()).await
}
