//! Logging in to the registry site: the home page's entry link, then the login form; a refusal
//! (the error cell while the form is still there) is reported to the account provider.

use std::time::Instant;

use fantoccini::Client;

use super::browser::classify;
use super::page::POLL;
use super::session::Inner;
use super::{excerpt, Account};
use crate::FetchError;

impl Inner {
    pub(super) async fn login_from_home(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let site = self.site();
        let home = site.url(&site.entry.path)?;
        client.goto(home.as_str()).await.map_err(|e| classify(e, &format!("opening {home}")))?;
        let link = self.wait_for(client, &site.entry.link, "the entry link of the home page (entry.link)").await?;
        tracing::info!("registry: home page {home}: following the entry link");
        link.click().await.map_err(|e| classify(e, "following the entry link"))?;
        self.login(client, account).await
    }

    /// Fills and submits the login form shown in the current page. Refused (the error cell shows
    /// while the form is still there) → reported to the provider and `LoginFailed`.
    pub(super) async fn login(&self, client: &Client, account: &Account) -> Result<(), FetchError> {
        let login = &self.site().login;
        let user = self.wait_for(client, &login.username, "the login form (login.username)").await?;
        user.clear().await.map_err(|e| classify(e, "clearing code_utilisateur"))?;
        user.send_keys(&account.username).await.map_err(|e| classify(e, "typing code_utilisateur"))?;
        let password = self.wait_for(client, &login.password, "the password field (login.password)").await?;
        password.clear().await.map_err(|e| classify(e, "clearing mot_de_passe"))?;
        // The error of this call never carries the typed text.
        password.send_keys(account.password.expose()).await.map_err(|e| classify(e, "typing mot_de_passe"))?;
        self.wait_for(client, &login.submit, "the login button (login.submit)").await?;
        self.act(client, &login.submit, "the login button (login.submit)").await?;

        let step = self.site().step_timeout();
        let deadline = Instant::now() + step;
        loop {
            let state = self.page_state(client, None).await?;
            if !state.marked && state.ready == "complete" {
                if state.login {
                    if let Some(reason) = state.errors.first() {
                        let reason = excerpt(reason);
                        self.accounts.report_login_failure(account, &reason).await;
                        tracing::warn!(account = %account.username, %reason, "registry: login refused");
                        return Err(FetchError::LoginFailed { account: account.username.clone(), reason });
                    }
                } else {
                    self.accounts.report_login_success(account).await;
                    tracing::info!(account = %account.username, url = %state.url, "registry: logged in");
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
