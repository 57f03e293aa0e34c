//! Multi-process tests re-run their own test binary as children: the child is an `#[ignore]`d
//! test (an entry point, never run on its own) selected with `--exact --ignored`, and receives its
//! parameters through environment variables.

use std::process::{Child, Command, Stdio};

/// Spawns the current test binary running only the ignored test `entry` (its full path, e.g.
/// `child_allocator`), with `env` set. Its stdout is piped so the parent can read what it prints.
pub fn spawn_test_entry(entry: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--ignored", "--nocapture", "--test-threads", "1", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn child test process: {e}"))
}

/// Lines the child printed that start with `prefix` (the rest of the line each).
pub fn lines_with_prefix(output: &str, prefix: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|s| s.trim().to_string())
        .collect()
}

/// Writes `script` as the executable `dir/name` and puts `dir` first on this process's PATH, so
/// the code under test runs this shim instead of the real program. PATH is process-wide: a test
/// binary that shims holds only tests that want the shim.
pub fn shim_program(dir: &std::path::Path, name: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
    let shim = dir.join(name);
    std::fs::write(&shim, script).unwrap_or_else(|e| panic!("cannot write {shim:?}: {e}"));
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("cannot chmod {shim:?}: {e}"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(dirs).unwrap_or_else(|e| panic!("PATH: {e}")));
    shim
}
