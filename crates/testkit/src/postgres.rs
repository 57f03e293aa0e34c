//! A fresh PostgreSQL database per test: `test_<12 hex>` created on the shared server
//! (TEST_POSTGRES_URL, default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the
//! [`TestDatabase`] is dropped, so tests run in parallel without seeing each other's rows.
//! Panics with a clear message if PostgreSQL does not answer: tests never skip.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The server tests create their databases on (its maintenance database).
pub fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for the life of this value.
pub struct TestDatabase {
    pub name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database. Callable from sync or async tests (it runs on its own thread).
    pub fn create() -> TestDatabase {
        let name = crate::unique("test").replace('-', "_");
        let admin = admin_url();
        let sql = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = run_admin(&admin, sql) {
            panic!(
                "PostgreSQL at {admin} does not answer or refused CREATE DATABASE ({e}): start it \
                 (bash .ci/run does) before running the tests"
            );
        }
        let url = match url::Url::parse(&admin) {
            Ok(mut u) => {
                u.set_path(&name);
                u.to_string()
            }
            Err(e) => panic!("TEST_POSTGRES_URL={admin} is not a URL: {e}"),
        };
        TestDatabase { name, url }
    }

    /// Connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = run_admin(&admin_url(), sql) {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// Runs one statement on the admin database from a private thread and runtime, so it works inside
/// or outside a tokio runtime (Drop included).
fn run_admin(admin: &str, sql: String) -> Result<(), String> {
    let admin = admin.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin))
                .await
                .map_err(|_| "no answer within 5 s".to_string())?
                .map_err(|e| e.to_string())?;
            sqlx::raw_sql(&sql).execute(&mut conn).await.map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("admin thread panicked".to_string()))
}
