//! Operator writes say what really happened (real PostgreSQL, shared Redis):
//! - every write sets `statement_timeout` (8 s) in its own transaction, so the server gives up and
//!   rolls back before the client's 10 s: a cancel blocked behind a row lock is cancelled by the
//!   server and reported as "nothing was changed", and nothing was;
//! - when the COMMIT was sent and its answer is lost (the connection is cut while the COMMIT waits),
//!   the error says "outcome unknown: check with registrectl show", never "failed", and indeed the
//!   change commits afterwards;
//! - `retry --errors` works in batches (ops_retry_errors with a LIMIT) and reports how many.

use std::net::SocketAddr;
use std::time::Duration;

use registre_config::{Config, EnvName};
use registre_ops::live::Live;
use registre_ops::{Ops, OpsError};
use registre_testkit::postgres::TestDatabase;
use registre_testkit::proxy::FaultProxy;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const GATE: i64 = 4242;

struct Fixture {
    db: TestDatabase,
    pool: PgPool,
    config: Config,
}

async fn fixture() -> Fixture {
    let (db, pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique("writes")),
        ("OCR_RATE_LIMIT_NAME", registre_testkit::unique("writes-rl")),
    ])
    .expect("config");
    Fixture { db, pool, config }
}

/// A gate at COMMIT time: every updated row waits for the advisory lock GATE in a deferred trigger,
/// i.e. inside the COMMIT statement of the write (after the write's statements all answered).
async fn install_gate(pool: &PgPool) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION test_commit_gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock({GATE}); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER test_commit_gate AFTER UPDATE ON extraction_queue
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit_gate();"
    ))
    .execute(pool)
    .await
    .expect("gate");
}

fn ops_over(config: &Config, pool: PgPool) -> Ops {
    Ops::new(vec![(EnvName::Prod, Some(pool))], Live::from_config(config).expect("redis"))
}

async fn waiting_row(pool: &PgPool) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id)
         VALUES ('index', '4866594', 'Montréal', 'Cadastre du Québec', 1) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("insert")
}

async fn status(pool: &PgPool, id: Uuid) -> i32 {
    sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(pool).await.expect("row")
}

/// Holds the gate on a connection of its own until dropped or released.
async fn hold_gate(url: &str) -> PgConnection {
    let mut holder = PgConnection::connect(url).await.expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)").bind(GATE).execute(&mut holder).await.expect("lock");
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gives_up_a_blocked_write_before_the_client_and_nothing_changes() {
    let f = fixture().await;
    let id = waiting_row(&f.pool).await;
    let ops = ops_over(&f.config, f.pool.clone());
    // Another transaction holds the row (as a stuck transition would): the cancel's UPDATE waits.
    let mut holder = PgConnection::connect(f.db.url()).await.expect("connect");
    let mut tx = holder.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM extraction_queue WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await.expect("lock");
    let err = ops.cancel(EnvName::Prod, id, "cancelled by the test").await.expect_err("the row stays locked");
    assert!(matches!(err, OpsError::WriteTimedOut { seconds: 8, .. }), "{err:?}");
    assert_eq!(err.to_string(), "prod: ops_cancel did not finish within 8 s (statement_timeout); nothing was changed");
    tx.rollback().await.expect("rollback");
    assert_eq!(status(&f.pool, id).await, 1, "the server rolled the cancel back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_outcome_unknown_not_failed() {
    let f = fixture().await;
    let id = waiting_row(&f.pool).await;
    install_gate(&f.pool).await;
    let options: sqlx::postgres::PgConnectOptions = f.db.url().parse().expect("options");
    let target: SocketAddr = format!("{}:{}", options.get_host(), options.get_port()).parse().expect("a host:port");
    let proxy = FaultProxy::start(target);
    let proxied = PgPoolOptions::new().max_connections(1).connect(&proxy.url_for(f.db.url())).await.expect("pool via proxy");
    let ops = ops_over(&f.config, proxied);
    let mut holder = hold_gate(f.db.url()).await;
    let cancel = tokio::spawn(async move { ops.cancel(EnvName::Prod, id, "cancelled by the test").await });
    // The cancel's COMMIT is waiting at the gate: cut the connection under it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'COMMIT' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&f.pool)
        .await
        .expect("activity");
        if waiting == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the COMMIT never reached the gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.cut(), 1);
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(GATE).execute(&mut holder).await.expect("unlock");
    let err = cancel.await.expect("task").expect_err("the answer was lost");
    assert!(matches!(err, OpsError::OutcomeUnknown { .. }), "{err:?}");
    let line = err.to_string();
    assert!(line.contains("outcome unknown") && line.contains(&format!("check with registrectl show {id}")), "{line}");
    assert!(!line.contains("failed"), "{line}");
    // And indeed the change happened: saying "failed" would have been a lie.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while status(&f.pool, id).await != 4 {
        assert!(std::time::Instant::now() < deadline, "the COMMIT sent before the cut did not land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_works_in_batches_and_reports_them() {
    let f = fixture().await;
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, error_message)
         SELECT 'index', 'E-' || n, 'Montréal', 'Cadastre du Québec', 4, 'introuvable' FROM generate_series(1, 1203) n",
    )
    .execute(&f.pool)
    .await
    .expect("errors");
    let ops = ops_over(&f.config, f.pool.clone());
    let done = ops.retry_errors(EnvName::Prod, Some("index"), None, 500).await.expect("retry");
    assert_eq!((done.retried, done.batches), (1203, 3));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id = 4").fetch_one(&f.pool).await.unwrap();
    assert_eq!(left, 0);
    // One call never retries more than its limit.
    sqlx::query("UPDATE extraction_queue SET status_id = 4").execute(&f.pool).await.unwrap();
    let n: i32 = sqlx::query_scalar("SELECT ops_retry_errors(NULL, NULL, 10)").fetch_one(&f.pool).await.unwrap();
    assert_eq!(n, 10);
}
