//! A per-job temporary directory, removed when dropped: after success, after an error, and when
//! the job's future is dropped mid-way (worker shutdown), so rendered pages never pile up.

use std::path::{Path, PathBuf};

use crate::OcrError;

#[derive(Debug)]
pub(crate) struct JobDir {
    path: PathBuf,
}

impl JobDir {
    /// Creates `<root>/registre-ocr-<uuid>` (private to this job).
    pub(crate) fn create(root: &Path) -> Result<JobDir, OcrError> {
        let path = root.join(format!("registre-ocr-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).map_err(|source| OcrError::TempFiles { path: path.display().to_string(), source })?;
        Ok(JobDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        // A second try covers a killed child that created a file during the first one.
        let result = std::fs::remove_dir_all(&self.path).or_else(|_| std::fs::remove_dir_all(&self.path));
        if let Err(e) = result {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("temporary OCR directory {} could not be removed: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_with_its_files() {
        let root = std::env::temp_dir().join(format!("jobdir-test-{}", uuid::Uuid::new_v4().simple()));
        let dir = JobDir::create(&root).unwrap();
        std::fs::write(dir.path().join("page-1.png"), b"x").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.exists());
        drop(dir);
        assert!(!path.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
