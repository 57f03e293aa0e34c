//! `registrectl export-index` against a real PostgreSQL: index rows whose index_data came from a
//! real tesseract read of a generated scanned page, filtered by completion time and lot, written as
//! RFC 4180 CSV (checked by reading it back with the csv crate); the rows to backfill are the
//! index rows at 5 without data, and a backfilled value is written only once.

use registre_config::{Config, EnvName};
use registre_ctl::export_index::{export_to, ExportArgs, COLUMNS};
use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_ops::live::Live;
use registre_ops::Ops;
use sqlx::PgConnection;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_one_csv_line_per_party_filtered_by_time_and_lot() {
    let (db, pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique("ctl")),
    ])
    .expect("config");
    let ops = Ops::new(vec![(EnvName::Prod, Some(pool.clone()))], Live::from_config(&config).expect("redis"));

    // A real read of a generated scanned page.
    let doc = registre_testkit::scan::scanned_index(77, 1);
    let out = TesseractEngine::new(TesseractSettings::default()).extract_index(&doc.pdf, Parallelism::ONE).await.expect("read");
    let data = serde_json::to_value(out.index_data.expect("index_data")).unwrap();
    let lot = doc.truth.pages[0].lot.clone().unwrap();
    let insert = |number: String, data: Option<serde_json::Value>, age_days: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO extraction_queue (document_source, document_number, cadastre, status_id, supabase_path, index_data, ocr_completed_at, created_at)
                 VALUES ('index', $1, 'Cadastre du Québec', 5, 'index/x.pdf', $2, now() - make_interval(days => $3), now()) RETURNING id",
            )
            .bind(number)
            .bind(data)
            .bind(age_days)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let recent = insert(lot.clone(), Some(data.clone()), 1).await;
    let old = insert(lot.clone(), Some(data.clone()), 30).await;
    let other_lot = insert("9 999 999".into(), Some(serde_json::json!({"engine": "tesseract", "pages": [], "warnings": []})), 1).await;
    let to_backfill = insert("1 111 111".into(), None, 2).await;

    let mut csv_out = Vec::new();
    let since = chrono::Utc::now() - chrono::Duration::days(7);
    export_to(&ops, ExportArgs { environment: Some("prod".into()), since: Some(since), lot: Some(lot.replace(' ', "")) }, &mut csv_out).await.expect("export");
    let text = String::from_utf8(csv_out).expect("UTF-8");
    eprintln!("{}", text.lines().take(12).collect::<Vec<_>>().join("\n"));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS.to_vec());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let parties: usize = doc.truth.pages[0].inscriptions.iter().map(|i| i.parties.len().max(1)).sum();
    // Every line is of the recent row (not the old one, not the other lot); about one per party.
    assert!(records.iter().all(|r| r[0] == recent.to_string()), "only the recent row of that lot");
    assert!(!text.contains(&old.to_string()) && !text.contains(&other_lot.to_string()));
    assert!(records.len() >= parties * 9 / 10 && records.len() <= parties + 2, "{} lines for {parties} parties", records.len());
    // A name with its comma survives the quoting; the nature is one of the list.
    let first = &doc.truth.pages[0].inscriptions[0];
    assert!(records.iter().any(|r| &r[8] == first.parties[0].nom.as_str() && &r[5] == first.numero.as_deref().unwrap_or_default()), "{text}");
    assert!(records.iter().all(|r| r[6].is_empty() || registre_domain::index_data::canonical_nature(&r[6]).is_some()));

    // The backfill sees the index row at 5 without data, and writes it once.
    let rows = ops.index_rows_to_backfill(EnvName::Prod, None, None, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![to_backfill]);
    assert!(ops.store_index_data(EnvName::Prod, to_backfill, &data).await.unwrap());
    assert!(!ops.store_index_data(EnvName::Prod, to_backfill, &data).await.unwrap(), "never overwritten");
    assert!(ops.index_rows_to_backfill(EnvName::Prod, None, None, 10).await.unwrap().is_empty());
}
