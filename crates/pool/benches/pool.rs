//! Benchmark (harness = false; `cargo bench -p registre-pool`): pages per minute of the OCR pool
//! with 2 workers (the checklist's pool: one index, one acte; each reads one page at a time) from
//! queue to status 5, against the same pdftoppm + tesseract commands run directly, 2 at a time, by
//! a shell script (`xargs -P 2`) on the same files in the same run: the engines' own limit on this
//! machine. Real Redis (private), PostgreSQL (a fresh database), tesseract. Prints a markdown table.
//! POOL_BENCH_DOCS (default 12, one page each) and POOL_BENCH_ROUNDS (default 2) tune the run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_ocr::TesseractSettings;
use registre_runtime::Shutdown;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{pdf, RedisServer};
use sqlx::{Connection, PgConnection};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn ppm(pages: usize, d: Duration) -> f64 {
    pages as f64 * 60.0 / d.as_secs_f64()
}

/// Writes `docs` one-page PDFs, half in `index/`, half in `actes/`; returns their paths.
fn write_documents(storage: &Path, docs: usize) -> Vec<(String, String, std::path::PathBuf)> {
    let (pages, _) = pdf::registry_index(1, 16);
    let bytes = pdf::pdf(&pages);
    (0..docs)
        .map(|n| {
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

fn shell_round(work: &Path, docs: &[(String, String, std::path::PathBuf)], settings: &TesseractSettings) -> Duration {
    let out = work.join("shell");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("shell dir");
    let list = work.join("files.txt");
    std::fs::write(&list, docs.iter().map(|(_, _, p)| format!("{}\n", p.display())).collect::<String>()).expect("list");
    let script = format!(
        "cat {list} | xargs -P 2 -I{{}} sh -c 'b=$(basename {{}} .pdf); pdftoppm -r {dpi} -f 1 -l 1 -singlefile -gray -png {{}} {out}/$b \
         && OMP_THREAD_LIMIT=1 tesseract {out}/$b.png stdout -l {lang} --psm {psm} > {out}/$b.txt 2>/dev/null'",
        list = list.display(),
        dpi = settings.dpi,
        lang = settings.lang,
        psm = settings.psm,
        out = out.display(),
    );
    let started = Instant::now();
    let status = Command::new("sh").arg("-c").arg(&script).status().expect("sh");
    let elapsed = started.elapsed();
    assert!(status.success(), "shell run failed: {script}");
    elapsed
}

#[tokio::main]
async fn main() {
    let docs_count = env_usize("POOL_BENCH_DOCS", 12);
    let rounds = env_usize("POOL_BENCH_ROUNDS", 2);
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

    println!("| run | round | pages | seconds | pages/min |");
    println!("|---|---:|---:|---:|---:|");
    let (mut pool_total, mut shell_total) = (Duration::ZERO, Duration::ZERO);
    for round in 1..=rounds {
        let p = pool_round(&config, &db, &docs).await;
        println!("| ocr pool, 2 workers | {round} | {docs_count} | {:.2} | {:.1} |", p.as_secs_f64(), ppm(docs_count, p));
        let s = shell_round(&work, &docs, &settings);
        println!("| shell, xargs -P 2 | {round} | {docs_count} | {:.2} | {:.1} |", s.as_secs_f64(), ppm(docs_count, s));
        pool_total += p;
        shell_total += s;
    }
    let pages = docs_count * rounds;
    println!("| **ocr pool, all rounds** | | {pages} | {:.2} | **{:.1}** |", pool_total.as_secs_f64(), ppm(pages, pool_total));
    println!("| **shell, all rounds** | | {pages} | {:.2} | **{:.1}** |", shell_total.as_secs_f64(), ppm(pages, shell_total));
    println!();
    println!("pool / shell throughput: {:.3}", shell_total.as_secs_f64() / pool_total.as_secs_f64());
    let _ = std::fs::remove_dir_all(&work);
}
