//! The registry fetcher driving real headless Chromium (through chromedriver) against a simulator
//! of the Registre foncier website served on 127.0.0.1.
//!
//! The simulator is written from DESIGN.md §9.1 (what the production system shows of the real site),
//! NOT from registry-site.toml: every path, id, frame name and text below is hard-coded here, so a
//! wrong selector or path in the configuration makes these tests fail. It has the image entry link
//! (`13_01_01`), the login form (code_utilisateur, mot_de_passe, "Soumettre"), the search pages under
//! Script/13_01_11/ with the selects that reload the page (#selCircnFoncr → #selCadst →
//! #selDesgnSecnd, absent for some cadastres), #txtNumrtLot that must be typed without spaces, the
//! acte form (#selCircnFoncr, #selTypeDocmn, #txtNoReqst) with its "similar numbers" list, the plan
//! choice page (Script/13_01_08/) with a paper-only row (BPD.GIF) and "… est inactif", the fee
//! confirmation (#btnConfr), the error cell (td.contValErr in table.Cadre), the document frameset
//! (frames `menu` and `page`, the page's URL containing `Docmn`, slow for plans), the save control
//! (a[title="Sauvegarder ou imprimer le document"], href impri_sauvg) that answers the PDF only to
//! the session that was shown the document, and a session the site expires mid-flow.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install -y chromium chromium-driver`),
//! or CHROMIUM_PATH / CHROMEDRIVER_PATH. Run with RUST_LOG=info and --nocapture to see every step.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use registre_config::Secret;
use registre_fetch::registry::site::{SiteConfig, DEFAULT_SITE_CONFIG};
use registre_fetch::{
    AccountProvider, DocumentRequest, DocumentSource, FetchError, Fetcher, InMemoryAccounts, RegistryFetcher,
    RegistrySettings,
};

const USER: &str = "alice";
const PASSWORD: &str = "correct-horse";
const COOKIE: &str = "ASPSESSIONIDSIRF";

// The site's paths (DESIGN §9.1), relative to /Sirf/.
const LOGIN: &str = "Script/13_01_01/pf_13_01_01_02_ouvr_sessn.asp";
const INDEX: &str = "Script/13_01_11/pf_13_01_11_02_indx_immbl.asp";
const ACTE: &str = "Script/13_01_11/pf_13_01_11_08_reqst.asp";
const PLAN: &str = "Script/13_01_11/pf_13_01_11_10_plan_cadst.asp";
const PLAN_CHOICE: &str = "Script/13_01_08/pf_13_01_08_selct_plan_cadst.asp";
const ACTE_CHOICE: &str = "Script/13_01_11/pf_13_01_11_09_reqst_choix.asp";
const CONFIRM: &str = "Script/13_01_13/pf_13_01_13_confr_demnd.asp";
const FRAMESET: &str = "Script/13_01_18/pf_13_01_18_01_affch.asp";
const MENU: &str = "Script/13_01_18/pf_13_01_18_03_menu.asp";
const DOCMN: &str = "Script/13_01_18/pf_13_01_18_02_Docmn.asp";
const SAVE: &str = "Script/13_01_18/pf_13_01_18_04_impri_sauvg.asp";

#[derive(Default)]
struct Sim {
    sessions: HashSet<String>,
    logins_ok: u32,
    logins_refused: u32,
    /// Documents whose page frame was served, per session: the save control works only for these.
    shown: HashSet<(String, String)>,
    downloads: Vec<String>,
    refused_downloads: u32,
    confirmations: u32,
    /// The next confirmation page expires the session and sends back to the login page.
    expire_at_confirmation: bool,
    /// How long the page frame of a plan takes.
    slow_plan: Duration,
}

type Shared = Arc<Mutex<Sim>>;

fn pdf_for(doc: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {doc}\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n").into_bytes()
}

fn session(headers: &HeaderMap, sim: &Shared) -> Option<String> {
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ");
    let sim = sim.lock().unwrap();
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
        .find(|token| sim.sessions.contains(token))
}

/// A page of the site: its pages link back with paths relative to /Sirf/ through <base>.
fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><base href=\"/Sirf/\"><title>Registre foncier du Québec</title></head><body>{body}</body></html>"
    ))
}

/// The site's error cell.
fn error_cell(text: &str) -> String {
    format!(
        "<table class=\"Cadre\"><tr><td><img src=\"images/image_message.gif\"></td><td class=\"contValErr\">{text}</td></tr></table>"
    )
}

fn form(body: &HashMap<String, String>, name: &str) -> String {
    body.get(name).cloned().unwrap_or_default()
}

fn parse(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn to_login() -> Response {
    Redirect::to(&format!("/Sirf/{LOGIN}")).into_response()
}

async fn home() -> Html<String> {
    page(&format!(
        "<h1>Registre foncier du Québec en ligne</h1>\
         <a href=\"pf_00_01_01_01_aide.asp\">Entree de l'aide</a>\
         <a href=\"{LOGIN}\"><img src=\"images/entree_bandeau.gif\" alt=\"Consultez le Registre foncier du Québec en ligne\"></a>"
    ))
}

fn login_form(error: Option<&str>) -> Html<String> {
    page(&format!(
        "<h1>Ouverture de session</h1>{}<form method=\"post\" action=\"{LOGIN}\">\
         Code d'utilisateur <input name=\"code_utilisateur\"> Mot de passe <input type=\"password\" name=\"mot_de_passe\">\
         <input type=\"reset\" value=\"Effacer\"><input type=\"submit\" value=\"Soumettre\"></form>",
        error.map(error_cell).unwrap_or_default()
    ))
}

async fn login(State(sim): State<Shared>, body: Bytes) -> Response {
    let form = parse(&body);
    let ok = form.get("code_utilisateur").map(String::as_str) == Some(USER)
        && form.get("mot_de_passe").map(String::as_str) == Some(PASSWORD);
    let mut s = sim.lock().unwrap();
    if !ok {
        s.logins_refused += 1;
        return login_form(Some("Le code d'utilisateur ou le mot de passe est invalide.")).into_response();
    }
    s.logins_ok += 1;
    let token = format!("tok{}", s.logins_ok);
    s.sessions.insert(token.clone());
    (
        [(header::SET_COOKIE, format!("{COOKIE}={token}; Path=/; HttpOnly"))],
        page(&format!(
            "<h1>Menu principal</h1><ul><li><a href=\"{INDEX}\">Index des immeubles</a></li>\
             <li><a href=\"{ACTE}\">Acte</a></li><li><a href=\"{PLAN}\">Plan cadastral</a></li></ul>"
        )),
    )
        .into_response()
}

const CIRCONSCRIPTIONS: &[(&str, &str)] = &[("20", "Montréal"), ("23", "Québec"), ("05", "Saint-Hyacinthe")];
const CADASTRES: &[(&str, &str)] = &[("000001", "Québec"), ("000137", "Paroisse de Saint-Laurent")];

fn select(id: &str, options: &[(&str, &str)], chosen: &str, onchange: &str, placeholder: &str) -> String {
    let mut out = format!("<select id=\"{id}\" name=\"{id}\" onchange=\"{onchange}\"><option value=\"\">{placeholder}</option>");
    for (value, text) in options {
        let selected = if *value == chosen { " selected" } else { "" };
        out.push_str(&format!("<option value=\"{value}\"{selected}>{text}</option>"));
    }
    out.push_str("</select>");
    out
}

/// The index and plan search forms: choosing a circonscription reloads the page with the
/// cadastres; choosing a cadastre reloads it with the designations (only for some cadastres).
fn lot_form(path: &str, q: &HashMap<String, String>, error: Option<&str>) -> Html<String> {
    let circ = form(q, "selCircnFoncr");
    let cadst = form(q, "selCadst");
    let mut fields = select(
        "selCircnFoncr",
        CIRCONSCRIPTIONS,
        &circ,
        &format!("location.href='{path}?selCircnFoncr='+this.value"),
        "Choisir une circonscription",
    );
    if !circ.is_empty() {
        fields.push_str(&select(
            "selCadst",
            CADASTRES,
            &cadst,
            &format!("location.href='{path}?selCircnFoncr={circ}&selCadst='+this.value"),
            "Choisir un cadastre",
        ));
    }
    if path == INDEX && cadst == "000137" {
        fields.push_str(&select("selDesgnSecnd", &[("R1", "Rang 1"), ("R2", "Rang 2")], "", "", "Aucune"));
    }
    page(&format!(
        "{}<form method=\"post\" action=\"{path}\">{fields} Numéro de lot <input id=\"txtNumrtLot\" name=\"txtNumrtLot\">\
         <input type=\"reset\" value=\"Effacer\"><input type=\"submit\" value=\"Soumettre\"></form>",
        error.map(error_cell).unwrap_or_default()
    ))
}

async fn lot_page(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>, path: &'static str) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    lot_form(path, &q, None).into_response()
}

async fn lot_search(State(sim): State<Shared>, headers: HeaderMap, body: Bytes, path: &'static str) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let f = parse(&body);
    let lot = form(&f, "txtNumrtLot");
    let (circ, cadst) = (form(&f, "selCircnFoncr"), form(&f, "selCadst"));
    let again = |error: &str| lot_form(path, &f, Some(error)).into_response();
    if circ.is_empty() || cadst.is_empty() {
        return again("Vous devez choisir une circonscription foncière et un cadastre.");
    }
    if lot.is_empty() || !lot.chars().all(|c| c.is_ascii_digit()) {
        return again("Le numéro de lot doit être composé de chiffres seulement.");
    }
    let known = matches!((circ.as_str(), cadst.as_str(), lot.as_str()), ("20", "000001", "4866594") | ("20", "000137", "1500"));
    if !known {
        return again(&format!("Le lot {lot} n'existe pas dans le cadastre sélectionné."));
    }
    if cadst == "000137" && form(&f, "selDesgnSecnd") != "R2" {
        return again("La désignation secondaire est obligatoire pour ce lot.");
    }
    if path == PLAN {
        return Redirect::to(&format!("/Sirf/{PLAN_CHOICE}?lot={lot}")).into_response();
    }
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=index-{lot}")).into_response()
}

/// The plan choice page: "… est inactif" (not an error), two electronic versions and a
/// paper-only copy listed last.
async fn plan_choice(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let lot = form(&q, "lot");
    page(&format!(
        "{}<form method=\"post\" action=\"{PLAN_CHOICE}\"><input type=\"hidden\" name=\"lot\" value=\"{lot}\"><table>\
         <tr><td><input type=\"radio\" name=\"rdPlan\" value=\"P1\"></td><td>Plan {lot} du 1998-05-02</td></tr>\
         <tr><td><input type=\"radio\" name=\"rdPlan\" value=\"P2\"></td><td>Plan {lot} du 2015-09-14</td></tr>\
         <tr><td><input type=\"radio\" name=\"rdPlan\" value=\"P3\"></td><td>Plan {lot} du 2019-01-01 <img src=\"images/BPD.GIF\" alt=\"Copie papier\"></td></tr>\
         </table><input type=\"submit\" value=\"Soumettre\"></form>",
        error_cell(&format!("Le plan du lot {lot} est inactif."))
    ))
    .into_response()
}

async fn plan_chosen(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let f = parse(&body);
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=plan-{}-{}", form(&f, "lot"), form(&f, "rdPlan"))).into_response()
}

fn acte_form(error: Option<&str>, rows: &[&str]) -> Html<String> {
    let choice = if rows.is_empty() {
        String::new()
    } else {
        let rows: String = rows
            .iter()
            .map(|n| format!("<tr><td><input type=\"radio\" name=\"rdNoReqst\" value=\"{n}\"></td><td>Réquisition {n}</td></tr>"))
            .collect();
        format!("<form method=\"post\" action=\"{ACTE_CHOICE}\"><table>{rows}</table><input type=\"submit\" value=\"Soumettre\"></form>")
    };
    page(&format!(
        "{}<form method=\"post\" action=\"{ACTE}\">{}{} Numéro <input id=\"txtNoReqst\" name=\"txtNoReqst\">\
         <input type=\"submit\" value=\"Soumettre\"></form>{choice}",
        error.map(error_cell).unwrap_or_default(),
        select("selCircnFoncr", CIRCONSCRIPTIONS, "", "", "Choisir une circonscription"),
        select("selTypeDocmn", &[("ACTE", "Acte"), ("RADIA", "Radiation"), ("AVIS", "Avis d'adresse")], "", "", "Type de document"),
    ))
}

async fn acte_page(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    acte_form(None, &[]).into_response()
}

async fn acte_search(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let f = parse(&body);
    let number = form(&f, "txtNoReqst");
    if form(&f, "selCircnFoncr") != "20" || form(&f, "selTypeDocmn") != "ACTE" {
        return acte_form(Some("Aucun document ne correspond aux critères de recherche."), &[]).into_response();
    }
    match number.as_str() {
        // Straight to the document: no choice, no confirmation.
        "12345678" => Redirect::to(&format!("/Sirf/{FRAMESET}?doc=acte-{number}")).into_response(),
        "22000000" => acte_form(
            Some("Nous vous proposons une liste de document(s) dont le numéro est semblable à celui demandé."),
            &["22 000 001", "22 000 000", "22 000 010"],
        )
        .into_response(),
        "33000000" => acte_form(
            Some("Nous vous proposons une liste de document(s) dont le numéro est semblable à celui demandé."),
            &["33 000 001", "33 000 100"],
        )
        .into_response(),
        _ => acte_form(Some(&format!("Le numéro {number} n'existe pas.")), &[]).into_response(),
    }
}

async fn acte_chosen(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let f = parse(&body);
    let number: String = form(&f, "rdNoReqst").split_whitespace().collect();
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=acte-{number}")).into_response()
}

async fn confirm_page(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &sim) else { return to_login() };
    {
        let mut s = sim.lock().unwrap();
        if s.expire_at_confirmation {
            s.expire_at_confirmation = false;
            s.sessions.remove(&token);
            return to_login();
        }
    }
    let doc = form(&q, "doc");
    page(&format!(
        "<p>Des frais s'appliquent à cette demande.</p><form method=\"post\" action=\"{CONFIRM}\">\
         <input type=\"hidden\" name=\"doc\" value=\"{doc}\"><input type=\"button\" value=\"Annuler\">\
         <input type=\"submit\" id=\"btnConfr\" value=\"Confirmer\"></form>"
    ))
    .into_response()
}

async fn confirmed(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    sim.lock().unwrap().confirmations += 1;
    Redirect::to(&format!("/Sirf/{FRAMESET}?doc={}", form(&parse(&body), "doc"))).into_response()
}

async fn frameset(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let doc = form(&q, "doc");
    Html(format!(
        "<!DOCTYPE html><html><head><base href=\"/Sirf/\"><title>Document</title></head><frameset rows=\"40,*\">\
         <frame name=\"menu\" src=\"{MENU}?doc={doc}\"><frame name=\"page\" src=\"{DOCMN}?doc={doc}\"></frameset></html>"
    ))
    .into_response()
}

async fn menu(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if session(&headers, &sim).is_none() {
        return to_login();
    }
    let doc = form(&q, "doc");
    page(&format!(
        "<table><tr><td class=\"menuBoutnCentr\"><a title=\"Imprimer la page\" href=\"javascript:print()\">Imprimer</a></td>\
         <td class=\"menuBoutnCentr fondOrang\"><a title=\"Sauvegarder ou imprimer le document\" \
         href=\"{SAVE}?doc={doc}\" onmouseup=\"fRechrDocmnPDF()\"><img src=\"images/sauvg.gif\" alt=\"Sauvegarder\"></a></td></tr></table>"
    ))
    .into_response()
}

async fn docmn(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &sim) else { return to_login() };
    let doc = form(&q, "doc");
    let slow = sim.lock().unwrap().slow_plan;
    if doc.starts_with("plan-") {
        tokio::time::sleep(slow).await;
    }
    sim.lock().unwrap().shown.insert((token, doc.clone()));
    page(&format!("<p>Document {doc}</p><img src=\"images/docmn.gif\">")).into_response()
}

async fn save(State(sim): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let doc = form(&q, "doc");
    let token = session(&headers, &sim);
    let mut s = sim.lock().unwrap();
    match token {
        Some(token) if s.shown.contains(&(token.clone(), doc.clone())) => {
            s.downloads.push(doc.clone());
            ([(header::CONTENT_TYPE, "application/pdf")], pdf_for(&doc)).into_response()
        }
        _ => {
            s.refused_downloads += 1;
            (StatusCode::FORBIDDEN, page("Session requise")).into_response()
        }
    }
}

async fn simulator() -> (String, Shared) {
    let sim: Shared = Arc::new(Mutex::new(Sim { slow_plan: Duration::from_secs(12), ..Sim::default() }));
    let r = |p: &str| format!("/Sirf/{p}");
    let app = axum::Router::new()
        .route("/Sirf/", get(home))
        .route(&r(LOGIN), get(|| async { login_form(None) }).post(login))
        .route(
            &r(INDEX),
            get(|s: State<Shared>, h: HeaderMap, q: Query<HashMap<String, String>>| lot_page(s, h, q, INDEX))
                .post(|s: State<Shared>, h: HeaderMap, b: Bytes| lot_search(s, h, b, INDEX)),
        )
        .route(
            &r(PLAN),
            get(|s: State<Shared>, h: HeaderMap, q: Query<HashMap<String, String>>| lot_page(s, h, q, PLAN))
                .post(|s: State<Shared>, h: HeaderMap, b: Bytes| lot_search(s, h, b, PLAN)),
        )
        .route(&r(PLAN_CHOICE), get(plan_choice).post(plan_chosen))
        .route(&r(ACTE), get(acte_page).post(acte_search))
        .route(&r(ACTE_CHOICE), axum::routing::post(acte_chosen))
        .route(&r(CONFIRM), get(confirm_page).post(confirmed))
        .route(&r(FRAMESET), get(frameset))
        .route(&r(MENU), get(menu))
        .route(&r(DOCMN), get(docmn))
        .route(&r(SAVE), get(save))
        .with_state(sim.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/Sirf/"), sim)
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn diagnostics_dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("registre-fetch-diag-{test}-{}", std::process::id()))
}

/// The shipped configuration (or `config`, an edited copy), pointed at the simulator.
fn settings_from(config: &str, base: &str, idle: Duration, test: &str) -> RegistrySettings {
    let site = SiteConfig::parse(config, "test").unwrap().with_base_url(base.parse().unwrap());
    let mut site = SiteConfig { step_timeout_ms: 10_000, document_timeout_ms: 60_000, ..site };
    site.diagnostics.dir = diagnostics_dir(test).display().to_string();
    RegistrySettings {
        site,
        chromium_path: std::env::var_os("CHROMIUM_PATH").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into()),
        chromedriver_path: std::env::var_os("CHROMEDRIVER_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/chromedriver".into()),
        idle_timeout: idle,
        fetch_timeout: Duration::from_secs(120),
    }
}

fn settings(base: &str, idle: Duration, test: &str) -> RegistrySettings {
    settings_from(DEFAULT_SITE_CONFIG, base, idle, test)
}

fn accounts(list: &[(&str, &str)]) -> Arc<InMemoryAccounts> {
    Arc::new(InMemoryAccounts::new(list.iter().map(|(u, p)| (u.to_string(), Secret::new(*p)))))
}

fn index(lot: &str) -> DocumentRequest {
    DocumentRequest {
        circonscription_fonciere: Some("MONTREAL".into()), // case and accents: "Montréal"
        cadastre: Some("Cadastre du Québec".into()),        // the site says "Québec"
        ..DocumentRequest::new(DocumentSource::Index, lot)
    }
}

fn acte(number: &str) -> DocumentRequest {
    DocumentRequest {
        circonscription_fonciere: Some("Montréal".into()),
        acte_type: Some("acte".into()),
        ..DocumentRequest::new(DocumentSource::Acte, number)
    }
}

fn plan(lot: &str) -> DocumentRequest {
    DocumentRequest {
        circonscription_fonciere: Some("Montreal".into()),
        cadastre: Some("Québec".into()),
        ..DocumentRequest::new(DocumentSource::PlanCadastraux, lot)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_fetches_an_index_an_acte_and_a_plan_through_every_step() {
    init_logs();
    let (base, sim) = simulator().await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "flow"), accounts.clone()).unwrap();

    // Index: two reloading selects, the lot typed without spaces, no designation list, confirmation.
    let doc = fetcher.fetch(&index("4 866 594")).await.unwrap_or_else(|e| panic!("index: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-4866594"));
    assert!(doc.source.contains("impri_sauvg.asp?doc=index-4866594"), "{}", doc.source);

    // Index with a designation list (it appears once the cadastre is chosen).
    let with_designation = DocumentRequest {
        cadastre: Some("paroisse de st-laurent".into()),
        designation_secondaire: Some("rang 2".into()),
        ..index("1500")
    };
    let doc = fetcher.fetch(&with_designation).await.unwrap_or_else(|e| panic!("index with designation: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-1500"));

    // Acte found at once: no choice page, no confirmation.
    let doc = fetcher.fetch(&acte("12345678")).await.unwrap_or_else(|e| panic!("acte: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));

    // Acte among similar numbers: the exact one is taken, then the confirmation.
    let doc = fetcher.fetch(&acte("22000000")).await.unwrap_or_else(|e| panic!("acte (similar): {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-22000000"));

    // Plan: "est inactif" is not an error, the paper-only row is skipped (the latest other one is
    // taken), the confirmation, then a page frame slower than step_timeout_ms (12 s > 10 s).
    let doc = fetcher.fetch(&plan("4866594")).await.unwrap_or_else(|e| panic!("plan: {e}"));
    assert_eq!(doc.bytes, pdf_for("plan-4866594-P2"));

    {
        let s = sim.lock().unwrap();
        assert_eq!(s.logins_ok, 1, "one login serves every document of the session");
        assert_eq!(s.downloads, ["index-4866594", "index-1500", "acte-12345678", "acte-22000000", "plan-4866594-P2"]);
        assert_eq!(s.confirmations, 4, "every confirmation page confirmed, none invented");
        assert_eq!(s.refused_downloads, 0);
    }
    assert_eq!(accounts.success_count(USER), 1);

    // The save control needs the session cookie: without it the simulator refuses.
    let direct = reqwest::get(format!("{base}{SAVE}?doc=index-4866594")).await.unwrap();
    assert_eq!(direct.status(), 403);

    fetcher.shutdown().await;
    assert!(!fetcher.has_session().await);
    assert!(!accounts.in_use(USER), "the account is released with the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sites_refusals_are_final_data_errors_with_its_text() {
    init_logs();
    let (base, sim) = simulator().await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "refusals"), accounts.clone()).unwrap();

    let err = fetcher.fetch(&index("9 999 999")).await.unwrap_err();
    assert_eq!(err.to_string(), "index search: Le lot 9999999 n'existe pas dans le cadastre sélectionné.");
    assert!(err.is_final() && err.counts_as_attempt(), "{err:?}");

    let err = fetcher.fetch(&acte("33000000")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("acte search: Nous vous proposons une liste de document(s) dont le numéro est semblable à celui demandé. — 33000000 is not in the list (")
            && text.contains("33 000 001"),
        "{text}"
    );
    assert!(err.is_final());

    let mut unknown = acte("12345678");
    unknown.circonscription_fonciere = Some("Gaspé".into());
    let err = fetcher.fetch(&unknown).await.unwrap_err();
    assert!(err.is_final(), "{err:?}");
    assert!(err.to_string().starts_with("acte search: circonscription_fonciere \"Gaspé\" is not offered by the registry (options: Montréal, Québec, Saint-Hyacinthe"), "{err}");

    // The browser stays usable after a data error: the same session fetches the next document.
    let doc = fetcher.fetch(&acte("12345678")).await.unwrap();
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));
    assert_eq!(sim.lock().unwrap().logins_ok, 1);
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_and_a_refused_account_rested_for_another() {
    init_logs();
    let (base, sim) = simulator().await;
    // bob's password is wrong: the site refuses him, the fetcher reports it and logs in as alice.
    let accounts = accounts(&[("bob", "wrong-password"), (USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "session"), accounts.clone()).unwrap();

    let doc = fetcher.fetch(&index("4866594")).await.unwrap_or_else(|e| panic!("index: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-4866594"));
    assert_eq!(accounts.failure_count("bob"), 1, "the refusal is counted on bob (failure_count)");
    assert!(!accounts.in_use("bob"), "bob is given back to the provider");
    assert!(accounts.in_use(USER));
    {
        let s = sim.lock().unwrap();
        assert_eq!((s.logins_refused, s.logins_ok), (1, 1));
    }

    // The site expires the session at the confirmation page: the fetcher logs in again and the
    // document still comes within the same fetch (no error, so no attempt counted on the row).
    sim.lock().unwrap().expire_at_confirmation = true;
    let doc = fetcher.fetch(&acte("22000000")).await.unwrap_or_else(|e| panic!("acte after expiry: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-22000000"));
    {
        let s = sim.lock().unwrap();
        assert_eq!(s.logins_ok, 2, "one new login after the expiry");
        assert!(!s.expire_at_confirmation);
        assert_eq!(s.sessions.len(), 1, "the expired session is gone, the new one serves");
    }
    assert_eq!(accounts.failure_count(USER), 0, "an expiry is not the account's fault");

    // bob rests behind alice: the next session logs in as alice without trying him again.
    fetcher.shutdown().await;
    assert!(!accounts.in_use(USER));
    fetcher.fetch(&acte("12345678")).await.unwrap_or_else(|e| panic!("acte in a new session: {e}"));
    {
        let s = sim.lock().unwrap();
        assert_eq!((s.logins_refused, s.logins_ok), (1, 3), "bob was not tried again");
    }
    assert_eq!(accounts.failure_count("bob"), 1);
    fetcher.shutdown().await;

    // Only refused accounts left: a login failure naming the site's reason, the password nowhere.
    let refused = self::accounts(&[("bob", "wrong-password"), ("carol", "also-wrong")]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "session"), refused.clone()).unwrap();
    let err = fetcher.fetch(&index("4866594")).await.unwrap_err();
    match &err {
        FetchError::LoginFailed { reason, .. } => assert!(reason.contains("mot de passe est invalide"), "{reason}"),
        other => panic!("expected LoginFailed, got {other:?}"),
    }
    assert!(!format!("{err:?} {err}").contains("wrong-password"));
    assert_eq!((refused.failure_count("bob"), refused.failure_count("carol")), (1, 1));
    assert!(!refused.in_use("bob") && !refused.in_use("carol"));
    assert!(!fetcher.has_session().await);

    // No account free at all: a NoAccount error that does not count as an attempt.
    let busy = self::accounts(&[(USER, PASSWORD)]);
    let held = busy.acquire().await.unwrap();
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "session"), busy.clone()).unwrap();
    let err = fetcher.fetch(&index("4866594")).await.unwrap_err();
    assert!(matches!(err, FetchError::NoAccount(_)) && !err.counts_as_attempt(), "{err:?}");
    busy.release(&held).await;
}

/// The simulator does not read the configuration: a selector of the configuration that is wrong
/// for the site fails the fetch, and the page is saved for the operator in a folder the error names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_selector_in_the_config_fails_and_saves_the_page_for_diagnosis() {
    init_logs();
    let (base, _sim) = simulator().await;
    assert!(DEFAULT_SITE_CONFIG.contains("\"#txtNumrtLot\""));
    let broken = DEFAULT_SITE_CONFIG.replace("\"#txtNumrtLot\"", "\"#txtNumrLot\"");
    let mut settings = settings_from(&broken, &base, Duration::from_secs(300), "broken");
    settings.site.diagnostics.keep = 2;
    let dir = diagnostics_dir("broken");
    let _ = std::fs::remove_dir_all(&dir);
    for old in ["00000000000001-old", "00000000000002-old"] {
        std::fs::create_dir_all(dir.join(old)).unwrap();
    }
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings, accounts).unwrap();

    let err = fetcher.fetch(&index("4866594")).await.unwrap_err();
    assert!(!err.is_final(), "a site change is retried, not blamed on the row: {err:?}");
    let text = err.to_string();
    assert!(text.contains("#txtNumrLot") && text.contains("the site changed?"), "{text}");
    let folder = text
        .split("screenshot and HTML of the page in ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no diagnostics folder named in {text}"));
    let folder = PathBuf::from(folder);
    assert!(folder.starts_with(&dir), "{}", folder.display());
    let png = std::fs::read(folder.join("screenshot.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let html = std::fs::read_to_string(folder.join("page.html")).unwrap();
    assert!(html.contains("id=\"txtNumrtLot\""), "the saved HTML shows the field's real id");
    let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left.len(), 2, "pruned to the newest `keep`: {left:?}");
    assert_eq!(left[0], "00000000000002-old");
    fetcher.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_browser_is_closed_and_a_crashed_one_replaced() {
    init_logs();
    let (base, sim) = simulator().await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_millis(1500), "idle"), accounts.clone()).unwrap();

    fetcher.fetch(&acte("12345678")).await.unwrap();
    // Poll (generous deadline) for the idle timer to close the session.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fetcher.has_session().await {
        assert!(std::time::Instant::now() < deadline, "the idle session was never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!accounts.in_use(USER));

    // Reopened on demand.
    fetcher.fetch(&acte("12345678")).await.unwrap();
    assert_eq!(sim.lock().unwrap().logins_ok, 2);

    // Kill chromedriver and Chromium: the next fetch reports a crash (no attempt counted)...
    let pid = fetcher.driver_pid().await.expect("a running chromedriver");
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
    let err = fetcher.fetch(&acte("12345678")).await.unwrap_err();
    assert!(matches!(err, FetchError::BrowserCrashed(_)) && !err.counts_as_attempt(), "{err:?}");
    assert!(!fetcher.has_session().await);
    assert!(!accounts.in_use(USER));
    // ...and the one after starts a new browser.
    let doc = fetcher.fetch(&acte("12345678")).await.unwrap();
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));
    fetcher.shutdown().await;
}
