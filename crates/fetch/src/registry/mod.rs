//! The `registry` fetcher: the Registre foncier website driven by headless Chromium through
//! WebDriver. Every URL and selector (ordered lists of alternatives) comes from `registry-site.toml` ([`site::SiteConfig`]).
//!
//! One fetcher holds at most one browser session, logged in with an account held from the
//! [`AccountProvider`] for the session's life. The session is opened on demand, closed after
//! REGISTRE_BROWSER_IDLE_MS without use, and dropped (processes killed) after a crash or a
//! timeout so the next fetch starts a fresh browser. An account the site refuses is reported to
//! the provider (which rests it) and the next account is tried. The document flow of docs/design.md §9.1
//! (search form, optional choice and confirmation pages, the document frameset) is in [`search`]
//! on the page primitives of [`page`]; logging in is [`login`], the browser session [`session`],
//! and the PDF is downloaded ([`download`]) by clicking the save control and taking the browser's
//! download (the href fetched with the session's cookies is only a fallback).

mod account;
mod browser;
pub mod check;
pub mod diagnostics;
mod download;
mod login;
pub mod matching;
mod page;
mod search;
mod session;
pub mod site;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use registre_config::RegistreConfig;
use tokio::sync::Mutex;
use url::Url;

pub use account::{Account, AccountError, AccountProvider, InMemoryAccounts};
pub use browser::{chromium_flags, Browser, CHROMIUM_FLAGS, NO_SANDBOX, SESSION_VAR};
use session::{Inner, State};
use site::SiteConfig;

use crate::{BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};

/// Everything the registry fetcher needs, built from [`RegistreConfig`] or by hand in tests.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub site: SiteConfig,
    pub chromium_path: PathBuf,
    pub chromedriver_path: PathBuf,
    /// The browser session is closed after this long without a fetch.
    pub idle_timeout: Duration,
    /// Bound of one whole fetch (EXTRACTION_TIMEOUT).
    pub fetch_timeout: Duration,
    /// REGISTRE_DEFAULT_CIRCONSCRIPTION: searched for a row without a circonscription.
    pub default_circonscription: Option<String>,
}

impl RegistrySettings {
    /// The site description (REGISTRE_SITE_CONFIG or the embedded one, REGISTRE_BASE_URL applied)
    /// and the browser knobs of the configuration.
    pub fn from_config(config: &RegistreConfig) -> Result<RegistrySettings, FetchError> {
        let mut site = match &config.site_config {
            Some(path) => SiteConfig::from_file(path)?,
            None => SiteConfig::embedded()?,
        };
        if let Some(base) = &config.base_url {
            site = site.with_base_url(base.clone());
        }
        let site = site.with_timeouts(config.step_timeout, config.document_timeout);
        Ok(RegistrySettings {
            site,
            chromium_path: config.chromium_path.clone(),
            chromedriver_path: config.chromedriver_path.clone(),
            idle_timeout: config.browser_idle,
            fetch_timeout: config.extraction_timeout,
            default_circonscription: config.default_circonscription.clone(),
        })
    }

    /// The embedded site description with Debian's binaries and the default bounds.
    pub fn with_defaults() -> Result<RegistrySettings, FetchError> {
        Ok(RegistrySettings {
            site: SiteConfig::embedded()?,
            chromium_path: PathBuf::from("/usr/bin/chromium"),
            chromedriver_path: PathBuf::from("/usr/bin/chromedriver"),
            idle_timeout: Duration::from_secs(120),
            fetch_timeout: Duration::from_secs(300),
            default_circonscription: None,
        })
    }
}

pub struct RegistryFetcher {
    inner: Arc<Inner>,
}

impl RegistryFetcher {
    pub fn new(settings: RegistrySettings, accounts: Arc<dyn AccountProvider>) -> Result<Self, FetchError> {
        RegistryFetcher::build(settings, accounts, None)
    }

    fn build(settings: RegistrySettings, accounts: Arc<dyn AccountProvider>, check: Option<check::CheckLog>) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .build()
            .map_err(|e| FetchError::Other(format!("building the HTTP client: {e}")))?;
        Ok(RegistryFetcher { inner: Arc::new(Inner { settings, accounts, http, state: Mutex::new(State::default()), check }) })
    }

    /// `registrectl site-check`: drives the site for `request` one step at a time with an account
    /// of `accounts`, saving a screenshot and the HTML of every step under `folder`. Stops before
    /// the submit that opens a document unless `fetch` (which may charge).
    pub async fn site_check(
        settings: RegistrySettings,
        accounts: Arc<dyn AccountProvider>,
        request: &DocumentRequest,
        folder: PathBuf,
        fetch: bool,
    ) -> Result<check::SiteCheckReport, FetchError> {
        std::fs::create_dir_all(&folder)
            .map_err(|e| FetchError::Other(format!("creating the site-check folder {}: {e}", folder.display())))?;
        let fetcher = RegistryFetcher::build(settings, accounts, Some(check::CheckLog::new(folder.clone(), fetch)))?;
        let result = fetcher.inner.clone().fetch(request).await;
        let stopped = matches!(&result, Err(FetchError::Other(text)) if text == check::STOPPED);
        if let Err(e) = &result {
            if !stopped {
                fetcher.inner.check_failed(None, "failed", e.to_string()).await;
            }
        }
        fetcher.shutdown().await;
        let steps = fetcher.inner.check.as_ref().map(|c| c.steps.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        Ok(check::SiteCheckReport { steps, folder, stopped_before_document: stopped })
    }

    /// Whether a browser session is open right now.
    pub async fn has_session(&self) -> bool {
        self.inner.state.lock().await.session.is_some()
    }

    /// Process id of the running chromedriver, if a session is open (its process group holds Chromium).
    pub async fn driver_pid(&self) -> Option<u32> {
        self.inner.state.lock().await.session.as_ref().and_then(|s| s.browser.driver_pid())
    }

    /// The open session's Chromium profile directory, if a session is open: what the browser keeps
    /// on disk while it lives (removed with the session).
    pub async fn profile_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.state.lock().await.session.as_ref().map(|s| s.browser.profile_dir().to_path_buf())
    }
}

impl Fetcher for RegistryFetcher {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(self.inner.clone().fetch(request))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut state = self.inner.state.lock().await;
            if let Some(session) = state.session.take() {
                self.inner.close(session).await;
            }
        })
    }

    fn kind(&self) -> &'static str {
        "registry"
    }
}

impl Drop for RegistryFetcher {
    fn drop(&mut self) {
        // Browser's own Drop kills the processes; the account is released if a runtime is there.
        if let Ok(mut state) = self.inner.state.try_lock() {
            if let Some(session) = state.session.take() {
                let accounts = self.inner.accounts.clone();
                let account = session.account.clone();
                session.browser.kill();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move { accounts.release(&account).await });
                }
            }
        }
    }
}

/// Characters of a page's text quoted in an error or a checkpoint (registre_domain::text::excerpt).
const EXCERPT_CHARS: usize = 300;

/// The URL with its query values hidden when they look like tokens (download links may carry them).
fn redact_query(url: &Url) -> String {
    registre_config::secret::redact_url(url)
}
