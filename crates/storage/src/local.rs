//! Local filesystem backend: `<root>/<bucket>/<name>`. An upload is written to a temporary file
//! in the destination directory, synced, then renamed over the final name, so a reader sees
//! either the whole previous object or the whole new one, never a partial file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::{ObjectPath, StorageError};

pub(crate) const BACKEND: &str = "local";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io<'a>(operation: &'static str, file: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { operation, file: file.to_path_buf(), source }
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
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

    pub async fn put(&self, path: &ObjectPath, bytes: &[u8]) -> Result<(), StorageError> {
        let file = self.file_path(path);
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        tokio::fs::create_dir_all(&dir).await.map_err(io("create directory", &dir))?;
        let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(
            ".{base}.{}-{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = async {
            let mut out = tokio::fs::File::create(&temp).await.map_err(io("create", &temp))?;
            out.write_all(bytes).await.map_err(io("write", &temp))?;
            out.sync_all().await.map_err(io("sync", &temp))?;
            drop(out);
            tokio::fs::rename(&temp, &file).await.map_err(io("rename into place", &file))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
            return written;
        }
        // Make the rename itself durable; failing to sync a directory is not worth failing a
        // job whose bytes are already in place.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
        tracing::debug!(path = %path, file = %file.display(), size = bytes.len(), "stored object");
        Ok(())
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, StorageError> {
        let file = self.file_path(path);
        match tokio::fs::read(&file).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(StorageError::NotFound { backend: BACKEND, path: path.to_string() })
            }
            Err(e) => Err(io("read", &file)(e)),
        }
    }

    pub async fn exists(&self, path: &ObjectPath) -> Result<bool, StorageError> {
        let file = self.file_path(path);
        match tokio::fs::metadata(&file).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("stat", &file)(e)),
        }
    }

    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        let file = self.file_path(path);
        match tokio::fs::remove_file(&file).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &file)(e)),
        }
    }
}
