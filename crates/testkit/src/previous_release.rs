//! The queue schema of the previous release, for upgrade and rollback tests: its migration files
//! read from git at test time (commit [`COMMIT`], `crates/queue/migrations/`), applied the way its
//! `registrectl migrate` applied them (each file new or changed since recorded: in a transaction, or
//! statement by statement for a no-transaction file; recorded with its checksum), and the contract
//! of its SQL functions (name, arguments, result columns, volatility) to compare a migrated
//! database with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use sqlx::{Connection, PgConnection};

/// The previous release: main before the queue's SQL was split into migrations and functions.
pub const COMMIT: &str = "ed71df4";

/// Where its migration files were.
const MIGRATIONS_DIR: &str = "crates/queue/migrations";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?} does not run: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed (the tests need the repository's history, commit {COMMIT}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (name, SQL) of the previous release's migrations, in the order it applied them (by name).
pub fn migrations() -> Vec<(String, String)> {
    let listing = git(&["ls-tree", "--name-only", COMMIT, &format!("{MIGRATIONS_DIR}/")]);
    let mut files: Vec<&str> = listing.lines().filter(|p| p.ends_with(".sql")).collect();
    files.sort();
    assert!(files.len() > 30, "{COMMIT} has too few migrations: {files:?}");
    files
        .into_iter()
        .map(|path| {
            let name = path.trim_start_matches(&format!("{MIGRATIONS_DIR}/")).trim_end_matches(".sql").to_string();
            (name, git(&["show", &format!("{COMMIT}:{path}")]))
        })
        .collect()
}

/// Applies the previous release's migrations as its `registrectl migrate` did: every file whose
/// (name, checksum) is not recorded yet. `checksum` and `statements` are the runner's own
/// (registre_queue::migrate), unchanged since that release. Returns the names it applied.
pub async fn migrate(
    url: &str,
    checksum: impl Fn(&str) -> String,
    statements: impl Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(
        "SET client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS registre_schema_migrations (
             name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut conn)
    .await
    .expect("registre_schema_migrations");
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT name, checksum FROM registre_schema_migrations").fetch_all(&mut conn).await.expect("records");
    let mut applied = Vec::new();
    for (name, sql) in migrations() {
        let sum = checksum(&sql);
        if recorded.iter().any(|(n, c)| *n == name && *c == sum) {
            continue;
        }
        if sql.starts_with("-- migrate: no-transaction") {
            for statement in statements(&sql) {
                sqlx::raw_sql(&statement).execute(&mut conn).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        } else {
            let mut tx = conn.begin().await.expect("begin");
            sqlx::raw_sql(&sql).execute(&mut *tx).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            tx.commit().await.expect("commit");
        }
        sqlx::query(
            "INSERT INTO registre_schema_migrations (name, checksum) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
        )
        .bind(&name)
        .bind(&sum)
        .execute(&mut conn)
        .await
        .expect("record");
        applied.push(name);
    }
    conn.close().await.expect("close");
    applied
}

/// The contract of every `queue_*` / `ops_*` function of a database: signature (with argument
/// names and defaults, which PostgREST's /rpc/ calls use) → "result columns, set or not,
/// volatility". A RETURNS TABLE and a RETURNS SETOF <composite> with the same columns read the same.
pub async fn function_contracts(url: &str) -> BTreeMap<String, String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, String)> = sqlx::query_as(
        r"SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')',
                 coalesce(
                     (SELECT string_agg(u.n || ' ' || format_type(u.t, NULL), ', ' ORDER BY u.o)
                        FROM unnest(p.proallargtypes, p.proargmodes, p.proargnames) WITH ORDINALITY AS u(t, m, n, o)
                       WHERE u.m IN ('o', 't', 'b')),
                     (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, NULL), ', ' ORDER BY a.attnum)
                        FROM pg_type ty JOIN pg_attribute a ON a.attrelid = ty.typrelid
                       WHERE ty.oid = p.prorettype AND ty.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped),
                     format_type(p.prorettype, NULL))
                 || CASE WHEN p.proretset THEN ' (set)' ELSE '' END || ' volatility ' || p.provolatile::text
            FROM pg_proc p
           WHERE p.pronamespace = 'public'::regnamespace
             AND (p.proname LIKE 'queue\_%' OR p.proname LIKE 'ops\_%')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("function contracts");
    conn.close().await.expect("close");
    rows.into_iter().collect()
}

/// The claims with a server-chosen token (two and three arguments, no uuid): the only functions of
/// the previous release the current one drops (migration 0101).
pub fn is_dropped_two_argument_claim(signature: &str) -> bool {
    (signature.starts_with("queue_claim_extraction(") || signature.starts_with("queue_claim_ocr(")) && !signature.contains("uuid")
}

/// Every function of `previous` (the previous release's [`function_contracts`]) has the same
/// contract in the database at `url`, except the two-argument claims, which must be gone.
pub async fn assert_contracts_kept(url: &str, previous: &BTreeMap<String, String>) {
    let now = function_contracts(url).await;
    assert!(previous.keys().any(|s| is_dropped_two_argument_claim(s)), "the previous release had the two-argument claims: {previous:#?}");
    for (signature, contract) in previous {
        if is_dropped_two_argument_claim(signature) {
            assert!(!now.contains_key(signature), "{signature} must be dropped");
        } else {
            assert_eq!(now.get(signature), Some(contract), "{signature} changed its contract; now: {now:#?}");
        }
    }
}
