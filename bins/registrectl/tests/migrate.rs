//! `registrectl migrate` as operators run it: applies every migration, says so, is idempotent;
//! REST-only environments are told to use a direct connection; bad configuration exits 2.

use std::process::{Command, Output};

use registre_testkit::postgres::TestDatabase;

fn registrectl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registrectl"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // Run from an empty directory so no .env is picked up.
    let dir = std::env::temp_dir().join(registre_testkit::unique("registrectl"));
    std::fs::create_dir_all(&dir).unwrap();
    cmd.current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run registrectl");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn migrate_applies_then_is_up_to_date_and_skips_rest_environments() {
    let db = TestDatabase::create();
    let url = db.url().replace("postgres@", "postgres:pw-not-printed@");
    let env = [("PROD_DATABASE_URL", url.as_str()), ("DEV_SUPABASE_URL", "https://dev.example.supabase.co"), ("DEV_SUPABASE_SERVICE_KEY", "k")];
    let first = registrectl(&["migrate"], &env);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    let n = registre_queue::MIGRATIONS.len();
    assert!(stdout.contains("prod (") && stdout.contains(&format!("applied {n} of {n} migrations: 0001_production_schema")), "{stdout}");
    assert!(stdout.contains("dev (https://dev.example.supabase.co/, REST): skipped: migrations must be applied with a direct connection: set DEV_DATABASE_URL"), "{stdout}");
    assert!(!stdout.contains("pw-not-printed"), "{stdout}");

    let second = registrectl(&["migrate"], &env);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success());
    assert!(stdout.contains(&format!("up to date ({n} migrations already applied)")), "{stdout}");
}

#[test]
fn bad_configuration_or_usage_exits_2_with_one_line() {
    let out = registrectl(&["migrate"], &[("PROD_DATABASE_URL", "mysql://x")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PROD_DATABASE_URL"), "{stderr}");

    let out = registrectl(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));

    let out = registrectl(&["migrate"], &[("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")]);
    assert_eq!(out.status.code(), Some(1), "an unreachable database fails the run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("prod (postgres://postgres@127.0.0.1:1/none): failed: prod: cannot connect"));
}
