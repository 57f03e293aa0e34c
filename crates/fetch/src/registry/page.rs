//! Reading and acting on the registry site's pages (DESIGN §9.1), the primitives every step uses.
//! Every action that makes the site answer with a new page first marks the current page
//! (`window.__registreStep`), and the page is read again only once the mark is gone: a page the
//! site has not replaced yet is never acted on twice.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde_json::json;

use super::browser::classify;
use super::matching::SelectOption;
use super::session::Inner;
use crate::FetchError;

const PAGE_STATE: &str = include_str!("js/page_state.js");
const SELECT_OPTIONS: &str = include_str!("js/select_options.js");
const ACT: &str = include_str!("js/act.js");

/// Pause between two readings of a page that is not there yet.
pub(super) const POLL: Duration = Duration::from_millis(150);

/// One reading of the current page (js/page_state.js).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PageState {
    pub(super) marked: bool,
    pub(super) ready: String,
    pub(super) url: String,
    pub(super) frameset: bool,
    pub(super) page_url: String,
    pub(super) page_ready: bool,
    pub(super) save_href: String,
    pub(super) login: bool,
    pub(super) errors: Vec<String>,
    pub(super) rows: Vec<Row>,
    pub(super) confirm: bool,
    pub(super) search: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Row {
    pub(super) text: String,
    pub(super) paper: bool,
}

impl Inner {
    /// Marks the page and clicks `selector` (see js/act.js).
    pub(super) async fn act(&self, client: &Client, selector: &str, what: &str) -> Result<(), FetchError> {
        let done = client.execute(ACT, vec![json!(selector)]).await.map_err(|e| classify(e, &format!("clicking {what}")))?;
        if done != json!("ok") {
            return Err(FetchError::Other(format!("clicking {what}: no {selector} on the page: the site changed? see docs/fetchers.md")));
        }
        Ok(())
    }

    /// Reads the page; a transient WebDriver error (a page being replaced) reads as "not ready".
    pub(super) async fn page_state(&self, client: &Client, search_submit: Option<&str>) -> Result<PageState, FetchError> {
        let site = self.site();
        let selectors = json!({
            "menu_frame": site.document.menu_frame,
            "page_frame": site.document.page_frame,
            "save_link": site.document.save_link,
            "login_user": site.login.username,
            "error_cell": site.errors.cell,
            "radio": site.choice.radio,
            "paper_only": site.choice.paper_only,
            "confirm": site.confirmation.button,
            "search_submit": search_submit.unwrap_or_default(),
        });
        match client.execute(PAGE_STATE, vec![selectors]).await {
            Ok(v) => Ok(serde_json::from_value(v).unwrap_or_else(|_| PageState { marked: true, ..PageState::default() })),
            Err(e) => match classify(e, "reading the page") {
                crash @ FetchError::BrowserCrashed(_) => Err(crash),
                _ => Ok(PageState { marked: true, ..PageState::default() }),
            },
        }
    }

    /// Waits (step timeout) until the page the fetcher acted on is replaced and fully loaded.
    pub(super) async fn settled_page(&self, client: &Client, what: &str) -> Result<PageState, FetchError> {
        let step = self.site().step_timeout();
        let deadline = Instant::now() + step;
        loop {
            let state = self.page_state(client, None).await?;
            if !state.marked && state.ready == "complete" {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout {
                    after: step,
                    what: format!("waiting for {what} to load (a choice marked `reloads = true` did not reload it?): see docs/fetchers.md"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn select_options(&self, client: &Client, selector: &str) -> Result<Vec<SelectOption>, FetchError> {
        let v = client
            .execute(SELECT_OPTIONS, vec![json!(selector)])
            .await
            .map_err(|e| classify(e, &format!("reading the options of {selector}")))?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    pub(super) async fn wait_for(&self, client: &Client, selector: &str, what: &str) -> Result<fantoccini::elements::Element, FetchError> {
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

    pub(super) async fn present(&self, client: &Client, selector: &str) -> Result<bool, FetchError> {
        match client.find_all(Locator::Css(selector)).await {
            Ok(found) => Ok(!found.is_empty()),
            Err(e) => match classify(e, "reading the page") {
                crash @ FetchError::BrowserCrashed(_) => Err(crash),
                // A page still loading can answer with a transient error: "not there yet".
                _ => Ok(false),
            },
        }
    }
}
