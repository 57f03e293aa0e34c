//! End-to-end overhead of the pipeline: one process running a registre worker (directory fetcher)
//! and the OCR pool (tesseract), as start-all-workers does, on a private Redis and a fresh
//! PostgreSQL database. BENCH_DOCS (default 50) one-page documents are queued one at a time (the
//! next once the previous reached status 5, so no document waits behind another); for each, the
//! time from its insert to status 5 (`ocr_completed_at - created_at`, both the database clock)
//! minus the time spent inside the fetcher and inside the OCR engine (timed around the calls by
//! wrappers): what the queue, the pickups, storage, and the workers' own work cost per document.
//! Target (issue 15): median overhead <= 100 ms. Prints a markdown table.
//!
//! Run: cargo bench -p registre-all --bench overhead

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::{Config, EnvName};
use registre_fetch::{DocumentRequest, FetchError, FetchedDocument, Fetcher};
use registre_ocr::{OcrEngine, OcrError, OcrOutput, Parallelism, TesseractEngine, TesseractSettings};
use registre_queue::MultiQueue;
use registre_runtime::Shutdown;
use registre_storage::Storage;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{pdf, RedisServer};
use registre_extraction::{Board, Services, WorkerSettings};
use sqlx::{Connection, PgConnection};

/// Time spent inside the fetcher and the engine for the document in flight (one at a time).
#[derive(Default)]
struct Spent {
    fetch: Duration,
    ocr: Duration,
}

struct TimedFetcher {
    inner: Arc<dyn Fetcher>,
    spent: Arc<Mutex<Spent>>,
}

impl Fetcher for TimedFetcher {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.fetch(request).await;
            if let Ok(mut s) = self.spent.lock() {
                s.fetch += started.elapsed();
            }
            result
        })
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

struct TimedEngine {
    inner: TesseractEngine,
    spent: Arc<Mutex<Spent>>,
}

impl OcrEngine for TimedEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn extract<'a>(&'a self, pdf: &'a [u8], parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.extract(pdf, parallelism).await;
            if let Ok(mut s) = self.spent.lock() {
                s.ocr += started.elapsed();
            }
            result
        })
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docs: usize = std::env::var("BENCH_DOCS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(50);
    let redis = RedisServer::start();
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("db");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");

    // One-page documents, half index, half actes, each with its own text.
    let work = std::env::temp_dir().join(registre_testkit::unique("overhead-bench"));
    let (source_dir, storage_dir) = (work.join("source"), work.join("storage"));
    let (template, _) = pdf::registry_index(1, 16);
    for n in 0..docs {
        let source = if n % 2 == 0 { "index" } else { "acte" };
        let mut pages = template.clone();
        pages[0].push(format!("Document {n}"));
        std::fs::create_dir_all(source_dir.join(source)).expect("source dir");
        std::fs::write(source_dir.join(source).join(format!("D{n}.pdf")), pdf::pdf(&pages)).expect("write pdf");
    }
    let vars = [
        ("REDIS_URL", redis.url()),
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("STORAGE_URL", format!("file://{}", storage_dir.display())),
        ("REGISTRE_FETCHER", "directory".to_string()),
        ("REGISTRE_SOURCE_DIR", source_dir.display().to_string()),
        ("OCR_ENGINE", "tesseract".to_string()),
        ("WORKER_COUNT", "1".to_string()),
        ("OCR_WORKER_POOL_SIZE", "2".to_string()),
        ("OCR_REBALANCE_INTERVAL_MS", "600000".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))).expect("config");
    registre_runtime::logging::init(&config.log);
    let poll_ms = config.queue.poll_interval.as_millis();

    // The services start-all-workers builds, with the fetcher and the engine wrapped in timers.
    let spent = Arc::new(Mutex::new(Spent::default()));
    let redis_conn = registre_runtime::redis_connection(&config.redis_url).expect("redis");
    let capacity = CapacityManager::new(redis_conn.clone(), CapacitySettings::from_config(&config));
    let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, config.queue.pg_pool_size).expect("queue"));
    let storage = Storage::from_config(&config.storage).expect("storage");
    let fetcher: Arc<dyn Fetcher> = Arc::new(TimedFetcher {
        inner: Arc::new(registre_fetch::directory::DirectoryFetcher::new(&source_dir)),
        spent: spent.clone(),
    });
    let services = Services {
        capacity: capacity.clone(),
        queue: queue.clone(),
        storage: storage.clone(),
        fetchers: Arc::new(move || Ok(fetcher.clone())),
        board: Arc::new(Board::new()),
    };
    let shutdown = Shutdown::new();
    let workers = registre_extraction::start_workers(&services, &WorkerSettings::from_config(&config.registre), &shutdown).await;
    let engine: Arc<dyn OcrEngine> =
        Arc::new(TimedEngine { inner: TesseractEngine::new(TesseractSettings::from_config(&config.ocr_engine)), spent: spent.clone() });
    registre_pool::start_with_engine(&config, redis_conn, capacity, storage, Some(queue.clone()), Some(engine), &shutdown)
        .await
        .expect("pool starts")
        .expect("not shut down");
    workers.begin();

    let mut rows: Vec<(f64, f64, f64, f64)> = Vec::new(); // total, fetch, ocr, overhead (ms)
    for n in 0..docs {
        let source = if n % 2 == 0 { "index" } else { "acte" };
        *spent.lock().expect("spent") = Spent::default();
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere) VALUES ($1, $2, 'Québec') RETURNING id",
        )
        .bind(source)
        .bind(format!("D{n}"))
        .fetch_one(&mut conn)
        .await
        .expect("insert");
        let deadline = Instant::now() + Duration::from_secs(300);
        let total_ms = loop {
            let (status, total): (i32, Option<f64>) = sqlx::query_as(
                "SELECT status_id, extract(epoch FROM ocr_completed_at - created_at)::float8 * 1000 FROM extraction_queue WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .expect("row");
            assert!(status != 4, "document D{n} failed");
            if status == 5 {
                break total.expect("ocr_completed_at is set at status 5");
            }
            assert!(Instant::now() < deadline, "document D{n} did not reach status 5 within 300 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let s = spent.lock().expect("spent");
        let (fetch, ocr) = (s.fetch.as_secs_f64() * 1000.0, s.ocr.as_secs_f64() * 1000.0);
        rows.push((total_ms, fetch, ocr, total_ms - fetch - ocr));
    }
    shutdown.trigger();
    shutdown.wait(Duration::from_secs(60)).await;

    let column = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let (total, fetch, ocr, overhead) = (column(|r| r.0), column(|r| r.1), column(|r| r.2), column(|r| r.3));
    println!("{docs} one-page documents, one at a time: directory fetcher, tesseract, 1 registre worker + OCR pool of 2, LISTEN/NOTIFY pickup (poll fallback {poll_ms} ms)");
    println!();
    println!("| per document | median | p90 | max |");
    println!("|---|---:|---:|---:|");
    for (label, v) in [("insert → status 5", &total), ("in the fetcher", &fetch), ("in the OCR engine", &ocr), ("**overhead** (the rest)", &overhead)] {
        println!("| {label} | {:.1} ms | {:.1} ms | {:.1} ms |", median(v), percentile(v, 90.0), percentile(v, 100.0));
    }
    let _ = std::fs::remove_dir_all(&work);
}
