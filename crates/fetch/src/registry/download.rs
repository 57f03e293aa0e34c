//! The PDF, as production took it: the save control is clicked as a person would (a WebDriver
//! element click, so its mousedown / mouseup / click handlers run; the site's `onmouseup` starts the
//! download) and the file is taken from the session's download folder once Chromium has finished
//! it (no `.crdownload` left), checked to be a PDF and deleted once read. Fetching the control's
//! href with the browser's cookies is only a fallback, when no download came and the href is an
//! http(s) URL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::json;
use url::Url;

use super::browser::classify;
use super::page::{with_find, PageState, POLL};
use super::redact_query;
use super::session::Inner;
use crate::http::{content_type_of, error_chain};
use crate::{validate_pdf, DocumentRequest, FetchError, FetchedDocument};

const PICK: &str = include_str!("js/pick.js");

/// Suffix of a download Chromium has not finished.
const PARTIAL: &str = ".crdownload";

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

impl Inner {
    /// Clicks the save control of the document page (`state`) and returns the downloaded PDF.
    pub(super) async fn download(&self, client: &Client, downloads: &Path, state: &PageState, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let before: HashSet<PathBuf> = listing(downloads).into_iter().map(|(p, _)| p).collect();
        match self.click_save(client, &state.save_in).await {
            Ok(()) => tracing::info!(document = %request.describe(), "registry: save control clicked (in the {} document)", state.save_in),
            Err(e) => tracing::warn!(document = %request.describe(), "registry: clicking the save control failed: {e}"),
        }
        if let Some(file) = self.wait_download(downloads, &before, request).await? {
            let bytes = std::fs::read(&file)
                .map_err(|e| FetchError::Other(format!("reading the download {}: {e}", file.display())))?;
            let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            // Handed over in memory: the file is not kept (the folder goes with the session anyway).
            let _ = std::fs::remove_file(&file);
            validate_pdf(&bytes).map_err(|reason| FetchError::NotAPdf { source_name: format!("the download {name}"), reason })?;
            tracing::info!(document = %request.describe(), bytes = bytes.len(), "registry: PDF downloaded by the browser ({name})");
            return Ok(FetchedDocument { bytes, content_type: "application/pdf".into(), source: format!("registry download {name}"), fetched_as: None });
        }
        let href = state.save_href.trim();
        match Url::parse(href) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                tracing::warn!(document = %request.describe(), "registry: no download came from the click: fetching the save control's href with the session's cookies (fallback)");
                self.fetch_href(client, url, request).await
            }
            _ => Err(FetchError::Other(format!(
                "{}: clicking the save control (found by `{}`) started no download within {} s, and its href {:?} cannot be fetched: see docs/fetchers.md",
                request.describe(),
                state.save_alternative,
                self.site().step_timeout().as_secs(),
                excerpt_href(href)
            ))),
        }
    }

    /// A WebDriver element click on the save control, in the top document or in the menu frame.
    async fn click_save(&self, client: &Client, save_in: &str) -> Result<(), FetchError> {
        let site = self.site();
        let in_menu = save_in == "menu";
        if in_menu {
            let selector = format!("frame[name='{0}'], iframe[name='{0}']", site.document.menu_frame);
            let frame = client.find(Locator::Css(&selector)).await.map_err(|e| classify(e, "finding the menu frame"))?;
            frame.enter_frame().await.map_err(|e| classify(e, "entering the menu frame"))?;
        }
        let result = async {
            let found = client
                .execute(&with_find(PICK), vec![json!(site.document.save_link), serde_json::Value::Null])
                .await
                .map_err(|e| classify(e, "finding the save control"))?;
            if found.is_null() {
                return Err(FetchError::Other("the save control is gone".into()));
            }
            let element = client.find(Locator::Css("[data-registre-pick]")).await.map_err(|e| classify(e, "finding the save control"))?;
            element.click().await.map_err(|e| classify(e, "clicking the save control"))?;
            Ok(())
        }
        .await;
        if in_menu {
            let _ = client.enter_parent_frame().await;
        }
        result
    }

    /// The finished download: None when nothing started within the step timeout; once a file has
    /// started, waits for it to finish up to the document timeout.
    async fn wait_download(&self, dir: &Path, before: &HashSet<PathBuf>, request: &DocumentRequest) -> Result<Option<PathBuf>, FetchError> {
        let site = self.site();
        let started_at = Instant::now();
        let mut started = false;
        let mut last: Option<(PathBuf, u64)> = None;
        loop {
            let new: Vec<(PathBuf, u64)> = listing(dir).into_iter().filter(|(p, _)| !before.contains(p)).collect();
            let partial = new.iter().any(|(p, _)| p.to_string_lossy().ends_with(PARTIAL));
            if !new.is_empty() && !started {
                started = true;
                tracing::info!(document = %request.describe(), "registry: download started");
            }
            let finished = new.into_iter().find(|(p, _)| !p.to_string_lossy().ends_with(PARTIAL));
            if let (false, Some((path, size))) = (partial, finished) {
                // The same size twice in a row: Chromium has renamed and closed it.
                if last.as_ref() == Some(&(path.clone(), size)) && size > 0 {
                    return Ok(Some(path));
                }
                last = Some((path, size));
            }
            let waited = started_at.elapsed();
            if !started && waited >= site.step_timeout() {
                return Ok(None);
            }
            if started && waited >= site.document_timeout() {
                return Err(FetchError::Timeout {
                    after: site.document_timeout(),
                    what: format!("{}: the download of the document did not finish", request.describe()),
                });
            }
            tokio::time::sleep(POLL.max(Duration::from_millis(200))).await;
        }
    }

    /// GET `url` with the browser's cookies and user agent (fallback when the click gave nothing).
    async fn fetch_href(&self, client: &Client, url: Url, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
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
        let content_type = content_type_of(&response);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FetchError::Other(format!("reading GET {shown}: {}", error_chain(&e))))?;
        validate_pdf(&bytes).map_err(|reason| FetchError::NotAPdf { source_name: shown.clone(), reason })?;
        tracing::info!(document = %request.describe(), bytes = bytes.len(), "registry: PDF fetched from the save control's href {shown}");
        Ok(FetchedDocument { bytes: bytes.to_vec(), content_type, source: shown, fetched_as: None })
    }
}

/// A href shown in an error: at most 120 characters (a javascript: href can be long).
fn excerpt_href(href: &str) -> String {
    href.chars().take(120).collect()
}
