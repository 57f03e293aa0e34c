//! The `http` fetcher: GET on REGISTRE_URL_TEMPLATE with its `{source}` and `{document_number}`
//! holes filled (values percent-encoded), bounded by EXTRACTION_TIMEOUT. For mirrors of the registry.
//! The template is a secret (a mirror's URL may carry credentials or a token in its path or query):
//! errors, logs and Debug show only the scheme and host of a URL, never its userinfo, path or query.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use registre_config::Secret;
use reqwest::StatusCode;

use crate::{validate_pdf, BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};

/// Everything but RFC 3986 unreserved characters is encoded, `/` included: a value fills one segment.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Debug, Clone)]
pub struct HttpFetcher {
    template: Secret,
    timeout: Duration,
    client: reqwest::Client,
}

impl HttpFetcher {
    pub fn new(template: Secret, timeout: Duration) -> Result<Self, FetchError> {
        if !template.expose().contains("{document_number}") {
            return Err(FetchError::Other("REGISTRE_URL_TEMPLATE has no {document_number} hole".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| FetchError::Other(format!("building the HTTP client: {e}")))?;
        Ok(HttpFetcher { template, timeout, client })
    }

    /// The URL a request maps to.
    pub fn url_for(&self, request: &DocumentRequest) -> String {
        let encode = |v: &str| utf8_percent_encode(v, VALUE).to_string();
        self.template
            .expose()
            .replace("{source}", &encode(request.document_source.as_str()))
            .replace("{document_number}", &encode(request.document_number.trim()))
    }
}

/// At most this much of an error body goes into the message.
const BODY_EXCERPT: usize = 200;

impl Fetcher for HttpFetcher {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let url = self.url_for(request);
            // What messages say instead of the URL: it is built from the secret template.
            let shown = shown_url(&url);
            let timeout = |what: String| FetchError::Timeout { after: self.timeout, what };
            let response = self.client.get(&url).send().await.map_err(|e| {
                if e.is_timeout() {
                    timeout(format!("GET {shown}"))
                } else {
                    FetchError::Other(format!("GET {shown} for {}: {}", request.describe(), error_chain(&e.without_url())))
                }
            })?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Err(FetchError::NotFound { document: request.describe(), detail: format!("GET {shown}: HTTP {status}") });
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                let excerpt: String = body.trim().chars().take(BODY_EXCERPT).collect();
                let excerpt = if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") };
                return Err(FetchError::Other(format!("GET {shown} for {}: HTTP {status}{excerpt}", request.describe())));
            }
            let content_type = content_type_of(&response);
            let bytes = response.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    timeout(format!("reading the body of {shown}"))
                } else {
                    FetchError::Other(format!("reading the body of {shown}: {}", error_chain(&e.without_url())))
                }
            })?;
            validate_pdf(&bytes).map_err(|reason| FetchError::NotAPdf { source_name: shown.clone(), reason })?;
            Ok(FetchedDocument { bytes: bytes.to_vec(), content_type, source: shown, fetched_as: None })
        })
    }

    fn kind(&self) -> &'static str {
        "http"
    }
}

/// `scheme://host[:port]/…`: enough for an operator to tell which mirror failed, nothing of the
/// template's userinfo, path or query. A URL that does not parse is not shown at all.
/// The answer's Content-Type, `application/pdf` when the server sends none (both fetchers store it
/// with the document).
pub(crate) fn content_type_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/pdf")
        .to_string()
}

pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "[redacted URL]".to_string(),
        },
        Err(_) => "[redacted URL]".to_string(),
    }
}

/// An error with its causes (`error sending request: connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
