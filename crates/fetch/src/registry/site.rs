//! The site description of `registry-site.toml`: every URL and selector of the registry website,
//! so a change of the website is a config edit. Embedded default, overridable by a file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::{DocumentRequest, DocumentSource, FetchError};

/// The shipped description, compiled in.
pub const DEFAULT_SITE_CONFIG: &str = include_str!("../../registry-site.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub base_url: Url,
    #[serde(default = "default_step_timeout_ms")]
    pub step_timeout_ms: u64,
    /// Longest wait for the document frameset (the site can take minutes), within EXTRACTION_TIMEOUT.
    #[serde(default = "default_document_timeout_ms")]
    pub document_timeout_ms: u64,
    /// After choosing an option: no navigation started within this grace → the choice did not reload.
    #[serde(default = "default_reload_grace_ms")]
    pub reload_grace_ms: u64,
    pub entry: Entry,
    pub login: Login,
    pub errors: Errors,
    pub search: HashMap<String, SearchPage>,
    pub choice: Choice,
    pub confirmation: Confirmation,
    pub document: DocumentPage,
    #[serde(default)]
    pub diagnostics: Diagnostics,
}

fn default_step_timeout_ms() -> u64 {
    30_000
}

fn default_reload_grace_ms() -> u64 {
    1_500
}

/// An ordered list of alternatives for one element of the site (P's first): CSS selectors, or
/// `label:TEXT`, `link-text:TEXT`, `button-text:TEXT`, `any submit` (js/find.js reads them).
pub type Alternatives = Vec<String>;

fn default_document_timeout_ms() -> u64 {
    180_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default)]
    pub path: String,
    pub link: Alternatives,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: Alternatives,
    pub password: Alternatives,
    pub submit: Alternatives,
}

/// The site's error cell and how to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    pub cell: String,
    /// Per document source, texts of the cell that are not errors.
    #[serde(default)]
    pub not_errors: HashMap<String, Vec<String>>,
    /// Text of the cell announcing a list of similar acte numbers.
    pub similar_numbers: String,
    /// Words of the page body meaning the document does not exist ("inexistante").
    #[serde(default)]
    pub not_found_words: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPage {
    pub path: String,
    pub submit: Alternatives,
    #[serde(default)]
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub selector: String,
    pub value: FieldValue,
    #[serde(default)]
    pub kind: FieldKind,
    /// Skipped when the row has no value for it.
    #[serde(default)]
    pub optional: bool,
    /// Skipped when the page does not show it (after the previous choices).
    #[serde(default)]
    pub may_be_absent: bool,
    /// Typed without spaces ("4 866 594" → "4866594").
    #[serde(default)]
    pub strip_spaces: bool,
}
/// Which value of the queue row fills a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldValue {
    DocumentNumber,
    Circonscription,
    Cadastre,
    ActeType,
    DesignationSecondaire,
}

impl FieldValue {
    pub fn name(self) -> &'static str {
        match self {
            FieldValue::DocumentNumber => "document_number",
            FieldValue::Circonscription => "circonscription_fonciere",
            FieldValue::Cadastre => "cadastre",
            FieldValue::ActeType => "acte_type",
            FieldValue::DesignationSecondaire => "designation_secondaire",
        }
    }

    /// The row's value, `None` when absent or blank.
    pub fn of(self, request: &DocumentRequest) -> Option<String> {
        let value = match self {
            FieldValue::DocumentNumber => Some(request.document_number.clone()),
            FieldValue::Circonscription => request.circonscription_fonciere.clone(),
            FieldValue::Cadastre => request.cadastre.clone(),
            FieldValue::ActeType => request.acte_type.clone(),
            FieldValue::DesignationSecondaire => request.designation_secondaire.clone(),
        };
        value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Text,
    Select,
}

/// The optional choice page (radio buttons, one per document).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub radio: String,
    pub paper_only: String,
    pub submit: Alternatives,
}

/// The optional fee confirmation page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    pub button: String,
}

/// The document frameset and its save control.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentPage {
    pub menu_frame: String,
    pub page_frame: String,
    pub page_url_contains: String,
    pub save_link: Alternatives,
}

/// Where screenshots and HTML of failed steps go, and how many are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnostics {
    #[serde(default)]
    pub dir: String,
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Diagnostics { dir: String::new(), keep: default_keep() }
    }
}

fn default_keep() -> usize {
    20
}

impl Diagnostics {
    /// The folder (`dir`, or <temp>/registre-registry-diagnostics when empty).
    pub fn folder(&self) -> std::path::PathBuf {
        if self.dir.trim().is_empty() {
            std::env::temp_dir().join("registre-registry-diagnostics")
        } else {
            std::path::PathBuf::from(self.dir.trim())
        }
    }
}

impl SiteConfig {
    /// The shipped description.
    pub fn embedded() -> Result<SiteConfig, FetchError> {
        SiteConfig::parse(DEFAULT_SITE_CONFIG, "the embedded registry-site.toml")
    }

    /// A description read from `path` (REGISTRE_SITE_CONFIG).
    pub fn from_file(path: &Path) -> Result<SiteConfig, FetchError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FetchError::Other(format!("REGISTRE_SITE_CONFIG={}: cannot read it: {e}", path.display())))?;
        SiteConfig::parse(&text, &format!("REGISTRE_SITE_CONFIG={}", path.display()))
    }

    /// Parses and checks a description; errors name `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<SiteConfig, FetchError> {
        let site: SiteConfig =
            toml::from_str(text).map_err(|e| FetchError::Other(format!("{origin}: {}", e.to_string().trim())))?;
        for source in DocumentSource::ALL {
            let page = site.search.get(source.as_str()).ok_or_else(|| {
                FetchError::Other(format!("{origin}: no [search.{source}] section"))
            })?;
            if !page.fields.iter().any(|f| f.value == FieldValue::DocumentNumber) {
                return Err(FetchError::Other(format!(
                    "{origin}: [search.{source}] has no field filled with document_number"
                )));
            }
        }
        if let Some(extra) = site.search.keys().find(|k| k.parse::<DocumentSource>().is_err()) {
            return Err(FetchError::Other(format!(
                "{origin}: [search.{extra}] is not a document source (acte, index, plan_cadastraux)"
            )));
        }
        let lists: [(&str, &Alternatives); 6] = [
            ("entry.link", &site.entry.link),
            ("login.username", &site.login.username),
            ("login.password", &site.login.password),
            ("login.submit", &site.login.submit),
            ("choice.submit", &site.choice.submit),
            ("document.save_link", &site.document.save_link),
        ];
        let searches = site.search.iter().map(|(k, p)| (k.as_str(), &p.submit));
        for (name, list) in lists.into_iter().chain(searches) {
            if list.iter().all(|a| a.trim().is_empty()) {
                return Err(FetchError::Other(format!("{origin}: {name} needs at least one alternative")));
            }
        }
        if !matches!(site.base_url.scheme(), "http" | "https") {
            return Err(FetchError::Other(format!("{origin}: base_url must be an http(s) URL")));
        }
        Ok(site)
    }

    /// Replaces the base URL (REGISTRE_BASE_URL). A missing final `/` is added so paths append.
    pub fn with_base_url(mut self, mut base: Url) -> SiteConfig {
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        self.base_url = base;
        self
    }

    pub fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.step_timeout_ms.max(1))
    }

    pub fn reload_grace(&self) -> Duration {
        Duration::from_millis(self.reload_grace_ms)
    }

    /// REGISTRE_STEP_TIMEOUT_MS / REGISTRE_DOCUMENT_TIMEOUT_MS, when set, replace the file's values.
    pub fn with_timeouts(mut self, step: Option<Duration>, document: Option<Duration>) -> SiteConfig {
        if let Some(step) = step {
            self.step_timeout_ms = step.as_millis() as u64;
        }
        if let Some(document) = document {
            self.document_timeout_ms = document.as_millis() as u64;
        }
        self
    }

    pub fn document_timeout(&self) -> Duration {
        Duration::from_millis(self.document_timeout_ms.max(1))
    }

    /// Whether `text` of the error cell is, for `source`, not an error ("… est inactif" for plans).
    pub fn is_not_an_error(&self, source: DocumentSource, text: &str) -> bool {
        let folded = text.to_lowercase();
        self.errors
            .not_errors
            .get(source.as_str())
            .is_some_and(|texts| texts.iter().any(|t| !t.is_empty() && folded.contains(&t.to_lowercase())))
    }

    /// `base_url` joined with a relative `path`.
    pub fn url(&self, path: &str) -> Result<Url, FetchError> {
        self.base_url
            .join(path)
            .map_err(|e| FetchError::Other(format!("registry site config: {path:?} relative to {}: {e}", self.base_url)))
    }

    pub fn search_page(&self, source: DocumentSource) -> Result<&SearchPage, FetchError> {
        self.search
            .get(source.as_str())
            .ok_or_else(|| FetchError::Other(format!("registry site config has no [search.{source}] section")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_has_the_three_search_pages() {
        let site = SiteConfig::embedded().unwrap();
        assert_eq!(site.base_url.as_str(), "https://www.registrefoncier.gouv.qc.ca/Sirf/");
        assert_eq!(
            site.url(&site.search_page(DocumentSource::Index).unwrap().path).unwrap().as_str(),
            "https://www.registrefoncier.gouv.qc.ca/Sirf/Script/13_01_11/pf_13_01_11_02_indx_immbl.asp"
        );
        assert!(site.search_page(DocumentSource::Acte).unwrap().path.ends_with("pf_13_01_11_08_reqst.asp"));
        assert!(site.search_page(DocumentSource::PlanCadastraux).unwrap().path.ends_with("pf_13_01_11_10_plan_cadst.asp"));
        assert_eq!(site.login.username, ["label:Code d'utilisateur", "input[name='code_utilisateur']"]);
        assert!(site.entry.link[0].contains("pf_14_06_01_reglr") && site.entry.link[3].contains("13_01_01"));
        let acte = site.search_page(DocumentSource::Acte).unwrap();
        assert!(acte.submit[0].contains("Rechercher") && acte.submit.last().unwrap() == "any submit");
        assert_eq!(site.step_timeout(), Duration::from_secs(30));
        let overridden = site.clone().with_timeouts(Some(Duration::from_millis(5)), None);
        assert_eq!((overridden.step_timeout(), overridden.document_timeout()), (Duration::from_millis(5), Duration::from_secs(180)));
        assert!(site.is_not_an_error(DocumentSource::PlanCadastraux, "Le plan 1234 est inactif."));
        assert!(!site.is_not_an_error(DocumentSource::Index, "Le plan 1234 est inactif."));
        assert_eq!(site.document_timeout(), Duration::from_secs(180));
        assert_eq!(site.diagnostics.keep, 20);
    }

    #[test]
    fn base_url_override_gets_a_trailing_slash() {
        let site = SiteConfig::embedded().unwrap().with_base_url(Url::parse("http://127.0.0.1:9/Sirf").unwrap());
        assert_eq!(site.url("Script/x.asp").unwrap().as_str(), "http://127.0.0.1:9/Sirf/Script/x.asp");
    }

    #[test]
    fn a_broken_config_is_refused_with_its_origin() {
        let err = SiteConfig::parse("base_url = 3", "REGISTRE_SITE_CONFIG=/x.toml").unwrap_err().to_string();
        assert!(err.starts_with("REGISTRE_SITE_CONFIG=/x.toml: "), "{err}");
        let without_acte = DEFAULT_SITE_CONFIG.replace("[search.acte]", "[search.actes]");
        let err = SiteConfig::parse(&without_acte, "test").unwrap_err().to_string();
        assert!(err.contains("no [search.acte] section"), "{err}");
    }
}
