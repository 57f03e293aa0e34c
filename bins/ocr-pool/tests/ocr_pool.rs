//! The `ocr-pool` binary end to end, against the real Redis, PostgreSQL, pdftoppm and tesseract:
//! the checklist's start-up (lines, capacity 2.5 / 1.25, allocation 1/1) and 40 rows read to
//! status 5; a rebalance that really moves workers; a SIGKILLed pool that leaves nothing stuck;
//! two pool processes on one SERVER_ID (distinct leases, summed allocation, each moving only its
//! own workers); configuration errors exit 2; no "All managers initialized" before Redis answers.


use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use registre_config::EnvName;
use registre_testkit::pdf;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{redis_sync, shared_redis_url, unique, RedisServer};
use sqlx::{Connection, PgConnection};

struct Pool {
    child: Child,
    log: PathBuf,
}

impl Pool {
    fn start(db: &TestDatabase, server_id: &str, storage: &Path, extra: &[(&str, &str)]) -> Pool {
        Pool::start_on(&shared_redis_url(), db.url(), server_id, storage, extra)
    }

    fn start_on(redis_url: &str, db_url: &str, server_id: &str, storage: &Path, extra: &[(&str, &str)]) -> Pool {
        let log = storage.join(format!("{}.log", unique("ocr-pool")));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocr-pool"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url)
            .env("SERVER_ID", server_id)
            .env("PROD_DATABASE_URL", db_url)
            .env("STORAGE_URL", format!("file://{}", storage.display()))
            .env("OCR_ENGINE", "tesseract")
            .env("OCR_TESSERACT_DPI", "150")
            .env("QUEUE_POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "info")
            .current_dir(storage)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Pool { child: cmd.spawn().expect("ocr-pool binary starts"), log }
    }

    fn output(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    fn wait_for_line(&self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(line) {
            assert!(Instant::now() < deadline, "ocr-pool never printed {line:?}; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as PM2 sends; returns whether the process exited 0 (within a generous 60 s).
    fn terminate(&mut self) -> bool {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn migrated(db: &TestDatabase) -> PgConnection {
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    registre_queue::migrate(&mut conn, EnvName::Prod).await.unwrap();
    conn
}

/// Writes a one-page registry-like PDF for `number` into storage and queues it at status 3.
async fn queue_document(conn: &mut PgConnection, storage: &Path, source: &str, number: &str, with_pdf: bool) {
    let bucket = if source == "index" { "index" } else { "actes" };
    let name = format!("{number}-Montreal-Quebec-1700000000000.pdf");
    if with_pdf {
        let lines = vec![format!("Lot {number}"), "Circonscription Montreal".to_string(), "Tremblay Jean 2021-03-15".to_string()];
        std::fs::create_dir_all(storage.join(bucket)).unwrap();
        std::fs::write(storage.join(bucket).join(&name), pdf::pdf(&[lines])).unwrap();
    }
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, supabase_path)
         VALUES ($1, $2, 'Montreal', 'Quebec', 3, $3)",
    )
    .bind(source)
    .bind(number)
    .bind(format!("{bucket}/{name}"))
    .execute(conn)
    .await
    .unwrap();
}

async fn count_by_status(conn: &mut PgConnection) -> HashMap<i32, i64> {
    sqlx::query_as::<_, (i32, i64)>("SELECT status_id, count(*) FROM extraction_queue GROUP BY status_id")
        .fetch_all(conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn allocation(c: &mut redis::Connection, id: &str) -> serde_json::Value {
    let json: Option<String> = c.get(format!("worker_pool:{{{id}}}:allocation")).unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap()).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checklist_settings_start_and_read_forty_documents() {
    let db = TestDatabase::create();
    let mut conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    let mut pool = Pool::start(&db, &id, &dir, &[("OCR_STATUS_INTERVAL_MS", "1000")]);
    pool.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    let out = pool.output();
    let expected = [
        "🚀 UNIFIED OCR WORKER POOL STARTING",
        "📊 Initializing shared rate limiter...",
        "💾 Initializing server capacity manager...",
        "🎯 Initializing worker pool manager...",
        "✅ All managers initialized",
        "✅ Started ocr-worker-1 (mode: index)",
        "✅ Started ocr-worker-2 (mode: acte)",
        "✅ WORKER POOL STARTED SUCCESSFULLY",
    ];
    let mut at = 0;
    for line in expected {
        let found = out[at..].find(line).unwrap_or_else(|| panic!("missing or out of order: {line:?}\n{out}"));
        at += found + line.len();
    }

    let mut c = redis_sync(&shared_redis_url());
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    let ram: String = c.get(format!("server:{{{id}}}:ram:allocated")).unwrap();
    assert_eq!((cpu.as_str(), ram.as_str()), ("2.5", "1.25"));
    let a = allocation(&mut c, &id);
    assert_eq!((a["indexWorkers"].as_u64(), a["acteWorkers"].as_u64(), a["totalWorkers"].as_u64()), (Some(1), Some(1), Some(2)), "{a}");
    assert!(a["queue"]["index"].is_u64() && a["updatedAt"].is_string(), "{a}");

    for n in 0..30 {
        queue_document(&mut conn, &dir, "index", &format!("1 234 {n:03}"), true).await;
    }
    for n in 0..10 {
        queue_document(&mut conn, &dir, "acte", &format!("25 000 {n:03}"), true).await;
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = count_by_status(&mut conn).await;
        if counts.get(&5) == Some(&40) {
            break;
        }
        assert!(Instant::now() < deadline, "not all rows reached status 5: {counts:?}\n{}", pool.output());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT document_number, file_content, boosted_file_content FROM extraction_queue").fetch_all(&mut conn).await.unwrap();
    let mut recognized = 0;
    for (number, raw, boosted) in &rows {
        let raw = raw.as_deref().unwrap_or("");
        assert!(!raw.trim().is_empty() && !boosted.as_deref().unwrap_or("").trim().is_empty(), "{number}: no text");
        if raw.contains(number.as_str()) {
            recognized += 1;
        }
    }
    // tesseract may misread a digit now and then; nearly every lot number must come through.
    assert!(recognized >= 36, "only {recognized} of 40 lot numbers recognized");

    // The status block: allocation, API usage, capacity by worker type.
    pool.wait_for_line("📊 OCR POOL STATUS", Duration::from_secs(60));
    pool.wait_for_line("💾 Capacity: 2.5 / 6.4 vCPU, 1.25 / 12.8 GB", Duration::from_secs(60));
    let out = pool.output();
    for line in ["🎯 Allocation: 1 index / 1 acte of 2", "📈 API usage (60s window): ", "   index-ocr: 1 worker(s), 1.5 vCPU, 0.75 GB", "   acte-ocr: 1 worker(s), 1 vCPU, 0.5 GB"] {
        assert!(out.contains(line), "status block lacks {line:?}:\n{out}");
    }

    assert!(pool.terminate(), "ocr-pool did not exit 0 after SIGTERM:\n{}", pool.output());
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    assert_eq!(cpu, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_moves_workers_toward_the_waiting_work() {
    let db = TestDatabase::create();
    let mut conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    // Rows without a PDF fail and wait out a long backoff at status 3: they stay waiting work.
    let mut pool = Pool::start(
        &db,
        &id,
        &dir,
        &[("OCR_WORKER_POOL_SIZE", "4"), ("OCR_REBALANCE_INTERVAL_MS", "1000"), ("QUEUE_BACKOFF_BASE_MS", "600000"), ("QUEUE_BACKOFF_MAX_MS", "600000")],
    );
    pool.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    let mut c = redis_sync(&shared_redis_url());
    let a = allocation(&mut c, &id);
    assert_eq!((a["indexWorkers"].as_u64(), a["acteWorkers"].as_u64()), (Some(2), Some(2)), "{a}");

    for n in 0..40 {
        queue_document(&mut conn, &dir, "index", &format!("9 000 {n:03}"), false).await;
    }
    let queued_at = Instant::now();
    let workers_key = format!("server:{{{id}}}:workers");
    let assignments_key = format!("worker_pool:{{{id}}}:assignments");
    loop {
        let a = allocation(&mut c, &id);
        let assignments: HashMap<String, String> = c.hgetall(&assignments_key).unwrap();
        let index_assigned = assignments.values().filter(|j| j.contains("\"assignedMode\":\"index\"")).count();
        let leases: HashMap<String, String> = c.hgetall(&workers_key).unwrap();
        let index_leases = leases.values().filter(|j| j.contains("\"type\":\"index-ocr\"")).count();
        let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
        if a["indexWorkers"].as_u64() == Some(3) && index_assigned == 3 && index_leases == 3 && cpu == "5.5" {
            assert_eq!(a["acteWorkers"].as_u64(), Some(1));
            assert_eq!(a["queue"]["index"].as_u64(), Some(40), "{a}");
            break;
        }
        // Generous: one interval to notice, plus the time a busy worker needs to finish its job.
        assert!(
            queued_at.elapsed() < Duration::from_secs(90),
            "no 3/1 split with leases following: allocation {a}, {index_assigned} index assignments, {index_leases} index leases, cpu {cpu}\n{}",
            pool.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pool.output().contains("switched to index mode"), "{}", pool.output());
    assert!(pool.terminate());
    let assignments: HashMap<String, String> = c.hgetall(&assignments_key).unwrap();
    assert!(assignments.is_empty(), "workers remove their assignment on shutdown: {assignments:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pool_leaves_no_row_in_ocr_and_no_capacity_after_the_leases() {
    let db = TestDatabase::create();
    let mut conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    let short = [("QUEUE_LEASE_TTL_MS", "2000"), ("CAPACITY_LEASE_TTL_MS", "2000"), ("CAPACITY_HEARTBEAT_MS", "500")];
    for n in 0..8 {
        queue_document(&mut conn, &dir, if n % 2 == 0 { "index" } else { "acte" }, &format!("7 700 {n:03}"), true).await;
    }
    let mut pool = Pool::start(&db, &id, &dir, &short);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_by_status(&mut conn).await.get(&6).copied().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no row ever reached status 6:\n{}", pool.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.child.kill().unwrap(); // SIGKILL: no release of rows or capacity
    pool.child.wait().unwrap();
    assert!(count_by_status(&mut conn).await.get(&6).copied().unwrap_or(0) > 0, "a row is held by the dead pool");

    // Capacity comes back after its lease TTL (what an operator's status check shows).
    let redis_url = shared_redis_url();
    let config = registre_config::Config::from_vars([
        ("REDIS_URL".to_string(), redis_url.clone()),
        ("SERVER_ID".to_string(), id.clone()),
        ("PROD_DATABASE_URL".to_string(), db.url().to_string()),
    ])
    .unwrap();
    let capacity = registre_capacity::CapacityManager::new(
        registre_runtime_connection(&config),
        registre_capacity::CapacitySettings::from_config(&config),
    );
    // Nothing released it: the leases expire by themselves (poll, generous deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = capacity.status().await.unwrap();
        if status.cpu_allocated == registre_config::Milli::ZERO {
            assert!(status.workers.is_empty(), "{:?}", status.workers);
            break;
        }
        assert!(Instant::now() < deadline, "capacity still held long after the lease TTL: {:?}", status.workers);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // PM2 restarts the pool: the expired row leases are reaped and every row is read.
    let mut pool = Pool::start(&db, &id, &dir, &short);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = count_by_status(&mut conn).await;
        if counts.get(&5) == Some(&8) {
            break;
        }
        assert!(Instant::now() < deadline, "rows not all read after the restart: {counts:?}\n{}", pool.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The rows the dead pool held were counted as one attempt each, not lost.
    let reaped: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE ocr_attempts > 0").fetch_one(&mut conn).await.unwrap();
    assert!(reaped >= 1, "the reaped rows carry an attempt");
    assert!(pool.terminate());
}

/// The capacity leases of a server: worker id → worker type.
fn leases(c: &mut redis::Connection, id: &str) -> HashMap<String, String> {
    let records: HashMap<String, String> = c.hgetall(format!("server:{{{id}}}:workers")).unwrap();
    records
        .into_iter()
        .map(|(worker, json)| {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            (worker, v["type"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// `ocr-worker-<n>-<8 hex>` → the process suffix.
fn process_suffix(worker_id: &str) -> &str {
    worker_id.rsplit('-').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_server_hold_four_distinct_leases_and_sum_the_allocation() {
    let db = TestDatabase::create();
    let _conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    let mut first = Pool::start(&db, &id, &dir, &[]);
    let mut second = Pool::start(&db, &id, &dir, &[]);
    first.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    second.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    // The checklist's banner is unchanged in each process.
    for pool in [&first, &second] {
        let out = pool.output();
        for line in ["✅ Started ocr-worker-1 (mode: index)", "✅ Started ocr-worker-2 (mode: acte)"] {
            assert!(out.contains(line), "missing {line:?}:\n{out}");
        }
    }

    let mut c = redis_sync(&shared_redis_url());
    let held = leases(&mut c, &id);
    assert_eq!(held.len(), 4, "two pools of 2 on one SERVER_ID hold 4 leases: {held:?}");
    for worker in held.keys() {
        assert!(worker.starts_with("ocr-worker-1-") || worker.starts_with("ocr-worker-2-"), "{worker}");
    }
    let suffixes: std::collections::HashSet<&str> = held.keys().map(|w| process_suffix(w)).collect();
    assert_eq!(suffixes.len(), 2, "one id suffix per process: {held:?}");
    assert_eq!(held.values().filter(|t| *t == "index-ocr").count(), 2, "{held:?}");
    assert_eq!(held.values().filter(|t| *t == "acte-ocr").count(), 2, "{held:?}");
    // 2 × 1.5 + 2 × 1 vCPU, 2 × 0.75 + 2 × 0.5 GB.
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    let ram: String = c.get(format!("server:{{{id}}}:ram:allocated")).unwrap();
    assert_eq!((cpu.as_str(), ram.as_str()), ("5", "2.5"));
    let assignments: HashMap<String, String> = c.hgetall(format!("worker_pool:{{{id}}}:assignments")).unwrap();
    let mut assigned: Vec<&String> = assignments.keys().collect();
    let mut leased: Vec<&String> = held.keys().collect();
    assigned.sort();
    leased.sort();
    assert_eq!(assigned, leased, "each worker's assignment is under its own id");
    let a = allocation(&mut c, &id);
    assert_eq!((a["indexWorkers"].as_u64(), a["acteWorkers"].as_u64(), a["totalWorkers"].as_u64()), (Some(2), Some(2), Some(4)), "{a}");

    // One process stops: its own leases and part of the allocation go, the other's stay.
    assert!(first.terminate(), "{}", first.output());
    let held_after = leases(&mut c, &id);
    assert_eq!(held_after.len(), 2, "{held_after:?}");
    assert_eq!(held_after.keys().map(|w| process_suffix(w)).collect::<std::collections::HashSet<_>>().len(), 1);
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    assert_eq!(cpu, "2.5");
    let a = allocation(&mut c, &id);
    assert_eq!((a["indexWorkers"].as_u64(), a["acteWorkers"].as_u64(), a["totalWorkers"].as_u64()), (Some(1), Some(1), Some(2)), "{a}");
    assert!(second.terminate(), "{}", second.output());
    assert!(leases(&mut c, &id).is_empty());
    assert_eq!(allocation(&mut c, &id), serde_json::Value::Null, "no pool process left: no allocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_server_each_move_only_their_own_workers() {
    let db = TestDatabase::create();
    let mut conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    // Rows without a PDF fail and wait out a long backoff at status 3: they stay waiting work.
    let settings = [
        ("OCR_WORKER_POOL_SIZE", "4"),
        ("OCR_REBALANCE_INTERVAL_MS", "1000"),
        ("QUEUE_BACKOFF_BASE_MS", "600000"),
        ("QUEUE_BACKOFF_MAX_MS", "600000"),
        ("SERVER_MAX_CPU", "32"),
        ("SERVER_MAX_RAM", "32"),
    ];
    let mut first = Pool::start(&db, &id, &dir, &settings);
    let mut second = Pool::start(&db, &id, &dir, &settings);
    first.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    second.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    let mut c = redis_sync(&shared_redis_url());
    let a = allocation(&mut c, &id);
    assert_eq!((a["indexWorkers"].as_u64(), a["acteWorkers"].as_u64(), a["totalWorkers"].as_u64()), (Some(4), Some(4), Some(8)), "{a}");

    for n in 0..40 {
        queue_document(&mut conn, &dir, "index", &format!("9 100 {n:03}"), false).await;
    }
    // Each process re-splits its own 4 workers to 3 index / 1 acte: 6 / 2 of 8 in all, and
    // per process (id suffix) 3 index leases and 1 acte lease.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = allocation(&mut c, &id);
        let held = leases(&mut c, &id);
        let mut per_process: HashMap<String, (usize, usize)> = HashMap::new();
        for (worker, kind) in &held {
            let e = per_process.entry(process_suffix(worker).to_string()).or_default();
            if kind == "index-ocr" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
        let settled = a["indexWorkers"].as_u64() == Some(6)
            && a["acteWorkers"].as_u64() == Some(2)
            && per_process.len() == 2
            && per_process.values().all(|&(index, acte)| (index, acte) == (3, 1));
        if settled {
            // 6 × 1.5 + 2 × 1 vCPU.
            assert_eq!(cpu, "11");
            assert_eq!(held.len(), 8);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 3/1 split in each process: allocation {a}, leases per process {per_process:?}, cpu {cpu}\n--- first\n{}\n--- second\n{}",
            first.output(),
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each process moved exactly one of its own workers (2/2 → 3/1), none of the other's.
    for pool in [&first, &second] {
        let out = pool.output();
        assert_eq!(out.matches("switched to index mode").count(), 1, "{out}");
        assert_eq!(out.matches("🔄 Rebalance: ").count(), 1, "{out}");
    }
    assert!(first.terminate());
    assert!(second.terminate());
    assert!(leases(&mut c, &id).is_empty());
}

#[test]
fn no_environment_left_for_the_pool_is_a_configuration_error_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ocr-pool"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("ocr"))
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("OCR_PROD", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "ocr-pool: OCR_PROD, OCR_STAGING and OCR_DEV leave no configured environment for the OCR pool (configured: prod): set OCR_PROD=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_managers_initialized_only_after_redis_answered() {
    let db = TestDatabase::create();
    let _conn = migrated(&db).await;
    let dir = tempdir();
    let id = unique("ocr");
    let mut redis = RedisServer::start();
    redis.kill();
    let mut pool = Pool::start_on(&redis.url(), db.url(), &id, &dir, &[]);
    // The pool says it waits for Redis, and has not claimed to be initialized.
    pool.wait_for_line("⏳ waiting for Redis before starting the OCR workers", Duration::from_secs(60));
    let out = pool.output();
    assert!(out.contains("🎯 Initializing worker pool manager..."), "{out}");
    assert!(!out.contains("✅ All managers initialized"), "initialized announced while Redis is down:\n{out}");
    assert!(!out.contains("✅ Started ocr-worker-"), "{out}");

    redis.restart();
    pool.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(60));
    let out = pool.output();
    let waited = out.find("⏳ waiting for Redis").unwrap();
    let initialized = out.find("✅ All managers initialized").expect("initialized once Redis answered");
    assert!(waited < initialized, "{out}");
    let mut c = redis_sync(&redis.url());
    assert_eq!(leases(&mut c, &id).len(), 2);
    assert!(pool.terminate(), "{}", pool.output());
}

fn registre_runtime_connection(config: &registre_config::Config) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(config.redis_url.first().expose()).unwrap();
    redis::aio::ConnectionManager::new_lazy_with_config(client, redis::aio::ConnectionManagerConfig::new()).unwrap()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("ocr-pool-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
