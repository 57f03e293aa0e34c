//! Connections kept warm between calls (crates/queue/src/warm.rs) on a real PostgreSQL:
//! - a call cut off by its timeout never lends its half-finished connection to the next call: the
//!   next call does not wait for the abandoned statement's reply, and the connection is closed;
//! - a connection-level error closes every warm connection, so the next call opens a fresh one
//!   instead of failing again on a sibling broken the same way;
//! - a connection only the warm stack holds goes back to sqlx's pool for anyone else waiting on it
//!   (a pool of one shared with the caller's own queries).

mod common;

use std::time::{Duration, Instant};

use common::{insert, SETTINGS};
use registre_config::EnvName;
use registre_queue::{connect_options, PgQueue, Queue};
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// A queue on a pool of `max` connections named `app` in pg_stat_activity.
async fn queue_named(db: &TestDatabase, app: &str, max: u32) -> PgQueue {
    let url = registre_config::SecretUrl::new(url::Url::parse(db.url()).unwrap());
    let options = connect_options(&url).unwrap().application_name(app);
    let pool = PgPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(10)).connect_lazy_with(options);
    PgQueue::from_pool(EnvName::Prod, pool, SETTINGS)
}

async fn backends(admin: &sqlx::PgPool, app: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1").bind(app).fetch_one(admin).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_its_timeout_never_lends_its_connection_again() {
    let (db, admin) = common::database(2).await;
    common::slow_claims_of(&admin, "lent", 20).await;
    insert(&admin, "index", "LENT-1").await;
    let queue = queue_named(&db, "warm-timeout", 2).await;
    assert!(queue.count_waiting().await.unwrap().is_empty(), "a first call warms a connection");
    let cut = tokio::time::timeout(Duration::from_millis(300), queue.claim_extraction("lent", Uuid::new_v4())).await;
    assert!(cut.is_err(), "the claim sleeps 20 s: the timeout fires first");
    // Put back, the connection would make the next call wait for the abandoned claim's reply,
    // 20 s away. Closed, the next call opens another one at once.
    let started = Instant::now();
    assert!(queue.count_waiting().await.unwrap().is_empty());
    // It did not wait: the abandoned claim has not committed yet, its row is still waiting.
    assert_eq!(common::count_status(&admin, 2).await, 0, "the next call waited for the abandoned claim's reply");
    // And it is closed, not handed back to sqlx's pool (whose ping would hold it until the reply):
    // its slot is free within sqlx's 5 s bound for a close, long before the statement ends.
    while queue.pool().size() > 1 {
        assert!(started.elapsed() < Duration::from_secs(15), "the abandoned connection still holds its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_level_error_closes_every_warm_connection() {
    let (db, admin) = common::database(2).await;
    let queue = queue_named(&db, "warm-broken", 4).await;
    // Three connections idle in sqlx's pool, then three calls at once: each takes one of them,
    // and all three are kept warm afterwards (none left in sqlx's pool).
    let mut opened = Vec::new();
    for _ in 0..3 {
        opened.push(queue.pool().acquire().await.unwrap());
    }
    drop(opened);
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.pool().num_idle() < 3 {
        assert!(Instant::now() < deadline, "the connections never went back to the pool");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On a loaded machine one call may end before another starts, which then takes the warm one
    // and leaves a connection idle in sqlx's pool: call again until all three are warm.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b, c) = tokio::join!(queue.count_waiting(), queue.count_waiting(), queue.count_waiting());
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        if (queue.pool().size(), queue.pool().num_idle()) == (3, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "three calls at once never kept three warm connections");
    }
    assert_eq!(backends(&admin, "warm-broken").await, 3);
    // The server drops all of them (as a restart or a cut network would).
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'warm-broken'")
        .execute(&admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while backends(&admin, "warm-broken").await > 0 {
        assert!(Instant::now() < deadline, "the backends never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = queue.count_waiting().await.unwrap_err();
    assert!(err.is_environment_failure(), "a dropped connection is a connection-level failure: {err}");
    // Its two siblings were closed with it: the next call opens a fresh connection.
    assert!(queue.count_waiting().await.is_ok(), "the next call must not meet another dead warm connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_only_the_warm_stack_holds_goes_back_to_whoever_waits() {
    let db = TestDatabase::create();
    common::migrated(&db).await;
    let admin = common::pool(&db, 1).await;
    let id = insert(&admin, "index", "SHARED-1").await;
    drop(admin);
    // A pool of one, shared by the queue and the caller's own queries.
    let queue = queue_named(&db, "warm-shared", 1).await;
    let job = queue.claim_extraction("w", Uuid::new_v4()).await.unwrap().expect("claimed");
    assert_eq!(job.id, id);
    let status: i32 = sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(queue.pool()).await.unwrap();
    assert_eq!(status, registre_queue::status::EXTRACTING);
    // And back to the queue, which takes it from sqlx's pool again.
    assert!(queue.complete_extraction(&job, "index/SHARED-1.pdf", None).await.unwrap().applied());
}
