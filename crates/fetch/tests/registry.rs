//! The registry fetcher driving real headless Chromium (through chromedriver) against a small
//! simulator of the Registre foncier website served on 127.0.0.1: entry link, login form, the three
//! search forms, a frameset result page and a PDF download that needs the session cookie.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install -y chromium chromium-driver`),
//! or CHROMIUM_PATH / CHROMEDRIVER_PATH.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use registre_config::Secret;
use registre_fetch::registry::site::SiteConfig;
use registre_fetch::{
    AccountProvider, DocumentRequest, DocumentSource, FetchError, Fetcher, InMemoryAccounts, RegistryFetcher,
    RegistrySettings,
};

const USER: &str = "alice";
const PASSWORD: &str = "correct-horse";

#[derive(Default)]
struct Sim {
    sessions: HashSet<String>,
    logins_ok: u32,
    logins_refused: u32,
    downloads: Vec<String>,
    refused_downloads: u32,
}

type Shared = Arc<Mutex<Sim>>;

fn pdf_for(kind: &str, number: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {kind} {number}\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n").into_bytes()
}

/// Documents the simulated registry holds: (kind, number).
fn exists(kind: &str, number: &str) -> bool {
    matches!((kind, number), ("index", "2269090") | ("acte", "12345678") | ("plan_cadastraux", "1234"))
}

fn session_of(headers: &HeaderMap, sim: &Shared) -> bool {
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ");
    let sim = sim.lock().unwrap();
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("SIRFSESSION="))
        .any(|token| sim.sessions.contains(token))
}

fn page(body: &str) -> Html<String> {
    Html(format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Registre foncier</title></head><body>{body}</body></html>"))
}

fn login_form(error: Option<&str>) -> Html<String> {
    let error = error.map(|e| format!("<p class=\"erreur\">{e}</p>")).unwrap_or_default();
    page(&format!(
        "<h1>Ouverture de session</h1>{error}<form method=\"post\" action=\"/Sirf/pf_00_01_01_01_conx.asp\">\
         <input name=\"code_utilisateur\"><input type=\"password\" name=\"mot_de_passe\">\
         <input type=\"submit\" value=\"Ouvrir\"></form>"
    ))
}

async fn home() -> Html<String> {
    page("<h1>Registre foncier du Québec en ligne</h1><a class=\"entree\" href=\"/Sirf/pf_00_01_01_01_conx.asp\">Entrer</a>")
}

async fn login_page() -> Html<String> {
    login_form(None)
}

async fn login(State(sim): State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("code_utilisateur").map(String::as_str) == Some(USER)
        && form.get("mot_de_passe").map(String::as_str) == Some(PASSWORD);
    let mut s = sim.lock().unwrap();
    if !ok {
        s.logins_refused += 1;
        return login_form(Some("Code d'utilisateur ou mot de passe invalide.")).into_response();
    }
    s.logins_ok += 1;
    let token = format!("tok{}", s.logins_ok);
    s.sessions.insert(token.clone());
    (
        [(header::SET_COOKIE, format!("SIRFSESSION={token}; Path=/; HttpOnly"))],
        page(
            "<h1>Services</h1><ul>\
             <li><a href=\"/Sirf/Script/13_01_11/pf_13_01_11_02_indx_immbl.asp\">Index des immeubles</a></li>\
             <li><a href=\"/Sirf/Script/13_01_11/pf_13_01_11_08_reqst.asp\">Actes</a></li>\
             <li><a href=\"/Sirf/Script/13_01_11/pf_13_01_11_10_plan_cadst.asp\">Plans cadastraux</a></li>\
             </ul><a href=\"/Sirf/Deconnexion.asp\">Déconnexion</a>",
        ),
    )
        .into_response()
}

const CIRCONSCRIPTIONS: &str = "<select name=\"selCircnFoncr\"><option value=\"\">--</option>\
    <option value=\"01\">Montréal</option><option value=\"02\">Québec</option></select>";
const CADASTRES: &str = "<select name=\"selCadst\"><option value=\"000001\">Cadastre du Québec</option>\
    <option value=\"000002\">Paroisse de Saint-Laurent</option></select>";

fn search_form(kind: &str, fields: &str) -> Html<String> {
    page(&format!(
        "<form method=\"get\" action=\"/Sirf/Script/13_01_11/pf_13_01_11_resultat.asp\">\
         <input type=\"hidden\" name=\"kind\" value=\"{kind}\">{fields}\
         <input type=\"submit\" name=\"btnSoumt\" value=\"Soumettre\"></form>"
    ))
}

async fn search(State(sim): State<Shared>, headers: HeaderMap, kind: &'static str) -> Response {
    if !session_of(&headers, &sim) {
        return login_form(Some("Votre session est expirée.")).into_response();
    }
    let fields = match kind {
        "index" => format!("{CIRCONSCRIPTIONS}{CADASTRES}<input name=\"txtNumrLot\">"),
        "acte" => format!(
            "{CIRCONSCRIPTIONS}<select name=\"selTypeInscr\"><option>Acte</option><option>Radiation</option></select>\
             <input name=\"txtNoReqst\">"
        ),
        _ => format!("{CIRCONSCRIPTIONS}{CADASTRES}<input name=\"txtNumrLot\">"),
    };
    search_form(kind, &fields).into_response()
}

async fn result(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !session_of(&headers, &sim) {
        return login_form(Some("Votre session est expirée.")).into_response();
    }
    let kind = q.get("kind").cloned().unwrap_or_default();
    let number = q.get("txtNumrLot").or(q.get("txtNoReqst")).cloned().unwrap_or_default();
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("kind", &kind).append_pair("no", &number).finish();
    Html(format!(
        "<!DOCTYPE html><html><head><title>Résultat</title></head><frameset rows=\"60,*\">\
         <frame name=\"entete\" src=\"/Sirf/Script/13_01_11/entete.asp\">\
         <frame name=\"page\" src=\"/Sirf/Script/13_01_11/pf_13_01_11_docmn.asp?{query}\"></frameset></html>"
    ))
    .into_response()
}

async fn header_frame() -> Html<String> {
    page("<b>Registre foncier du Québec</b>")
}

async fn document_frame(Query(q): Query<HashMap<String, String>>) -> Html<String> {
    let kind = q.get("kind").cloned().unwrap_or_default();
    let number = q.get("no").cloned().unwrap_or_default();
    if !exists(&kind, &number) {
        return page("<p>Aucun document ne correspond aux critères de recherche.</p>");
    }
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("kind", &kind).append_pair("no", &number).finish();
    page(&format!(
        "<p>Document {number}</p><a href=\"/Sirf/Script/13_01_11/Sauvegarder.asp?{query}\" title=\"Sauvegarder\">Sauvegarder</a>"
    ))
}

async fn download(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !session_of(&headers, &sim) {
        sim.lock().unwrap().refused_downloads += 1;
        return (StatusCode::FORBIDDEN, page("Session requise")).into_response();
    }
    let kind = q.get("kind").cloned().unwrap_or_default();
    let number = q.get("no").cloned().unwrap_or_default();
    sim.lock().unwrap().downloads.push(format!("{kind}/{number}"));
    ([(header::CONTENT_TYPE, "application/pdf")], pdf_for(&kind, &number)).into_response()
}

async fn simulator() -> (String, Shared) {
    let sim: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/Sirf/", get(home))
        .route("/Sirf/pf_00_01_01_01_conx.asp", get(login_page).post(login))
        .route("/Sirf/Script/13_01_11/pf_13_01_11_02_indx_immbl.asp", get(|s: State<Shared>, h: HeaderMap| search(s, h, "index")))
        .route("/Sirf/Script/13_01_11/pf_13_01_11_08_reqst.asp", get(|s: State<Shared>, h: HeaderMap| search(s, h, "acte")))
        .route("/Sirf/Script/13_01_11/pf_13_01_11_10_plan_cadst.asp", get(|s: State<Shared>, h: HeaderMap| search(s, h, "plan_cadastraux")))
        .route("/Sirf/Script/13_01_11/pf_13_01_11_resultat.asp", get(result))
        .route("/Sirf/Script/13_01_11/entete.asp", get(header_frame))
        .route("/Sirf/Script/13_01_11/pf_13_01_11_docmn.asp", get(document_frame))
        .route("/Sirf/Script/13_01_11/Sauvegarder.asp", get(download))
        .route("/Sirf/Deconnexion.asp", post(home))
        .with_state(sim.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/Sirf/"), sim)
}

fn settings(base: &str, idle: Duration) -> RegistrySettings {
    let site = SiteConfig::embedded().unwrap().with_base_url(base.parse().unwrap());
    let site = SiteConfig { step_timeout_ms: 10_000, ..site };
    RegistrySettings {
        site,
        chromium_path: std::env::var_os("CHROMIUM_PATH").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into()),
        chromedriver_path: std::env::var_os("CHROMEDRIVER_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/chromedriver".into()),
        idle_timeout: idle,
        fetch_timeout: Duration::from_secs(40),
    }
}

fn accounts(password: &str) -> Arc<InMemoryAccounts> {
    Arc::new(InMemoryAccounts::new([(USER.to_string(), Secret::new(password))]))
}

fn request(source: DocumentSource, number: &str) -> DocumentRequest {
    DocumentRequest {
        circonscription_fonciere: Some("Montreal".into()), // accents ignored: matches "Montréal"
        cadastre: Some("Cadastre du Québec".into()),
        acte_type: (source == DocumentSource::Acte).then(|| "Acte".into()),
        ..DocumentRequest::new(source, number)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_an_index_an_acte_and_a_plan_then_reports_a_missing_document() {
    let (base, sim) = simulator().await;
    let accounts = accounts(PASSWORD);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(120)), accounts.clone()).unwrap();

    for (source, number) in [(DocumentSource::Index, "2269090"), (DocumentSource::Acte, "12345678"), (DocumentSource::PlanCadastraux, "1234")] {
        let doc = fetcher.fetch(&request(source, number)).await.unwrap_or_else(|e| panic!("{source} {number}: {e}"));
        assert_eq!(doc.bytes, pdf_for(source.as_str(), number), "{source} {number}");
        assert_eq!(doc.content_type, "application/pdf");
        assert!(doc.source.contains("/Sirf/Script/13_01_11/Sauvegarder.asp?kind="), "{}", doc.source);
    }

    let err = fetcher.fetch(&request(DocumentSource::Index, "9999999")).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("document not found: index 9999999 (circonscription Montreal, cadastre Cadastre du Québec)")
            && text.contains("Aucun document ne correspond"),
        "{text}"
    );

    let mut unknown = request(DocumentSource::Acte, "12345678");
    unknown.circonscription_fonciere = Some("Gaspé".into());
    let err = fetcher.fetch(&unknown).await.unwrap_err();
    assert!(err.to_string().contains("circonscription_fonciere \"Gaspé\" is not offered"), "{err}");

    {
        let s = sim.lock().unwrap();
        assert_eq!(s.logins_ok, 1, "one login serves every fetch of the session");
        assert_eq!(s.downloads, ["index/2269090", "acte/12345678", "plan_cadastraux/1234"]);
        assert_eq!(s.refused_downloads, 0);
    }
    assert!(accounts.in_use(USER));
    assert_eq!(accounts.success_count(USER), 1);

    // The download link needs the session cookie: without it the simulator refuses.
    let direct = reqwest::get(format!("{base}Script/13_01_11/Sauvegarder.asp?kind=index&no=2269090")).await.unwrap();
    assert_eq!(direct.status(), 403);

    fetcher.shutdown().await;
    assert!(!fetcher.has_session().await);
    assert!(!accounts.in_use(USER), "the account is released with the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_login_failure_counted_on_the_account() {
    let (base, sim) = simulator().await;
    let accounts = accounts("not-the-password");
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(120)), accounts.clone()).unwrap();

    let err = fetcher.fetch(&request(DocumentSource::Index, "2269090")).await.unwrap_err();
    match &err {
        FetchError::LoginFailed { account, reason } => {
            assert_eq!(account, USER);
            assert!(reason.contains("mot de passe invalide"), "{reason}");
        }
        other => panic!("expected LoginFailed, got {other:?}"),
    }
    assert!(!format!("{err:?} {err}").contains("not-the-password"));
    assert_eq!(accounts.failure_count(USER), 1);
    assert!(!accounts.in_use(USER), "a refused account is released");
    assert!(!fetcher.has_session().await);
    assert_eq!(sim.lock().unwrap().logins_refused, 1);

    // No account free at all: a NoAccount error that does not count as an attempt.
    let busy = Arc::new(InMemoryAccounts::new([(USER.to_string(), Secret::new(PASSWORD))]));
    let held = busy.acquire().await.unwrap();
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(120)), busy.clone()).unwrap();
    let err = fetcher.fetch(&request(DocumentSource::Index, "2269090")).await.unwrap_err();
    assert!(matches!(err, FetchError::NoAccount(_)) && !err.counts_as_attempt(), "{err:?}");
    busy.release(&held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_browser_is_closed_and_a_crashed_one_replaced() {
    let (base, sim) = simulator().await;
    let accounts = accounts(PASSWORD);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_millis(1500)), accounts.clone()).unwrap();

    fetcher.fetch(&request(DocumentSource::Index, "2269090")).await.unwrap();
    assert!(fetcher.has_session().await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!fetcher.has_session().await, "closed after the idle time");
    assert!(!accounts.in_use(USER));

    // Reopened on demand.
    fetcher.fetch(&request(DocumentSource::PlanCadastraux, "1234")).await.unwrap();
    assert_eq!(sim.lock().unwrap().logins_ok, 2);

    // Kill chromedriver and Chromium: the next fetch reports a crash (no attempt counted)...
    let pid = fetcher.driver_pid().await.expect("a running chromedriver");
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = fetcher.fetch(&request(DocumentSource::Acte, "12345678")).await.unwrap_err();
    assert!(matches!(err, FetchError::BrowserCrashed(_)) && !err.counts_as_attempt(), "{err:?}");
    assert!(!fetcher.has_session().await);
    assert!(!accounts.in_use(USER));
    // ...and the one after starts a new browser.
    let doc = fetcher.fetch(&request(DocumentSource::Acte, "12345678")).await.unwrap();
    assert_eq!(doc.bytes, pdf_for("acte", "12345678"));
    fetcher.shutdown().await;
}
