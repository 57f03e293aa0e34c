//! Each binary names itself to Postgres (`application_name`, seen in pg_stat_activity), so an
//! operator, `registrectl` and the soak (scripts/soak.sh) can count connections per binary: the
//! long-running ones are seen with their pools open; registrectl is caught while its query waits
//! on a table lock the test holds.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{free_port, shared_redis_url, unique};
use sqlx::{Connection, PgConnection};

async fn connections_named(conn: &mut PgConnection, database: &str, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2")
        .bind(database)
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn wait_for_name(conn: &mut PgConnection, database: &str, name: &str, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while connections_named(conn, database, name).await == 0 {
        let seen: Vec<String> = sqlx::query_scalar("SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = $1")
            .bind(database)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert!(Instant::now() < deadline, "no connection named {name:?} to {database}; names seen: {seen:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_names_its_postgres_connections() {
    let redis_url = shared_redis_url();
    let db = TestDatabase::create();
    let mut conn = migrate_with_audit(db.url()).await;
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut conn).await.unwrap();
    let work = scratch("appname");
    let (source_dir, storage, logs) = (work.join("documents"), work.join("storage"), work.join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    queue_rows(&mut conn, &source_dir, 3).await;
    let key = "appname-key-0123456789";
    let gemini = GeminiStandIn::start(&[key]).await;
    let rate = unique("appname-rate");
    let env = |server: &str| server_env(&unique(server), &redis_url, false, db.url(), &source_dir, &storage, &gemini, key, (&rate, 60, Duration::from_secs(4)));
    let mut api_env = env("appname-api");
    api_env.push(("API_PORT".into(), free_port().to_string()));
    // Every /api/* route needs the token (docs/operations.md): without it the API reads nothing.
    let api_token = "appname-api-token-0123456789";
    api_env.push(("API_TOKEN".into(), api_token.into()));
    let mut monitor_env = env("appname-monitor");
    monitor_env.push(("MONITOR_INTERVAL_MS".into(), "500".into()));
    let mut procs = vec![
        Proc::new("registre-workers", "registre-workers", env("appname-registre"), &logs),
        Proc::new("ocr-pool", "ocr-pool", env("appname-ocr"), &logs),
        Proc::new("registre-api", "registre-api", api_env.clone(), &logs),
        Proc::new("registre-monitor", "registre-monitor", monitor_env, &logs),
    ];
    for p in &mut procs {
        p.start();
    }
    let names: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
    let outputs = || procs.iter().map(|p| format!("--- {}\n{}", p.name, tail(&p.output(), 20))).collect::<Vec<_>>().join("\n");
    // The API connects on its first request that reads the queue.
    let api_port = api_env.iter().find(|(k, _)| k == "API_PORT").map(|(_, v)| v.clone()).unwrap();
    let poke = tokio::spawn(async move {
        for _ in 0..600 {
            let _ = tokio::task::spawn_blocking({
                let url = format!("http://127.0.0.1:{api_port}/api/overview");
                let bearer = format!("Authorization: Bearer {api_token}");
                move || Command::new("curl").args(["-s", "-o", "/dev/null", "-H", &bearer, &url]).status()
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for name in &names {
        wait_for_name(&mut conn, &database, name, &outputs).await;
    }
    poke.abort();

    // registrectl: its status query waits on a lock this test holds, with its connection open.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("LOCK TABLE extraction_queue IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
    let mut lock_watch = PgConnection::connect(db.url()).await.unwrap();
    let mut ctl = Command::new(bin_dir().join("registrectl"))
        .arg("status")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env("appname-ctl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_name(&mut lock_watch, &database, "registrectl", &|| String::from("(registrectl status is waiting on the lock)")).await;
    tx.rollback().await.unwrap();
    let _ = ctl.wait();
    for p in &mut procs {
        p.terminate();
    }
    let _ = std::fs::remove_dir_all(&work);
}
