//! The registry fetcher driving real headless Chromium (through chromedriver) against the
//! registry site simulator of registre_testkit::registry_site, in both shapes of the evidence of
//! docs/design.md §9.1: P (the production system's final path: image-map entry, label-only login
//! fields, a slow circonscription reload, actes searched with "Rechercher" and listed on the same
//! page, plan choice with "Continuer", a save control that delivers only when clicked) and S (its
//! first extractor). The simulator is written from §9.1, never from registry-site.toml, so a wrong
//! alternative of the configuration makes these tests fail.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install -y chromium chromium-driver`),
//! or CHROMIUM_PATH / CHROMEDRIVER_PATH. Run with RUST_LOG=info and --nocapture to see every step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use registre_config::Secret;
use registre_fetch::registry::site::{SiteConfig, DEFAULT_SITE_CONFIG};
use registre_fetch::{
    AccountProvider, DocumentRequest, DocumentSource, FetchError, Fetcher, InMemoryAccounts, RegistryFetcher,
    RegistrySettings,
};
use registre_testkit::registry_site::{self, pdf_for, RegistrySite, Shape, SiteOptions, PASSWORD, SAVE, USER};

async fn simulator(shape: Shape) -> RegistrySite {
    registry_site::start(SiteOptions::new(shape)).await
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
    let mut site = site.with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(60)));
    site.diagnostics.dir = diagnostics_dir(test).display().to_string();
    RegistrySettings {
        site,
        chromium_path: std::env::var_os("CHROMIUM_PATH").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into()),
        chromedriver_path: std::env::var_os("CHROMEDRIVER_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/chromedriver".into()),
        idle_timeout: idle,
        fetch_timeout: Duration::from_secs(120),
        default_circonscription: None,
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


/// The index, acte and plan flows every shape must go through.
async fn fetch_every_kind(shape: Shape, test: &str) {
    init_logs();
    let site = simulator(shape).await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&site.base, Duration::from_secs(300), test), accounts.clone()).unwrap();

    // Index: the circonscription reloads the page, the lot typed without spaces, confirmation.
    let doc = fetcher.fetch(&index("4 866 594")).await.unwrap_or_else(|e| panic!("{shape:?} index: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-4866594"));

    // Index with a désignation secondaire (S: the cadastre reloads the page to show it; P: the page
    // fills it without a reload).
    let with_designation = DocumentRequest {
        cadastre: Some("paroisse de st-laurent".into()),
        designation_secondaire: Some("rang 2".into()),
        ..index("1500")
    };
    let doc = fetcher.fetch(&with_designation).await.unwrap_or_else(|e| panic!("{shape:?} index with designation: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-1500"));

    // Actes: one result; then the exact number among a paper-only copy and a similar number.
    let doc = fetcher.fetch(&acte("12345678")).await.unwrap_or_else(|e| panic!("{shape:?} acte: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));
    let doc = fetcher.fetch(&acte("22000000")).await.unwrap_or_else(|e| panic!("{shape:?} acte among similar: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-22000000"));

    // Plan: "est inactif" is not an error, the first row that is not a paper-only copy is taken.
    let doc = fetcher.fetch(&plan("4866594")).await.unwrap_or_else(|e| panic!("{shape:?} plan: {e}"));
    assert_eq!(doc.bytes, pdf_for("plan-4866594-P1"));

    // An unknown lot is refused in the site's words, a final data error.
    let err = fetcher.fetch(&index("9 999 999")).await.unwrap_err();
    assert_eq!(err.to_string(), format!("index search: {}", registry_site::LOT_UNKNOWN));
    assert!(err.is_final() && err.counts_as_attempt(), "{err:?}");

    // No row with the exact acte number: a readable failure listing the numbers, nothing fetched.
    let err = fetcher.fetch(&acte("33000000")).await.unwrap_err();
    let text = err.to_string();
    assert!(err.is_final() && text.contains("33 000 001") && text.contains("33 000 100") && text.contains("no row carries the number 33000000"), "{text}");

    // A row without a circonscription, REGISTRE_DEFAULT_CIRCONSCRIPTION unset: a readable refusal.
    let mut without = acte("12345678");
    without.circonscription_fonciere = None;
    let err = fetcher.fetch(&without).await.unwrap_err();
    assert!(err.is_final() && err.to_string().contains("no circonscription_fonciere (and REGISTRE_DEFAULT_CIRCONSCRIPTION is not set)"), "{err}");

    {
        let s = site.state();
        assert_eq!(s.logins_ok, 1, "one login serves every document of the session");
        assert_eq!(s.downloads, ["index-4866594", "index-1500", "acte-12345678", "acte-22000000", "plan-4866594-P1"]);
        assert_eq!(s.refused_downloads, 0, "every PDF came from the save control's click");
        assert!(!s.user_agents.is_empty() && s.user_agents.iter().all(|ua| !ua.contains("HeadlessChrome")), "{:?}", s.user_agents);
        assert!(s.accept_languages.iter().all(|l| l.starts_with("fr-CA")), "{:?}", s.accept_languages);
    }
    assert_eq!(accounts.success_count(USER), 1);

    // The save control needs the session: without it the simulator refuses.
    let direct = reqwest::get(format!("{}{SAVE}?doc=index-4866594", site.base)).await.unwrap();
    assert_eq!(direct.status(), 403);

    fetcher.shutdown().await;
    assert!(!fetcher.has_session().await);
    assert!(!accounts.in_use(USER), "the account is released with the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_production_shape_p_delivers_an_index_an_acte_and_a_plan() {
    fetch_every_kind(Shape::P, "shape-p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_extractor_shape_s_delivers_an_index_an_acte_and_a_plan() {
    fetch_every_kind(Shape::S, "shape-s").await;
}

/// Production's fallbacks, each recorded in `fetched_as`: the other acte types after
/// "inexistant", the closest other cadastres when none matches well, never another cadastre after
/// the site refused the lot in the one that matched; REGISTRE_DEFAULT_CIRCONSCRIPTION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_fallbacks_are_tried_and_recorded_in_fetched_as() {
    init_logs();
    let site = simulator(Shape::P).await;
    let mut settings = settings(&site.base, Duration::from_secs(300), "fallbacks");
    settings.default_circonscription = Some("Montréal".into());
    let fetcher = RegistryFetcher::new(settings, accounts(&[(USER, PASSWORD)])).unwrap();

    // 55000000 exists only as an "Acte divers": Acte (inexistant) → Acte divers.
    let doc = fetcher.fetch(&acte("55000000")).await.unwrap_or_else(|e| panic!("acte divers: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-55000000"));
    assert_eq!(doc.fetched_as.as_deref(), Some("circonscription_fonciere=Montréal, acte_type=Acte divers"));
    // Unknown under every type: final only after the last, in the site's words.
    let err = fetcher.fetch(&acte("66000000")).await.unwrap_err();
    assert!(err.is_final(), "{err:?}");
    assert_eq!(err.to_string(), format!("acte search: {} (types tried: acte, Acte divers, Radiation)", registry_site::ACTE_UNKNOWN));
    {
        let s = site.state();
        let tried: Vec<&str> = s.acte_searches.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(tried, ["ACTE", "DIVER", "ACTE", "DIVER", "RADIA"]);
    }

    // A cadastre matching no option well enough: the closest other option is tried.
    let loose = DocumentRequest {
        cadastre: Some("St-Laurent Nord Est Sud".into()),
        designation_secondaire: Some("Rang 2".into()),
        ..index("1500")
    };
    let doc = fetcher.fetch(&loose).await.unwrap_or_else(|e| panic!("cadastre fallback: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-1500"));
    assert_eq!(
        doc.fetched_as.as_deref(),
        Some("circonscription_fonciere=Montréal, cadastre=Paroisse de Saint-Laurent, designation_secondaire=Rang 2")
    );
    // The lot refused in the cadastre that matched: no other cadastre is tried.
    let err = fetcher.fetch(&index("9 999 999")).await.unwrap_err();
    assert_eq!(err.to_string(), format!("index search: {}", registry_site::LOT_UNKNOWN));
    assert_eq!(site.state().lot_searches.iter().filter(|(_, lot)| lot == "9999999").count(), 1);

    // A row without a circonscription: REGISTRE_DEFAULT_CIRCONSCRIPTION.
    let mut without = acte("12345678");
    without.circonscription_fonciere = None;
    let doc = fetcher.fetch(&without).await.unwrap_or_else(|e| panic!("default circonscription: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));
    fetcher.shutdown().await;
}

/// P's circonscription reload takes more than 20 s: with the shipped waits (30 s per step) the
/// fetcher waits for it instead of failing. No timing is asserted: the document coming proves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circonscription_reload_slower_than_20_s_is_waited_for() {
    init_logs();
    let site = registry_site::start(SiteOptions { circonscription_reload: Duration::from_secs(21), ..SiteOptions::new(Shape::P) }).await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let mut settings = settings(&site.base, Duration::from_secs(300), "slow-reload");
    settings.site = SiteConfig::embedded().unwrap().with_base_url(site.base.parse().unwrap());
    assert_eq!(settings.site.step_timeout(), Duration::from_secs(30));
    settings.site.diagnostics.dir = diagnostics_dir("slow-reload").display().to_string();
    let fetcher = RegistryFetcher::new(settings, accounts).unwrap();
    let doc = fetcher.fetch(&acte("12345678")).await.unwrap_or_else(|e| panic!("acte after a 21 s reload: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-12345678"));
    fetcher.shutdown().await;
}

/// A search page whose button is none of the configured alternatives fails naming the page and
/// what was looked for: never a success followed by the document timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_without_its_button_fails_naming_the_page_and_the_alternatives() {
    init_logs();
    let site = simulator(Shape::P).await;
    let acte_submit = r#"submit = ["input[value*='Rechercher']", "button-text:Rechercher", "input[type='submit'][value*='Soumettre']", "any submit"]"#;
    assert!(DEFAULT_SITE_CONFIG.contains(acte_submit));
    let broken = DEFAULT_SITE_CONFIG.replace(acte_submit, r#"submit = ["input[value*='Chercher']"]"#);
    let fetcher = RegistryFetcher::new(settings_from(&broken, &site.base, Duration::from_secs(300), "no-button"), accounts(&[(USER, PASSWORD)])).unwrap();
    let err = fetcher.fetch(&acte("12345678")).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_final(), "{err:?}");
    assert!(text.contains("pf_13_01_11_08_reqst.asp") && text.contains("no the acte search button found (looked for `input[value*='Chercher']`)"), "{text}");
    assert_eq!(site.state().documents_opened, 0);
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_and_a_refused_account_rested_for_another() {
    init_logs();
    let site = simulator(Shape::S).await;
    let base = site.base.clone();
    // bob's password is wrong: the site refuses him, the fetcher reports it and logs in as alice.
    let accounts = accounts(&[("bob", "wrong-password"), (USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&base, Duration::from_secs(300), "session"), accounts.clone()).unwrap();

    let doc = fetcher.fetch(&index("4866594")).await.unwrap_or_else(|e| panic!("index: {e}"));
    assert_eq!(doc.bytes, pdf_for("index-4866594"));
    assert_eq!(accounts.failure_count("bob"), 1, "the refusal is counted on bob (failure_count)");
    assert!(!accounts.in_use("bob"), "bob is given back to the provider");
    assert!(accounts.in_use(USER));
    {
        let s = site.state();
        assert_eq!((s.logins_refused, s.logins_ok), (1, 1));
    }

    // The site expires the session at the confirmation page: the fetcher logs in again and the
    // document still comes within the same fetch (no error, so no attempt counted on the row).
    site.state().expire_at_confirmation = true;
    let doc = fetcher.fetch(&acte("22000000")).await.unwrap_or_else(|e| panic!("acte after expiry: {e}"));
    assert_eq!(doc.bytes, pdf_for("acte-22000000"));
    {
        let s = site.state();
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
        let s = site.state();
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
    let site = simulator(Shape::S).await;
    let base = site.base.clone();
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
    let site = simulator(Shape::S).await;
    let base = site.base.clone();
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
    assert_eq!(site.state().logins_ok, 2);

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

/// Every file under `dir`, at any depth.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// A worker that keeps fetching never closes its session, so whatever Chromium stores per page
/// must stay bounded: the soak saw the profile's HTTP cache grow by about 6 files per document
/// (2,836 files after an hour), each document of the registry having its own URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_keeps_its_profile_bounded() {
    init_logs();
    let catalog = std::env::temp_dir().join(format!("registre-fetch-catalog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&catalog);
    std::fs::create_dir_all(catalog.join("acte")).unwrap();
    let numbers: Vec<String> = (1..=24).map(|n| format!("{}", 31_000_000 + n)).collect();
    for number in &numbers {
        std::fs::write(catalog.join("acte").join(format!("{number}.pdf")), pdf_for(&format!("acte-{number}"))).unwrap();
    }
    let site = registry_site::start(SiteOptions { catalog: Some(catalog.clone()), ..SiteOptions::new(Shape::P) }).await;
    let accounts = accounts(&[(USER, PASSWORD)]);
    let fetcher = RegistryFetcher::new(settings(&site.base, Duration::from_secs(300), "bounded"), accounts).unwrap();

    // Warm-up: the profile's fixed files (preferences, databases) are written by the first pages.
    for number in &numbers[..4] {
        fetcher.fetch(&acte(number)).await.unwrap_or_else(|e| panic!("acte {number}: {e}"));
    }
    let profile = fetcher.profile_dir().await.expect("an open session");
    let after_warm_up = files_under(&profile);
    for number in &numbers[4..] {
        let doc = fetcher.fetch(&acte(number)).await.unwrap_or_else(|e| panic!("acte {number}: {e}"));
        assert_eq!(doc.bytes, pdf_for(&format!("acte-{number}")));
    }
    assert_eq!(fetcher.profile_dir().await.as_deref(), Some(profile.as_path()), "one session fetched every document");
    let after = files_under(&profile);
    eprintln!("the profile held {after_warm_up} files after 4 documents and {after} after 24");
    assert_eq!(site.state().logins_ok, 1);
    // 20 more documents: fewer new files than documents (before the fix: about 120 more).
    assert!(after < after_warm_up + 20, "the profile grew from {after_warm_up} to {after} files over 20 documents");
    fetcher.shutdown().await;
    let _ = std::fs::remove_dir_all(&catalog);
}
