//! A stand-in for the Registre foncier du Québec website, served on 127.0.0.1, in the two shapes
//! of the evidence of docs/design.md §9.1: [`Shape::P`] (the production system's final path) and
//! [`Shape::S`] (its first extractor). Built from §9.1's facts only, never from the fetcher's
//! registry-site.toml: every path, id, label, button text and frame name is written here, so a wrong
//! alternative in the configuration makes the tests fail.
//!
//! Both shapes: the search pages under Script/13_01_11/, #selCircnFoncr whose choice reloads the
//! page, #selCadst ("Québec" = 000001), #selDesgnSecnd, #txtNumrtLot typed without spaces, the acte
//! form (#selCircnFoncr, #selTypeDocmn, #txtNoReqst), the plan choice page (Script/13_01_08/) with
//! a paper-only row (BPD.GIF) and "… est inactif", the fee confirmation (#btnConfr), the error cell
//! (td.contValErr in table.Cadre) with the site's texts, the document page and its save control
//! (a[title="Sauvegarder ou imprimer le document"], href impri_sauvg, onmouseup fRechrDocmnPDF).
//!
//! P: an image-map entry (`area[href*=pf_14_06_01_reglr]`), login fields found only by their labels
//! (names unlike S's), "Connexion"; a circonscription reload slower than 20 s
//! ([`SiteOptions::circonscription_reload`]); the cadastre fills the désignation without reload;
//! actes searched with "Rechercher", results on the same page (a paper-only row first and a similar
//! number last); plan choice submitted with "Continuer"; the save control in the top document, which
//! delivers the PDF only through its onmouseup handler (a plain GET of its href answers an HTML page).
//!
//! S: an `<a>` around `images/entree_bandeau.gif` (href 13_01_01), fields `code_utilisateur` /
//! `mot_de_passe`, "Soumettre" everywhere, the cadastre reloads the page, actes answered with the
//! "similar numbers" list on a choice form, a frameset whose menu frame holds the save control,
//! whose href answers the PDF to the session that was shown the document.
//!
//! [`start`] serves it in a test; the `registry-site-sim` binary serves it for scripts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The account the simulated site accepts.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct-horse";

/// Gives the registre workers of the database behind `conn` the site's login ([`USER`] /
/// [`PASSWORD`]) in worker_accounts, as an operator would.
pub async fn insert_account(conn: &mut sqlx::PgConnection) {
    sqlx::query("INSERT INTO worker_accounts (username, password) VALUES ($1, $2)")
        .bind(USER)
        .bind(PASSWORD)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("insert the registry site's account: {e}"));
}
const COOKIE: &str = "ASPSESSIONIDSIRF";

// The site's paths (§9.1), relative to /Sirf/.
pub const ENTRY_P: &str = "Script/14_06_01/pf_14_06_01_reglr.asp";
pub const LOGIN: &str = "Script/13_01_01/pf_13_01_01_02_ouvr_sessn.asp";
pub const INDEX: &str = "Script/13_01_11/pf_13_01_11_02_indx_immbl.asp";
pub const ACTE: &str = "Script/13_01_11/pf_13_01_11_08_reqst.asp";
pub const PLAN: &str = "Script/13_01_11/pf_13_01_11_10_plan_cadst.asp";
pub const PLAN_CHOICE: &str = "Script/13_01_08/pf_13_01_08_selct_plan_cadst.asp";
pub const ACTE_CHOICE: &str = "Script/13_01_11/pf_13_01_11_09_reqst_choix.asp";
pub const CONFIRM: &str = "Script/13_01_13/pf_13_01_13_confr_demnd.asp";
pub const FRAMESET: &str = "Script/13_01_18/pf_13_01_18_01_affch.asp";
pub const MENU: &str = "Script/13_01_18/pf_13_01_18_03_menu.asp";
pub const DOCMN: &str = "Script/13_01_18/pf_13_01_18_02_Docmn.asp";
pub const SAVE: &str = "Script/13_01_18/pf_13_01_18_04_impri_sauvg.asp";

/// The site's own words (§9.1).
pub const LOT_UNKNOWN: &str = "Le lot n'existe pas dans la circonscription foncière demandée";
pub const ACTE_UNKNOWN: &str = "Le document demandé est inexistant";
pub const SIMILAR: &str = "Nous vous proposons une liste de document(s) dont le numéro est semblable à celui demandé.";

/// Which body of evidence the simulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    P,
    S,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p" => Ok(Shape::P),
            "s" => Ok(Shape::S),
            other => Err(format!("unknown shape {other:?}: p or s")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SiteOptions {
    pub shape: Shape,
    /// How long the page reloaded by choosing a circonscription takes to come (P: more than 20 s
    /// on the real site; tests that do not prove that wait use less).
    pub circonscription_reload: Duration,
    /// How long the document's page frame takes.
    pub document_delay: Duration,
    /// The logins the site accepts ([`USER`] / [`PASSWORD`] unless set).
    pub accounts: Vec<(String, String)>,
    /// A catalog of more documents, in the directory fetcher's layout
    /// (`<dir>/<index|acte|plan_cadastraux>/<number>.pdf`): a lot or acte number with a file there
    /// is known in every circonscription of the list (Cadastre du Québec for lots), and the site
    /// delivers that file's bytes, read when it is saved. The built-in documents stay known.
    pub catalog: Option<PathBuf>,
}

impl SiteOptions {
    pub fn new(shape: Shape) -> SiteOptions {
        SiteOptions {
            shape,
            circonscription_reload: Duration::from_millis(300),
            document_delay: Duration::ZERO,
            accounts: vec![(USER.to_string(), PASSWORD.to_string())],
            catalog: None,
        }
    }
}

/// What the simulator saw, for the tests' assertions.
#[derive(Debug, Default)]
pub struct SiteState {
    pub sessions: HashSet<String>,
    pub logins_ok: u32,
    pub logins_refused: u32,
    /// Documents whose page was shown, per session: the save control works only for these.
    pub shown: HashSet<(String, String)>,
    /// Documents delivered as PDF, in order.
    pub downloads: Vec<String>,
    /// Requests for a PDF that were refused (no session, document not shown, plain GET in P).
    pub refused_downloads: u32,
    pub confirmations: u32,
    /// Document pages opened (what would be charged on the real site).
    pub documents_opened: u32,
    /// The next confirmation page expires the session and sends back to the login page.
    pub expire_at_confirmation: bool,
    /// User-Agent and Accept-Language of every request.
    pub user_agents: HashSet<String>,
    pub accept_languages: HashSet<String>,
    /// Acte searches received: (type value, number).
    pub acte_searches: Vec<(String, String)>,
    /// Lot searches received: (cadastre value, lot).
    pub lot_searches: Vec<(String, String)>,
}

/// A running simulator.
pub struct RegistrySite {
    /// `http://127.0.0.1:<port>/Sirf/`, what REGISTRE_BASE_URL takes.
    pub base: String,
    pub state: Arc<Mutex<SiteState>>,
    pub options: SiteOptions,
}

impl RegistrySite {
    pub fn state(&self) -> std::sync::MutexGuard<'_, SiteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<SiteState>>,
    options: SiteOptions,
}

impl App {
    fn lock(&self) -> std::sync::MutexGuard<'_, SiteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn p(&self) -> bool {
        self.options.shape == Shape::P
    }
    /// The catalog's file for `source`/`number`, if there is one.
    fn catalog_file(&self, source: &str, number: &str) -> Option<PathBuf> {
        let dir = self.options.catalog.as_deref()?;
        let safe = !number.is_empty() && number.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let file = dir.join(source).join(format!("{number}.pdf"));
        (safe && file.is_file()).then_some(file)
    }
    /// The bytes delivered for a document id (`index-<lot>`, `plan-<lot>-<choice>`, `acte-<number>`).
    fn document_bytes(&self, doc: &str) -> Vec<u8> {
        let file = if let Some(lot) = doc.strip_prefix("index-") {
            self.catalog_file("index", lot)
        } else if let Some(rest) = doc.strip_prefix("plan-") {
            self.catalog_file("plan_cadastraux", rest.split('-').next().unwrap_or_default())
        } else if let Some(number) = doc.strip_prefix("acte-") {
            self.catalog_file("acte", number)
        } else {
            None
        };
        file.and_then(|f| std::fs::read(f).ok()).unwrap_or_else(|| pdf_for(doc))
    }
}

/// "22000000" → "22 000 000", as the site writes numbers.
fn spaced(number: &str) -> String {
    let digits: Vec<char> = number.chars().collect();
    let mut out = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(*c);
    }
    out
}

/// Whether `dir` looks like a catalog (for the binary's argument check).
pub fn is_catalog(dir: &Path) -> bool {
    ["index", "acte", "plan_cadastraux"].iter().any(|s| dir.join(s).is_dir())
}

/// The PDF the simulator delivers for a document.
pub fn pdf_for(doc: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {doc}\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n").into_bytes()
}

fn session(headers: &HeaderMap, app: &App) -> Option<String> {
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ");
    let mut s = app.lock();
    if let Some(ua) = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        s.user_agents.insert(ua.to_string());
    }
    if let Some(lang) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) {
        s.accept_languages.insert(lang.to_string());
    }
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
        .find(|token| s.sessions.contains(token))
}

/// A page of the site: its links are relative to /Sirf/ through <base>.
fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><base href=\"/Sirf/\"><title>Registre foncier du Québec</title></head><body>{body}</body></html>"
    ))
}

/// The site's error cell.
fn error_cell(text: &str) -> String {
    format!("<table class=\"Cadre\"><tr><td><img src=\"images/image_message.gif\"></td><td class=\"contValErr\">{text}</td></tr></table>")
}

fn field(map: &HashMap<String, String>, name: &str) -> String {
    map.get(name).cloned().unwrap_or_default()
}

fn parse(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn to_login() -> Response {
    Redirect::to(&format!("/Sirf/{LOGIN}")).into_response()
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    session(&headers, &app);
    if app.p() {
        page(&format!(
            "<h1>Registre foncier du Québec en ligne</h1>\
             <img src=\"images/bandeau_accueil.gif\" width=\"600\" height=\"80\" usemap=\"#carte\" alt=\"Bandeau\">\
             <map name=\"carte\"><area shape=\"rect\" coords=\"0,0,300,80\" href=\"{ENTRY_P}\" alt=\"Entrée\">\
             <area shape=\"rect\" coords=\"300,0,600,80\" href=\"pf_00_01_01_01_aide.asp\" alt=\"Aide\"></map>"
        ))
    } else {
        page(&format!(
            "<h1>Registre foncier du Québec en ligne</h1>\
             <a href=\"pf_00_01_01_01_aide.asp\">Entree de l'aide</a>\
             <a href=\"{LOGIN}\"><img src=\"images/entree_bandeau.gif\" alt=\"Consultez le Registre foncier du Québec en ligne\"></a>"
        ))
    }
}

fn login_form(app: &App, error: Option<&str>) -> Html<String> {
    let error = error.map(error_cell).unwrap_or_default();
    if app.p() {
        // Found by their labels only: a cell beside the user code, a <label for> for the password.
        page(&format!(
            "<h1>Ouverture de session</h1>{error}<form method=\"post\" action=\"{LOGIN}\"><table>\
             <tr><td>Code d'utilisateur&nbsp;:</td><td><input id=\"ctl00_cu\" name=\"ctl00$txtCU\"></td></tr>\
             <tr><td><label for=\"ctl00_mp\">Mot de passe</label></td><td><input type=\"password\" id=\"ctl00_mp\" name=\"ctl00$txtMP\"></td></tr>\
             </table><input type=\"reset\" value=\"Effacer\"><input type=\"submit\" name=\"ctl00$btn\" value=\"Connexion\"></form>"
        ))
    } else {
        page(&format!(
            "<h1>Ouverture de session</h1>{error}<form method=\"post\" action=\"{LOGIN}\">\
             Code d'utilisateur <input name=\"code_utilisateur\"> Mot de passe <input type=\"password\" name=\"mot_de_passe\">\
             <input type=\"reset\" value=\"Effacer\"><input type=\"submit\" value=\"Soumettre\"></form>"
        ))
    }
}

async fn login_page(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    session(&headers, &app);
    login_form(&app, None)
}

async fn login(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    session(&headers, &app);
    let form = parse(&body);
    let (user, password) = if app.p() { ("ctl00$txtCU", "ctl00$txtMP") } else { ("code_utilisateur", "mot_de_passe") };
    let (given_user, given_password) = (field(&form, user), field(&form, password));
    let ok = app.options.accounts.iter().any(|(u, p)| *u == given_user && *p == given_password);
    let token = {
        let mut s = app.lock();
        if !ok {
            s.logins_refused += 1;
            None
        } else {
            s.logins_ok += 1;
            let token = format!("tok{}", s.logins_ok);
            s.sessions.insert(token.clone());
            Some(token)
        }
    };
    let Some(token) = token else {
        return login_form(&app, Some("Le code d'utilisateur ou le mot de passe est invalide.")).into_response();
    };
    (
        [(header::SET_COOKIE, format!("{COOKIE}={token}; Path=/; HttpOnly"))],
        page(&format!(
            "<h1>Menu principal</h1><ul><li><a href=\"{INDEX}\">Index des immeubles</a></li>\
             <li><a href=\"{ACTE}\">Acte</a></li><li><a href=\"{PLAN}\">Plan cadastral</a></li></ul>"
        )),
    )
        .into_response()
}

const CIRCONSCRIPTIONS: &[(&str, &str)] =
    &[("20", "Montréal"), ("23", "Québec"), ("05", "Saint-Hyacinthe"), ("60", "Laval"), ("45", "Sherbrooke"), ("57", "Gatineau")];
const CADASTRES: &[(&str, &str)] = &[("000001", "Cadastre du Québec"), ("000137", "Paroisse de Saint-Laurent")];
const DESIGNATIONS: &[(&str, &str)] = &[("R1", "Rang 1"), ("R2", "Rang 2")];
/// (value, text) of the acte types (§9.1).
const ACTE_TYPES: &[(&str, &str)] = &[("ACTE", "Acte"), ("AVIS", "Avis d'adresse"), ("RADIA", "Radiation"), ("DIVER", "Acte divers")];

fn select(id: &str, options: &[(&str, &str)], chosen: &str, onchange: &str, placeholder: (&str, &str)) -> String {
    let onchange = if onchange.is_empty() { String::new() } else { format!(" onchange=\"{onchange}\"") };
    let mut out = format!("<select id=\"{id}\" name=\"{id}\"{onchange}><option value=\"{}\">{}</option>", placeholder.0, placeholder.1);
    for (value, text) in options {
        let selected = if *value == chosen { " selected" } else { "" };
        out.push_str(&format!("<option value=\"{value}\"{selected}>{text}</option>"));
    }
    out.push_str("</select>");
    out
}

/// The index and plan search forms. Both shapes: choosing a circonscription reloads the page with
/// the cadastres (slowly in P). S: choosing a cadastre reloads it with the designations (only for
/// Saint-Laurent). P: the désignation list is filled by the page itself, no reload.
fn lot_form(app: &App, path: &str, q: &HashMap<String, String>, error: Option<&str>) -> Html<String> {
    let circ = field(q, "selCircnFoncr");
    let cadst = field(q, "selCadst");
    let mut fields = select(
        "selCircnFoncr",
        CIRCONSCRIPTIONS,
        &circ,
        &format!("location.href='{path}?selCircnFoncr='+this.value"),
        ("", "Choisir une circonscription"),
    );
    if !circ.is_empty() {
        if app.p() {
            let fill = "var d=document.getElementById('selDesgnSecnd');d.innerHTML='<option value=\\'\\'>Aucune</option>';\
                        if(this.value=='000137'){d.innerHTML+='<option value=\\'R1\\'>Rang 1</option><option value=\\'R2\\'>Rang 2</option>';}";
            // The cadastre defaults to the Cadastre du Québec (a row without one keeps it).
            let chosen = if cadst.is_empty() { "000001" } else { cadst.as_str() };
            fields.push_str(&select("selCadst", CADASTRES, chosen, fill, ("000000", "Choisir un cadastre")));
            let designations: &[(&str, &str)] = if cadst == "000137" { DESIGNATIONS } else { &[] };
            fields.push_str(&select("selDesgnSecnd", designations, "", "", ("", "Aucune")));
        } else {
            fields.push_str(&select(
                "selCadst",
                CADASTRES,
                &cadst,
                &format!("location.href='{path}?selCircnFoncr={circ}&selCadst='+this.value"),
                ("000000", "Choisir un cadastre"),
            ));
            if cadst == "000137" {
                fields.push_str(&select("selDesgnSecnd", DESIGNATIONS, "", "", ("", "Aucune")));
            }
        }
    }
    page(&format!(
        "{}<form method=\"post\" action=\"{path}\">{fields} Numéro de lot <input id=\"txtNumrtLot\" name=\"txtNumrtLot\">\
         <input type=\"reset\" value=\"Effacer\"><input type=\"submit\" value=\"Soumettre\"></form>",
        error.map(error_cell).unwrap_or_default()
    ))
}

async fn lot_page(app: App, headers: HeaderMap, q: HashMap<String, String>, path: &'static str) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    // The page reloaded by choosing a circonscription (P: slowly).
    if q.contains_key("selCircnFoncr") && !q.contains_key("selCadst") {
        tokio::time::sleep(app.options.circonscription_reload).await;
    }
    lot_form(&app, path, &q, None).into_response()
}

async fn lot_search(app: App, headers: HeaderMap, body: Bytes, path: &'static str) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    let f = parse(&body);
    let lot = field(&f, "txtNumrtLot");
    let (circ, cadst) = (field(&f, "selCircnFoncr"), field(&f, "selCadst"));
    app.lock().lot_searches.push((cadst.clone(), lot.clone()));
    let again = |error: &str| lot_form(&app, path, &f, Some(error)).into_response();
    if circ.is_empty() || cadst.is_empty() || cadst == "000000" {
        return again("Vous devez choisir une circonscription foncière et un cadastre.");
    }
    if lot.is_empty() || !lot.chars().all(|c| c.is_ascii_digit()) {
        return again("Le numéro de lot doit être composé de chiffres seulement.");
    }
    let in_catalog = cadst == "000001" && app.catalog_file(if path == PLAN { "plan_cadastraux" } else { "index" }, &lot).is_some();
    let known = in_catalog || matches!((circ.as_str(), cadst.as_str(), lot.as_str()), ("20", "000001", "4866594") | ("20", "000137", "1500"));
    if !known {
        return again(LOT_UNKNOWN);
    }
    if cadst == "000137" && field(&f, "selDesgnSecnd") != "R2" {
        return again("Aucune information ne correspond aux critères de sélection");
    }
    if path == PLAN {
        return Redirect::to(&format!("/Sirf/{PLAN_CHOICE}?lot={lot}")).into_response();
    }
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=index-{lot}")).into_response()
}

/// The plan choice page: "… est inactif" (not an error) and a paper-only copy (P: first, S: last).
async fn plan_choice(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    let lot = field(&q, "lot");
    let row = |v: &str, date: &str, paper: bool| {
        let img = if paper { "<img src=\"images/BPD.GIF\" alt=\"Copie papier\">" } else { "" };
        format!("<tr><td><input type=\"radio\" name=\"rdPlan\" value=\"{v}\"></td><td>Plan {lot} du {date} {img}</td></tr>")
    };
    let (rows, button) = if app.p() {
        (format!("{}{}{}", row("P0", "1990-01-01", true), row("P1", "1998-05-02", false), row("P2", "2015-09-14", false)), "Continuer")
    } else {
        (format!("{}{}{}", row("P1", "1998-05-02", false), row("P2", "2015-09-14", false), row("P3", "2019-01-01", true)), "Soumettre")
    };
    page(&format!(
        "{}<form method=\"post\" action=\"{PLAN_CHOICE}\"><input type=\"hidden\" name=\"lot\" value=\"{lot}\"><table>{rows}</table>\
         <input type=\"button\" value=\"Retour\"><input type=\"submit\" value=\"{button}\"></form>",
        error_cell(&format!("Le plan du lot {lot} est inactif."))
    ))
    .into_response()
}

async fn plan_chosen(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    let f = parse(&body);
    if field(&f, "rdPlan").is_empty() {
        return page("Vous devez choisir un plan.").into_response();
    }
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=plan-{}-{}", field(&f, "lot"), field(&f, "rdPlan"))).into_response()
}

/// Which type delivers a built-in acte number, and the rows its search lists (number, paper-only).
fn acte_rows(number: &str) -> Option<(&'static str, Vec<(String, bool)>)> {
    let rows = |r: &[(&str, bool)]| r.iter().map(|(n, p)| (n.to_string(), *p)).collect::<Vec<_>>();
    match number {
        "12345678" => Some(("ACTE", rows(&[("12 345 678", false)]))),
        // A paper-only row first, the exact number, a similar number last.
        "22000000" => Some(("ACTE", rows(&[("22 000 000", true), ("22 000 000", false), ("22 000 001", false)]))),
        "33000000" => Some(("ACTE", rows(&[("33 000 001", false), ("33 000 100", false)]))),
        // Only found as an "Acte divers".
        "55000000" => Some(("DIVER", rows(&[("55 000 000", false)]))),
        _ => None,
    }
}

fn acte_form(app: &App, q: &HashMap<String, String>, error: Option<&str>, results: &str) -> Html<String> {
    let circ = field(q, "selCircnFoncr");
    let (reload, button) = if app.p() {
        (format!("location.href='{ACTE}?selCircnFoncr='+this.value"), "<input type=\"submit\" name=\"btnRechr\" value=\"Rechercher\">")
    } else {
        (String::new(), "<input type=\"submit\" value=\"Soumettre\">")
    };
    page(&format!(
        "{}<h2>Critères de recherche</h2><form method=\"post\" action=\"{ACTE}\">{}{} Numéro <input id=\"txtNoReqst\" name=\"txtNoReqst\" value=\"{}\">\
         {button}</form>{results}",
        error.map(error_cell).unwrap_or_default(),
        select("selCircnFoncr", CIRCONSCRIPTIONS, &circ, &reload, ("", "Choisir une circonscription")),
        select("selTypeDocmn", ACTE_TYPES, &field(q, "selTypeDocmn"), "", ("", "Type de document")),
        field(q, "txtNoReqst"),
    ))
}

fn acte_results(rows: &[(String, bool)], title: &str) -> String {
    let rows: String = rows
        .iter()
        .enumerate()
        .map(|(i, (n, paper))| {
            let img = if *paper { " <img src=\"images/BPD.GIF\" alt=\"Copie papier\">" } else { "" };
            let value = if *paper { format!("papier-{i}") } else { n.split_whitespace().collect() };
            format!("<tr><td><input type=\"radio\" name=\"rdNoReqst\" value=\"{value}\"></td><td>Réquisition {n}{img}</td></tr>")
        })
        .collect();
    format!("<h2>{title}</h2><form method=\"post\" action=\"{ACTE_CHOICE}\"><table>{rows}</table><input type=\"submit\" value=\"Soumettre\"></form>")
}

async fn acte_page(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    if q.contains_key("selCircnFoncr") {
        tokio::time::sleep(app.options.circonscription_reload).await;
    }
    acte_form(&app, &q, None, "").into_response()
}

async fn acte_search(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    let f = parse(&body);
    let number = field(&f, "txtNoReqst");
    let kind = field(&f, "selTypeDocmn");
    app.lock().acte_searches.push((kind.clone(), number.clone()));
    let circ = field(&f, "selCircnFoncr");
    // A catalog acte: an "Acte" of its number, in every circonscription of the list.
    let catalog = app.catalog_file("acte", &number).map(|_| ("ACTE", vec![(spaced(&number), false)]));
    let found = if catalog.is_some() && CIRCONSCRIPTIONS.iter().any(|(v, _)| *v == circ) {
        catalog
    } else if circ != "20" {
        return acte_form(&app, &f, Some("Aucune information ne correspond aux critères de sélection"), "").into_response();
    } else {
        acte_rows(&number)
    };
    let Some((delivering, rows)) = found.filter(|(t, _)| *t == kind) else {
        return acte_form(&app, &f, Some(ACTE_UNKNOWN), "").into_response();
    };
    if app.p() {
        // Results under the criteria, on the same page.
        let _ = delivering;
        return acte_form(&app, &f, None, &acte_results(&rows, "Résultat de la recherche")).into_response();
    }
    if rows.len() == 1 {
        // Straight to the document: no choice, no confirmation.
        return Redirect::to(&format!("/Sirf/{FRAMESET}?doc=acte-{number}")).into_response();
    }
    let electronic: Vec<(String, bool)> = rows.into_iter().filter(|(_, paper)| !paper).collect();
    acte_form(&app, &f, Some(SIMILAR), &acte_results(&electronic, "Liste")).into_response()
}

async fn acte_chosen(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    let number = field(&parse(&body), "rdNoReqst");
    if number.starts_with("papier") {
        return page(&error_cell("Ce document n'est disponible qu'en copie papier.")).into_response();
    }
    Redirect::to(&format!("/Sirf/{CONFIRM}?doc=acte-{number}")).into_response()
}

async fn confirm_page(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &app) else { return to_login() };
    {
        let mut s = app.lock();
        if s.expire_at_confirmation {
            s.expire_at_confirmation = false;
            s.sessions.remove(&token);
            return to_login();
        }
    }
    let doc = field(&q, "doc");
    page(&format!(
        "<p>Des frais s'appliquent à cette demande.</p><form method=\"post\" action=\"{CONFIRM}\">\
         <input type=\"hidden\" name=\"doc\" value=\"{doc}\"><input type=\"button\" value=\"Annuler\">\
         <input type=\"submit\" id=\"btnConfr\" value=\"Confirmer\"></form>"
    ))
    .into_response()
}

async fn confirmed(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if session(&headers, &app).is_none() {
        return to_login();
    }
    app.lock().confirmations += 1;
    Redirect::to(&format!("/Sirf/{FRAMESET}?doc={}", field(&parse(&body), "doc"))).into_response()
}

/// The one-time word P's onmouseup handler adds to the save request (not in the href).
fn jeton(token: &str, doc: &str) -> String {
    format!("j{}", (token.len() * 7919 + doc.len() * 104_729) % 1_000_003)
}

fn save_control(app: &App, token: &str, doc: &str) -> String {
    let handler = if app.p() {
        // The handler runs only on a real mouse-up; the click itself goes nowhere.
        format!(
            "<script>function fRechrDocmnPDF(d, j) {{ window.location.href = '{SAVE}?doc=' + d + '&jeton=' + j; }}</script>\
             <a title=\"Sauvegarder ou imprimer le document\" href=\"{SAVE}?doc={doc}\" onclick=\"return false;\" \
             onmouseup=\"fRechrDocmnPDF('{doc}', '{}')\"><img src=\"images/sauvg.gif\" alt=\"Sauvegarder\"></a>",
            jeton(token, doc)
        )
    } else {
        format!(
            "<a title=\"Sauvegarder ou imprimer le document\" href=\"{SAVE}?doc={doc}\" onmouseup=\"fRechrDocmnPDF()\">\
             <img src=\"images/sauvg.gif\" alt=\"Sauvegarder\"></a>"
        )
    };
    format!(
        "<table><tr><td class=\"menuBoutnCentr\"><a title=\"Imprimer la page\" href=\"javascript:print()\">Imprimer</a></td>\
         <td class=\"menuBoutnCentr fondOrang\">{handler}</td></tr></table>"
    )
}

async fn frameset(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &app) else { return to_login() };
    let doc = field(&q, "doc");
    app.lock().documents_opened += 1;
    if app.p() {
        // The save control in the top document, the document in a frame named `page`.
        return page(&format!(
            "{}<iframe name=\"page\" src=\"{DOCMN}?doc={doc}\" width=\"1000\" height=\"500\"></iframe>",
            save_control(&app, &token, &doc)
        ))
        .into_response();
    }
    Html(format!(
        "<!DOCTYPE html><html><head><base href=\"/Sirf/\"><title>Document</title></head><frameset rows=\"40,*\">\
         <frame name=\"menu\" src=\"{MENU}?doc={doc}\"><frame name=\"page\" src=\"{DOCMN}?doc={doc}\"></frameset></html>"
    ))
    .into_response()
}

async fn menu(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &app) else { return to_login() };
    page(&save_control(&app, &token, &field(&q, "doc"))).into_response()
}

async fn docmn(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(token) = session(&headers, &app) else { return to_login() };
    let doc = field(&q, "doc");
    tokio::time::sleep(app.options.document_delay).await;
    app.lock().shown.insert((token, doc.clone()));
    page(&format!("<p>Document {doc}</p><img src=\"images/docmn.gif\">")).into_response()
}

async fn save(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let doc = field(&q, "doc");
    let token = session(&headers, &app);
    let mut s = app.lock();
    let shown = token.as_ref().is_some_and(|t| s.shown.contains(&(t.clone(), doc.clone())));
    let by_handler = token.as_ref().is_some_and(|t| field(&q, "jeton") == jeton(t, &doc));
    if !shown || (app.p() && !by_handler) {
        s.refused_downloads += 1;
        if app.p() && shown {
            // A plain GET of the href: the site answers a page, not the PDF.
            return page("<p>Utilisez le bouton Sauvegarder pour obtenir le document.</p>").into_response();
        }
        return (StatusCode::FORBIDDEN, page("Session requise")).into_response();
    }
    s.downloads.push(doc.clone());
    drop(s);
    let disposition = format!("attachment; filename=\"{doc}.pdf\"");
    ([(header::CONTENT_TYPE, "application/pdf".to_string()), (header::CONTENT_DISPOSITION, disposition)], app.document_bytes(&doc)).into_response()
}

/// Serves the simulator on 127.0.0.1:`port` (0: a free port) until the runtime ends.
pub async fn start_on(options: SiteOptions, port: u16) -> std::io::Result<RegistrySite> {
    let state = Arc::new(Mutex::new(SiteState::default()));
    let app = App { state: state.clone(), options: options.clone() };
    let r = |p: &str| format!("/Sirf/{p}");
    let router = axum::Router::new()
        .route("/Sirf/", get(home))
        .route(&r(ENTRY_P), get(|| async { Redirect::to(&format!("/Sirf/{LOGIN}")) }))
        .route(&r(LOGIN), get(login_page).post(login))
        .route(
            &r(INDEX),
            get(|State(a): State<App>, h: HeaderMap, Query(q): Query<HashMap<String, String>>| lot_page(a, h, q, INDEX))
                .post(|State(a): State<App>, h: HeaderMap, b: Bytes| lot_search(a, h, b, INDEX)),
        )
        .route(
            &r(PLAN),
            get(|State(a): State<App>, h: HeaderMap, Query(q): Query<HashMap<String, String>>| lot_page(a, h, q, PLAN))
                .post(|State(a): State<App>, h: HeaderMap, b: Bytes| lot_search(a, h, b, PLAN)),
        )
        .route(&r(PLAN_CHOICE), get(plan_choice).post(plan_chosen))
        .route(&r(ACTE), get(acte_page).post(acte_search))
        .route(&r(ACTE_CHOICE), post(acte_chosen))
        .route(&r(CONFIRM), get(confirm_page).post(confirmed))
        .route(&r(FRAMESET), get(frameset))
        .route(&r(MENU), get(menu))
        .route(&r(DOCMN), get(docmn))
        .route(&r(SAVE), get(save))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(RegistrySite { base: format!("http://{addr}/Sirf/"), state, options })
}

/// Serves the simulator on a free port.
pub async fn start(options: SiteOptions) -> RegistrySite {
    start_on(options, 0).await.expect("binding the registry site simulator on 127.0.0.1")
}
