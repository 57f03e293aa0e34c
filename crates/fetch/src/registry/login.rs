//! Logging in to the registry site: the home page's entry link, then the login form (fields found
//! by their labels first, then by name); a refusal (the error cell while the form is still there)
//! is reported to the account provider.

use std::time::Instant;

use fantoccini::Client;

use super::browser::classify;
use super::page::POLL;
use super::session::Inner;
use super::Account;
use crate::FetchError;

impl Inner {
    pub(super) async fn login_from_home(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let site = self.site();
        let home = site.url(&site.entry.path)?;
        client.goto(home.as_str()).await.map_err(|e| classify(e, &format!("opening {home}")))?;
        let (link, matched) = self.pick(client, &site.entry.link, None, "the entry link of the home page (entry.link)").await?;
        tracing::info!("registry: entry: home page {home}: entry link found by {}", matched.describe(site.entry.link.len()));
        self.checkpoint(client, "entry link", &matched.alternative).await;
        // An image-map <area> (or an image) may not be clickable by WebDriver: the page's own click then.
        if link.click().await.is_err() {
            client
                .execute("const e = document.querySelector('[data-registre-pick]'); if (e) e.click(); return 'ok';", vec![])
                .await
                .map_err(|e| classify(e, "following the entry link"))?;
        }
        self.login(client, account).await
    }

    /// Fills and submits the login form shown in the current page. Refused (the error cell shows
    /// while the form is still there) → reported to the provider and `LoginFailed`.
    pub(super) async fn login(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let login = &self.site().login;
        let (user, matched) = self.pick(client, &login.username, None, "the login form's user code field (login.username)").await?;
        tracing::info!("registry: login: user code field found by {}", matched.describe(login.username.len()));
        self.checkpoint(client, "login: user code", &matched.alternative).await;
        user.clear().await.map_err(|e| classify(e, "clearing the user code"))?;
        user.send_keys(&account.username).await.map_err(|e| classify(e, "typing the user code"))?;
        let (password, matched) = self.pick(client, &login.password, None, "the password field (login.password)").await?;
        tracing::info!("registry: login: password field found by {}", matched.describe(login.password.len()));
        self.checkpoint(client, "login: password", &matched.alternative).await;
        password.clear().await.map_err(|e| classify(e, "clearing the password"))?;
        // The error of this call never carries the typed text.
        password.send_keys(account.password.expose()).await.map_err(|e| classify(e, "typing the password"))?;
        let submitted = self.act(client, &login.submit, Some(&login.password), "the login button (login.submit)").await?;
        tracing::info!("registry: login: submitted with {}", submitted.describe(login.submit.len()));

        let step = self.site().step_timeout();
        let deadline = Instant::now() + step;
        loop {
            let state = self.page_state(client).await?;
            if !state.marked && state.ready == "complete" {
                if state.login {
                    if let Some(reason) = state.errors.first() {
                        let reason = registre_domain::text::excerpt(reason, super::EXCERPT_CHARS);
                        self.accounts.report_login_failure(account, &reason).await;
                        tracing::warn!(account = %account.username, %reason, "registry: login refused");
                        return Err(FetchError::LoginFailed { account: account.username.clone(), reason });
                    }
                } else {
                    self.accounts.report_login_success(account).await;
                    tracing::info!(account = %account.username, url = %state.url, "registry: logged in");
                    self.checkpoint(client, "login: submitted, logged in", &submitted.alternative).await;
                    return Ok(());
                }
            }
            // A slow or changed site is not the account's fault: not counted against it.
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout {
                    after: step,
                    what: format!(
                        "after submitting the login form, neither a new page nor the error cell ({}) came: the site changed? see docs/fetchers.md",
                        self.site().errors.cell
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
