//! The browser session of one registry fetcher: opened on demand with an account held from the
//! [`AccountProvider`] for the session's life, logged in again when the site expires it, closed
//! after REGISTRE_BROWSER_IDLE_MS without use, and dropped (processes killed) after a crash or a
//! timeout so the next fetch starts a fresh browser. An account the site refuses is reported to
//! the provider (which rests it) and the next account is tried.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::browser::Browser;
use super::search::Outcome;
use super::site::SiteConfig;
use super::{diagnostics, Account, AccountProvider, RegistrySettings};
use crate::{DocumentRequest, FetchError, FetchedDocument};

pub(super) struct Inner {
    pub(super) settings: RegistrySettings,
    pub(super) accounts: Arc<dyn AccountProvider>,
    pub(super) http: reqwest::Client,
    pub(super) state: Mutex<State>,
    /// Set for `registrectl site-check`: records every step (see [`super::check`]).
    pub(super) check: Option<super::check::CheckLog>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) session: Option<Session>,
    /// Incremented at every new session, so an idle timer only closes its own session.
    generation: u64,
}

pub(super) struct Session {
    pub(super) browser: Browser,
    pub(super) account: Account,
    last_used: Instant,
    generation: u64,
}

/// How many times one fetch logs in again after the site expired its session before giving up.
const MAX_RELOGINS: u32 = 2;

impl Inner {
    pub(super) async fn fetch(self: Arc<Self>, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let mut state = self.state.lock().await;
        let bound = self.settings.fetch_timeout;
        let outcome = tokio::time::timeout(bound, self.fetch_locked(&mut state, request)).await;
        let mut outcome = match outcome {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { after: bound, what: format!("fetching {} from the registry (EXTRACTION_TIMEOUT)", request.describe()) }),
        };
        // A step that failed for a reason other than the row's data: keep what the browser shows
        // for the operator (docs/fetchers.md, "diagnosing a site change") and name the folder.
        let stopped = matches!(&outcome, Err(FetchError::Other(text)) if text == super::check::STOPPED);
        if let (false, Err(e @ (FetchError::Timeout { .. } | FetchError::Other(_)))) = (stopped, &outcome) {
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
        // A timeout while the browser still shows a page of the site (same origin, not an error
        // page) is the site being slow: the session and its login are kept for the next fetch.
        let keep_after_timeout = match (&outcome, state.session.as_ref()) {
            (Err(FetchError::Timeout { .. }), Some(session)) => self.still_on_site(&session.browser.client).await,
            _ => false,
        };
        match &outcome {
            Err(e @ FetchError::Timeout { .. }) if keep_after_timeout => {
                tracing::info!(error = %e, "registry: timed out on a page of the site: the browser session is kept");
                if let Some(s) = state.session.as_mut() {
                    s.last_used = Instant::now();
                }
            }
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
        let downloads = session.browser.downloads.clone();
        let account = session.account.clone();
        let mut relogins = 0;
        loop {
            match self.document_with_fallbacks(&client, &downloads, request).await? {
                Outcome::Document(doc) => return Ok(doc),
                // document_with_fallbacks turns it into a refusal; kept readable if it ever comes.
                Outcome::NoMatch { step, message, .. } => return Err(FetchError::Rejected { step, message }),
                Outcome::Stopped => return Err(FetchError::Other(super::check::STOPPED.into())),
                // The site sent us back to its login form: our session expired there. Log in again
                // from that form and start the document over; the row's attempt is not counted.
                Outcome::SessionExpired => {
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
            self.checkpoint(&client, "browser", "Chromium fr-CA 1280x720").await;
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

    /// Whether the browser answers and shows a page of the site's origin that is not an error page.
    async fn still_on_site(&self, client: &fantoccini::Client) -> bool {
        let Ok(Ok(url)) = tokio::time::timeout(Duration::from_secs(5), client.current_url()).await else { return false };
        let base = &self.site().base_url;
        url.origin() == base.origin() && matches!(url.scheme(), "http" | "https")
    }

    pub(super) async fn close(&self, session: Session) {
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

    pub(super) fn site(&self) -> &SiteConfig {
        &self.settings.site
    }
}
