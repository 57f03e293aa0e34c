//! One headless Chromium driven through a chromedriver child process on a free local port, with a
//! fresh profile directory holding the session's download folder. Set up as production set it
//! (docs/design.md §9.1): locale fr-CA, window 1280×720, a user agent without "HeadlessChrome".
//! Closing (or dropping) it kills the whole process group, so no Chromium is left behind, and
//! removes the profile with its downloads.
//!
//! A worker killed with SIGKILL runs no Drop: for that, every session has a WATCHDOG, a small `sh`
//! child in its own process group that holds the read end of a pipe whose only write end is the
//! worker's. When the worker dies the pipe closes, and the watchdog kills chromedriver's process
//! group and every process carrying the session's marker variable (Chromium's helpers included),
//! then removes the profile. Chromium's own temporary files (`org.chromium.Chromium.*`) go to a
//! `t` folder inside the profile (its TMPDIR), so they go with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::error::{CmdError, ErrorStatus, NewSessionError};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::FetchError;

/// Chromium flags of every session (plus `--user-data-dir=<fresh dir>`, and [`NO_SANDBOX`] as root).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--lang=fr-CA",
    "--window-size=1280,720",
    // Chromium's HTTP cache keeps a few files for every page it loads, and every registry document
    // has its own pages, so a session that keeps fetching would grow its profile without end (the
    // soak saw 2,836 files after an hour). Nothing is fetched twice: the smallest cache Chromium
    // accepts stores nothing.
    "--disk-cache-size=1",
];

/// Chromium refuses to start its sandbox as root, so a root process (a container, CI) must turn it
/// off; any other user keeps the sandbox, which is what stands between a hostile page and the
/// worker's files and credentials.
pub const NO_SANDBOX: &str = "--no-sandbox";

/// The flags for a process whose effective user is `euid`.
pub fn chromium_flags(euid: u32) -> Vec<String> {
    let mut flags: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    if euid == 0 {
        flags.push(NO_SANDBOX.to_string());
    }
    flags
}

/// How long chromedriver may take to answer on its port.
const DRIVER_START: Duration = Duration::from_secs(15);
/// How long closing the WebDriver session may take before the processes are killed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub struct Browser {
    pub client: Client,
    /// Where Chromium saves this session's downloads (inside the profile: removed with it).
    pub downloads: PathBuf,
    driver: Driver,
}

/// The chromedriver child, its watchdog and the profile directory; dropping it kills the process
/// group.
struct Driver {
    child: Option<tokio::process::Child>,
    profile: PathBuf,
    /// The write end of the watchdog's pipe (None once told the session was closed).
    watchdog: Option<std::io::PipeWriter>,
    /// Whether the watchdog was given chromedriver's process group (its first line).
    group_sent: bool,
    /// The watchdog process, reaped by tokio once dropped.
    _watchdog_child: Option<tokio::process::Child>,
}

/// The environment variable every process of a session carries (chromedriver passes its
/// environment on to Chromium): its value is unique to the session, so the watchdog kills by it.
pub const SESSION_VAR: &str = "REGISTRE_BROWSER_SESSION";

/// The watchdog's script: `sh -c WATCHDOG watchdog <session marker> <profile dir>`. Its stdin is
/// the worker's pipe: a first line with chromedriver's process group, then either "done" (the
/// worker closed the session itself) or end of file (the worker died). Signals are ignored so
/// that a signal to the worker's tree does not take the watchdog before the worker's pipe closes.
/// The marker sweep runs until no process carries it (a few rounds: a dying Chromium may still
/// fork), then the profile is removed.
const WATCHDOG: &str = r#"trap '' HUP INT TERM PIPE
IFS= read -r group || group=
case $group in ''|*[!0-9]*) group= ;; esac
IFS= read -r word || word=
if [ "$word" != done ] && [ -n "$group" ]; then kill -KILL -- "-$group" 2>/dev/null; fi
round=0
while [ "$round" -lt 20 ]; do
  found=$(grep -lsxzF -- "$1" /proc/[0-9]*/environ 2>/dev/null)
  [ -z "$found" ] && break
  for f in $found; do p=${f#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null; done
  round=$((round + 1))
  sleep 0.1
done
rm -rf -- "$2"
"#;

impl Browser {
    /// Starts chromedriver and a Chromium session.
    pub async fn start(chromedriver: &Path, chromium: &Path) -> Result<Browser, FetchError> {
        let profile = fresh_profile_dir()?;
        let marker = format!("{SESSION_VAR}={}", profile.display());
        // The watchdog first: from its start on, the worker's death cleans up after the session.
        let (watchdog, watchdog_child) = match start_watchdog(&marker, &profile) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(FetchError::BrowserCrashed(format!("starting the browser watchdog (sh): {e}")));
            }
        };
        // From here on, dropping `driver` kills chromedriver and removes the profile.
        let mut driver = Driver { child: None, profile, watchdog: Some(watchdog), group_sent: false, _watchdog_child: Some(watchdog_child) };
        // Short: Chromium puts its singleton socket in a folder of TMPDIR, and a Unix socket's path
        // must stay under 108 bytes.
        let tmp = driver.profile.join("t");
        std::fs::create_dir_all(&tmp).map_err(|e| FetchError::Other(format!("creating Chromium's temporary folder {}: {e}", tmp.display())))?;
        let port = free_port().map_err(|e| FetchError::Other(format!("finding a free port for chromedriver: {e}")))?;
        let mut command = tokio::process::Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .env(SESSION_VAR, driver.profile.as_os_str())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        let child = command.spawn().map_err(|e| {
            FetchError::BrowserCrashed(format!(
                "starting chromedriver {} (CHROMEDRIVER_PATH): {e}",
                chromedriver.display()
            ))
        })?;
        let group = child.id();
        driver.child = Some(child);
        if let (Some(group), Some(pipe)) = (group, driver.watchdog.as_mut()) {
            match writeln!(pipe, "{group}") {
                Ok(()) => driver.group_sent = true,
                Err(e) => tracing::warn!("the browser watchdog did not take chromedriver's process group: {e}"),
            }
        }
        driver.wait_until_listening(port).await?;
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        // Commands wait for a new page's DOM only, not for all its frames: the registry's document
        // frameset can take minutes to fill its page frame, and the fetcher bounds that wait itself
        // (document_timeout_ms) by polling, instead of chromedriver blocking inside a click.
        caps.insert("pageLoadStrategy".into(), json!("eager"));
        // SAFETY: geteuid has no preconditions and cannot fail.
        let mut args = chromium_flags(unsafe { libc::geteuid() });
        args.push(format!("--user-data-dir={}", driver.profile.display()));
        args.push(format!("--user-agent={}", user_agent(chromium).await));
        let downloads = driver.profile.join("downloads");
        std::fs::create_dir_all(&downloads)
            .map_err(|e| FetchError::Other(format!("creating the download folder {}: {e}", downloads.display())))?;
        // The save control's download lands in the session's own folder, without a prompt; a PDF
        // opened in a frame is downloaded too rather than shown by the viewer.
        let prefs = json!({
            "download.default_directory": downloads,
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "plugins.always_open_pdf_externally": true,
            "intl.accept_languages": "fr-CA,fr",
        });
        caps.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args, "prefs": prefs }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| new_session_error(e, chromium))?;
        Ok(Browser { client, downloads, driver })
    }

    /// Ends the session politely, then makes sure every process of the group is gone.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, self.client.clone().close()).await;
        self.driver.kill();
        if let Some(mut child) = self.driver.child.take() {
            let _ = tokio::time::timeout(CLOSE_GRACE, child.wait()).await;
        }
    }

    /// Kills chromedriver and Chromium at once (after a crash or a timeout).
    pub fn kill(mut self) {
        self.driver.kill();
    }

    /// Process id of chromedriver (its process group holds Chromium too).
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.child.as_ref().and_then(|c| c.id())
    }

    /// The session's profile directory (removed when the session ends, or by the watchdog).
    pub fn profile_dir(&self) -> &Path {
        &self.driver.profile
    }
}

/// Starts the watchdog of a session: `sh` in its own process group, its stdin the read end of a
/// pipe whose write end (returned) only this process holds (std's pipes are close-on-exec).
fn start_watchdog(marker: &str, profile: &Path) -> std::io::Result<(std::io::PipeWriter, tokio::process::Child)> {
    let (reader, writer) = std::io::pipe()?;
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("registre-browser-watchdog")
        .arg(marker)
        .arg(profile)
        .env_remove(SESSION_VAR)
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false)
        .process_group(0);
    let child = command.spawn()?;
    Ok((writer, child))
}

impl Driver {
    async fn wait_until_listening(&mut self, port: u16) -> Result<(), FetchError> {
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(FetchError::BrowserCrashed(format!("chromedriver exited at start ({status})")));
                }
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(FetchError::BrowserCrashed(format!(
                    "chromedriver did not listen on port {port} within {}s",
                    DRIVER_START.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills chromedriver and the Chromium it started (same process group) and removes the profile.
    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the process group of our own child; no memory is involved.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                }
            }
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
        // The watchdog sweeps what escaped the group (by the session's marker) and exits.
        if let Some(mut pipe) = self.watchdog.take() {
            let _ = pipe.write_all(if self.group_sent { b"done\n" } else { b"none\ndone\n" });
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn new_session_error(e: NewSessionError, chromium: &Path) -> FetchError {
    FetchError::BrowserCrashed(format!("starting Chromium {} (CHROMIUM_PATH) through chromedriver: {e}", chromium.display()))
}

/// Maps a WebDriver error: a dead browser or driver becomes `BrowserCrashed`.
pub fn classify(e: CmdError, what: &str) -> FetchError {
    let crashed = match &e {
        CmdError::Failed(_) | CmdError::FailedC(_) | CmdError::Lost(_) => true,
        CmdError::Standard(w) => {
            let message = w.message.to_ascii_lowercase();
            matches!(w.error, ErrorStatus::InvalidSessionId | ErrorStatus::SessionNotCreated)
                || ["chrome not reachable", "crashed", "disconnected", "session deleted", "target window already closed"]
                    .iter()
                    .any(|m| message.contains(m))
        }
        _ => false,
    };
    if crashed {
        FetchError::BrowserCrashed(format!("{what}: {e}"))
    } else {
        FetchError::Other(format!("{what}: {e}"))
    }
}

/// The user agent of a non-headless Chromium of the installed version: headless Chromium says
/// "HeadlessChrome", which production avoided. The version comes from `chromium --version`.
async fn user_agent(chromium: &Path) -> String {
    static CACHED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(ua) = CACHED.get() {
        return ua.clone();
    }
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(chromium).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output(),
    )
    .await;
    let text = match output {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).to_string(),
        _ => String::new(),
    };
    let ua = user_agent_for(&text);
    let _ = CACHED.set(ua.clone());
    ua
}

/// "Chromium 156.0.8078.129 built on Debian" → a desktop Chrome user agent of that version.
fn user_agent_for(version_output: &str) -> String {
    let version = version_output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .unwrap_or("120.0.0.0");
    format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version} Safari/537.36")
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn fresh_profile_dir() -> Result<PathBuf, FetchError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // Short (see the session's TMPDIR in `start`): pid, counter, and the clock's last digits.
    let dir = std::env::temp_dir().join(format!(
        "rc-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| FetchError::Other(format!("creating the Chromium profile directory {}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_turns_the_sandbox_off() {
        assert!(chromium_flags(0).iter().any(|f| f == NO_SANDBOX));
        assert!(!chromium_flags(1000).iter().any(|f| f == NO_SANDBOX), "{:?}", chromium_flags(1000));
        assert!(chromium_flags(1000).iter().any(|f| f == "--headless"));
        assert!(chromium_flags(1000).iter().any(|f| f == "--window-size=1280,720"));
    }

    #[test]
    fn the_user_agent_names_the_installed_version_and_not_headless() {
        let ua = user_agent_for("Chromium 156.0.8078.129 built on Debian GNU/Linux 12 (bookworm)\n");
        assert!(ua.contains("Chrome/156.0.8078.129 ") && !ua.contains("Headless"), "{ua}");
        assert!(user_agent_for("").contains("Chrome/120.0.0.0"));
    }
}
