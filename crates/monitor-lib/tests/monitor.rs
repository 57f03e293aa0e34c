//! registre-monitor's rounds against a real PostgreSQL (a fresh migrated database per test) and a
//! private redis-server per test (the live-worker checks see every server in Redis, so the shared
//! one would show other tests' workers): legacy stuck rows requeued within one round and fresh ones
//! left alone, an expired lease reaped with no worker running, every alert firing once and
//! resolving once with a local webhook that answers 500 first, open incidents surviving a restart
//! and resolving after MONITOR_RESOLVE_AFTER_ROUNDS clean rounds, each server judged against the
//! budget it published, and a dead webhook that never stops the rounds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::{Config, EnvName};
use registre_monitor_lib::Monitor;
use registre_ops::Ops;
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_testkit::postgres::{insert_row, set_columns, TestDatabase};
use registre_testkit::RedisServer;
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
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
    let (db, pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
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
    let id = insert_row(pool, source, &registre_testkit::unique("N"), status).await;
    set_columns(pool, id, set).await;
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

/// A stuck row's age is counted from its last update, not from its claim: a lease-less row claimed
/// two hours ago that an older system updated a minute ago is still moving and is left alone; the
/// same claim untouched for two hours is requeued, its error_message dating it from that update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_rows_age_runs_from_its_last_update_not_its_claim() {
    let mut f = fixture(&[("MONITOR_STUCK_AFTER_MS", "600000".into())]).await;
    let moving = row(&f.pool, "index", 2, "worker_id = 'old-1', processing_started_at = now() - interval '2 hours', updated_at = now() - interval '1 minute'").await;
    let moving_ocr = row(&f.pool, "acte", 6, "ocr_worker_id = 'old-ocr', ocr_started_at = now() - interval '2 hours', updated_at = now() - interval '1 minute'").await;
    let still = row(&f.pool, "index", 2, "worker_id = 'old-2', processing_started_at = now() - interval '3 hours', updated_at = now() - interval '2 hours'").await;
    let report = f.monitor.round().await;
    let r = report.requeued.iter().find(|(env, _)| *env == EnvName::Prod).map(|(_, r)| *r).expect("prod repaired");
    assert_eq!((r.stuck_extraction, r.stuck_ocr), (1, 0), "{report:?}");
    assert_eq!(state(&f.pool, moving).await.0, 2, "updated a minute ago: not stuck");
    assert_eq!(state(&f.pool, moving_ocr).await.0, 6, "updated a minute ago: not stuck");
    let (status, _, _, error) = state(&f.pool, still).await;
    assert_eq!(status, 1);
    let since: String = sqlx::query_scalar("SELECT to_char((now() - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')")
        .fetch_one(&f.pool)
        .await
        .expect("hour");
    assert!(error.as_deref().is_some_and(|e| e.contains(&format!("since {since}"))), "{error:?} should date it from {since}");
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
        // Resolve at the first clean round, so each round below shows its own changes.
        ("MONITOR_RESOLVE_AFTER_ROUNDS", "1".into()),
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
    // taken with an 8-vCPU budget, while the server's published budget says 1.6 usable vCPUs (a
    // process of that server configured with SERVER_MAX_CPU=2 published it): capacity_over (ERROR).
    let mut conn = registre_testkit::redis_sync(&f.redis.url());
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let big = Config::from_vars([("PROD_DATABASE_URL", "postgres://u@h/d".to_string()), ("SERVER_MAX_CPU", "8".into())]).unwrap();
    let manager = CapacityManager::new(redis.clone(), CapacitySettings::from_config(&big));
    for (id, kind) in [("registre-worker-1-abcd", WorkerType::Registre), ("ocr-worker-1-abcd", WorkerType::ActeOcr)] {
        assert!(matches!(manager.allocate(id, kind).await.unwrap(), registre_capacity::Allocation::Granted { .. }), "fits 8 vCPU");
    }
    let small = Config::from_vars([("PROD_DATABASE_URL", "postgres://u@h/d".to_string()), ("SERVER_MAX_CPU", "2".into())]).unwrap();
    CapacityManager::new(redis.clone(), CapacitySettings::from_config(&small)).publish_budget().await.expect("publish");
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
    manager.release("registre-worker-1-abcd").await.unwrap();
    manager.release("ocr-worker-1-abcd").await.unwrap();
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

/// Each server is judged against the budget it published itself: a 16-vCPU server (12.8 usable)
/// holding 12 vCPU is fine even for a monitor configured with 8 vCPU (before, "must never
/// happen"); an 8-vCPU server (6.4 usable) holding 6 is fine; a server that published no budget is
/// not judged; a server above its own budget is an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_server_is_judged_against_its_own_published_budget() {
    let mut f = fixture(&[("SERVER_MAX_CPU", "8".into())]).await;
    let redis = registre_runtime::redis_connection(&f.config.redis_url).expect("redis");
    let server = |id: &str, max_cpu: &str| {
        let config = Config::from_vars([
            ("PROD_DATABASE_URL", "postgres://u@h/d".to_string()),
            ("SERVER_ID", id.to_string()),
            ("SERVER_MAX_CPU", max_cpu.to_string()),
        ])
        .unwrap();
        CapacityManager::new(redis.clone(), CapacitySettings::from_config(&config))
    };
    let big = server("big", "16");
    let small = server("small", "8");
    let silent = server("silent", "8");
    // The big server's workers hold leases: their heartbeat publishes its budget (12.8 vCPU).
    let mut leases = Vec::new();
    for n in 0..4 {
        leases.push(big.try_lease(&format!("big-registre-{n}"), WorkerType::Registre).await.unwrap().expect("fits 12.8 vCPU"));
    }
    // The small server's allocations without a heartbeat (so nothing republishes behind the test's
    // back), its budget published once (6.4 vCPU).
    for n in 0..2 {
        assert!(matches!(small.allocate(&format!("small-registre-{n}"), WorkerType::Registre).await.unwrap(), registre_capacity::Allocation::Granted { .. }));
    }
    small.publish_budget().await.expect("publish");
    // A server with allocations but no published budget (an older version): listed, not judged.
    assert!(matches!(silent.allocate("silent-1", WorkerType::Registre).await.unwrap(), registre_capacity::Allocation::Granted { .. }));
    let mut sync = registre_testkit::redis_sync(&f.redis.url());
    let _: () = redis::cmd("ZADD").arg(registre_domain::keys::SERVERS).arg(i64::MAX / 2).arg("silent").query(&mut sync).unwrap();
    let ops = Ops::from_config(&f.config).expect("ops");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let live = loop {
        let live = ops.live().view().await.expect("live view");
        if live.capacity.iter().filter(|c| c.cpu_usable.is_some()).count() == 2 {
            break live;
        }
        assert!(std::time::Instant::now() < deadline, "the budgets were not published: {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by = |id: &str| live.capacity.iter().find(|c| c.server.as_deref() == Some(id)).cloned().expect(id);
    assert_eq!((by("big").cpu_allocated, by("big").cpu_usable, by("big").ram_usable), (12.0, Some(12.8), Some(12.8)));
    assert_eq!((by("small").cpu_allocated, by("small").cpu_usable), (6.0, Some(6.4)));
    assert_eq!((by("silent").cpu_allocated, by("silent").cpu_usable, by("silent").above_budget()), (3.0, None, None));
    let report = f.monitor.round().await;
    assert!(!report.changes.iter().any(|c| c.key.starts_with("capacity_over")), "{report:?}");

    // The small server's budget shrinks (a process there restarted with SERVER_MAX_CPU=4: 3.2
    // usable) while 6 vCPU are held: that server, and only it, is above its own budget.
    server("small", "4").publish_budget().await.expect("publish");
    let report = f.monitor.round().await;
    assert_eq!(keys(&report.changes, "firing"), ["capacity_over:small"], "{report:?}");
    for lease in leases {
        lease.release().await.unwrap();
    }
    drop(f.redis);
}

/// A restarted monitor (same Redis) neither fires an open incident again nor forgets to resolve
/// it, and it resolves only after MONITOR_RESOLVE_AFTER_ROUNDS (default 2) clean rounds; every
/// webhook message is counted in registre_monitor_webhook_deliveries_total{outcome}.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_incidents_survive_a_restart_and_resolve_after_two_clean_rounds() {
    let (url, received) = webhook_server().await;
    let mut f = fixture(&[("ALERT_WEBHOOK_URL", url)]).await;
    let waiting = row(&f.pool, "index", 1, "").await;
    let first = f.monitor.round().await;
    assert_eq!(keys(&first.changes, "firing"), ["no_worker:prod:extraction"], "{first:?}");
    let since = first.changes[0].since;
    f.monitor.webhook_idle().await;
    let text = registre_monitor_lib::render_stats(&f.monitor.stats().lock().unwrap());
    assert!(text.contains("registre_monitor_webhook_deliveries_total{outcome=\"delivered\"} 1"), "{text}");
    assert!(text.contains("registre_monitor_webhook_deliveries_total{outcome=\"failed\"} 0"), "{text}");

    // The monitor restarts (PM2 restart, deploy): a new one over the same Redis and database.
    let ops = Arc::new(Ops::from_config(&f.config).expect("ops"));
    let stop = CancellationToken::new();
    let mut restarted = Monitor::new(&f.config, ops, stop.clone());
    let r = restarted.round().await;
    assert!(r.changes.is_empty(), "the open incident fired again after the restart: {r:?}");
    assert_eq!(restarted.stats().lock().unwrap().open.len(), 1, "it is still open");
    // The condition clears: one clean round is not enough, the second resolves it, once.
    set_columns(&f.pool, waiting, "status_id = 5").await;
    let r = restarted.round().await;
    assert!(r.changes.is_empty(), "{r:?}");
    let r = restarted.round().await;
    assert_eq!(keys(&r.changes, "resolved"), ["no_worker:prod:extraction"], "{r:?}");
    assert_eq!(r.changes[0].since, since, "the incident keeps the start the first monitor saw");
    assert!(restarted.round().await.changes.is_empty());
    restarted.webhook_idle().await;
    let delivered: Vec<Value> = received.lock().unwrap().iter().filter(|(s, _)| *s == 200).map(|(_, v)| v.clone()).collect();
    let states: Vec<(&str, &str)> =
        delivered.iter().map(|v| (v["alert"].as_str().unwrap_or(""), v["state"].as_str().unwrap_or(""))).collect();
    assert_eq!(states, [("no_worker:prod:extraction", "firing"), ("no_worker:prod:extraction", "resolved")]);
    let text = registre_monitor_lib::render_stats(&restarted.stats().lock().unwrap());
    assert!(text.contains("registre_monitor_webhook_deliveries_total{outcome=\"delivered\"} 1"), "{text}");
    assert!(text.contains("registre_monitor_webhook_deliveries_total{outcome=\"dropped\"} 0"), "{text}");
    stop.cancel();
}

/// A Supabase REST-only environment is not "down" on the monitor's /metrics: no registre_up 0 for
/// it, registre_env_rest_only 1 instead; the monitor's rounds skip it and raise nothing about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rest_only_environment_is_not_down() {
    let rest = format!("http://127.0.0.1:{}", registre_testkit::free_port());
    let mut f = fixture(&[("STAGING_SUPABASE_URL", rest), ("STAGING_SUPABASE_SERVICE_KEY", "key".into())]).await;
    let report = f.monitor.round().await;
    assert!(report.unreachable.is_empty() && report.changes.is_empty(), "{report:?}");
    let ops = Ops::from_config(&f.config).expect("ops");
    let text = registre_ops::render_metrics(&registre_ops::overview(&ops).await);
    assert!(text.contains("registre_up{dependency=\"prod\"} 1"), "{text}");
    assert!(!text.contains("registre_up{dependency=\"staging\"}"), "{text}");
    assert!(text.contains("registre_env_rest_only{env=\"staging\"} 1"), "{text}");
}
