//! The `registry` fetcher: the Registre foncier website driven by headless Chromium through
//! WebDriver. Every URL and selector comes from `registry-site.toml` ([`site::SiteConfig`]).
//!
//! One fetcher holds at most one browser session, logged in with an account held from the
//! [`AccountProvider`] for the session's life. The session is opened on demand, closed after
//! REGISTRE_BROWSER_IDLE_MS without use, and dropped (processes killed) after a crash or a
//! timeout so the next fetch starts a fresh browser. An account the site refuses is reported to
//! the provider (which rests it) and the next account is tried. The document flow of DESIGN §9.1
//! (search form, optional choice and confirmation pages, the document frameset) is in [`flow`];
//! the PDF is downloaded by reading the save control's href and fetching it with reqwest carrying
//! the browser's cookies.

mod account;
mod browser;
pub mod diagnostics;
mod flow;
pub mod matching;
pub mod site;

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use registre_config::RegistreConfig;
use tokio::sync::Mutex;
use url::Url;

pub use account::{Account, AccountError, AccountProvider, InMemoryAccounts};
pub use browser::{chromium_flags, CHROMIUM_FLAGS, NO_SANDBOX};
use browser::Browser;
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
        Ok(RegistrySettings {
            site,
            chromium_path: config.chromium_path.clone(),
            chromedriver_path: config.chromedriver_path.clone(),
            idle_timeout: config.browser_idle,
            fetch_timeout: config.extraction_timeout,
        })
    }

    /// The embedded site description with Debian's binaries and the default bounds.
    pub fn with_defaults() -> Result<RegistrySettings, FetchError> {
        Ok(RegistrySettings {
            site: SiteConfig::embedded()?,
            chromium_path: PathBuf::from("/usr/bin/chromium"),
            chromedriver_path: PathBuf::from("/usr/bin/chromedriver"),
            idle_timeout: Duration::from_secs(120),
            fetch_timeout: Duration::from_secs(180),
        })
    }
}

pub struct RegistryFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RegistrySettings,
    accounts: Arc<dyn AccountProvider>,
    http: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    /// Incremented at every new session, so an idle timer only closes its own session.
    generation: u64,
}

struct Session {
    browser: Browser,
    account: Account,
    last_used: Instant,
    generation: u64,
}

impl RegistryFetcher {
    pub fn new(settings: RegistrySettings, accounts: Arc<dyn AccountProvider>) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .build()
            .map_err(|e| FetchError::Other(format!("building the HTTP client: {e}")))?;
        Ok(RegistryFetcher { inner: Arc::new(Inner { settings, accounts, http, state: Mutex::new(State::default()) }) })
    }

    /// Whether a browser session is open right now.
    pub async fn has_session(&self) -> bool {
        self.inner.state.lock().await.session.is_some()
    }

    /// Process id of the running chromedriver, if a session is open (its process group holds Chromium).
    pub async fn driver_pid(&self) -> Option<u32> {
        self.inner.state.lock().await.session.as_ref().and_then(|s| s.browser.driver_pid())
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

/// How many times one fetch logs in again after the site expired its session before giving up.
const MAX_RELOGINS: u32 = 2;

impl Inner {
    async fn fetch(self: Arc<Self>, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let mut state = self.state.lock().await;
        let bound = self.settings.fetch_timeout;
        let outcome = tokio::time::timeout(bound, self.fetch_locked(&mut state, request)).await;
        let mut outcome = match outcome {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { after: bound, what: format!("fetching {} from the registry (EXTRACTION_TIMEOUT)", request.describe()) }),
        };
        // A step that failed for a reason other than the row's data: keep what the browser shows
        // for the operator (docs/fetchers.md, "diagnosing a site change") and name the folder.
        if let Err(e @ (FetchError::Timeout { .. } | FetchError::Other(_))) = &outcome {
            if let Some(session) = state.session.as_ref() {
                let text = e.to_string();
                let saved = tokio::time::timeout(
                    Duration::from_secs(15),
                    diagnostics::save(&self.settings.site.diagnostics, &session.browser.client, request, &text),
                )
                .await
                .ok()
                .flatten();
                if let Some(folder) = saved {
                    let note = format!(" (screenshot and HTML of the page in {})", folder.display());
                    tracing::warn!(folder = %folder.display(), "registry: {text}: page saved for diagnosis");
                    outcome = Err(match outcome.unwrap_err() {
                        FetchError::Timeout { after, what } => FetchError::Timeout { after, what: format!("{what}{note}") },
                        FetchError::Other(what) => FetchError::Other(format!("{what}{note}")),
                        other => other,
                    });
                }
            }
        }
        if let Err(e @ FetchError::Rejected { .. }) = &outcome {
            tracing::info!(document = %request.describe(), "registry: the site rejected the row: {e}");
        }
        match &outcome {
            // The browser is dead, stuck, or its accounts refused: kill it, the next fetch starts afresh.
            Err(e @ (FetchError::BrowserCrashed(_) | FetchError::Timeout { .. } | FetchError::LoginFailed { .. })) => {
                if let Some(session) = state.session.take() {
                    tracing::warn!(error = %e, "registry: dropping the browser session");
                    let account = session.account.clone();
                    session.browser.kill();
                    self.accounts.release(&account).await;
                }
            }
            // Anything else leaves the browser usable: every search starts by opening its page.
            _ => {
                if let Some(s) = state.session.as_mut() {
                    s.last_used = Instant::now();
                }
            }
        }
        outcome
    }

    async fn fetch_locked(self: &Arc<Self>, state: &mut State, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let idle = self.settings.idle_timeout;
        if state.session.as_ref().is_some_and(|s| s.last_used.elapsed() >= idle) {
            if let Some(session) = state.session.take() {
                self.close(session).await;
            }
        }
        if state.session.is_none() {
            state.generation += 1;
            let session = self.open_session(state.generation).await?;
            state.session = Some(session);
            self.spawn_idle_timer(state.generation);
        }
        let Some(session) = state.session.as_mut() else {
            return Err(FetchError::Other("registry: no browser session".into()));
        };
        session.last_used = Instant::now();
        let client = session.browser.client.clone();
        let account = session.account.clone();
        let mut relogins = 0;
        loop {
            match self.document(&client, request).await? {
                flow::Outcome::Document(doc) => return Ok(doc),
                // The site sent us back to its login form: our session expired there. Log in again
                // from that form and start the document over; the row's attempt is not counted.
                flow::Outcome::SessionExpired => {
                    relogins += 1;
                    if relogins > MAX_RELOGINS {
                        return Err(FetchError::Other(format!(
                            "{}: the site asked to log in again {MAX_RELOGINS} times during one fetch",
                            request.describe()
                        )));
                    }
                    tracing::info!(account = %account.username, "registry: the site expired the session, logging in again");
                    self.login(&client, &account).await?;
                }
            }
        }
    }

    /// Starts the browser and logs in through the home page's entry link with an account of the
    /// provider. An account the site refuses is reported (the provider rests it) and held until the
    /// next one is acquired, so the same one is not handed back; then released.
    async fn open_session(&self, generation: u64) -> Result<Session, FetchError> {
        let mut refused: Vec<(Account, FetchError)> = Vec::new();
        let mut browser: Option<Browser> = None;
        let result = loop {
            let account = match self.accounts.acquire().await {
                Ok(account) => account,
                Err(e) => match refused.last() {
                    // Every account we could get was refused: report the last refusal.
                    Some((_, last)) => break Err(last.clone()),
                    None => break Err(FetchError::NoAccount(e.to_string())),
                },
            };
            if browser.is_none() {
                match Browser::start(&self.settings.chromedriver_path, &self.settings.chromium_path).await {
                    Ok(b) => browser = Some(b),
                    Err(e) => {
                        self.accounts.release(&account).await;
                        break Err(e);
                    }
                }
            }
            let Some(client) = browser.as_ref().map(|b| b.client.clone()) else {
                self.accounts.release(&account).await;
                break Err(FetchError::Other("registry: no browser".into()));
            };
            tracing::info!(account = %account.username, "registry: browser started, logging in");
            match self.login_from_home(&client, &account).await {
                Ok(()) => break Ok(account),
                Err(e @ FetchError::LoginFailed { .. }) => {
                    tracing::warn!(account = %account.username, "registry: {e}; trying another account");
                    refused.push((account, e));
                }
                Err(e) => {
                    self.accounts.release(&account).await;
                    break Err(e);
                }
            }
        };
        for (account, _) in &refused {
            self.accounts.release(account).await;
        }
        match (result, browser) {
            (Ok(account), Some(browser)) => Ok(Session { browser, account, last_used: Instant::now(), generation }),
            (Ok(account), None) => {
                self.accounts.release(&account).await;
                Err(FetchError::Other("registry: no browser".into()))
            }
            (Err(e), browser) => {
                if let Some(b) = browser {
                    b.close().await;
                }
                Err(e)
            }
        }
    }

    async fn close(&self, session: Session) {
        tracing::info!(account = %session.account.username, "registry: closing the browser session");
        session.browser.close().await;
        self.accounts.release(&session.account).await;
    }

    /// Closes the session of `generation` once it has been idle for the configured time.
    fn spawn_idle_timer(self: &Arc<Self>, generation: u64) {
        let weak: Weak<Inner> = Arc::downgrade(self);
        let idle = self.settings.idle_timeout;
        tokio::spawn(async move {
            let mut wait = idle;
            loop {
                tokio::time::sleep(wait).await;
                let Some(inner) = weak.upgrade() else { return };
                let mut state = inner.state.lock().await;
                let Some(session) = state.session.as_ref().filter(|s| s.generation == generation) else { return };
                let elapsed = session.last_used.elapsed();
                if elapsed >= idle {
                    if let Some(session) = state.session.take() {
                        tracing::info!(idle_ms = idle.as_millis() as u64, "registry: browser idle, closing it");
                        inner.close(session).await;
                    }
                    return;
                }
                wait = idle - elapsed;
            }
        });
    }

    fn site(&self) -> &SiteConfig {
        &self.settings.site
    }
}

/// The first 300 characters of a text, whitespace collapsed.
fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = collapsed.chars().take(300).collect();
    if collapsed.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The URL with its query values hidden when they look like tokens (download links may carry them).
fn redact_query(url: &Url) -> String {
    registre_config::secret::redact_url(url)
}
