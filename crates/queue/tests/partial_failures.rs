//! Partial failures of the queue on a real PostgreSQL (docs/queue.md, "Partial failures"):
//! - a claim whose answer is LOST is undone: (a) a claim that commits after the client-side
//!   timeout fired (the database is slow for it) and (b) a TCP proxy between the client and
//!   Postgres that forwards every request but drops every reply; either way the row waits again,
//!   attempts unchanged, nobody holds it, and the token can never claim again;
//! - a release of a claim token that arrives BEFORE its claim makes the late claim claim nothing;
//! - a row-level error (a constraint refusing one row's data) fails that call only: the
//!   environment stays up; a NUL in an error message is stored readably instead of failing;
//! - a busy pool (every connection in use, many claimers at once) is never "environment down";
//! - QUEUE_PG_POOL_SIZE: default sized for every user of the process, bad values refused.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{insert, row, SETTINGS};
use registre_config::{Config, ConfigError, EnvName};
use registre_queue::{status, EnvQueue, MultiQueue, PgQueue, Queue, QueueError, QueueSettings, Transition};
use registre_testkit::postgres::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// A TCP proxy to the test PostgreSQL that can drop every reply from the server (the request still
/// reaches it and runs) and cut every open connection.
struct Proxy {
    port: u16,
    drop_replies: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let drop_replies = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (drop2, conns2) = (drop_replies.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let drop_replies = drop2.clone();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if drop_replies.load(Ordering::SeqCst) {
                            continue; // the answer is lost on the way back
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut conns = conns2.lock().unwrap();
                conns.push(up);
                conns.push(down);
            }
        });
        Proxy { port, drop_replies, connections }
    }

    /// Closes every connection opened so far (both directions), as a broken network would.
    fn cut_all(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn claim_state(pool: &sqlx::PgPool, id: Uuid) -> (i32, i32, Option<Uuid>, Option<String>) {
    sqlx::query_as("SELECT status_id, coalesce(attemtps, 0), claim_token, worker_id FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_replies_are_lost_leaves_the_row_waiting_and_its_token_cancelled() {
    let db = TestDatabase::create();
    common::migrated(&db).await;
    let direct = common::pool(&db, 2).await;

    let upstream = registre_testkit::postgres::admin_url();
    let upstream = url::Url::parse(&upstream).unwrap();
    let proxy = Proxy::start(format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(5432))).await;
    let mut via_proxy = url::Url::parse(db.url()).unwrap();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", via_proxy.as_str()),
        ("QUEUE_CALL_TIMEOUT_MS", "500"),
        // A lease far longer than the test: only the release can put the row back, never the reaper.
        ("QUEUE_LEASE_TTL_MS", "600000"),
        ("QUEUE_ENV_RETRY_MAX_MS", "1000"),
    ])
    .unwrap();
    let queue = MultiQueue::connect(&config.environments, &config.queue, 4).unwrap();
    // A first round while replies still flow: it opens a connection and does this round's reaping
    // (so the next round goes straight to the claim).
    assert!(queue.claim_any_extraction("perd-sa-reponse").await.is_none());
    let id = insert(&direct, "index", "PERDU-1").await;

    proxy.drop_replies.store(true, Ordering::SeqCst);
    assert!(queue.claim_any_extraction("perd-sa-reponse").await.is_none(), "the client never hears of its claim");
    // Only the replies are lost: the client's background release of "whatever I claimed with
    // token T" reaches Postgres like the claim did (and when it does not, it is retried once the
    // network is back: the stuck connections are closed here).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut restored = false;
    let token: Uuid = loop {
        let cancelled: Option<Uuid> = sqlx::query_scalar("SELECT claim_token FROM queue_cancelled_claims").fetch_optional(&direct).await.unwrap();
        if let (Some(token), (status::WAITING, ..)) = (cancelled, claim_state(&direct, id).await) {
            break token;
        }
        if !restored && Instant::now() + Duration::from_secs(50) > deadline {
            proxy.drop_replies.store(false, Ordering::SeqCst);
            proxy.cut_all();
            restored = true;
        }
        assert!(Instant::now() < deadline, "the lost claim was never released: {:?}", claim_state(&direct, id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    proxy.drop_replies.store(false, Ordering::SeqCst);
    proxy.cut_all();
    // Waiting, attempts unchanged, nobody holds it, the token cancelled for good (whether the
    // claim ran before the release or not at all: sqlx waits for replies between protocol steps).
    assert_eq!(claim_state(&direct, id).await, (status::WAITING, 0, None, None), "waiting again, attempts unchanged, nobody holds it");
    let pg = PgQueue::from_pool(EnvName::Prod, direct.clone(), SETTINGS);
    assert!(pg.claim_extraction("en-retard", token).await.unwrap().is_none(), "a late claim with the released token claims nothing");
    // The row is claimable at once, by anyone, with its attempts intact.
    let job = pg.claim_extraction("suivant", Uuid::new_v4()).await.unwrap().expect("claimable again");
    assert_eq!((job.id, job.attempts), (id, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_commits_after_the_client_timed_out_is_undone_without_an_attempt() {
    let (db, direct) = common::database(2).await;
    // The database is slow for this claimer: its claim runs 3 s, then commits, long after the
    // client's call timeout (2 × 300 ms) fired and the client gave up on the answer.
    common::slow_claims_of(&direct, "lent", 3).await;
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", db.url()),
        ("QUEUE_CALL_TIMEOUT_MS", "300"),
        ("QUEUE_LEASE_TTL_MS", "600000"),
    ])
    .unwrap();
    let queue = MultiQueue::connect(&config.environments, &config.queue, 4).unwrap();
    assert!(queue.claim_any_extraction("lent").await.is_none(), "first round: reaping, nothing to claim");
    let id = insert(&direct, "acte", "LENT-1").await;
    assert!(queue.claim_any_extraction("lent").await.is_none(), "the client gave up on its claim");

    // The claim commits later; the release the client sent meanwhile waited for it (per-token
    // lock) and then undid it. Polled: the end state is what matters, not when.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started: bool = sqlx::query_scalar("SELECT processing_started_at IS NOT NULL FROM extraction_queue WHERE id = $1")
            .bind(id)
            .fetch_one(&direct)
            .await
            .unwrap();
        let state = claim_state(&direct, id).await;
        if started && state.0 == status::WAITING {
            assert_eq!(state, (status::WAITING, 0, None, None), "waiting again, attempts unchanged, nobody holds it");
            break;
        }
        assert!(Instant::now() < deadline, "the claim that committed late was never undone: {state:?} (claimed: {started})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_cancelled_claims").fetch_one(&direct).await.unwrap();
    assert_eq!(cancelled, 1);
    let pg = PgQueue::from_pool(EnvName::Prod, direct.clone(), SETTINGS);
    let job = pg.claim_extraction("suivant", Uuid::new_v4()).await.unwrap().expect("claimable again");
    assert_eq!((job.id, job.attempts), (id, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_claim_wins_in_either_order_even_with_many_claimers() {
    let (_db, queue) = common::queue(SETTINGS, 16).await;
    let pool = queue.pool().clone();
    let ids: Vec<Uuid> = {
        let mut ids = Vec::new();
        for n in 0..32 {
            ids.push(insert(&pool, "acte", &format!("R-{n}")).await);
        }
        ids
    };
    let queue = Arc::new(queue);
    // 32 claimers at once; half of them have their claim "lost" and released right after, the
    // other half have the release arrive BEFORE the claim request (a late request).
    let mut tasks = Vec::new();
    for n in 0..32u32 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let token = Uuid::new_v4();
            if n % 2 == 0 {
                let claimed = queue.claim_extraction(&format!("w-{n}"), token).await.unwrap();
                assert!(claimed.is_some());
                assert_eq!(queue.release_claim(token).await.unwrap(), 1, "the committed claim is undone");
                assert_eq!(queue.release_claim(token).await.unwrap(), 0, "idempotent");
            } else {
                assert_eq!(queue.release_claim(token).await.unwrap(), 0, "nothing claimed yet");
                assert!(queue.claim_extraction(&format!("w-{n}"), token).await.unwrap().is_none(), "a late claim claims nothing");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in ids {
        let (st, attempts, _, _) = row(&pool, id).await;
        assert_eq!((st, attempts), (status::WAITING, 0), "row {id}");
    }
    // OCR claims are undone the same way (6 → 3).
    let id = registre_testkit::postgres::insert_row(&pool, "index", "OCR-1", status::DOWNLOADED).await;
    let token = Uuid::new_v4();
    let job = queue.claim_ocr("ocr", registre_queue::DocumentSource::Index, token).await.unwrap().unwrap();
    assert_eq!(job.id, id);
    assert_eq!(queue.release_claim(token).await.unwrap(), 1);
    assert_eq!(row(&pool, id).await, (status::DOWNLOADED, 0, 0, None));
}

#[tokio::test]
async fn a_row_level_error_fails_that_row_and_the_environment_stays_up() {
    let db = TestDatabase::create();
    common::migrated(&db).await;
    let pool = common::pool(&db, 2).await;
    // A production rule the row's data can break: paths must stay short.
    sqlx::query("ALTER TABLE extraction_queue ADD CONSTRAINT supabase_path_short CHECK (length(supabase_path) < 40)")
        .execute(&pool)
        .await
        .unwrap();
    let config = Config::from_vars([("PROD_DATABASE_URL", db.url()), ("QUEUE_CALL_TIMEOUT_MS", "5000")]).unwrap();
    let queue = MultiQueue::connect(&config.environments, &config.queue, 4).unwrap();
    let bad = insert(&pool, "index", "LONG").await;
    let good = insert(&pool, "index", "OK").await;

    let job = queue.claim_any_extraction("w").await.unwrap();
    assert_eq!(job.id, bad);
    let err = queue.complete_extraction(&job, &"x".repeat(60), None).await.unwrap_err();
    assert!(!err.is_environment_failure(), "{err}");
    assert!(err.to_string().contains("supabase_path_short"), "{err}");
    assert!(queue.is_available(EnvName::Prod), "a row's error never takes the environment down");
    // The row fails with that error (readable), the others go on.
    let outcome = queue.fail(&job, &format!("could not record the completion: {err}\0 (NUL from a page)")).await.unwrap();
    assert!(matches!(outcome, registre_queue::FailOutcome::Retry { attempts: 1, .. }), "{outcome:?}");
    let (st, attempts, _, message) = row(&pool, bad).await;
    assert_eq!((st, attempts), (status::WAITING, 1));
    let message = message.unwrap();
    assert!(message.contains("supabase_path_short") && message.contains('\u{fffd}'), "{message}");
    let job = queue.claim_any_extraction("w").await.unwrap();
    assert_eq!(job.id, good);
    assert_eq!(queue.complete_extraction(&job, "index/OK.pdf", None).await.unwrap(), Transition::Applied);
    assert!(queue.is_available(EnvName::Prod));

    // A connection-level failure, by contrast, does take it down.
    let closed = format!("postgres://postgres@127.0.0.1:{}/nowhere", registre_testkit::free_port());
    let config = Config::from_vars([("PROD_DATABASE_URL", closed.as_str()), ("QUEUE_CALL_TIMEOUT_MS", "300")]).unwrap();
    let down = MultiQueue::connect(&config.environments, &config.queue, 2).unwrap();
    assert!(down.claim_any_extraction("w").await.is_none());
    assert!(!down.is_available(EnvName::Prod));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_pool_is_never_environment_down() {
    let db = TestDatabase::create();
    common::migrated(&db).await;
    let direct = common::pool(&db, 2).await;
    insert(&direct, "index", "B-1").await;
    let settings = QueueSettings::from_config(&Config::from_vars([("PROD_DATABASE_URL", db.url())]).unwrap().queue);
    let url = registre_config::SecretUrl::new(url::Url::parse(db.url()).unwrap());
    // A pool of 1 connection, held by someone else for the whole test: every claim waits for it.
    let pg = PgQueue::connect_lazy(EnvName::Prod, &url, settings, 1, Duration::from_millis(200)).unwrap();
    let held = pg.pool().acquire().await.unwrap();
    let config = Config::from_vars([("PROD_DATABASE_URL", db.url()), ("QUEUE_CALL_TIMEOUT_MS", "200")]).unwrap();
    let queue = Arc::new(MultiQueue::new(vec![EnvQueue::Postgres(pg)], config.queue.clone()));

    let mut tasks = Vec::new();
    for n in 0..16 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move { queue.claim_any_extraction(&format!("busy-{n}")).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_none(), "no connection, no claim");
    }
    assert!(queue.is_available(EnvName::Prod), "busy is not down");
    let EnvQueue::Postgres(pg2) = EnvQueue::connect(&config.environments[0], &config.queue, 1).unwrap() else { unreachable!() };
    let other = pg2.pool().acquire().await.unwrap();
    let err = pg2.count_waiting().await.unwrap_err();
    assert!(matches!(err, QueueError::Busy { size: 1, .. }), "{err}");
    assert!(!err.is_environment_failure());
    assert!(err.to_string().contains("QUEUE_PG_POOL_SIZE"), "{err}");
    drop(other);

    // Once the connection is free the same queue claims at once: it was never taken off the path.
    drop(held);
    let job = queue.claim_any_extraction("busy-after").await.expect("claimed once a connection is free");
    assert_eq!(job.document_number, "B-1");
}

#[test]
fn queue_pg_pool_size_defaults_to_every_user_of_the_process_and_refuses_bad_values() {
    let url = "postgres://postgres@127.0.0.1:5432/x";
    let config = Config::from_vars([("PROD_DATABASE_URL", url)]).unwrap();
    // WORKER_COUNT 1 + OCR_WORKER_POOL_SIZE 2: a claim/transition and a heartbeat each, + reaper + counts.
    assert_eq!(config.queue.pg_pool_size, 8);
    let config = Config::from_vars([("PROD_DATABASE_URL", url), ("WORKER_COUNT", "3"), ("OCR_WORKER_POOL_SIZE", "4")]).unwrap();
    assert_eq!(config.queue.pg_pool_size, 16);
    let config = Config::from_vars([("PROD_DATABASE_URL", url), ("QUEUE_PG_POOL_SIZE", "40")]).unwrap();
    assert_eq!(config.queue.pg_pool_size, 40);
    for bad in ["0", "abc", "-1"] {
        let err: ConfigError = Config::from_vars([("PROD_DATABASE_URL", url), ("QUEUE_PG_POOL_SIZE", bad)]).unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with(&format!("QUEUE_PG_POOL_SIZE={bad}")) && !line.contains('\n'), "{line}");
    }
    let err = Config::from_vars([("PROD_DATABASE_URL", url), ("QUEUE_MIGRATE_LOCK_TIMEOUT_MS", "soon")]).unwrap_err();
    assert!(err.to_string().starts_with("QUEUE_MIGRATE_LOCK_TIMEOUT_MS=soon"), "{err}");
}
