//! Migrations: the schema history of `crates/queue/migrations/` and the function definitions of
//! `crates/queue/functions/` (crates/queue/migrations/README.md, docs/queue.md Migrating), applied
//! under a session advisory lock (two `registrectl migrate` at once take turns), each file recorded
//! with a checksum in `registre_schema_migrations`. Workers never call this: only
//! `registrectl migrate` does.
//!
//! Two bands, in this order:
//! - **migrations** (`NNNN_name`): tables, columns, types, indexes, drops. Append-only: a released
//!   file is never edited (a change is a new file). Each is idempotent (IF NOT EXISTS, IF EXISTS),
//!   so it applies to an empty database as on top of the production schema; each runs in its own
//!   transaction, or statement by statement for a no-transaction file.
//! - **functions** (`functions/<family>`): every SQL function as CREATE OR REPLACE, one file per
//!   family, then `functions/privileges` last. A file whose text changed is applied again (all of
//!   them when a migration ran in the same run); the files of a run and the privileges go in ONE
//!   transaction, so callers see either the old definitions or the new ones, never a mix, and never
//!   a function without its privileges.
//!
//! Records of files that no longer exist (the function-only migrations of earlier releases,
//! `0010_claim_extraction` ... `0090_privileges`) are left as they are and ignored.
//!
//! Safe on a busy production table (docs/queue.md, Migrating):
//! - every transaction runs with `SET LOCAL lock_timeout`: a statement that would wait longer than
//!   QUEUE_MIGRATE_LOCK_TIMEOUT_MS for a table lock (and make every writer queue behind it) gives up
//!   instead, the transaction is rolled back and retried with backoff;
//! - a migration whose first line is `-- migrate: no-transaction` runs outside any transaction, one
//!   statement at a time (statements end with `;` at the end of a line; no `;` inside one), for
//!   `CREATE INDEX CONCURRENTLY IF NOT EXISTS`, which cannot run in a transaction. An INVALID index
//!   left by an interrupted concurrent build (crash, lock timeout) is dropped CONCURRENTLY and built
//!   again, since IF NOT EXISTS alone would keep the broken one.

use std::time::Duration;

use registre_config::EnvName;
use sqlx::{Connection, PgConnection};

use crate::DatabaseError;

/// (name, SQL) in the order they apply: the migrations, then the functions (names starting with
/// [`FUNCTIONS_PREFIX`]), privileges last.
pub const MIGRATIONS: &[(&str, &str)] = &[
    // Schema history (append-only; crates/queue/migrations/README.md). Numbers of the function-only
    // files of earlier releases (0010-0028, 0030, 0040, 0051-0056, 0090) are not reused.
    ("0001_production_schema", include_str!("../migrations/0001_production_schema.sql")),
    ("0002_leases_and_backoff", include_str!("../migrations/0002_leases_and_backoff.sql")),
    ("0020_partial_failures", include_str!("../migrations/0020_partial_failures.sql")),
    ("0029_indexes_concurrently", include_str!("../migrations/0029_indexes_concurrently.sql")),
    ("0033_drop_complete_and_claim", include_str!("../migrations/0033_drop_complete_and_claim.sql")),
    ("0041_fetched_as", include_str!("../migrations/0041_fetched_as.sql")),
    ("0050_ops_indexes", include_str!("../migrations/0050_ops_indexes.sql")),
    ("0057_ops_identity_normalized", include_str!("../migrations/0057_ops_identity_normalized.sql")),
    ("0070_index_data", include_str!("../migrations/0070_index_data.sql")),
    ("0100_claimed_row", include_str!("../migrations/0100_claimed_row.sql")),
    ("0101_drop_superseded_functions", include_str!("../migrations/0101_drop_superseded_functions.sql")),
    // Definitions (CREATE OR REPLACE, re-applied when their text changes), helpers first.
    ("functions/attempts", include_str!("../functions/attempts.sql")),
    ("functions/claim", include_str!("../functions/claim.sql")),
    ("functions/complete", include_str!("../functions/complete.sql")),
    ("functions/fail", include_str!("../functions/fail.sql")),
    ("functions/reap", include_str!("../functions/reap.sql")),
    ("functions/count", include_str!("../functions/count.sql")),
    ("functions/accounts", include_str!("../functions/accounts.sql")),
    ("functions/ops", include_str!("../functions/ops.sql")),
    // Last of the definitions: its triggers take a brief lock on extraction_queue.
    ("functions/notify", include_str!("../functions/notify.sql")),
    // The privileges of every function above, in one list; applied with any function that changed.
    (PRIVILEGES, include_str!("../functions/privileges.sql")),
];

/// Name prefix of the function definitions (the second band).
pub const FUNCTIONS_PREFIX: &str = "functions/";

/// The privileges file: applied whenever any function file is.
pub const PRIVILEGES: &str = "functions/privileges";

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
    /// A migration is rolled back alone; a function file with every function file of its run.
    #[error("{env}: migration {name} failed (rolled back with its transaction; the migrations before it stay applied): {source}")]
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
pub fn checksum(sql: &str) -> String {
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
    let is_recorded = |name: &str, sum: &str| recorded.iter().any(|(n, c)| n == name && c == sum);

    // Band 1: the schema history, file by file.
    for (name, sql) in MIGRATIONS.iter().filter(|(n, _)| !n.starts_with(FUNCTIONS_PREFIX)) {
        let sum = checksum(sql);
        if is_recorded(name, &sum) {
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
            let files = [(*name, *sql, sum)];
            apply_files(conn, &files, env, options, lock_timeout_ms).await.map_err(|(_, e)| apply(e))?;
        }
        report.applied.push(name);
    }

    // Band 2: the definitions whose text changed, and then the privileges, in one transaction;
    // every definition again when a migration ran (it may have dropped or replaced what a
    // definition relies on, or a previous release's `registrectl migrate`, run after a rollback,
    // may have put its own bodies back). CREATE OR REPLACE of an unchanged function changes nothing.
    let migrated = !report.applied.is_empty();
    let definitions: Vec<(&'static str, &'static str, String)> = MIGRATIONS
        .iter()
        .filter(|(n, _)| n.starts_with(FUNCTIONS_PREFIX))
        .map(|(n, sql)| (*n, *sql, checksum(sql)))
        .collect();
    let any_changed = migrated || definitions.iter().any(|(n, _, sum)| !is_recorded(n, sum));
    let (to_apply, unchanged): (Vec<_>, Vec<_>) = definitions
        .into_iter()
        .partition(|(n, _, sum)| any_changed && (migrated || *n == PRIVILEGES || !is_recorded(n, sum)));
    report.unchanged.extend(unchanged.iter().map(|(n, ..)| *n));
    if !to_apply.is_empty() {
        apply_files(conn, &to_apply, env, options, lock_timeout_ms)
            .await
            .map_err(|(name, source)| MigrateError::Apply { env, name, source })?;
        report.applied.extend(to_apply.iter().map(|(n, ..)| *n));
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

/// Files (name, SQL, checksum) in one transaction, each recorded in it: all of them or none.
/// Rolled back and tried again, with backoff, while a statement hits the lock timeout. An error
/// names the file it came from.
async fn apply_files(
    conn: &mut PgConnection,
    files: &[(&'static str, &'static str, String)],
    env: EnvName,
    options: MigrateOptions,
    lock_timeout_ms: i64,
) -> Result<(), (&'static str, sqlx::Error)> {
    let what = files.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ");
    let mut backoff = registre_runtime::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut tries = 0;
    loop {
        tries += 1;
        match apply_files_once(conn, files, lock_timeout_ms).await {
            Ok(()) => return Ok(()),
            Err((_, e)) if is_lock_timeout(&e) && tries < options.lock_tries => {
                let delay = backoff.next_delay();
                tracing::warn!(%env, "⏳ {what}: a table stayed locked for {lock_timeout_ms} ms (lock_timeout): rolled back, retrying in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn apply_files_once(
    conn: &mut PgConnection,
    files: &[(&'static str, &'static str, String)],
    lock_timeout_ms: i64,
) -> Result<(), (&'static str, sqlx::Error)> {
    let first = files.first().map_or("", |(n, ..)| *n);
    let mut tx = conn.begin().await.map_err(|e| (first, e))?;
    sqlx::raw_sql(&format!("SET LOCAL lock_timeout = {lock_timeout_ms}")).execute(&mut *tx).await.map_err(|e| (first, e))?;
    for (name, sql, sum) in files {
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| (*name, e))?;
        record(&mut tx, name, sum).await.map_err(|e| (*name, e))?;
    }
    tx.commit().await.map_err(|e| (first, e))
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
    fn migrations_are_in_order_then_functions_with_privileges_last() {
        let migrations: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).take_while(|n| !n.starts_with(FUNCTIONS_PREFIX)).collect();
        let mut sorted = migrations.clone();
        sorted.sort();
        assert_eq!(migrations, sorted);
        let rest = &MIGRATIONS[migrations.len()..];
        assert!(rest.iter().all(|(n, _)| n.starts_with(FUNCTIONS_PREFIX)), "a migration after the functions band");
        assert_eq!(rest.last().map(|(n, _)| *n), Some(PRIVILEGES));
        for (name, sql) in MIGRATIONS {
            assert!(sql.starts_with("-- "), "{name} must open with a header comment");
            assert!(sql.contains("Invariant"), "{name} must state its invariant");
        }
    }

    /// Migrations hold no function (the rule of migrations/README.md); in a function file each
    /// function is preceded by its own header comment stating its invariant.
    #[test]
    fn every_function_is_in_the_functions_band_under_its_own_invariant() {
        for (name, sql) in MIGRATIONS {
            let upper = sql.to_ascii_uppercase();
            if !name.starts_with(FUNCTIONS_PREFIX) {
                assert!(!upper.contains("CREATE OR REPLACE FUNCTION") && !upper.contains("CREATE FUNCTION"), "{name} defines a function");
                continue;
            }
            let lines: Vec<&str> = sql.lines().collect();
            for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("CREATE OR REPLACE FUNCTION")) {
                let header: Vec<&str> = lines[..i].iter().rev().take_while(|l| l.starts_with("--")).copied().collect();
                let function = line.trim_start_matches("CREATE OR REPLACE FUNCTION ").split('(').next().unwrap_or_default();
                assert!(header.iter().any(|l| l.contains("Invariant")), "{name}: {function} has no header stating its invariant");
                assert!(header.iter().any(|l| l.contains(function)), "{name}: the header above {function} does not name it");
            }
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
