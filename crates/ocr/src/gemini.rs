//! The Gemini engine: the generateContent HTTP API (`POST {base}/models/{model}:generateContent`,
//! API key in the `x-goog-api-key` header). One extraction call sends the PDF inline (base64) and
//! asks for a verbatim transcription with page markers; one boost call sends that text to the
//! boost model for OCR corrections; the [`crate::boost`] rules then run on the boost model's text.
//!
//! Every call is admitted by the shared rate limiter first ([`ApiLimiter::admit`] with an estimate
//! of its tokens) and settled afterwards with the response's `usageMetadata.totalTokenCount` (the
//! whole usage: prompt, candidates, thinking and tool-use tokens). A call that failed in transport
//! after it was sent (connection dropped, timeout, body cut) stays charged its estimate: the API may
//! have served it. A call the API answered with an error status, or that never connected, is
//! settled with 0 tokens.
//! HTTP 429 → shared cooldown for Retry-After seconds (or the API's `RetryInfo.retryDelay`, else
//! [`GeminiSettings::default_cooldown`]) then retry; 5xx, timeouts and connection errors → retry
//! with capped exponential backoff; any other 4xx → [`OcrError::ApiRejected`] with the API's message.
//! The whole document is one call, so the caller's [`Parallelism`] does not apply here.
//!
//! An index des immeubles ([`OcrEngine::extract_index`]) gets one more call, on the boosted text
//! (not the PDF), to the extraction model with structured output (`responseMimeType:
//! application/json` and [`index_response_schema`]); the answer is checked in Rust against the same
//! shape and rules ([`IndexData::sanitize`]). An answer that is not that JSON is asked for once
//! more, then kept as a warning (with its text) instead of data: the row still gets its text.

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use regex::Regex;
use registre_config::{OcrEngineConfig, Secret};
use registre_runtime::Backoff;
use serde::Deserialize;
use serde_json::json;

use crate::limiter::ApiLimiter;
use crate::{boost, excerpt, OcrEngine, OcrError, OcrOutput, Parallelism, PAGE_SEPARATOR};
use registre_domain::index_data::{natures, IndexData, IndexPage, FORMAT_MODERN, FORMAT_UNKNOWN};

const API: &str = "Gemini API";

/// Prompt of the extraction call.
pub const EXTRACT_PROMPT: &str = "Transcris fidèlement tout le texte de ce document PDF du Registre foncier du Québec, \
page par page, sans rien résumer, corriger ni commenter. Conserve les numéros de lots, d'inscription et les dates \
exactement comme ils sont écrits, ainsi que l'ordre des lignes des tableaux (une ligne du tableau par ligne de texte). \
Commence chaque page par une ligne contenant uniquement `=== PAGE n ===` (n = numéro de la page).";

/// Prompt of the boost call; the extracted text follows it.
pub const BOOST_PROMPT: &str = "Voici le texte extrait par OCR d'un document du Registre foncier du Québec. Corrige \
uniquement les erreurs de reconnaissance de caractères (lettres prises pour des chiffres dans les numéros de lots, \
d'inscription et les dates, accents perdus, mots coupés en fin de ligne). Ne reformule rien, n'ajoute et ne retire \
aucune information, garde les lignes `=== PAGE n ===` et la disposition des lignes. Réponds uniquement par le texte corrigé.";

/// Prompt of the index call; the boosted text (with its page markers) follows it.
pub const INDEX_PROMPT: &str = "Voici le texte d'un index des immeubles du Registre foncier du Québec (pages marquées \
`=== PAGE n ===`). Rends-le en JSON selon le schéma donné : pour chaque page, la circonscription foncière, le cadastre, \
le lot et les inscriptions du tableau (date de présentation AAAA-MM-JJ, numéro d'inscription groupé par milliers comme \
imprimé, nature de l'acte parmi la liste du schéma, parties avec leur qualité telle qu'écrite, remarques, avis d'adresse, \
numéros de radiation). Une page qui n'a pas le tableau imprimé moderne a le format `unknown` et aucune inscription. \
N'invente rien : un champ illisible ou absent est null, et chaque doute va dans `warnings`.";

/// Gemini bills each PDF page as 258 tokens of input.
const TOKENS_PER_PDF_PAGE: u64 = 258;
/// Output allowance per page in the estimate (a dense registry page is ~600–900 tokens of text).
const OUTPUT_TOKENS_PER_PAGE: u64 = 1000;
/// Prompt and framing.
const PROMPT_TOKENS: u64 = 300;

#[derive(Debug, Clone)]
pub struct GeminiSettings {
    /// GEMINI_API_BASE_URL, without a trailing `/` (`https://generativelanguage.googleapis.com/v1beta`).
    pub base_url: String,
    /// GEMINI_API_KEY (never shown in Debug or logs).
    pub api_key: Secret,
    /// OCR_EXTRACT_MODEL_GEMINI.
    pub extract_model: String,
    /// OCR_BOOST_MODEL_GEMINI.
    pub boost_model: String,
    /// OCR_GEMINI_TEMPERATURE.
    pub temperature: f64,
    /// Longest time of one HTTP call.
    pub request_timeout: Duration,
    /// Attempts of one call (429s, 5xx and timeouts included) before the document fails.
    pub max_attempts: u32,
    /// Backoff between attempts after 5xx or timeouts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Cooldown after a 429 that says nothing about when to come back.
    pub default_cooldown: Duration,
}

impl GeminiSettings {
    /// Defaults for everything the environment does not set.
    pub fn new(base_url: &str, api_key: Secret) -> GeminiSettings {
        GeminiSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            extract_model: "gemini-2.0-flash".into(),
            boost_model: "gemini-2.5-pro".into(),
            temperature: 0.1,
            request_timeout: Duration::from_secs(300),
            max_attempts: 6,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            default_cooldown: Duration::from_secs(30),
        }
    }

    pub fn from_config(config: &OcrEngineConfig) -> Result<GeminiSettings, OcrError> {
        let key = config.gemini_api_key.clone().ok_or(OcrError::NotConfigured("GEMINI_API_KEY is not set".into()))?;
        Ok(GeminiSettings {
            extract_model: config.extract_model.clone(),
            boost_model: config.boost_model.clone(),
            temperature: config.gemini_temperature,
            ..GeminiSettings::new(config.gemini_api_base_url.as_str(), key)
        })
    }
}

pub struct GeminiEngine<L> {
    settings: GeminiSettings,
    client: reqwest::Client,
    limiter: L,
}

impl<L> std::fmt::Debug for GeminiEngine<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiEngine").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// One call of the API: which model, what it is for (for errors and logs), body and estimate.
struct Call<'a> {
    name: &'static str,
    model: &'a str,
    body: Vec<u8>,
    estimated_tokens: u64,
}

/// What a successful call returned.
struct Answer {
    text: String,
    total_tokens: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
}

/// `usageMetadata` of a generateContent response. `totalTokenCount` is what the API counts against
/// the quota; the parts are only summed when it is missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    total_token_count: Option<u64>,
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    fn total(&self) -> u64 {
        self.total_token_count.unwrap_or_else(|| {
            [self.prompt_token_count, self.candidates_token_count, self.thoughts_token_count, self.tool_use_prompt_token_count]
                .iter()
                .flatten()
                .sum()
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

/// `{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}`
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    message: Option<String>,
    status: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl<L: ApiLimiter> GeminiEngine<L> {
    pub fn new(settings: GeminiSettings, limiter: L) -> Result<GeminiEngine<L>, OcrError> {
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| OcrError::NotConfigured(format!("HTTP client for the Gemini API: {e}")))?;
        Ok(GeminiEngine { settings, client, limiter })
    }

    pub fn settings(&self) -> &GeminiSettings {
        &self.settings
    }

    async fn run(&self, pdf: &[u8], index: bool) -> Result<OcrOutput, OcrError> {
        if !pdf.starts_with(b"%PDF") && !pdf.windows(5).take(1024).any(|w| w == b"%PDF-") {
            return Err(OcrError::Unrenderable { detail: "not a PDF (no %PDF header)".into() });
        }
        let pages = estimate_pages(pdf);
        let extract = Call {
            name: "extraction",
            model: &self.settings.extract_model,
            body: self.body(vec![
                json!({"inline_data": {"mime_type": "application/pdf", "data": base64::engine::general_purpose::STANDARD.encode(pdf)}}),
                json!({"text": EXTRACT_PROMPT}),
            ]),
            estimated_tokens: pages * (TOKENS_PER_PDF_PAGE + OUTPUT_TOKENS_PER_PAGE) + PROMPT_TOKENS,
        };
        let extracted = self.call(extract).await?;
        let pages = split_pages(&extracted.text);

        let marked = with_markers(&pages);
        let boost_call = Call {
            name: "boost",
            model: &self.settings.boost_model,
            body: self.body(vec![json!({"text": format!("{BOOST_PROMPT}\n\n{marked}")})]),
            // Input and output are both about the text's size; ~3 characters per token for French OCR text.
            estimated_tokens: 2 * (marked.chars().count() as u64 / 3) + PROMPT_TOKENS,
        };
        let corrected = self.call(boost_call).await?;
        let corrected_pages = split_pages(&corrected.text);

        let raw = pages.join(PAGE_SEPARATOR);
        let boosted = corrected_pages.iter().map(|p| boost::boost(p)).collect::<Vec<_>>().join(PAGE_SEPARATOR);
        let mut tokens_used = extracted.total_tokens + corrected.total_tokens;
        let index_data = if index {
            let boosted_pages: Vec<String> = corrected_pages.iter().map(|p| boost::boost(p)).collect();
            let (data, tokens) = self.index_data(&with_markers(&boosted_pages)).await;
            tokens_used += tokens;
            Some(data)
        } else {
            None
        };
        Ok(OcrOutput { pages, raw, boosted, engine: "gemini", tokens_used, text_layer_pages: 0, index_data })
    }

    /// The index call (asked twice at most when the answer is not the JSON asked for), and the
    /// tokens it used. Never fails the document: what could not be had is a warning.
    async fn index_data(&self, marked_text: &str) -> (IndexData, u64) {
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": format!("{INDEX_PROMPT}\n\n{marked_text}")}]}],
            "generationConfig": {
                "temperature": self.settings.temperature,
                "responseMimeType": "application/json",
                "responseSchema": index_response_schema(),
            },
        });
        let estimated_tokens = 2 * (marked_text.chars().count() as u64 / 3) + PROMPT_TOKENS + 1500;
        let mut tokens = 0;
        let mut last_problem = String::new();
        for _ in 0..2 {
            let call = Call { name: "index", model: &self.settings.extract_model, body: body.to_string().into_bytes(), estimated_tokens };
            match self.call(call).await {
                Ok(answer) => {
                    tokens += answer.total_tokens;
                    match read_index_answer(&answer.text) {
                        Ok(data) => return (data, tokens),
                        Err(problem) => {
                            tracing::warn!("{API} index answer is not the JSON asked for ({problem})");
                            last_problem = format!("{problem}; the answer was: {}", excerpt(&answer.text, 2000));
                        }
                    }
                }
                Err(e) => {
                    let data = IndexData { engine: "gemini".into(), pages: Vec::new(), warnings: vec![format!("index data not read: {e}")] };
                    return (data, tokens);
                }
            }
        }
        let warning = format!("index data not read: the model's answer was not the JSON asked for, twice ({last_problem})");
        (IndexData { engine: "gemini".into(), pages: Vec::new(), warnings: vec![warning] }, tokens)
    }

    fn body(&self, parts: Vec<serde_json::Value>) -> Vec<u8> {
        let body = json!({
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"temperature": self.settings.temperature},
        });
        body.to_string().into_bytes()
    }

    /// One API call with admission, settlement, cooldown and retries.
    async fn call(&self, call: Call<'_>) -> Result<Answer, OcrError> {
        let url = format!("{}/models/{}:generateContent", self.settings.base_url, call.model);
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ticket = self.limiter.admit(call.estimated_tokens).await?;
            let sent = self
                .client
                .post(&url)
                .header("x-goog-api-key", self.settings.api_key.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(call.body.clone())
                .send()
                .await;
            let (last_error, delay) = match sent {
                Err(e) => {
                    // Never connected: the API cannot have seen the call. Anything later (dropped
                    // connection, timeout): it may have served it, so the estimate stays charged.
                    let charged = if e.is_connect() { 0 } else { call.estimated_tokens };
                    self.limiter.settle(ticket, charged).await;
                    (describe_transport_error(&e), backoff.next_delay())
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after_header(&response);
                    let body = match response.bytes().await {
                        Ok(body) => body,
                        Err(e) => {
                            // The API answered and the body was cut: it served the call.
                            self.limiter.settle(ticket, call.estimated_tokens).await;
                            let delay = backoff.next_delay();
                            self.retrying(&call, attempt, &describe_transport_error(&e), delay);
                            if attempt >= self.settings.max_attempts {
                                return Err(self.unavailable(&call, attempt, describe_transport_error(&e)));
                            }
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    };
                    if status.is_success() {
                        return match parse_answer(&body) {
                            Ok(answer) => {
                                let charged = if answer.total_tokens > 0 { answer.total_tokens } else { call.estimated_tokens };
                                self.limiter.settle(ticket, charged).await;
                                Ok(answer)
                            }
                            Err(detail) => {
                                self.limiter.settle(ticket, call.estimated_tokens).await;
                                Err(OcrError::ApiResponse { api: API, call: call.name, detail })
                            }
                        };
                    }
                    self.limiter.settle(ticket, 0).await;
                    let message = api_message(&body);
                    if status.as_u16() == 429 {
                        let cooldown = retry_after.or_else(|| retry_delay_in_body(&body)).unwrap_or(self.settings.default_cooldown);
                        self.limiter.cooldown(cooldown).await;
                        (format!("HTTP 429: {message}"), cooldown)
                    } else if status.is_server_error() || status.as_u16() == 408 {
                        (format!("HTTP {}: {message}", status.as_u16()), backoff.next_delay())
                    } else {
                        return Err(OcrError::ApiRejected { api: API, call: call.name, status: status.as_u16(), message });
                    }
                }
            };
            if attempt >= self.settings.max_attempts {
                return Err(self.unavailable(&call, attempt, last_error));
            }
            self.retrying(&call, attempt, &last_error, delay);
            tokio::time::sleep(delay).await;
        }
    }

    fn retrying(&self, call: &Call<'_>, attempt: u32, error: &str, delay: Duration) {
        tracing::warn!(model = call.model, attempt, "{API} {} call failed ({error}): retrying in {} ms", call.name, delay.as_millis());
    }

    fn unavailable(&self, call: &Call<'_>, attempts: u32, last_error: String) -> OcrError {
        OcrError::ApiUnavailable { api: API, call: call.name, attempts, last_error }
    }
}

impl<L: ApiLimiter + 'static> OcrEngine for GeminiEngine<L> {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn extract<'a>(&'a self, pdf: &'a [u8], _parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        Box::pin(self.run(pdf, false))
    }

    fn extract_index<'a>(&'a self, pdf: &'a [u8], _parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        Box::pin(self.run(pdf, true))
    }
}

/// What the index call must answer: `{"pages": [...], "warnings": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexAnswer {
    pages: Vec<IndexPage>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// The model's JSON checked against the schema (shape: serde, unknown fields refused) and the
/// rules (dates, numbers, natures, formats: [`IndexData::sanitize`]); Err says why it is not.
fn read_index_answer(text: &str) -> Result<IndexData, String> {
    let answer: IndexAnswer = serde_json::from_str(text.trim()).map_err(|e| format!("not the index JSON: {e}"))?;
    let mut data = IndexData { engine: "gemini".into(), pages: answer.pages, warnings: answer.warnings };
    data.sanitize();
    Ok(data)
}

/// The `responseSchema` of the index call, in the API's Schema form (an OpenAPI 3.0 subset:
/// `type` in upper case, `nullable`, `enum` with `format: "enum"`, `propertyOrdering`).
pub fn index_response_schema() -> serde_json::Value {
    let text = |nullable: bool| json!({"type": "STRING", "nullable": nullable});
    let party = json!({
        "type": "OBJECT",
        "properties": {"nom": text(false), "qualite": text(true)},
        "required": ["nom", "qualite"],
        "propertyOrdering": ["nom", "qualite"],
    });
    let inscription = json!({
        "type": "OBJECT",
        "properties": {
            "date_presentation": {"type": "STRING", "nullable": true, "description": "AAAA-MM-JJ"},
            "numero": {"type": "STRING", "nullable": true, "description": "groupé par milliers : 8 173 504"},
            "nature": {"type": "STRING", "format": "enum", "enum": natures(), "nullable": true},
            "parties": {"type": "ARRAY", "items": party},
            "remarques": text(true),
            "avis_adresse": text(true),
            "radiations": {"type": "ARRAY", "items": text(false)},
        },
        "required": ["date_presentation", "numero", "nature", "parties", "remarques", "avis_adresse", "radiations"],
        "propertyOrdering": ["date_presentation", "numero", "nature", "parties", "remarques", "avis_adresse", "radiations"],
    });
    let page = json!({
        "type": "OBJECT",
        "properties": {
            "page": {"type": "INTEGER"},
            "format": {"type": "STRING", "format": "enum", "enum": [FORMAT_MODERN, FORMAT_UNKNOWN]},
            "circonscription": text(true),
            "cadastre": text(true),
            "lot": text(true),
            "inscriptions": {"type": "ARRAY", "items": inscription},
        },
        "required": ["page", "format", "circonscription", "cadastre", "lot", "inscriptions"],
        "propertyOrdering": ["page", "format", "circonscription", "cadastre", "lot", "inscriptions"],
    });
    json!({
        "type": "OBJECT",
        "properties": {"pages": {"type": "ARRAY", "items": page}, "warnings": {"type": "ARRAY", "items": text(false)}},
        "required": ["pages", "warnings"],
        "propertyOrdering": ["pages", "warnings"],
    })
}

/// Pages of a PDF without parsing it: the page objects (`/Type /Page`, not `/Pages`), at least 1.
/// PDFs with compressed object streams hide them; then one page per 100 kB is assumed.
pub(crate) fn estimate_pages(pdf: &[u8]) -> u64 {
    static PAGE: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
        #[allow(clippy::expect_used)]
        regex::bytes::Regex::new(r"/Type\s*/Page\b").expect("valid pattern")
    });
    let found = PAGE.find_iter(pdf).count() as u64;
    if found > 0 {
        found
    } else {
        (pdf.len() as u64 / 100_000).max(1)
    }
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"(?m)^[ \t]*=+[ \t]*PAGE[ \t]+\d+[ \t]*=+[ \t]*\r?$\n?").expect("valid pattern")
});

/// Splits the model's text on `=== PAGE n ===` lines (text before the first marker belongs to
/// page 1); without markers the whole text is one page.
pub(crate) fn split_pages(text: &str) -> Vec<String> {
    let mut pages: Vec<String> = MARKER.split(text).map(|p| p.trim_matches(['\n', '\r']).to_string()).collect();
    if pages.len() > 1 && pages[0].trim().is_empty() {
        pages.remove(0);
    } else if pages.len() > 1 {
        let first = pages.remove(0);
        pages[0] = format!("{first}\n{}", pages[0]);
    }
    pages
}

fn with_markers(pages: &[String]) -> String {
    pages.iter().enumerate().map(|(i, p)| format!("=== PAGE {} ===\n{p}", i + 1)).collect::<Vec<_>>().join("\n")
}

fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let response: GenerateResponse = serde_json::from_slice(body)
        .map_err(|e| format!("{e} in {}", excerpt(&String::from_utf8_lossy(body), 200)))?;
    let total_tokens = response.usage_metadata.map(|u| u.total()).unwrap_or(0);
    let Some(candidate) = response.candidates.into_iter().next() else {
        let reason = response.prompt_feedback.and_then(|f| f.block_reason).unwrap_or_else(|| "no reason given".into());
        return Err(format!("no candidate in the response (prompt blocked: {reason})"));
    };
    let text: String = candidate.content.map(|c| c.parts.into_iter().filter_map(|p| p.text).collect()).unwrap_or_default();
    if text.trim().is_empty() {
        let reason = candidate.finish_reason.unwrap_or_else(|| "unknown".into());
        return Err(format!("the candidate has no text (finishReason {reason})"));
    }
    if let Some(reason) = candidate.finish_reason.as_deref().filter(|r| *r != "STOP") {
        tracing::warn!("{API} answer ended with finishReason {reason}: the text may be incomplete");
    }
    Ok(Answer { text, total_tokens })
}

/// The API's own error message (`error.message`, with `error.status`), else an excerpt of the body.
fn api_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error: ApiError { message: Some(m), status, .. } }) => match status {
            Some(s) => format!("{m} ({s})"),
            None => m,
        },
        _ => {
            let text = excerpt(&String::from_utf8_lossy(body), 300);
            if text.is_empty() {
                "empty response body".into()
            } else {
                text
            }
        }
    }
}

/// `Retry-After: <seconds>` (the HTTP-date form is rare for this API and falls back to the body).
fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Google's `RetryInfo` detail: `{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}`.
fn retry_delay_in_body(body: &[u8]) -> Option<Duration> {
    let envelope: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    envelope.error.details.iter().find_map(|d| {
        let delay = d.get("retryDelay")?.as_str()?;
        let seconds: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
    })
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    // reqwest's Display can include the URL; it never includes headers, so the key stays out.
    if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_split_on_markers() {
        assert_eq!(split_pages("=== PAGE 1 ===\nLot 1\n=== PAGE 2 ===\nLot 2\n"), vec!["Lot 1", "Lot 2"]);
        assert_eq!(split_pages("Lot 1 sans marqueur"), vec!["Lot 1 sans marqueur"]);
        assert_eq!(split_pages("Titre\n==== PAGE 1 ====\nLot 1"), vec!["Titre\nLot 1"]);
        let pages = vec!["a".to_string(), "b".to_string()];
        assert_eq!(split_pages(&with_markers(&pages)), pages);
    }

    #[test]
    fn page_estimate_counts_page_objects() {
        assert_eq!(estimate_pages(b"%PDF-1.4 /Type /Pages /Type /Page /Type/Page"), 2);
        assert_eq!(estimate_pages(b"%PDF-1.5 compressed"), 1);
    }

    #[test]
    fn api_messages_and_retry_delays_are_read_from_the_error_body() {
        let body = br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}"#;
        assert_eq!(api_message(body), "Resource exhausted (RESOURCE_EXHAUSTED)");
        assert_eq!(retry_delay_in_body(body), Some(Duration::from_secs(17)));
        assert_eq!(api_message(b"<html>Bad Gateway</html>"), "<html>Bad Gateway</html>");
        assert_eq!(api_message(b""), "empty response body");
    }

    #[test]
    fn settings_debug_hides_the_key() {
        let s = GeminiSettings::new("http://localhost/v1beta/", Secret::new("AIza-very-secret"));
        assert_eq!(s.base_url, "http://localhost/v1beta");
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}
