//! `registre-monitor` as PM2 runs it: with no worker running it reaps an expired lease within a
//! round, serves /metrics (the queue gauges and its own counters), /health and /ready on
//! METRICS_ADDR, and stops with exit 0 on SIGTERM; bad configuration is one line and exit 2.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_config::EnvName;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::binary::http_get as get;
use registre_testkit::{free_port, shared_redis_url, unique};
use sqlx::{Connection, PgConnection};

/// registre-monitor on the database at `db_url`, its own server id and rate-limit name, /metrics
/// on `port`, plus `extra` variables; its output piped.
fn monitor(db_url: &str, port: u16, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registre-monitor"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", shared_redis_url())
        .env("SERVER_ID", unique("monitor-bin"))
        .env("OCR_RATE_LIMIT_NAME", unique("monitor-rl"))
        .env("PROD_DATABASE_URL", db_url)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaps_with_no_worker_serves_metrics_and_stops_on_sigterm() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id,
                                       worker_id, claim_token, lease_expires_at)
         VALUES ('index', '4866594', 'Montréal', 'Cadastre du Québec', 2, 'killed-worker', gen_random_uuid(), now() - interval '1 second')
         RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .expect("insert");
    let port = free_port();
    let mut child = monitor(db.url(), port, &[("MONITOR_INTERVAL_MS", "200")]).spawn().expect("registre-monitor starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: i32 = sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(&mut conn).await.unwrap();
        if status == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the expired lease was not reaped within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The reaper counts its row in the middle of a round and the alerts are judged at its end, so
    // a scrape can fall between the two: wait for the round that did both to be over.
    let reaped = "registre_monitor_reaped_rows_total{env=\"prod\"} 1";
    let alert = "registre_monitor_alert_active{alert=\"no_worker:prod:extraction\",severity=\"warning\"} 1";
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = get(port, "/metrics") {
            if body.contains(reaped) && body.contains(alert) {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no reaped row and no_worker alert on /metrics within 60 s: {:?}", get(port, "/metrics"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("registre_queue_rows{env=\"prod\",status=\"1\",status_name=\"En attente\",source=\"index\"} 1"), "{body}");
    assert!(body.contains("# TYPE registre_monitor_rounds_total counter"), "{body}");
    assert_eq!(get(port, "/health").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/ready").map(|r| r.0), Some(200));

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "registre-monitor did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {logs}", out.status);
    assert!(logs.contains("1 expired lease(s) reaped"), "{logs}");
    assert!(logs.contains("ALERT no_worker:prod:extraction"), "{logs}");
}

#[test]
fn bad_configuration_is_one_line_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_registre-monitor"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        .env("MONITOR_INTERVAL_MS", "soon")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.trim().ends_with("MONITOR_INTERVAL_MS=soon: expected a whole number of milliseconds greater than 0"), "{stderr}");
}

/// A taken METRICS_ADDR (usually a second monitor on the server) ends the monitor with exit 1 and
/// a line naming the address, as its help says, instead of running unseen.
#[test]
fn a_taken_metrics_addr_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let db = TestDatabase::create();
    let out = monitor(db.url(), addr.port(), &[]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("METRICS_ADDR={addr}: cannot listen")), "{stderr}");
    drop(taken);
}

/// One `.env` shared by every PM2 app: sections the monitor does not read (REGISTRE_FETCHER=directory
/// without REGISTRE_SOURCE_DIR, a bad OCR_WORKER_POOL_SIZE or API_PORT) do not stop it.
#[test]
fn sections_it_does_not_read_do_not_stop_it() {
    let db = TestDatabase::create();
    let port = free_port();
    let bad_other_sections = [("REGISTRE_FETCHER", "directory"), ("OCR_WORKER_POOL_SIZE", "abc"), ("API_PORT", "not-a-port")];
    let mut child = monitor(db.url(), port, &bad_other_sections).spawn().expect("registre-monitor starts");
    registre_testkit::binary::wait_for_200(&mut child, port, "/health", Duration::from_secs(60), "registre-monitor");
    let (status, logs) = registre_testkit::binary::stop_with_sigterm(child);
    assert!(status.success(), "{status}: {logs}");
}
