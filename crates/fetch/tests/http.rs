//! The http fetcher against a local axum server: the URL built from the template, 200, 404, 500,
//! a body that is not a PDF, and the timeout. The template carries a token in its path and query
//! and a password: no error, Debug output or document source may show any of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use registre_fetch::http::HttpFetcher;
use registre_config::Secret;
use registre_fetch::{DocumentRequest, DocumentSource, FetchError, Fetcher};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";

type Seen = Arc<Mutex<Vec<String>>>;

async fn handler(State(seen): State<Seen>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    seen.lock().unwrap().push(request.uri().to_string());
    if path.ends_with("/missing.pdf") {
        (StatusCode::NOT_FOUND, "no such document").into_response()
    } else if path.ends_with("/broken.pdf") {
        (StatusCode::INTERNAL_SERVER_ERROR, "database is down").into_response()
    } else if path.ends_with("/html.pdf") {
        ([("content-type", "text/html")], "<html>login first</html>").into_response()
    } else if path.ends_with("/slow.pdf") {
        tokio::time::sleep(Duration::from_secs(5)).await;
        PDF.into_response()
    } else {
        ([("content-type", "application/pdf")], PDF).into_response()
    }
}

/// A template with secrets in the userinfo, the path and the query, as a mirror's may have.
fn secret_template(base: &str) -> Secret {
    let with_user = base.replacen("http://", "http://mirror:hunter2@", 1);
    Secret::new(format!("{with_user}/k-t0ps3cret/{{source}}/{{document_number}}.pdf?token=abc123"))
}

fn assert_no_secret(text: &str) {
    for secret in ["hunter2", "t0ps3cret", "abc123"] {
        assert!(!text.contains(secret), "{secret} leaked in: {text}");
    }
}

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new().fallback(handler).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn fills_the_template_and_fetches_the_pdf() {
    let (base, seen) = server().await;
    let fetcher = HttpFetcher::new(Secret::new(format!("{base}/docs/{{source}}/{{document_number}}.pdf")), Duration::from_secs(5)).unwrap();
    let request = DocumentRequest::new(DocumentSource::PlanCadastraux, "2 269/090");
    assert_eq!(fetcher.url_for(&request), format!("{base}/docs/plan_cadastraux/2%20269%2F090.pdf"));
    let doc = fetcher.fetch(&request).await.unwrap();
    assert_eq!(doc.bytes, PDF);
    assert_eq!(doc.content_type, "application/pdf");
    assert_eq!(doc.source, format!("{base}/…"));
    assert_eq!(seen.lock().unwrap().as_slice(), ["/docs/plan_cadastraux/2%20269%2F090.pdf"]);
    assert_eq!(fetcher.kind(), "http");
}

#[tokio::test]
async fn status_404_is_not_found_and_500_is_readable_without_the_template() {
    let (base, seen) = server().await;
    let fetcher = HttpFetcher::new(secret_template(&base), Duration::from_secs(5)).unwrap();
    assert_no_secret(&format!("{fetcher:?}"));

    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "missing")).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("document not found: index missing (GET {base}/…: HTTP 404 Not Found)"));

    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Acte, "broken")).await.unwrap_err();
    assert!(matches!(err, FetchError::Other(_)), "{err:?}");
    assert_eq!(err.to_string(), format!("GET {base}/… for acte broken: HTTP 500 Internal Server Error: database is down"));

    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Acte, "html")).await.unwrap_err();
    assert!(matches!(err, FetchError::NotAPdf { .. }), "{err:?}");
    assert_no_secret(&format!("{err} {err:?}"));

    let doc = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "ok")).await.unwrap();
    assert_no_secret(&format!("{doc:?} {}", doc.source));
    // The secrets did reach the server: the template is used, only never shown.
    assert!(seen.lock().unwrap().iter().any(|u| u == "/k-t0ps3cret/index/ok.pdf?token=abc123"), "{:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn a_template_without_the_number_hole_is_refused_without_showing_it() {
    let err = HttpFetcher::new(Secret::new("http://u:hunter2@m.example/t0ps3cret/{source}.pdf?token=abc123"), Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.to_string(), "REGISTRE_URL_TEMPLATE has no {document_number} hole");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let (base, _) = server().await;
    let fetcher = HttpFetcher::new(secret_template(&base), Duration::from_millis(300)).unwrap();
    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "slow")).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert_no_secret(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn an_unreachable_server_is_a_readable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let fetcher = HttpFetcher::new(secret_template(&format!("http://127.0.0.1:{port}")), Duration::from_secs(5)).unwrap();
    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "1")).await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("GET http://127.0.0.1:{port}/… for index 1: ")), "{err}");
    assert_no_secret(&format!("{err} {err:?}"));
}
