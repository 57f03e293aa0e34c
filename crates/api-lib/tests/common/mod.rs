//! Shared by registre-api's tests: a real registre-api served in-process on a free port over a fresh
//! migrated PostgreSQL database and the shared Redis (unique SERVER_ID and limiter name per test).
#![allow(dead_code)]

use registre_config::{Config, EnvName};
use registre_runtime::Shutdown;
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Api {
    pub base: String,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub config: Config,
    /// Sends `Authorization: Bearer <token>` on every request when the API has a token.
    pub client: reqwest::Client,
    /// Sends no credentials.
    pub bare: reqwest::Client,
    shutdown: Shutdown,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub async fn migrated_db() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    let pool = PgPoolOptions::new().max_connections(8).connect(db.url()).await.expect("pool");
    (db, pool)
}

/// A registre-api over a fresh database; `extra` variables are added (or override) the defaults.
pub async fn start(token: Option<&str>, extra: &[(&str, String)]) -> Api {
    let (db, pool) = migrated_db().await;
    start_over(db, pool, token, extra).await
}

/// A registre-api over `db` (already migrated; `pool` reaches it directly); `extra` as for [`start`]
/// (e.g. a PROD_DATABASE_URL through a fault proxy).
pub async fn start_over(db: TestDatabase, pool: PgPool, token: Option<&str>, extra: &[(&str, String)]) -> Api {
    let mut vars: Vec<(String, String)> = vec![
        ("PROD_DATABASE_URL".into(), db.url().to_string()),
        ("REDIS_URL".into(), registre_testkit::shared_redis_url()),
        ("SERVER_ID".into(), registre_testkit::unique("api")),
        ("OCR_RATE_LIMIT_NAME".into(), registre_testkit::unique("rl")),
    ];
    if let Some(t) = token {
        vars.push(("API_TOKEN".into(), t.to_string()));
    }
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.clone()));
    }
    let config = Config::from_vars(vars).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = Shutdown::new();
    let (c, s) = (config.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = registre_api_lib::serve(&c, listener, s).await {
            panic!("registre-api stopped: {e}");
        }
    });
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().expect("header"));
    }
    let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
    Api { base, db, pool, config, client, bare: reqwest::Client::new(), shutdown }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// host:port the API listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}
