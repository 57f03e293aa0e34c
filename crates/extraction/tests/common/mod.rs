//! What the registre worker-loop tests share: a migrated database, a configuration with short
//! polls and backoffs, the workers' services around a given fetcher, and row helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::{Config, EnvName};
use registre_fetch::Fetcher;
use registre_queue::MultiQueue;
use registre_storage::Storage;
use registre_testkit::postgres::TestDatabase;
use registre_extraction::{start_workers, Board, RegistreWorkers, Services, WorkerSettings};
use registre_runtime::Shutdown;
use sqlx::{Connection, PgConnection};

pub struct Setup {
    pub db: TestDatabase,
    pub storage_dir: std::path::PathBuf,
    pub config: Config,
}

pub async fn setup(label: &str) -> Setup {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    let storage_dir = std::env::temp_dir().join(registre_testkit::unique("storage"));
    let config = Config::from_vars([
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique(label)),
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("STORAGE_URL", format!("file://{}", storage_dir.display())),
        ("QUEUE_POLL_INTERVAL_MS", "50".into()),
        ("QUEUE_BACKOFF_BASE_MS", "50".into()),
        ("QUEUE_BACKOFF_MAX_MS", "100".into()),
        ("EXTRACTION_TIMEOUT", "300".into()),
        ("WORKER_COUNT", "2".into()),
        ("WORKER_ID", registre_testkit::unique("w")),
    ])
    .expect("config");
    Setup { db, storage_dir, config }
}

pub async fn services(setup: &Setup, fetcher: Arc<dyn Fetcher>) -> Services {
    let client = redis::Client::open(registre_testkit::shared_redis_url()).expect("client");
    let conn = client.get_connection_manager().await.expect("redis");
    let capacity = CapacityManager::new(conn, CapacitySettings::from_config(&setup.config));
    let queue = MultiQueue::connect(&setup.config.environments, &setup.config.queue, 4).expect("queue");
    Services {
        capacity,
        queue: Arc::new(queue),
        storage: Storage::from_config(&setup.config.storage).expect("storage"),
        fetchers: Arc::new(move || Ok(fetcher.clone())),
        board: Arc::new(Board::new()),
    }
}

pub async fn insert(conn: &sqlx::PgPool, number: &str) -> uuid::Uuid {
    sqlx::query_scalar("INSERT INTO extraction_queue (document_source, document_number, created_at) VALUES ('index', $1, clock_timestamp()) RETURNING id")
        .bind(number)
        .fetch_one(conn)
        .await
        .expect("insert")
}

/// (status_id, attemtps, error_message, supabase_path)
pub async fn row(conn: &sqlx::PgPool, id: uuid::Uuid) -> (i32, i32, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status_id, coalesce(attemtps, 0), error_message, supabase_path FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .expect("row")
}

/// Polls the row until `done` holds for it (deadline `limit`, then a failure naming `what`).
pub async fn wait_for_row(conn: &sqlx::PgPool, id: uuid::Uuid, what: &str, limit: Duration, done: impl Fn(&(i32, i32, Option<String>, Option<String>)) -> bool) {
    wait_until(what, limit, || async { done(&row(conn, id).await) }).await;
}

pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the workers `setup` configures on `services` and lets them claim; returns the shutdown
/// signal that stops them and the workers.
pub async fn run_workers(setup: &Setup, services: &Services) -> (Shutdown, RegistreWorkers) {
    let shutdown = Shutdown::new();
    let workers = start_workers(services, &WorkerSettings::from_config(&setup.config.registre), &shutdown).await;
    workers.begin();
    (shutdown, workers)
}

/// Stops the workers (the process's shutdown signal) and waits until every task ended (deadline 60 s).
pub async fn stop(shutdown: &Shutdown) {
    shutdown.trigger();
    assert!(shutdown.wait(Duration::from_secs(60)).await, "workers stop");
}
