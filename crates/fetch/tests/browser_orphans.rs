//! A worker killed with SIGKILL runs no Drop: its browser session must still go. A child process
//! (this test binary, running the ignored helper test below) opens a real browser session
//! (chromedriver + headless Chromium) with TMPDIR pointed at a private folder, and is killed with
//! `kill -9`. Until a deadline, the test polls that no process carrying the child's run marker
//! (inherited by chromedriver, Chromium and its helpers, and the session's watchdog) survives, and
//! that the private folder is empty: no profile directory, no `org.chromium.Chromium.*` file.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver, or CHROMIUM_PATH / CHROMEDRIVER_PATH.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_fetch::registry::Browser;

/// Set in the child's environment: the run marker its processes inherit.
const RUN_VAR: &str = "BROWSER_ORPHANS_RUN";

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into())
}

fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER_PATH").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

/// (pid, command name) of every process whose environment holds `RUN_VAR=<run>`.
fn processes_of(run: &str) -> Vec<(u32, String)> {
    let wanted = format!("{RUN_VAR}={run}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
            found.push((pid, comm));
        }
    }
    found
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default()
}

#[test]
fn a_worker_killed_with_sigkill_leaves_no_browser_process_nor_profile() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let run = format!("orphans-{}-{nanos}", std::process::id());
    // Short: Chromium's singleton socket lives under TMPDIR (a Unix socket path has 108 bytes).
    let tmp = std::env::temp_dir().join(format!("rbo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_holds_a_browser_session_until_killed", "--nocapture", "--test-threads=1"])
        .env(RUN_VAR, &run)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The child prints SESSION <profile dir> once its browser session is up.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let profile = loop {
        match lines.next() {
            Some(Ok(line)) => {
                // libtest prints "test <name> ... " before the test's own output, on the same line.
                if let Some((_, dir)) = line.split_once("SESSION ") {
                    break PathBuf::from(dir.trim());
                }
            }
            other => {
                let _ = child.kill();
                panic!("the child ended before opening its browser session ({other:?}): {:?}", child.wait());
            }
        }
    };
    assert!(profile.starts_with(&tmp), "{} is not under the child's TMPDIR {}", profile.display(), tmp.display());
    let before = processes_of(&run);
    assert!(before.iter().any(|(_, c)| c.contains("chromedriver")), "no chromedriver of the run: {before:?}");
    assert!(before.iter().any(|(_, c)| c.starts_with("chrom") && !c.contains("driver")), "no Chromium of the run: {before:?}");
    assert!(profile.is_dir(), "{} missing while the session is open", profile.display());

    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = processes_of(&run);
        let files = entries(&tmp);
        if left.is_empty() && files.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "60 s after the kill -9, still there: processes {left:?}, files under the child's TMPDIR {files:?} ({})",
                tmp.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The child of the test above (run by it, with RUN_VAR set): opens a browser session, loads a
/// page, says where its profile is, and waits to be killed.
#[test]
#[ignore = "run by a_worker_killed_with_sigkill_leaves_no_browser_process_nor_profile"]
fn child_holds_a_browser_session_until_killed() {
    assert!(std::env::var_os(RUN_VAR).is_some(), "run by the test above only");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let browser = Browser::start(&chromedriver(), &chromium()).await.expect("a browser session");
        browser.client.goto("data:text/html,<p>orphans</p>").await.expect("a page");
        println!("SESSION {}", browser.profile_dir().display());
        tokio::time::sleep(Duration::from_secs(600)).await;
        browser.close().await;
    });
}
