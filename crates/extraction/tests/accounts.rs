//! `worker_accounts` as the registry fetcher's account provider, through the queue backend, on a
//! fresh PostgreSQL database: directly AND through Supabase REST (the local PostgREST stand-in
//! running every call on that same database). One holder per account across providers (processes)
//! even with many acquirers at once, failures counted, and a holder that vanishes without
//! releasing (crash) frees its account when the lease expires.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_fetch::{AccountError, AccountProvider};
use registre_queue::EnvQueue;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::postgrest::PostgrestStandIn;
use registre_extraction::accounts::QueueAccounts;
use sqlx::{Connection, PgConnection};

const KEY: &str = "service-role-key.accounts-test";
/// Short leases so the "crashed holder" case resolves quickly; renewals every third of it.
const LEASE: Duration = Duration::from_millis(1500);

enum Backend {
    Postgres,
    Rest,
}

async fn setup(accounts: usize) -> (TestDatabase, PgConnection) {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    for n in 0..accounts {
        sqlx::query("INSERT INTO worker_accounts (username, password) VALUES ($1, $2)")
            .bind(format!("notaire{n}"))
            .bind(format!("pw-{n}"))
            .execute(&mut conn)
            .await
            .expect("insert account");
    }
    (db, conn)
}

/// A provider on its own queue backend (as a separate process would have).
fn provider(config: &Config) -> QueueAccounts {
    let queue = EnvQueue::connect(&config.environments[0], &config.queue, 2).expect("queue");
    QueueAccounts::new(Arc::new(queue), LEASE, config.queue.call_timeout)
}

async fn config(db: &TestDatabase, backend: &Backend) -> (Config, Option<PostgrestStandIn>) {
    match backend {
        Backend::Postgres => (Config::from_vars([("PROD_DATABASE_URL", db.url())]).expect("config"), None),
        Backend::Rest => {
            let rest = PostgrestStandIn::start(db.url(), KEY).await;
            let config = Config::from_vars([("PROD_SUPABASE_URL", rest.url.as_str()), ("PROD_SUPABASE_SERVICE_KEY", KEY)]).expect("config");
            (config, Some(rest))
        }
    }
}

async fn exclusive_counted_and_freed(backend: Backend) {
    let (db, mut conn) = setup(3).await;
    let (config, rest) = config(&db, &backend).await;

    // 12 providers (processes) acquire at once: exactly 3 get an account, all different.
    let providers: Vec<Arc<QueueAccounts>> = (0..12).map(|_| Arc::new(provider(&config))).collect();
    let mut tasks = Vec::new();
    for p in &providers {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { p.acquire().await }));
    }
    let mut got = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(account) => got.push((i, account)),
            Err(AccountError::NoneAvailable) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let names: HashSet<_> = got.iter().map(|(_, a)| a.username.clone()).collect();
    assert_eq!(names.len(), 3, "one holder per account");
    assert!(!format!("{got:?}").contains("pw-"), "passwords hidden");
    assert!(got.iter().all(|(_, a)| a.password.expose() == format!("pw-{}", &a.username["notaire".len()..])));

    // A refused login is counted; the account sinks to the back of the line.
    let (holder, refused) = &got[0];
    providers[*holder].report_login_failure(refused, "Code d'utilisateur ou mot de passe invalide").await;
    let failures = failure_count(&mut conn, &refused.username).await;
    assert_eq!(failures, 1);

    // Leases are renewed while in use: a holder keeps its account well past the lease length
    // (polled: the lease expiry moves forward at least three times).
    let mut expiries = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while expiries.len() < 4 {
        assert!(Instant::now() < deadline, "leases never renewed: {expiries:?}");
        let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT lease_expires_at FROM worker_accounts WHERE username = $1")
            .bind(&got[1].1.username)
            .fetch_one(&mut conn)
            .await
            .expect("lease");
        if expiries.last().is_none_or(|last| at > *last) {
            expiries.push(at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(providers[11].acquire().await, Err(AccountError::NoneAvailable), "renewed leases are not lent again");

    // A released account is free again at once; a good login resets the count.
    providers[*holder].release(refused).await;
    let again = providers[11].acquire().await.expect("released account is free again");
    assert_eq!(again.username, refused.username);
    providers[11].report_login_success(&again).await;
    let failures = failure_count(&mut conn, &again.username).await;
    assert_eq!(failures, 0);

    // A holder that vanishes without releasing (a crash: its renewals stop) frees its account
    // once the lease expires.
    let (crashed_index, crashed) = (got[2].0, got[2].1.clone());
    let survivors: Vec<_> = providers.iter().enumerate().filter(|(i, _)| *i != crashed_index).map(|(_, p)| p.clone()).collect();
    drop(providers);
    let taker = provider(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let freed = loop {
        match taker.acquire().await {
            Ok(account) => break account,
            Err(AccountError::NoneAvailable) => {
                assert!(Instant::now() < deadline, "the crashed holder's account never came free");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(freed.username, crashed.username);
    drop(survivors);
    if let Some(rest) = rest {
        let functions: HashSet<String> = rest.calls().into_iter().map(|c| c.function).collect();
        for f in ["queue_acquire_account", "queue_renew_account", "queue_release_account", "queue_report_account_login"] {
            assert!(functions.contains(f), "{f} not called over REST: {functions:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_are_exclusive_counted_and_freed_through_postgres() {
    exclusive_counted_and_freed(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_are_exclusive_counted_and_freed_through_supabase_rest() {
    exclusive_counted_and_freed(Backend::Rest).await;
}

/// The account's failure_count as the queue keeps it.
async fn failure_count(conn: &mut sqlx::PgConnection, username: &str) -> i32 {
    sqlx::query_scalar("SELECT failure_count FROM worker_accounts WHERE username = $1").bind(username).fetch_one(conn).await.expect("failure_count")
}
