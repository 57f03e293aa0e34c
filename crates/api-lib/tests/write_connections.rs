//! Reads never starve writes (docs/operations.md, "Load bounds"): registre-api keeps separate read
//! (3) and write (2) connections per environment, so a cancel and a retry go through while reads
//! hold every read connection and more reads wait for one.
//!
//! Real PostgreSQL, the real pools of registre-ops (Ops::from_config through registre-api's serve):
//! the jobs list is made to wait at a gate (a view of extraction_queue, first on this test
//! database's search_path, whose filter waits for an advisory lock the test holds when the running
//! statement is the jobs list). Everything else reads and writes through the view unhindered. With
//! one shared pool the gated reads would take every connection and the cancel would wait for one
//! until the pool's 5 s acquire timeout (503).

mod common;

use std::time::{Duration, Instant};

use common::TOKEN;
use registre_testkit::postgres::insert_row;
use registre_ops::READ_CONNECTIONS;
use sqlx::{Connection, PgConnection};

const GATE: i64 = 3333;
const DEADLINE: Duration = Duration::from_secs(60);
/// Jobs-list reads sent at once: more than the read connections and than all connections together.
const READS: usize = 8;

/// Backends of this database whose jobs list waits at the gate.
async fn reads_at_gate(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND wait_event = 'advisory' AND query LIKE '%FROM extraction_queue WHERE true%'",
    )
    .fetch_one(pool)
    .await
    .expect("activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_and_a_retry_get_a_connection_while_reads_hold_all_of_theirs() {
    let (db, pool) = common::migrated_db().await;
    let row = insert_row(&pool, "index", "4 866 594", 1).await;
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.expect("name");
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA test_gate;
         -- Waits for the test's lock only when the statement running is the jobs list.
         CREATE FUNCTION test_gate.list_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
         BEGIN
           IF current_query() LIKE '%FROM extraction_queue WHERE true%' THEN PERFORM pg_advisory_xact_lock_shared({GATE}); END IF;
           RETURN true;
         END $$;
         CREATE VIEW test_gate.extraction_queue AS SELECT * FROM public.extraction_queue WHERE test_gate.list_gate();
         ALTER DATABASE \"{name}\" SET search_path = test_gate, public;"
    ))
    .execute(&pool)
    .await
    .expect("gate");
    let api = common::start_over(db, pool, Some(TOKEN), &[]).await;
    let mut holder = PgConnection::connect(api.db.url()).await.expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)").bind(GATE).execute(&mut holder).await.expect("lock");

    let reads: Vec<_> = (0..READS)
        .map(|_| {
            let (client, url) = (api.client.clone(), api.url("/api/extractions?limit=10"));
            tokio::spawn(async move {
                let r = client.get(url).send().await.expect("list");
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while reads_at_gate(&api.pool).await < READ_CONNECTIONS as i64 {
        assert!(Instant::now() < deadline, "the reads never took the read connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every read connection is held and more reads wait: the writes still go through.
    let cancel = api.client.delete(api.url(&format!("/api/extractions/{row}?by=test"))).send().await.expect("cancel");
    let (status, body) = (cancel.status(), cancel.text().await.unwrap_or_default());
    assert_eq!(status, 200, "cancel while the reads hold their connections: {body}");
    let retry = api.client.post(api.url(&format!("/api/extractions/{row}/retry"))).send().await.expect("retry");
    let (status, body) = (retry.status(), retry.text().await.unwrap_or_default());
    assert_eq!(status, 200, "retry while the reads hold their connections: {body}");
    let now: i32 = sqlx::query_scalar("SELECT status_id FROM public.extraction_queue WHERE id = $1").bind(row).fetch_one(&api.pool).await.unwrap();
    assert_eq!(now, 1, "cancelled, then retried");
    // The gated reads were still holding every read connection (they end only when the gate
    // opens, or at registre-ops' 10 s bound on a query, far longer than two writes take).
    assert!(reads_at_gate(&api.pool).await >= READ_CONNECTIONS as i64);
    let holding = reads.iter().filter(|r| !r.is_finished()).count();
    assert!(holding >= READ_CONNECTIONS as usize, "only {holding} reads still waiting at the gate");

    sqlx::query("SELECT pg_advisory_unlock($1)").bind(GATE).execute(&mut holder).await.expect("unlock");
    for read in reads {
        let (status, body) = read.await.expect("read task");
        // 503: a read that waited longer than the pool's 5 s for a read connection.
        assert!(status == 200 || (status == 503 && body.contains("listing rows")), "read answered {status}: {body}");
    }
}
