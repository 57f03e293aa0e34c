//! One document through the registry site (docs/design.md §9.1): the search form of the
//! document's kind (selects chosen by best match, each followed by the reload wait of
//! [`Inner::after_choice`]; optional fields skipped when absent), submitted with the page's own list
//! of buttons; then, in whatever order the site shows them, the error cell, the results or choice
//! rows (paper-only rows never taken; actes: the exact number only), the fee confirmation, and the
//! document page whose save control [`super::download`] clicks.

use std::path::Path;
use std::time::Instant;

use fantoccini::Client;
use serde_json::json;

use super::browser::classify;
use super::matching::{best_option, fold, ranked_options, SelectOption};
use super::page::{looked_for, with_find, Matched, POLL};
use super::session::Inner;
use super::site::{FieldKind, FieldValue, SearchPage};
use crate::{DocumentRequest, DocumentSource, FetchError, FetchedDocument};
const CHOOSE_OPTION: &str = include_str!("js/choose_option.js");
const CHOOSE_ROW: &str = include_str!("js/choose_row.js");

/// How a document flow ended without a fetch error.
pub(super) enum Outcome {
    Document(FetchedDocument),
    /// The site showed its login form mid-flow: log in again and start over.
    SessionExpired,
    /// The row's cadastre or désignation matches no option well enough: production's fallback
    /// tries `candidates` (best match first, at most 3).
    NoMatch { field: FieldValue, wanted: String, candidates: Vec<SelectOption>, message: String, step: String },
    /// A site check stopped before the submit that opens a document.
    Stopped,
}

/// How filling the search form ended.
enum Fill {
    Done,
    SessionExpired,
    NoMatch { field: FieldValue, wanted: String, candidates: Vec<SelectOption>, message: String },
}

/// Options forced by a fallback, per field.
type Forced = Vec<(FieldValue, SelectOption)>;

/// The acte types tried, in production's order (Acte → Acte divers → Radiation), the row's first.
const ACTE_TYPES: &[&str] = &["Acte", "Acte divers", "Radiation"];

/// How many other options the cadastre / désignation fallback tries.
const OTHER_OPTIONS: usize = 3;

fn acte_types(request: &DocumentRequest) -> Vec<String> {
    let first = FieldValue::ActeType.of(request).unwrap_or_else(|| ACTE_TYPES[0].to_string());
    let mut types = vec![first.clone()];
    types.extend(ACTE_TYPES.iter().filter(|t| fold(t) != fold(&first)).map(|t| t.to_string()));
    types
}

/// The site said the document does not exist ("… est inexistant", "… inexistante").
fn says_inexistant(error: &FetchError) -> bool {
    matches!(error, FetchError::Rejected { message, .. } if message.to_lowercase().contains("inexistant"))
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
    /// One document with production's fallbacks (docs/design.md §9.1), each try logged: an acte
    /// the site calls "inexistant" is searched again with the other types (Acte → Acte divers →
    /// Radiation), final only after the last; an index or plan whose cadastre or désignation
    /// matches no option well enough is tried with up to 3 other options, best match first. A
    /// cadastre that matched is never swapped for another after the site refused the lot in it.
    pub(super) async fn document_with_fallbacks(&self, client: &Client, downloads: &Path, request: &DocumentRequest) -> Result<Outcome, FetchError> {
        if request.document_source == DocumentSource::Acte {
            let types = acte_types(request);
            let mut last = None;
            for (i, kind) in types.iter().enumerate() {
                let mut attempt = request.clone();
                attempt.acte_type = Some(kind.clone());
                if i > 0 {
                    tracing::info!(document = %request.describe(), "registry: acte fallback {i}/{}: searching again as {kind:?}", types.len() - 1);
                }
                match self.document(client, downloads, &attempt, &Vec::new()).await {
                    Err(e) if says_inexistant(&e) => {
                        tracing::info!(document = %request.describe(), "registry: acte as {kind:?}: {e}");
                        last = Some(e);
                    }
                    other => return other,
                }
            }
            return Err(match last {
                Some(FetchError::Rejected { step, message }) => {
                    FetchError::Rejected { step, message: format!("{message} (types tried: {})", types.join(", ")) }
                }
                Some(other) => other,
                None => FetchError::Other("registry: no acte type to try".into()),
            });
        }
        let (field, wanted, candidates, message, step) = match self.document(client, downloads, request, &Vec::new()).await? {
            Outcome::NoMatch { field, wanted, candidates, message, step } => (field, wanted, candidates, message, step),
            done => return Ok(done),
        };
        if candidates.is_empty() {
            return Err(FetchError::Rejected { step, message });
        }
        let mut refusals = Vec::new();
        for (i, option) in candidates.iter().enumerate() {
            tracing::info!(
                document = %request.describe(),
                "registry: {step}: {} {wanted:?} matches no option well enough: fallback {}/{}: option {:?} (value {:?})",
                field.name(), i + 1, candidates.len(), option.text, option.value
            );
            match self.document(client, downloads, request, &vec![(field, option.clone())]).await {
                Ok(Outcome::NoMatch { message, .. }) => refusals.push(format!("{}: {message}", option.text)),
                Err(FetchError::Rejected { message, .. }) => refusals.push(format!("{}: {message}", option.text)),
                other => return other,
            }
        }
        Err(FetchError::Rejected { step, message: format!("{message}; the closest options were refused too ({})", refusals.join("; ")) })
    }

    /// One document from its search page to the PDF, with the options of `forced` chosen as given.
    async fn document(&self, client: &Client, downloads: &Path, request: &DocumentRequest, forced: &Forced) -> Result<Outcome, FetchError> {
        let site = self.site();
        let page = site.search_page(request.document_source)?;
        let url = site.url(&page.path)?;
        let search_step = format!("{} search", request.document_source);
        client.goto(url.as_str()).await.map_err(|e| classify(e, &format!("opening {url}")))?;
        tracing::info!(document = %request.describe(), "registry: {search_step}: page {}", page.path);
        self.checkpoint(client, &format!("{search_step}: page"), &page.path).await;
        let mut chosen = Vec::new();
        match self.fill_search(client, request, page, &search_step, forced, &mut chosen).await? {
            Fill::Done => {}
            Fill::SessionExpired => return Ok(Outcome::SessionExpired),
            Fill::NoMatch { field, wanted, candidates, message } => {
                return Ok(Outcome::NoMatch { field, wanted, candidates, message, step: search_step });
            }
        }
        // "any submit" means a button of the form holding the number field.
        let anchor: Vec<String> = page.fields.iter().filter(|f| f.value == FieldValue::DocumentNumber).map(|f| f.selector.clone()).collect();
        if self.stop_before_document() && request.document_source != DocumentSource::Acte {
            // The index and plan search submit can open the document (and charge): found, not clicked.
            let (_, matched) = self.pick(client, &page.submit, Some(&anchor), &format!("the {search_step} button")).await?;
            self.checkpoint(client, &format!("{search_step}: button found, NOT clicked"), &matched.alternative).await;
            return Ok(Outcome::Stopped);
        }
        let matched = self.act(client, &page.submit, Some(&anchor), &format!("the {search_step} button")).await?;
        tracing::info!(document = %request.describe(), "registry: {search_step}: submitted with {}", matched.describe(page.submit.len()));
        self.checkpoint(client, &format!("{search_step}: submitted"), &matched.alternative).await;
        match self.after_search(client, downloads, request, search_step).await? {
            Outcome::Document(mut doc) => {
                doc.fetched_as = (!chosen.is_empty()).then(|| chosen.join(", "));
                Ok(Outcome::Document(doc))
            }
            other => Ok(other),
        }
    }

    /// The row's value for a field; a missing circonscription takes REGISTRE_DEFAULT_CIRCONSCRIPTION.
    fn field_value(&self, request: &DocumentRequest, value: FieldValue) -> Option<String> {
        value.of(request).or_else(|| match value {
            FieldValue::Circonscription => self.settings.default_circonscription.clone(),
            _ => None,
        })
    }

    /// Fills the search form, noting in `chosen` the options used (`cadastre=Cadastre du Québec`).
    async fn fill_search(&self, client: &Client, request: &DocumentRequest, page: &SearchPage, step: &str, forced: &Forced, chosen_options: &mut Vec<String>) -> Result<Fill, FetchError> {
        for field in &page.fields {
            let name = field.value.name();
            // Wait for the page (perhaps reloaded by the previous choice) before looking at the field.
            let state = self.settled_page(client, &format!("the {step} page")).await?;
            if state.login {
                return Ok(Fill::SessionExpired);
            }
            let Some(value) = self.field_value(request, field.value) else {
                if field.optional {
                    if field.value == FieldValue::Cadastre {
                        tracing::info!(document = %request.describe(), "registry: {step}: the row has no cadastre: the site's default is kept");
                    }
                    continue;
                }
                let hint = if field.value == FieldValue::Circonscription { " (and REGISTRE_DEFAULT_CIRCONSCRIPTION is not set)" } else { "" };
                return Err(FetchError::Rejected {
                    step: step.to_string(),
                    message: format!("the row has no {name}{hint}, which the {} search needs", request.document_source),
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
                    self.checkpoint(client, &format!("{step}: {name}"), &format!("{} = {typed:?}", field.selector)).await;
                }
                FieldKind::Select => {
                    self.wait_for(client, &field.selector, &format!("the {name} list")).await?;
                    let options = self.select_options(client, &field.selector).await?;
                    let forced_option = forced.iter().find(|(f, _)| *f == field.value).map(|(_, o)| o);
                    let Some(chosen) = forced_option.or_else(|| best_option(&value, &options)) else {
                        let offered: Vec<&str> = options.iter().filter(|o| !o.value.is_empty()).map(|o| o.text.as_str()).take(12).collect();
                        let message = format!("{name} {value:?} is not offered by the registry (options: {})", offered.join(", "));
                        if matches!(field.value, FieldValue::Cadastre | FieldValue::DesignationSecondaire) && forced.is_empty() {
                            let candidates = ranked_options(&value, &options, OTHER_OPTIONS).into_iter().cloned().collect();
                            return Ok(Fill::NoMatch { field: field.value, wanted: value, candidates, message });
                        }
                        return Err(FetchError::Rejected { step: step.to_string(), message });
                    };
                    chosen_options.push(format!("{name}={}", chosen.text));
                    let done = client
                        .execute(CHOOSE_OPTION, vec![json!(field.selector), json!(chosen.value)])
                        .await
                        .map_err(|e| classify(e, &format!("choosing {name}")))?;
                    if done != json!("ok") {
                        return Err(FetchError::Other(format!("choosing {name}: the list {} disappeared", field.selector)));
                    }
                    let started = Instant::now();
                    let reloaded = self.after_choice(client, &format!("the {step} page after choosing {name}")).await?;
                    tracing::info!(
                        document = %request.describe(),
                        "registry: {step}: {name} {value:?} → option {:?} (value {:?}), {}",
                        chosen.text,
                        chosen.value,
                        if reloaded { format!("the page reloaded in {} ms", started.elapsed().as_millis()) } else { "no reload".to_string() }
                    );
                    let reload = if reloaded { "reloaded" } else { "no reload" };
                    self.checkpoint(client, &format!("{step}: {name}"), &format!("{} → {:?} ({reload})", field.selector, chosen.text)).await;
                }
            }
        }
        let state = self.settled_page(client, &format!("the {step} page")).await?;
        Ok(if state.login { Fill::SessionExpired } else { Fill::Done })
    }

    /// After the search: the error cell, the results or choice rows, the confirmation, in whatever
    /// order and number the site shows them, until the document page.
    pub(super) async fn after_search(&self, client: &Client, downloads: &Path, request: &DocumentRequest, mut step: String) -> Result<Outcome, FetchError> {
        let site = self.site();
        let source = request.document_source;
        // The site can take minutes to answer with the document (document_timeout_ms); a page
        // that is there but is none of the known ones gets step_timeout_ms.
        let document_timeout = site.document_timeout();
        let mut acted_at = Instant::now();
        let mut unknown_since: Option<Instant> = None;
        let mut document_logged = false;
        loop {
            let state = self.page_state(client).await?;
            let waited = acted_at.elapsed();
            let document_page = state.frameset || state.has_page_frame;
            let page_frame_ready = !state.has_page_frame || (state.page_ready && state.page_url.contains(&site.document.page_url_contains));
            if !state.save_in.is_empty() && page_frame_ready && state.ready == "complete" {
                tracing::info!(
                    document = %request.describe(),
                    "registry: document page {} ready after {} ms; save control in the {} document, found by `{}`",
                    if state.page_url.is_empty() { &state.url } else { &state.page_url },
                    waited.as_millis(),
                    state.save_in,
                    state.save_alternative
                );
                self.checkpoint(client, "document page: save control", &format!("{} ({} document)", state.save_alternative, state.save_in)).await;
                let doc = self.download(client, downloads, &state, request).await?;
                self.checkpoint(client, "download", &format!("{} bytes, %PDF", doc.bytes.len())).await;
                return Ok(Outcome::Document(doc));
            }
            if document_page {
                if !document_logged {
                    tracing::info!(document = %request.describe(), "registry: document page shown, waiting for its page frame ({}) and the save control", site.document.page_url_contains);
                    document_logged = true;
                }
                if waited >= document_timeout {
                    return Err(FetchError::Timeout {
                        after: document_timeout,
                        what: format!(
                            "{}: the document page came but not its page frame ({:?}, URL containing {:?}) with the save control ({}): the site is slow or changed, see docs/fetchers.md",
                            request.describe(), site.document.page_frame, site.document.page_url_contains, looked_for(&site.document.save_link)
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
            let similar = |t: &&&String| t.to_lowercase().contains(&site.errors.similar_numbers.to_lowercase());
            if let Some(text) = errors.iter().find(|t| !similar(t)) {
                return Err(FetchError::Rejected { step, message: text.to_string() });
            }
            if !state.rows.is_empty() {
                let index = if source == DocumentSource::Acte {
                    // Results (or similar numbers) of an acte search: only the exact number, never
                    // a paper-only row, never another document.
                    let wanted = digits(&request.document_number);
                    let exact = state.rows.iter().position(|r| !r.paper && !wanted.is_empty() && numbers_in(&r.text).contains(&wanted));
                    let Some(index) = exact else {
                        let listed: Vec<String> = state.rows.iter().map(|r| registre_domain::text::excerpt(&r.text, super::EXCERPT_CHARS)).take(10).collect();
                        let said = errors.first().map(|t| format!("{t} — ")).unwrap_or_default();
                        return Err(FetchError::Rejected {
                            step,
                            message: format!(
                                "{said}no row carries the number {} (listed: {})",
                                request.document_number,
                                listed.join(" | ")
                            ),
                        });
                    };
                    if self.stop_before_document() {
                        self.checkpoint(client, &format!("{step}: row {} found, NOT submitted", index + 1), &registre_domain::text::excerpt(&state.rows[index].text, super::EXCERPT_CHARS)).await;
                        return Ok(Outcome::Stopped);
                    }
                    index
                } else {
                    // The first row that is not a paper-only copy (production took the first).
                    let Some(index) = state.rows.iter().position(|r| !r.paper) else {
                        return Err(FetchError::Rejected {
                            step: "choice".into(),
                            message: format!("only paper copies (BPD) are offered for {}", request.describe()),
                        });
                    };
                    index
                };
                let skipped = state.rows.iter().filter(|r| r.paper).count();
                let matched = self.choose_row(client, index).await?;
                tracing::info!(
                    document = %request.describe(),
                    "registry: {step}: {} row(s), {skipped} paper-only, taking row {}: {:?}; submitted with {}",
                    state.rows.len(),
                    index + 1,
                    state.rows[index].text,
                    matched.describe(site.choice.submit.len())
                );
                self.checkpoint(client, &format!("{step}: row {} submitted", index + 1), &matched.alternative).await;
                step = "choice".into();
                acted_at = Instant::now();
                unknown_since = None;
                continue;
            }
            if !state.not_found.is_empty() {
                return Err(FetchError::Rejected { step, message: state.not_found.clone() });
            }
            if state.confirm {
                let button = vec![site.confirmation.button.clone()];
                self.act(client, &button, None, "the confirmation button").await?;
                tracing::info!(document = %request.describe(), "registry: confirmation page: confirmed ({})", site.confirmation.button);
                self.checkpoint(client, "confirmation", &site.confirmation.button).await;
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
                        "{}: {step}: the page {} is none of the known ones (error cell {}, choice {}, confirmation {}, save control {}): the site changed? see docs/fetchers.md",
                        request.describe(), state.url, site.errors.cell, site.choice.radio, site.confirmation.button,
                        looked_for(&site.document.save_link)
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn choose_row(&self, client: &Client, index: usize) -> Result<Matched, FetchError> {
        let choice = &self.site().choice;
        let done = client
            .execute(&with_find(CHOOSE_ROW), vec![json!(choice.radio), json!(index), json!(choice.submit)])
            .await
            .map_err(|e| classify(e, "choosing a row"))?;
        if done.is_null() {
            let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            return Err(FetchError::Other(format!(
                "page {url}: row {} ({}) or its button (looked for {}) is missing: the site changed? see docs/fetchers.md",
                index + 1,
                choice.radio,
                looked_for(&choice.submit)
            )));
        }
        Ok(serde_json::from_value(done).unwrap_or_default())
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
