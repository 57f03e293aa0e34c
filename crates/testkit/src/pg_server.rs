//! A private PostgreSQL server for tests that stop or restart it (the shared one on 5432 serves
//! every other test and must never go down): `initdb` into a temporary directory, `pg_ctl start`
//! on a free port of 127.0.0.1 with trust authentication, fsync off (test data). Binaries come
//! from /usr/lib/postgresql/<newest>/bin (PG_BIN overrides). PostgreSQL refuses to run as root,
//! so as root the server runs as the `postgres` user (runuser). Stopped (immediate) on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
                .filter(|(_, p)| p.join("pg_ctl").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no /usr/lib/postgresql/*/bin/pg_ctl: install postgresql (bash .ci/run does) or set PG_BIN"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl PgServer {
    /// Creates the cluster and starts it; waits (60 s at most) until it accepts connections.
    pub fn start() -> PgServer {
        let dir = std::env::temp_dir().join(crate::unique("pg-private"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let server = PgServer { port: crate::free_port(), dir, bin: pg_bin(), running: false };
        if is_root() {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&server.dir).status();
            assert!(status.is_ok_and(|s| s.success()), "cannot chown {:?} to postgres", server.dir);
        }
        let out = server.run_as_owner(
            &server.bin.join("initdb"),
            &["-D", &server.data().display().to_string(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut server = server;
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run_as_owner(&self, program: &Path, args: &[&str]) -> Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    /// The maintenance database's URL.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (after [`PgServer::stop`]) on the same port and data, and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run_as_owner(&self.bin.join("pg_ctl"), &["-D", &self.data().display().to_string(), "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "private PostgreSQL on port {} does not accept connections", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server the hard way (`-m immediate`: no checkpoint, clients cut at once, crash
    /// recovery at the next start), as a crash or an OOM kill would.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self.run_as_owner(&self.bin.join("pg_ctl"), &["-D", &self.data().display().to_string(), "-m", "immediate", "-w", "stop"]);
        self.running = false;
    }

    /// Stop then start: the queue's clients see every connection fail, then the server back.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Creates a database on this server.
    pub fn create_database(&self, name: &str) -> String {
        let out = self.run_as_owner(
            &self.bin.join("createdb"),
            &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name],
        );
        assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.url(name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
