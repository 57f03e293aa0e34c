//! The state changes on a real PostgreSQL: many workers drain a queue exactly once; a worker that
//! stops heartbeating loses its row and its late complete is refused; fail backs off and ends in 4;
//! release counts no attempt; the OCR stage has its own counters.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{count_status, insert, row, update_row, SETTINGS};
use registre_testkit::postgres::insert_row;
use registre_queue::{status, DocumentSource, FailOutcome, Heartbeat, Queue, Stage, Transition};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_workers_drain_five_thousand_rows_exactly_once() {
    let (_db, queue) = common::queue(SETTINGS, 16).await;
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, created_at)
         SELECT (ARRAY['acte', 'index', 'plan_cadastraux'])[1 + n % 3], 'N-' || n, now() + n * interval '1 microsecond'
           FROM generate_series(1, 5000) AS n",
    )
    .execute(queue.pool())
    .await
    .unwrap();

    let queue = Arc::new(queue);
    let seen: Arc<Mutex<HashMap<Uuid, u32>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..32 {
        let (queue, seen) = (queue.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            let worker_id = format!("drain-{w}");
            let mut done = 0u32;
            while let Some(job) = queue.claim_extraction(&worker_id, uuid::Uuid::new_v4()).await.unwrap() {
                *seen.lock().unwrap().entry(job.id).or_default() += 1;
                let path = format!("{}/{}.pdf", job.document_source, job.document_number);
                assert_eq!(queue.complete_extraction(&job, &path, None).await.unwrap(), Transition::Applied);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(total, 5000);
    assert_eq!(seen.len(), 5000, "every row claimed");
    assert!(seen.values().all(|n| *n == 1), "a row was claimed twice");
    let pool = queue.pool();
    assert_eq!(count_status(pool, status::WAITING).await, 0);
    assert_eq!(count_status(pool, status::EXTRACTING).await, 0);
    // plan_cadastraux skips OCR: 2 → 5; the others wait for OCR in 3.
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE document_source = 'plan_cadastraux' AND status_id = 5")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(plans, 1667);
    assert_eq!(count_status(pool, status::DOWNLOADED).await, 5000 - 1667);
    let paths: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE supabase_path = document_source || '/' || document_number || '.pdf'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(paths, 5000);
}

/// Makes a row's lease (either stage) already expired, as time passing without heartbeats would:
/// deterministic, where sleeping past a short TTL depends on the machine's speed.
async fn expire_lease(pool: &sqlx::PgPool, id: Uuid) {
    let set = "lease_expires_at = CASE WHEN status_id = 2 THEN now() - interval '1 second' END,
               ocr_lease_expires_at = CASE WHEN status_id = 6 THEN now() - interval '1 second' END";
    update_row(pool, id, set).await;
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_loses_its_row_and_its_late_complete_is_refused() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let id = insert(queue.pool(), "index", "1234").await;

    let stalled = queue.claim_extraction("stalled", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(stalled.id, id);
    assert_eq!(queue.reap_expired().await.unwrap(), 0, "the lease (30 s) is still valid");
    // The stalled worker never renews: its lease runs out.
    expire_lease(queue.pool(), id).await;
    assert_eq!(queue.reap_expired().await.unwrap(), 1);
    let (st, attempts, _, error) = row(queue.pool(), id).await;
    assert_eq!((st, attempts), (status::WAITING, 1), "reaping counts the attempt");
    assert!(error.unwrap_or_default().contains("lease expired: worker stalled"));

    let fresh = queue.claim_extraction("fresh", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(fresh.id, id);
    assert_ne!(fresh.claim_token, stalled.claim_token);
    assert_eq!(queue.renew(&stalled).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.complete_extraction(&stalled, "index/stale.pdf", None).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.fail(&stalled, "late").await.unwrap(), FailOutcome::NotOwner);
    assert_eq!(queue.release(&stalled).await.unwrap(), Transition::NotOwner);
    assert_eq!(queue.complete_extraction(&fresh, "index/fresh.pdf", None).await.unwrap(), Transition::Applied);
    let path: String = sqlx::query_scalar("SELECT supabase_path FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(queue.pool())
        .await
        .unwrap();
    assert_eq!(path, "index/fresh.pdf", "the late worker never overwrote the new owner's work");
}

async fn lease_of(pool: &sqlx::PgPool, id: Uuid) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT lease_expires_at FROM extraction_queue WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn heartbeats_keep_the_lease_and_report_when_it_is_lost() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let id = insert(queue.pool(), "acte", "77").await;
    let queue = Arc::new(queue);
    let job = queue.claim_extraction("beating", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    let first = lease_of(queue.pool(), id).await;
    let heartbeat = Heartbeat::start(queue.clone(), &job, Duration::from_millis(50));
    // Heartbeats push the lease forward (polled until three renewals were seen, however slow the machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = vec![first];
    while seen.len() < 4 {
        assert!(Instant::now() < deadline, "the heartbeat never renewed the lease: {seen:?}");
        let now = lease_of(queue.pool(), id).await;
        if now > *seen.last().unwrap() {
            seen.push(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queue.reap_expired().await.unwrap(), 0, "renewed leases are not reaped");
    assert!(!heartbeat.is_lost());

    // An operator (or a long stall) expires the lease and the reaper takes the row, in ONE
    // transaction: a heartbeat landing in between waits on the row lock and then finds the claim
    // gone, where before it could renew between the UPDATE and the reap.
    let mut tx = queue.pool().begin().await.unwrap();
    update_row(&mut *tx, id, "lease_expires_at = now() - interval '1 second'").await;
    let reaped: i32 = sqlx::query_scalar("SELECT queue_reap_expired(3)").fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reaped, 1);
    tokio::time::timeout(Duration::from_secs(60), heartbeat.lost().cancelled()).await.expect("lost must fire");
    assert_eq!(row(queue.pool(), id).await.0, status::WAITING);
}

/// The workers' heartbeats (`MultiQueue::keep_alive`) share one keeper task per queue: every kept
/// lease is renewed, a dropped one no more, and a lost one is reported while the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_leases_are_renewed_until_dropped_and_a_lost_one_is_reported() {
    let (db, admin) = common::database(2).await;
    let ids = [insert(&admin, "acte", "K-1").await, insert(&admin, "acte", "K-2").await, insert(&admin, "acte", "K-3").await];
    let config = registre_config::Config::from_vars([("PROD_DATABASE_URL", db.url()), ("QUEUE_HEARTBEAT_MS", "50")]).unwrap();
    let queue = Arc::new(registre_queue::MultiQueue::connect(&config.environments, &config.queue, 4).unwrap());
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(queue.claim_any_extraction("keeper").await.expect("claimed"));
    }
    let first: Vec<_> = futures_util::future::join_all(ids.iter().map(|id| lease_of(&admin, *id))).await;
    let kept = [queue.keep_alive(&jobs[0]), queue.keep_alive(&jobs[1]), queue.keep_alive(&jobs[2])];
    // Every kept lease moves forward (polled, however slow the machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    for (n, id) in ids.iter().enumerate() {
        while lease_of(&admin, *id).await <= first[n] {
            assert!(Instant::now() < deadline, "lease {n} was never renewed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A dropped heartbeat renews no more (a renewal in flight when it was dropped lands first).
    let [a, b, c] = kept;
    drop(c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = lease_of(&admin, ids[2]).await;
    // Row 0 is reaped (its lease expired by an operator): its heartbeat reports the loss.
    let mut tx = admin.begin().await.unwrap();
    update_row(&mut *tx, ids[0], "lease_expires_at = now() - interval '1 second'").await;
    let reaped: i32 = sqlx::query_scalar("SELECT queue_reap_expired(3)").fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reaped, 1);
    tokio::time::timeout(Duration::from_secs(60), a.lost().cancelled()).await.expect("lost must fire");
    // Row 1 goes on being renewed after that.
    let before = lease_of(&admin, ids[1]).await;
    while lease_of(&admin, ids[1]).await <= before {
        assert!(Instant::now() < deadline, "lease 1 stopped being renewed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!b.is_lost());
    assert_eq!(lease_of(&admin, ids[2]).await, stopped, "a dropped heartbeat renewed its lease");
}

/// The row's backoff (either stage) is over, as waiting it out would make it: deterministic.
async fn backoff_over(pool: &sqlx::PgPool, id: Uuid) {
    let set = "next_attempt_at = CASE WHEN next_attempt_at IS NOT NULL THEN now() - interval '1 ms' END,
               ocr_next_attempt_at = CASE WHEN ocr_next_attempt_at IS NOT NULL THEN now() - interval '1 ms' END";
    update_row(pool, id, set).await;
}

#[tokio::test]
async fn fail_backs_off_exponentially_capped_then_errors_at_max_attempts() {
    // base 100 ms, cap 150 ms, 3 attempts.
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool().clone();
    let id = insert(&pool, "acte", "A-1").await;
    let backoff_ms = |pool: sqlx::PgPool| async move {
        let ms: f64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM next_attempt_at - updated_at) * 1000)::float8 FROM extraction_queue WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        ms.round() as i64
    };

    let job = queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    match queue.fail(&job, "registre indisponible").await.unwrap() {
        FailOutcome::Retry { attempts: 1, .. } => {}
        other => panic!("expected a retry after attempt 1, got {other:?}"),
    }
    assert_eq!(backoff_ms(pool.clone()).await, 100);
    assert_eq!(row(&pool, id).await, (status::WAITING, 1, 0, Some("registre indisponible".into())));
    // Not claimable during its backoff: deterministic with a backoff far longer than this check.
    update_row(&pool, id, "next_attempt_at = now() + interval '1 hour'").await;
    assert!(queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().is_none(), "not claimable during its backoff");

    backoff_over(&pool, id).await;
    let job = queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().expect("claimable after its backoff");
    assert_eq!(job.attempts, 1);
    assert!(matches!(queue.fail(&job, "encore").await.unwrap(), FailOutcome::Retry { attempts: 2, .. }));
    assert_eq!(backoff_ms(pool.clone()).await, 150, "200 ms capped at 150 ms");

    backoff_over(&pool, id).await;
    let job = queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(queue.fail(&job, "document introuvable").await.unwrap(), FailOutcome::Failed { attempts: 3 });
    assert_eq!(row(&pool, id).await, (status::ERROR, 3, 0, Some("document introuvable".into())));
    backoff_over(&pool, id).await;
    assert!(queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().is_none(), "status 4 is final");

    // A row without its own max_attempts uses QUEUE_MAX_ATTEMPTS (3 here).
    let id2: Uuid = sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, max_attempts) VALUES ('index', 'B', NULL) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    update_row(&pool, id2, "attemtps = 2").await;
    let job = queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!((job.id, job.max_attempts), (id2, None));
    assert_eq!(queue.fail(&job, "x").await.unwrap(), FailOutcome::Failed { attempts: 3 });
}

#[tokio::test]
async fn release_gives_the_row_back_without_counting_an_attempt() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool().clone();
    let id = insert(&pool, "index", "R-1").await;
    let job = queue.claim_extraction("w", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(queue.release(&job).await.unwrap(), Transition::Applied);
    assert_eq!(row(&pool, id).await, (status::WAITING, 0, 0, None));
    assert_eq!(queue.release(&job).await.unwrap(), Transition::NotOwner, "released once");
    let again = queue.claim_extraction("w2", uuid::Uuid::new_v4()).await.unwrap().expect("claimable at once");
    assert_eq!((again.id, again.attempts), (id, 0));
    assert!(queue.complete_extraction(&again, "index/R-1.pdf", None).await.unwrap().applied());

    let ocr = queue.claim_ocr("ocr", DocumentSource::Index, uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(ocr.stage, Stage::Ocr);
    assert_eq!(queue.release(&ocr).await.unwrap(), Transition::Applied);
    assert_eq!(row(&pool, id).await, (status::DOWNLOADED, 0, 0, None));
}

#[tokio::test]
async fn ocr_stage_claims_by_source_completes_and_fails_with_its_own_counters() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool().clone();
    let acte = insert_row(&pool, "acte", "OA", status::DOWNLOADED).await;
    let index = insert_row(&pool, "index", "OI", status::DOWNLOADED).await;
    update_row(&pool, acte, "supabase_path = 'actes/OA.pdf', ocr_max_attempts = 2").await;
    let counts = queue.count_waiting().await.unwrap();
    assert_eq!((counts.get("acte"), counts.get("index")), (Some(&1), Some(&1)));

    let job = queue.claim_ocr("ocr-1", DocumentSource::Index, uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(job.id, index);
    assert!(queue.claim_ocr("ocr-2", DocumentSource::Index, uuid::Uuid::new_v4()).await.unwrap().is_none());
    assert_eq!(queue.renew(&job).await.unwrap(), Transition::Applied);
    assert_eq!(queue.complete_ocr(&job, "brut", "corrigé").await.unwrap(), Transition::Applied);
    let (st, file, boosted, done): (i32, String, String, bool) = sqlx::query_as(
        "SELECT status_id, file_content, boosted_file_content, ocr_completed_at IS NOT NULL FROM extraction_queue WHERE id = $1",
    )
    .bind(index)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((st, file.as_str(), boosted.as_str(), done), (status::DONE, "brut", "corrigé", true));
    assert_eq!(queue.complete_ocr(&job, "again", "again").await.unwrap(), Transition::NotOwner);

    let job = queue.claim_ocr("ocr-1", DocumentSource::Acte, uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(job.supabase_path.as_deref(), Some("actes/OA.pdf"));
    assert_eq!(job.max_attempts, Some(2));
    assert!(matches!(queue.fail(&job, "gemini 500").await.unwrap(), FailOutcome::Retry { attempts: 1, .. }));
    let (st, last_error, at): (i32, Option<String>, bool) =
        sqlx::query_as("SELECT status_id, ocr_error, ocr_last_error_at IS NOT NULL FROM extraction_queue WHERE id = $1")
            .bind(acte)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((st, last_error.as_deref(), at), (status::DOWNLOADED, Some("gemini 500"), true));
    backoff_over(&pool, acte).await;
    let job = queue.claim_ocr("ocr-1", DocumentSource::Acte, uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(queue.fail(&job, "illisible").await.unwrap(), FailOutcome::Failed { attempts: 2 });
    assert_eq!(row(&pool, acte).await, (status::ERROR, 0, 2, Some("illisible".into())));
    assert!(queue.count_waiting().await.unwrap().is_empty());
}

#[tokio::test]
async fn complete_extraction_records_fetched_as_and_a_three_argument_call_still_works() {
    let (_db, queue) = common::queue(SETTINGS, 4).await;
    let pool = queue.pool();
    let fetched_as = |id: Uuid| async move {
        sqlx::query_scalar::<_, Option<String>>("SELECT fetched_as FROM extraction_queue WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let acte = insert(pool, "acte", "5 123 456").await;
    let job = queue.claim_extraction("registre-worker-1", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(job.id, acte);
    let delivered = "circonscription_fonciere=Montréal, acte_type=Acte divers";
    assert_eq!(queue.complete_extraction(&job, "actes/5123456.pdf", Some(delivered)).await.unwrap(), Transition::Applied);
    assert_eq!(fetched_as(acte).await.as_deref(), Some(delivered));
    // A late call with another value changes nothing: the row is no longer held.
    assert_eq!(queue.complete_extraction(&job, "actes/other.pdf", Some("acte_type=Radiation")).await.unwrap(), Transition::NotOwner);
    assert_eq!(fetched_as(acte).await.as_deref(), Some(delivered));

    // A caller that knows only the three arguments (a worker built before 0041) still completes,
    // and the column stays NULL: one function, no ambiguous overload.
    let index = insert(pool, "index", "1234").await;
    let job = queue.claim_extraction("registre-worker-1", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(job.id, index);
    let applied: bool = sqlx::query_scalar("SELECT queue_complete_extraction($1, $2, $3)")
        .bind(job.id)
        .bind(job.claim_token)
        .bind("index/1234.pdf")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(applied);
    let (st, _, _, _) = row(pool, index).await;
    assert_eq!(st, status::DOWNLOADED);
    assert_eq!(fetched_as(index).await, None);
    let overloads: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = 'queue_complete_extraction'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(overloads, 1);
}
