//! Migrations: the SQL files of `crates/queue/migrations/`, applied in order under a session
//! advisory lock (two `registrectl migrate` at once take turns), each recorded with a checksum in
//! `registre_schema_migrations`. Every file is idempotent (IF NOT EXISTS, CREATE OR REPLACE), so a
//! file whose text changed is simply applied again, on an empty database as on top of the
//! production schema. Workers never call this: only `registrectl migrate` does.
//!
//! Safe on a busy production table (docs/queue.md, Migrating):
//! - each file runs in its own transaction with `SET LOCAL lock_timeout`: a statement that would
//!   wait longer than QUEUE_MIGRATE_LOCK_TIMEOUT_MS for a table lock (and make every writer queue
//!   behind it) gives up instead, the file is rolled back and retried with backoff;
//! - a file whose first line is `-- migrate: no-transaction` runs outside any transaction, one
//!   statement at a time (statements end with `;` at the end of a line; no `;` inside one), for
//!   `CREATE INDEX CONCURRENTLY IF NOT EXISTS`, which cannot run in a transaction. An INVALID index
//!   left by an interrupted concurrent build (crash, lock timeout) is dropped CONCURRENTLY and built
//!   again, since IF NOT EXISTS alone would keep the broken one.

use std::time::Duration;

use registre_config::EnvName;
use sqlx::{Connection, PgConnection};

use crate::DatabaseError;

/// (name, SQL) in the order they apply.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_production_schema", include_str!("../migrations/0001_production_schema.sql")),
    ("0002_leases_and_backoff", include_str!("../migrations/0002_leases_and_backoff.sql")),
    ("0010_claim_extraction", include_str!("../migrations/0010_claim_extraction.sql")),
    ("0011_claim_ocr", include_str!("../migrations/0011_claim_ocr.sql")),
    ("0012_renew_lease", include_str!("../migrations/0012_renew_lease.sql")),
    ("0013_complete_extraction", include_str!("../migrations/0013_complete_extraction.sql")),
    ("0014_complete_ocr", include_str!("../migrations/0014_complete_ocr.sql")),
    ("0015_fail_extraction", include_str!("../migrations/0015_fail_extraction.sql")),
    ("0016_fail_ocr", include_str!("../migrations/0016_fail_ocr.sql")),
    ("0017_release", include_str!("../migrations/0017_release.sql")),
    ("0018_reap_expired", include_str!("../migrations/0018_reap_expired.sql")),
    ("0019_count_waiting", include_str!("../migrations/0019_count_waiting.sql")),
    ("0020_partial_failures", include_str!("../migrations/0020_partial_failures.sql")),
    ("0021_claim_extraction_with_token", include_str!("../migrations/0021_claim_extraction_with_token.sql")),
    ("0022_claim_ocr_with_token", include_str!("../migrations/0022_claim_ocr_with_token.sql")),
    ("0023_release_claim", include_str!("../migrations/0023_release_claim.sql")),
    ("0024_release_after_crash", include_str!("../migrations/0024_release_after_crash.sql")),
    ("0025_acquire_account", include_str!("../migrations/0025_acquire_account.sql")),
    ("0026_renew_account", include_str!("../migrations/0026_renew_account.sql")),
    ("0027_release_account", include_str!("../migrations/0027_release_account.sql")),
    ("0028_report_account_login", include_str!("../migrations/0028_report_account_login.sql")),
    ("0029_indexes_concurrently", include_str!("../migrations/0029_indexes_concurrently.sql")),
    // 0030-0039: pickup by LISTEN/NOTIFY; the fused complete-and-claim functions (0031, 0032) dropped.
    ("0030_notify_claimable", include_str!("../migrations/0030_notify_claimable.sql")),
    ("0033_drop_complete_and_claim", include_str!("../migrations/0033_drop_complete_and_claim.sql")),
    ("0040_fail_extraction_final", include_str!("../migrations/0040_fail_extraction_final.sql")),
    ("0041_fetched_as", include_str!("../migrations/0041_fetched_as.sql")),
    // 0050-0069: the operators' indexes and functions (crates/ops, registre-api).
    ("0050_ops_indexes", include_str!("../migrations/0050_ops_indexes.sql")),
    ("0051_ops_enqueue", include_str!("../migrations/0051_ops_enqueue.sql")),
    ("0052_ops_retry", include_str!("../migrations/0052_ops_retry.sql")),
    ("0053_ops_cancel", include_str!("../migrations/0053_ops_cancel.sql")),
    ("0054_ops_retry_errors", include_str!("../migrations/0054_ops_retry_errors.sql")),
    ("0055_ops_requeue_stuck", include_str!("../migrations/0055_ops_requeue_stuck.sql")),
    ("0056_ops_normalize_numbers", include_str!("../migrations/0056_ops_normalize_numbers.sql")),
    ("0057_ops_identity_normalized", include_str!("../migrations/0057_ops_identity_normalized.sql")),
    // 0070-0079: the index des immeubles as data (index_data).
    ("0070_index_data", include_str!("../migrations/0070_index_data.sql")),
    // 0090: the privileges of every queue and ops function above, in one list; runs last.
    ("0090_privileges", include_str!("../migrations/0090_privileges.sql")),
];

/// Key of the advisory lock held while migrating ("registre" in ASCII).
const LOCK_KEY: i64 = 0x7265_6769_7374_7265;

/// What one run did to one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files applied by this run (new, or whose text changed since they were recorded).
    pub applied: Vec<&'static str>,
    /// Files already recorded with the same text: left alone.
    pub unchanged: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{env}: cannot connect to {url}: {source}")]
    Connect {
        env: EnvName,
        /// Redacted.
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{env}: migration {name} failed (that file was rolled back; the files before it stay applied): {source}")]
    Apply {
        env: EnvName,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Database(DatabaseError),
}

/// FNV-1a of a file's text: tells whether a recorded migration changed (not a security hash).
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// First line of a migration file that must run outside a transaction, statement by statement.
pub const NO_TRANSACTION: &str = "-- migrate: no-transaction";

/// SQLSTATE lock_not_available: a statement gave up waiting for a lock (lock_timeout).
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How patient `registrectl migrate` is with a busy database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Longest wait of one statement for a lock (QUEUE_MIGRATE_LOCK_TIMEOUT_MS).
    pub lock_timeout: Duration,
    /// Tries of one file (or one statement of a no-transaction file) that keeps hitting the lock
    /// timeout, with a backoff between tries, before the run fails.
    pub lock_tries: u32,
}

impl Default for MigrateOptions {
    fn default() -> MigrateOptions {
        MigrateOptions { lock_timeout: Duration::from_secs(2), lock_tries: 60 }
    }
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// The statements of a no-transaction file: comment lines dropped, split at `;` ending a line.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').trim().to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The index name of `CREATE INDEX CONCURRENTLY IF NOT EXISTS <name> ...`, if the statement is one.
fn concurrent_index_name(statement: &str) -> Option<&str> {
    let words: Vec<&str> = statement.split_whitespace().take(7).collect();
    let head: Vec<String> = words.iter().take(6).map(|w| w.to_ascii_uppercase()).collect();
    (head == ["CREATE", "INDEX", "CONCURRENTLY", "IF", "NOT", "EXISTS"]).then(|| words.get(6).copied()).flatten()
}

/// Applies every migration that is new or changed (docs/queue.md, Migrating), with the default
/// lock timeout.
pub async fn migrate(conn: &mut PgConnection, env: EnvName) -> Result<MigrationReport, MigrateError> {
    migrate_with(conn, env, MigrateOptions::default()).await
}

/// Applies every migration that is new or changed: each file in its own transaction (or statement
/// by statement for a no-transaction file), every lock wait bounded by `options.lock_timeout`.
/// Files before a failing one stay applied (and recorded); the failing one is rolled back.
pub async fn migrate_with(conn: &mut PgConnection, env: EnvName, options: MigrateOptions) -> Result<MigrationReport, MigrateError> {
    let db = |operation: &'static str| move |source| MigrateError::Database(DatabaseError { env, operation, source });
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db("taking the migration lock"))?;
    let result = apply_all(conn, env, options).await;
    // Closing the session frees the lock in any case; unlock now so the connection can be reused.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut *conn).await;
    let _ = sqlx::query("RESET lock_timeout").execute(&mut *conn).await;
    result
}

async fn apply_all(conn: &mut PgConnection, env: EnvName, options: MigrateOptions) -> Result<MigrationReport, MigrateError> {
    let db = |operation: &'static str| move |source| MigrateError::Database(DatabaseError { env, operation, source });
    // Quiet the "already exists, skipping" notices of idempotent statements.
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut *conn)
        .await
        .map_err(db("SET client_min_messages"))?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS registre_schema_migrations (
             name text PRIMARY KEY,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *conn)
    .await
    .map_err(db("creating registre_schema_migrations"))?;
    let recorded: Vec<(String, String)> = sqlx::query_as("SELECT name, checksum FROM registre_schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading registre_schema_migrations"))?;

    let lock_timeout_ms = i64::try_from(options.lock_timeout.as_millis()).unwrap_or(i64::MAX).max(1);
    let mut report = MigrationReport::default();
    for (name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if recorded.iter().any(|(n, c)| n == name && *c == sum) {
            report.unchanged.push(name);
            continue;
        }
        let apply = |source| MigrateError::Apply { env, name, source };
        if sql.starts_with(NO_TRANSACTION) {
            sqlx::raw_sql(&format!("SET lock_timeout = {lock_timeout_ms}")).execute(&mut *conn).await.map_err(apply)?;
            for statement in statements(sql) {
                apply_statement(conn, &statement, options).await.map_err(apply)?;
            }
            sqlx::query("RESET lock_timeout").execute(&mut *conn).await.map_err(apply)?;
            record(&mut *conn, name, &sum).await.map_err(apply)?;
        } else {
            let mut backoff = registre_runtime::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            let mut tries = 0;
            loop {
                tries += 1;
                match apply_file(conn, sql, name, &sum, lock_timeout_ms).await {
                    Ok(()) => break,
                    Err(e) if is_lock_timeout(&e) && tries < options.lock_tries => {
                        let delay = backoff.next_delay();
                        tracing::warn!(%env, "⏳ {name}: a table stayed locked for {lock_timeout_ms} ms (lock_timeout): rolled back, retrying in {} ms", delay.as_millis());
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(apply(e)),
                }
            }
        }
        report.applied.push(name);
    }
    Ok(report)
}

async fn record(conn: &mut PgConnection, name: &str, sum: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO registre_schema_migrations (name, checksum) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
    )
    .bind(name)
    .bind(sum)
    .execute(&mut *conn)
    .await
    .map(|_| ())
}

/// One file in one transaction, recorded in it: all of it or none of it.
async fn apply_file(conn: &mut PgConnection, sql: &str, name: &str, sum: &str, lock_timeout_ms: i64) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(&format!("SET LOCAL lock_timeout = {lock_timeout_ms}")).execute(&mut *tx).await?;
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    record(&mut tx, name, sum).await?;
    tx.commit().await
}

/// One statement of a no-transaction file, retried while it hits the lock timeout. A concurrent
/// index build first drops an INVALID index of the same name (left by an interrupted build).
async fn apply_statement(conn: &mut PgConnection, statement: &str, options: MigrateOptions) -> Result<(), sqlx::Error> {
    let mut backoff = registre_runtime::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut tries = 0;
    loop {
        tries += 1;
        let result = async {
            if let Some(index) = concurrent_index_name(statement) {
                let invalid: Option<bool> =
                    sqlx::query_scalar("SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)")
                        .bind(index)
                        .fetch_optional(&mut *conn)
                        .await?;
                if invalid == Some(true) {
                    tracing::warn!("🔧 index {index} is INVALID (an earlier concurrent build was interrupted): dropping it to build it again");
                    sqlx::raw_sql(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")).execute(&mut *conn).await?;
                }
            }
            sqlx::raw_sql(statement).execute(&mut *conn).await.map(|_| ())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if is_lock_timeout(&e) && tries < options.lock_tries => {
                let delay = backoff.next_delay();
                tracing::warn!("⏳ a lock stayed busy past lock_timeout: retrying in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `url` (a direct Postgres URL) and migrates it.
pub async fn migrate_url(url: &registre_config::SecretUrl, env: EnvName, options: MigrateOptions) -> Result<MigrationReport, MigrateError> {
    let connect = crate::connect_options(url).map_err(|_| MigrateError::Connect {
        env,
        url: url.redacted(),
        source: sqlx::Error::Configuration("not a usable Postgres URL".into()),
    })?;
    let mut conn = PgConnection::connect_with(&connect)
        .await
        .map_err(|source| MigrateError::Connect { env, url: url.redacted(), source })?;
    let report = migrate_with(&mut conn, env, options).await;
    let _ = conn.close().await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_order_and_each_function_file_states_its_invariant() {
        let names: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (name, sql) in MIGRATIONS {
            assert!(sql.starts_with("-- "), "{name} must open with a header comment");
            assert!(sql.contains("Invariant"), "{name} must state its invariant");
        }
    }

    #[test]
    fn no_transaction_files_split_into_statements_and_name_their_indexes() {
        let (_, sql) = MIGRATIONS.iter().find(|(n, _)| *n == "0029_indexes_concurrently").unwrap();
        assert!(sql.starts_with(NO_TRANSACTION));
        let statements = statements(sql);
        assert_eq!(statements.len(), 5, "{statements:?}");
        for s in &statements {
            assert!(concurrent_index_name(s).is_some_and(|n| n.starts_with("extraction_queue_")), "{s}");
        }
        assert_eq!(concurrent_index_name("CREATE INDEX foo ON t (a)"), None);
        // Only the no-transaction file builds indexes: a plain CREATE INDEX would block writers.
        for (name, sql) in MIGRATIONS.iter().filter(|(_, sql)| !sql.starts_with(NO_TRANSACTION)) {
            assert!(!sql.to_ascii_uppercase().contains("CREATE INDEX"), "{name} builds an index inside a transaction");
        }
    }

    #[test]
    fn checksum_changes_with_the_text() {
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
