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
    pub entry: Entry,
    pub login: Login,
    pub search: HashMap<String, SearchPage>,
    pub result: ResultPage,
}

fn default_step_timeout_ms() -> u64 {
    20_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default)]
    pub path: String,
    pub link: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
    pub submit: String,
    pub success: String,
    pub failure: String,
    #[serde(default)]
    pub failure_texts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPage {
    pub path: String,
    pub submit: String,
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
    #[serde(default)]
    pub optional: bool,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultPage {
    #[serde(default = "default_frame_depth")]
    pub frame_depth: u8,
    pub download_link: String,
    #[serde(default)]
    pub not_found: Option<String>,
    #[serde(default)]
    pub not_found_texts: Vec<String>,
}

fn default_frame_depth() -> u8 {
    3
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
        assert_eq!(site.login.username, "input[name='code_utilisateur']");
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
