//! The worker loop through the library API start-all-workers uses ([`Services`] built by hand,
//! [`start_workers`]), with a scripted fetcher standing in for the browser: a crash releases the
//! row without counting an attempt, a document that crashes the browser every time ends in 4
//! (Erreur) after MAX_BROWSER_CRASHES with that reason (directly and through Supabase REST),
//! EXTRACTION_TIMEOUT fails it with a readable message, a completion the database refuses for the
//! row's data fails that row while the environment stays up, and on shutdown a job that finishes
//! within the grace period completes while one that does not is released; a row lost while fetched
//! counts `lost`.
//! Real Redis (unique SERVER_ID) and PostgreSQL (fresh database).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;


use registre_config::{Config, EnvName};
use registre_fetch::{BoxFuture, DocumentRequest, FetchError, FetchedDocument, Fetcher};
use registre_runtime::Shutdown;
use registre_extraction::{start_workers, WorkerSettings};
use common::{insert, row, run_workers, services, setup, stop, wait_for_row, wait_until};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

/// `crash-*`: the browser crashes on the first fetch, works after; `poison-*`: the browser crashes
/// every time; `hang-*`: never answers; `gated-*`: answers once the test opens the gate;
/// anything else: at once.
#[derive(Default)]
struct Scripted {
    crashes: AtomicU32,
    gate: tokio::sync::Notify,
    gate_open: std::sync::atomic::AtomicBool,
}

impl Fetcher for Scripted {
    fn fetch<'a>(&'a self, request: &'a DocumentRequest) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let n = request.document_number.as_str();
            if n.starts_with("crash") && self.crashes.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(FetchError::BrowserCrashed("chromedriver exited (signal 9)".into()));
            }
            if n.starts_with("poison") {
                self.crashes.fetch_add(1, Ordering::SeqCst);
                return Err(FetchError::BrowserCrashed("chrome exited (SIGSEGV) rendering this document".into()));
            }
            if n.starts_with("hang") {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if n.starts_with("gated") {
                while !self.gate_open.load(Ordering::SeqCst) {
                    let notified = self.gate.notified();
                    if self.gate_open.load(Ordering::SeqCst) {
                        break;
                    }
                    notified.await;
                }
            }
            Ok(FetchedDocument { bytes: PDF.to_vec(), content_type: "application/pdf".into(), source: format!("scripted:{n}"), fetched_as: None })
        })
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_releases_without_an_attempt_and_timeout_fails_readably() {
    let setup = setup("rw-crash").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let crash = insert(&pool, "crash-1").await;
    let hang = insert(&pool, "hang-1").await;
    let services = services(&setup, Arc::new(Scripted::default())).await;
    let shutdown = Shutdown::new();
    let workers = start_workers(&services, &WorkerSettings::from_config(&setup.config.registre), &shutdown).await;
    assert_eq!(workers.started, 2);
    workers.begin();

    wait_for_row(&pool, crash, "crash-1 completed", Duration::from_secs(60), |r| r.0 == 3).await;
    let (_, attempts, _, path) = row(&pool, crash).await;
    assert_eq!(attempts, 0, "a browser crash counts no attempt");
    assert!(path.is_some_and(|p| p.starts_with("index/crash-1---")));

    wait_for_row(&pool, hang, "hang-1 failed", Duration::from_secs(60), |r| r.1 >= 1).await;
    let (_, _, error, _) = row(&pool, hang).await;
    let error = error.expect("error_message");
    assert!(error.starts_with("timed out after 0.3s: fetching index hang-1 (EXTRACTION_TIMEOUT)"), "{error}");
    let views = workers.board.snapshot();
    assert_eq!(views.iter().map(|v| v.released).sum::<u64>(), 1, "{views:?}");

    stop(&shutdown).await;
    let status = services.capacity.status().await.expect("status");
    assert!(status.workers.is_empty() && status.cpu_allocated.0 == 0, "{status:?}");
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_a_job_that_finishes_within_the_grace_completes_and_one_that_does_not_is_released() {
    let setup = setup("rw-grace").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let long = insert(&pool, "hang-forever").await;
    let short = insert(&pool, "gated-1").await;
    let fetcher = Arc::new(Scripted::default());
    let services = services(&setup, fetcher.clone()).await;
    let shutdown = Shutdown::new();
    let mut settings = WorkerSettings::from_config(&setup.config.registre);
    // Long enough that the gated job, released right after the shutdown, surely finishes within it.
    settings.shutdown_grace = Duration::from_secs(8);
    settings.extraction_timeout = Duration::from_secs(3600);
    let workers = start_workers(&services, &settings, &shutdown).await;
    workers.begin();
    wait_until("both rows claimed", Duration::from_secs(60), || {
        let conn = pool.clone();
        async move { row(&conn, long).await.0 == 2 && row(&conn, short).await.0 == 2 }
    })
    .await;

    // The shutdown comes while both are being fetched; then the gated one's answer arrives.
    shutdown.trigger();
    fetcher.gate_open.store(true, Ordering::SeqCst);
    fetcher.gate.notify_waiters();
    assert!(shutdown.wait(Duration::from_secs(60)).await, "workers stop");

    let (status, attempts, _, path) = row(&pool, short).await;
    assert_eq!((status, attempts), (3, 0), "the job that finished within the grace period completed");
    assert!(path.is_some());
    let (status, attempts, _, path) = row(&pool, long).await;
    assert_eq!((status, attempts, path), (1, 0, None), "the job that did not went back to waiting, no attempt counted");
    let status = services.capacity.status().await.expect("status");
    assert!(status.workers.is_empty() && status.cpu_allocated.0 == 0, "leases released: {status:?}");
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}

/// A document that crashes the browser every time: each crash releases the row without an
/// attempt, but after MAX_BROWSER_CRASHES it ends in 4 (Erreur) with that reason; it never loops.
async fn poisonous_document_ends_in_erreur(rest: bool) {
    let mut setup = setup(if rest { "rw-poison-rest" } else { "rw-poison" }).await;
    let key = "service-role-key.worker-loop";
    let _stand_in = if rest {
        let stand_in = registre_testkit::postgrest::PostgrestStandIn::start(setup.db.url(), key).await;
        setup.config = Config::from_vars([
            ("REDIS_URL", registre_testkit::shared_redis_url()),
            ("SERVER_ID", registre_testkit::unique("rw-poison-rest")),
            ("PROD_SUPABASE_URL", stand_in.url.to_string()),
            ("PROD_SUPABASE_SERVICE_KEY", key.to_string()),
            ("STORAGE_URL", format!("file://{}", setup.storage_dir.display())),
            ("QUEUE_POLL_INTERVAL_MS", "50".into()),
            ("WORKER_COUNT", "2".into()),
            ("WORKER_ID", registre_testkit::unique("w")),
        ])
        .expect("config");
        Some(stand_in)
    } else {
        None
    };
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let poison = insert(&pool, "poison-1").await;
    let fine = insert(&pool, "fine-1").await;
    let fetcher = Arc::new(Scripted::default());
    let services = services(&setup, fetcher.clone()).await;
    let (shutdown, _workers) = run_workers(&setup, &services).await;

    wait_for_row(&pool, poison, "poison-1 in Erreur", Duration::from_secs(120), |r| r.0 == 4).await;
    let (_, attempts, error, _) = row(&pool, poison).await;
    let crashes: i32 = sqlx::query_scalar("SELECT browser_crashes FROM extraction_queue WHERE id = $1").bind(poison).fetch_one(&pool).await.expect("crashes");
    let max = registre_extraction::MAX_BROWSER_CRASHES;
    assert_eq!((attempts, crashes), (0, max), "crashes are counted apart from attempts");
    let error = error.expect("error_message");
    assert!(error.starts_with(&format!("the browser crashed {max} times on this document (limit {max}): ")), "{error}");
    assert!(error.contains("SIGSEGV"), "{error}");
    assert_eq!(fetcher.crashes.load(Ordering::SeqCst), max as u32, "fetched exactly {max} times, then never again");
    wait_for_row(&pool, fine, "fine-1 completed", Duration::from_secs(60), |r| r.0 == 3).await;
    stop(&shutdown).await;
    assert_eq!(fetcher.crashes.load(Ordering::SeqCst), max as u32, "the row in Erreur was never claimed again");
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_crashes_the_browser_every_time_ends_in_erreur() {
    poisonous_document_ends_in_erreur(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_crashes_the_browser_every_time_ends_in_erreur_through_supabase_rest() {
    poisonous_document_ends_in_erreur(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_refused_for_the_rows_data_fails_that_row_and_the_environment_stays_up() {
    let setup = setup("rw-rowerr").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    // A production rule one row's data breaks: its object name (from its document number) is too long.
    sqlx::query("ALTER TABLE extraction_queue ADD CONSTRAINT supabase_path_short CHECK (length(supabase_path) < 80)")
        .execute(&pool)
        .await
        .expect("constraint");
    let long = insert(&pool, &"L".repeat(90)).await;
    let fine = insert(&pool, "fine-2").await;
    let services = services(&setup, Arc::new(Scripted::default())).await;
    let (shutdown, _workers) = run_workers(&setup, &services).await;
    wait_for_row(&pool, long, "the long row failed once", Duration::from_secs(60), |r| r.1 >= 1).await;
    let (_, _, error, path) = row(&pool, long).await;
    let error = error.expect("error_message");
    assert!(error.contains("the queue refused the completion") && error.contains("supabase_path_short"), "{error}");
    assert_eq!(path, None);
    wait_for_row(&pool, fine, "fine-2 completed", Duration::from_secs(60), |r| r.0 == 3).await;
    assert!(services.queue.is_available(EnvName::Prod), "a row's error never takes the environment down");
    stop(&shutdown).await;
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}

/// A row taken away from its worker while the document is fetched (an operator cancels it: the
/// claim token is cleared) is counted `lost` in registre_jobs_total, not `released` (before the
/// fix it was `released`, so the line below never appeared): nothing was given back by this worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lost_while_fetching_counts_as_lost_not_released() {
    let setup = setup("rw-lost").await;
    let pool = sqlx::PgPool::connect(setup.db.url()).await.expect("connect");
    let lost = insert(&pool, "gated-lost").await;
    let fetcher = Arc::new(Scripted::default());
    let services = services(&setup, fetcher.clone()).await;
    let (shutdown, _workers) = run_workers(&setup, &services).await;
    wait_for_row(&pool, lost, "the row claimed", Duration::from_secs(60), |r| r.0 == 2).await;
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM ops_cancel($1, 'cancelled by the test')")
        .bind(lost)
        .fetch_one(&pool)
        .await
        .expect("cancel");
    assert_eq!(outcome, "cancelled");
    let lost_line = "registre_jobs_total{stage=\"extraction\",outcome=\"lost\"} 1";
    let before = registre_telemetry::render();
    assert!(!before.contains(lost_line), "{before}");
    fetcher.gate_open.store(true, Ordering::SeqCst);
    fetcher.gate.notify_waiters();
    wait_until("the lost job counted", Duration::from_secs(60), || async { registre_telemetry::render().contains(lost_line) }).await;
    assert_eq!(row(&pool, lost).await.0, 4, "the cancelled row stays cancelled");
    stop(&shutdown).await;
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}
