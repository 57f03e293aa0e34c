//! S3 backend against a local HTTP server that checks every call's method, path, headers,
//! payload hash and SigV4 Authorization (shape, and signature recomputed from what arrived on
//! the wire), and answers as S3 does. The signing itself is checked against AWS's published
//! examples in `src/sigv4.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use registre_config::{Config, StorageBackend};
use registre_storage::sigv4::{self, SignedRequest};
use registre_storage::{Bucket, Bytes, ObjectPath, Storage, StorageError};

const KEY_ID: &str = "AKIDEXAMPLE0000000001";
const SECRET: &str = "s3cr3t/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "session-token-abc";
const REGION: &str = "ca-central-1";

#[derive(Default)]
struct Fake {
    host: Mutex<String>,
    objects: Mutex<HashMap<String, Vec<u8>>>,
    calls: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
}

fn check(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], host: &str, with_token: bool) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if header("host") != host {
        return Err(format!("host {:?}, expected {host:?}", header("host")));
    }
    let date = header("x-amz-date");
    if date.len() != 16 || &date[8..9] != "T" || !date.ends_with('Z') || !date[..8].chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("x-amz-date {date:?}"));
    }
    if header("x-amz-content-sha256") != sigv4::sha256_hex(body) {
        return Err("x-amz-content-sha256 is not the body's SHA-256".into());
    }
    let is_put = method == Method::PUT;
    if is_put != (header("content-type") == "application/pdf") {
        return Err(format!("content-type {:?} on {method}", header("content-type")));
    }
    if with_token != (header("x-amz-security-token") == TOKEN) {
        return Err("x-amz-security-token".into());
    }
    let auth = header("authorization");
    let expected_prefix = format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/{}/{REGION}/s3/aws4_request, SignedHeaders=", &date[..8]);
    let Some(rest) = auth.strip_prefix(&expected_prefix) else {
        return Err(format!("authorization {auth:?}"));
    };
    let Some((signed, signature)) = rest.split_once(", Signature=") else {
        return Err(format!("authorization {auth:?}"));
    };
    let mut expected_signed = vec!["host", "x-amz-content-sha256", "x-amz-date"];
    if is_put {
        expected_signed.insert(0, "content-type");
    }
    if with_token {
        expected_signed.push("x-amz-security-token");
    }
    if signed != expected_signed.join(";") {
        return Err(format!("SignedHeaders={signed}"));
    }
    if signature.len() != 64 || !signature.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return Err(format!("Signature={signature}"));
    }
    // Recompute from what arrived: the signed headers' values and the path as received.
    let values: Vec<(String, String)> = signed.split(';').map(|n| (n.to_string(), header(n))).collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let payload = sigv4::sha256_hex(body);
    let request = SignedRequest { method: method.as_str(), canonical_uri: uri.path(), canonical_query: "", headers: &pairs, payload_hash: &payload };
    let recomputed = sigv4::authorization(&request, &date, REGION, "s3", KEY_ID, SECRET);
    if recomputed != auth {
        return Err(format!("signature does not verify: got {auth}, expected {recomputed}"));
    }
    Ok(())
}

async fn s3(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    fake.calls.lock().unwrap().push(format!("{method} {}", uri.path()));
    let host = fake.host.lock().unwrap().clone();
    let with_token = headers.contains_key("x-amz-security-token");
    if let Err(what) = check(&method, &uri, &headers, &body, &host, with_token) {
        fake.violations.lock().unwrap().push(format!("{method} {uri}: {what}"));
        return (StatusCode::FORBIDDEN, format!("<Error><Code>SignatureDoesNotMatch</Code><Message>{what}</Message></Error>")).into_response();
    }
    let Some(key) = uri.path().strip_prefix("/registre-docs/") else {
        return (StatusCode::NOT_FOUND, "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>").into_response();
    };
    let key = key.to_string();
    let mut objects = fake.objects.lock().unwrap();
    let no_such_key = || (StatusCode::NOT_FOUND, [("content-type", "application/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>").into_response();
    match method {
        Method::PUT => {
            objects.insert(key, body.to_vec());
            (StatusCode::OK, [("etag", "\"9b2cf535f27731c974343645a3985328\"")]).into_response()
        }
        Method::GET => match objects.get(&key) {
            Some(bytes) => bytes.clone().into_response(),
            None => no_such_key(),
        },
        Method::HEAD => match objects.get(&key) {
            Some(_) => StatusCode::OK.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Method::DELETE => {
            objects.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn start_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new().fallback(s3).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *fake.host.lock().unwrap() = addr.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}"))
}

fn storage(storage_url: &str, token: bool) -> Storage {
    let mut vars = vec![
        ("PROD_DATABASE_URL", "postgres://localhost/registre".to_string()),
        ("STORAGE_URL", storage_url.to_string()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_REGION", "us-west-2".to_string()),
    ];
    if token {
        vars.push(("AWS_SESSION_TOKEN", TOKEN.to_string()));
    }
    let config = Config::from_vars(vars).unwrap();
    let shown = format!("{:?}", config.storage);
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "secret in Debug: {shown}");
    assert!(matches!(config.storage.backend, StorageBackend::S3(_)));
    Storage::from_config(&config.storage).unwrap()
}

#[tokio::test]
async fn round_trip_signed_path_style() {
    let (fake, endpoint) = start_fake().await;
    let storage = storage(&format!("s3://registre-docs/prod/v1?region={REGION}&endpoint={endpoint}"), false);
    assert_eq!(storage.backend_name(), "s3");
    assert_eq!(storage.describe(), format!("s3 registre-docs/prod/v1 at {endpoint}/ ({REGION}, path-style)"));

    let pdf = Bytes::from_static(b"%PDF-1.5 index 42");
    let path = ObjectPath::for_document("index", "42 / 7", "Québec", "", 1_700_000_000_001).unwrap();
    assert!(!storage.exists(&path).await.unwrap());
    let stored = storage.put(Bucket::Index, path.name(), pdf.clone()).await.unwrap();
    assert_eq!(stored, path);
    assert!(storage.exists(&stored).await.unwrap());
    assert_eq!(storage.get(&stored).await.unwrap(), pdf);
    storage.delete(&stored).await.unwrap();
    let err = storage.get(&stored).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("s3 storage: object {stored} not found"));

    let key = format!("/registre-docs/prod/v1/index/{}", stored.name());
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [format!("HEAD {key}"), format!("PUT {key}"), format!("HEAD {key}"), format!("GET {key}"), format!("DELETE {key}"), format!("GET {key}")]
    );
    assert_eq!(fake.objects.lock().unwrap().len(), 0);
    assert!(fake.violations.lock().unwrap().is_empty(), "{:?}", fake.violations.lock().unwrap());
}

#[tokio::test]
async fn session_token_is_signed_and_names_are_encoded() {
    let (fake, endpoint) = start_fake().await;
    // Endpoint from S3_ENDPOINT-like query, region from the URL, no prefix.
    let storage = storage(&format!("s3://registre-docs?region={REGION}&endpoint={endpoint}"), true);
    let path = ObjectPath::parse("actes/dossier A/n°1.pdf").unwrap();
    storage.put_object(&path, Bytes::from_static(b"%PDF acte")).await.unwrap();
    assert_eq!(storage.get(&path).await.unwrap().as_ref(), b"%PDF acte");
    assert_eq!(fake.calls.lock().unwrap()[0], "PUT /registre-docs/actes/dossier%20A/n%C2%B01.pdf");
    assert!(fake.violations.lock().unwrap().is_empty(), "{:?}", fake.violations.lock().unwrap());
}

#[tokio::test]
async fn errors_are_readable() {
    let (fake, endpoint) = start_fake().await;
    // Wrong bucket: NoSuchBucket is a configuration error with S3's message, not "not found".
    let other = storage(&format!("s3://other-bucket?region={REGION}&endpoint={endpoint}"), false);
    let err = other.get(&ObjectPath::new(Bucket::Actes, "a.pdf").unwrap()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "s3 storage: download actes/a.pdf: HTTP 404: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
    );
    // Wrong region: the fake refuses the signature, the error says so without any secret.
    let wrong_region = storage(&format!("s3://registre-docs?region=eu-west-1&endpoint={endpoint}"), false);
    let err = wrong_region.put(Bucket::Actes, "a.pdf", Bytes::from_static(b"%PDF")).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("s3 storage: upload actes/a.pdf: HTTP 403: <Error><Code>SignatureDoesNotMatch</Code>"), "{shown}");
    assert!(!shown.contains(SECRET));
    assert_eq!(fake.violations.lock().unwrap().len(), 1);
}

#[test]
fn virtual_hosted_on_aws_by_default() {
    let storage = storage("s3://registre-docs/archive", false);
    let Storage::S3(s3) = &storage else { panic!("not s3") };
    // Region from AWS_REGION, endpoint from the region, virtual-hosted addressing.
    let location = s3.location(&ObjectPath::parse("plans-cadastraux/p.pdf").unwrap()).unwrap();
    assert_eq!(location.url.as_str(), "https://registre-docs.s3.us-west-2.amazonaws.com/archive/plans-cadastraux/p.pdf");
    assert_eq!(location.host, "registre-docs.s3.us-west-2.amazonaws.com");
    assert_eq!(location.canonical_uri, "/archive/plans-cadastraux/p.pdf");
    assert_eq!(s3.key(&ObjectPath::parse("index/x.pdf").unwrap()), "archive/index/x.pdf");
}
