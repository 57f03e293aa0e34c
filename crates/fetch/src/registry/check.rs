//! `registrectl site-check`: the registry flow driven one step at a time for an operator, on the
//! first real run and on the day the site changes. Every step records the alternative of
//! registry-site.toml that matched, its time and ok / what failed, and saves a screenshot and the
//! HTML of the page in a folder of its own. Unless told to fetch, it stops before the submit that
//! opens a document (actes: after the results, before the row's submit; index and plans: before
//! the search submit), so nothing is charged.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use fantoccini::Client;

use super::session::Inner;

/// The error text of a check that stopped where it was told to (not a failure).
pub(super) const STOPPED: &str = "site-check: stopped before the submit that opens a document (use --fetch to go on)";

/// One step of a site check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedStep {
    pub step: String,
    /// The alternative (or option, or page) that matched.
    pub matched: String,
    pub millis: u128,
    /// None when the step passed, else what failed.
    pub failure: Option<String>,
}

/// What a site check found.
#[derive(Debug, Clone)]
pub struct SiteCheckReport {
    pub steps: Vec<CheckedStep>,
    pub folder: PathBuf,
    /// Whether it stopped before the document on purpose.
    pub stopped_before_document: bool,
}

impl SiteCheckReport {
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.failure.is_none())
    }

    /// The step table, for the terminal.
    pub fn table(&self) -> String {
        let width = self.steps.iter().map(|s| s.step.chars().count()).max().unwrap_or(4).max(4);
        let alt_width = self.steps.iter().map(|s| s.matched.chars().count()).max().unwrap_or(11).clamp(11, 70);
        let mut out = format!("{:<width$}  {:<alt_width$}  {:>8}  result\n", "step", "alternative", "ms");
        for s in &self.steps {
            let matched: String = s.matched.chars().take(70).collect();
            let result = s.failure.as_deref().map(|f| format!("FAILED: {f}")).unwrap_or_else(|| "ok".into());
            out.push_str(&format!("{:<width$}  {:<alt_width$}  {:>8}  {result}\n", s.step, matched, s.millis));
        }
        out
    }
}

/// The recorder of a fetcher built for a site check.
pub(super) struct CheckLog {
    pub(super) folder: PathBuf,
    pub(super) fetch: bool,
    pub(super) steps: Mutex<Vec<CheckedStep>>,
    pub(super) since: Mutex<Instant>,
}

impl CheckLog {
    pub(super) fn new(folder: PathBuf, fetch: bool) -> CheckLog {
        CheckLog { folder, fetch, steps: Mutex::new(Vec::new()), since: Mutex::new(Instant::now()) }
    }

    fn elapsed_and_reset(&self) -> u128 {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let millis = since.elapsed().as_millis();
        *since = Instant::now();
        millis
    }

    /// Records a step and returns the folder for its screenshot and HTML.
    fn push(&self, step: &str, matched: &str, failure: Option<String>) -> PathBuf {
        let millis = self.elapsed_and_reset();
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.push(CheckedStep { step: step.to_string(), matched: matched.to_string(), millis, failure });
        let slug: String = step.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        self.folder.join(format!("{:02}-{slug}", steps.len()))
    }
}

async fn save_page(client: &Client, folder: &Path) {
    if std::fs::create_dir_all(folder).is_err() {
        return;
    }
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(folder.join("screenshot.png"), png);
    }
    let html = super::diagnostics::page_html(client).await;
    let _ = std::fs::write(folder.join("page.html"), html);
}

impl Inner {
    /// Records a passed step of a site check (nothing otherwise).
    pub(super) async fn checkpoint(&self, client: &Client, step: &str, matched: &str) {
        let Some(check) = &self.check else { return };
        let folder = check.push(step, matched, None);
        save_page(client, &folder).await;
    }

    /// Records the failed step of a site check.
    pub(super) async fn check_failed(&self, client: Option<&Client>, step: &str, failure: String) {
        let Some(check) = &self.check else { return };
        let folder = check.push(step, "", Some(failure));
        if let Some(client) = client {
            save_page(client, &folder).await;
        }
    }

    /// Whether a site check must stop before the submit that opens a document.
    pub(super) fn stop_before_document(&self) -> bool {
        self.check.as_ref().is_some_and(|c| !c.fetch)
    }
}
