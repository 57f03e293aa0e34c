//! Reading and acting on the registry site's pages (docs/design.md §9.1), the primitives every step
//! uses. Elements are ordered lists of alternatives (js/find.js): every primitive reports the one
//! that matched, and one that finds none names the page and what it looked for. Every action that
//! makes the site answer with a new page first marks the current page (`window.__registreStep`),
//! and the page is read again only once the mark is gone: a page the site has not replaced yet is
//! never acted on twice.

use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde_json::json;

use super::browser::classify;
use super::matching::SelectOption;
use super::session::Inner;
use super::site::Alternatives;
use crate::FetchError;

const FIND: &str = include_str!("js/find.js");
const PAGE_STATE: &str = include_str!("js/page_state.js");
const SELECT_OPTIONS: &str = include_str!("js/select_options.js");
const ACT: &str = include_str!("js/act.js");
const PICK: &str = include_str!("js/pick.js");
const UNMARK: &str = include_str!("js/unmark.js");

/// Pause between two readings of a page that is not there yet.
pub(super) const POLL: Duration = Duration::from_millis(150);

/// A script that uses js/find.js.
pub(super) fn with_find(script: &str) -> String {
    format!("{FIND}\n{script}")
}

/// One reading of the current page (js/page_state.js).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PageState {
    pub(super) marked: bool,
    pub(super) leaving: bool,
    pub(super) ready: String,
    pub(super) url: String,
    pub(super) frameset: bool,
    pub(super) page_url: String,
    pub(super) page_ready: bool,
    pub(super) has_page_frame: bool,
    pub(super) save_href: String,
    /// "top" or "menu": where the save control was found.
    pub(super) save_in: String,
    pub(super) save_alternative: String,
    pub(super) login: bool,
    pub(super) errors: Vec<String>,
    pub(super) rows: Vec<Row>,
    pub(super) confirm: bool,
    /// The sentence of the page body holding one of errors.not_found_words ("inexistante").
    pub(super) not_found: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Row {
    pub(super) text: String,
    pub(super) paper: bool,
}

/// Which alternative of an element matched.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Matched {
    pub(super) index: usize,
    pub(super) alternative: String,
}

impl Matched {
    /// "alternative 2/4 `input[value*='Rechercher']`", for the log.
    pub(super) fn describe(&self, of: usize) -> String {
        format!("alternative {}/{of} `{}`", self.index + 1, self.alternative)
    }
}

/// "a | b | c": what a step looked for.
pub(super) fn looked_for(alternatives: &Alternatives) -> String {
    alternatives.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(" | ")
}

impl Inner {
    /// Marks the page and clicks the first alternative found (scoped to the form of `anchor` for
    /// "any submit"); fails naming the page and the alternatives when none is there.
    pub(super) async fn act(&self, client: &Client, alternatives: &Alternatives, anchor: Option<&Alternatives>, what: &str) -> Result<Matched, FetchError> {
        let step = self.site().step_timeout();
        let deadline = Instant::now() + step;
        loop {
            let done = client
                .execute(&with_find(ACT), vec![json!(alternatives), json!(anchor)])
                .await
                .map_err(|e| classify(e, &format!("clicking {what}")))?;
            if !done.is_null() {
                let matched: Matched = serde_json::from_value(done).unwrap_or_default();
                return Ok(matched);
            }
            if Instant::now() >= deadline {
                let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                return Err(FetchError::Other(format!(
                    "page {url}: no {what} found (looked for {}): the site changed? see docs/fetchers.md",
                    looked_for(alternatives)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (step timeout) for the first alternative that matches and returns it as a WebDriver
    /// element with the alternative, to type into or click as a person would.
    pub(super) async fn pick(&self, client: &Client, alternatives: &Alternatives, anchor: Option<&Alternatives>, what: &str) -> Result<(Element, Matched), FetchError> {
        let step = self.site().step_timeout();
        let deadline = Instant::now() + step;
        loop {
            let found = match client.execute(&with_find(PICK), vec![json!(alternatives), json!(anchor)]).await {
                Ok(v) => v,
                Err(e) => match classify(e, &format!("looking for {what}")) {
                    crash @ FetchError::BrowserCrashed(_) => return Err(crash),
                    // A page being replaced: not there yet.
                    _ => serde_json::Value::Null,
                },
            };
            if !found.is_null() {
                let matched: Matched = serde_json::from_value(found).unwrap_or_default();
                if let Ok(element) = client.find(Locator::Css("[data-registre-pick]")).await {
                    return Ok((element, matched));
                }
            }
            if Instant::now() >= deadline {
                let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                return Err(FetchError::Timeout {
                    after: step,
                    what: format!("page {url}: waiting for {what} (looked for {}): the site changed? see docs/fetchers.md", looked_for(alternatives)),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the page; a transient WebDriver error (a page being replaced) reads as "not ready".
    pub(super) async fn page_state(&self, client: &Client) -> Result<PageState, FetchError> {
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
            "not_found_words": site.errors.not_found_words,
        });
        match client.execute(&with_find(PAGE_STATE), vec![selectors]).await {
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
            let state = self.page_state(client).await?;
            if !state.marked && state.ready == "complete" {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout { after: step, what: format!("waiting for {what} to load: see docs/fetchers.md") });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a choice that may reload the page (js/choose_option.js): when a navigation starts
    /// (beforeunload fired, or the document was replaced) waits for the new page up to the step
    /// timeout, however slow; when none starts within the grace, the choice did not reload and the
    /// flow goes on. Never fails because an expected reload did not come. Returns whether it reloaded.
    pub(super) async fn after_choice(&self, client: &Client, what: &str) -> Result<bool, FetchError> {
        let grace = self.site().reload_grace();
        let chosen_at = Instant::now();
        loop {
            let state = self.page_state(client).await?;
            if !state.marked || state.leaving {
                let started = chosen_at.elapsed();
                let state = self.settled_page(client, what).await?;
                tracing::debug!(url = %state.url, "registry: reload started after {} ms", started.as_millis());
                return Ok(true);
            }
            if chosen_at.elapsed() >= grace {
                client.execute(UNMARK, vec![]).await.map_err(|e| classify(e, "reading the page"))?;
                return Ok(false);
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

    pub(super) async fn wait_for(&self, client: &Client, selector: &str, what: &str) -> Result<Element, FetchError> {
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
