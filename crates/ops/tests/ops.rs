//! The operations library against a real PostgreSQL (a fresh migrated database per test) and the
//! shared Redis (a unique SERVER_ID and rate-limit name per test): counts, pagination with rows
//! inserted meanwhile, enqueue validation and de-duplication under concurrency, retry, cancel
//! fencing through the queue API, and the live view of workers, capacity, rate limit and pool.

use std::collections::HashSet;
use std::sync::Arc;

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::{Config, EnvName};
use registre_ops::db::ListFilter;
use registre_ops::live::Live;
use registre_ops::{NewExtraction, Ops, OpsError};
use registre_domain::keys::PoolKeys;
use registre_domain::pool::QueueCounts;
use registre_pool::{Mode, PoolManager, Split};
use registre_queue::{migrate, DocumentSource, PgQueue, Queue, QueueSettings, Transition};
use registre_ratelimit::{Decision, RateLimitSettings, RateLimiter};
use registre_testkit::postgres::{insert_row, set_columns, TestDatabase};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const SETTINGS: QueueSettings =
    QueueSettings { lease_ttl_ms: 30_000, backoff_base_ms: 100, backoff_max_ms: 150, default_max_attempts: 3 };

struct Fixture {
    _db: TestDatabase,
    pool: PgPool,
    ops: Ops,
    config: Config,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    let pool = PgPoolOptions::new().max_connections(20).connect(db.url()).await.expect("pool");
    let redis = registre_testkit::shared_redis_url();
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", redis),
        ("SERVER_ID", registre_testkit::unique("ops")),
        ("OCR_RATE_LIMIT_NAME", registre_testkit::unique("rl")),
    ])
    .expect("config");
    let live = Live::from_config(&config).expect("redis");
    let ops = Ops::new(vec![(EnvName::Prod, Some(pool.clone()))], live);
    Fixture { _db: db, pool, ops, config }
}


fn index_request(number: &str) -> NewExtraction {
    NewExtraction {
        document_source: Some("index".into()),
        document_number: Some(number.into()),
        circonscription_fonciere: Some("Montréal".into()),
        cadastre: Some("Cadastre du Québec".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overview_counts_every_status_and_source_and_the_last_hour() {
    let f = fixture().await;
    for (source, status, n) in [("index", 1, 3), ("acte", 1, 2), ("index", 3, 1), ("acte", 4, 1), ("plan_cadastraux", 5, 2), ("index", 6, 1)] {
        for i in 0..n {
            insert_row(&f.pool, source, &format!("{source}-{status}-{i}"), status).await;
        }
    }
    let o = f.ops.overview(EnvName::Prod).await.expect("overview");
    let count = |status: i32, source: &str| {
        o.counts.iter().find(|c| c.status_id == status && c.document_source == source).map(|c| c.count).unwrap_or(0)
    };
    assert_eq!((count(1, "index"), count(1, "acte"), count(3, "index"), count(4, "acte"), count(5, "plan_cadastraux"), count(6, "index")), (3, 2, 1, 1, 2, 1));
    assert_eq!(o.counts.iter().map(|c| c.count).sum::<u64>(), 10);
    assert!(o.counts.iter().any(|c| c.status == "OCR en traitement"));
    assert!(o.oldest_waiting_seconds.extraction.is_some_and(|s| s >= 0.0));
    assert!(o.oldest_waiting_seconds.ocr.is_some());
    assert_eq!(o.completions_per_minute.len(), 60);
    assert_eq!(o.completions_per_minute.iter().map(|m| m.count).sum::<u64>(), 2, "both status-5 rows completed within the hour");
    // A row completed two hours ago is not in the last hour.
    let old = insert_row(&f.pool, "index", "old", 5).await;
    set_columns(&f.pool, old, "updated_at = now() - interval '2 hours'").await;
    let o = f.ops.overview(EnvName::Prod).await.expect("overview");
    assert_eq!(o.completions_per_minute.iter().map(|m| m.count).sum::<u64>(), 2);
    // Nothing waiting: no age.
    sqlx::query("UPDATE extraction_queue SET status_id = 5 WHERE status_id IN (1, 3)").execute(&f.pool).await.unwrap();
    let o = f.ops.overview(EnvName::Prod).await.expect("overview");
    assert_eq!((o.oldest_waiting_seconds.extraction, o.oldest_waiting_seconds.ocr), (None, None));
}

/// Non-zero completions per minute, keyed by minute (independent of where the hour window starts).
fn completed_minutes(o: &registre_ops::EnvOverview) -> std::collections::BTreeMap<chrono::DateTime<chrono::Utc>, u64> {
    o.completions_per_minute.iter().filter(|m| m.count > 0).map(|m| (m.minute, m.count)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_are_counted_incrementally_with_a_late_commit_of_the_previous_minute() {
    let f = fixture().await;
    for i in 0..3 {
        let id = insert_row(&f.pool, "acte", &format!("half-hour-{i}"), 5).await;
        set_columns(&f.pool, id, "updated_at = now() - interval '30 minutes'").await;
    }
    for i in 0..2 {
        insert_row(&f.pool, "index", &format!("now-{i}"), 5).await;
    }
    let first = f.ops.overview(EnvName::Prod).await.expect("overview");
    assert_eq!(first.completions_per_minute.len(), 60);
    assert_eq!(first.completions_per_minute.iter().map(|m| m.count).sum::<u64>(), 5);
    assert!(completed_minutes(&first).values().any(|n| *n == 3), "the three rows of 30 minutes ago share a minute: {first:?}");

    // After the first read (whose closed minutes are kept): four new completions, and one stamped
    // in the previous minute, as a transaction that began then and committed now is.
    for i in 0..4 {
        insert_row(&f.pool, "index", &format!("later-{i}"), 5).await;
    }
    let late = insert_row(&f.pool, "acte", "late", 5).await;
    set_columns(&f.pool, late, "updated_at = date_trunc('minute', now()) - interval '1 second'").await;
    let second = f.ops.overview(EnvName::Prod).await.expect("overview");
    assert_eq!(second.completions_per_minute.iter().map(|m| m.count).sum::<u64>(), 10);

    // The same minutes as a full recount by a process with nothing cached.
    let fresh = Ops::new(vec![(EnvName::Prod, Some(f.pool.clone()))], Live::from_config(&f.config).expect("redis"));
    let recount = fresh.overview(EnvName::Prod).await.expect("overview");
    assert_eq!(completed_minutes(&second), completed_minutes(&recount));
    // Rows per status and source, status 5 included (kept from a baseline plus the new minutes),
    // equal a full count of the table.
    let table: Vec<(i32, String, i64)> =
        sqlx::query_as("SELECT status_id, document_source::text, count(*) FROM extraction_queue GROUP BY 1, 2 ORDER BY 1, 2")
            .fetch_all(&f.pool)
            .await
            .unwrap();
    let shown: Vec<(i32, String, i64)> = second.counts.iter().map(|c| (c.status_id, c.document_source.clone(), c.count as i64)).collect();
    assert_eq!(shown, table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_neither_skips_nor_repeats_rows_while_rows_are_inserted() {
    let f = fixture().await;
    let mut original = Vec::new();
    for i in 0..25 {
        original.push(insert_row(&f.pool, if i % 2 == 0 { "index" } else { "acte" }, &format!("n{i}"), 1).await);
    }
    let mut seen = Vec::new();
    let mut filter = ListFilter { limit: 10, ..Default::default() };
    let mut pages = 0;
    loop {
        let page = f.ops.list(EnvName::Prod, &filter).await.expect("page");
        pages += 1;
        seen.extend(page.rows.iter().map(|r| r.id));
        // New rows arrive between pages: they are newer, so they belong before page 1.
        for i in 0..3 {
            insert_row(&f.pool, "index", &format!("late-{pages}-{i}"), 1).await;
        }
        match page.next_cursor {
            Some(c) => filter.after = Some(registre_ops::Cursor::decode(&c).expect("our cursor decodes")),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<Uuid> = original.iter().rev().copied().collect();
    assert_eq!(seen, expected, "every original row exactly once, newest first");

    // Filters: status and source.
    let acte = f
        .ops
        .list(EnvName::Prod, &ListFilter { status_id: Some(1), document_source: Some("acte".into()), limit: 100, after: None })
        .await
        .unwrap();
    assert_eq!(acte.rows.len(), 12);
    assert!(acte.rows.iter().all(|r| r.document_source == "acte" && r.status == "En attente"));
    assert!(acte.next_cursor.is_none());
    let none = f.ops.list(EnvName::Prod, &ListFilter { status_id: Some(4), limit: 10, ..Default::default() }).await.unwrap();
    assert!(none.rows.is_empty() && none.next_cursor.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_validates_and_never_queues_an_identical_document_twice_even_concurrently() {
    let f = fixture().await;
    let bad = NewExtraction { document_source: Some("acte".into()), document_number: Some("1".into()), ..Default::default() };
    match f.ops.enqueue(EnvName::Prod, &bad).await {
        Err(OpsError::Invalid(errors)) => {
            let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
            assert_eq!(fields, ["circonscription_fonciere", "acte_type"]);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }

    let ops = Arc::new(f.ops);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let ops = ops.clone();
            tokio::spawn(async move { ops.enqueue(EnvName::Prod, &index_request("4 866 594")).await.expect("enqueue") })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for t in tasks {
        let e = t.await.unwrap();
        ids.insert(e.row.row.id);
        if !e.duplicate {
            fresh += 1;
        }
        assert_eq!(e.row.row.status_id, 1);
        assert_eq!(e.row.document_number_normalized.as_deref(), Some("4866594"));
    }
    assert_eq!((ids.len(), fresh), (1, 1), "16 concurrent identical requests: one row, 15 duplicates");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue").fetch_one(&f.pool).await.unwrap();
    assert_eq!(rows, 1);

    // Another cadastre is another document; a final row does not block a new request.
    let mut other = index_request("4 866 594");
    other.cadastre = Some("Paroisse de Montréal".into());
    assert!(!ops.enqueue(EnvName::Prod, &other).await.unwrap().duplicate);
    let id = *ids.iter().next().unwrap();
    set_columns(&f.pool, id, "status_id = 5").await;
    let again = ops.enqueue(EnvName::Prod, &index_request("4 866 594")).await.unwrap();
    assert!(!again.duplicate);
    assert_ne!(again.row.row.id, id);
}

/// Duplicates are judged on the normalized number: "4866594" and "4 866 594" sent at once by many
/// callers are one document; an index's identity includes its cadastre and désignation secondaire
/// (not an acte type), an acte's its acte type (not a cadastre); and a row an older system wrote
/// with no normalized number is matched too, before and after migration 0057 normalizes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_are_judged_on_the_normalized_number_and_the_identity_of_each_source() {
    let f = fixture().await;
    let ops = Arc::new(Ops::new(vec![(EnvName::Prod, Some(f.pool.clone()))], Live::from_config(&f.config).expect("redis")));
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let ops = ops.clone();
            let number = if n % 2 == 0 { "4866594" } else { "4 866 594" };
            tokio::spawn(async move { ops.enqueue(EnvName::Prod, &index_request(number)).await.expect("enqueue") })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().row.row.id);
    }
    assert_eq!(ids.len(), 1, "both spellings, concurrently: one row");
    // An index: another désignation secondaire is another document; an acte type is not part of it.
    let mut lot = index_request("4866594");
    lot.designation_secondaire = Some("Lot 12".into());
    assert!(!ops.enqueue(EnvName::Prod, &lot).await.unwrap().duplicate);
    let mut typed = index_request("4 866 594");
    typed.acte_type = Some("Vente".into());
    assert!(ops.enqueue(EnvName::Prod, &typed).await.unwrap().duplicate, "an acte type does not make another index");
    // An acte: its acte type is part of its identity, a cadastre is not.
    let acte = |number: &str, acte_type: &str, cadastre: Option<&str>| NewExtraction {
        document_source: Some("acte".into()),
        document_number: Some(number.into()),
        circonscription_fonciere: Some("Montréal".into()),
        acte_type: Some(acte_type.into()),
        cadastre: cadastre.map(str::to_string),
        ..Default::default()
    };
    assert!(!ops.enqueue(EnvName::Prod, &acte("12 345 678", "Vente", None)).await.unwrap().duplicate);
    assert!(ops.enqueue(EnvName::Prod, &acte("12345678", "Vente", Some("Cadastre du Québec"))).await.unwrap().duplicate);
    assert!(!ops.enqueue(EnvName::Prod, &acte("12345678", "Hypothèque", None)).await.unwrap().duplicate);

    // Rows of an older system: no normalized number. Matched as they are, then normalized in
    // batches when migration 0057 runs again (here: its record removed), then matched the same way.
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id)
         SELECT 'index', '7 000 ' || n, 'Québec', 'Cadastre du Québec', 1 FROM generate_series(1, 2500) n",
    )
    .execute(&f.pool)
    .await
    .unwrap();
    let legacy = |n: u32| NewExtraction {
        circonscription_fonciere: Some("Québec".into()),
        ..index_request(&format!("7000{n}"))
    };
    assert!(ops.enqueue(EnvName::Prod, &legacy(17)).await.unwrap().duplicate, "a NULL-normalized row is matched");
    sqlx::query("DELETE FROM registre_schema_migrations WHERE name = '0057_ops_identity_normalized'").execute(&f.pool).await.unwrap();
    let mut conn = f.pool.acquire().await.unwrap();
    let report = migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    // The migration, then the function definitions, which every run that applies a migration
    // applies again (crates/queue/src/migrate.rs).
    assert_eq!(report.applied.first(), Some(&"0057_ops_identity_normalized"));
    assert!(report.applied[1..].iter().all(|n| n.starts_with("functions/")), "{:?}", report.applied);
    drop(conn);
    let (left, normalized): (i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM extraction_queue WHERE document_number_normalized IS NULL),
                (SELECT document_number_normalized FROM extraction_queue WHERE document_number = '7 000 2500')",
    )
    .fetch_one(&f.pool)
    .await
    .unwrap();
    assert_eq!((left, normalized.as_deref()), (0, Some("70002500")));
    assert!(ops.enqueue(EnvName::Prod, &legacy(2500)).await.unwrap().duplicate);
    assert!(!ops.enqueue(EnvName::Prod, &legacy(2501)).await.unwrap().duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_goes_back_to_the_failed_stage_and_refuses_other_statuses() {
    let f = fixture().await;
    // Extraction failed: back to 1, attempts reset.
    let fetch_failed = insert_row(&f.pool, "index", "a", 4).await;
    set_columns(&f.pool, fetch_failed, "attemtps = 3, error_message = 'boom', next_attempt_at = now() + interval '1 hour'").await;
    let d = f.ops.retry(EnvName::Prod, fetch_failed).await.expect("retry");
    assert_eq!((d.row.status_id, d.row.attempts, d.row.error_message.clone(), d.next_attempt_at), (1, Some(0), None, None));
    // The row is claimable at once.
    let queue = PgQueue::from_pool(EnvName::Prod, f.pool.clone(), SETTINGS);
    assert_eq!(queue.claim_extraction("w", Uuid::new_v4()).await.unwrap().map(|j| j.id), Some(fetch_failed));

    // Only OCR failed and the PDF is stored: back to 3, OCR attempts reset, fetch attempts kept.
    let ocr_failed = insert_row(&f.pool, "acte", "b", 4).await;
    set_columns(&f.pool, ocr_failed, "supabase_path = 'actes/b.pdf', attemtps = 1, ocr_attempts = 3, ocr_error = 'tesseract died'").await;
    let d = f.ops.retry(EnvName::Prod, ocr_failed).await.expect("retry");
    assert_eq!((d.row.status_id, d.row.attempts, d.row.ocr_attempts, d.row.ocr_error.clone()), (3, Some(1), Some(0), None));
    assert_eq!(queue.claim_ocr("o", DocumentSource::Acte, Uuid::new_v4()).await.unwrap().map(|j| j.id), Some(ocr_failed));

    // Any other status: a conflict with the reason; unknown id: not found.
    let waiting = insert_row(&f.pool, "index", "c", 1).await;
    match f.ops.retry(EnvName::Prod, waiting).await {
        Err(OpsError::Conflict { status_id: 1, reason }) => assert!(reason.contains("En attente"), "{reason}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(f.ops.retry(EnvName::Prod, Uuid::new_v4()).await, Err(OpsError::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_fences_off_the_worker_holding_the_row() {
    let f = fixture().await;
    let queue = PgQueue::from_pool(EnvName::Prod, f.pool.clone(), SETTINGS);

    // Extraction stage: claimed, cancelled, then the worker tries to finish.
    let id = f.ops.enqueue(EnvName::Prod, &index_request("111")).await.unwrap().row.row.id;
    let job = queue.claim_extraction("registre-worker-1", Uuid::new_v4()).await.unwrap().expect("claimed");
    assert_eq!(job.id, id);
    let d = f.ops.cancel(EnvName::Prod, id, "cancelled by alice through registre-api").await.expect("cancel");
    assert_eq!(d.row.status_id, 4);
    assert_eq!(d.row.error_message.as_deref(), Some("cancelled by alice through registre-api"));
    assert_eq!(queue.renew(&job).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.complete_extraction(&job, "index/111.pdf", None).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.release(&job).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.fail(&job, "late").await.unwrap(), registre_queue::FailOutcome::NotOwner);
    let after = f.ops.get(EnvName::Prod, id).await.unwrap();
    assert_eq!((after.row.status_id, after.row.supabase_path.clone()), (4, None), "the late worker changed nothing");

    // OCR stage likewise.
    let ocr = insert_row(&f.pool, "acte", "222", 3).await;
    set_columns(&f.pool, ocr, "supabase_path = 'actes/222.pdf'").await;
    let job = queue.claim_ocr("ocr-worker-1", DocumentSource::Acte, Uuid::new_v4()).await.unwrap().expect("claimed");
    f.ops.cancel(EnvName::Prod, ocr, "cancelled by bob").await.expect("cancel");
    assert_eq!(queue.complete_ocr(&job, "texte", "texte corrigé").await.unwrap(), Transition::NotOwner);
    let after = f.ops.get(EnvName::Prod, ocr).await.unwrap();
    assert_eq!((after.row.status_id, after.file_content_excerpt), (4, None));

    // Final rows are refused; a waiting row is cancelled without any worker.
    match f.ops.cancel(EnvName::Prod, ocr, "again").await {
        Err(OpsError::Conflict { status_id: 4, reason }) => assert!(reason.contains("final"), "{reason}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let waiting = insert_row(&f.pool, "index", "333", 1).await;
    assert_eq!(f.ops.cancel(EnvName::Prod, waiting, "x").await.unwrap().row.status_id, 4);
    assert!(matches!(f.ops.cancel(EnvName::Prod, Uuid::new_v4(), "x").await, Err(OpsError::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detail_carries_the_ocr_text_excerpt_and_unknown_environments_are_named() {
    let f = fixture().await;
    let id = insert_row(&f.pool, "index", "444", 5).await;
    let long = "é".repeat(5000);
    sqlx::query("UPDATE extraction_queue SET file_content = $2, boosted_file_content = 'corrigé' WHERE id = $1")
        .bind(id)
        .bind(&long)
        .execute(&f.pool)
        .await
        .unwrap();
    let d = f.ops.get(EnvName::Prod, id).await.unwrap();
    assert_eq!(d.file_content_excerpt.as_ref().map(|t| t.chars().count()), Some(2000));
    assert_eq!(d.file_content_chars, Some(5000));
    assert_eq!(d.boosted_file_content_excerpt.as_deref(), Some("corrigé"));
    assert_eq!(d.row.status, "Extraction complété");
    match f.ops.env("staging") {
        Err(e @ OpsError::UnknownEnvironment(..)) => assert!(e.to_string().contains("configured: prod"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.ops.env("prod").unwrap(), EnvName::Prod);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_view_joins_capacity_leases_pool_assignments_and_the_rate_limit() {
    let f = fixture().await;
    let conn = registre_runtime::redis_connection(&f.config.redis_url).unwrap();
    let capacity = CapacityManager::new(conn.clone(), CapacitySettings::from_config(&f.config));
    assert!(capacity.try_lease("registre-worker-1-abc", WorkerType::Registre).await.unwrap().is_ok());
    assert!(capacity.try_lease("ocr-worker-1", WorkerType::IndexOcr).await.unwrap().is_ok());
    let pool = PoolManager::new(conn.clone(), PoolKeys::for_server(f.config.server.id.as_deref()), "test".into());
    pool.assign("ocr-worker-1", Mode::Index).await.unwrap();
    pool.publish_allocation(Split { index: 1, acte: 1 }, QueueCounts { index: 4, acte: 2 }).await.unwrap();
    let limiter = RateLimiter::new(conn.clone(), RateLimitSettings::from_config(&f.config.rate_limit)).unwrap();
    for _ in 0..3 {
        assert!(matches!(limiter.acquire(1000).await.unwrap(), Decision::Granted(_)));
    }
    limiter.cooldown(std::time::Duration::from_secs(30)).await.unwrap();

    // The server's own budget (what every lease heartbeat publishes), found through the registry.
    capacity.publish_budget().await.unwrap();
    let view = f.ops.live().view().await.expect("live view");
    let server = f.config.server.id.clone();
    let mine: Vec<_> = view.workers.iter().filter(|w| w.server == server).collect();
    assert_eq!(mine.len(), 2, "{view:?}");
    let ocr = mine.iter().find(|w| w.worker_id == "ocr-worker-1").unwrap();
    assert_eq!((ocr.kind.as_str(), ocr.assigned_mode.as_deref(), ocr.cpu), ("index-ocr", Some("index"), 1.5));
    let cap = view.capacity.iter().find(|c| c.server == server).unwrap();
    assert_eq!((cap.cpu_allocated, cap.ram_allocated, cap.cpu_usable, cap.workers), (4.5, 1.75, Some(6.4), 2));
    let p = view.pools.iter().find(|p| p.server == server).unwrap();
    assert_eq!((p.allocation.index_workers, p.allocation.queue.index), (1, 4));
    assert_eq!((view.rate_limit.requests, view.rate_limit.tokens, view.rate_limit.requests_limit), (3, 3000, 1600));
    assert!(view.rate_limit.cooldown_seconds > 0.0);
    f.ops.live().ping().await.expect("ping");

    // Released leases disappear from the view.
    capacity.release("registre-worker-1-abc").await.unwrap();
    capacity.release("ocr-worker-1").await.unwrap();
    let view = f.ops.live().view().await.unwrap();
    assert!(view.workers.iter().all(|w| w.server != server));
    // The pool keys do not expire: remove this test's, so the shared Redis keeps no stale server.
    let keys = pool.keys().clone();
    let mut redis = registre_testkit::redis_sync(&registre_testkit::shared_redis_url());
    let _: () = redis::cmd("DEL").arg(&keys.allocation).arg(&keys.assignments).query(&mut redis).unwrap();
}
