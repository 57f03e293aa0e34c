//! Object storage of the fetched PDFs (docs/design.md §8, docs/storage.md).
//!
//! One [`Storage`] with three backends, chosen by STORAGE_URL through
//! [`registre_config::StorageConfig`]:
//! - [`LocalStore`] (`file:///dir`, the default): one directory per bucket; uploads are atomic
//!   (written to a temporary file in the same directory, synced, then renamed);
//! - [`SupabaseStore`] (`https://<project>.supabase.co`): Supabase Storage REST with the service key;
//! - [`S3Store`] (`s3://<bucket>[/<prefix>]`): any S3-compatible store, through `object_store`'s
//!   AmazonS3 client (it signs the requests; the local backend uses its LocalFileSystem).
//!
//! Names come from [`naming`]: buckets `index`, `actes`, `plans-cadastraux` chosen from the row's
//! `document_source`; object names `{document_number}-{circonscription}-{cadastre}-{unix_ms}.pdf`
//! with every character outside `[A-Za-z0-9_-]` replaced by `_`; [`ObjectPath`] is the only way
//! to address an object and refuses `..`, so row data can never leave its bucket. A stored object
//! is recorded in `supabase_path` as `<bucket>/<name>`; [`ObjectPath::parse`] also reads the full
//! Supabase URLs that older rows hold.

mod local;
pub mod naming;
mod s3;
mod supabase;

use std::path::PathBuf;

pub use bytes::Bytes;
pub use local::LocalStore;
pub use naming::{object_name, sanitize, Bucket, ObjectPath};
pub use registre_config::{S3Config, StorageBackend, StorageConfig};
pub use s3::S3Store;
pub use supabase::SupabaseStore;

/// The content type every object is stored with: the documents are PDFs.
pub const CONTENT_TYPE: &str = "application/pdf";

/// Why a storage operation failed. Display names the backend, the operation, the object and,
/// for HTTP backends, the status and the start of the response body. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("unknown bucket {bucket:?}: expected one of index, actes, plans-cadastraux")]
    UnknownBucket { bucket: String },
    #[error("unknown document_source {document_source:?}: expected index, acte or plan_cadastraux")]
    UnknownSource { document_source: String },
    #[error("{backend} storage: object {path} not found")]
    NotFound { backend: &'static str, path: String },
    #[error("local storage: {operation} {}: {source}", file.display())]
    Io {
        operation: &'static str,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{backend} storage: {operation} {path}: request failed: {source}")]
    Request {
        backend: &'static str,
        operation: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{backend} storage: {operation} {path}: HTTP {status}: {body}")]
    Status { backend: &'static str, operation: &'static str, path: String, status: u16, body: String },
    #[error("{backend} storage: {operation} {path}: unexpected reply: {detail}")]
    Reply { backend: &'static str, operation: &'static str, path: String, detail: String },
    /// An object_store backend (local, S3) failed; its message names the call and, for S3, the
    /// server's answer (e.g. `SignatureDoesNotMatch`).
    #[error("{backend} storage: {operation} {path}: {source}")]
    Store {
        backend: &'static str,
        operation: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("storage client could not be built: {0}")]
    Client(String),
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// The object store the workers upload to and the OCR workers download from.
#[derive(Debug, Clone)]
pub enum Storage {
    Local(LocalStore),
    Supabase(SupabaseStore),
    S3(S3Store),
}

impl Storage {
    /// The backend STORAGE_URL selected. Creates nothing remote; the local root is created on
    /// the first upload.
    pub fn from_config(config: &StorageConfig) -> Result<Storage, StorageError> {
        Ok(match &config.backend {
            StorageBackend::Local { root } => Storage::Local(LocalStore::new(root.clone())),
            StorageBackend::Supabase { url, service_key } => {
                Storage::Supabase(SupabaseStore::new(url.clone(), service_key.clone(), http_client(config)?))
            }
            StorageBackend::S3(s3) => Storage::S3(S3Store::new(s3.clone(), config.timeout)?),
        })
    }

    /// `local`, `supabase` or `s3`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Storage::Local(_) => local::BACKEND,
            Storage::Supabase(_) => supabase::BACKEND,
            Storage::S3(_) => s3::BACKEND,
        }
    }

    /// One line for the start-up log: the backend and where it writes (no secret).
    pub fn describe(&self) -> String {
        match self {
            Storage::Local(s) => format!("local {}", s.root().display()),
            Storage::Supabase(s) => format!("supabase {}", s.base_url()),
            Storage::S3(s) => s.describe(),
        }
    }

    /// Stores `bytes` as `name` in `bucket` (replacing any object of that name) and returns the
    /// path to record in `supabase_path`.
    pub async fn put(&self, bucket: Bucket, name: &str, bytes: Bytes) -> Result<ObjectPath, StorageError> {
        let path = ObjectPath::new(bucket, name)?;
        self.put_object(&path, bytes).await?;
        Ok(path)
    }

    /// Stores `bytes` at `path`, replacing any object there.
    pub async fn put_object(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.put(path, bytes).await,
            Storage::Supabase(s) => s.put(path, bytes).await,
            Storage::S3(s) => s.put(path, bytes).await,
        }
    }

    /// The object's bytes; [`StorageError::NotFound`] if there is none.
    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, StorageError> {
        match self {
            Storage::Local(s) => s.get(path).await,
            Storage::Supabase(s) => s.get(path).await,
            Storage::S3(s) => s.get(path).await,
        }
    }

    pub async fn exists(&self, path: &ObjectPath) -> Result<bool, StorageError> {
        match self {
            Storage::Local(s) => s.exists(path).await,
            Storage::Supabase(s) => s.exists(path).await,
            Storage::S3(s) => s.exists(path).await,
        }
    }

    /// Removes the object; removing an object that is not there succeeds (idempotent).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.delete(path).await,
            Storage::Supabase(s) => s.delete(path).await,
            Storage::S3(s) => s.delete(path).await,
        }
    }
}

fn http_client(config: &StorageConfig) -> Result<reqwest::Client, StorageError> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
        .build()
        .map_err(|e| StorageError::Client(e.to_string()))
}

/// The start of a response body for an error message: one line, at most 300 characters.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = registre_domain::text::excerpt(&String::from_utf8_lossy(body), 300);
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    text
}

/// The [`StorageError`] of a failed object_store call: its NotFound is [`StorageError::NotFound`]
/// unless S3 says the bucket itself is missing (a configuration problem, not a missing object).
pub(crate) fn store_error<'a>(
    backend: &'static str,
    operation: &'static str,
    path: &'a ObjectPath,
) -> impl Fn(object_store::Error) -> StorageError + 'a {
    move |source| match source {
        object_store::Error::NotFound { ref source, .. } if !source.to_string().contains("NoSuchBucket") => {
            StorageError::NotFound { backend, path: path.to_string() }
        }
        source => StorageError::Store { backend, operation, path: path.to_string(), source },
    }
}

/// `/`-separated `name` with each segment percent-encoded (everything but `A-Za-z0-9-_.~`), as
/// Supabase Storage URLs want it.
pub(crate) fn encode_path(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    name.split('/').map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}
