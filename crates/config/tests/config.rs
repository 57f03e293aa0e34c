//! Configuration as an operator meets it: defaults of the checklist, one clear line per
//! mistake, secrets never shown, and .env.example / docs kept in step with the variables.

use std::time::Duration;

use registre_config::{Backend, Config, ConfigError, EnvName, FetcherKind, LogFormat, Milli, OcrEngineKind, VARIABLES};

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn load_with_db(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("PROD_DATABASE_URL", "postgres://postgres:pw@127.0.0.1:5432/registre")];
    all.extend_from_slice(vars);
    load(&all)
}

fn error_line(vars: &[(&str, &str)]) -> String {
    load_with_db(vars).expect_err("configuration should be refused").to_string()
}

#[test]
fn defaults_are_those_of_the_checklist() {
    let c = load_with_db(&[]).unwrap();
    assert_eq!(c.redis_url.first().expose(), "redis://localhost:6379");
    assert!(!c.redis_url.is_cluster());
    assert_eq!((c.server.max_cpu, c.server.max_ram), (Milli(8000), Milli(16000)));
    assert_eq!((c.server.reserve_cpu_percent, c.server.reserve_ram_percent), (20.0, 20.0));
    assert_eq!((c.server.usable_cpu().to_string(), c.server.usable_ram().to_string()), ("6.4".into(), "12.8".into()));
    assert_eq!(c.server.id, None);
    assert_eq!(c.registre.worker_count, 1);
    assert_eq!(c.registre.fetcher, FetcherKind::Registry);
    assert_eq!(c.registre.extraction_timeout, Duration::from_millis(300_000));
    assert_eq!((c.registre.step_timeout, c.registre.document_timeout, c.registre.default_circonscription.clone()), (None, None, None));
    assert_eq!((c.ocr_pool.pool_size, c.ocr_pool.min_index_workers, c.ocr_pool.min_acte_workers), (2, 1, 1));
    assert_eq!(c.ocr_pool.rebalance_interval, Duration::from_millis(30_000));
    assert!(c.ocr_pool.serve_prod && c.ocr_pool.serve_staging && c.ocr_pool.serve_dev);
    assert_eq!((c.capacity.registre.cpu, c.capacity.registre.ram), (Milli(3000), Milli(1000)));
    assert_eq!((c.capacity.index_ocr.cpu, c.capacity.index_ocr.ram), (Milli(1500), Milli(750)));
    assert_eq!((c.capacity.acte_ocr.cpu, c.capacity.acte_ocr.ram), (Milli(1000), Milli(500)));
    assert_eq!(c.capacity.lease_ttl, Duration::from_secs(30));
    assert_eq!(c.capacity.heartbeat, Duration::from_secs(10));
    assert_eq!(c.ocr_engine.engine, OcrEngineKind::Tesseract);
    assert_eq!(c.ocr_engine.extract_model, "gemini-2.0-flash");
    assert_eq!(c.ocr_engine.boost_model, "gemini-2.5-pro");
    assert_eq!(c.rate_limit.name, "gemini");
    assert_eq!((c.rate_limit.requests_per_window, c.rate_limit.tokens_per_window), (1600, 6_400_000));
    assert_eq!(c.rate_limit.window, Duration::from_secs(60));
    assert_eq!(c.rate_limit.arrival_margin, Duration::from_secs(1));
    assert_eq!(c.storage_url.expose(), "file:///var/lib/registre/storage");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.filter, "info");
}

#[test]
fn redis_cluster_takes_a_node_list_and_requires_server_id() {
    let nodes = "redis://:pw@127.0.0.1:7001, redis://:pw@127.0.0.1:7002,redis://:pw@127.0.0.1:7003";
    let c = load_with_db(&[("REDIS_CLUSTER", "true"), ("REDIS_URL", nodes), ("SERVER_ID", "vps-1")]).unwrap();
    assert!(c.redis_url.is_cluster());
    let ports: Vec<Option<u16>> = c.redis_url.nodes().iter().map(|n| n.url().port()).collect();
    assert_eq!(ports, [Some(7001), Some(7002), Some(7003)]);
    assert!(!format!("{:?} {}", c, c.redis_url).contains(":pw@"), "a node password leaked");

    // Cluster mode without SERVER_ID: one line naming SERVER_ID (the binaries exit 2 with it).
    let line = error_line(&[("REDIS_CLUSTER", "true"), ("REDIS_URL", nodes)]);
    assert!(line.starts_with("SERVER_ID is required when REDIS_CLUSTER=true"), "{line}");
    // A node list without cluster mode is a mistake, not a URL with a strange host.
    let line = error_line(&[("REDIS_URL", "redis://127.0.0.1:7001,redis://127.0.0.1:7002")]);
    assert!(line.contains("REDIS_CLUSTER=true"), "{line}");
    // Every node is checked like REDIS_URL, with its password masked in the line.
    let line = error_line(&[("REDIS_CLUSTER", "yes"), ("SERVER_ID", "a"), ("REDIS_URL", "redis://127.0.0.1:7001,http://:hunter2@x:1")]);
    assert!(line.starts_with("REDIS_URL=http://:***@x:1") && line.contains(": expected a URL starting with redis://"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    let line = error_line(&[("REDIS_CLUSTER", "maybe")]);
    assert_eq!(line, "REDIS_CLUSTER=maybe: expected true or false");
    // One URL with REDIS_CLUSTER=true is a cluster reached through one seed node.
    let c = load_with_db(&[("REDIS_CLUSTER", "true"), ("REDIS_URL", "redis://127.0.0.1:7001"), ("SERVER_ID", "a")]).unwrap();
    assert!(c.redis_url.is_cluster() && c.redis_url.nodes().len() == 1);
}

#[test]
fn gemini_is_the_default_engine_when_a_key_is_set() {
    let c = load_with_db(&[("GEMINI_API_KEY", "AIza-secret")]).unwrap();
    assert_eq!(c.ocr_engine.engine, OcrEngineKind::Gemini);
    let c = load_with_db(&[("GEMINI_API_KEY", "AIza-secret"), ("OCR_ENGINE", "tesseract")]).unwrap();
    assert_eq!(c.ocr_engine.engine, OcrEngineKind::Tesseract);
}

/// The cases of refusals.txt: (variables besides PROD_DATABASE_URL, the one line the configuration
/// is refused with).
fn refusals() -> Vec<(Vec<(String, String)>, String)> {
    let mut cases = Vec::new();
    let mut vars = Vec::new();
    for line in include_str!("refusals.txt").lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        match line.strip_prefix("→ ") {
            Some(refused) => cases.push((std::mem::take(&mut vars), refused.to_string())),
            None => {
                let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("refusals.txt: {line:?} is not NAME=value"));
                vars.push((name.to_string(), value.to_string()));
            }
        }
    }
    assert!(vars.is_empty(), "refusals.txt ends with variables and no refusal line");
    cases
}

#[test]
fn each_mistake_is_refused_with_one_line_naming_the_variable() {
    let cases = refusals();
    assert!(cases.len() >= 20, "{} cases read", cases.len());
    for (vars, line) in &cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(error_line(&vars), *line, "{vars:?}");
    }
}

#[test]
fn the_arrival_margin_may_be_zero_but_not_negative() {
    let c = load_with_db(&[("OCR_RATE_LIMIT_MARGIN_MS", "0")]).expect("0 turns the margin off");
    assert_eq!(c.rate_limit.arrival_margin, Duration::ZERO);
    let c = load_with_db(&[("OCR_RATE_LIMIT_MARGIN_MS", "2500")]).expect("valid");
    assert_eq!(c.rate_limit.arrival_margin, Duration::from_millis(2500));
}

#[test]
fn reserve_of_100_percent_or_more_is_refused() {
    assert!(error_line(&[("SERVER_RESERVE_RAM_PERCENT", "150")]).starts_with("SERVER_RESERVE_RAM_PERCENT=150: expected"));
    assert!(load_with_db(&[("SERVER_RESERVE_CPU_PERCENT", "99.5")]).is_ok());
}

#[test]
fn minimums_that_fill_the_pool_exactly_are_accepted() {
    assert!(load_with_db(&[("OCR_WORKER_POOL_SIZE", "4"), ("OCR_MIN_INDEX_WORKERS", "2"), ("OCR_MIN_ACTE_WORKERS", "2")]).is_ok());
}

#[test]
fn no_environment_is_refused() {
    let err = load(&[]).unwrap_err();
    assert_eq!(err, ConfigError::NoEnvironment);
    assert!(err.to_string().starts_with("no environment configured: set PROD_DATABASE_URL"));
    // Half a REST environment names the missing half.
    let err = load(&[("STAGING_SUPABASE_URL", "https://abc.supabase.co")]).unwrap_err();
    assert_eq!(err.to_string(), "STAGING_SUPABASE_SERVICE_KEY is required when STAGING_SUPABASE_URL is set");
}

#[test]
fn environments_are_in_polling_order_and_legacy_variables_count_as_prod() {
    let c = load(&[
        ("DEV_DATABASE_URL", "postgres://localhost/dev"),
        ("STAGING_SUPABASE_URL", "https://staging.supabase.co"),
        ("STAGING_SUPABASE_SERVICE_KEY", "service-key-staging"),
        ("DATABASE_URL", "postgres://localhost/legacy"),
    ])
    .unwrap();
    let names: Vec<EnvName> = c.environments.iter().map(|e| e.name).collect();
    assert_eq!(names, [EnvName::Prod, EnvName::Staging, EnvName::Dev]);
    assert!(matches!(&c.environments[0].backend, Backend::Database { url } if url.expose() == "postgres://localhost/legacy"));
    assert!(matches!(&c.environments[1].backend, Backend::Supabase { service_key, .. } if service_key.expose() == "service-key-staging"));

    let c = load(&[("SUPABASE_URL", "https://prod.supabase.co"), ("SUPABASE_SERVICE_KEY", "k")]).unwrap();
    assert_eq!(c.environments.len(), 1);
    assert_eq!(c.environments[0].name, EnvName::Prod);
}

#[test]
fn malformed_urls_are_refused() {
    assert_eq!(
        load(&[("PROD_DATABASE_URL", "mysql://root:pw@db/x")]).unwrap_err().to_string(),
        "PROD_DATABASE_URL=mysql://root:***@db/x: expected a URL starting with postgres:// or postgresql://"
    );
    assert!(error_line(&[("STORAGE_URL", "ftp://x")]).starts_with("STORAGE_URL=ftp://x: expected a URL starting with file://"));
    // The URL template may carry a token: its errors name the variable, never the value.
    let c = load_with_db(&[("REGISTRE_FETCHER", "http"), ("REGISTRE_URL_TEMPLATE", "https://u:hunter2@m.example/t0ps3cret/{document_number}?token=q9zq9z")]).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("t0ps3cret") && !shown.contains("hunter2") && !shown.contains("q9zq9z"), "{shown}");
}

#[test]
fn choices_and_dependent_variables_are_checked() {
    assert!(error_line(&[("CAPACITY_LEASE_TTL_MS", "1000"), ("CAPACITY_HEARTBEAT_MS", "1000")]).starts_with("CAPACITY_HEARTBEAT_MS (1000) must be shorter"));
    let c = load_with_db(&[("REGISTRE_FETCHER", "directory"), ("REGISTRE_SOURCE_DIR", "/srv/pdf")]).unwrap();
    assert_eq!(c.registre.source_dir.as_deref(), Some(std::path::Path::new("/srv/pdf")));
}

#[test]
fn empty_values_mean_default() {
    let c = load_with_db(&[("WORKER_COUNT", ""), ("SERVER_MAX_CPU", "  ")]).unwrap();
    assert_eq!(c.registre.worker_count, 1);
    assert_eq!(c.server.max_cpu, Milli(8000));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = load(&[
        ("REDIS_URL", "redis://:redis-pass-123@cache:6379"),
        ("PROD_DATABASE_URL", "postgres://postgres:db-pass-456@db.example:5432/postgres"),
        ("STAGING_SUPABASE_URL", "https://staging.supabase.co"),
        ("STAGING_SUPABASE_SERVICE_KEY", "eyJ-service-key-789"),
        ("GEMINI_API_KEY", "AIza-gemini-key-000"),
    ])
    .unwrap();
    let debug = format!("{c:?}");
    for secret in ["redis-pass-123", "db-pass-456", "eyJ-service-key-789", "AIza-gemini-key-000"] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(debug.contains("postgres:***@db.example"), "the redacted URL still says where it points");
    // The real values stay reachable for the code that must send them.
    assert_eq!(c.ocr_engine.gemini_api_key.as_ref().unwrap().expose(), "AIza-gemini-key-000");
}

#[test]
fn error_lines_redact_secret_values() {
    let line = load(&[("PROD_DATABASE_URL", "postgres://u:topsecret@")]).unwrap_err().to_string();
    assert!(!line.contains("topsecret"), "{line}");
    assert!(line.starts_with("PROD_DATABASE_URL="), "{line}");
}

fn repo_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn env_example_and_configuration_reference_list_every_variable() {
    let example = repo_file(".env.example");
    let reference = repo_file("docs/configuration.md");
    for var in VARIABLES {
        let assigned = example.lines().any(|l| l.trim_start_matches("# ").trim_start().starts_with(&format!("{var}=")));
        assert!(assigned, ".env.example has no line for {var}");
        assert!(reference.contains(&format!("`{var}`")), "docs/configuration.md does not document {var}");
    }
    // And nothing stale: every assignment in .env.example is a variable the code reads.
    for line in example.lines() {
        let line = line.trim_start_matches("# ").trim_start();
        if let Some((name, _)) = line.split_once('=') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                assert!(VARIABLES.contains(&name), ".env.example sets {name}, which nothing reads");
            }
        }
    }
}

#[test]
fn env_example_loads_as_a_valid_configuration() {
    let example = repo_file(".env.example");
    let vars: Vec<(String, String)> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.split(" #").next().unwrap_or("").trim().to_string()))
        .collect();
    let c = Config::from_vars(vars).unwrap_or_else(|e| panic!(".env.example is not a valid configuration: {e}"));
    assert_eq!(c.ocr_pool.pool_size, 2);
}

#[test]
fn monitor_variables_have_their_defaults_and_bad_values_name_the_variable() {
    let base = [("PROD_DATABASE_URL", "postgres://u@db/x".to_string())];
    let c = Config::from_vars(base.clone()).unwrap();
    assert_eq!(c.monitor.interval, std::time::Duration::from_millis(30_000));
    assert_eq!(c.monitor.stuck_after, std::time::Duration::from_millis(600_000));
    assert_eq!(c.monitor.oldest_waiting_alert, std::time::Duration::from_millis(1_800_000));
    assert_eq!(c.monitor.errors_per_minute_alert, 10.0);
    assert!(c.monitor.webhook.is_none());
    for (var, value, expected) in [
        ("MONITOR_INTERVAL_MS", "abc", "MONITOR_INTERVAL_MS=abc: expected a whole number of milliseconds greater than 0"),
        ("MONITOR_STUCK_AFTER_MS", "0", "MONITOR_STUCK_AFTER_MS=0: expected a whole number of milliseconds greater than 0"),
        ("MONITOR_ERRORS_PER_MINUTE_ALERT", "-1", "MONITOR_ERRORS_PER_MINUTE_ALERT=-1: expected a number ≥ 0 (Erreur rows per minute)"),
    ] {
        let mut vars = base.to_vec();
        vars.push((var, value.to_string()));
        let e = Config::from_vars(vars).unwrap_err();
        assert_eq!(e.to_string(), expected);
    }
    // A webhook URL's path is its secret: never in an error or Debug output.
    let mut vars = base.to_vec();
    vars.push(("ALERT_WEBHOOK_URL", "ftp://hooks.example/services/T0/B0/SECRETPART".to_string()));
    let e = Config::from_vars(vars).unwrap_err().to_string();
    assert!(e.starts_with("ALERT_WEBHOOK_URL=ftp://hooks.example/[redacted]: expected"), "{e}");
    assert!(!e.contains("SECRETPART"), "{e}");
    let mut vars = base.to_vec();
    vars.push(("ALERT_WEBHOOK_URL", "https://hooks.example/services/T0/B0/SECRETPART".to_string()));
    let c = Config::from_vars(vars).unwrap();
    assert_eq!(c.monitor.webhook_shown.as_deref(), Some("https://hooks.example/[redacted]"));
    assert!(!format!("{c:?}").contains("SECRETPART"));
}

#[test]
fn api_allowed_hosts_and_caps() {
    let c = load_with_db(&[]).unwrap();
    assert_eq!((c.api.allowed_hosts.len(), c.api.max_streams, c.api.max_concurrent), (0, 64, 64));
    let c = load_with_db(&[
        ("API_ALLOWED_HOSTS", " Registre.Example.com, 10.0.0.5,,::1 ,[fd00::2]"),
        ("API_MAX_STREAMS", "8"),
        ("API_MAX_CONCURRENT", "16"),
    ])
    .unwrap();
    assert_eq!(c.api.allowed_hosts, ["registre.example.com", "10.0.0.5", "[::1]", "[fd00::2]"]);
    assert_eq!((c.api.max_streams, c.api.max_concurrent), (8, 16));
    for bad in ["registre.example.com:443", "http://x", "a b", ".example.com"] {
        let line = error_line(&[("API_ALLOWED_HOSTS", bad)]);
        assert!(line.starts_with("API_ALLOWED_HOSTS="), "{line}");
    }
    assert!(error_line(&[("API_MAX_STREAMS", "0")]).starts_with("API_MAX_STREAMS=0"));
    assert!(error_line(&[("API_MAX_CONCURRENT", "lots")]).starts_with("API_MAX_CONCURRENT=lots"));
}

/// Each binary validates only the sections it reads (one `.env` for every PM2 app): a directory
/// fetcher without its folder stops registre-workers and start-all-workers only; a bad value of a
/// section a binary reads still stops it with the usual line.
#[test]
fn each_binary_validates_only_the_sections_it_reads() {
    use registre_config::Sections;
    let shared = [
        ("PROD_DATABASE_URL", "postgres://postgres:pw@127.0.0.1:5432/registre"),
        ("REGISTRE_FETCHER", "directory"),
        ("OCR_WORKER_POOL_SIZE", "abc"),
        ("API_PORT", "99999"),
        ("MONITOR_INTERVAL_MS", "soon"),
        ("METRICS_ADDR", "nowhere"),
    ];
    let for_binary = |name: &str| {
        Config::from_vars_for(Sections::for_binary(name), shared.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    };
    let missing = "REGISTRE_SOURCE_DIR is required when REGISTRE_FETCHER=directory";
    assert_eq!(for_binary("registre-workers").unwrap_err().to_string(), missing);
    assert_eq!(for_binary("start-all-workers").unwrap_err().to_string(), missing);
    // Each stops only on the section it reads (METRICS_ADDR for the pool and the monitor, API_PORT
    // for the API); registrectl reads none of those.
    assert_eq!(for_binary("ocr-pool").unwrap_err().to_string(), "OCR_WORKER_POOL_SIZE=abc: expected a whole number");
    assert_eq!(for_binary("registre-api").unwrap_err().to_string(), "API_PORT=99999: expected a port from 1 to 65535");
    assert_eq!(
        for_binary("registre-monitor").unwrap_err().to_string(),
        "METRICS_ADDR=nowhere: expected an address and port such as 127.0.0.1:9464"
    );
    let ctl = for_binary("registrectl").unwrap_err().to_string();
    assert_eq!(ctl, "MONITOR_INTERVAL_MS=soon: expected a whole number of milliseconds greater than 0");
    // The unread sections fall back to their defaults.
    let only = |name: &str, keep: &[&str]| {
        let vars = shared.iter().filter(|(k, _)| *k == "PROD_DATABASE_URL" || *k == "REGISTRE_FETCHER" || keep.contains(k));
        Config::from_vars_for(Sections::for_binary(name), vars.map(|(k, v)| (k.to_string(), v.to_string())))
    };
    let pool = only("ocr-pool", &["API_PORT", "MONITOR_INTERVAL_MS"]).expect("ocr-pool ignores the registre, API and monitor sections");
    assert_eq!((pool.api.port, pool.registre.fetcher), (3000, FetcherKind::Registry));
    let api = only("registre-api", &["OCR_WORKER_POOL_SIZE", "MONITOR_INTERVAL_MS", "METRICS_ADDR"]).expect("registre-api");
    assert_eq!((api.ocr_pool.pool_size, api.metrics_addr), (2, None));
    only("registre-monitor", &["OCR_WORKER_POOL_SIZE", "API_PORT"]).expect("registre-monitor");
    only("registrectl", &["OCR_WORKER_POOL_SIZE", "API_PORT", "METRICS_ADDR"]).expect("registrectl");
    // Config::from_vars still validates everything.
    assert!(load(&shared).is_err());
}
