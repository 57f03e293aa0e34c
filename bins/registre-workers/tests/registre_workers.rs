//! The real `registre-workers` binary against the real Redis (a unique SERVER_ID per test) and
//! PostgreSQL (a fresh migrated database per test), with the directory fetcher reading small
//! generated PDFs from a temporary folder and STORAGE_URL=file://<temporary folder>.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Commands;
use registre_config::{Config, EnvName};
use registre_testkit::postgres::TestDatabase;
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_registre-workers");
use registre_runtime::RULE;

// ---------------------------------------------------------------- fixtures

/// A small but complete PDF (testkit's writer) whose text names `label`.
fn pdf(label: &str) -> Vec<u8> {
    registre_testkit::pdf::pdf(&[vec![label.to_string()]])
}

/// `{dir}/{source}/{number sanitized}.pdf`, as the directory fetcher reads it.
fn source_file(dir: &Path, source: &str, number: &str) -> PathBuf {
    dir.join(source).join(format!("{}.pdf", registre_domain::text::sanitize(number)))
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write source file");
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(registre_testkit::unique(label));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn migrated_db() -> TestDatabase {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    db
}

async fn insert(conn: &mut PgConnection, source: &str, number: &str) -> uuid::Uuid {
    sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, created_at)
         VALUES ($1, $2, 'Montréal', 'Cadastre du Québec', 1, clock_timestamp()) RETURNING id",
    )
    .bind(source)
    .bind(number)
    .fetch_one(conn)
    .await
    .expect("insert row")
}

// ---------------------------------------------------------------- the process

/// The binary running with `vars` only (no inherited environment, no .env), its output collected.
struct Workers {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The stdout / stderr readers: joined once the process exited, so no line is missed.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(vars: &[(&str, String)]) -> Workers {
        let cwd = TempDir::new("cwd"); // no .env there
        let mut cmd = Command::new(BIN);
        cmd.env_clear().current_dir(&cwd.0).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn registre-workers");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }));
        }
        Workers { child, lines, readers }
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn dump(&self) -> String {
        self.output().join("\n")
    }

    /// Waits until a line contains `needle`; panics with the output otherwise.
    fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.output().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("registre-workers exited ({status}) before logging {needle:?}:\n{}", self.dump());
            }
            assert!(start.elapsed() < limit, "no line with {needle:?} within {limit:?}:\n{}", self.dump());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -TERM failed");
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close with the process: the readers end once they read every line.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("registre-workers did not exit within {limit:?} after SIGTERM:\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The variables every test passes: fast polling and backoff, the test's own server id.
fn base_vars(server_id: &str, db: &TestDatabase, sources: &Path, storage: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", server_id.to_string()),
        ("SERVER_MAX_CPU", "8".into()),
        ("SERVER_MAX_RAM", "16".into()),
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REGISTRE_FETCHER", "directory".into()),
        ("REGISTRE_SOURCE_DIR", sources.display().to_string()),
        ("STORAGE_URL", format!("file://{}", storage.display())),
        ("QUEUE_POLL_INTERVAL_MS", "100".into()),
        ("QUEUE_BACKOFF_BASE_MS", "50".into()),
        ("QUEUE_BACKOFF_MAX_MS", "100".into()),
        ("CAPACITY_RETRY_MAX_MS", "500".into()),
        ("REGISTRE_STATUS_INTERVAL_MS", "1000".into()),
        ("REGISTRE_SHUTDOWN_GRACE_MS", "3000".into()),
        ("LOG_FORMAT", "text".into()),
        ("RUST_LOG", "info".into()),
    ]
}

fn redis_conn() -> redis::Connection {
    registre_testkit::redis_sync(&registre_testkit::shared_redis_url())
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    conn.get(key).expect("GET")
}

fn workers_hash(conn: &mut redis::Connection, server_id: &str) -> HashMap<String, String> {
    conn.hgetall(format!("server:{{{server_id}}}:workers")).expect("HGETALL")
}

/// The line `needle` appears as the message of a log line (after the level), exactly.
fn has_exact_line(output: &[String], message: &str) -> bool {
    output.iter().any(|l| l.trim_end() == message || l.trim_end().ends_with(&format!(" {message}")))
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rows_of_three_sources_drain_and_sigterm_releases_everything() {
    let db = migrated_db().await;
    let sources = TempDir::new("sources");
    let storage = TempDir::new("storage");
    let server_id = registre_testkit::unique("rw-drain");

    // 50 rows: 17 index, 17 acte, 16 plans; one index file is corrupt, one acte file is missing.
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let mut rows = Vec::new(); // (id, source, number)
    for i in 0..50 {
        let source = ["index", "acte", "plan_cadastraux"][i % 3];
        let number = match i {
            0 => "CORRUPT 1".to_string(),
            1 => "MISSING-1".to_string(),
            _ => format!("{} {:03} {:03}", 2 + i % 5, i, 100 + i),
        };
        let path = source_file(&sources.0, source, &number);
        match i {
            0 => write_file(&path, b"<html>this is an error page, not a PDF</html>"),
            1 => {}
            _ => write_file(&path, &pdf(&number)),
        }
        rows.push((insert(&mut conn, source, &number).await, source, number));
    }

    let mut vars = base_vars(&server_id, &db, &sources.0, &storage.0);
    vars.push(("WORKER_COUNT", "2".into()));
    vars.push(("QUEUE_MAX_ATTEMPTS", "2".into()));
    let mut workers = Workers::start(&vars);
    workers.wait_for_line("✅ REGISTRE WORKERS STARTED SUCCESSFULLY", Duration::from_secs(90));

    // While running: 3 vCPU / 1 GB per worker.
    let mut redis = redis_conn();
    let cpu_key = format!("server:{{{server_id}}}:cpu:allocated");
    let ram_key = format!("server:{{{server_id}}}:ram:allocated");
    let running = (get(&mut redis, &cpu_key), get(&mut redis, &ram_key));
    let records = workers_hash(&mut redis, &server_id);
    eprintln!("while running: {cpu_key}={:?} {ram_key}={:?} workers={}", running.0, running.1, records.len());
    assert_eq!(running, (Some("6".into()), Some("2".into())), "{}", workers.dump());
    assert_eq!(records.len(), 2);
    for json in records.values() {
        let v: serde_json::Value = serde_json::from_str(json).expect("worker record JSON");
        assert_eq!((v["type"].as_str(), v["cpu"].as_f64(), v["ram"].as_f64()), (Some("registre"), Some(3.0), Some(1.0)), "{json}");
    }

    // Drain: no row waiting or in progress (the two bad rows end in status 4 after 2 attempts).
    let start = Instant::now();
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id IN (1, 2)")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        if open == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{open} rows still open:\n{}", workers.dump());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = start.elapsed();

    // The status block shows up (REGISTRE_STATUS_INTERVAL_MS=1000).
    workers.wait_for_line("📊 REGISTRE WORKERS STATUS", Duration::from_secs(90));
    workers.wait_for_line("   Capacity: CPU 6/6.4 vCPU · RAM 2/12.8 GB · 2 worker(s)", Duration::from_secs(90));

    workers.sigterm();
    let status = workers.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{}", workers.dump());
    let after = (get(&mut redis, &cpu_key), get(&mut redis, &ram_key));
    let records_after = workers_hash(&mut redis, &server_id);
    eprintln!("after SIGTERM: {cpu_key}={:?} {ram_key}={:?} workers={}", after.0, after.1, records_after.len());
    assert_eq!(after, (Some("0".into()), Some("0".into())));
    assert!(records_after.is_empty());

    // Every row: the right status, path, bucket and bytes.
    let mut per_bucket: HashMap<&str, usize> = HashMap::new();
    for (id, source, number) in &rows {
        let (status, path, error): (i32, Option<String>, Option<String>) =
            sqlx::query_as("SELECT status_id, supabase_path, error_message FROM extraction_queue WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("row");
        if number == "CORRUPT 1" {
            assert_eq!(status, 4, "corrupt row");
            let error = error.expect("error_message");
            assert!(error.starts_with("not a PDF: ") && error.contains("CORRUPT_1.pdf") && error.contains("%PDF-"), "{error}");
            continue;
        }
        if number == "MISSING-1" {
            assert_eq!(status, 4, "missing row");
            let error = error.expect("error_message");
            assert!(error.starts_with("document MISSING-1 (acte) not found: ") && error.contains("MISSING-1.pdf"), "{error}");
            continue;
        }
        let (expected_status, bucket) = match *source {
            "index" => (3, "index"),
            "acte" => (3, "actes"),
            _ => (5, "plans-cadastraux"),
        };
        assert_eq!(status, expected_status, "{source} {number}: error {error:?}");
        let path = path.expect("supabase_path");
        let sanitized = registre_domain::text::sanitize(number);
        let prefix = format!("{bucket}/{sanitized}-Montr_al-Cadastre_du_Qu_bec-");
        assert!(path.starts_with(&prefix) && path.ends_with(".pdf"), "{path} (expected {prefix}<unix_ms>.pdf)");
        let ms = &path[prefix.len()..path.len() - 4];
        assert!(ms.len() >= 13 && ms.chars().all(|c| c.is_ascii_digit()), "{path}");
        let stored = std::fs::read(storage.0.join(&path)).expect("stored object");
        assert_eq!(stored, pdf(number), "{path}");
        *per_bucket.entry(bucket).or_default() += 1;
    }
    // 17 index (1 corrupt), 17 actes (1 missing), 16 plans.
    assert_eq!(per_bucket, HashMap::from([("index", 16), ("actes", 16), ("plans-cadastraux", 16)]));
    for (bucket, n) in &per_bucket {
        let files = std::fs::read_dir(storage.0.join(bucket)).expect("bucket dir").filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "pdf")).count();
        assert_eq!(files, *n, "objects in bucket {bucket}");
    }
    eprintln!("50 rows drained in {drained_in:?}");
    if std::env::var("SHOW_OUTPUT").is_ok() {
        eprintln!("{}", workers.dump());
    }
    let released = workers.output().iter().filter(|l| l.contains("released its capacity lease")).count();
    assert_eq!(released, 2, "{}", workers.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_banner_is_exactly_the_checklist_one() {
    let db = migrated_db().await;
    let sources = TempDir::new("sources");
    let storage = TempDir::new("storage");
    let server_id = registre_testkit::unique("rw-banner");
    let mut vars = base_vars(&server_id, &db, &sources.0, &storage.0);
    vars.push(("WORKER_COUNT", "1".into()));
    // More vCPUs than any test machine has: the start-up says so (and starts anyway).
    vars.push(("SERVER_MAX_CPU", "4096".into()));
    let mut workers = Workers::start(&vars);
    let warning = workers.wait_for_line("SERVER_MAX_CPU=4096 but this machine has ", Duration::from_secs(90));
    assert!(warning.contains(" WARN ") && warning.contains(" vCPUs"), "{warning}");
    workers.wait_for_line("✅ REGISTRE WORKERS STARTED SUCCESSFULLY", Duration::from_secs(90));
    // The status block (every second here) reports this process's RSS and CPU and the host's load.
    let process = workers.wait_for_line("   Process: RSS ", Duration::from_secs(90));
    assert!(process.contains(" MB · CPU ") && process.contains(" · host load "), "{process}");
    workers.sigterm();
    let status = workers.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", workers.dump());

    // The banner's messages, in order, each the whole message of its log line.
    let output = workers.output();
    let messages: Vec<String> = output
        .iter()
        .filter_map(|l| l.split_once(" INFO ").map(|(_, m)| m.trim().to_string()))
        .collect();
    let start = messages.iter().position(|m| m == "🚀 REGISTRE EXTRACTOR WORKERS STARTING").expect("STARTING line");
    assert!(start >= 1 && messages[start - 1] == RULE && messages[start + 1] == RULE, "{messages:#?}");
    let expected_after = [
        "💾 Initializing server capacity manager...",
        "✅ Capacity manager initialized",
        "✅ Sufficient capacity for 1 worker(s)",
    ];
    let mut at = start + 2;
    for line in expected_after {
        let found = messages[at..].iter().position(|m| m == line).unwrap_or_else(|| panic!("no {line:?} after the banner:\n{messages:#?}"));
        at += found + 1;
    }
    let started = &messages[at..].iter().find(|m| m.starts_with("✅ Started ")).expect("Started line");
    let id = started.trim_start_matches("✅ Started ");
    let hex = id.strip_prefix("registre-worker-1-").unwrap_or_else(|| panic!("worker id {id}"));
    assert!(hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()), "worker id {id}");
    let ok = messages.iter().position(|m| m == "✅ REGISTRE WORKERS STARTED SUCCESSFULLY").expect("SUCCESS line");
    assert!(ok > at && messages[ok - 1] == RULE && messages[ok + 1] == RULE, "{messages:#?}");
    // Exactly the checklist's lines (rule lines aside) between STARTING and SUCCESS.
    let between: Vec<&String> = messages[start + 2..ok - 1].iter().filter(|m| *m != RULE).collect();
    assert_eq!(between.len(), 4, "{between:#?}");

    let mut redis = redis_conn();
    assert_eq!(get(&mut redis, &format!("server:{{{server_id}}}:cpu:allocated")).as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_worker_waits_for_capacity_and_starts_when_it_frees() {
    let db = migrated_db().await;
    let sources = TempDir::new("sources");
    let storage = TempDir::new("storage");
    let server_id = registre_testkit::unique("rw-wait");
    let prefix = registre_testkit::unique("capw");
    let mut vars = base_vars(&server_id, &db, &sources.0, &storage.0);
    vars.push(("WORKER_COUNT", "3".into()));
    vars.push(("WORKER_ID", prefix.clone()));
    let mut workers = Workers::start(&vars);
    workers.wait_for_line("✅ REGISTRE WORKERS STARTED SUCCESSFULLY", Duration::from_secs(90));

    let mut redis = redis_conn();
    let cpu_key = format!("server:{{{server_id}}}:cpu:allocated");
    let records = workers_hash(&mut redis, &server_id);
    let mut ids: Vec<&String> = records.keys().collect();
    ids.sort();
    assert_eq!(ids, [&format!("{prefix}-1"), &format!("{prefix}-2")], "{}", workers.dump());
    assert_eq!(get(&mut redis, &cpu_key).as_deref(), Some("6"));
    let fit = workers.wait_for_line("⚠️ Capacity for 2 of 3 worker(s)", Duration::from_secs(90));
    assert!(fit.contains("0 of 6.4 vCPU") && fit.contains("each worker needs 3 vCPU / 1 GB") && fit.contains("the other 1 wait"), "{fit}");
    let why = workers.wait_for_line(&format!("{prefix}-3 waits for capacity"), Duration::from_secs(90));
    assert!(why.contains("Insufficient CPU (need 3 vCPUs, available 0.4 vCPUs)"), "{why}");
    assert!(!workers.output().iter().any(|l| l.contains(&format!("Started {prefix}-3"))));
    assert!(!has_exact_line(&workers.output(), "✅ Sufficient capacity for 3 worker(s)"));

    // Free one lease (as if worker 1's process had gone): the waiting worker takes it.
    let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))).expect("config");
    let client = redis::Client::open(registre_testkit::shared_redis_url()).expect("client");
    let manager = registre_capacity::CapacityManager::new(
        client.get_connection_manager().await.expect("connection manager"),
        registre_capacity::CapacitySettings::from_config(&config),
    );
    assert!(manager.release(&format!("{prefix}-1")).await.expect("release"));
    workers.wait_for_line(&format!("✅ Started {prefix}-3 (capacity freed)"), Duration::from_secs(90));
    let records = workers_hash(&mut redis, &server_id);
    assert!(records.contains_key(&format!("{prefix}-3")), "{records:?}");
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(get(&mut redis, &cpu_key).as_deref(), Some("6"));

    workers.sigterm();
    let status = workers.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", workers.dump());
    assert_eq!(get(&mut redis, &cpu_key).as_deref(), Some("0"));
    assert!(workers_hash(&mut redis, &server_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_costs_no_job_and_the_lease_comes_back() {
    let db = migrated_db().await;
    let sources = TempDir::new("sources");
    let storage = TempDir::new("storage");
    let server_id = registre_testkit::unique("rw-redis");
    let mut private = registre_testkit::RedisServer::start();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let mut number = 0;
    let mut add_rows = |n: usize| {
        let batch: Vec<String> = (0..n)
            .map(|_| {
                number += 1;
                format!("R{number}")
            })
            .collect();
        for b in &batch {
            write_file(&source_file(&sources.0, "index", b), &pdf(b));
        }
        batch
    };
    for b in add_rows(5) {
        insert(&mut conn, "index", &b).await;
    }
    let mut vars = base_vars(&server_id, &db, &sources.0, &storage.0);
    vars.retain(|(k, _)| *k != "REDIS_URL");
    vars.push(("REDIS_URL", private.url()));
    vars.push(("WORKER_COUNT", "1".into()));
    vars.push(("CAPACITY_LEASE_TTL_MS", "3000".into()));
    let mut workers = Workers::start(&vars);
    workers.wait_for_line("✅ REGISTRE WORKERS STARTED SUCCESSFULLY", Duration::from_secs(90));

    async fn wait_done(conn: &mut PgConnection, n: i64, workers: &Workers) {
        let start = Instant::now();
        loop {
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id = 3")
                .fetch_one(&mut *conn)
                .await
                .expect("count");
            if done == n {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "{done} of {n} done:\n{}", workers.dump());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_done(&mut conn, 5, &workers).await;

    // Redis dies (its data with it): the worker keeps working on what it holds.
    private.kill();
    for b in add_rows(5) {
        insert(&mut conn, "index", &b).await;
    }
    wait_done(&mut conn, 10, &workers).await;
    // Restart only once a heartbeat has failed (an event, not a guess at how long that takes).
    workers.wait_for_line("capacity heartbeat failed", Duration::from_secs(90));
    private.restart();

    // The heartbeat finds the lease gone and allocates it again.
    let cpu_key = format!("server:{{{server_id}}}:cpu:allocated");
    let mut redis = registre_testkit::redis_sync(&private.url());
    let start = Instant::now();
    while get(&mut redis, &cpu_key).as_deref() != Some("3") {
        assert!(start.elapsed() < Duration::from_secs(90), "lease not re-allocated:\n{}", workers.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    for b in add_rows(5) {
        insert(&mut conn, "index", &b).await;
    }
    wait_done(&mut conn, 15, &workers).await;

    workers.sigterm();
    let status = workers.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", workers.dump());
    assert_eq!(get(&mut redis, &cpu_key).as_deref(), Some("0"));
    let output = workers.dump();
    assert!(output.contains("capacity heartbeat failed") && output.contains("re-allocated"), "{output}");
}

/// End to end with the browser fetcher: `registre-workers` with REGISTRE_FETCHER=registry against
/// the registry site simulator in P's shape (testkit), an account of `worker_accounts`: the row is
/// claimed, the acte fetched through the site (Rechercher, the exact row, the save control's click),
/// stored, and the row moves on to OCR (status 3); an unknown lot ends in Erreur with the site's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_fetcher_claims_fetches_and_stores_through_the_site() {
    use registre_testkit::registry_site::{self, Shape, SiteOptions};
    let site = registry_site::start(SiteOptions::new(Shape::P)).await;
    let db = migrated_db().await;
    let sources = TempDir::new("sources-registry");
    let storage = TempDir::new("storage-registry");
    let server_id = registre_testkit::unique("rw-registry");
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registry_site::insert_account(&mut conn).await;
    let acte: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, acte_type, status_id, created_at)
         VALUES ('acte', '22 000 000', 'Montréal', 'Acte', 1, clock_timestamp()) RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .expect("insert acte");
    let unknown = insert(&mut conn, "index", "9 999 999").await;

    let mut vars = base_vars(&server_id, &db, &sources.0, &storage.0);
    for (k, v) in vars.iter_mut() {
        if *k == "REGISTRE_FETCHER" {
            *v = "registry".into();
        }
    }
    vars.push(("REGISTRE_BASE_URL", site.base.clone()));
    vars.push(("WORKER_COUNT", "1".into()));
    let mut workers = Workers::start(&vars);
    workers.wait_for_line("✅ REGISTRE WORKERS STARTED SUCCESSFULLY", Duration::from_secs(90));

    let deadline = Instant::now() + Duration::from_secs(240);
    let (status, path, error): (i32, Option<String>, Option<String>) = loop {
        let row: (i32, Option<String>, Option<String>) =
            sqlx::query_as("SELECT status_id, supabase_path, error_message FROM extraction_queue WHERE id = $1")
                .bind(acte)
                .fetch_one(&mut conn)
                .await
                .expect("read row");
        let other: i32 = sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(unknown).fetch_one(&mut conn).await.expect("read row");
        if row.0 != 1 && row.0 != 2 && other != 1 && other != 2 {
            break row;
        }
        assert!(Instant::now() < deadline, "rows still open: acte {row:?}, index {other}:\n{}", workers.dump());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 3, "acte: {path:?} {error:?}\n{}", workers.dump());
    let path = path.expect("supabase_path");
    assert!(path.starts_with("actes/22_000_000-Montr_al-"), "{path}");
    let stored = std::fs::read(storage.0.join(&path)).expect("stored object");
    assert_eq!(stored, registry_site::pdf_for("acte-22000000"), "{path}");
    // The row records what delivered the document: the options the worker chose on the site.
    let fetched_as: Option<String> =
        sqlx::query_scalar("SELECT fetched_as FROM extraction_queue WHERE id = $1").bind(acte).fetch_one(&mut conn).await.expect("read row");
    assert_eq!(fetched_as.as_deref(), Some("circonscription_fonciere=Montréal, acte_type=Acte"), "{}", workers.dump());
    let (status, message): (i32, Option<String>) = sqlx::query_as("SELECT status_id, error_message FROM extraction_queue WHERE id = $1")
        .bind(unknown)
        .fetch_one(&mut conn)
        .await
        .expect("read row");
    assert_eq!(status, 4, "{message:?}");
    assert!(message.unwrap_or_default().contains(registry_site::LOT_UNKNOWN));
    assert_eq!(site.state().downloads, ["acte-22000000"]);

    workers.sigterm();
    assert!(workers.wait_exit(Duration::from_secs(60)).success(), "{}", workers.dump());
}
