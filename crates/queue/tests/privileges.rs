//! Who may call the queue and ops functions once migrated (functions/privileges.sql): on a
//! database shaped like Supabase's (roles anon, authenticated, service_role; functions granted to all of them by
//! default, as Supabase's default privileges do), anon and authenticated can call none of the
//! `queue_*` / `ops_*` functions, service_role can call every one. The list in
//! functions/privileges.sql is the only place privileges are set, so a function missing from it
//! fails here.

mod common;

use registre_testkit::postgres::TestDatabase;
use sqlx::{Connection, PgConnection};

/// Creates the Supabase roles when the cluster lacks them. Roles are cluster-wide: they are never
/// dropped (other tests may be using them), and tests running at once may race to create them, so
/// "already exists" in any of its two forms is success.
async fn ensure_supabase_roles(conn: &mut PgConnection) {
    sqlx::raw_sql(
        "DO $$
         DECLARE
             r text;
         BEGIN
             FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                     BEGIN
                         EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN
                         NULL;
                     END;
                 END IF;
             END LOOP;
         END
         $$",
    )
    .execute(&mut *conn)
    .await
    .expect("create the Supabase roles");
}

#[tokio::test]
async fn only_service_role_may_call_the_queue_and_ops_functions() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    ensure_supabase_roles(&mut conn).await;
    // What Supabase does in every project: new functions in public are executable by its roles
    // (pg_default_acl is per database, so this stays in the test's own database).
    sqlx::raw_sql("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role")
        .execute(&mut conn)
        .await
        .expect("default privileges");
    common::migrated(&db).await;

    // Every callable queue_*/ops_* function of the database (trigger functions cannot be called).
    let functions: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text,
                has_function_privilege('anon', p.oid, 'EXECUTE'),
                has_function_privilege('authenticated', p.oid, 'EXECUTE'),
                has_function_privilege('service_role', p.oid, 'EXECUTE')
           FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace
            AND (p.proname LIKE 'queue\\_%' OR p.proname LIKE 'ops\\_%')
            AND p.prorettype <> 'trigger'::regtype
          ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list the functions");
    let names: Vec<&str> = functions.iter().map(|(f, ..)| f.as_str()).collect();
    // The ones the review found set apart (final fail, the operators' repairs) are among them, so
    // the checks below are not vacuous.
    for f in [
        "queue_fail_extraction_final(uuid,uuid,text)",
        "ops_enqueue(text,text,text,text,text,text,text)",
        "ops_retry(uuid)",
        "ops_cancel(uuid,text)",
        "ops_retry_errors(text,timestamp with time zone,integer)",
        "ops_requeue_stuck(bigint,integer,text)",
        "queue_claim_extraction(text,integer,uuid)",
    ] {
        assert!(names.contains(&f), "{f} missing from {names:?}");
    }
    for (f, anon, authenticated, service_role) in &functions {
        assert!(!anon, "anon may call {f}: add it to crates/queue/functions/privileges.sql");
        assert!(!authenticated, "authenticated may call {f}: add it to crates/queue/functions/privileges.sql");
        assert!(service_role, "service_role may not call {f}");
    }

    // And a real call as anon is refused (SQLSTATE 42501), where service_role's goes through.
    for (call, expect_refused) in [
        ("SET LOCAL ROLE anon; SELECT ops_requeue_stuck(1000, 3, 'privileges-test')", true),
        ("SET LOCAL ROLE anon; SELECT * FROM queue_claim_extraction('w', 1000, gen_random_uuid())", true),
        ("SET LOCAL ROLE service_role; SELECT queue_count_waiting()", false),
    ] {
        let mut tx = conn.begin().await.expect("begin");
        let result = sqlx::raw_sql(call).execute(&mut *tx).await;
        tx.rollback().await.expect("rollback");
        match (result, expect_refused) {
            (Err(sqlx::Error::Database(e)), true) => {
                assert_eq!(e.code().as_deref(), Some("42501"), "{call}: {e}");
                assert!(e.message().contains("permission denied for function"), "{call}: {e}");
            }
            (Err(e), true) => panic!("{call}: {e}"),
            (Ok(_), true) => panic!("{call}: anon was allowed"),
            // service_role has no table privileges here (Supabase grants those separately): what
            // matters is that the function itself was not refused.
            (Err(e), false) => assert!(!e.to_string().contains("permission denied for function"), "{call}: {e}"),
            (Ok(_), false) => {}
        }
    }
    conn.close().await.expect("close");
}
