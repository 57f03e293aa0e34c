//! Pickup by LISTEN/NOTIFY, and many workers claiming and completing at once, on real PostgreSQL.
//! The poll interval is set to 10 minutes in the pickup tests, so a row claimed within the
//! (generous, 60 s) deadline can only have been announced; no timed assertion.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::Config;
use registre_queue::{DocumentSource, MultiQueue, Transition};
use registre_testkit::postgres::TestDatabase;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

fn notify_queue(db: &TestDatabase, pool_size: u32) -> Arc<MultiQueue> {
    let config = Config::from_vars([("DATABASE_URL", db.url()), ("QUEUE_POLL_INTERVAL_MS", "600000")]).unwrap();
    Arc::new(MultiQueue::connect(&config.environments, &config.queue, pool_size).unwrap())
}

/// What every pickup test starts from: a fresh migrated database, a pool of 2 for the test's own
/// inserts and reads, the workers' queue on it (polling every 10 minutes), and the workers it
/// spawns, stopped and joined by [`Fixture::stop`] (so a worker's failed assertion fails the test).
struct Fixture {
    db: TestDatabase,
    pool: PgPool,
    queue: Arc<MultiQueue>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// `pool_size`: the workers' queue's connections (one per worker, plus the listener's).
    async fn new(pool_size: u32) -> Fixture {
        let db = TestDatabase::create();
        common::migrated(&db).await;
        let pool = common::pool(&db, 2).await;
        let queue = notify_queue(&db, pool_size);
        Fixture { db, pool, queue, cancel: CancellationToken::new(), tasks: Vec::new() }
    }

    /// Another process's queue on the same database.
    fn other_queue(&self, pool_size: u32) -> Arc<MultiQueue> {
        notify_queue(&self.db, pool_size)
    }

    async fn insert(&self, source: &str, number: &str) -> Uuid {
        common::insert(&self.pool, source, number).await
    }

    /// `idle` registre workers that claim, report and complete rows until stopped; returns once
    /// they picked up a first row, i.e. once the LISTEN connection is up.
    async fn registre_workers(&mut self, idle: usize) -> mpsc::UnboundedReceiver<Uuid> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for w in 0..idle {
            let (queue, stop, tx) = (self.queue.clone(), self.cancel.clone(), tx.clone());
            self.tasks.push(tokio::spawn(async move {
                let id = format!("notify-{w}");
                while let Some(job) = queue.next_extraction(&id, &stop).await {
                    let _ = tx.send(job.id);
                    assert_eq!(queue.complete_extraction(&job, "index/x.pdf", None).await.unwrap(), Transition::Applied);
                }
            }));
        }
        let first = self.insert("index", "warm-up").await;
        assert_eq!(next_claimed(&mut rx).await, first);
        rx
    }

    /// OCR workers, one per source in `sources`, that claim and complete rows until stopped; each
    /// claim is reported with the source of the worker that made it.
    fn ocr_workers(&mut self, sources: &[DocumentSource]) -> mpsc::UnboundedReceiver<(DocumentSource, Uuid)> {
        let (tx, rx) = mpsc::unbounded_channel();
        for &source in sources {
            let (queue, stop, tx) = (self.queue.clone(), self.cancel.clone(), tx.clone());
            self.tasks.push(tokio::spawn(async move {
                while let Some(job) = queue.next_ocr(&format!("ocr-{}", source.as_str()), source, &stop).await {
                    let _ = tx.send((source, job.id));
                    assert_eq!(queue.complete_ocr(&job, "texte", "texte").await.unwrap(), Transition::Applied);
                }
            }));
        }
        rx
    }

    /// Polls until `rows` rows have been moved to OCR (status 3), within the deadline.
    async fn until_in_ocr(&self, rows: i64) {
        let deadline = Instant::now() + DEADLINE;
        while common::count_status(&self.pool, 3).await < rows {
            assert!(Instant::now() < deadline, "{rows} rows were never completed for extraction");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self) {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            t.await.unwrap();
        }
    }
}

async fn next_claimed<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a row was claimed within 60 s (the poll is 10 min away: only a notification wakes a worker)")
        .expect("workers alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_row_wakes_one_of_eight_idle_workers() {
    let mut f = Fixture::new(10).await;
    let mut rx = f.registre_workers(8).await;
    f.until_in_ocr(1).await;
    let deadline = Instant::now() + DEADLINE;
    // Let every worker settle into waiting: the claim count stops moving (polled, generous).
    let mut calls = f.queue.claim_calls();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = f.queue.claim_calls();
        if now == calls {
            break;
        }
        calls = now;
        assert!(Instant::now() < deadline, "workers never settled");
    }

    let rows = 20;
    for n in 0..rows {
        let id = f.insert("index", &format!("N-{n}")).await;
        assert_eq!(next_claimed(&mut rx).await, id);
    }
    let received = f.queue.notifications_received();
    assert!(received >= rows, "every insert was announced ({received} announcements for {rows} rows)");
    f.stop().await;
    // Per row: the woken worker's claim, and its claim after completing (it claims before it
    // waits again). Waking all 8 would be 8 per row.
    let per_row = (f.queue.claim_calls() - calls) as f64 / rows as f64;
    assert!(per_row <= 2.5, "{per_row:.2} claim calls per row: more than one worker is woken per row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_inserted_in_one_transaction_is_claimed_exactly_once_per_row() {
    let mut f = Fixture::new(10).await;
    let mut rx = f.registre_workers(8).await;

    // One transaction, 50 rows: NOTIFY would merge identical payloads; ours carry the row id.
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, created_at)
         SELECT 'acte', 'B-' || n, clock_timestamp() FROM generate_series(1, 50) AS n RETURNING id",
    )
    .fetch_all(&f.pool)
    .await
    .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..ids.len() {
        let id = next_claimed(&mut rx).await;
        assert!(seen.insert(id), "row {id} claimed twice");
    }
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocr_worker_picks_up_a_row_the_moment_extraction_completes_it() {
    let mut f = Fixture::new(6).await;
    let mut rx = f.ocr_workers(&[DocumentSource::Acte, DocumentSource::Index]);
    let registre = f.other_queue(2);
    for (n, source) in ["acte", "index", "acte"].iter().enumerate() {
        let id = f.insert(source, &format!("O-{n}")).await;
        let job = registre.claim_any_extraction("registre").await.expect("claimed for extraction");
        assert_eq!(job.id, id);
        assert_eq!(registre.complete_extraction(&job, "actes/x.pdf", None).await.unwrap(), Transition::Applied);
        let (by, claimed) = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("OCR claimed it within 60 s").unwrap();
        assert_eq!((by.as_str(), claimed), (*source, id), "the worker of the row's own source claims it");
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registre_worker_process_hears_of_new_rows_only_not_of_the_extractions_it_completes() {
    let mut f = Fixture::new(4).await;
    let mut rx = f.registre_workers(2).await;
    // Once the warm-up row is completed, the announcements so far are counted.
    f.until_in_ocr(1).await;
    let before = f.queue.notifications_received();
    let rows: i64 = 10;
    for n in 0..rows {
        let id = f.insert("acte", &format!("S-{n}")).await;
        assert_eq!(next_claimed(&mut rx).await, id);
    }
    f.until_in_ocr(rows + 1).await;
    // A last announcement on the extraction channel, committed after every completion: a listener
    // receives in commit order, so once it has counted as many as it should, any announcement of
    // those completions sent to it would have been counted too.
    sqlx::query("SELECT pg_notify('registre_queue_extraction', 'fin')").execute(&f.pool).await.unwrap();
    let expected = rows as u64 + 1;
    let deadline = Instant::now() + DEADLINE;
    while f.queue.notifications_received() - before < expected {
        assert!(Instant::now() < deadline, "the announcements never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One more at most: the warm-up row's own announcement, if it came after `before` was read
    // (that row may have been claimed by a claim round before its announcement arrived).
    let heard = f.queue.notifications_received() - before;
    assert!(
        heard <= expected + 1,
        "a registre worker process hears one announcement per new row, none for the {rows} rows it moved to OCR: {heard} heard"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_waits_for_both_stages_hears_both() {
    // Registre workers first: the LISTEN connection starts with the extraction channel only.
    let mut f = Fixture::new(6).await;
    let _claimed = f.registre_workers(1).await;
    // Then an OCR worker in the same process: the connection must listen on the OCR channel too.
    let mut rx = f.ocr_workers(&[DocumentSource::Index]);
    // The warm-up row reaches OCR as well (found by a claim or announced); then each new row
    // goes through both stages on announcements alone (the poll is 10 minutes away).
    let warm_up: Uuid = sqlx::query_scalar("SELECT id FROM extraction_queue WHERE document_number = 'warm-up'").fetch_one(&f.pool).await.unwrap();
    assert_eq!(next_claimed(&mut rx).await, (DocumentSource::Index, warm_up));
    for n in 0..3 {
        let id = f.insert("index", &format!("D-{n}")).await;
        assert_eq!(next_claimed(&mut rx).await, (DocumentSource::Index, id), "row {n} went through extraction and OCR");
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_channel_still_hears_both_stages() {
    let f = Fixture::new(2).await;
    // A worker of the previous release listens on `registre_queue` alone.
    let mut previous = sqlx::postgres::PgListener::connect(f.db.url()).await.unwrap();
    previous.listen("registre_queue").await.unwrap();
    let id = f.insert("acte", "A-1").await;
    let job = f.queue.claim_any_extraction("registre").await.expect("claimed");
    assert_eq!(f.queue.complete_extraction(&job, "actes/x.pdf", None).await.unwrap(), Transition::Applied);
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(DEADLINE, previous.recv()).await.expect("announced within 60 s").unwrap();
        assert_eq!(n.channel(), "registre_queue");
        payloads.push(n.payload().to_string());
    }
    assert_eq!(payloads, [format!("1 {id}"), format!("3 acte {id}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_comes_back_and_wakes_the_workers() {
    let mut f = Fixture::new(4).await;
    let mut rx = f.registre_workers(2).await;

    let pool = f.pool.clone();
    let listeners = || {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .fetch_all(&pool)
    };
    // The LISTEN connection opens in the background once a worker first waits (the warm-up row may
    // have been claimed before it listened): poll until it is there.
    let deadline = Instant::now() + DEADLINE;
    let before = loop {
        let now = listeners().await.unwrap();
        if !now.is_empty() || Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(before.len(), 1, "one LISTEN connection per process and environment: {before:?}");
    // Kill the listening backend, as a network cut or a server restart would.
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(before[0]).fetch_one(&f.pool).await.unwrap();
    assert!(killed);
    // Once another one listens (polled), new rows are announced again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = listeners().await.unwrap();
        if now.len() == 1 && now[0] != before[0] {
            break;
        }
        assert!(Instant::now() < deadline, "the LISTEN connection never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = f.insert("index", "après").await;
    assert_eq!(next_claimed(&mut rx).await, after);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_workers_claiming_and_completing_process_every_row_once() {
    let f = Fixture::new(16).await;
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, created_at)
         SELECT 'index', 'C-' || n, clock_timestamp() FROM generate_series(1, 400) AS n",
    )
    .execute(&f.pool)
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let queue = f.queue.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("chain-{w}");
            let mut mine = Vec::new();
            let mut next = queue.claim_any_extraction(&worker).await;
            while let Some(job) = next {
                mine.push(job.id);
                // The workers' path: complete, then claim the next row (two calls).
                assert_eq!(queue.complete_extraction(&job, "index/x.pdf", None).await.unwrap(), Transition::Applied);
                next = queue.claim_any_extraction(&worker).await;
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "row {id} processed twice");
        }
    }
    assert_eq!(all.len(), 400);
    assert_eq!(common::count_status(&f.pool, 3).await, 400);
}
