//! The deployment as an operator runs it: the real PM2 starting ecosystem/ecosystem.config.js
//! with the checklist's settings (Option 2, then Option 1 after the Step 6 edit), the Redis keys
//! of Step 12, verify-deployment.sh, deploy.sh and rollback.sh, and the demo script.
//! Each test has its own PM2_HOME, its own private redis-server (the checklist's keys carry no
//! SERVER_ID) and its own database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use redis::Commands;
use registre_config::EnvName;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::previous_release;
use registre_testkit::{redis_sync, unique, RedisServer};
use sqlx::{Connection, PgConnection};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// target/<profile>, where cargo put the worker binaries of this build.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    for bin in ["registre-workers", "ocr-pool", "start-all-workers", "registrectl"] {
        assert!(dir.join(bin).exists(), "{} is missing: build the workspace first (cargo build --workspace, or --release)", dir.join(bin).display());
    }
    dir
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(label));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One operator's machine: a PM2 daemon of its own, a Redis of its own, a migrated database,
/// and the checklist's .env.
struct Site {
    pm2_home: PathBuf,
    work: PathBuf,
    redis: RedisServer,
    // The database lives as long as the site.
    db: TestDatabase,
    vars: Vec<(String, String)>,
}

impl Site {
    async fn new() -> Site {
        let db = TestDatabase::create();
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        registre_queue::migrate(&mut conn, EnvName::Prod).await.unwrap();
        Site::with_database(db)
    }

    /// A site whose database the previous release created and migrated (its migrations read from
    /// git): deploy.sh's `registrectl migrate` takes it forward.
    async fn at_previous_release() -> Site {
        let db = TestDatabase::create();
        let (checksum, statements) = (registre_queue::migrate::checksum, registre_queue::migrate::statements);
        previous_release::migrate(db.url(), checksum, statements).await;
        Site::with_database(db)
    }

    fn with_database(db: TestDatabase) -> Site {
        let redis = RedisServer::start();
        let work = scratch("site");
        std::fs::create_dir_all(work.join("documents")).unwrap();
        let vars: Vec<(String, String)> = [
            // docs/deployment-checklist.md Step 3.
            ("REDIS_URL", redis.url()),
            ("SERVER_MAX_CPU", "8".into()),
            ("SERVER_MAX_RAM", "16".into()),
            ("SERVER_RESERVE_CPU_PERCENT", "20".into()),
            ("SERVER_RESERVE_RAM_PERCENT", "20".into()),
            ("WORKER_COUNT", "1".into()),
            ("OCR_WORKER_POOL_SIZE", "2".into()),
            ("OCR_MIN_INDEX_WORKERS", "1".into()),
            ("OCR_MIN_ACTE_WORKERS", "1".into()),
            ("OCR_REBALANCE_INTERVAL_MS", "30000".into()),
            // This machine's queue, documents and storage.
            ("PROD_DATABASE_URL", db.url().to_string()),
            ("REGISTRE_FETCHER", "directory".into()),
            ("REGISTRE_SOURCE_DIR", work.join("documents").display().to_string()),
            ("STORAGE_URL", format!("file://{}", work.join("storage").display())),
            ("OCR_ENGINE", "tesseract".into()),
            // registre-api of this site, on its own port (tests run in parallel).
            ("API_PORT", registre_testkit::free_port().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Site { pm2_home: work.join("pm2"), work, redis, db, vars }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(repo_root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .env("PM2_HOME", &self.pm2_home)
            .env("REGISTRE_BIN_DIR", bin_dir())
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn pm2(&self, args: &[&str]) -> Output {
        self.command("pm2").args(args).output().expect("pm2 runs (bash .ci/run installs it)")
    }

    fn status(&self, app: &str) -> String {
        let out = self.pm2(&["jlist"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let list: serde_json::Value = text.find('[').and_then(|i| serde_json::from_str(&text[i..]).ok()).unwrap_or(serde_json::Value::Null);
        list.as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == app))
            .and_then(|a| a["pm2_env"]["status"].as_str().map(String::from))
            .unwrap_or_else(|| "missing".into())
    }

    fn wait_online(&self, apps: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let statuses: Vec<String> = apps.iter().map(|a| self.status(a)).collect();
            if statuses.iter().all(|s| s == "online") {
                return;
            }
            assert!(Instant::now() < deadline, "apps {apps:?} not online: {statuses:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.pm2_home.join("logs")) {
            for e in entries.flatten() {
                all.push_str(&format!("--- {}\n{}\n", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()));
            }
        }
        all
    }

    fn redis(&self) -> redis::Connection {
        redis_sync(&self.redis.url())
    }

    /// Waits until Redis shows what docs/deployment-checklist.md Step 12 expects, returning the values seen.
    fn wait_for_step_12(&self, workers: usize) -> (String, String, HashMap<String, String>, serde_json::Value) {
        let mut c = self.redis();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let cpu: Option<String> = c.get("server:cpu:allocated").unwrap();
            let ram: Option<String> = c.get("server:ram:allocated").unwrap();
            let all: HashMap<String, String> = c.hgetall("server:workers").unwrap();
            let allocation: Option<String> = c.get("worker_pool:allocation").unwrap();
            if let (Some("5.5"), Some("2.25"), true, Some(allocation)) = (cpu.as_deref(), ram.as_deref(), all.len() == workers, &allocation) {
                let allocation: serde_json::Value = serde_json::from_str(allocation).unwrap();
                return ("5.5".to_string(), "2.25".to_string(), all, allocation);
            }
            assert!(Instant::now() < deadline, "Redis never showed 5.5 / 2.25 with {workers} workers: cpu={cpu:?} ram={ram:?} workers={all:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_released(&self) {
        let mut c = self.redis();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let cpu: Option<String> = c.get("server:cpu:allocated").unwrap();
            let n: usize = c.hlen("server:workers").unwrap();
            if cpu.as_deref() == Some("0") && n == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "capacity not released after pm2 delete: cpu={cpu:?}, {n} workers\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn script(&self, name: &str, args: &[&str]) -> Output {
        self.command("bash").arg(repo_root().join("scripts").join(name)).args(args).output().unwrap()
    }

    fn write_env_file(&self, skip: &str) -> PathBuf {
        let path = self.work.join(".env");
        let text: String = self.vars.iter().filter(|(k, _)| k != skip).map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.pm2(&["kill"]);
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_split(allocation: &serde_json::Value) {
    assert_eq!(allocation["indexWorkers"], 1, "{allocation}");
    assert_eq!(allocation["acteWorkers"], 1, "{allocation}");
    assert_eq!(allocation["totalWorkers"], 2, "{allocation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_2_under_pm2_shows_the_checklist_values_and_releases_on_delete() {
    let site = Site::new().await;
    let ecosystem = repo_root().join("ecosystem/ecosystem.config.js");

    // Only one of the two apps: verify-deployment.sh must say the other is missing.
    let out = site.pm2(&["start", ecosystem.to_str().unwrap(), "--only", "registre-workers"]);
    assert!(out.status.success(), "{}", text(&out));
    site.wait_online(&["registre-workers"]);
    let verify = site.script("verify-deployment.sh", &[]);
    assert!(!verify.status.success(), "verify must fail with ocr-pool missing:\n{}", text(&verify));
    assert!(text(&verify).contains("ocr-pool is missing"), "{}", text(&verify));

    let out = site.pm2(&["start", ecosystem.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    site.wait_online(&["registre-workers", "ocr-pool"]);
    let (cpu, ram, workers, allocation) = site.wait_for_step_12(3);
    println!("Option 2 under PM2: server:cpu:allocated={cpu} server:ram:allocated={ram} workers={:?} allocation={allocation}", workers.keys().collect::<Vec<_>>());
    assert_split(&allocation);
    let types: Vec<String> = workers.values().map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap()["type"].as_str().unwrap().to_string()).collect();
    for t in ["registre", "index-ocr", "acte-ocr"] {
        assert!(types.iter().any(|x| x == t), "no {t} worker in {types:?}");
    }
    let verify = site.script("verify-deployment.sh", &[]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("✅ deployment check passed"));

    let logs = site.logs();
    for line in ["🚀 REGISTRE EXTRACTOR WORKERS STARTING", "✅ Sufficient capacity for 1 worker(s)", "✅ REGISTRE WORKERS STARTED SUCCESSFULLY", "🚀 UNIFIED OCR WORKER POOL STARTING", "✅ Started ocr-worker-1 (mode: index)", "✅ Started ocr-worker-2 (mode: acte)", "✅ WORKER POOL STARTED SUCCESSFULLY"] {
        assert!(logs.contains(line), "PM2 logs lack {line:?}");
    }

    let out = site.pm2(&["delete", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    site.wait_released();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_1_after_the_step_6_edit_runs_start_all_workers() {
    let site = Site::new().await;
    // Step 6, Option 1: uncomment registre-all-workers, comment out the two apps of Option 2.
    let original = std::fs::read_to_string(repo_root().join("ecosystem/ecosystem.config.js")).unwrap();
    let edited = original
        .replacen("    registreWorkers,\n    ocrPool,\n", "    // registreWorkers,\n    // ocrPool,\n", 1)
        .replacen("    // registreAllWorkers,\n", "    registreAllWorkers,\n", 1);
    assert_ne!(edited, original);
    assert!(edited.contains("\n    registreAllWorkers,\n") && edited.contains("// ocrPool,"), "the ecosystem file no longer has the documented Option lines");
    // PM2 recognises an ecosystem file by its `.config.js` name; beside the original so it finds the binaries the same way.
    let copy = repo_root().join("ecosystem").join(format!("{}.config.js", unique("option1")));
    std::fs::write(&copy, edited).unwrap();
    let out = site.pm2(&["start", copy.to_str().unwrap()]);
    let _ = std::fs::remove_file(&copy);
    assert!(out.status.success(), "{}", text(&out));
    site.wait_online(&["registre-all-workers"]);
    assert_eq!(site.status("registre-workers"), "missing");
    let (cpu, ram, workers, allocation) = site.wait_for_step_12(3);
    println!("Option 1 under PM2: server:cpu:allocated={cpu} server:ram:allocated={ram} workers={:?} allocation={allocation}", workers.keys().collect::<Vec<_>>());
    assert_split(&allocation);
    assert!(site.logs().contains("📐 Capacity plan: 1 registre + 2 OCR worker(s) (1 index, 1 acte)"));
    let verify = site.script("verify-deployment.sh", &[]);
    assert!(verify.status.success(), "{}", text(&verify));

    let out = site.pm2(&["delete", "registre-all-workers"]);
    assert!(out.status.success(), "{}", text(&out));
    site.wait_released();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_refuses_an_env_without_redis_url_then_deploys_and_rolls_back() {
    let site = Site::at_previous_release().await;
    let previous = previous_release::function_contracts(site.db.url()).await;
    let env_without = site.write_env_file("REDIS_URL");
    let out = site.command("bash").arg(repo_root().join("scripts/deploy.sh")).arg("--skip-build").env("REGISTRE_ENV_FILE", &env_without).env_remove("REDIS_URL").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(".env is missing: REDIS_URL"), "{}", text(&out));
    assert_eq!(site.status("registre-workers"), "missing", "nothing may start after a failed step");

    // The complete .env: every step passes, the apps are online and saved.
    let env_file = site.write_env_file("");
    let out = site.command("bash").arg(repo_root().join("scripts/deploy.sh")).arg("--skip-build").env("REGISTRE_ENV_FILE", &env_file).output().unwrap();
    assert!(out.status.success(), "deploy.sh failed:\n{}\n{}", text(&out), site.logs());
    let said = text(&out);
    for line in ["✅ redis-cli ping: PONG", "✅ .env saved as .env.backup", "✅ online: registre-workers ocr-pool", "✅ deployment check passed", "✅ deployment complete"] {
        assert!(said.contains(line), "deploy.sh did not say {line:?}:\n{said}");
    }
    assert!(site.work.join(".env.backup").exists() && site.work.join("pm2-processes-before.txt").exists());
    assert!(site.pm2_home.join("dump.pm2").exists(), "pm2 save wrote no dump");
    site.wait_for_step_12(3);

    let out = site.command("bash").arg(repo_root().join("scripts/rollback.sh")).env("REGISTRE_ENV_FILE", &env_file).output().unwrap();
    assert!(out.status.success(), "rollback.sh failed:\n{}", text(&out));
    assert_eq!(site.status("registre-workers"), "missing");
    assert_eq!(site.status("ocr-pool"), "missing");
    site.wait_released();

    // deploy.sh migrated the previous release's database forward, and rollback.sh leaves it so:
    // every function the previous release's workers call is still there with its contract (only
    // the two-argument claims, which it never called, are gone), and its claim path works.
    let mut conn = PgConnection::connect(site.db.url()).await.unwrap();
    let functions: i64 = sqlx::query_scalar("SELECT count(*) FROM registre_schema_migrations WHERE name LIKE 'functions/%'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(functions > 0, "deploy.sh did not migrate the database forward");
    previous_release::assert_contracts_kept(site.db.url(), &previous).await;
    sqlx::query("INSERT INTO extraction_queue (document_source, document_number, status_id) VALUES ('acte', 'ROLLBACK-1', 1)")
        .execute(&mut conn)
        .await
        .unwrap();
    let (id, token): (sqlx::types::Uuid, sqlx::types::Uuid) =
        sqlx::query_as("SELECT id, claim_token FROM queue_claim_extraction('previous-release', 60000, gen_random_uuid())")
            .fetch_one(&mut conn)
            .await
            .expect("the previous release's claim");
    let done: bool = sqlx::query_scalar("SELECT queue_complete_extraction($1, $2, 'acte/ROLLBACK-1.pdf')")
        .bind(id)
        .bind(token)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(done, "the previous release's completion");
}

#[test]
fn demo_runs_to_completion() {
    let dir = scratch("demo");
    let database = unique("demo").replace('-', "_");
    let redis_url = registre_testkit::shared_redis_url();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/demo.sh"))
        .arg("8")
        .current_dir(repo_root())
        .env("REGISTRE_BIN_DIR", bin_dir())
        .env("DEMO_SKIP_SERVICES", "1")
        .env("DEMO_DATABASE", &database)
        .env("DEMO_DIR", &dir)
        .env("REDIS_URL", &redis_url)
        .output()
        .unwrap();
    let said = text(&out);
    let _ = Command::new("psql")
        .args([&registre_testkit::postgres::admin_url(), "-X", "-q", "-c", &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "demo failed:\n{said}");
    assert!(said.contains("✅ demo complete"), "{said}");
    assert!(said.contains("pages read by OCR: "), "{said}");
    assert!(said.contains("start-all-workers exited with 0 after SIGTERM"), "{said}");
}
