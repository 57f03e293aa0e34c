//! `registrectl index-backfill` and `registrectl export-index` as operators run them: the real
//! binary against a real PostgreSQL, Redis (the server's capacity budget), local storage and
//! tesseract. Index rows at 5 without index_data get it from their stored scanned PDFs (scored
//! against the generator's truth); a row that already has it, rows of other sources, rows not at 5
//! and rows older than --since are left alone; a row whose PDF is missing is reported and the run
//! exits 1. The backfill waits for an index-ocr capacity lease while the budget is full and gives it
//! back when done. Then export-index writes the backfilled inscriptions as CSV.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::{Config, EnvName};
use registre_testkit::index_score::score;
use registre_testkit::scan::{scanned_index, ScannedIndex};
use serde_json::{json, Value};
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use uuid::Uuid;

/// registrectl with exactly `env` (no .env: it runs in an empty directory), its output in `log`.
fn spawn_registrectl(args: &[&str], env: &[(String, String)], dir: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_registrectl"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("log file")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("registrectl starts")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// An `index` (or other source) row at `status`, completed `age_days` ago, its PDF stored under
/// `storage` when `pdf` is given.
#[allow(clippy::too_many_arguments)]
async fn row(pool: &PgPool, storage: &Path, source: &str, number: &str, status: i32, age_days: i32, pdf: Option<&[u8]>, data: Option<Value>) -> Uuid {
    let bucket = if source == "index" { "index" } else { "actes" };
    let name = format!("{}-Laval-Quebec-1700000000000.pdf", number.replace(' ', ""));
    if let Some(pdf) = pdf {
        std::fs::create_dir_all(storage.join(bucket)).unwrap();
        std::fs::write(storage.join(bucket).join(&name), pdf).unwrap();
    }
    sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, supabase_path,
                                       file_content, index_data, ocr_completed_at, updated_at)
         VALUES ($1, $2, 'Laval', 'Cadastre du Québec', $3, $4, 'texte', $5, now() - make_interval(days => $6), now() - interval '1 hour')
         RETURNING id",
    )
    .bind(source)
    .bind(number)
    .bind(status)
    .bind(format!("{bucket}/{name}"))
    .bind(data)
    .bind(age_days)
    .fetch_one(pool)
    .await
    .expect("insert")
}

/// The row's index_data and updated_at (as Postgres prints it: compared, never parsed).
async fn index_data_of(pool: &PgPool, id: Uuid) -> (Option<Value>, String) {
    sqlx::query_as::<_, (Option<Value>, String)>("SELECT index_data, updated_at::text FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_only_index_rows_at_5_without_data_under_the_capacity_budget_then_export_writes_them() {
    let (db, pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let work = std::env::temp_dir().join(registre_testkit::unique("index-backfill"));
    let storage = work.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    // A budget of 2 vCPU (1.6 usable after the 20 % reserve): an index-ocr lease (1.5) fits only
    // when nothing else holds capacity.
    let env: Vec<(String, String)> = [
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique("backfill")),
        ("SERVER_MAX_CPU", "2".into()),
        ("SERVER_MAX_RAM", "4".into()),
        ("CAPACITY_RETRY_MAX_MS", "500".into()),
        ("STORAGE_URL", format!("file://{}", storage.display())),
        ("OCR_ENGINE", "tesseract".into()),
        ("OCR_RATE_LIMIT_NAME", registre_testkit::unique("backfill-rl")),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let docs: Vec<ScannedIndex> = [61u64, 62].into_iter().map(|seed| scanned_index(seed, 1)).collect();
    let lot = |d: &ScannedIndex| d.truth.pages[0].lot.clone().expect("generated pages have a lot");
    let mut to_fill = Vec::new();
    for d in &docs {
        to_fill.push(row(&pool, &storage, "index", &lot(d), 5, 1, Some(&d.pdf), None).await);
    }
    let kept = json!({"engine": "tesseract", "pages": [], "warnings": ["written before: must stay"]});
    let already = row(&pool, &storage, "index", "2 000 001", 5, 1, Some(&docs[0].pdf), Some(kept.clone())).await;
    let acte = row(&pool, &storage, "acte", "25 000 001", 5, 1, Some(&docs[0].pdf), None).await;
    let not_done = row(&pool, &storage, "index", "2 000 002", 3, 1, Some(&docs[0].pdf), None).await;
    let too_old = row(&pool, &storage, "index", "2 000 003", 5, 30, Some(&docs[0].pdf), None).await;
    let missing_pdf = row(&pool, &storage, "index", "2 000 004", 5, 1, None, None).await;
    let mut untouched = Vec::new();
    for id in [already, acte, not_done, too_old] {
        untouched.push((id, index_data_of(&pool, id).await));
    }

    // The budget is full: another worker holds 1 vCPU of the 1.6 usable.
    let config = Config::from_vars(env.clone()).expect("config");
    let capacity = CapacityManager::new(registre_runtime::redis_connection(&config.redis_url).expect("redis"), CapacitySettings::from_config(&config));
    let holder = capacity.try_lease("test-holder", WorkerType::ActeOcr).await.expect("redis").expect("the holder's lease fits");

    let log = work.join("backfill.log");
    let mut child = spawn_registrectl(&["index-backfill", "--since", "7d"], &env, &work, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !read(&log).contains("waiting for capacity") {
        assert!(child.try_wait().expect("wait").is_none(), "registrectl ended while the budget was full:\n{}", read(&log));
        assert!(Instant::now() < deadline, "registrectl never said it waits for capacity:\n{}", read(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = read(&log);
    assert!(waiting.contains("registrectl-index-backfill-") && waiting.contains("index-ocr") && waiting.contains("Insufficient CPU"), "{waiting}");
    // Still waiting (the holder has not let go): nothing was read yet.
    for id in &to_fill {
        assert_eq!(index_data_of(&pool, *id).await.0, None, "read without a capacity lease");
    }
    assert!(holder.release().await.expect("release"));

    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "index-backfill did not end:\n{}", read(&log));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = read(&log);
    eprintln!("{out}");
    assert_eq!(status.code(), Some(1), "a row that could not be read fails the run:\n{out}");
    assert!(out.contains("2 row(s) backfilled, 1 failed"), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&missing_pdf.to_string()) && l.contains("PDF could not be downloaded")), "{out}");

    // The two rows got index_data read from their scans, close to what was printed.
    for (id, doc) in to_fill.iter().zip(&docs) {
        let data = index_data_of(&pool, *id).await.0.expect("backfilled");
        assert_eq!(data["engine"], "tesseract");
        assert_eq!(data["pages"].as_array().map(Vec::len), Some(1));
        let s = score(&doc.truth, &data);
        let t = s.total();
        assert!(t.tp > 30 && t.f1() >= 0.95 && t.precision() >= 0.97, "seed {}: {}\n{:#?}", doc.seed, s.table(), s.mismatches);
        assert!(out.contains(&format!("{id} index {}: 1 page(s)", lot(doc))), "{out}");
    }
    assert_eq!(index_data_of(&pool, missing_pdf).await.0, None);
    for (id, before) in &untouched {
        assert_eq!(&index_data_of(&pool, *id).await, before, "row {id} must be left alone");
    }
    // The lease was given back: the server holds nothing any more.
    let left = capacity.status().await.expect("status");
    assert!(left.workers.is_empty(), "{:?}", left.workers);

    // export-index writes the backfilled inscriptions: one line per party.
    let csv_log = work.join("export.csv");
    let mut export = spawn_registrectl(&["export-index", "--lot", &lot(&docs[0]).replace(' ', "")], &env, &work, &csv_log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = export.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "export-index did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = read(&csv_log);
    assert!(status.success(), "{text}");
    eprintln!("{}", text.lines().take(8).collect::<Vec<_>>().join("\n"));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("RFC 4180 CSV")).collect();
    assert!(records.iter().all(|r| r[0] == to_fill[0].to_string()), "only the row of that lot:\n{text}");
    let truth: Vec<(String, String, String)> = docs[0].truth.pages[0]
        .inscriptions
        .iter()
        .flat_map(|i| i.parties.iter().map(move |p| (i.numero.clone().unwrap_or_default(), p.qualite.clone().unwrap_or_default(), p.nom.clone())))
        .collect();
    let found = truth.iter().filter(|(n, q, nom)| records.iter().any(|r| &r[5] == n && &r[7] == q && &r[8] == nom)).count();
    assert!(found * 100 >= truth.len() * 95, "{found} of {} parties exported as printed:\n{text}", truth.len());
    let _ = std::fs::remove_dir_all(&work);
}
