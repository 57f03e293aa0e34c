//! One document through the registry site (DESIGN §9.1): the search form of the document's kind
//! (selects chosen by best match, waiting for the page reload a choice triggers; optional fields
//! skipped when absent); then, in whatever order the site shows them, the error cell, the choice
//! page (paper-only rows skipped), the fee confirmation, and the document frameset whose menu
//! frame holds the save control ([`super::download`] fetches its href).

use std::time::Instant;

use fantoccini::Client;
use serde_json::json;

use super::browser::classify;
use super::excerpt;
use super::matching::best_option;
use super::page::POLL;
use super::session::Inner;
use super::site::{FieldKind, SearchPage};
use crate::{DocumentRequest, DocumentSource, FetchError, FetchedDocument};

const CHOOSE_OPTION: &str = include_str!("js/choose_option.js");
const CHOOSE_ROW: &str = include_str!("js/choose_row.js");

/// How a document flow ended without a fetch error.
pub(super) enum Outcome {
    Document(FetchedDocument),
    /// The site showed its login form mid-flow: log in again and start over.
    SessionExpired,
}

/// Digits of a text: "12 345 678" and "12345678" compare equal.
fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The numbers written in a text, spaces between digit groups removed:
/// "No 22 000 000 du 2021-03-01" → ["22000000", "2021", "03", "01"].
fn numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut joined = String::new();
    for (i, c) in chars.iter().enumerate() {
        let between_digits = c.is_whitespace()
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if !between_digits {
            joined.push(*c);
        }
    }
    joined.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

impl Inner {
    /// One document from its search page to the PDF.
    pub(super) async fn document(&self, client: &Client, request: &DocumentRequest) -> Result<Outcome, FetchError> {
        let site = self.site();
        let page = site.search_page(request.document_source)?;
        let url = site.url(&page.path)?;
        let search_step = format!("{} search", request.document_source);
        client.goto(url.as_str()).await.map_err(|e| classify(e, &format!("opening {url}")))?;
        tracing::info!(document = %request.describe(), "registry: {search_step}: page {}", page.path);
        if !self.fill_search(client, request, page, &search_step).await? {
            return Ok(Outcome::SessionExpired);
        }
        self.wait_for(client, &page.submit, "the search button").await?;
        self.act(client, &page.submit, "the search button").await?;
        tracing::info!(document = %request.describe(), "registry: {search_step}: submitted");
        self.after_search(client, request, page, search_step).await
    }

    /// Fills the search form; false when the site showed its login form instead (session expired).
    pub(super) async fn fill_search(&self, client: &Client, request: &DocumentRequest, page: &SearchPage, step: &str) -> Result<bool, FetchError> {
        for field in &page.fields {
            let name = field.value.name();
            // Wait for the page (perhaps reloaded by the previous choice) before looking at the field.
            let state = self.settled_page(client, &format!("the {step} page")).await?;
            if state.login {
                return Ok(false);
            }
            let Some(value) = field.value.of(request) else {
                if field.optional {
                    continue;
                }
                return Err(FetchError::Rejected {
                    step: step.to_string(),
                    message: format!("the row has no {name}, which the {} search needs", request.document_source),
                });
            };
            if field.may_be_absent && !self.present(client, &field.selector).await? {
                tracing::info!(document = %request.describe(), "registry: {step}: no {name} field ({}) on the page: skipped", field.selector);
                continue;
            }
            match field.kind {
                FieldKind::Text => {
                    let typed: String = if field.strip_spaces { value.split_whitespace().collect() } else { value.clone() };
                    let element = self.wait_for(client, &field.selector, &format!("the {name} field")).await?;
                    element.clear().await.map_err(|e| classify(e, &format!("clearing {name}")))?;
                    element.send_keys(&typed).await.map_err(|e| classify(e, &format!("typing {name}")))?;
                    tracing::info!(document = %request.describe(), "registry: {step}: {name} typed as {typed:?} ({})", field.selector);
                }
                FieldKind::Select => {
                    self.wait_for(client, &field.selector, &format!("the {name} list")).await?;
                    let options = self.select_options(client, &field.selector).await?;
                    let Some(chosen) = best_option(&value, &options) else {
                        let offered: Vec<&str> = options.iter().filter(|o| !o.value.is_empty()).map(|o| o.text.as_str()).take(12).collect();
                        return Err(FetchError::Rejected {
                            step: step.to_string(),
                            message: format!("{name} {value:?} is not offered by the registry (options: {})", offered.join(", ")),
                        });
                    };
                    tracing::info!(
                        document = %request.describe(),
                        "registry: {step}: {name} {value:?} → option {:?} (value {:?})",
                        chosen.text,
                        chosen.value
                    );
                    let done = client
                        .execute(CHOOSE_OPTION, vec![json!(field.selector), json!(chosen.value), json!(field.reloads)])
                        .await
                        .map_err(|e| classify(e, &format!("choosing {name}")))?;
                    if done != json!("ok") {
                        return Err(FetchError::Other(format!("choosing {name}: the list {} disappeared", field.selector)));
                    }
                }
            }
        }
        // The last choice may have reloaded the page: submit on the settled one.
        let state = self.settled_page(client, &format!("the {step} page")).await?;
        Ok(!state.login)
    }

    /// After the search: the error cell, the choice page, the confirmation, in whatever order and
    /// number the site shows them, until the document frameset.
    pub(super) async fn after_search(&self, client: &Client, request: &DocumentRequest, page: &SearchPage, mut step: String) -> Result<Outcome, FetchError> {
        let site = self.site();
        let source = request.document_source;
        // The site can take minutes to answer with the document (document_timeout_ms); a page
        // that is there but is none of the known ones gets step_timeout_ms.
        let document_timeout = site.document_timeout();
        let mut acted_at = Instant::now();
        let mut unknown_since: Option<Instant> = None;
        let mut frameset_logged = false;
        loop {
            let state = self.page_state(client, Some(&page.submit)).await?;
            let waited = acted_at.elapsed();
            if state.frameset {
                if !frameset_logged {
                    tracing::info!(document = %request.describe(), "registry: document frameset shown, waiting for its page frame ({}) and the save control", site.document.page_url_contains);
                    frameset_logged = true;
                }
                if state.page_ready && state.page_url.contains(&site.document.page_url_contains) && !state.save_href.is_empty() {
                    tracing::info!(document = %request.describe(), "registry: document page {} ready after {} ms", state.page_url, waited.as_millis());
                    return self.download(client, &state.save_href, request).await.map(Outcome::Document);
                }
                if waited >= document_timeout {
                    return Err(FetchError::Timeout {
                        after: document_timeout,
                        what: format!(
                            "{}: the document frameset came but not its page frame ({:?}, URL containing {:?}) with the save control ({}) in the menu frame: the site is slow or changed, see docs/fetchers.md",
                            request.describe(), site.document.page_frame, site.document.page_url_contains, site.document.save_link
                        ),
                    });
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            if state.marked || state.ready != "complete" {
                // The site has not answered the last action yet.
                if waited >= document_timeout {
                    return Err(FetchError::Timeout {
                        after: document_timeout,
                        what: format!("{}: {step}: the site did not answer (page {})", request.describe(), state.url),
                    });
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            if state.login {
                return Ok(Outcome::SessionExpired);
            }
            let errors: Vec<&String> = state.errors.iter().filter(|t| !site.is_not_an_error(source, t)).collect();
            for ignored in state.errors.iter().filter(|t| site.is_not_an_error(source, t)) {
                tracing::info!(document = %request.describe(), "registry: {step}: the site says {ignored:?}: not an error for {source}, going on");
            }
            let similar = errors.iter().any(|t| t.to_lowercase().contains(&site.errors.similar_numbers.to_lowercase()));
            if similar && source == DocumentSource::Acte {
                let wanted = digits(&request.document_number);
                let exact = state.rows.iter().position(|r| !r.paper && !wanted.is_empty() && numbers_in(&r.text).contains(&wanted));
                let Some(index) = exact else {
                    let listed: Vec<String> = state.rows.iter().map(|r| excerpt(&r.text)).take(10).collect();
                    return Err(FetchError::Rejected {
                        step,
                        message: format!("{} — {} is not in the list ({})", errors[0], request.document_number, listed.join(" | ")),
                    });
                };
                tracing::info!(document = %request.describe(), "registry: {step}: similar numbers listed, taking the exact one: {:?}", state.rows[index].text);
                self.choose_row(client, index).await?;
                step = "choice".into();
                acted_at = Instant::now();
                unknown_since = None;
                continue;
            }
            if let Some(text) = errors.first() {
                return Err(FetchError::Rejected { step, message: text.to_string() });
            }
            if !state.rows.is_empty() {
                // The latest (last listed) row that is not a paper-only copy.
                let Some(index) = state.rows.iter().rposition(|r| !r.paper) else {
                    return Err(FetchError::Rejected {
                        step: "choice".into(),
                        message: format!("only paper copies (BPD) are offered for {}", request.describe()),
                    });
                };
                let skipped = state.rows.iter().filter(|r| r.paper).count();
                tracing::info!(
                    document = %request.describe(),
                    "registry: choice page: {} row(s), {skipped} paper-only skipped, taking row {}: {:?}",
                    state.rows.len(),
                    index + 1,
                    state.rows[index].text
                );
                self.choose_row(client, index).await?;
                step = "choice".into();
                acted_at = Instant::now();
                unknown_since = None;
                continue;
            }
            if state.confirm {
                tracing::info!(document = %request.describe(), "registry: confirmation page: confirming ({})", site.confirmation.button);
                self.act(client, &site.confirmation.button, "the confirmation button").await?;
                step = "confirmation".into();
                acted_at = Instant::now();
                unknown_since = None;
                continue;
            }
            // A page with none of the known elements (or the search form again without an error).
            let since = *unknown_since.get_or_insert_with(Instant::now);
            let step_timeout = site.step_timeout();
            if since.elapsed() >= step_timeout {
                return Err(FetchError::Timeout {
                    after: step_timeout,
                    what: format!(
                        "{}: {step}: the page {} is none of the known ones (error cell {}, choice {}, confirmation {}, document frames {:?}/{:?}): the site changed? see docs/fetchers.md",
                        request.describe(), state.url, site.errors.cell, site.choice.radio, site.confirmation.button,
                        site.document.menu_frame, site.document.page_frame
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn choose_row(&self, client: &Client, index: usize) -> Result<(), FetchError> {
        let choice = &self.site().choice;
        let done = client
            .execute(CHOOSE_ROW, vec![json!(choice.radio), json!(index), json!(choice.submit)])
            .await
            .map_err(|e| classify(e, "choosing a row of the choice page"))?;
        if done != json!("ok") {
            return Err(FetchError::Other(format!("choice page: row {} ({}) disappeared", index + 1, choice.radio)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{digits, numbers_in};

    #[test]
    fn numbers_compare_by_digits() {
        assert_eq!(digits("12 345 678"), "12345678");
        assert_eq!(numbers_in("No 22 000 000 du 2021-03-01"), ["22000000", "2021", "03", "01"]);
        assert!(!numbers_in("22 000 001").contains(&"22000000".to_string()));
    }
}
