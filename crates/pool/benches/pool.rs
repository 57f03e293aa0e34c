//! Benchmark (harness = false; `cargo bench -p registre-pool`): pages per minute of the OCR pool
//! with 2 workers (the checklist's pool: one index, one acte; each reads one page at a time) from
//! queue to status 5, on the documents users send: scanned index pages (testkit's generator, one
//! page each). Reference, in the same run: tesseract alone on the same pages pre-rendered at
//! 300 dpi as PGM (untimed), OMP_THREAD_LIMIT=1, 2 at a time (`xargs -P 2`): tesseract's own limit
//! on this machine. Rounds alternate pool and reference; the verdict is the median of the
//! per-round ratios. Real Redis (private), PostgreSQL (a fresh database), tesseract. Prints a
//! markdown table. POOL_BENCH_DOCS (default 12) and POOL_BENCH_ROUNDS (default 3) tune the run.

use std::path::Path;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_ocr::TesseractSettings;
use registre_runtime::Shutdown;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::reference::{self, median};
use registre_testkit::{scan, RedisServer};
use sqlx::{Connection, PgConnection};


fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn ppm(pages: usize, d: Duration) -> f64 {
    pages as f64 * 60.0 / d.as_secs_f64()
}

/// Writes `docs` one-page scanned PDFs, half in `index/`, half in `actes/`; returns their paths.
fn write_documents(storage: &Path, docs: usize) -> Vec<(String, String, std::path::PathBuf)> {
    (0..docs)
        .map(|n| {
            let bytes = scan::scanned_index(100 + n as u64, 1).pdf;
            let (source, bucket) = if n % 2 == 0 { ("index", "index") } else { ("acte", "actes") };
            let name = format!("{n:04}-Montreal-Quebec-1700000000000.pdf");
            let dir = storage.join(bucket);
            std::fs::create_dir_all(&dir).expect("storage dir");
            let path = dir.join(&name);
            std::fs::write(&path, &bytes).expect("write pdf");
            (source.to_string(), format!("{bucket}/{name}"), path)
        })
        .collect()
}

async fn pool_round(config: &Config, db: &TestDatabase, docs: &[(String, String, std::path::PathBuf)]) -> Duration {
    let mut conn = PgConnection::connect(db.url()).await.expect("db");
    sqlx::query("DELETE FROM extraction_queue").execute(&mut conn).await.expect("clean");
    for (n, (source, path, _)) in docs.iter().enumerate() {
        sqlx::query("INSERT INTO extraction_queue (document_source, document_number, status_id, supabase_path) VALUES ($1, $2, 3, $3)")
            .bind(source)
            .bind(format!("{n}"))
            .bind(path)
            .execute(&mut conn)
            .await
            .expect("insert");
    }
    let shutdown = Shutdown::new();
    let started = Instant::now();
    registre_pool::start(config, &shutdown).await.expect("pool starts");
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id = 5").fetch_one(&mut conn).await.expect("count");
        if done as usize == docs.len() {
            break;
        }
        let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE ocr_attempts > 0").fetch_one(&mut conn).await.expect("count");
        assert_eq!(failed, 0, "a document failed during the benchmark");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.trigger();
    shutdown.wait(Duration::from_secs(30)).await;
    elapsed
}

/// Every document's page rendered once at 300 dpi as PGM (untimed): the reference's input.
fn pre_render(work: &Path, docs: &[(String, String, std::path::PathBuf)]) -> std::path::PathBuf {
    let out = work.join("reference");
    for (n, (_, _, pdf)) in docs.iter().enumerate() {
        reference::render_pgm(pdf, &out, &format!("page-{n:04}"));
    }
    out
}

/// tesseract alone on the pre-rendered pages, 2 at a time.
fn reference_round(pgm_dir: &Path, settings: &TesseractSettings) -> Duration {
    reference::tesseract_alone(pgm_dir, 2, &settings.lang, settings.psm).0
}

#[tokio::main]
async fn main() {
    let docs_count = env_usize("POOL_BENCH_DOCS", 12);
    let rounds = env_usize("POOL_BENCH_ROUNDS", 3);
    let redis = RedisServer::start();
    let db = TestDatabase::create();
    {
        let mut conn = PgConnection::connect(db.url()).await.expect("db");
        registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    }
    let work = std::env::temp_dir().join(registre_testkit::unique("pool-bench"));
    let storage = work.join("storage");
    let docs = write_documents(&storage, docs_count);
    let vars = [
        ("REDIS_URL", redis.url()),
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("STORAGE_URL", format!("file://{}", storage.display())),
        ("OCR_ENGINE", "tesseract".to_string()),
        ("QUEUE_POLL_INTERVAL_MS", "20".to_string()),
        ("OCR_REBALANCE_INTERVAL_MS", "600000".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))).expect("config");
    registre_runtime::logging::init(&config.log);
    let settings = TesseractSettings::from_config(&config.ocr_engine);

    let pgm_dir = pre_render(&work, &docs);

    println!("\n### OCR pool (2 workers) vs tesseract alone on 300 dpi PGMs ({docs_count} one-page scanned index documents × {rounds} alternated rounds)\n");
    println!("| round | pool s | pool pages/min | reference s | reference pages/min | pool / reference |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut pool_ppm, mut reference_ppm, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate which side goes first.
        let (p, r) = if round % 2 == 1 {
            let p = pool_round(&config, &db, &docs).await;
            (p, reference_round(&pgm_dir, &settings))
        } else {
            let r = reference_round(&pgm_dir, &settings);
            (pool_round(&config, &db, &docs).await, r)
        };
        let (pp, rp) = (ppm(docs_count, p), ppm(docs_count, r));
        println!("| {round} | {:.2} | {pp:.1} | {:.2} | {rp:.1} | {:.3} |", p.as_secs_f64(), r.as_secs_f64(), pp / rp);
        pool_ppm.push(pp);
        reference_ppm.push(rp);
        ratios.push(pp / rp);
    }
    let ratio = median(ratios);
    println!("| **median** | | **{:.1}** | | **{:.1}** | **{ratio:.3}** |", median(pool_ppm), median(reference_ppm));
    println!("\n**pool / reference on scanned pages (median of {rounds} alternated rounds): {ratio:.3}** (target ≥ 0.85)\n");
    let _ = std::fs::remove_dir_all(&work);
}
