//! The `registry` fetcher: the Registre foncier website driven by headless Chromium through
//! WebDriver. Every URL and selector comes from `registry-site.toml` ([`site::SiteConfig`]).
//!
//! One fetcher holds at most one browser session, logged in with an account held from the
//! [`AccountProvider`] for the session's life. The session is opened on demand, closed after
//! REGISTRE_BROWSER_IDLE_MS without use, and dropped (processes killed) after a crash or a
//! timeout so the next fetch starts a fresh browser. The PDF is downloaded by reading the
//! download link's href and fetching it with reqwest carrying the browser's cookies.

mod account;
mod browser;
pub mod site;

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use registre_config::RegistreConfig;
use serde_json::json;
use tokio::sync::Mutex;
use url::Url;

pub use account::{Account, AccountError, AccountProvider, InMemoryAccounts};
pub use browser::{chromium_flags, CHROMIUM_FLAGS, NO_SANDBOX};
use browser::{classify, Browser};
use site::{FieldKind, SiteConfig};

use crate::http::error_chain;
use crate::{validate_pdf, BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};

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

impl Inner {
    async fn fetch(self: Arc<Self>, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let mut state = self.state.lock().await;
        let bound = self.settings.fetch_timeout;
        let outcome = tokio::time::timeout(bound, self.fetch_locked(&mut state, request)).await;
        let outcome = match outcome {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { after: bound, what: format!("fetching {} from the registry", request.describe()) }),
        };
        match &outcome {
            // The browser is dead, stuck, or its account refused: kill it, the next fetch starts afresh.
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
        self.search(&client, &account, request).await
    }

    /// Starts the browser, acquires an account and logs in through the home page's entry link.
    async fn open_session(&self, generation: u64) -> Result<Session, FetchError> {
        let account = self.accounts.acquire().await.map_err(|e| FetchError::NoAccount(e.to_string()))?;
        let browser = match Browser::start(&self.settings.chromedriver_path, &self.settings.chromium_path).await {
            Ok(b) => b,
            Err(e) => {
                self.accounts.release(&account).await;
                return Err(e);
            }
        };
        tracing::info!(account = %account.username, "registry: browser started, logging in");
        let client = browser.client.clone();
        match self.login_from_home(&client, &account).await {
            Ok(()) => Ok(Session { browser, account, last_used: Instant::now(), generation }),
            Err(e) => {
                browser.close().await;
                self.accounts.release(&account).await;
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

    async fn login_from_home(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let site = self.site();
        let home = site.url(&site.entry.path)?;
        client.goto(home.as_str()).await.map_err(|e| classify(e, &format!("opening {home}")))?;
        let link = self.wait_for(client, &site.entry.link, "the entry link of the home page").await?;
        link.click().await.map_err(|e| classify(e, "following the entry link"))?;
        self.login(client, account).await
    }

    /// Fills and submits the login form shown in the current page.
    async fn login(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let login = &self.site().login;
        let user = self.wait_for(client, &login.username, "the login form (code_utilisateur)").await?;
        user.clear().await.map_err(|e| classify(e, "clearing code_utilisateur"))?;
        user.send_keys(&account.username).await.map_err(|e| classify(e, "typing code_utilisateur"))?;
        let password = self.wait_for(client, &login.password, "the password field (mot_de_passe)").await?;
        password.clear().await.map_err(|e| classify(e, "clearing mot_de_passe"))?;
        // The error of this call never carries the typed text.
        password.send_keys(account.password.expose()).await.map_err(|e| classify(e, "typing mot_de_passe"))?;
        let submit = self.wait_for(client, &login.submit, "the login button").await?;
        submit.click().await.map_err(|e| classify(e, "submitting the login form"))?;

        let deadline = Instant::now() + self.site().step_timeout();
        loop {
            if self.present(client, &login.success).await? {
                self.accounts.report_login_success(account).await;
                tracing::info!(account = %account.username, "registry: logged in");
                return Ok(());
            }
            let refused = match self.first_text(client, &login.failure).await? {
                Some(text) => Some(text),
                None => {
                    let body = self.body_text(client).await?;
                    login.failure_texts.iter().find(|t| contains_folded(&body, t)).map(|_| excerpt(&body))
                }
            };
            if let Some(reason) = refused {
                let reason = if reason.is_empty() { "the site refused the credentials".to_string() } else { reason };
                self.accounts.report_login_failure(account, &reason).await;
                tracing::warn!(account = %account.username, %reason, "registry: login refused");
                return Err(FetchError::LoginFailed { account: account.username.clone(), reason });
            }
            // A slow or changed site is not the account's fault: not counted against it.
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout {
                    after: self.site().step_timeout(),
                    what: format!(
                        "after logging in, neither login.success ({}) nor login.failure ({}) appeared: the site changed? see docs/fetchers.md",
                        login.success, login.failure
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn search(&self, client: &Client, account: &Account, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let site = self.site();
        let page = site.search_page(request.document_source)?;
        let url = site.url(&page.path)?;
        client.goto(url.as_str()).await.map_err(|e| classify(e, &format!("opening {url}")))?;
        // The site logged us out (session expired on its side): log in again from where it sent us.
        if self.present(client, &site.login.username).await? && !self.present(client, &page.submit).await? {
            tracing::info!("registry: session expired on the site, logging in again");
            self.login(client, account).await?;
            client.goto(url.as_str()).await.map_err(|e| classify(e, &format!("opening {url}")))?;
        }
        for field in &page.fields {
            let Some(value) = field.value.of(request) else {
                if field.optional {
                    continue;
                }
                return Err(FetchError::Other(format!(
                    "{}: the {} search needs {}, which the row does not have",
                    request.describe(),
                    request.document_source,
                    field.value.name()
                )));
            };
            let element = self.wait_for(client, &field.selector, &format!("the {} field", field.value.name())).await?;
            match field.kind {
                FieldKind::Text => {
                    element.clear().await.map_err(|e| classify(e, &format!("clearing {}", field.value.name())))?;
                    element.send_keys(&value).await.map_err(|e| classify(e, &format!("typing {}", field.value.name())))?;
                }
                FieldKind::Select => {
                    let chosen = client
                        .execute(SELECT_OPTION, vec![json!(field.selector), json!(value)])
                        .await
                        .map_err(|e| classify(e, &format!("choosing {}", field.value.name())))?;
                    if chosen != json!("ok") {
                        return Err(FetchError::NotFound {
                            document: request.describe(),
                            detail: format!("{} {value:?} is not offered by the registry's {} search", field.value.name(), request.document_source),
                        });
                    }
                }
            }
        }
        let submit = self.wait_for(client, &page.submit, "the search button").await?;
        submit.click().await.map_err(|e| classify(e, "submitting the search"))?;
        let href = self.find_download(client, request).await?;
        self.download(client, &href, request).await
    }

    /// Waits for the result (in the page or any frame): the download link's absolute href, or NotFound.
    async fn find_download(&self, client: &Client, request: &DocumentRequest) -> Result<String, FetchError> {
        let result = &self.site().result;
        let deadline = Instant::now() + self.site().step_timeout();
        loop {
            let found = client
                .execute(FIND_RESULT, vec![
                    json!(result.download_link),
                    json!(result.not_found.clone().unwrap_or_default()),
                    json!(result.not_found_texts),
                    json!(result.frame_depth),
                ])
                .await
                .map_err(|e| classify(e, "reading the result page"))?;
            match found.get("kind").and_then(|k| k.as_str()) {
                Some("link") => {
                    let href = found.get("href").and_then(|h| h.as_str()).unwrap_or_default().to_string();
                    if href.starts_with("http://") || href.starts_with("https://") {
                        return Ok(href);
                    }
                    return Err(FetchError::Other(format!(
                        "{}: the download link has no http(s) href ({href:?}): the site changed, see docs/fetchers.md",
                        request.describe()
                    )));
                }
                Some("not_found") => {
                    let message = found.get("text").and_then(|t| t.as_str()).unwrap_or_default();
                    return Err(FetchError::NotFound {
                        document: request.describe(),
                        detail: format!("the registry says: {}", excerpt(message)),
                    });
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout {
                    after: self.site().step_timeout(),
                    what: format!(
                        "{}: neither a download link nor a not-found message in the result page",
                        request.describe()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// GET `href` with the browser's cookies and user agent.
    async fn download(&self, client: &Client, href: &str, request: &DocumentRequest) -> Result<FetchedDocument, FetchError> {
        let url = Url::parse(href).map_err(|e| FetchError::Other(format!("download link {href:?}: {e}")))?;
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
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound { document: request.describe(), detail: format!("GET {shown}: HTTP {status}") });
        }
        if !status.is_success() {
            return Err(FetchError::Other(format!("{}: GET {shown}: HTTP {status}", request.describe())));
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
        Ok(FetchedDocument { bytes: bytes.to_vec(), content_type, source: shown })
    }

    async fn wait_for(&self, client: &Client, selector: &str, what: &str) -> Result<fantoccini::elements::Element, FetchError> {
        let step = self.site().step_timeout();
        client
            .wait()
            .at_most(step)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(selector))
            .await
            .map_err(|e| match e {
                fantoccini::error::CmdError::WaitTimeout => FetchError::Timeout {
                    after: step,
                    what: format!("waiting for {what} ({selector}): the site changed? see docs/fetchers.md"),
                },
                e => classify(e, &format!("waiting for {what}")),
            })
    }

    async fn present(&self, client: &Client, selector: &str) -> Result<bool, FetchError> {
        match client.find_all(Locator::Css(selector)).await {
            Ok(found) => Ok(!found.is_empty()),
            Err(e) => match classify(e, "reading the page") {
                crash @ FetchError::BrowserCrashed(_) => Err(crash),
                // A page still loading can answer with a transient error: "not there yet".
                _ => Ok(false),
            },
        }
    }

    async fn first_text(&self, client: &Client, selector: &str) -> Result<Option<String>, FetchError> {
        let found = match client.find_all(Locator::Css(selector)).await {
            Ok(found) => found,
            Err(e) => match classify(e, "reading the page") {
                crash @ FetchError::BrowserCrashed(_) => return Err(crash),
                _ => return Ok(None),
            },
        };
        match found.first() {
            Some(el) => Ok(Some(el.text().await.map(|t| excerpt(&t)).unwrap_or_default())),
            None => Ok(None),
        }
    }

    async fn body_text(&self, client: &Client) -> Result<String, FetchError> {
        match client.execute("return document.body ? document.body.innerText : '';", vec![]).await {
            Ok(v) => Ok(v.as_str().unwrap_or_default().to_string()),
            Err(e) => match classify(e, "reading the page") {
                crash @ FetchError::BrowserCrashed(_) => Err(crash),
                _ => Ok(String::new()),
            },
        }
    }
}

/// Selects the option of `arguments[0]` whose value or text equals `arguments[1]` (case and
/// accents ignored). Returns "ok", "missing" (no such select) or "no_option".
const SELECT_OPTION: &str = r#"
const [selector, wanted] = arguments;
const el = document.querySelector(selector);
if (!el) return 'missing';
const fold = s => (s || '').normalize('NFD').replace(/[\u0300-\u036f]/g, '').trim().toLowerCase();
const w = fold(wanted);
for (const o of el.options) {
  if (fold(o.value) === w || fold(o.text) === w) {
    el.value = o.value;
    el.dispatchEvent(new Event('change', { bubbles: true }));
    return 'ok';
  }
}
return 'no_option';
"#;

/// Looks through the page and its frames (same origin, nested up to `arguments[3]`) for the
/// download link (`arguments[0]`) or a not-found marker (`arguments[1]` selector, `arguments[2]` texts).
const FIND_RESULT: &str = r#"
const [linkSel, notFoundSel, notFoundTexts, depth] = arguments;
const fold = s => (s || '').normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
const texts = (notFoundTexts || []).map(fold);
function look(doc, level) {
  if (!doc || !doc.documentElement) return null;
  const link = doc.querySelector(linkSel);
  if (link && link.href) return { kind: 'link', href: link.href };
  if (notFoundSel) {
    const nf = doc.querySelector(notFoundSel);
    if (nf) return { kind: 'not_found', text: nf.innerText || nf.textContent || '' };
  }
  const body = doc.body ? (doc.body.innerText || doc.body.textContent || '') : '';
  const folded = fold(body);
  for (const t of texts) { if (t && folded.includes(t)) return { kind: 'not_found', text: body }; }
  if (level >= depth) return null;
  for (const f of doc.querySelectorAll('frame, iframe')) {
    let inner = null;
    try { inner = f.contentDocument; } catch (e) { inner = null; }
    const r = look(inner, level + 1);
    if (r) return r;
  }
  return null;
}
return look(document, 0) || { kind: 'none' };
"#;

fn contains_folded(haystack: &str, needle: &str) -> bool {
    !needle.is_empty() && haystack.to_lowercase().contains(&needle.to_lowercase())
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
