//! What an operator needs to diagnose a change of the registry site: when a step fails for a
//! reason other than the row's data, a screenshot and the HTML of the page (and of its frames) are
//! saved in a folder of their own, named in the error message. Only the newest `keep` folders are
//! kept, so a site change that fails every fetch cannot fill the disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fantoccini::Client;

use super::site::Diagnostics;
use crate::DocumentRequest;

/// Serializes the HTML of the page and of every same-origin frame, each with its URL.
const PAGE_HTML: &str = include_str!("js/page_html.js");

/// Saves `screenshot.png`, `page.html` and `error.txt` for a failed step; returns the folder, or
/// None when nothing could be written (the fetch error is reported either way).
pub async fn save(config: &Diagnostics, client: &Client, request: &DocumentRequest, error: &str) -> Option<PathBuf> {
    let root = config.folder();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let name = format!(
        "{millis:014}-{}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        request.document_source,
        crate::sanitize(&request.document_number)
    );
    let folder = root.join(name);
    if let Err(e) = std::fs::create_dir_all(&folder) {
        tracing::warn!(folder = %folder.display(), "registry: cannot save the diagnostics of a failed step: {e}");
        return None;
    }
    let _ = std::fs::write(folder.join("error.txt"), format!("{}\n{error}\n", request.describe()));
    match client.screenshot().await {
        Ok(png) => {
            let _ = std::fs::write(folder.join("screenshot.png"), png);
        }
        Err(e) => tracing::warn!("registry: no screenshot of the failed step: {e}"),
    }
    let _ = std::fs::write(folder.join("page.html"), page_html(client).await);
    prune(&root, config.keep.max(1));
    Some(folder)
}

/// The HTML of the page and of its same-origin frames (js/page_html.js), else the page source.
pub(super) async fn page_html(client: &Client) -> String {
    match client.execute(PAGE_HTML, vec![]).await {
        Ok(v) => v.as_str().unwrap_or_default().to_string(),
        Err(_) => client.source().await.unwrap_or_default(),
    }
}

/// Removes all but the newest `keep` folders of `root` (names start with a zero-padded time).
pub fn prune(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut folders: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    let excess = folders.len().saturating_sub(keep);
    for old in folders.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest() {
        let root = std::env::temp_dir().join(format!("registre-diag-prune-{}", std::process::id()));
        for i in 0..7 {
            std::fs::create_dir_all(root.join(format!("{:014}-x", 1000 + i))).unwrap();
        }
        prune(&root, 3);
        let mut left: Vec<String> =
            std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["00000000001004-x", "00000000001005-x", "00000000001006-x"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
