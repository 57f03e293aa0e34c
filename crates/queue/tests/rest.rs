//! The Supabase REST backend against a local HTTP server standing in for PostgREST (the only fake):
//! it checks the method, path, headers (apikey, Authorization: Bearer) and JSON body of every call
//! and answers as PostgREST documents (JSON array for set-returning functions, bare JSON for
//! scalars, `{"code","message","details","hint"}` errors).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use registre_config::{EnvName, Secret};
use registre_queue::{DocumentSource, FailOutcome, Queue, QueueError, QueueSettings, RestQueue, Stage, Transition};
use serde_json::{json, Value};

const KEY: &str = "service-role-key.for-tests";
const ID: &str = "3f1c2a8e-1111-4c3b-9d2e-0a1b2c3d4e5f";
const TOKEN: &str = "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b";

#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    apikey: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    claims: AtomicUsize,
    completes: AtomicUsize,
    missing: AtomicBool,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn claimed_row(source: &str, path: Option<&str>) -> Value {
    json!({
        "id": ID, "claim_token": TOKEN, "document_source": source, "document_number": "1 234 567",
        "document_number_normalized": "1234567", "circonscription_fonciere": "Montréal", "cadastre": "Cadastre du Québec",
        "designation_secondaire": null, "acte_type": null, "supabase_path": path,
        "attempts": 0, "max_attempts": 3, "lease_expires_at": "2030-01-01T00:00:30.123456+00:00"
    })
}

async fn rpc(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, Path(function): Path<String>, headers: HeaderMap, body: String) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let json_type = [("content-type", "application/json; charset=utf-8")];
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let call = Call {
        method,
        path: uri.path().to_string(),
        apikey: header(&headers, "apikey"),
        authorization: header(&headers, "authorization"),
        content_type: header(&headers, "content-type"),
        body,
    };
    fake.calls.lock().unwrap().push(call.clone());
    if call.apikey.as_deref() != Some(KEY) || call.authorization.as_deref() != Some(&format!("Bearer {KEY}")) {
        let err = json!({"code": "PGRST301", "message": "JWSError JWSInvalidSignature", "details": null, "hint": null});
        return (StatusCode::UNAUTHORIZED, json_type, err.to_string());
    }
    if fake.missing.load(Ordering::SeqCst) {
        let err = json!({
            "code": "PGRST202",
            "message": format!("Could not find the function public.{function} in the schema cache"),
            "details": "Searched for the function with parameter names, but no matches were found in the schema cache.",
            "hint": null
        });
        return (StatusCode::NOT_FOUND, json_type, err.to_string());
    }
    let reply = match function.as_str() {
        "queue_claim_extraction" => {
            if fake.claims.fetch_add(1, Ordering::SeqCst) == 0 {
                json!([claimed_row("index", None)])
            } else {
                json!([])
            }
        }
        "queue_claim_ocr" => json!([claimed_row("acte", Some("actes/1_234_567.pdf"))]),
        "queue_renew_lease" | "queue_release" | "queue_complete_ocr" => json!(true),
        "queue_complete_extraction" => json!(fake.completes.fetch_add(1, Ordering::SeqCst) == 0),
        "queue_fail_extraction" => json!([{"status_id": 1, "attempts": 1, "next_attempt_at": "2030-01-01T00:00:00.5+00:00"}]),
        "queue_fail_ocr" => json!([{"status_id": 4, "attempts": 3, "next_attempt_at": null}]),
        "queue_reap_expired" => json!(2),
        "queue_count_waiting" => json!([{"document_source": "index", "waiting": 3}, {"document_source": "acte", "waiting": 1}]),
        other => {
            let err = json!({"code": "PGRST202", "message": format!("Could not find the function public.{other}"), "details": null, "hint": null});
            return (StatusCode::NOT_FOUND, json_type, err.to_string());
        }
    };
    (StatusCode::OK, json_type, reply.to_string())
}

async fn serve() -> (Arc<Fake>, url::Url) {
    let fake = Arc::new(Fake::default());
    let app = Router::new().route("/rest/v1/rpc/{function}", axum::routing::any(rpc)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url::Url::parse(&format!("http://{addr}/")).unwrap())
}

/// The claim token the client chooses (fixed here so the expected request bodies can name it).
fn claim() -> uuid::Uuid {
    uuid::Uuid::parse_str(TOKEN).unwrap()
}

const SETTINGS: QueueSettings =
    QueueSettings { lease_ttl_ms: 60_000, backoff_base_ms: 30_000, backoff_max_ms: 900_000, default_max_attempts: 3 };

#[tokio::test]
async fn every_function_is_called_through_rpc_with_the_service_key_and_named_arguments() {
    let (fake, url) = serve().await;
    let queue = RestQueue::new(EnvName::Staging, &url, &Secret::new(KEY), SETTINGS).unwrap();
    assert!(!format!("{queue:?}").contains(KEY), "the key never shows in Debug");

    let job = queue.claim_extraction("registre-worker-1-abcd1234", claim()).await.unwrap().expect("a row");
    assert_eq!((job.env, job.stage, job.id.to_string().as_str()), (EnvName::Staging, Stage::Extraction, ID));
    assert_eq!(job.claim_token.to_string(), TOKEN);
    assert_eq!((job.document_number.as_str(), job.circonscription_fonciere.as_deref()), ("1 234 567", Some("Montréal")));
    assert_eq!(job.lease_expires_at.to_rfc3339(), "2030-01-01T00:00:30.123456+00:00");
    assert!(queue.claim_extraction("registre-worker-1-abcd1234", claim()).await.unwrap().is_none(), "[] is no row");
    assert_eq!(queue.renew(&job).await.unwrap(), Transition::Applied);
    assert_eq!(queue.complete_extraction(&job, "index/1_234_567.pdf", Some("cadastre=Cadastre du Québec")).await.unwrap(), Transition::Applied);
    assert_eq!(queue.complete_extraction(&job, "index/1_234_567.pdf", None).await.unwrap(), Transition::NotOwner);
    match queue.fail(&job, "délai dépassé").await.unwrap() {
        FailOutcome::Retry { attempts: 1, not_before } => assert_eq!(not_before.to_rfc3339(), "2030-01-01T00:00:00.500+00:00"),
        other => panic!("{other:?}"),
    }
    let ocr = queue.claim_ocr("ocr-worker-1", DocumentSource::Acte, claim()).await.unwrap().unwrap();
    assert_eq!((ocr.stage, ocr.supabase_path.as_deref()), (Stage::Ocr, Some("actes/1_234_567.pdf")));
    assert_eq!(queue.complete_ocr(&ocr, "texte", "texte corrigé").await.unwrap(), Transition::Applied);
    assert_eq!(queue.fail(&ocr, "illisible").await.unwrap(), FailOutcome::Failed { attempts: 3 });
    assert_eq!(queue.release(&ocr).await.unwrap(), Transition::Applied);
    assert_eq!(queue.reap_expired().await.unwrap(), 2);
    let counts = queue.count_waiting().await.unwrap();
    assert_eq!((counts.get("index"), counts.get("acte")), (Some(&3), Some(&1)));

    let calls = fake.calls.lock().unwrap().clone();
    for call in &calls {
        assert_eq!(call.method, Method::POST, "{call:?}");
        assert_eq!(call.apikey.as_deref(), Some(KEY), "{call:?}");
        assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()), "{call:?}");
        assert_eq!(call.content_type.as_deref(), Some("application/json"), "{call:?}");
    }
    let ids = json!({"p_id": ID, "p_claim_token": TOKEN});
    let with = |extra: Value| {
        let mut v = ids.clone();
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let expected: Vec<(&str, Value)> = vec![
        ("queue_claim_extraction", json!({"p_worker_id": "registre-worker-1-abcd1234", "p_lease_ms": 60000, "p_claim_token": TOKEN})),
        ("queue_claim_extraction", json!({"p_worker_id": "registre-worker-1-abcd1234", "p_lease_ms": 60000, "p_claim_token": TOKEN})),
        ("queue_renew_lease", with(json!({"p_lease_ms": 60000}))),
        ("queue_complete_extraction", with(json!({"p_supabase_path": "index/1_234_567.pdf", "p_fetched_as": "cadastre=Cadastre du Québec"}))),
        ("queue_complete_extraction", with(json!({"p_supabase_path": "index/1_234_567.pdf", "p_fetched_as": null}))),
        (
            "queue_fail_extraction",
            with(json!({"p_error": "délai dépassé", "p_backoff_base_ms": 30000, "p_backoff_max_ms": 900000, "p_default_max_attempts": 3})),
        ),
        ("queue_claim_ocr", json!({"p_worker_id": "ocr-worker-1", "p_source": "acte", "p_lease_ms": 60000, "p_claim_token": TOKEN})),
        ("queue_complete_ocr", with(json!({"p_file_content": "texte", "p_boosted_file_content": "texte corrigé"}))),
        (
            "queue_fail_ocr",
            with(json!({"p_error": "illisible", "p_backoff_base_ms": 30000, "p_backoff_max_ms": 900000, "p_default_max_attempts": 3})),
        ),
        ("queue_release", ids.clone()),
        ("queue_reap_expired", json!({"p_default_max_attempts": 3})),
        ("queue_count_waiting", json!({})),
    ];
    let got: Vec<(String, Value)> = calls.iter().map(|c| (c.path.clone(), c.body.clone())).collect();
    let want: Vec<(String, Value)> = expected.into_iter().map(|(f, b)| (format!("/rest/v1/rpc/{f}"), b)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn errors_are_read_as_postgrest_documents_them() {
    let (fake, url) = serve().await;
    let wrong = RestQueue::new(EnvName::Prod, &url, &Secret::new("wrong-key"), SETTINGS).unwrap();
    match wrong.claim_extraction("w", claim()).await {
        Err(QueueError::Rest { status: 401, message, .. }) => assert!(message.starts_with("PGRST301"), "{message}"),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    let queue = RestQueue::new(EnvName::Dev, &url, &Secret::new(KEY), SETTINGS).unwrap();
    fake.missing.store(true, Ordering::SeqCst);
    let err = queue.claim_extraction("w", claim()).await.unwrap_err();
    assert_eq!(err.to_string(), "extraction_queue missing in dev: run registrectl migrate");

    let down = url::Url::parse(&format!("http://127.0.0.1:{}/", registre_testkit::free_port())).unwrap();
    let err = RestQueue::new(EnvName::Dev, &down, &Secret::new(KEY), SETTINGS).unwrap().count_waiting().await.unwrap_err();
    assert!(matches!(err, QueueError::Http { .. }), "{err}");
    assert!(!err.to_string().contains(KEY));

    let bad = RestQueue::new(EnvName::Dev, &url, &Secret::new("line\nbreak"), SETTINGS).unwrap_err();
    assert!(!bad.to_string().contains("line"), "{bad}");
}
