//! The dashboard in a real headless Chromium (chromedriver + fantoccini, as the registry fetcher
//! drives it), used as an operator uses it: the page loads from the binary alone and asks for the
//! token once (nothing of the queue shows before), then a row inserted directly into the database
//! appears without a reload (SSE over the session cookie), Retry on an Erreur row turns it En
//! attente without asking again, and the open row's detail is re-read only when that row changes.
//! The detail pane shows a row's index_data as a table, its values
//! escaped, and GET /api/extractions/{id} carries it. A cancel whose answer is lost (a 504
//! `outcome_unknown`, a connection lost, no answer in time) says "outcome unknown: check with
//! registrectl show <id>", never "failed". Saves a screenshot for people to look at, as
//! target/tmp/registre-api-dashboard.png (cargo's CARGO_TARGET_TMPDIR, wherever the target is).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{start, TOKEN};
use registre_testkit::postgres::{insert_row, set_columns};
use sqlx::Connection;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

struct Driver(tokio::process::Child, std::path::PathBuf);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            // SAFETY: kill(2) on the process group of our own child (chromedriver and its Chromium).
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = self.0.start_kill();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

async fn browser() -> (Client, Driver) {
    let port = registre_testkit::free_port();
    let profile = std::env::temp_dir().join(registre_testkit::unique("dashboard-profile"));
    let chromedriver = std::env::var("CHROMEDRIVER_PATH").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let child = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
    let driver = Driver(child, profile.clone());
    let deadline = Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1440,1200",
        "--lang=fr-CA",
        &format!("--user-data-dir={}", profile.display()),
    ];
    caps.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (client, driver)
}

/// Polls `check` (a JS expression returning a boolean) until it holds, or panics at the deadline.
async fn until(client: &Client, what: &str, check: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v = client.execute(&format!("return !!({check});"), vec![]).await.expect("execute");
        if v == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not seen within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_live_changes_and_retries_an_erreur_row() {
    let api = start(Some(TOKEN), &[]).await;
    // Some state worth looking at: rows of every status, a worker, a pool split, API usage.
    for (source, number, status) in [("index", "4 866 594", 1), ("acte", "12 345 678", 2), ("index", "1 234 567", 3), ("acte", "22 222 222", 6)] {
        insert_row(&api.pool, source, number, status).await;
    }
    let done = insert_row(&api.pool, "index", "3 333 333", 5).await;
    set_columns(&api.pool, done, "file_content = 'INDEX DES IMMEUBLES\nCirconscription foncière : Montréal\nLot : 3 333 333', supabase_path = 'index/3_333_333.pdf'").await;
    // The index des immeubles as data, with a name that would be markup if it were not escaped.
    let index_data = json!({"engine": "tesseract", "pages": [{"page": 1, "format": "modern-inscription", "circonscription": "Montréal",
        "cadastre": "Cadastre du Québec", "lot": "3 333 333", "inscriptions": [{"date_presentation": "1995-06-06", "numero": "8 173 504",
        "nature": "Vente", "parties": [{"nom": "OUELLET, <b>JEAN</b>", "qualite": "Vendeur"}, {"nom": "LEBLANC, NATHALIE", "qualite": "Acheteur"}],
        "remarques": "Montant : 563 000,00 $", "avis_adresse": null, "radiations": ["20 619 536"]}]}], "warnings": ["page 1: exemple d'avertissement"]});
    sqlx::query("UPDATE extraction_queue SET index_data = $2 WHERE id = $1").bind(done).bind(&index_data).execute(&api.pool).await.unwrap();
    let detail: serde_json::Value = api.client.get(api.url(&format!("/api/extractions/{done}"))).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["index_data"], index_data, "GET /api/extractions/{{id}} carries index_data");
    let failed = insert_row(&api.pool, "acte", "9 999 999", 4).await;
    set_columns(&api.pool, failed, "attemtps = 3, error_message = 'Le document demandé est introuvable'").await;
    let conn = registre_runtime::redis_connection(&api.config.redis_url).unwrap();
    let capacity = registre_capacity::CapacityManager::new(conn.clone(), registre_capacity::CapacitySettings::from_config(&api.config));
    let _ = capacity.try_lease("registre-worker-1-4f2a9c1b", registre_capacity::WorkerType::Registre).await.unwrap();
    let _ = capacity.try_lease("ocr-worker-1", registre_capacity::WorkerType::IndexOcr).await.unwrap();
    let _ = capacity.try_lease("ocr-worker-2", registre_capacity::WorkerType::ActeOcr).await.unwrap();
    let pool = registre_pool::PoolManager::new(conn, registre_domain::keys::PoolKeys::for_server(api.config.server.id.as_deref()), "test".into());
    pool.assign("ocr-worker-1", registre_pool::Mode::Index).await.unwrap();
    pool.assign("ocr-worker-2", registre_pool::Mode::Acte).await.unwrap();
    pool.publish_allocation(registre_pool::Split { index: 1, acte: 1 }, registre_domain::pool::QueueCounts { index: 1, acte: 0 }).await.unwrap();

    let (client, _driver) = browser().await;
    client.goto(&api.url("/")).await.expect("open the dashboard");
    // The token is asked once, before any row data is read.
    until(&client, "the token dialog", "document.getElementById('token-dialog').open").await;
    assert_eq!(client.execute("return document.querySelectorAll('#jobs tbody tr').length;", vec![]).await.unwrap(), json!(0));
    client.find(Locator::Css("#token-input")).await.unwrap().send_keys(TOKEN).await.unwrap();
    client.find(Locator::Css("#token-ok")).await.unwrap().click().await.unwrap();
    until(&client, "the stream is live", "document.getElementById('live').textContent === 'en direct'").await;
    // The session cookie is HttpOnly: the page's scripts cannot read it; the token is never in a URL.
    assert_eq!(client.execute("return document.cookie;", vec![]).await.unwrap(), json!(""));
    until(&client, "the jobs table", "document.querySelectorAll('#jobs tbody tr').length === 6").await;
    until(&client, "French labels", "document.body.innerText.includes('Extraction complété') && document.body.innerText.includes('OCR en traitement')").await;
    // Marks this page instance: a reload would lose it.
    client.execute("window.__sameDocument = 'yes';", vec![]).await.unwrap();

    // A row inserted straight into the database appears without a reload.
    insert_row(&api.pool, "plan_cadastraux", "NOUVEAU-123", 1).await;
    until(&client, "the new row", "document.getElementById('jobs').innerText.includes('NOUVEAU-123')").await;
    until(&client, "the counts", "document.querySelector('tr[data-env=prod] td[data-status=\"1\"]').textContent.trim() === '2'").await;

    // Retry on the Erreur row: sent with the token kept for the tab, not asked again.
    let row = format!("tr[data-id='{failed}']");
    client.find(Locator::Css(&format!("{row} button.retry"))).await.expect("a Retry button on the Erreur row").click().await.unwrap();
    until(&client, "the retried row En attente", &format!("document.querySelector(\"{row} .status\").textContent === 'En attente'")).await;
    assert_eq!(client.execute("return document.getElementById('token-dialog').open;", vec![]).await.unwrap(), json!(false));
    let status: i32 = sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(failed).fetch_one(&api.pool).await.unwrap();
    assert_eq!(status, 1);
    assert_eq!(client.execute("return window.__sameDocument;", vec![]).await.unwrap(), json!("yes"), "the page was never reloaded");
    assert_eq!(client.execute("return sessionStorage.getItem('registre-api-token');", vec![]).await.unwrap(), json!(TOKEN));

    // Row detail with the OCR text.
    client.find(Locator::Css(&format!("tr[data-id='{done}']"))).await.unwrap().click().await.unwrap();
    until(&client, "the detail", "document.getElementById('detail').innerText.includes('INDEX DES IMMEUBLES')").await;
    until(&client, "the inscriptions table", "document.querySelectorAll('#detail table.index-data tbody tr').length === 1").await;
    let table = client.execute("return document.querySelector('#detail table.index-data').innerText;", vec![]).await.unwrap();
    let table = table.as_str().unwrap_or_default().to_string();
    for text in ["1995-06-06", "8 173 504", "Vente", "Vendeur", "OUELLET, <b>JEAN</b>", "LEBLANC, NATHALIE", "Montant : 563 000,00 $", "20 619 536"] {
        assert!(table.contains(text), "{text:?} missing from the inscriptions table: {table}");
    }
    let injected = client.execute("return document.querySelectorAll('#detail table.index-data b').length;", vec![]).await.unwrap();
    assert_eq!(injected, json!(0), "a value from the document became markup");
    until(&client, "the warnings", "document.getElementById('detail').innerText.includes(\"exemple d'avertissement\")").await;
    // Count the detail reads from now on.
    client
        .execute(
            &format!(
                "window.__detailReads = 0; const f = window.fetch; window.fetch = (url, o) => {{ \
                   if (String(url).startsWith('/api/extractions/{done}')) window.__detailReads++; return f(url, o); }};"
            ),
            vec![],
        )
        .await
        .unwrap();
    // Another row changes: the list follows, the open detail is not re-read.
    insert_row(&api.pool, "acte", "AUTRE-456", 1).await;
    until(&client, "the other new row", "document.getElementById('jobs').innerText.includes('AUTRE-456')").await;
    until(&client, "the counts after it", "document.querySelector('tr[data-env=prod] td[data-status=\"1\"]').textContent.trim() === '4'").await;
    assert_eq!(client.execute("return window.__detailReads;", vec![]).await.unwrap(), json!(0), "the unchanged detail was re-read");
    // The open row changes: its detail is re-read, once.
    set_columns(&api.pool, done, "boosted_file_content = 'INDEX CORRIGÉ', updated_at = now()").await;
    until(&client, "the detail re-read", "document.getElementById('detail').innerText.includes('INDEX CORRIGÉ')").await;
    let reads = client.execute("return window.__detailReads;", vec![]).await.unwrap();
    assert_eq!(reads, json!(1), "one read per change of the open row");
    // Then a screenshot for people to look at.
    let png = client.screenshot().await.expect("screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("registre-api-dashboard.png");
    std::fs::write(&path, &png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
    let _ = client.close().await;
    for id in ["registre-worker-1-4f2a9c1b", "ocr-worker-1", "ocr-worker-2"] {
        capacity.release(id).await.unwrap();
    }
    // The pool keys do not expire: remove this test's, so the shared Redis keeps no stale server.
    let keys = pool.keys().clone();
    let mut redis = registre_testkit::redis_sync(&registre_testkit::shared_redis_url());
    let _: () = redis::cmd("DEL").arg(&keys.allocation).arg(&keys.assignments).query(&mut redis).unwrap();
}

/// Advisory lock key of the COMMIT gate (a deferred trigger that waits for it inside COMMIT).
const GATE: i64 = 2222;

/// Number of backends of this database whose COMMIT waits at the gate.
async fn commits_at_gate(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'COMMIT' AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .expect("activity")
}

async fn until_commit_at_gate(pool: &sqlx::PgPool) {
    let deadline = Instant::now() + DEADLINE;
    while commits_at_gate(pool).await != 1 {
        assert!(Instant::now() < deadline, "the cancel's COMMIT never reached the gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(pool: &sqlx::PgPool, id: uuid::Uuid) -> i32 {
    sqlx::query_scalar("SELECT status_id FROM extraction_queue WHERE id = $1").bind(id).fetch_one(pool).await.expect("row")
}

/// Clicks Annuler on `id`'s row and waits for the dashboard's verdict on that write.
async fn click_cancel(client: &Client, id: uuid::Uuid) {
    client.execute("document.getElementById('act-msg').textContent = ''; delete document.getElementById('act-msg').dataset.outcome;", vec![]).await.unwrap();
    // Found and clicked in one script: the list may be re-rendered by a stream event between a
    // WebDriver find and its click (a stale element), never inside one script run.
    let script = format!("const b = document.querySelector(\"tr[data-id='{id}'] button.cancel\"); if (!b) return false; b.click(); return true;");
    let deadline = Instant::now() + DEADLINE;
    while client.execute(&script, vec![]).await.unwrap() != json!(true) {
        assert!(Instant::now() < deadline, "no Annuler button on the waiting row {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the dashboard said about the last write: (outcome, class, text).
async fn verdict(client: &Client) -> (String, String, String) {
    let v = client
        .execute("const m = document.getElementById('act-msg'); return [m.dataset.outcome || '', m.className, m.innerText];", vec![])
        .await
        .unwrap();
    let part = |i: usize| v[i].as_str().unwrap_or_default().to_string();
    (part(0), part(1), part(2))
}

async fn until_verdict(client: &Client, what: &str) -> (String, String, String) {
    until(client, what, "!!document.getElementById('act-msg').dataset.outcome").await;
    verdict(client).await
}

fn assert_outcome_unknown(said: &(String, String, String), id: uuid::Uuid, case: &str) {
    let (outcome, class, text) = said;
    assert_eq!(outcome, "unknown", "{case}: {text}");
    assert_eq!(class, "unknown", "{case}: shown as {class:?}: {text}");
    assert!(text.contains(&format!("outcome unknown: check with registrectl show {id} --environment prod")), "{case}: {text}");
    let lower = text.to_lowercase();
    for word in ["failed", "échec", "erreur", "rien n'a été modifié"] {
        assert!(!lower.contains(word), "{case}: the dashboard says {word:?}: {text}");
    }
}

/// A cancel whose outcome nobody can know is never shown as failed, in the three ways it happens:
/// the API answers 504 `outcome_unknown` (the connection to PostgreSQL is cut while the COMMIT
/// waits, so the API lost the COMMIT's answer), the connection between the browser and the API is
/// lost while the write runs (both times the change is indeed made afterwards: "failed" would have
/// been a lie), and no answer comes in time (the request held on the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_answer_is_lost_says_outcome_unknown_never_failed() {
    let (db, pool) = common::migrated_db().await;
    let options: sqlx::postgres::PgConnectOptions = db.url().parse().expect("options");
    let target: std::net::SocketAddr = format!("{}:{}", options.get_host(), options.get_port()).parse().expect("host:port");
    let db_proxy = registre_testkit::proxy::FaultProxy::start(target);
    let proxied_db = db_proxy.url_for(db.url());
    let api = common::start_over(db, pool, Some(TOKEN), &[("PROD_DATABASE_URL", proxied_db)]).await;
    let rows = [insert_row(&api.pool, "index", "5 000 001", 1).await, insert_row(&api.pool, "index", "5 000 002", 1).await, insert_row(&api.pool, "acte", "5 000 003", 1).await];
    // Every updated row waits for the advisory lock GATE inside the COMMIT (a deferred trigger).
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION test_commit_gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock({GATE}); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER test_commit_gate AFTER UPDATE ON extraction_queue
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit_gate();"
    ))
    .execute(&api.pool)
    .await
    .expect("gate");
    // The browser reaches the API through a proxy too, to lose or hold its answers.
    let api_addr: std::net::SocketAddr = api.addr().parse().expect("api addr");
    let browser_proxy = registre_testkit::proxy::FaultProxy::start(api_addr);
    let (client, _driver) = browser().await;
    client.goto(&format!("http://127.0.0.1:{}/", browser_proxy.port)).await.expect("open the dashboard");
    until(&client, "the token dialog", "document.getElementById('token-dialog').open").await;
    client.find(Locator::Css("#token-input")).await.unwrap().send_keys(TOKEN).await.unwrap();
    client.find(Locator::Css("#token-ok")).await.unwrap().click().await.unwrap();
    until(&client, "the jobs table", "document.querySelectorAll('#jobs tbody tr button.cancel').length === 3").await;

    // 1. The API answers 504: its connection to PostgreSQL is cut while the COMMIT waits at the gate.
    let mut holder = sqlx::PgConnection::connect(api.db.url()).await.expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)").bind(GATE).execute(&mut holder).await.expect("lock");
    click_cancel(&client, rows[0]).await;
    until_commit_at_gate(&api.pool).await;
    assert!(db_proxy.cut() >= 1);
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(GATE).execute(&mut holder).await.expect("unlock");
    let said = until_verdict(&client, "the verdict on the cut COMMIT").await;
    assert_outcome_unknown(&said, rows[0], "504 from the API");
    assert!(said.2.contains("ops_cancel: outcome unknown"), "the API's own reason is shown: {}", said.2);
    let deadline = Instant::now() + DEADLINE;
    while status_of(&api.pool, rows[0]).await != 4 {
        assert!(Instant::now() < deadline, "the COMMIT sent before the cut did not land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2. The answer is lost between the API and the browser (its connections closed, new ones
    //    refused, so a browser's automatic resend cannot reach the API either).
    sqlx::query("SELECT pg_advisory_lock($1)").bind(GATE).execute(&mut holder).await.expect("lock");
    until(&client, "the jobs table after the first cancel", "document.querySelectorAll('#jobs tbody tr button.cancel').length === 2").await;
    click_cancel(&client, rows[1]).await;
    until_commit_at_gate(&api.pool).await;
    browser_proxy.refuse();
    let said = until_verdict(&client, "the verdict on the lost answer").await;
    assert_outcome_unknown(&said, rows[1], "connection lost");
    browser_proxy.resume();
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(GATE).execute(&mut holder).await.expect("unlock");
    let deadline = Instant::now() + DEADLINE;
    while status_of(&api.pool, rows[1]).await != 4 {
        assert!(Instant::now() < deadline, "the second cancel's COMMIT did not land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 3. No answer in time: every byte between the browser and the API is held, so the request
    //    never reaches the API; the dashboard stops waiting (15 s, more than the API's own 10 s
    //    bound on a write) and cannot know that: outcome unknown, not failed.
    until(&client, "the stream back", "document.getElementById('live').textContent === 'en direct'").await;
    until(&client, "the jobs table after the second cancel", "document.querySelectorAll('#jobs tbody tr button.cancel').length === 1").await;
    browser_proxy.stall();
    click_cancel(&client, rows[2]).await;
    let said = until_verdict(&client, "the verdict on the unanswered cancel").await;
    assert_outcome_unknown(&said, rows[2], "no answer in time");
    // The held request is dropped with its connection: it never reached the API.
    browser_proxy.cut();
    browser_proxy.resume();
    assert_eq!(status_of(&api.pool, rows[2]).await, 1);
    let _ = client.close().await;
}
