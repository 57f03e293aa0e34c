//! The storage refusing an upload is that row's failure, not the worker's: a real S3 server
//! (private moto_server with its signature checks on) refuses the workers' wrong secret, each row
//! fetched gets a readable error_message naming the upload and S3's refusal (and no secret), is
//! retried with backoff like any failure, and the workers go on to the next rows.
//! Real Redis (unique SERVER_ID) and PostgreSQL (fresh database).

mod common;

use std::sync::Arc;
use std::time::Duration;

use registre_config::Config;
use registre_fetch::{BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};
use registre_storage::Storage;
use registre_testkit::moto::MotoServer;
use common::{insert, row, run_workers, services, setup, stop, wait_for_row};

struct AlwaysPdf;

impl Fetcher for AlwaysPdf {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let bytes = registre_testkit::pdf::pdf(&[vec![format!("Index {}", request.document_number)]]);
            Ok(FetchedDocument { bytes, content_type: "application/pdf".into(), source: "stand-in".into(), fetched_as: None })
        })
    }
    fn kind(&self) -> &'static str {
        "stand-in"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_each_row_readably_and_the_workers_go_on() {
    let moto = MotoServer::start("registre-refused");
    let wrong_secret = "not-the-secret-0123456789abcdefXYZ";
    let setup = setup("rw-s3-refused").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let first = insert(&pool, "42").await;
    let mut services = services(&setup, Arc::new(AlwaysPdf)).await;
    let s3 = Config::from_vars([
        ("PROD_DATABASE_URL", "postgres://localhost/unused".to_string()),
        ("STORAGE_URL", format!("s3://registre-refused?region=us-east-1&endpoint={}", moto.endpoint())),
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", wrong_secret.to_string()),
    ])
    .expect("s3 config");
    services.storage = Storage::from_config(&s3.storage).expect("s3 storage");
    let (shutdown, _workers) = run_workers(&setup, &services).await;

    wait_for_row(&pool, first, "the first row failed once", Duration::from_secs(120), |r| r.1 >= 1).await;
    let (_, _, error, path) = row(&pool, first).await;
    let error = error.expect("error_message");
    assert!(error.starts_with("upload to storage failed: s3 storage: upload index/42---"), "{error}");
    assert!(error.contains("SignatureDoesNotMatch") || error.contains("403"), "{error}");
    assert!(!error.contains(wrong_secret) && !error.contains(&moto.secret_access_key), "{error}");
    assert_eq!(path, None);

    // The workers are still there: a row inserted now is claimed and fails the same way.
    let second = insert(&pool, "43").await;
    wait_for_row(&pool, second, "the second row failed once", Duration::from_secs(120), |r| r.1 >= 1).await;
    let (_, _, error, _) = row(&pool, second).await;
    assert!(error.is_some_and(|e| e.starts_with("upload to storage failed: s3 storage: upload index/43---")));

    stop(&shutdown).await;
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}
