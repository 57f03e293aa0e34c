//! What the fleet tests share (cluster.rs, fleet.rs, faults.rs): the release worker binaries run
//! as real processes (restarted like PM2 when they die), a queue of rows for the directory
//! fetcher, the testkit's Gemini stand-in (re-exported: it counts every call it receives), and the
//! outside checks (capacity samples, busiest rolling window, final row states).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use registre_config::EnvName;
use registre_testkit::{pdf, unique};
use sqlx::{Connection, PgConnection};

/// target/<profile>, where cargo put the worker binaries of this build.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    for bin in ["registre-workers", "ocr-pool"] {
        assert!(dir.join(bin).exists(), "{} is missing: build the workspace first (cargo build --release --workspace)", dir.join(bin).display());
    }
    dir
}

pub fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(label));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- worker processes ----------------------------------------------------------------------

/// One worker binary with its environment, as PM2 runs it: started again after it dies.
pub struct Proc {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
    pub starts: u32,
}

impl Proc {
    pub fn new(name: &str, binary: &str, env: Vec<(String, String)>, logs: &Path) -> Proc {
        Proc { name: name.to_string(), binary: bin_dir().join(binary), env, child: None, log: logs.join(format!("{name}.log")), starts: 0 }
    }

    pub fn start(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display())));
        self.starts += 1;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as the OOM killer or a power loss would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it exited (the exit status, if it did).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status),
            _ => None,
        }
    }

    /// PM2's autorestart: a process that died is started again. Returns true if it was.
    pub fn restart_if_dead(&mut self) -> bool {
        if self.child.is_none() || self.exited().is_some() {
            self.child = None;
            self.start();
            return true;
        }
        false
    }

    /// SIGTERM, as `pm2 stop`; waits up to 60 s, then SIGKILL. Returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(pid) = self.pid() else { return true };
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status.success();
            }
            if Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    pub fn wait_for_line(&self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(line) {
            assert!(Instant::now() < deadline, "{} never printed {line:?}; output:\n{}", self.name, tail(&self.output(), 60));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- the queue -----------------------------------------------------------------------------

/// Applies the migrations, then adds the audit the fault suite reads: every applied completion
/// (a row entering status 5) is recorded, so a row completed twice shows as two records.
pub async fn migrate_with_audit(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    registre_queue::migrate(&mut conn, EnvName::Prod).await.unwrap();
    sqlx::raw_sql(include_str!("completion_audit.sql")).execute(&mut conn).await.unwrap();
    conn
}

/// Writes `rows` rows at status 1 (index, acte and plans in turn) and a PDF for each in the
/// directory fetcher's folder `{source_dir}/{document_source}/{document_number}.pdf`.
pub async fn queue_rows(conn: &mut PgConnection, source_dir: &Path, rows: usize) {
    let sources = ["index", "acte", "plan_cadastraux"];
    for s in sources {
        std::fs::create_dir_all(source_dir.join(s)).unwrap();
    }
    let page = pdf::pdf(&[vec!["REGISTRE FONCIER DU QUEBEC".to_string(), "Lot 1 234 567".to_string()]]);
    let mut values = Vec::new();
    for n in 0..rows {
        let source = sources[n % 3];
        let number = format!("{}{n:06}", &source[..1]);
        std::fs::write(source_dir.join(source).join(format!("{number}.pdf")), &page).unwrap();
        values.push((source, number));
    }
    for chunk in values.chunks(500) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id) ",
        );
        q.push_values(chunk, |mut b, (source, number)| {
            b.push_bind(*source).push_bind(number).push_bind("Montreal").push_bind("Cadastre du Quebec").push_bind(1);
        });
        q.build().execute(&mut *conn).await.unwrap();
    }
}

/// Writes `n` rows already fetched (status 3, waiting for OCR) of `source`, their PDF in storage.
pub async fn queue_ocr_rows(conn: &mut PgConnection, storage: &Path, source: &str, n: usize) {
    let bucket = if source == "index" { "index" } else { "actes" };
    std::fs::create_dir_all(storage.join(bucket)).unwrap();
    let page = pdf::pdf(&[vec!["REGISTRE FONCIER DU QUEBEC".to_string(), "Lot 7 654 321".to_string()]]);
    for i in 0..n {
        let name = format!("w{i:05}-Montreal-Quebec-1700000000000.pdf");
        std::fs::write(storage.join(bucket).join(&name), &page).unwrap();
        sqlx::query(
            "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, supabase_path)
             VALUES ($1, $2, 'Montreal', 'Quebec', 3, $3)",
        )
        .bind(source)
        .bind(format!("w{i:05}"))
        .bind(format!("{bucket}/{name}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

pub async fn count_by_status(conn: &mut PgConnection) -> HashMap<i32, i64> {
    sqlx::query_as::<_, (i32, i64)>("SELECT status_id, count(*) FROM extraction_queue GROUP BY status_id")
        .fetch_all(conn)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Rows in a final state (5, or 4 = attempts exhausted).
pub fn finished(counts: &HashMap<i32, i64>) -> i64 {
    counts.get(&5).copied().unwrap_or(0) + counts.get(&4).copied().unwrap_or(0)
}

/// The end-of-run checks on the queue: every row in 5 or in 4 with a reason, no lease left, no
/// completion applied twice. Returns (rows in 5, rows in 4, duplicate completions).
pub async fn final_queue_checks(conn: &mut PgConnection, rows: usize) -> (i64, i64, i64) {
    let counts = count_by_status(conn).await;
    assert_eq!(finished(&counts), rows as i64, "every row must end in 5 or 4: {counts:?}");
    let reasonless: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM extraction_queue WHERE status_id = 4
         AND coalesce(nullif(trim(error_message), ''), nullif(trim(ocr_error), '')) IS NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(reasonless, 0, "rows in status 4 without a reason");
    let text_missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM extraction_queue WHERE status_id = 5 AND document_source <> 'plan_cadastraux'
         AND coalesce(file_content, '') = ''",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(text_missing, 0, "rows in status 5 without their text");
    let duplicates: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT row_id FROM completion_audit GROUP BY row_id HAVING count(*) > 1) d")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let audited: i64 = sqlx::query_scalar("SELECT count(DISTINCT row_id) FROM completion_audit").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(audited, counts.get(&5).copied().unwrap_or(0), "the audit saw every completion");
    (counts.get(&5).copied().unwrap_or(0), counts.get(&4).copied().unwrap_or(0), duplicates)
}

// ---- the Gemini stand-in -------------------------------------------------------------------

/// The testkit's (it checks every request and records each call's arrival and key).
pub use registre_testkit::gemini::GeminiStandIn;

// ---- worker environments -------------------------------------------------------------------

/// The variables of one server's worker processes: a small budget so capacity binds, short
/// leases and intervals so faults heal within seconds, the directory fetcher, the stand-in.
#[allow(clippy::too_many_arguments)]
pub fn server_env(
    server_id: &str,
    redis_url: &str,
    cluster: bool,
    db_url: &str,
    source_dir: &Path,
    storage: &Path,
    gemini: &GeminiStandIn,
    gemini_key: &str,
    rate: (&str, u64, Duration),
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("SERVER_ID", server_id.to_string()),
        ("REDIS_URL", redis_url.to_string()),
        ("REDIS_CLUSTER", cluster.to_string()),
        ("PROD_DATABASE_URL", db_url.to_string()),
        ("REGISTRE_FETCHER", "directory".into()),
        ("REGISTRE_SOURCE_DIR", source_dir.display().to_string()),
        ("STORAGE_URL", format!("file://{}", storage.display())),
        ("OCR_ENGINE", "gemini".into()),
        ("GEMINI_API_KEY", gemini_key.to_string()),
        ("GEMINI_API_BASE_URL", gemini.base_url.clone()),
        ("OCR_RATE_LIMIT_NAME", rate.0.to_string()),
        ("OCR_RATE_LIMIT_RPM", rate.1.to_string()),
        ("OCR_RATE_LIMIT_WINDOW_MS", rate.2.as_millis().to_string()),
        // A budget that cannot hold every worker at once: 4.8 vCPU usable for 2 registre workers
        // (1 each) and up to 3 OCR workers (1.5 / 1 each).
        ("SERVER_MAX_CPU", "6".into()),
        ("SERVER_MAX_RAM", "8".into()),
        ("REGISTRE_WORKER_CPU", "1".into()),
        ("WORKER_COUNT", "2".into()),
        ("OCR_WORKER_POOL_SIZE", "3".into()),
        ("OCR_REBALANCE_INTERVAL_MS", "2000".into()),
        ("CAPACITY_LEASE_TTL_MS", "6000".into()),
        ("CAPACITY_HEARTBEAT_MS", "1500".into()),
        ("CAPACITY_RETRY_MAX_MS", "1000".into()),
        ("QUEUE_LEASE_TTL_MS", "10000".into()),
        ("QUEUE_POLL_INTERVAL_MS", "100".into()),
        ("QUEUE_BACKOFF_BASE_MS", "200".into()),
        ("QUEUE_BACKOFF_MAX_MS", "2000".into()),
        ("QUEUE_MAX_ATTEMPTS", "6".into()),
        ("QUEUE_ENV_RETRY_MAX_MS", "2000".into()),
        ("QUEUE_CALL_TIMEOUT_MS", "5000".into()),
        ("REGISTRE_STATUS_INTERVAL_MS", "2000".into()),
        ("OCR_STATUS_INTERVAL_MS", "2000".into()),
        ("REGISTRE_SHUTDOWN_GRACE_MS", "3000".into()),
        ("OCR_SHUTDOWN_GRACE_MS", "3000".into()),
        ("EXTRACTION_TIMEOUT", "20000".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.sort();
    env
}

/// Usable vCPU / GB of [`server_env`]'s budget, in milli-units: 6 × 0.8, 8 × 0.8.
pub const USABLE_CPU_MILLI: i64 = 4800;
pub const USABLE_RAM_MILLI: i64 = 6400;

/// `server:{id}:cpu:allocated` / `:ram:allocated` as milli-units (decimal strings in Redis).
pub fn milli(v: Option<String>) -> i64 {
    v.and_then(|s| s.parse::<f64>().ok()).map(|f| (f * 1000.0).round() as i64).unwrap_or(0)
}
