//! Local filesystem backend: `<root>/<bucket>/<name>`, through `object_store`'s LocalFileSystem,
//! whose upload writes a staging file next to the destination and renames it over the final
//! name, so a reader sees either the whole previous object or the whole new one, never a partial
//! file. The root directory is created on first use (a fresh machine has none).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::{Path as StorePath, PathPart};
use object_store::{ObjectStoreExt as _, PutPayload};
use tokio::sync::OnceCell;

use crate::{store_error, ObjectPath, StorageError};

pub(crate) const BACKEND: &str = "local";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    store: Arc<OnceCell<LocalFileSystem>>,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into(), store: Arc::new(OnceCell::new()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` lives on disk. Always under `<root>/<bucket>/`: [`ObjectPath`] has no `..`,
    /// `.`, empty or absolute segment.
    pub fn file_path(&self, path: &ObjectPath) -> PathBuf {
        let mut file = self.root.join(path.bucket().as_str());
        file.extend(path.name().split('/'));
        file
    }

    /// The store rooted at `root`, created (with the directory) on first use.
    async fn store(&self) -> Result<&LocalFileSystem, StorageError> {
        self.store
            .get_or_try_init(|| async {
                let io = |operation| {
                    move |source| StorageError::Io { operation, file: self.root.clone(), source }
                };
                tokio::fs::create_dir_all(&self.root).await.map_err(io("create directory"))?;
                LocalFileSystem::new_with_prefix(&self.root)
                    .map_err(|e| io("open")(std::io::Error::other(e.to_string())))
            })
            .await
    }

    /// Each segment taken as a literal file name: object_store percent-encodes what a file name
    /// must not hold, so a name like `%2e%2e` stays a file called `%2e%2e` inside the bucket.
    fn location(path: &ObjectPath) -> StorePath {
        let segments = std::iter::once(path.bucket().as_str()).chain(path.name().split('/'));
        StorePath::from_iter(segments.map(PathPart::from))
    }

    pub async fn put(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        let store = self.store().await?;
        let size = bytes.len();
        store.put(&Self::location(path), PutPayload::from(bytes)).await.map_err(store_error(BACKEND, "upload", path))?;
        tracing::debug!(path = %path, size, "stored object");
        Ok(())
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, StorageError> {
        let failed = store_error(BACKEND, "download", path);
        let result = self.store().await?.get(&Self::location(path)).await.map_err(&failed)?;
        result.bytes().await.map_err(failed)
    }

    pub async fn exists(&self, path: &ObjectPath) -> Result<bool, StorageError> {
        match self.store().await?.head(&Self::location(path)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(BACKEND, "exists", path)(e)),
        }
    }

    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        match self.store().await?.delete(&Self::location(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(BACKEND, "delete", path)(e)),
        }
    }
}
