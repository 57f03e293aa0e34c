//! Fetchers of registry documents: a [`DocumentRequest`] (what the worker read from its claimed
//! queue row) goes in, a [`FetchedDocument`] (PDF bytes and where they came from) comes out.
//!
//! Three implementations behind the one [`Fetcher`] trait (docs/design.md §9, docs/fetchers.md):
//! - `registry` ([`registry::RegistryFetcher`]): the Registre foncier website driven by headless Chromium
//!   through WebDriver (every URL and selector in `registry-site.toml`);
//! - `http` ([`http::HttpFetcher`]): a URL template with `{source}` and `{document_number}` holes;
//! - `directory` ([`directory::DirectoryFetcher`]): `{dir}/{document_source}/{document_number}.pdf`.
//!
//! Errors are typed ([`FetchError`]) so the worker can decide: a crashed browser releases the
//! job without counting an attempt, everything else fails it with a readable message.

pub mod directory;
mod error;
pub mod http;
mod pdf;
pub mod registry;
mod request;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use registre_config::{FetcherKind, RegistreConfig};

pub use error::FetchError;
pub use pdf::{validate_pdf, NotAPdf};
pub use registry::{Account, AccountError, AccountProvider, InMemoryAccounts, RegistryFetcher, RegistrySettings};
pub use registre_domain::text::sanitize;
pub use request::{DocumentRequest, DocumentSource, UnknownDocumentSource};

/// A boxed future, so [`Fetcher`] can be used as `dyn Fetcher` (chosen at start from configuration).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A fetched document: PDF bytes already checked by [`validate_pdf`].
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedDocument {
    pub bytes: Vec<u8>,
    /// `application/pdf` unless the source said otherwise.
    pub content_type: String,
    /// Where the bytes came from: a URL, a file path, or a description of the registry search.
    pub source: String,
    /// What actually delivered the document when it differs in kind from a plain lookup: the
    /// registry's acte type or cadastre / désignation options used (`acte_type=Acte divers`),
    /// stored in the row's `fetched_as`. None for the directory and http fetchers.
    pub fetched_as: Option<String>,
}

impl std::fmt::Debug for FetchedDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedDocument")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("content_type", &self.content_type)
            .field("source", &self.source)
            .field("fetched_as", &self.fetched_as)
            .finish()
    }
}

/// Something that turns a document request into PDF bytes.
pub trait Fetcher: Send + Sync {
    /// Fetches one document. Implementations bound their own time (EXTRACTION_TIMEOUT).
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;

    /// Frees what the fetcher holds (browser, account) before the process exits. Idempotent;
    /// a later `fetch` starts afresh.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Short name for logs: `registry`, `http` or `directory`.
    fn kind(&self) -> &'static str;
}

/// The fetcher REGISTRE_FETCHER selects. `accounts` is only used by the registry fetcher.
pub fn from_config(
    config: &RegistreConfig,
    accounts: Arc<dyn AccountProvider>,
) -> Result<Arc<dyn Fetcher>, FetchError> {
    Ok(match config.fetcher {
        FetcherKind::Directory => {
            let dir = config.source_dir.clone().ok_or_else(|| {
                FetchError::Other("REGISTRE_FETCHER=directory needs REGISTRE_SOURCE_DIR".into())
            })?;
            Arc::new(directory::DirectoryFetcher::new(dir))
        }
        FetcherKind::Http => {
            let template = config.url_template.clone().ok_or_else(|| {
                FetchError::Other("REGISTRE_FETCHER=http needs REGISTRE_URL_TEMPLATE".into())
            })?;
            Arc::new(http::HttpFetcher::new(template, config.extraction_timeout)?)
        }
        FetcherKind::Registry => {
            let settings = RegistrySettings::from_config(config)?;
            Arc::new(RegistryFetcher::new(settings, accounts)?)
        }
    })
}
