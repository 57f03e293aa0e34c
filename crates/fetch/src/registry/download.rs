//! The PDF: the save control's href fetched with reqwest carrying the browser session's cookies
//! and user agent, checked to be a PDF.

use fantoccini::Client;
use url::Url;

use super::browser::classify;
use super::redact_query;
use super::session::Inner;
use crate::http::error_chain;
use crate::{validate_pdf, DocumentRequest, FetchError, FetchedDocument};

impl Inner {
    /// GET `href` with the browser's cookies and user agent.
    pub(super) async fn download(&self, client: &Client, href: &str, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let url = Url::parse(href).map_err(|e| FetchError::Other(format!("save control href {href:?}: {e}")))?;
        let cookies = client.get_all_cookies().await.map_err(|e| classify(e, "reading the session cookies"))?;
        let cookie_header = cookies.iter().map(|c| format!("{}={}", c.name(), c.value())).collect::<Vec<_>>().join("; ");
        let user_agent = client.get_ua().await.ok().flatten();
        let mut get = self.http.get(url.clone());
        if !cookie_header.is_empty() {
            get = get.header(reqwest::header::COOKIE, cookie_header);
        }
        if let Some(ua) = user_agent {
            get = get.header(reqwest::header::USER_AGENT, ua);
        }
        let shown = redact_query(&url);
        let response = get.send().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout { after: self.settings.fetch_timeout, what: format!("GET {shown}") }
            } else {
                FetchError::Other(format!("GET {shown}: {}", error_chain(&e)))
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Other(format!("{}: GET {shown} (save control): HTTP {status}", request.describe())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/pdf")
            .to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FetchError::Other(format!("reading GET {shown}: {}", error_chain(&e))))?;
        validate_pdf(&bytes).map_err(|reason| FetchError::NotAPdf { source_name: shown.clone(), reason })?;
        tracing::info!(document = %request.describe(), bytes = bytes.len(), "registry: PDF saved from {shown}");
        Ok(FetchedDocument { bytes: bytes.to_vec(), content_type, source: shown })
    }
}
