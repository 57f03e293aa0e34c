//! index_data (0070) on a real PostgreSQL: written by the same transition that takes an index row
//! from 6 to 5, fenced like the text (a worker that lost the row writes nothing), left alone by a
//! completion without data (actes, the four-argument call of older workers), and the fused
//! complete-and-claim function still completes through the new signature.

mod common;

use common::SETTINGS;
use registre_queue::{status, DocumentSource, OcrTexts, Queue, Transition};
use registre_testkit::postgres::insert_row;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn index_data_is_written_with_the_text_in_the_transition_to_5_and_fenced() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool().clone();
    let index = insert_row(&pool, "index", "3 142 828", status::DOWNLOADED).await;
    let data = json!({"engine": "tesseract", "pages": [{"page": 1, "format": "modern-inscription", "circonscription": "Laval",
        "cadastre": "Cadastre du Québec", "lot": "3 142 828", "inscriptions": []}], "warnings": ["page 1: exemple"]});

    let job = queue.claim_ocr("ocr-1", DocumentSource::Index, Uuid::new_v4()).await.unwrap().unwrap();
    // A stale owner (another claim token) writes neither the text nor the data.
    let mut stale = job.clone();
    stale.claim_token = Uuid::new_v4();
    assert_eq!(queue.complete_ocr_with(&stale, OcrTexts::new("x", "x").with_index(Some(&json!({"engine": "faux"})))).await.unwrap(), Transition::NotOwner);
    let before: Option<serde_json::Value> = sqlx::query_scalar("SELECT index_data FROM extraction_queue WHERE id = $1").bind(index).fetch_one(&pool).await.unwrap();
    assert_eq!(before, None);

    assert_eq!(queue.complete_ocr_with(&job, OcrTexts::new("brut", "corrigé").with_index(Some(&data))).await.unwrap(), Transition::Applied);
    let (st, text, stored): (i32, String, Option<serde_json::Value>) =
        sqlx::query_as("SELECT status_id, file_content, index_data FROM extraction_queue WHERE id = $1").bind(index).fetch_one(&pool).await.unwrap();
    assert_eq!((st, text.as_str()), (status::DONE, "brut"));
    assert_eq!(stored, Some(data.clone()));
}

#[tokio::test]
async fn a_completion_without_data_leaves_the_column_and_the_four_argument_call_still_works() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool().clone();
    let acte = insert_row(&pool, "acte", "A-1", status::DOWNLOADED).await;
    let index = insert_row(&pool, "index", "1 234 567", status::DOWNLOADED).await;
    let job = queue.claim_ocr("ocr-1", DocumentSource::Acte, Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(queue.complete_ocr(&job, "acte", "acte").await.unwrap(), Transition::Applied);
    let stored: Option<serde_json::Value> = sqlx::query_scalar("SELECT index_data FROM extraction_queue WHERE id = $1").bind(acte).fetch_one(&pool).await.unwrap();
    assert_eq!(stored, None);

    // An older worker's call: four arguments, by SQL directly.
    let token = Uuid::new_v4();
    let job = queue.claim_ocr("ocr-2", DocumentSource::Index, token).await.unwrap().unwrap();
    let applied: bool = sqlx::query_scalar("SELECT queue_complete_ocr($1, $2, $3, $4)")
        .bind(job.id)
        .bind(job.claim_token)
        .bind("t")
        .bind("t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(common::row(&pool, index).await.0, status::DONE);
}
