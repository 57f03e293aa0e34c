//! The fetcher REGISTRE_FETCHER selects, built from the typed configuration.

use std::sync::Arc;
use std::time::Duration;

use registre_config::Config;
use registre_fetch::{from_config, InMemoryAccounts, RegistrySettings};

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![("PROD_DATABASE_URL".to_string(), "postgres://u:p@localhost/db".to_string())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap()
}

#[test]
fn each_kind_is_built_from_its_variables() {
    let accounts = Arc::new(InMemoryAccounts::default());
    let c = config(&[("REGISTRE_FETCHER", "directory"), ("REGISTRE_SOURCE_DIR", "/tmp/pdfs")]);
    assert_eq!(from_config(&c.registre, accounts.clone()).unwrap().kind(), "directory");
    let c = config(&[("REGISTRE_FETCHER", "http"), ("REGISTRE_URL_TEMPLATE", "http://m.example/{source}/{document_number}.pdf")]);
    assert_eq!(from_config(&c.registre, accounts.clone()).unwrap().kind(), "http");
    // Building the registry fetcher starts nothing: the browser opens on the first fetch.
    let c = config(&[]);
    assert_eq!(from_config(&c.registre, accounts).unwrap().kind(), "registry");
}

#[test]
fn registry_settings_follow_the_variables() {
    let c = config(&[]);
    let s = RegistrySettings::from_config(&c.registre).unwrap();
    assert_eq!(s.site.base_url.as_str(), "https://www.registrefoncier.gouv.qc.ca/Sirf/");
    assert_eq!(s.chromium_path.to_str(), Some("/usr/bin/chromium"));
    assert_eq!(s.chromedriver_path.to_str(), Some("/usr/bin/chromedriver"));
    assert_eq!(s.idle_timeout, Duration::from_secs(120));
    assert_eq!(s.fetch_timeout, Duration::from_secs(300), "EXTRACTION_TIMEOUT: 5 minutes as in production");
    assert_eq!((s.site.step_timeout(), s.site.document_timeout()), (Duration::from_secs(30), Duration::from_secs(180)));
    assert_eq!(s.default_circonscription, None);

    let site = std::env::temp_dir().join(format!("registre-site-{}.toml", std::process::id()));
    let edited = registre_fetch::registry::site::DEFAULT_SITE_CONFIG.replace("step_timeout_ms = 30000", "step_timeout_ms = 5000");
    std::fs::write(&site, edited).unwrap();
    let c = config(&[
        ("REGISTRE_BASE_URL", "http://127.0.0.1:8080/Sirf"),
        ("REGISTRE_SITE_CONFIG", site.to_str().unwrap()),
        ("CHROMIUM_PATH", "/opt/chromium"),
        ("CHROMEDRIVER_PATH", "/opt/chromedriver"),
        ("REGISTRE_BROWSER_IDLE_MS", "5000"),
    ]);
    let s = RegistrySettings::from_config(&c.registre).unwrap();
    assert_eq!(s.site.base_url.as_str(), "http://127.0.0.1:8080/Sirf/");
    assert_eq!(s.site.step_timeout(), Duration::from_secs(5));
    assert_eq!(s.chromium_path.to_str(), Some("/opt/chromium"));
    assert_eq!(s.idle_timeout, Duration::from_secs(5));

    // REGISTRE_STEP_TIMEOUT_MS / REGISTRE_DOCUMENT_TIMEOUT_MS override the file's values.
    let c = config(&[
        ("REGISTRE_SITE_CONFIG", site.to_str().unwrap()),
        ("REGISTRE_STEP_TIMEOUT_MS", "45000"),
        ("REGISTRE_DOCUMENT_TIMEOUT_MS", "240000"),
        ("REGISTRE_DEFAULT_CIRCONSCRIPTION", " Montréal "),
    ]);
    let s = RegistrySettings::from_config(&c.registre).unwrap();
    assert_eq!((s.site.step_timeout(), s.site.document_timeout()), (Duration::from_secs(45), Duration::from_secs(240)));
    assert_eq!(s.default_circonscription.as_deref(), Some("Montréal"));
    let err = Config::from_vars([("PROD_DATABASE_URL", "postgres://u:p@h/d"), ("REGISTRE_STEP_TIMEOUT_MS", "0")]).unwrap_err();
    assert!(err.to_string().starts_with("REGISTRE_STEP_TIMEOUT_MS=0: "), "{err}");

    let c = config(&[("REGISTRE_SITE_CONFIG", "/nonexistent/site.toml")]);
    let err = RegistrySettings::from_config(&c.registre).unwrap_err().to_string();
    assert!(err.starts_with("REGISTRE_SITE_CONFIG=/nonexistent/site.toml: cannot read it"), "{err}");

    let err = Config::from_vars([("PROD_DATABASE_URL", "postgres://u:p@h/d"), ("REGISTRE_BROWSER_IDLE_MS", "soon")]).unwrap_err();
    assert_eq!(err.to_string(), "REGISTRE_BROWSER_IDLE_MS=soon: expected a whole number");
}
