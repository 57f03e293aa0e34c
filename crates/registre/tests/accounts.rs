//! `worker_accounts` as the registry fetcher's account provider, on a fresh PostgreSQL database:
//! one holder per account across providers (processes), failures counted, a dropped holder's
//! lock freed by Postgres.

use std::time::{Duration, Instant};

use registre_config::{EnvName, SecretUrl};
use registre_fetch::{AccountError, AccountProvider};
use registre_testkit::postgres::TestDatabase;
use registre_workers::accounts::PgAccounts;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn accounts_are_exclusive_counted_and_freed() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    sqlx::query("INSERT INTO worker_accounts (username, password) VALUES ('alice', 'pw-alice'), ('bob', 'pw-bob')")
        .execute(&mut conn)
        .await
        .expect("insert accounts");
    let url = SecretUrl::new(url::Url::parse(db.url()).expect("url"));
    let one = PgAccounts::new(EnvName::Prod, url.clone());
    let two = PgAccounts::new(EnvName::Prod, url.clone());

    let a = one.acquire().await.expect("first account");
    let b = two.acquire().await.expect("second account");
    assert_ne!(a.username, b.username);
    assert!(!format!("{a:?}").contains("pw-"), "password hidden: {a:?}");
    assert_eq!(two.acquire().await, Err(AccountError::NoneAvailable));

    one.report_login_failure(&a, "Code d'utilisateur ou mot de passe invalide").await;
    let failures: i32 = sqlx::query_scalar("SELECT failure_count FROM worker_accounts WHERE username = $1")
        .bind(&a.username)
        .fetch_one(&mut conn)
        .await
        .expect("failure_count");
    assert_eq!(failures, 1);
    one.release(&a).await;
    let again = two.acquire().await.expect("released account is free again");
    assert_eq!(again.username, a.username);

    // A holder that goes away without releasing (crash): Postgres frees its lock with its session.
    drop(two);
    let three = PgAccounts::new(EnvName::Prod, url);
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 {
        match three.acquire().await {
            Ok(account) => got.push(account.username),
            Err(AccountError::NoneAvailable) => {
                assert!(start.elapsed() < Duration::from_secs(10), "locks of a dropped provider not freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    got.sort();
    assert_eq!(got, ["alice", "bob"]);
    // A good login resets the failure count.
    let alice = registre_fetch::Account { id: sqlx::query_scalar("SELECT id::text FROM worker_accounts WHERE username = 'alice'").fetch_one(&mut conn).await.expect("id"), username: "alice".into(), password: registre_config::Secret::new("x") };
    three.report_login_success(&alice).await;
    let failures: i32 = sqlx::query_scalar("SELECT failure_count FROM worker_accounts WHERE username = 'alice'").fetch_one(&mut conn).await.expect("failure_count");
    assert_eq!(failures, 0);
}
