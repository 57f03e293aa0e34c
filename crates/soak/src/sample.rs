//! One sample of the fleet under soak, read from outside as an operator would: /proc for each PM2
//! app's process (RSS, descriptors, threads) and for every process of the run (found by the
//! SOAK_RUN marker in its environment, which PM2's daemon passes on to the apps and they to
//! chromedriver, Chromium and tesseract), the files under the fleet's temp and download folders,
//! the keys of the private Redis per prefix, the connections to the private database per
//! application_name, and the rows per status.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection};

/// Where to look.
#[derive(Debug, Clone)]
pub struct Target {
    pub pm2_home: PathBuf,
    pub apps: Vec<String>,
    /// `SOAK_RUN=<marker>` in a process's environment marks it as the run's.
    pub marker: String,
    /// Folders whose files are counted (name → path): temporary and download folders, which must
    /// not grow.
    pub folders: Vec<(String, PathBuf)>,
    /// The storage folder, which grows with the work: counted apart (`stored:files`).
    pub stored: Option<PathBuf>,
    pub redis_url: String,
    pub database_url: String,
}

/// Series name → value, plus the documents finished so far (rows in 4 or 5).
#[derive(Debug, Default)]
pub struct Sample {
    pub docs: i64,
    pub values: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("Postgres {0}: {1}")]
    Postgres(&'static str, sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The pid PM2 recorded for `app` (`$PM2_HOME/pids/<app>-<n>.pid`), if that process is alive.
pub fn app_pid(pm2_home: &Path, app: &str) -> Option<u32> {
    let entries = std::fs::read_dir(pm2_home.join("pids")).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(app).and_then(|r| r.strip_prefix('-')) else { continue };
        if !rest.trim_end_matches(".pid").chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let pid: u32 = std::fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
        if Path::new(&format!("/proc/{pid}")).exists() {
            return Some(pid);
        }
    }
    None
}

/// (RSS kB, open descriptors, threads) of one process.
fn process_figures(pid: u32) -> Option<(f64, f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64;
    Some((field("VmRSS:")?, fds, field("Threads:")?))
}

/// A process of the run: its command name and parent.
struct Marked {
    comm: String,
    ppid: u32,
    /// The browser session the process belongs to (REGISTRE_BROWSER_SESSION, which the registry
    /// fetcher gives chromedriver and Chromium inherits), if any.
    session: Option<Vec<u8>>,
}

/// The variable naming a process's browser session (registre_fetch::registry::SESSION_VAR).
const SESSION_VAR: &[u8] = b"REGISTRE_BROWSER_SESSION=";

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Every live process whose environment carries the marker.
fn marked_processes(marker: &str) -> HashMap<u32, Marked> {
    let needle = format!("SOAK_RUN={marker}");
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        // Another user's process is unreadable: not ours.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        let ppid = parent_of(pid).unwrap_or(0);
        let session = environ.split(|b| *b == 0).find_map(|v| v.strip_prefix(SESSION_VAR)).map(<[u8]>::to_vec);
        found.insert(pid, Marked { comm, ppid, session });
    }
    found
}

/// The family a command name counts under.
fn family(comm: &str) -> &'static str {
    match comm {
        c if c.starts_with("chromedriver") => "chromedriver",
        c if c.starts_with("chrom") || c.starts_with("headless_shell") => "chromium",
        c if c.starts_with("tesseract") => "tesseract",
        c if c.starts_with("pdftoppm") || c.starts_with("pdfinfo") => "poppler",
        _ => "other",
    }
}

fn count_files(root: &Path) -> f64 {
    let mut n = 0.0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1.0,
                Err(_) => {}
            }
        }
    }
    n
}

/// The prefix a key counts under: up to its first ':' (a hash tag `{…}` stays with the prefix's
/// second part, e.g. `server:{soak-1}`).
pub fn key_prefix(key: &str) -> String {
    let mut parts = key.splitn(3, ':');
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        Some(second) if second.starts_with('{') => format!("{first}:{second}"),
        Some(_) => first.to_string(),
        None => "(no prefix)".to_string(),
    }
}

pub async fn take(target: &Target) -> Result<Sample, SampleError> {
    let mut sample = Sample::default();
    let v = &mut sample.values;

    let mut app_pids = Vec::new();
    for app in &target.apps {
        let Some(pid) = app_pid(&target.pm2_home, app) else { continue };
        app_pids.push(pid);
        if let Some((rss, fds, threads)) = process_figures(pid) {
            v.insert(format!("rss_kb:{app}"), rss);
            v.insert(format!("fds:{app}"), fds);
            v.insert(format!("threads:{app}"), threads);
            v.insert(format!("pid:{app}"), f64::from(pid));
        }
    }

    // Processes of the run by family, and browsers whose worker is gone: no app among their
    // ancestors, nor among those of any process of the same browser session (Chromium's crash
    // handler daemonizes itself, so its parent is init while its session's Chromium is alive).
    let marked = marked_processes(&target.marker);
    for f in ["chromium", "chromedriver", "tesseract", "poppler", "other"] {
        v.insert(format!("procs:{f}"), 0.0);
    }
    v.insert("orphans:browser".into(), 0.0);
    let under_app = |pid: u32| {
        let mut at = marked.get(&pid).map(|p| p.ppid).unwrap_or(0);
        let mut under = app_pids.contains(&pid);
        for _ in 0..64 {
            if at <= 1 || under {
                break;
            }
            under = app_pids.contains(&at);
            at = marked.get(&at).map(|p| p.ppid).or_else(|| parent_of(at)).unwrap_or(0);
        }
        under
    };
    let live_sessions: std::collections::HashSet<&[u8]> =
        marked.iter().filter(|(pid, _)| under_app(**pid)).filter_map(|(_, m)| m.session.as_deref()).collect();
    for (pid, m) in &marked {
        *v.entry(format!("procs:{}", family(&m.comm))).or_default() += 1.0;
        if matches!(family(&m.comm), "chromium" | "chromedriver") {
            let alive = under_app(*pid) || m.session.as_deref().is_some_and(|s| live_sessions.contains(s));
            if !alive {
                *v.entry("orphans:browser".into()).or_default() += 1.0;
            }
        }
    }

    for (name, path) in &target.folders {
        v.insert(format!("files:{name}"), count_files(path));
    }
    if let Some(path) = &target.stored {
        v.insert("stored:files".into(), count_files(path));
    }

    let client = redis::Client::open(target.redis_url.as_str())?;
    let mut conn = client.get_connection_with_timeout(std::time::Duration::from_secs(5))?;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn)?;
    v.insert("redis_keys:total".into(), keys.len() as f64);
    for key in keys {
        *v.entry(format!("redis_keys:{}", key_prefix(&key))).or_default() += 1.0;
    }

    let mut pg = PgConnection::connect(&target.database_url).await.map_err(|e| SampleError::Postgres("connect", e))?;
    let per_name: Vec<(String, i64)> = sqlx::query_as(
        "SELECT application_name, count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1",
    )
    .fetch_all(&mut pg)
    .await
    .map_err(|e| SampleError::Postgres("pg_stat_activity", e))?;
    for app in &target.apps {
        v.insert(format!("pg_conns:{app}"), 0.0);
    }
    for (name, n) in per_name {
        let name = if name.is_empty() { "(unnamed)".to_string() } else { name };
        v.insert(format!("pg_conns:{name}"), n as f64);
    }
    let per_status: Vec<(i32, i64)> = sqlx::query_as("SELECT status_id, count(*) FROM extraction_queue GROUP BY 1")
        .fetch_all(&mut pg)
        .await
        .map_err(|e| SampleError::Postgres("rows per status", e))?;
    for s in 1..=6 {
        v.insert(format!("rows:status_{s}"), 0.0);
    }
    for (status, n) in per_status {
        v.insert(format!("rows:status_{status}"), n as f64);
        if status == 4 || status == 5 {
            sample.docs += n;
        }
    }
    let _ = pg.close().await;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_keep_the_hash_tag() {
        assert_eq!(key_prefix("server:{soak-1}:cpu:allocated"), "server:{soak-1}");
        assert_eq!(key_prefix("ratelimit:gemini:calls"), "ratelimit");
        assert_eq!(key_prefix("lonely"), "(no prefix)");
    }

    #[test]
    fn families_of_the_browser_and_ocr_programs() {
        assert_eq!(family("chromedriver"), "chromedriver");
        assert_eq!(family("chromium"), "chromium");
        assert_eq!(family("chrome"), "chromium");
        assert_eq!(family("tesseract"), "tesseract");
        assert_eq!(family("registre-worker"), "other");
    }
}
