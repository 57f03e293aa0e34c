//! A row the registry rejects (its error cell: a lot that does not exist) goes to Erreur (4) at
//! once with the site's text and one attempt, while a site failure on another row is retried with
//! backoff: the worker loop of start-all-workers with a stand-in fetcher answering as the registry
//! fetcher does. Real Redis (unique SERVER_ID) and PostgreSQL (fresh database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::{Config, EnvName};
use registre_fetch::{BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};
use registre_queue::MultiQueue;
use registre_runtime::Shutdown;
use registre_storage::Storage;
use registre_testkit::postgres::TestDatabase;
use registre_workers::{start_workers, Board, Services, WorkerSettings};
use sqlx::{Connection, PgConnection};

/// `rejected-*`: the site's error cell (final); `down-*`: the site does not answer (retried).
struct Registry;

impl Fetcher for Registry {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let n = request.document_number.as_str();
            if n.starts_with("rejected") {
                return Err(FetchError::Rejected {
                    step: "index search".into(),
                    message: format!("Le lot {n} n'existe pas dans le cadastre sélectionné."),
                });
            }
            Err(FetchError::Other(format!("GET https://registre.example/Sirf/: connection refused ({n})")))
        })
    }
    fn kind(&self) -> &'static str {
        "registry-stand-in"
    }
}

struct Setup {
    db: TestDatabase,
    storage_dir: std::path::PathBuf,
    config: Config,
}

async fn setup(label: &str) -> Setup {
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

async fn services(setup: &Setup, fetcher: Arc<Registry>) -> Services {
    let client = redis::Client::open(registre_testkit::shared_redis_url()).expect("client");
    let conn = client.get_connection_manager().await.expect("redis");
    let capacity = CapacityManager::new(conn, CapacitySettings::from_config(&setup.config));
    let queue = MultiQueue::connect(&setup.config.environments, &setup.config.queue, 4).expect("queue");
    Services {
        capacity,
        queue: Arc::new(queue),
        storage: Storage::from_config(&setup.config.storage).expect("storage"),
        fetchers: Arc::new(move || Ok(fetcher.clone() as Arc<dyn Fetcher>)),
        board: Arc::new(Board::new()),
    }
}

async fn insert(conn: &sqlx::PgPool, number: &str) -> uuid::Uuid {
    sqlx::query_scalar("INSERT INTO extraction_queue (document_source, document_number, created_at) VALUES ('index', $1, clock_timestamp()) RETURNING id")
        .bind(number)
        .fetch_one(conn)
        .await
        .expect("insert")
}

/// (status_id, attemtps, error_message, supabase_path)
async fn row(conn: &sqlx::PgPool, id: uuid::Uuid) -> (i32, i32, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status_id, coalesce(attemtps, 0), error_message, supabase_path FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .expect("row")
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_row_fails_at_once_and_a_site_failure_is_retried() {
    let setup = setup("rw-reject").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let rejected: Vec<uuid::Uuid> = {
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(insert(&pool, &format!("rejected-{n}")).await);
        }
        ids
    };
    let down = insert(&pool, "down-1").await;
    let services = services(&setup, Arc::new(Registry)).await;
    let shutdown = Shutdown::new();
    let workers = start_workers(&services, &WorkerSettings::from_config(&setup.config.registre), &shutdown).await;
    workers.begin();

    wait_until("every rejected row in status 4", Duration::from_secs(30), || {
        let (conn, ids) = (pool.clone(), rejected.clone());
        async move {
            for id in ids {
                if row(&conn, id).await.0 != 4 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for (n, id) in rejected.iter().enumerate() {
        let (status, attempts, error, _) = row(&pool, *id).await;
        assert_eq!((status, attempts), (4, 1), "one attempt, no retry burnt (max_attempts 3)");
        assert_eq!(error.as_deref(), Some(format!("index search: Le lot rejected-{n} n'existe pas dans le cadastre sélectionné.").as_str()));
    }
    // The site failure is retried with backoff until max_attempts (3), only then 4.
    wait_until("down-1 failed its 3 attempts", Duration::from_secs(30), || {
        let conn = pool.clone();
        async move { row(&conn, down).await.0 == 4 }
    })
    .await;
    let (_, attempts, error, _) = row(&pool, down).await;
    assert_eq!(attempts, 3);
    assert!(error.is_some_and(|e| e.contains("connection refused")));

    shutdown.trigger();
    assert!(shutdown.wait(Duration::from_secs(10)).await, "workers stop");
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}
