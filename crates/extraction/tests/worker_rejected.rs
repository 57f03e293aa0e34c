//! A row the registry rejects (its error cell: a lot that does not exist) goes to Erreur (4) at
//! once with the site's text and one attempt, while a site failure on another row is retried with
//! backoff: the worker loop of start-all-workers with a stand-in fetcher answering as the registry
//! fetcher does. Real Redis (unique SERVER_ID) and PostgreSQL (fresh database).

mod common;

use std::sync::Arc;
use std::time::Duration;

use registre_fetch::{BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};
use common::{insert, row, run_workers, services, setup, stop, wait_for_row, wait_until};

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
    let (shutdown, _workers) = run_workers(&setup, &services).await;

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
    wait_for_row(&pool, down, "down-1 failed its 3 attempts", Duration::from_secs(30), |r| r.0 == 4).await;
    let (_, attempts, error, _) = row(&pool, down).await;
    assert_eq!(attempts, 3);
    assert!(error.is_some_and(|e| e.contains("connection refused")));

    stop(&shutdown).await;
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}
