//! Migrations: the SQL files of `crates/queue/migrations/`, applied in order in ONE transaction
//! under an advisory lock (two `registrectl migrate` at once take turns), each recorded with a
//! checksum in `registre_schema_migrations`. Every file is idempotent (IF NOT EXISTS,
//! CREATE OR REPLACE), so a file whose text changed is simply applied again, on an empty database
//! as on top of the production schema. Workers never call this: only `registrectl migrate` does.

use registre_config::EnvName;
use sqlx::{Connection, PgConnection};

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
    // 0050-0069: the operators' indexes and functions (crates/ops, registre-api).
    ("0050_ops_indexes", include_str!("../migrations/0050_ops_indexes.sql")),
    ("0051_ops_enqueue", include_str!("../migrations/0051_ops_enqueue.sql")),
    ("0052_ops_retry", include_str!("../migrations/0052_ops_retry.sql")),
    ("0053_ops_cancel", include_str!("../migrations/0053_ops_cancel.sql")),
    ("0069_ops_privileges", include_str!("../migrations/0069_ops_privileges.sql")),
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
    #[error("{env}: migration {name} failed (nothing was applied): {source}")]
    Apply {
        env: EnvName,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{env}: {operation} failed: {source}")]
    Database {
        env: EnvName,
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
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

/// Applies every migration that is new or changed, all or nothing.
pub async fn migrate(conn: &mut PgConnection, env: EnvName) -> Result<MigrationReport, MigrateError> {
    let db = |operation: &'static str| move |source| MigrateError::Database { env, operation, source };
    let mut tx = conn.begin().await.map_err(db("BEGIN"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db("taking the migration lock"))?;
    // Quiet the "already exists, skipping" notices of idempotent statements.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await
        .map_err(db("SET client_min_messages"))?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS registre_schema_migrations (
             name text PRIMARY KEY,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(db("creating registre_schema_migrations"))?;
    let recorded: Vec<(String, String)> = sqlx::query_as("SELECT name, checksum FROM registre_schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading registre_schema_migrations"))?;

    let mut report = MigrationReport::default();
    for (name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if recorded.iter().any(|(n, c)| n == name && *c == sum) {
            report.unchanged.push(name);
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| MigrateError::Apply { env, name, source })?;
        sqlx::query(
            "INSERT INTO registre_schema_migrations (name, checksum) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
        )
        .bind(name)
        .bind(&sum)
        .execute(&mut *tx)
        .await
        .map_err(|source| MigrateError::Apply { env, name, source })?;
        report.applied.push(name);
    }
    tx.commit().await.map_err(db("COMMIT"))?;
    Ok(report)
}

/// Connects to `url` (a direct Postgres URL) and migrates it.
pub async fn migrate_url(url: &registre_config::SecretUrl, env: EnvName) -> Result<MigrationReport, MigrateError> {
    let mut conn = PgConnection::connect(url.expose())
        .await
        .map_err(|source| MigrateError::Connect { env, url: url.redacted(), source })?;
    let report = migrate(&mut conn, env).await;
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
    fn checksum_changes_with_the_text() {
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
