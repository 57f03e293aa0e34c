//! The `directory` fetcher: `{REGISTRE_SOURCE_DIR}/{document_source}/{document_number}.pdf`, the
//! number sanitized so row data can never point outside the folder. Used by the demo and tests.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{sanitize, validate_pdf, BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};

#[derive(Debug, Clone)]
pub struct DirectoryFetcher {
    root: PathBuf,
}

impl DirectoryFetcher {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectoryFetcher { root: root.into() }
    }

    /// The file a request maps to.
    pub fn path_for(&self, request: &DocumentRequest) -> PathBuf {
        self.root
            .join(request.document_source.as_str())
            .join(format!("{}.pdf", sanitize(request.document_number.trim())))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Fetcher for DirectoryFetcher {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let path = self.path_for(request);
            let shown = path.display().to_string();
            let bytes = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(FetchError::NotFound { document: request.describe(), detail: format!("no file {shown}") })
                }
                Err(e) => return Err(FetchError::Other(format!("reading {shown}: {e}"))),
            };
            validate_pdf(&bytes).map_err(|reason| FetchError::NotAPdf { source_name: shown.clone(), reason })?;
            Ok(FetchedDocument { bytes, content_type: "application/pdf".into(), source: shown, fetched_as: None })
        })
    }

    fn kind(&self) -> &'static str {
        "directory"
    }
}
