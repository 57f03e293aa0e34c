//! The index des immeubles as data through the real `ocr-pool` binary (docs/ocr.md, Structured
//! index): `index` rows claimed at 3 reach 5 with their text AND index_data written by the same
//! transition, while other sources get none. With tesseract (real OCR of testkit's scanned pages),
//! the stored inscriptions are scored against the generator's truth; with Gemini (the testkit
//! stand-in answering the structured call with the truth), they are the truth exactly, from one
//! structured call per index document.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use registre_testkit::gemini::{Act, Usage, DEFAULT_TEXT};
use registre_testkit::index_score::score;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::scan::{index_document, scanned_index, IndexTruth};
use registre_testkit::{shared_redis_url, unique};
use serde_json::{json, Value};
use sqlx::PgConnection;

/// Queues `pdfs.len()` index rows and one acte row at 3 (downloaded, waiting for OCR) with
/// common's helper, then puts each given PDF in place of its index row's placeholder (and the
/// first one in the acte's). Index row i is `w0000i`.
async fn queue_pdfs(conn: &mut PgConnection, storage: &Path, pdfs: &[&[u8]]) {
    queue_ocr_rows(conn, storage, "index", pdfs.len()).await;
    queue_ocr_rows(conn, storage, "acte", 1).await;
    let placeholder = |bucket: &str, i: usize| storage.join(bucket).join(format!("w{i:05}-Montreal-Quebec-1700000000000.pdf"));
    for (i, pdf) in pdfs.iter().enumerate() {
        std::fs::write(placeholder("index", i), pdf).unwrap();
    }
    std::fs::write(placeholder("actes", 0), pdfs[0]).unwrap();
}

/// A migrated database with the completion audit, and the work directory's storage and logs.
async fn setup(label: &str) -> (TestDatabase, PgConnection, PathBuf, PathBuf) {
    let db = TestDatabase::create();
    let conn = migrate_with_audit(db.url()).await;
    let work = scratch(label);
    std::fs::create_dir_all(work.join("logs")).unwrap();
    (db, conn, work.join("storage"), work)
}

/// Polls until every row is at 5 (panics with the pool's log on the deadline or on a row in 4).
async fn wait_all_done(conn: &mut PgConnection, rows: i64, pool: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = count_by_status(conn).await;
        if counts.get(&5) == Some(&rows) {
            return;
        }
        assert!(counts.get(&4).is_none(), "a row failed: {counts:?}\n{}", tail(&pool.output(), 60));
        assert!(Instant::now() < deadline, "not every row reached 5: {counts:?}\n{}", tail(&pool.output(), 60));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// (document_source, document_number, file_content, index_data) of every row.
async fn stored(conn: &mut PgConnection) -> Vec<(String, String, Option<String>, Option<Value>)> {
    sqlx::query_as("SELECT document_source, document_number, file_content, index_data FROM extraction_queue ORDER BY document_number")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// The pool's environment: one server, the testkit stand-in as Gemini, `engine` as OCR_ENGINE.
fn pool_env(db: &TestDatabase, work: &Path, gemini: &GeminiStandIn, key: &str, engine: &str) -> Vec<(String, String)> {
    let mut env = server_env(&unique("idx"), &shared_redis_url(), false, db.url(), &work.join("documents"), &work.join("storage"), gemini, key, (&unique("idx-rate"), 600, Duration::from_secs(60)));
    env.push(("OCR_ENGINE".into(), engine.into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tesseract_index_rows_reach_5_with_index_data_close_to_the_truth() {
    let (db, mut conn, storage, work) = setup("idx-tess").await;
    let docs = [scanned_index(81, 1), scanned_index(82, 2)];
    // Two index rows, and an acte read by the same pool: text only.
    queue_pdfs(&mut conn, &storage, &[&docs[0].pdf, &docs[1].pdf]).await;
    let key = "idx-tess-key-0123456789";
    let gemini = GeminiStandIn::start(&[key]).await;
    let mut pool = Proc::new("ocr-pool", "ocr-pool", pool_env(&db, &work, &gemini, key, "tesseract"), &work.join("logs"));
    pool.start();
    wait_all_done(&mut conn, 3, &pool).await;
    assert!(pool.terminate(), "ocr-pool did not stop cleanly:\n{}", tail(&pool.output(), 40));
    assert_eq!(gemini.calls(), 0, "the tesseract engine never calls Gemini");

    let rows = stored(&mut conn).await;
    for (source, number, text, data) in &rows {
        assert!(!text.as_deref().unwrap_or("").trim().is_empty(), "{source} {number}: no text");
        if source != "index" {
            assert_eq!(data, &None, "{source} {number}: only index rows get index_data");
            continue;
        }
        let doc = &docs[number.trim_start_matches('w').parse::<usize>().expect("an index row of ours")];
        let data = data.as_ref().unwrap_or_else(|| panic!("index {number} reached 5 without index_data"));
        assert_eq!(data["engine"], "tesseract");
        assert_eq!(data["pages"].as_array().map(Vec::len), Some(doc.truth.pages.len()));
        let s = score(&doc.truth, data);
        let t = s.total();
        eprintln!("index {number} (seed {}):\n{}", doc.seed, s.table());
        assert!(t.tp as usize > 20 * doc.truth.pages.len(), "too few fields read: {t:?}");
        assert!(t.f1() >= 0.95 && t.precision() >= 0.97, "index {number}: F1 {:.3}, precision {:.3}\n{:#?}", t.f1(), t.precision(), s.mismatches);
    }
    let (_, _, duplicates) = final_queue_checks(&mut conn, 3).await;
    assert_eq!(duplicates, 0);
}

/// The truth as the structured call's answer (`{"pages": [...], "warnings": []}`).
fn answer_of(truth: &IndexTruth) -> String {
    let mut v = serde_json::to_value(truth).unwrap();
    v["warnings"] = json!([]);
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_index_rows_reach_5_with_the_structured_answer_as_index_data() {
    let (db, mut conn, storage, work) = setup("idx-gem").await;
    // The stand-in does not read the PDF: the born-digital pages are enough, their truth the answer.
    let (pdf, truth) = index_document(83, 2);
    queue_pdfs(&mut conn, &storage, &[&pdf]).await;
    let key = "idx-gem-key-0123456789";
    let answer = answer_of(&truth);
    let usage = Usage { prompt: 400, candidates: 100, thoughts: 0 };
    let gemini = GeminiStandIn::scripted_calls(&[key], move |call, _| {
        if call.body["generationConfig"]["responseSchema"].is_object() {
            Act::answer(&answer, usage)
        } else {
            Act::answer(DEFAULT_TEXT, usage)
        }
    })
    .await;
    let mut pool = Proc::new("ocr-pool", "ocr-pool", pool_env(&db, &work, &gemini, key, "gemini"), &work.join("logs"));
    pool.start();
    wait_all_done(&mut conn, 2, &pool).await;
    assert!(pool.terminate(), "ocr-pool did not stop cleanly:\n{}", tail(&pool.output(), 40));

    assert_eq!(gemini.violations(), Vec::<String>::new(), "requests the real API would refuse");
    let structured = gemini.requests().iter().filter(|c| c.body["generationConfig"]["responseSchema"].is_object()).count();
    assert_eq!(structured, 1, "one structured call for the one index document, none for the acte");
    for (source, number, _, data) in stored(&mut conn).await {
        if source != "index" {
            assert_eq!(data, None, "{source} {number}: only index rows get index_data");
            continue;
        }
        let data = data.expect("index_data written with the text");
        assert_eq!(data["engine"], "gemini");
        assert_eq!(data["warnings"], json!([]), "{data}");
        let s = score(&truth, &data);
        let t = s.total();
        assert!(t.tp > 40 && t.fp == 0 && t.fn_ == 0, "the answer must be stored as given:\n{}\n{:#?}", s.table(), s.mismatches);
    }
    let (_, _, duplicates) = final_queue_checks(&mut conn, 2).await;
    assert_eq!(duplicates, 0);
}
