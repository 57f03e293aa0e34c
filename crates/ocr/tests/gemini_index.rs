//! The Gemini engine's index call (index_data) against testkit's generateContent stand-in, which
//! checks the request as the API documents it (responseMimeType application/json with a valid
//! responseSchema). One more call per index document, on the boosted text, admitted by the limiter
//! like the others; the answer validated in Rust; a non-JSON answer asked for once more, then kept
//! as a warning with its text while the document still gets its text.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registre_config::Secret;
use registre_ocr::{ApiLimiter, GeminiEngine, GeminiSettings, LimiterError, OcrEngine, Parallelism};
use registre_testkit::gemini::{schema_problems, Act, GeminiStandIn, Usage, EXTRACT_MODEL};
use serde_json::json;

const KEY: &str = "test-key-AIza-index";

/// Counts admissions (every call must go through the limiter) and settles nothing else.
#[derive(Default)]
struct Counting {
    admitted: AtomicUsize,
    settled: AtomicUsize,
}

impl ApiLimiter for Counting {
    type Ticket = ();
    async fn admit(&self, _estimated_tokens: u64) -> Result<(), LimiterError> {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn settle(&self, _ticket: (), _actual_tokens: u64) {
        self.settled.fetch_add(1, Ordering::SeqCst);
    }
    async fn cooldown(&self, _duration: Duration) {}
}

fn engine(base: &str, limiter: Arc<Counting>) -> GeminiEngine<Arc<Counting>> {
    let settings = GeminiSettings {
        extract_model: EXTRACT_MODEL.into(),
        boost_model: "gemini-2.5-pro".into(),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        max_attempts: 2,
        ..GeminiSettings::new(base, Secret::new(KEY))
    };
    GeminiEngine::new(settings, limiter).unwrap()
}

fn pdf() -> Vec<u8> {
    let (pages, _) = registre_testkit::pdf::registry_index(1, 3);
    registre_testkit::pdf::pdf(&pages)
}

const TEXT: &str = "=== PAGE 1 ===\nIndex des immeubles\nLot : 3 142 828\n1995-O6-06 8 173 504 Vente Vendeur OUELLET, JEAN\n";
const USAGE: Usage = Usage { prompt: 300, candidates: 200, thoughts: 0 };

fn index_json() -> String {
    json!({
        "pages": [{"page": 1, "format": "modern-inscription", "circonscription": "Laval", "cadastre": "Cadastre du Québec", "lot": "3142828",
                   "inscriptions": [{"date_presentation": "1995-06-06", "numero": "8 173 504", "nature": "Servitude d'environnement",
                                     "parties": [{"nom": "OUELLET, JEAN", "qualite": "Vendeur"}], "remarques": null, "avis_adresse": null,
                                     "radiations": ["20 619 536"]}]}],
        "warnings": []
    })
    .to_string()
}

#[tokio::test]
async fn an_index_document_gets_one_structured_call_on_the_boosted_text() {
    let server = GeminiStandIn::sequence(&[KEY], vec![Act::answer(TEXT, USAGE), Act::answer(TEXT, USAGE), Act::answer(&index_json(), USAGE)]).await;
    let limiter = Arc::new(Counting::default());
    let out = engine(&server.base_url, limiter.clone()).extract_index(&pdf(), Parallelism::ONE).await.unwrap();

    assert_eq!(server.violations(), Vec::<String>::new(), "requests the real API would refuse");
    let calls = server.requests();
    assert_eq!(calls.len(), 3);
    assert_eq!(limiter.admitted.load(Ordering::SeqCst), 3, "the index call goes through the limiter too");
    assert_eq!(out.tokens_used, 3 * USAGE.total());
    let index = &calls[2];
    assert_eq!(index.model, EXTRACT_MODEL, "the model the engine already uses");
    let config = &index.body["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert!(schema_problems(&config["responseSchema"], "responseSchema").is_empty());
    let natures = &config["responseSchema"]["properties"]["pages"]["items"]["properties"]["inscriptions"]["items"]["properties"]["nature"]["enum"];
    assert!(natures.as_array().unwrap().iter().any(|n| n == "Servitude d’environnement"), "natures from the list");
    let sent = index.body["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(sent.contains("1995-06-06 8 173 504"), "the boosted text, not the raw one: {sent}");
    assert!(index.body["contents"][0]["parts"].as_array().unwrap().iter().all(|p| p["inline_data"].is_null()), "not the PDF");

    // Checked in Rust: the lot regrouped, the nature spelled as in the list.
    let data = out.index_data.expect("index_data");
    assert_eq!(data.engine, "gemini");
    assert_eq!(data.pages[0].lot.as_deref(), Some("3 142 828"));
    assert_eq!(data.pages[0].inscriptions[0].nature.as_deref(), Some("Servitude d’environnement"));
    assert!(data.warnings.is_empty(), "{:?}", data.warnings);

    // A plain read of the same document makes no index call.
    let plain = GeminiStandIn::sequence(&[KEY], vec![Act::answer(TEXT, USAGE), Act::answer(TEXT, USAGE)]).await;
    let out = engine(&plain.base_url, Arc::new(Counting::default())).extract(&pdf(), Parallelism::ONE).await.unwrap();
    assert!(out.index_data.is_none());
    assert_eq!(plain.calls(), 2);
}

#[tokio::test]
async fn an_answer_that_is_not_the_json_is_asked_again_then_kept_as_a_warning() {
    // Once wrong, then right: the data.
    let server = GeminiStandIn::sequence(
        &[KEY],
        vec![Act::answer(TEXT, USAGE), Act::answer(TEXT, USAGE), Act::answer("{\"pages\": [", USAGE), Act::answer(&index_json(), USAGE)],
    )
    .await;
    let out = engine(&server.base_url, Arc::new(Counting::default())).extract_index(&pdf(), Parallelism::ONE).await.unwrap();
    assert_eq!(server.calls(), 4);
    assert_eq!(out.index_data.unwrap().pages.len(), 1);

    // Twice wrong (one not JSON, one JSON of another shape): a warning with the text; the document
    // still has its text.
    let server = GeminiStandIn::sequence(
        &[KEY],
        vec![
            Act::answer(TEXT, USAGE),
            Act::answer(TEXT, USAGE),
            Act::answer("Voici les données : pas de JSON", USAGE),
            Act::answer("{\"inscriptions\": []}", USAGE),
        ],
    )
    .await;
    let out = engine(&server.base_url, Arc::new(Counting::default())).extract_index(&pdf(), Parallelism::ONE).await.unwrap();
    assert_eq!(server.calls(), 4, "asked once more, not more");
    assert!(out.raw.contains("OUELLET"));
    let data = out.index_data.unwrap();
    assert!(data.pages.is_empty());
    assert_eq!(data.warnings.len(), 1);
    assert!(data.warnings[0].contains("not the JSON asked for, twice") && data.warnings[0].contains("{\"inscriptions\": []}"), "{:?}", data.warnings);
    assert_eq!(server.violations(), Vec::<String>::new());
}

#[test]
fn the_stand_in_refuses_schemas_the_api_refuses() {
    assert!(schema_problems(&json!({"type": "OBJECT", "properties": {}}), "s")[0].contains("non-empty"));
    assert!(!schema_problems(&json!({"type": "object", "properties": {"a": {"type": "STRING"}}}), "s").is_empty());
    assert!(!schema_problems(&json!({"type": "ARRAY"}), "s").is_empty());
    assert!(!schema_problems(&json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["b"]}), "s").is_empty());
    assert!(!schema_problems(&json!({"type": "STRING", "additionalProperties": false}), "s").is_empty());
    assert!(schema_problems(&registre_ocr::index_response_schema(), "s").is_empty());
}
