//! Supabase Storage REST backend against a local HTTP server that checks method, path, headers
//! and body of every call and answers as Supabase Storage does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use registre_config::{Config, StorageBackend};
use registre_storage::{Bucket, Bytes, ObjectPath, Storage, StorageError};

const SERVICE_KEY: &str = "service-role-key-very-secret";

#[derive(Default)]
struct Fake {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    /// `METHOD /path` of every call, in order.
    calls: Mutex<Vec<String>>,
    /// Every way a call differed from what Supabase Storage expects.
    violations: Mutex<Vec<String>>,
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], value.to_string()).into_response()
}

fn not_found_body() -> serde_json::Value {
    serde_json::json!({"statusCode": "404", "error": "not_found", "message": "Object not found"})
}

async fn supabase(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    fake.calls.lock().unwrap().push(format!("{method} {}", uri.path()));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let violation = |what: String| {
        fake.violations.lock().unwrap().push(format!("{method} {uri}: {what}"));
        (StatusCode::INTERNAL_SERVER_ERROR, what).into_response()
    };
    let Some(key) = uri.path().strip_prefix("/storage/v1/object/") else {
        return violation("not under /storage/v1/object/".into());
    };
    if uri.query().is_some() {
        return violation("unexpected query string".into());
    }
    let key = percent_decode(key);
    // Supabase refuses a wrong key with 403 (or 400) and a JSON error, like this.
    if header("apikey").as_deref() != Some(SERVICE_KEY) || header("authorization") != Some(format!("Bearer {SERVICE_KEY}")) {
        return json(StatusCode::FORBIDDEN, serde_json::json!({"statusCode": "403", "error": "Unauthorized", "message": "invalid signature"}));
    }
    if key.starts_with("index/boom") {
        return (StatusCode::BAD_GATEWAY, format!("<html>\n  <body>upstream    exploded</body>\n{}</html>", "x".repeat(1000))).into_response();
    }
    let mut objects = fake.objects.lock().unwrap();
    match method.clone() {
        Method::POST => {
            if header("content-type").as_deref() != Some("application/pdf") {
                return violation(format!("content-type {:?}", header("content-type")));
            }
            if header("x-upsert").as_deref() != Some("true") {
                return violation(format!("x-upsert {:?}", header("x-upsert")));
            }
            if body.is_empty() || !body.starts_with(b"%PDF") {
                return violation("upload body is not the PDF".into());
            }
            objects.insert(key.clone(), body.to_vec());
            json(StatusCode::OK, serde_json::json!({"Key": key, "Id": "7f8c0e1e-2b6a-4c8e-9d53-0c7b6a1f2e3d"}))
        }
        Method::GET | Method::HEAD | Method::DELETE => {
            if !body.is_empty() {
                return violation("a body on a GET/HEAD/DELETE".into());
            }
            if header("x-upsert").is_some() {
                return violation("x-upsert on a non-upload".into());
            }
            if key.ends_with("legacy-missing.pdf") {
                // Older Storage versions: HTTP 400 carrying a "404" JSON error.
                return json(StatusCode::BAD_REQUEST, not_found_body());
            }
            match (method.clone(), objects.get(&key).cloned()) {
                (Method::GET, Some(bytes)) => ([("content-type", "application/pdf")], bytes).into_response(),
                (Method::HEAD, Some(_)) => ([("content-type", "application/pdf")]).into_response(),
                (Method::DELETE, Some(_)) => {
                    objects.remove(&key);
                    json(StatusCode::OK, serde_json::json!({"message": "Successfully deleted"}))
                }
                (Method::HEAD, None) => StatusCode::BAD_REQUEST.into_response(),
                (_, None) => json(StatusCode::NOT_FOUND, not_found_body()),
                _ => unreachable!(),
            }
        }
        other => violation(format!("unexpected method {other}")),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn start_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new().fallback(supabase).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}"))
}

fn storage(base: &str, key_vars: &[(&str, &str)]) -> Storage {
    let mut vars = vec![("PROD_DATABASE_URL".to_string(), "postgres://localhost/registre".to_string()), ("STORAGE_URL".to_string(), base.to_string())];
    vars.extend(key_vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(vars).unwrap();
    let shown = format!("{:?}", config.storage);
    assert!(!shown.contains(SERVICE_KEY), "service key in Debug: {shown}");
    assert!(matches!(config.storage.backend, StorageBackend::Supabase { .. }));
    Storage::from_config(&config.storage).unwrap()
}

#[tokio::test]
async fn upload_download_exists_delete() {
    let (fake, base) = start_fake().await;
    let storage = storage(&base, &[("STORAGE_SERVICE_KEY", SERVICE_KEY)]);
    assert_eq!(storage.backend_name(), "supabase");
    assert!(!format!("{storage:?} {}", storage.describe()).contains(SERVICE_KEY));

    let pdf = Bytes::from_static(b"%PDF-1.4\nacte 1234\n%%EOF");
    let path = ObjectPath::for_document("acte", "1 234/567", "Montréal", "Québec", 1_700_000_000_000).unwrap();
    let stored = storage.put(path.bucket(), path.name(), pdf.clone()).await.unwrap();
    assert_eq!(stored.to_string(), "actes/1_234_567-Montr_al-Qu_bec-1700000000000.pdf");
    assert!(storage.exists(&stored).await.unwrap());
    assert_eq!(storage.get(&stored).await.unwrap(), pdf);
    // The full-URL form of supabase_path that older rows hold reads the same object.
    let legacy = ObjectPath::parse(&format!("{base}/storage/v1/object/public/{stored}")).unwrap();
    assert_eq!(storage.get(&legacy).await.unwrap(), pdf);
    storage.delete(&stored).await.unwrap();
    assert!(!storage.exists(&stored).await.unwrap());
    storage.delete(&stored).await.unwrap(); // idempotent: Supabase's 404 is success here

    let name = stored.name().to_string();
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [
            format!("POST /storage/v1/object/actes/{name}"),
            format!("HEAD /storage/v1/object/actes/{name}"),
            format!("GET /storage/v1/object/actes/{name}"),
            format!("GET /storage/v1/object/actes/{name}"),
            format!("DELETE /storage/v1/object/actes/{name}"),
            format!("HEAD /storage/v1/object/actes/{name}"),
            format!("DELETE /storage/v1/object/actes/{name}"),
        ]
    );
    assert!(fake.violations.lock().unwrap().is_empty(), "{:?}", fake.violations.lock().unwrap());
}

#[tokio::test]
async fn names_with_spaces_are_encoded_and_project_path_is_accepted() {
    let (fake, base) = start_fake().await;
    // STORAGE_URL may carry /storage/v1; the key falls back to the prod environment's.
    let storage = storage(&format!("{base}/storage/v1/"), &[("PROD_SUPABASE_SERVICE_KEY", SERVICE_KEY)]);
    let path = ObjectPath::parse("plans-cadastraux/2024/plan n°1.pdf").unwrap();
    storage.put_object(&path, Bytes::from_static(b"%PDF plan")).await.unwrap();
    assert_eq!(storage.get(&path).await.unwrap().as_ref(), b"%PDF plan");
    assert_eq!(fake.calls.lock().unwrap()[0], "POST /storage/v1/object/plans-cadastraux/2024/plan%20n%C2%B01.pdf");
    assert!(fake.objects.lock().unwrap().contains_key("plans-cadastraux/2024/plan n°1.pdf"));
    assert!(fake.violations.lock().unwrap().is_empty(), "{:?}", fake.violations.lock().unwrap());
}

#[tokio::test]
async fn missing_objects_and_failures_are_readable() {
    let (fake, base) = start_fake().await;
    let storage = storage(&base, &[("SUPABASE_SERVICE_KEY", SERVICE_KEY)]);

    let missing = ObjectPath::new(Bucket::Index, "nope.pdf").unwrap();
    let err = storage.get(&missing).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "supabase storage: object index/nope.pdf not found");

    let legacy = ObjectPath::new(Bucket::Index, "legacy-missing.pdf").unwrap();
    assert!(storage.get(&legacy).await.unwrap_err().is_not_found());

    let boom = ObjectPath::new(Bucket::Index, "boom.pdf").unwrap();
    let err = storage.put_object(&boom, Bytes::from_static(b"%PDF")).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("supabase storage: upload index/boom.pdf: HTTP 502: <html> <body>upstream exploded</body> xxx"), "{shown}");
    assert!(shown.ends_with('…') && shown.len() < 400, "{shown}");

    // A wrong key: the status and Supabase's message, never the key.
    let wrong = match Config::from_vars([
        ("PROD_DATABASE_URL", "postgres://localhost/registre"),
        ("STORAGE_URL", base.as_str()),
        ("STORAGE_SERVICE_KEY", "not-the-key"),
    ]) {
        Ok(c) => Storage::from_config(&c.storage).unwrap(),
        Err(e) => panic!("{e}"),
    };
    let err = wrong.put(Bucket::Actes, "a.pdf", Bytes::from_static(b"%PDF")).await.unwrap_err();
    let shown = err.to_string();
    assert_eq!(
        shown,
        r#"supabase storage: upload actes/a.pdf: HTTP 403: {"error":"Unauthorized","message":"invalid signature","statusCode":"403"}"#
    );
    assert!(!shown.contains("not-the-key"));
    assert!(fake.violations.lock().unwrap().is_empty(), "{:?}", fake.violations.lock().unwrap());
}

#[tokio::test]
async fn unreachable_server_names_the_object() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let storage = storage(&format!("http://127.0.0.1:{port}"), &[("STORAGE_SERVICE_KEY", SERVICE_KEY)]);
    let err = storage.get(&ObjectPath::new(Bucket::Actes, "x.pdf").unwrap()).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("supabase storage: download actes/x.pdf: request failed:"), "{shown}");
    assert!(!shown.contains(SERVICE_KEY));
}
