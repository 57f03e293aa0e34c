//! `registrectl site-check` against the registry site simulator of registre_testkit in both shapes
//! of docs/design.md §9.1 (P and S), with an account of a real (fresh, migrated) database's
//! worker_accounts: the step table, the folder of screenshots and HTML, stopping before any
//! document without --fetch (the simulator opens no document page), going to the end with --fetch,
//! and exit 1 naming the failed step when the site does not offer what the row asks.

use std::path::PathBuf;
use std::process::{Command, Output};

use registre_config::EnvName;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::registry_site::{self, Shape, SiteOptions};
use sqlx::{Connection, PgConnection};

async fn database_with_account() -> TestDatabase {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    registry_site::insert_account(&mut conn).await;
    conn.close().await.expect("close");
    db
}

async fn site_check(db: &TestDatabase, base: &str, args: &[&str]) -> (Output, String) {
    let mut all: Vec<String> = vec!["site-check".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let env = vec![
        ("PROD_DATABASE_URL".to_string(), db.url().to_string()),
        ("REDIS_URL".to_string(), registre_testkit::shared_redis_url()),
        ("REGISTRE_BASE_URL".to_string(), base.to_string()),
        ("REGISTRE_STEP_TIMEOUT_MS".to_string(), "15000".to_string()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_registrectl"))
            .args(&all)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .expect("run registrectl")
    })
    .await
    .expect("thread");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

fn folder_of(text: &str) -> PathBuf {
    let line = text.lines().find_map(|l| l.strip_prefix("screenshot and HTML of every step: ")).unwrap_or_else(|| panic!("no folder in:\n{text}"));
    PathBuf::from(line.trim())
}

/// Every step folder holds a PNG screenshot and the page's HTML.
fn assert_step_folders(folder: &PathBuf, at_least: usize) {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(folder).expect("folder").map(|e| e.expect("entry").path()).collect();
    steps.sort();
    assert!(steps.len() >= at_least, "{steps:?}");
    for step in &steps {
        let png = std::fs::read(step.join("screenshot.png")).unwrap_or_else(|e| panic!("{}: {e}", step.display()));
        assert_eq!(&png[..4], b"\x89PNG");
        assert!(std::fs::read_to_string(step.join("page.html")).expect("html").contains("<html"));
    }
}

async fn check_shape(shape: Shape) {
    let site = registry_site::start(SiteOptions::new(shape)).await;
    let db = database_with_account().await;

    // Acte: up to the results, stopped before the row's submit.
    let (out, text) = site_check(&db, &site.base, &["--source", "acte", "--number", "22000000", "--circonscription", "Montréal", "--acte-type", "Acte"]).await;
    eprintln!("{shape:?} acte:\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("entry link") && text.contains("login: user code") && text.contains("NOT submitted"), "{text}");
    assert!(text.contains("stopped before the submit that opens a document: nothing was charged"), "{text}");
    assert_step_folders(&folder_of(&text), 8);

    // Index: stopped before the search submit.
    let (out, text) = site_check(&db, &site.base, &["--source", "index", "--number", "4 866 594", "--circonscription", "Montréal", "--cadastre", "Cadastre du Québec"]).await;
    eprintln!("{shape:?} index:\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("button found, NOT clicked"), "{text}");
    assert_eq!(site.state().documents_opened, 0, "nothing charged without --fetch");

    // Plan with --fetch: to the end, the download included, and said to charge.
    let (out, text) = site_check(&db, &site.base, &["--source", "plan_cadastraux", "--number", "4866594", "--circonscription", "Montréal", "--cadastre", "Québec", "--fetch"]).await;
    eprintln!("{shape:?} plan --fetch:\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MAY CHARGE") && text.contains("download") && text.contains("every step passed"), "{text}");
    assert_eq!(site.state().downloads, ["plan-4866594-P1"]);

    // A circonscription the site does not offer: exit 1, the failed step in the table.
    let (out, text) = site_check(&db, &site.base, &["--source", "acte", "--number", "12345678", "--circonscription", "Gaspé"]).await;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED: acte search: circonscription_fonciere \"Gaspé\" is not offered"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_check_against_the_final_production_shape_p() {
    check_shape(Shape::P).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_check_against_the_first_extractor_shape_s() {
    check_shape(Shape::S).await;
}
