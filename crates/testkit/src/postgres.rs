//! A fresh PostgreSQL database per test: `test_<12 hex>` created on the shared server
//! (TEST_POSTGRES_URL, default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the
//! [`TestDatabase`] is dropped, so tests run in parallel without seeing each other's rows.
//! Panics with a clear message if PostgreSQL does not answer: tests never skip.
//! Also the one way tests write a queue row ([`insert_row`], [`set_columns`]) and the older
//! system's status table ([`status_table_sql`]).

use std::time::Duration;

use registre_domain::status;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

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

/// A fresh database migrated by `migrate` (registre_queue::migrate, which testkit cannot depend
/// on), and a pool of 4 connections to it.
pub async fn migrated<T, E: std::fmt::Debug>(migrate: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>) -> (TestDatabase, PgPool) {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    migrate(&mut conn).await.expect("migrate");
    conn.close().await.expect("close");
    let pool = PgPoolOptions::new().max_connections(4).connect(db.url()).await.expect("pool");
    (db, pool)
}

/// Inserts an `extraction_queue` row of `source` and `number` in `status` (circonscription
/// Montréal, cadastre du Québec, created now by the clock, so rows inserted one after the other
/// are ordered); its id.
pub async fn insert_row(pool: &PgPool, source: &str, number: &str, status: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id, created_at)
         VALUES ($1, $2, 'Montréal', 'Cadastre du Québec', $3, clock_timestamp()) RETURNING id",
    )
    .bind(source)
    .bind(number)
    .bind(status)
    .fetch_one(pool)
    .await
    .expect("insert row")
}

/// `UPDATE extraction_queue SET <set> WHERE id = <id>` (`set` is SQL, e.g. `attemtps = 3`);
/// nothing when `set` is empty.
pub async fn set_columns(pool: &PgPool, id: Uuid, set: &str) {
    if !set.is_empty() {
        sqlx::query(&format!("UPDATE extraction_queue SET {set} WHERE id = $1")).bind(id).execute(pool).await.expect("update row");
    }
}

/// The `extraction_status` table of the older system, with its rows (registre_domain::status),
/// as SQL: the start of the production shape the migration tests rebuild.
pub fn status_table_sql() -> String {
    let rows: Vec<String> = status::ALL.iter().map(|s| format!("({s}, '{}')", status::label(*s))).collect();
    format!(
        "CREATE TABLE extraction_status (id integer PRIMARY KEY, name varchar(50) NOT NULL);\nINSERT INTO extraction_status VALUES {};\n",
        rows.join(", ")
    )
}
