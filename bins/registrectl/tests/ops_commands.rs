//! registrectl's operations subcommands as operators run them, against a real PostgreSQL (a fresh
//! migrated database per test) and Redis: `status --json` checked against the database and the
//! readable table, `enqueue` of a CSV with good and bad lines, `retry --errors --source acte`
//! touching only those rows, show / retry / cancel with their exit codes, `requeue-stuck`,
//! `release-capacity` (and its old name `release-lease`) refusing a lease still renewed unless
//! --force. The command line without configuration (help, usage errors, completions) is
//! tests/command_line.rs.

use std::process::{Command, Output};

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::{Config, EnvName};
use registre_testkit::postgres::{insert_row, set_columns, TestDatabase};
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use uuid::Uuid;

struct Ctl {
    db: TestDatabase,
    pool: PgPool,
    env: Vec<(String, String)>,
}

async fn setup(extra: &[(&str, &str)]) -> Ctl {
    let (db, pool) = registre_testkit::postgres::migrated(async |c: &mut PgConnection| registre_queue::migrate(c, EnvName::Prod).await).await;
    let mut env = vec![
        ("PROD_DATABASE_URL".to_string(), db.url().to_string()),
        ("REDIS_URL".to_string(), registre_testkit::shared_redis_url()),
        ("SERVER_ID".to_string(), registre_testkit::unique("ctl")),
        ("OCR_RATE_LIMIT_NAME".to_string(), registre_testkit::unique("ctl-rl")),
        ("USER".to_string(), "tester".to_string()),
    ];
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    Ctl { db, pool, env }
}

impl Ctl {
    /// Runs registrectl off the async runtime's threads (it may take seconds: release-capacity watches).
    async fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = self.env.clone();
        tokio::task::spawn_blocking(move || {
            let dir = std::env::temp_dir().join(registre_testkit::unique("registrectl"));
            std::fs::create_dir_all(&dir).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_registrectl"))
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env)
                .current_dir(&dir)
                .output()
                .expect("run registrectl");
            let _ = std::fs::remove_dir_all(&dir);
            out
        })
        .await
        .expect("registrectl thread")
    }

    fn config(&self) -> Config {
        Config::from_vars(self.env.clone()).expect("config")
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn row(pool: &PgPool, source: &str, status: i32, set: &str) -> Uuid {
    let id = insert_row(pool, source, &registre_testkit::unique("N"), status).await;
    set_columns(pool, id, set).await;
    id
}

async fn status_of(pool: &PgPool, id: Uuid) -> i32 {
    sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(pool).await.expect("row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_the_database_and_the_table_is_readable() {
    let ctl = setup(&[]).await;
    for (source, status, n) in [("index", 1, 3), ("acte", 1, 1), ("acte", 4, 2), ("plan_cadastraux", 5, 1), ("index", 3, 2)] {
        for _ in 0..n {
            row(&ctl.pool, source, status, "").await;
        }
    }
    let config = ctl.config();
    let redis = registre_runtime::redis_connection(&config.redis_url).expect("redis");
    let manager = CapacityManager::new(redis, CapacitySettings::from_config(&config));
    let lease = manager.try_lease("registre-worker-1-cafe0001", WorkerType::Registre).await.unwrap().expect("fits");

    let out = ctl.run(&["status", "--json"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let prod = &v["environments"][0];
    assert_eq!(prod["env"], "prod");
    let db_counts: Vec<(i32, String, i64)> = sqlx::query_as(
        "SELECT status_id, document_source::text, count(*) FROM extraction_queue GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&ctl.pool)
    .await
    .unwrap();
    let json_counts: Vec<(i32, String, i64)> = prod["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| (c["status_id"].as_i64().unwrap() as i32, c["document_source"].as_str().unwrap().to_string(), c["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(json_counts, db_counts);
    assert_eq!(prod["completed_last_hour"], 1);
    assert!(prod["oldest_waiting_seconds"]["extraction"].as_f64().is_some_and(|s| s >= 0.0), "{prod}");
    let workers = v["live"]["workers"].as_array().expect("workers");
    assert!(workers.iter().any(|w| w["worker_id"] == "registre-worker-1-cafe0001" && w["type"] == "registre"), "{workers:?}");
    assert_eq!(v["live"]["rate_limit"]["requests_limit"], 1600);

    let out = ctl.run(&["status"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    println!("{stdout}");
    for expected in ["QUEUE", "1 En attente", "4 (index 3, acte 1, plan 0)", "4 Erreur", "6 OCR en traitement", "oldest waiting: fetch", "WORKERS", "registre-worker-1-cafe0001", "CAPACITY", "RATE LIMIT", "OCR POOL"] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    lease.release().await.unwrap();

    // An environment that does not answer: what answered is printed, exit 1.
    let dead = format!("postgres://postgres@127.0.0.1:{}/none", registre_testkit::free_port());
    let mut down = setup(&[]).await;
    down.env.push(("STAGING_DATABASE_URL".into(), dead));
    let out = down.run(&["status", "--json"]).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout).expect("JSON even when an environment is down");
    assert!(v["environments"][1]["error"].as_str().is_some_and(|e| e.contains("staging")), "{v}");
    drop(down.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_csv_queues_good_lines_and_reports_each_refused_line_by_number() {
    let ctl = setup(&[]).await;
    let csv = "document_source,document_number,circonscription_fonciere,cadastre,acte_type\n\
               index,4 866 594,Montréal,Cadastre du Québec,\n\
               acte,12 345 678,Montréal,,Vente\n\
               index,123,Montréal,,\n\
               deed,1,Montréal,x,\n\
               \"plan_cadastraux\",\"55 A\",Québec,\"Cadastre du Québec\",\n\
               index,4 866 594,Montréal,Cadastre du Québec,\n\
               index,\"unterminated,Montréal,x,\n";
    let path = std::env::temp_dir().join(format!("{}.csv", registre_testkit::unique("enqueue")));
    std::fs::write(&path, csv).unwrap();
    let out = ctl.run(&["enqueue", "--csv", path.to_str().unwrap()]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "refused lines fail the run\n{stdout}\n{stderr}");
    for expected in ["line 2: queued", "line 3: queued", "line 6: queued", "line 7: already waiting or in progress", "prod: 3 queued, 1 already waiting or in progress, 3 refused"] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    assert!(stderr.contains("line 4: refused: cadastre is required for an index or a plan cadastral"), "{stderr}");
    assert!(stderr.contains("line 5: refused: document_source \"deed\" is not one of acte, index, plan_cadastraux"), "{stderr}");
    assert!(stderr.contains("line 8: a double quote is not closed"), "{stderr}");
    let rows: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT document_source::text, document_number::text, status_id FROM extraction_queue ORDER BY 1, 2").fetch_all(&ctl.pool).await.unwrap();
    assert_eq!(
        rows,
        [("acte".into(), "12 345 678".into(), 1), ("index".into(), "4 866 594".into(), 1), ("plan_cadastraux".into(), "55 A".into(), 1)]
    );
    let _ = std::fs::remove_file(&path);

    // One document from flags; refused flags exit 2 with the reason.
    let out = ctl.run(&["enqueue", "--source", "acte", "--number", "99 1", "--circonscription", "Laval", "--acte-type", "Vente"]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("prod: queued acte 99 1 as "));
    let out = ctl.run(&["enqueue", "--source", "acte", "--number", "99 2", "--circonscription", "Laval"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("acte_type is required for an acte"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_with_source_and_since_touches_only_those_rows() {
    let ctl = setup(&[]).await;
    let acte_errors = [
        row(&ctl.pool, "acte", 4, "error_message = 'introuvable'").await,
        row(&ctl.pool, "acte", 4, "error_message = 'introuvable', updated_at = now() - interval '3 hours'").await,
    ];
    let index_recent = row(&ctl.pool, "index", 4, "error_message = 'x'").await;
    let index_old = row(&ctl.pool, "index", 4, "error_message = 'x', updated_at = now() - interval '3 hours'").await;
    let acte_done = row(&ctl.pool, "acte", 5, "").await;
    let acte_waiting = row(&ctl.pool, "acte", 1, "").await;

    let out = ctl.run(&["retry", "--errors", "--source", "acte"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("prod: 2 Erreur row(s) of source acte retried"), "{stdout}");
    for id in acte_errors {
        assert_eq!(status_of(&ctl.pool, id).await, 1);
    }
    assert_eq!((status_of(&ctl.pool, index_recent).await, status_of(&ctl.pool, index_old).await), (4, 4));
    assert_eq!((status_of(&ctl.pool, acte_done).await, status_of(&ctl.pool, acte_waiting).await), (5, 1));

    let out = ctl.run(&["retry", "--errors", "--since", "1h"]).await;
    assert!(text(&out).0.contains("prod: 1 Erreur row(s) failed since"), "{:?}", text(&out));
    assert_eq!((status_of(&ctl.pool, index_recent).await, status_of(&ctl.pool, index_old).await), (1, 4));
}

/// Durations too large for a date (`--since 100000000d` is 273,000 years back, past chrono's range)
/// or for u64 are bad arguments: exit 2 with a line naming the argument and the limit, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_durations_are_bad_arguments_not_a_panic() {
    let ctl = setup(&[]).await;
    for args in [
        &["retry", "--errors", "--since", "100000000d"][..],
        &["retry", "--errors", "--since", "99999999999999999999999s"][..],
        &["requeue-stuck", "--older-than", "100000000d"][..],
        &["requeue-stuck", "--older-than", "18446744073709551615d"][..],
    ] {
        let out = ctl.run(args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        let flag = if args[0] == "retry" { "--since <WHEN>" } else { "--older-than <DURATION>" };
        assert!(first.starts_with(&format!("error: invalid value '{}' for '{flag}'", args[args.len() - 1])), "{args:?}: {stderr}");
        assert!(first.contains("at most 36500d"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A Supabase REST-only environment is not down: `status` and `requeue-stuck` skip it with a note
/// and exit 0 (the prod environment beside it is still read and repaired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_only_environments_are_skipped_with_a_note_not_failed() {
    let rest = format!("http://127.0.0.1:{}", registre_testkit::free_port());
    let ctl = setup(&[("STAGING_SUPABASE_URL", &rest), ("STAGING_SUPABASE_SERVICE_KEY", "service-key-for-the-test")]).await;
    row(&ctl.pool, "index", 1, "").await;
    for args in [&["status"][..], &["status", "--json"][..], &["requeue-stuck"][..]] {
        let out = ctl.run(args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains("skipped: staging is reached through Supabase REST only"), "{args:?}: {stdout}");
        assert!(!stdout.contains("service-key-for-the-test") && !stderr.contains("service-key-for-the-test"));
    }
    let out = ctl.run(&["status", "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let staging = v["environments"].as_array().unwrap().iter().find(|e| e["env"] == "staging").cloned().unwrap();
    assert!(staging.get("error").is_none() && staging["note"].is_string(), "{staging}");
    let out = ctl.run(&["requeue-stuck"]).await;
    assert!(text(&out).0.contains("prod: 0 expired lease(s) reaped"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_retry_cancel_their_exit_codes_and_help_on_each_subcommand() {
    let ctl = setup(&[]).await;
    let waiting = row(&ctl.pool, "index", 1, "").await;
    let id = waiting.to_string();
    let out = ctl.run(&["show", &id]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("status            1 En attente"), "{:?}", text(&out));
    assert!(text(&out).0.contains("fetched as        —"), "{:?}", text(&out));
    let out = ctl.run(&["show", &id, "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["id"], id.as_str());
    assert!(v.get("fetched_as").is_some_and(|f| f.is_null()), "{v}");
    // What delivered a completed row's document after the fetcher's fallbacks (0041 fetched_as).
    let delivered = "circonscription_fonciere=Montréal, acte_type=Acte divers";
    let fetched = row(&ctl.pool, "acte", 3, &format!("supabase_path = 'actes/x.pdf', fetched_as = '{delivered}'")).await.to_string();
    let out = ctl.run(&["show", &fetched]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains(&format!("fetched as        {delivered}")), "{:?}", text(&out));
    let out = ctl.run(&["show", &fetched, "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["fetched_as"], delivered);
    let out = ctl.run(&["show", &Uuid::new_v4().to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no extraction"));
    assert_eq!(ctl.run(&["show", "nope"]).await.status.code(), Some(2));
    assert_eq!(ctl.run(&["show", &id, "--environment", "qa"]).await.status.code(), Some(2));

    let out = ctl.run(&["retry", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("only a row in Erreur (4) can be retried"), "{:?}", text(&out));
    let out = ctl.run(&["cancel", &id]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let error: Option<String> = sqlx::query_scalar("SELECT error_message FROM extraction_queue WHERE id = $1").bind(waiting).fetch_one(&ctl.pool).await.unwrap();
    assert!(error.is_some_and(|e| e.starts_with("cancelled by tester through registrectl")));
    assert_eq!(ctl.run(&["cancel", &id]).await.status.code(), Some(1), "a final row cannot be cancelled");
    let out = ctl.run(&["retry", &id]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(status_of(&ctl.pool, waiting).await, 1);

    // Help and usage errors answer the same with a configuration as without (tests/command_line.rs).
    let out = ctl.run(&["retry", "--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("Usage: registrectl retry"), "{}", text(&out).0);
    let out = ctl.run(&["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unrecognized subcommand 'frobnicate'"));
    assert_eq!(ctl.run(&["status", "--colour"]).await.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_stuck_and_release_capacity_refusing_a_renewed_lease_unless_forced() {
    // A 6 s lease renewed every 2 s: release-capacity watches it for 3 s.
    let ctl = setup(&[("CAPACITY_LEASE_TTL_MS", "6000")]).await;
    let stuck = row(&ctl.pool, "index", 2, "worker_id = 'ts-1', processing_started_at = now() - interval '20 minutes', updated_at = now() - interval '20 minutes'").await;
    let out = ctl.run(&["requeue-stuck", "--older-than", "30m"]).await;
    assert!(text(&out).0.contains("prod: 0 expired lease(s) reaped, 0 stuck extraction row(s)"), "{:?}", text(&out));
    assert_eq!(status_of(&ctl.pool, stuck).await, 2);
    let out = ctl.run(&["requeue-stuck"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("1 stuck extraction row(s)"), "{:?}", text(&out));
    assert_eq!(status_of(&ctl.pool, stuck).await, 1);

    let config = ctl.config();
    let redis = registre_runtime::redis_connection(&config.redis_url).expect("redis");
    let manager = CapacityManager::new(redis, CapacitySettings::from_config(&config));
    let alive = manager.try_lease("ocr-worker-1-a11ve000", WorkerType::IndexOcr).await.unwrap().expect("fits");
    let held = |status: registre_capacity::CapacityStatus| status.workers.into_iter().map(|w| w.worker_id).collect::<Vec<_>>();

    let out = ctl.run(&["release-capacity", "ocr-worker-1-a11ve000"]).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("is still being renewed"), "{:?}", text(&out));
    assert!(held(manager.status().await.unwrap()).contains(&"ocr-worker-1-a11ve000".to_string()));

    // A lease nobody renews (its process is gone): released after the watch. Through the old name,
    // release-lease: the same command, said to be deprecated on stderr.
    let _ = manager.allocate("ocr-worker-2-dead0000", WorkerType::ActeOcr).await.unwrap();
    let out = ctl.run(&["release-lease", "ocr-worker-2-dead0000"]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("released the acte-ocr capacity lease of ocr-worker-2-dead0000"), "{:?}", text(&out));
    assert!(text(&out).1.contains("release-lease is deprecated: it releases capacity, use release-capacity"), "{:?}", text(&out));
    assert!(text(&out).0.contains("nobody renewed its lease"), "{:?}", text(&out));

    // --force skips the watch. (A live process's heartbeat would take its lease back: stop it first,
    // as an operator stops a hung process, then force the release before the TTL runs out.)
    drop(alive);
    let out = ctl.run(&["release-capacity", "ocr-worker-1-a11ve000", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("(forced)"), "{:?}", text(&out));
    let workers = held(manager.status().await.unwrap());
    assert!(!workers.iter().any(|w| w.starts_with("ocr-worker-")), "{workers:?}");

    let out = ctl.run(&["release-capacity", "nobody-0000"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no capacity lease of worker nobody-0000"));
}
