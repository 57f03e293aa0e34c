//! GET /: the dashboard, one page whose HTML, CSS and JS are compiled into the binary
//! (include_str!), so it works on a server with no internet access and no file to deploy. The
//! script starts with the status ids, labels and allowed actions of registre_domain::status,
//! written once at start-up ([`status_script`]): the page keeps no copy of its own.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use registre_domain::status;

const PAGE: &str = include_str!("dashboard/index.html");
const CSS: &str = include_str!("dashboard/dashboard.css");

// The status constant, then the page's script; the detail pane's index table lives in its own
// file (index_data.js), served in the same script.
static JS: LazyLock<String> = LazyLock::new(|| {
    format!("{}\n{}\n{}", status_script(), include_str!("dashboard/dashboard.js"), include_str!("dashboard/index_data.js"))
});

/// `const STATUS = {...};`: every status id in order with its French label, and the ids an
/// operator may retry or cancel, from registre_domain::status.
pub fn status_script() -> String {
    let labels: serde_json::Map<String, serde_json::Value> =
        status::ALL.iter().map(|s| (s.to_string(), serde_json::Value::from(status::label(*s)))).collect();
    let value = serde_json::json!({
        "ids": status::ALL,
        "labels": labels,
        "retryable": status::RETRYABLE,
        "cancellable": status::CANCELLABLE,
    });
    format!("// The status vocabulary, written by registre-api from registre_domain::status.\nconst STATUS = {value};")
}

pub async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
}

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS)
}

pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_starts_with_the_domain_statuses() {
        let script = super::status_script();
        assert!(script.contains(r#""labels":{"1":"En attente","2":"En traitement","3":"Complété","4":"Erreur","5":"Extraction complété","6":"OCR en traitement"}"#), "{script}");
        assert!(script.contains(r#""cancellable":[1,2,3,6]"#) && script.contains(r#""retryable":[4]"#), "{script}");
        assert!(super::JS.starts_with(&script));
    }
}
