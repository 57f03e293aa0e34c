//! Registry logins from the `worker_accounts` table, for the `registry` fetcher (DESIGN §9).
//!
//! An account is held by one worker at a time, on every server: `acquire` takes a Postgres
//! session-level advisory lock on the account (key: `hashtextextended('worker_accounts:' || id)`)
//! on a connection kept open while the account is in use. `release` unlocks and closes it; if the
//! process dies, Postgres drops the connection and the lock with it, so an account never stays
//! held by a crashed worker. Accounts are tried by fewest failures, then least recently used.
//! A refused login adds one to `failure_count`; an accepted one resets it and sets `last_used`.

use std::collections::HashMap;
use std::time::Duration;

use registre_config::{Backend, Config, EnvName, Secret, SecretUrl};
use registre_fetch::{Account, AccountError, AccountProvider, BoxFuture};
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

const LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('worker_accounts:' || $1::text, 0))";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `worker_accounts` of one Postgres environment.
pub struct PgAccounts {
    env: EnvName,
    url: SecretUrl,
    /// Account id → the connection holding its lock.
    held: Mutex<HashMap<String, PgConnection>>,
}

impl std::fmt::Debug for PgAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAccounts").field("env", &self.env).field("url", &self.url.redacted()).finish()
    }
}

impl PgAccounts {
    pub fn new(env: EnvName, url: SecretUrl) -> PgAccounts {
        PgAccounts { env, url, held: Mutex::new(HashMap::new()) }
    }

    /// The accounts of the first environment reached directly through Postgres (prod, then
    /// staging, then dev); None when every environment is a Supabase REST one.
    pub fn from_config(config: &Config) -> Option<PgAccounts> {
        config.environments.iter().find_map(|env| match &env.backend {
            Backend::Database { url } => Some(PgAccounts::new(env.name, url.clone())),
            Backend::Supabase { .. } => None,
        })
    }

    fn other(&self, what: &str, e: impl std::fmt::Display) -> AccountError {
        AccountError::Other(format!("worker_accounts of {}: {what}: {e}", self.env))
    }

    async fn connect(&self) -> Result<PgConnection, AccountError> {
        match tokio::time::timeout(CALL_TIMEOUT, PgConnection::connect(self.url.expose())).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.other(&format!("cannot connect to {}", self.url.redacted()), e)),
            Err(_) => Err(self.other("connect", format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
        }
    }

    async fn try_acquire(&self) -> Result<Account, AccountError> {
        let mut conn = self.connect().await?;
        let candidates: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id::text, username, password FROM worker_accounts WHERE is_active
             ORDER BY failure_count, last_used NULLS FIRST, username",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| self.other("reading accounts", e))?;
        for (id, username, password) in candidates {
            let locked: bool =
                sqlx::query_scalar(LOCK).bind(&id).fetch_one(&mut conn).await.map_err(|e| self.other("locking an account", e))?;
            if !locked {
                continue;
            }
            sqlx::query("UPDATE worker_accounts SET last_used = now(), updated_at = now() WHERE id = $1::uuid")
                .bind(&id)
                .execute(&mut conn)
                .await
                .map_err(|e| self.other("marking an account used", e))?;
            self.held.lock().await.insert(id.clone(), conn);
            return Ok(Account { id, username, password: Secret::new(password) });
        }
        let _ = conn.close().await;
        Err(AccountError::NoneAvailable)
    }

    async fn update(&self, account: &Account, sql: &'static str, what: &str) {
        let result = async {
            let mut conn = self.connect().await?;
            sqlx::query(sql).bind(&account.id).execute(&mut conn).await.map_err(|e| self.other(what, e))?;
            let _ = conn.close().await;
            Ok::<(), AccountError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!("{what} of registry account {} not recorded: {e}", account.username);
        }
    }
}

impl AccountProvider for PgAccounts {
    fn acquire(&self) -> BoxFuture<'_, Result<Account, AccountError>> {
        Box::pin(self.try_acquire())
    }

    fn release<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let conn = self.held.lock().await.remove(&account.id);
            if let Some(mut conn) = conn {
                let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended('worker_accounts:' || $1::text, 0))")
                    .bind(&account.id)
                    .execute(&mut conn)
                    .await;
                // Closing the session frees the lock in any case.
                let _ = conn.close().await;
            }
        })
    }

    fn report_login_failure<'a>(&'a self, account: &'a Account, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::warn!("registry refused account {}: {reason} (failure_count + 1)", account.username);
            self.update(
                account,
                "UPDATE worker_accounts SET failure_count = failure_count + 1, updated_at = now() WHERE id = $1::uuid",
                "failed login",
            )
            .await;
        })
    }

    fn report_login_success<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.update(
                account,
                "UPDATE worker_accounts SET failure_count = 0, last_used = now(), updated_at = now() WHERE id = $1::uuid",
                "successful login",
            )
            .await;
        })
    }
}
