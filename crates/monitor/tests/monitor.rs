//! registre-monitor's rounds against a real PostgreSQL (a fresh migrated database per test) and a
//! private redis-server per test (the live-worker checks see every server in Redis, so the shared
//! one would show other tests' workers): legacy stuck rows requeued within one round and fresh ones
//! left alone, an expired lease reaped with no worker running, every alert firing once and
//! resolving once with a local webhook that answers 500 first, and a dead webhook that never
//! stops the rounds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::{Config, EnvName};
use registre_monitor_lib::Monitor;
use registre_ops::Ops;
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_testkit::postgres::TestDatabase;
use registre_testkit::RedisServer;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Fixture {
    _db: TestDatabase,
    redis: RedisServer,
    pool: PgPool,
    config: Config,
    monitor: Monitor,
    _stop: CancellationToken,
}

async fn fixture(extra: &[(&str, String)]) -> Fixture {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    let pool = PgPoolOptions::new().max_connections(4).connect(db.url()).await.expect("pool");
    let redis = RedisServer::start();
    let mut vars: Vec<(String, String)> = vec![
        ("PROD_DATABASE_URL".into(), db.url().to_string()),
        ("REDIS_URL".into(), redis.url()),
        ("OCR_RATE_LIMIT_NAME".into(), registre_testkit::unique("rl")),
    ];
    for (k, v) in extra {
        vars.push((k.to_string(), v.clone()));
    }
    let config = Config::from_vars(vars).expect("config");
    let ops = Arc::new(Ops::from_config(&config).expect("ops"));
    let stop = CancellationToken::new();
    let monitor = Monitor::new(&config, ops, stop.clone());
    Fixture { _db: db, redis, pool, config, monitor, _stop: stop }
}

/// A row in `status` with the given extra column assignments (SQL), returning its id.
async fn row(pool: &PgPool, source: &str, status: i32, set: &str) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, acte_type, status_id)
         VALUES ($1, 'N-' || floor(random() * 1e9)::text, 'Montréal', 'Cadastre du Québec', 'Vente', $2) RETURNING id",
    )
    .bind(source)
    .bind(status)
    .fetch_one(pool)
    .await
    .expect("insert");
    if !set.is_empty() {
        sqlx::query(&format!("UPDATE extraction_queue SET {set} WHERE id = $1")).bind(id).execute(pool).await.expect("update");
    }
    id
}

async fn state(pool: &PgPool, id: Uuid) -> (i32, i32, i32, Option<String>) {
    sqlx::query_as("SELECT status_id, coalesce(attemtps, 0), coalesce(ocr_attempts, 0), error_message FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_stuck_rows_are_requeued_in_one_round_fresh_and_leased_ones_are_not() {
    let mut f = fixture(&[("MONITOR_STUCK_AFTER_MS", "600000".into())]).await;
    let old = row(&f.pool, "index", 2, "worker_id = 'ts-worker-7', processing_started_at = now() - interval '20 minutes', updated_at = now() - interval '20 minutes'").await;
    let fresh = row(&f.pool, "index", 2, "worker_id = 'ts-worker-8', processing_started_at = now() - interval '1 minute'").await;
    let old_ocr = row(&f.pool, "acte", 6, "ocr_worker_id = 'ts-ocr-1', ocr_started_at = now() - interval '30 minutes', updated_at = now() - interval '30 minutes'").await;
    let leased = row(&f.pool, "acte", 2, "worker_id = 'alive', processing_started_at = now() - interval '1 hour', lease_expires_at = now() + interval '10 minutes', claim_token = gen_random_uuid()").await;

    let report = f.monitor.round().await;
    let r = report.requeued.iter().find(|(env, _)| *env == EnvName::Prod).map(|(_, r)| *r).expect("prod repaired");
    assert_eq!((r.reaped, r.stuck_extraction, r.stuck_ocr), (0, 1, 1), "{report:?}");
    let (status, attempts, _, error) = state(&f.pool, old).await;
    assert_eq!((status, attempts), (1, 1));
    let error = error.unwrap_or_default();
    assert!(error.contains("requeued by registre-monitor") && error.contains("ts-worker-7") && error.contains("attempt 1"), "{error}");
    let (status, _, ocr_attempts, error) = state(&f.pool, old_ocr).await;
    assert_eq!((status, ocr_attempts), (3, 1));
    assert!(error.is_some_and(|e| e.contains("ts-ocr-1")));
    assert_eq!(state(&f.pool, fresh).await.0, 2, "a row claimed a minute ago is left alone");
    assert_eq!(state(&f.pool, leased).await.0, 2, "a row with a live lease is never the monitor's");

    // Each stuck row once: the next round finds nothing.
    let report = f.monitor.round().await;
    let r = report.requeued.iter().find(|(env, _)| *env == EnvName::Prod).map(|(_, r)| *r).expect("prod");
    assert_eq!((r.reaped, r.stuck_extraction, r.stuck_ocr), (0, 0, 0));
    drop(f.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_is_reaped_with_every_worker_stopped() {
    let mut f = fixture(&[]).await;
    let expired = row(&f.pool, "index", 2, "worker_id = 'crashed', lease_expires_at = now() - interval '1 second', claim_token = gen_random_uuid(), processing_started_at = now() - interval '1 minute'").await;
    let expired_ocr = row(&f.pool, "acte", 6, "ocr_worker_id = 'crashed-ocr', ocr_lease_expires_at = now() - interval '1 second', claim_token = gen_random_uuid()").await;
    let report = f.monitor.round().await;
    let r = report.requeued.iter().find(|(env, _)| *env == EnvName::Prod).map(|(_, r)| *r).expect("prod");
    assert_eq!(r.reaped, 2, "{report:?}");
    let (status, attempts, _, error) = state(&f.pool, expired).await;
    assert_eq!((status, attempts), (1, 1));
    assert!(error.is_some_and(|e| e.contains("lease expired") && e.contains("crashed")));
    assert_eq!(state(&f.pool, expired_ocr).await.0, 3);
    let stats = f.monitor.stats();
    let s = stats.lock().unwrap();
    assert_eq!((s.rounds, s.reaped.get("prod").copied()), (1, Some(2)));
}

/// A webhook receiver: records every JSON body; answers 500 to the first request, 200 after.
async fn webhook_server() -> (String, Arc<Mutex<Vec<(u16, Value)>>>) {
    let received: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hooks/T000/B000/secret-part",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut seen = seen.lock().unwrap();
                let status = if seen.is_empty() { 500 } else { 200 };
                seen.push((status, value));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/T000/B000/secret-part", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn keys(changes: &[registre_monitor_lib::alerts::Change], state: &str) -> Vec<String> {
    let mut k: Vec<String> = changes.iter().filter(|c| c.state == state).map(|c| c.key.clone()).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_alert_fires_once_and_resolves_once_through_a_webhook_that_answers_500_first() {
    let (url, received) = webhook_server().await;
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/nothing", registre_testkit::free_port());
    let mut f = fixture(&[
        ("ALERT_WEBHOOK_URL", url),
        ("STAGING_DATABASE_URL", dead_pg),
        ("SERVER_MAX_CPU", "2".into()),
        ("MONITOR_OLDEST_WAITING_ALERT_MS", "3600000".into()),
        ("MONITOR_ERRORS_PER_MINUTE_ALERT", "1".into()),
    ])
    .await;
    let rl = f.config.rate_limit.name.clone();
    let waiting_old = row(&f.pool, "index", 1, "created_at = now() - interval '2 hours'").await;
    let waiting_ocr = row(&f.pool, "acte", 3, "supabase_path = 'actes/x.pdf'").await;
    let redis = registre_runtime::redis_connection(&f.config.redis_url).expect("redis");
    let limiter = RateLimiter::new(redis.clone(), RateLimitSettings::from_config(&f.config.rate_limit)).expect("limiter");
    limiter.cooldown(Duration::from_secs(600)).await.expect("cooldown");

    // Round 1: rows waiting with no worker (both stages), the oldest waiting for 2 h, the limiter
    // in cooldown, staging unreachable. Erreur growth needs a second count.
    let r1 = f.monitor.round().await;
    let expected_first = {
        let mut k = vec![
            "env_unreachable:staging".to_string(),
            "no_worker:prod:extraction".into(),
            "no_worker:prod:ocr".into(),
            "oldest_waiting:prod:extraction".into(),
            format!("ratelimit_cooldown:{rl}"),
        ];
        k.sort();
        k
    };
    assert_eq!(keys(&r1.changes, "firing"), expected_first, "{r1:?}");
    assert!(keys(&r1.changes, "resolved").is_empty());

    // Round 2: the same conditions fire nothing again; five new Erreur rows fire their alert.
    for _ in 0..5 {
        row(&f.pool, "acte", 4, "error_message = 'introuvable'").await;
    }
    let r2 = f.monitor.round().await;
    assert_eq!(keys(&r2.changes, "firing"), ["errors_growing:prod"], "{r2:?}");
    assert!(keys(&r2.changes, "resolved").is_empty(), "{r2:?}");

    // Round 3: everything but staging clears; a registre and an OCR worker hold capacity leases
    // taken with an 8-vCPU budget, above this monitor's 1.6 usable vCPUs: capacity_over (ERROR).
    let mut conn = registre_testkit::redis_sync(&f.redis.url());
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let big = Config::from_vars([("PROD_DATABASE_URL", "postgres://u@h/d".to_string()), ("SERVER_MAX_CPU", "8".into())]).unwrap();
    let manager = CapacityManager::new(redis.clone(), CapacitySettings::from_config(&big));
    let registre = manager.try_lease("registre-worker-1-abcd", WorkerType::Registre).await.unwrap().expect("fits 8 vCPU");
    let ocr = manager.try_lease("ocr-worker-1-abcd", WorkerType::ActeOcr).await.unwrap().expect("fits 8 vCPU");
    sqlx::query("UPDATE extraction_queue SET status_id = 5 WHERE id = ANY($1)").bind(vec![waiting_old, waiting_ocr]).execute(&f.pool).await.unwrap();
    let r3 = f.monitor.round().await;
    assert_eq!(keys(&r3.changes, "firing"), ["capacity_over:(default)"], "{r3:?}");
    let mut resolved = vec![
        "errors_growing:prod".to_string(),
        "no_worker:prod:extraction".into(),
        "no_worker:prod:ocr".into(),
        "oldest_waiting:prod:extraction".into(),
        format!("ratelimit_cooldown:{rl}"),
    ];
    resolved.sort();
    assert_eq!(keys(&r3.changes, "resolved"), resolved, "{r3:?}");
    let over = r3.changes.iter().find(|c| c.key.starts_with("capacity_over")).unwrap();
    assert_eq!(over.severity, registre_monitor_lib::Severity::Error);

    // Round 4: the leases go; capacity_over resolves. Staging stays down: still one incident.
    registre.release().await.unwrap();
    ocr.release().await.unwrap();
    let r4 = f.monitor.round().await;
    assert_eq!((keys(&r4.changes, "firing"), keys(&r4.changes, "resolved")), (vec![], vec!["capacity_over:(default)".to_string()]), "{r4:?}");

    // The webhook got each change once (the first POST answered 500 and was retried).
    f.monitor.webhook_idle().await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received[0].0, 500);
    assert_eq!(received[0].1, received[1].1, "the message refused with 500 is the one retried");
    let delivered: Vec<&Value> = received.iter().filter(|(s, _)| *s == 200).map(|(_, v)| v).collect();
    let count = |key: &str, state: &str| delivered.iter().filter(|v| v["alert"] == key && v["state"] == state).count();
    for key in resolved.iter().chain(["capacity_over:(default)".to_string()].iter()) {
        assert_eq!((count(key, "firing"), count(key, "resolved")), (1, 1), "{key}: {delivered:?}");
    }
    assert_eq!((count("env_unreachable:staging", "firing"), count("env_unreachable:staging", "resolved")), (1, 0));
    assert_eq!(delivered.len(), 13, "{delivered:?}");
    for v in &delivered {
        let text = v["text"].as_str().expect("Slack-compatible text field");
        assert!(text.contains("registre-monitor") && !text.is_empty(), "{text}");
    }
    assert_eq!(f.monitor.webhook_counts(), (13, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_that_never_answers_never_stops_the_rounds() {
    let dead = format!("http://127.0.0.1:{}/hook", registre_testkit::free_port());
    let mut f = fixture(&[("ALERT_WEBHOOK_URL", dead)]).await;
    row(&f.pool, "index", 1, "").await;
    for n in 1..=3 {
        let report = f.monitor.round().await;
        if n == 1 {
            assert_eq!(keys(&report.changes, "firing"), ["no_worker:prod:extraction"]);
        }
    }
    let stats = f.monitor.stats();
    assert_eq!(stats.lock().unwrap().rounds, 3);
    assert_eq!(f.monitor.webhook_counts().0, 0, "nothing was delivered to a closed port");
}
