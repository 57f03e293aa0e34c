//! Turns raw variables into a typed `Config`, one small parser per kind of value, each error
//! naming the variable, the value (redacted for secrets) and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::raw::RawEnv;
use crate::secret::{redact_url, Secret, SecretUrl};
use crate::*;

fn invalid(variable: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { variable, value: value.to_string(), expected: expected.into() }
}

fn text(value: Option<String>, default: &str) -> String {
    value.map(|v| v.trim().to_string()).unwrap_or_else(|| default.to_string())
}

fn whole(variable: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let v = v.trim();
    if v.starts_with('-') && v[1..].chars().all(|c| c.is_ascii_digit()) && v.len() > 1 {
        return Err(invalid(variable, v, "a whole number ≥ 0, not a negative one"));
    }
    v.parse::<u64>().map_err(|_| invalid(variable, v, "a whole number"))
}

fn whole_u32(variable: &'static str, value: Option<String>, default: u32) -> Result<u32, ConfigError> {
    let n = whole(variable, value.clone(), default as u64)?;
    u32::try_from(n).map_err(|_| invalid(variable, value.as_deref().unwrap_or(""), "a whole number below 4294967296"))
}

/// A whole number of at least 1 that fits a u32.
fn positive_u32(variable: &'static str, value: Option<String>, default: u32) -> Result<u32, ConfigError> {
    let raw = value.clone();
    let n = positive_whole(variable, value, default as u64)?;
    u32::try_from(n).map_err(|_| invalid(variable, raw.as_deref().unwrap_or(""), "a whole number below 4294967296"))
}

fn positive_whole(variable: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let raw = value.clone();
    let n = whole(variable, value, default)?;
    if n == 0 {
        return Err(invalid(variable, raw.as_deref().unwrap_or("0"), "a whole number greater than 0"));
    }
    Ok(n)
}

fn millis(variable: &'static str, value: Option<String>, default_ms: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(positive_whole(variable, value, default_ms)?))
}

fn decimal(variable: &'static str, value: Option<String>, default: f64) -> Result<f64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let v = v.trim();
    let n: f64 = v.parse().map_err(|_| invalid(variable, v, "a number"))?;
    if !n.is_finite() {
        return Err(invalid(variable, v, "a finite number"));
    }
    if n < 0.0 {
        return Err(invalid(variable, v, "a number ≥ 0, not a negative one"));
    }
    Ok(n)
}

/// A positive quantity of vCPU or GB (at most 3 decimals are kept).
fn quantity(variable: &'static str, value: Option<String>, default: f64) -> Result<Milli, ConfigError> {
    let raw = value.clone();
    let n = decimal(variable, value, default)?;
    let m = Milli::from_f64(n).ok_or_else(|| invalid(variable, raw.as_deref().unwrap_or(""), "a number ≥ 0"))?;
    if m == Milli::ZERO {
        return Err(invalid(variable, raw.as_deref().unwrap_or("0"), "a number greater than 0"));
    }
    Ok(m)
}

fn percent(variable: &'static str, value: Option<String>, default: f64) -> Result<f64, ConfigError> {
    let raw = value.clone();
    let n = decimal(variable, value, default)?;
    if n >= 100.0 {
        return Err(invalid(variable, raw.as_deref().unwrap_or(""), "a percentage from 0 to 99 (the share kept for the OS)"));
    }
    Ok(n)
}

fn boolean(variable: &'static str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, v.trim(), "true or false")),
    }
}

/// A URL with one of `schemes`. Secret URLs show their value redacted in the error.
fn url(variable: &'static str, value: &str, schemes: &[&str], secret: bool) -> Result<Url, ConfigError> {
    let shown = |v: &str| match (secret, Url::parse(v)) {
        // Show what the operator typed unless it carries something to hide.
        (true, Ok(u)) if redact_url(&u) == u.as_str() => v.to_string(),
        (true, Ok(u)) => redact_url(&u),
        (true, Err(_)) => "[redacted: not a URL]".to_string(),
        (false, _) => v.to_string(),
    };
    let expected = format!("a URL starting with {}", schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or "));
    let parsed = Url::parse(value.trim()).map_err(|_| invalid(variable, &shown(value), expected.clone()))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(invalid(variable, &shown(value), expected));
    }
    if parsed.scheme() != "file" && parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(variable, &shown(value), format!("{expected}, with a host")));
    }
    Ok(parsed)
}

fn name_like(variable: &'static str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.map(|v| v.trim().to_string()) else { return Ok(None) };
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(invalid(variable, &v, "letters, digits, '-', '_' or '.' only"));
    }
    Ok(Some(v))
}

fn environment(
    name: EnvName,
    db: (&'static str, Option<String>),
    rest: (&'static str, Option<String>),
    key: (&'static str, Option<String>),
) -> Result<Option<Environment>, ConfigError> {
    if let Some(v) = db.1 {
        let parsed = url(db.0, &v, &["postgres", "postgresql"], true)?;
        return Ok(Some(Environment { name, backend: Backend::Database { url: SecretUrl::new(parsed) } }));
    }
    match (rest.1, key.1) {
        (None, None) => Ok(None),
        (Some(u), Some(k)) => {
            let parsed = url(rest.0, &u, &["https", "http"], false)?;
            Ok(Some(Environment { name, backend: Backend::Supabase { url: parsed, service_key: Secret::new(k.trim()) } }))
        }
        (Some(_), None) => Err(ConfigError::Missing { variable: key.0, because: format!("{} is set", rest.0) }),
        (None, Some(_)) => Err(ConfigError::Missing { variable: rest.0, because: format!("{} is set", key.0) }),
    }
}

/// STORAGE_URL and the variables of the backend it selects (docs/storage.md).
fn storage(raw: &RawEnv) -> Result<(SecretUrl, StorageConfig), ConfigError> {
    const VAR: &str = "STORAGE_URL";
    let value = text(raw.storage_url.clone(), "file:///var/lib/registre/storage");
    let parsed = url(VAR, &value, &["file", "s3", "https", "http"], true)?;
    let shown = redact_url(&parsed);
    let timeout = millis("STORAGE_TIMEOUT_MS", raw.storage_timeout_ms.clone(), 60_000)?;
    let backend = match parsed.scheme() {
        "file" => {
            let root = parsed
                .to_file_path()
                .map_err(|_| invalid(VAR, &shown, "file:///absolute/directory"))?;
            StorageBackend::Local { root }
        }
        "s3" => {
            let bucket = parsed.host_str().unwrap_or_default().to_string();
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
            if !valid_bucket {
                return Err(invalid(VAR, &shown, "s3://<bucket>[/<prefix>] with a bucket name of 3 to 63 characters a-z 0-9 . -"));
            }
            let prefix = parsed.path().trim_matches('/').to_string();
            if prefix.split('/').any(|s| s == ".." || s == ".") || prefix.contains("//") {
                return Err(invalid(VAR, &shown, "a key prefix without '.', '..' or empty segments"));
            }
            let (mut region, mut endpoint, mut path_style) = (None, None, None);
            for (k, v) in parsed.query_pairs() {
                match k.as_ref() {
                    "region" => region = Some(v.trim().to_string()),
                    "endpoint" => endpoint = Some(v.trim().to_string()),
                    "path_style" | "force_path_style" => path_style = Some(boolean(VAR, Some(v.into_owned()), true)?),
                    other => {
                        return Err(invalid(VAR, &shown, format!("only region=, endpoint= and path_style= after '?', not {other}=")))
                    }
                }
            }
            let region = region.or_else(|| raw.aws_region.clone().map(|r| r.trim().to_string())).unwrap_or_else(|| "us-east-1".into());
            if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(invalid("AWS_REGION", &region, "a region name such as ca-central-1"));
            }
            let (endpoint, default_path_style) = match endpoint {
                Some(e) => (url(VAR, &e, &["https", "http"], false)?, true),
                None => match raw.s3_endpoint.clone() {
                    Some(e) => (url("S3_ENDPOINT", &e, &["https", "http"], false)?, true),
                    None => {
                        let aws = format!("https://s3.{region}.amazonaws.com");
                        (url("AWS_REGION", &aws, &["https"], false)?, false)
                    }
                },
            };
            let Some(access_key_id) = raw.aws_access_key_id.clone().map(|k| k.trim().to_string()) else {
                return Err(ConfigError::Missing { variable: "AWS_ACCESS_KEY_ID", because: "STORAGE_URL is an s3:// URL".into() });
            };
            let Some(secret) = raw.aws_secret_access_key.clone() else {
                return Err(ConfigError::Missing { variable: "AWS_SECRET_ACCESS_KEY", because: "STORAGE_URL is an s3:// URL".into() });
            };
            StorageBackend::S3(S3Config {
                bucket,
                prefix,
                region,
                endpoint,
                path_style: path_style.unwrap_or(default_path_style),
                access_key_id,
                secret_access_key: Secret::new(secret.trim()),
                session_token: raw.aws_session_token.clone().map(|t| Secret::new(t.trim())),
            })
        }
        _ => {
            // A Supabase project URL; `/storage/v1` at its end is accepted and dropped.
            let mut base = parsed.clone();
            let path = base.path().trim_end_matches('/').trim_end_matches("/storage/v1").to_string();
            base.set_path(&path);
            base.set_query(None);
            let key = raw
                .storage_service_key
                .clone()
                .or_else(|| raw.prod_supabase_service_key.clone())
                .or_else(|| raw.supabase_service_key.clone());
            let Some(key) = key else {
                return Err(ConfigError::Missing {
                    variable: "STORAGE_SERVICE_KEY",
                    because: "STORAGE_URL is a Supabase URL and neither PROD_SUPABASE_SERVICE_KEY nor SUPABASE_SERVICE_KEY is set".into(),
                });
            };
            StorageBackend::Supabase { url: base, service_key: Secret::new(key.trim()) }
        }
    };
    Ok((SecretUrl::new(parsed), StorageConfig { backend, timeout }))
}

/// A duration in ms that the queue's SQL functions take as an `integer` (at most 2147483647).
fn sql_millis(variable: &'static str, value: Option<String>, default_ms: u64) -> Result<Duration, ConfigError> {
    let raw = value.clone();
    let d = millis(variable, value, default_ms)?;
    if d.as_millis() > i32::MAX as u128 {
        return Err(invalid(variable, raw.as_deref().unwrap_or(""), "a number of milliseconds up to 2147483647"));
    }
    Ok(d)
}

/// QUEUE_* (docs/queue.md): leases, polling and retry bounds of the extraction queue.
#[allow(clippy::too_many_arguments)]
fn queue(
    lease_ttl_ms: Option<String>,
    heartbeat_ms: Option<String>,
    poll_interval_ms: Option<String>,
    backoff_base_ms: Option<String>,
    backoff_max_ms: Option<String>,
    max_attempts: Option<String>,
    env_retry_max_ms: Option<String>,
    call_timeout_ms: Option<String>,
    pg_pool_size: Option<String>,
    migrate_lock_timeout_ms: Option<String>,
    users: u32,
) -> Result<QueueConfig, ConfigError> {
    let lease_ttl = sql_millis("QUEUE_LEASE_TTL_MS", lease_ttl_ms, 60_000)?;
    let heartbeat_default = (lease_ttl.as_millis() as u64 / 3).max(1);
    let heartbeat = millis("QUEUE_HEARTBEAT_MS", heartbeat_ms, heartbeat_default)?;
    if heartbeat >= lease_ttl {
        return Err(ConfigError::Inconsistent(format!(
            "QUEUE_HEARTBEAT_MS ({}) must be shorter than QUEUE_LEASE_TTL_MS ({}), or rows are reaped between heartbeats",
            heartbeat.as_millis(),
            lease_ttl.as_millis()
        )));
    }
    let backoff_base = sql_millis("QUEUE_BACKOFF_BASE_MS", backoff_base_ms, 30_000)?;
    let backoff_max = sql_millis("QUEUE_BACKOFF_MAX_MS", backoff_max_ms, 900_000)?;
    if backoff_base > backoff_max {
        return Err(ConfigError::Inconsistent(format!(
            "QUEUE_BACKOFF_BASE_MS ({}) exceeds QUEUE_BACKOFF_MAX_MS ({})",
            backoff_base.as_millis(),
            backoff_max.as_millis()
        )));
    }
    let attempts_raw = max_attempts.clone();
    let max_attempts = positive_whole("QUEUE_MAX_ATTEMPTS", max_attempts, 3)?;
    let max_attempts = u32::try_from(max_attempts)
        .ok()
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or_else(|| invalid("QUEUE_MAX_ATTEMPTS", attempts_raw.as_deref().unwrap_or(""), "a whole number up to 2147483647"))?;
    Ok(QueueConfig {
        lease_ttl,
        heartbeat,
        poll_interval: millis("QUEUE_POLL_INTERVAL_MS", poll_interval_ms, 2_000)?,
        backoff_base,
        backoff_max,
        max_attempts,
        env_retry_max: millis("QUEUE_ENV_RETRY_MAX_MS", env_retry_max_ms, 60_000)?,
        call_timeout: millis("QUEUE_CALL_TIMEOUT_MS", call_timeout_ms, 10_000)?,
        pg_pool_size: positive_u32("QUEUE_PG_POOL_SIZE", pg_pool_size, QueueConfig::default_pg_pool_size(users))?,
        migrate_lock_timeout: millis("QUEUE_MIGRATE_LOCK_TIMEOUT_MS", migrate_lock_timeout_ms, 2_000)?,
    })
}

/// A section the binary uses is validated (its error stops the start, exit 2); a section it does
/// not use falls back to its defaults when its variables are wrong, so one shared `.env` for every
/// app (the checklist's way) cannot stop an app over a section it never reads.
fn section<T>(
    used: bool,
    raw: &mut RawEnv,
    parse: impl Fn(&mut RawEnv) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let parsed = parse(raw);
    if used {
        return parsed;
    }
    parsed.or_else(|_| parse(&mut RawEnv::default()))
}

pub(crate) fn build(mut raw: RawEnv, uses: Sections) -> Result<Config, ConfigError> {
    // One part at a time, in the order their errors are reported; each takes its variables out of `raw`.
    let (storage_url, storage) = section(uses.storage, &mut raw, |raw| storage(raw))?;
    let redis_url = redis(raw.redis_url.take(), raw.redis_cluster.take(), raw.server_id.as_deref())?;
    let server = section(uses.server, &mut raw, server)?;
    let capacity = section(uses.capacity, &mut raw, capacity)?;
    let registre = section(uses.registre, &mut raw, registre)?;
    let ocr_pool = section(uses.ocr_pool, &mut raw, ocr_pool)?;
    let ocr_engine = section(uses.ocr_engine, &mut raw, ocr_engine)?;
    let rate_limit = section(uses.rate_limit, &mut raw, rate_limit)?;
    let environments = environments(&mut raw)?;
    let log = log(&mut raw)?;
    let queue = queue(
        raw.queue_lease_ttl_ms.take(),
        raw.queue_heartbeat_ms.take(),
        raw.queue_poll_interval_ms.take(),
        raw.queue_backoff_base_ms.take(),
        raw.queue_backoff_max_ms.take(),
        raw.queue_max_attempts.take(),
        raw.queue_env_retry_max_ms.take(),
        raw.queue_call_timeout_ms.take(),
        raw.queue_pg_pool_size.take(),
        raw.queue_migrate_lock_timeout_ms.take(),
        registre.worker_count.saturating_add(ocr_pool.pool_size),
    )?;

    let api = section(uses.api, &mut raw, |raw| {
        let mut api = api(raw.api_host.take(), raw.api_port.take(), raw.api_token.take())?;
        api.allowed_hosts = allowed_hosts(raw.api_allowed_hosts.take())?;
        api.max_streams = positive_u32("API_MAX_STREAMS", raw.api_max_streams.take(), 64)?;
        api.max_concurrent = positive_u32("API_MAX_CONCURRENT", raw.api_max_concurrent.take(), 64)?;
        Ok(api)
    })?;
    let metrics_addr = section(uses.metrics, &mut raw, |raw| metrics_addr(raw.metrics_addr.take()))?;
    let monitor = section(uses.monitor, &mut raw, |raw| {
        crate::monitor::parse(
            raw.monitor_interval_ms.take(),
            raw.monitor_stuck_after_ms.take(),
            raw.monitor_oldest_waiting_alert_ms.take(),
            raw.monitor_errors_per_minute_alert.take(),
            raw.alert_webhook_url.take(),
            raw.monitor_resolve_after_rounds.take(),
        )
    })?;

    Ok(Config {
        redis_url,
        server,
        capacity,
        registre,
        ocr_pool,
        ocr_engine,
        rate_limit,
        environments,
        queue,
        storage_url,
        storage,
        log,
        api,
        metrics_addr,
        monitor,
    })
}

/// SERVER_*: the machine budget the workers of this server share.
fn server(raw: &mut RawEnv) -> Result<ServerConfig, ConfigError> {
    Ok(ServerConfig {
        id: name_like("SERVER_ID", raw.server_id.take())?,
        max_cpu: quantity("SERVER_MAX_CPU", raw.server_max_cpu.take(), 8.0)?,
        max_ram: quantity("SERVER_MAX_RAM", raw.server_max_ram.take(), 16.0)?,
        reserve_cpu_percent: percent("SERVER_RESERVE_CPU_PERCENT", raw.server_reserve_cpu_percent.take(), 20.0)?,
        reserve_ram_percent: percent("SERVER_RESERVE_RAM_PERCENT", raw.server_reserve_ram_percent.take(), 20.0)?,
    })
}

/// What each worker type holds and how its lease is kept (CAPACITY_*, *_WORKER_CPU / _RAM).
fn capacity(raw: &mut RawEnv) -> Result<CapacityConfig, ConfigError> {
    let lease_ttl = millis("CAPACITY_LEASE_TTL_MS", raw.capacity_lease_ttl_ms.take(), 30_000)?;
    let heartbeat_default = (lease_ttl.as_millis() as u64 / 3).max(1);
    let heartbeat = millis("CAPACITY_HEARTBEAT_MS", raw.capacity_heartbeat_ms.take(), heartbeat_default)?;
    if heartbeat >= lease_ttl {
        return Err(ConfigError::Inconsistent(format!(
            "CAPACITY_HEARTBEAT_MS ({}) must be shorter than CAPACITY_LEASE_TTL_MS ({}), or leases expire between heartbeats",
            heartbeat.as_millis(),
            lease_ttl.as_millis()
        )));
    }
    Ok(CapacityConfig {
        registre: WorkerCost {
            cpu: quantity("REGISTRE_WORKER_CPU", raw.registre_worker_cpu.take(), 3.0)?,
            ram: quantity("REGISTRE_WORKER_RAM", raw.registre_worker_ram.take(), 1.0)?,
        },
        index_ocr: WorkerCost {
            cpu: quantity("INDEX_OCR_WORKER_CPU", raw.index_ocr_worker_cpu.take(), 1.5)?,
            ram: quantity("INDEX_OCR_WORKER_RAM", raw.index_ocr_worker_ram.take(), 0.75)?,
        },
        acte_ocr: WorkerCost {
            cpu: quantity("ACTE_OCR_WORKER_CPU", raw.acte_ocr_worker_cpu.take(), 1.0)?,
            ram: quantity("ACTE_OCR_WORKER_RAM", raw.acte_ocr_worker_ram.take(), 0.5)?,
        },
        lease_ttl,
        heartbeat,
        retry_max: millis("CAPACITY_RETRY_MAX_MS", raw.capacity_retry_max_ms.take(), 30_000)?,
    })
}

/// The registre workers: count, fetcher and its source, the browser, the bounds.
fn registre(raw: &mut RawEnv) -> Result<RegistreConfig, ConfigError> {
    let fetcher = match text(raw.registre_fetcher.take(), "registry").to_ascii_lowercase().as_str() {
        "registry" => FetcherKind::Registry,
        "http" => FetcherKind::Http,
        "directory" => FetcherKind::Directory,
        other => return Err(invalid("REGISTRE_FETCHER", other, "one of registry, http, directory")),
    };
    let source_dir = raw.registre_source_dir.take().map(|d| PathBuf::from(d.trim()));
    if fetcher == FetcherKind::Directory && source_dir.is_none() {
        return Err(ConfigError::Missing { variable: "REGISTRE_SOURCE_DIR", because: "REGISTRE_FETCHER=directory".into() });
    }
    let url_template = raw.registre_url_template.take().map(|t| t.trim().to_string());
    if let Some(t) = &url_template {
        // The template may hold credentials or a token: errors name the variable, never its value.
        let probe = t.replace("{source}", "index").replace("{document_number}", "1");
        url("REGISTRE_URL_TEMPLATE", &probe, &["http", "https"], false)
            .map_err(|_| invalid("REGISTRE_URL_TEMPLATE", "[redacted]", "an http(s) URL with {source} and {document_number} holes"))?;
        if !t.contains("{document_number}") {
            return Err(invalid("REGISTRE_URL_TEMPLATE", "[redacted]", "a URL containing the {document_number} hole"));
        }
    } else if fetcher == FetcherKind::Http {
        return Err(ConfigError::Missing { variable: "REGISTRE_URL_TEMPLATE", because: "REGISTRE_FETCHER=http".into() });
    }
    Ok(RegistreConfig {
        worker_count: whole_u32("WORKER_COUNT", raw.worker_count.take(), 1)?,
        worker_id: name_like("WORKER_ID", raw.worker_id.take())?,
        fetcher,
        source_dir,
        url_template: url_template.map(Secret::new),
        extraction_timeout: millis("EXTRACTION_TIMEOUT", raw.extraction_timeout.take(), 300_000)?,
        base_url: raw.registre_base_url.take().map(|u| url("REGISTRE_BASE_URL", &u, &["https", "http"], false)).transpose()?,
        site_config: raw.registre_site_config.take().map(|p| PathBuf::from(p.trim())),
        chromium_path: PathBuf::from(text(raw.chromium_path.take(), "/usr/bin/chromium")),
        chromedriver_path: PathBuf::from(text(raw.chromedriver_path.take(), "/usr/bin/chromedriver")),
        browser_idle: millis("REGISTRE_BROWSER_IDLE_MS", raw.registre_browser_idle_ms.take(), 120_000)?,
        step_timeout: raw
            .registre_step_timeout_ms
            .take()
            .map(|v| millis("REGISTRE_STEP_TIMEOUT_MS", Some(v), 30_000))
            .transpose()?,
        document_timeout: raw
            .registre_document_timeout_ms
            .take()
            .map(|v| millis("REGISTRE_DOCUMENT_TIMEOUT_MS", Some(v), 180_000))
            .transpose()?,
        default_circonscription: raw
            .registre_default_circonscription
            .take()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
        status_interval: millis("REGISTRE_STATUS_INTERVAL_MS", raw.registre_status_interval_ms.take(), 60_000)?,
        shutdown_grace: millis("REGISTRE_SHUTDOWN_GRACE_MS", raw.registre_shutdown_grace_ms.take(), 20_000)?,
    })
}

/// The OCR pool: size, minimum per type, the environments it serves.
fn ocr_pool(raw: &mut RawEnv) -> Result<OcrPoolConfig, ConfigError> {
    let ocr_pool = OcrPoolConfig {
        pool_size: whole_u32("OCR_WORKER_POOL_SIZE", raw.ocr_worker_pool_size.take(), 2)?,
        min_index_workers: whole_u32("OCR_MIN_INDEX_WORKERS", raw.ocr_min_index_workers.take(), 1)?,
        min_acte_workers: whole_u32("OCR_MIN_ACTE_WORKERS", raw.ocr_min_acte_workers.take(), 1)?,
        rebalance_interval: millis("OCR_REBALANCE_INTERVAL_MS", raw.ocr_rebalance_interval_ms.take(), 30_000)?,
        status_interval: millis("OCR_STATUS_INTERVAL_MS", raw.ocr_status_interval_ms.take(), 60_000)?,
        shutdown_grace: millis("OCR_SHUTDOWN_GRACE_MS", raw.ocr_shutdown_grace_ms.take(), 20_000)?,
        serve_prod: boolean("OCR_PROD", raw.ocr_prod.take(), true)?,
        serve_staging: boolean("OCR_STAGING", raw.ocr_staging.take(), true)?,
        serve_dev: boolean("OCR_DEV", raw.ocr_dev.take(), true)?,
    };
    let mins = ocr_pool.min_index_workers as u64 + ocr_pool.min_acte_workers as u64;
    if mins > ocr_pool.pool_size as u64 {
        return Err(ConfigError::Inconsistent(format!(
            "OCR_MIN_INDEX_WORKERS + OCR_MIN_ACTE_WORKERS ({mins}) exceeds OCR_WORKER_POOL_SIZE ({})",
            ocr_pool.pool_size
        )));
    }
    Ok(ocr_pool)
}

/// The OCR engine (tesseract unless a Gemini key is set) and its knobs.
fn ocr_engine(raw: &mut RawEnv) -> Result<OcrEngineConfig, ConfigError> {
    let gemini_api_key = raw.gemini_api_key.take().map(|k| Secret::new(k.trim()));
    let engine = match raw.ocr_engine.take().map(|e| e.trim().to_ascii_lowercase()) {
        None if gemini_api_key.is_some() => OcrEngineKind::Gemini,
        None => OcrEngineKind::Tesseract,
        Some(e) if e == "tesseract" => OcrEngineKind::Tesseract,
        Some(e) if e == "gemini" => OcrEngineKind::Gemini,
        Some(other) => return Err(invalid("OCR_ENGINE", &other, "tesseract or gemini")),
    };
    if engine == OcrEngineKind::Gemini && gemini_api_key.is_none() {
        return Err(ConfigError::Missing { variable: "GEMINI_API_KEY", because: "OCR_ENGINE=gemini".into() });
    }
    let base = text(raw.gemini_api_base_url.take(), "https://generativelanguage.googleapis.com/v1beta");
    Ok(OcrEngineConfig {
        engine,
        gemini_api_key,
        gemini_api_base_url: url("GEMINI_API_BASE_URL", &base, &["https", "http"], false)?,
        extract_model: text(raw.ocr_extract_model_gemini.take(), "gemini-2.0-flash"),
        boost_model: text(raw.ocr_boost_model_gemini.take(), "gemini-2.5-pro"),
        gemini_temperature: {
            let t = decimal("OCR_GEMINI_TEMPERATURE", raw.ocr_gemini_temperature.clone(), 0.1)?;
            if t > 2.0 {
                return Err(invalid("OCR_GEMINI_TEMPERATURE", raw.ocr_gemini_temperature.as_deref().unwrap_or("").trim(), "a number from 0 to 2"));
            }
            t
        },
        tesseract_dpi: {
            let dpi = whole_u32("OCR_TESSERACT_DPI", raw.ocr_tesseract_dpi.clone(), 300)?;
            if !(72..=1200).contains(&dpi) {
                return Err(invalid("OCR_TESSERACT_DPI", raw.ocr_tesseract_dpi.as_deref().unwrap_or("").trim(), "a resolution from 72 to 1200 (dots per inch)"));
            }
            dpi
        },
        tesseract_lang: {
            let lang = text(raw.ocr_tesseract_lang.take(), "fra");
            if lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '+') {
                return Err(invalid("OCR_TESSERACT_LANG", &lang, "tesseract language codes such as fra or fra+eng"));
            }
            lang
        },
    })
}

/// The shared Gemini rate limit.
fn rate_limit(raw: &mut RawEnv) -> Result<RateLimitConfig, ConfigError> {
    Ok(RateLimitConfig {
        name: name_like("OCR_RATE_LIMIT_NAME", raw.ocr_rate_limit_name.take())?.unwrap_or_else(|| "gemini".into()),
        requests_per_window: positive_whole("OCR_RATE_LIMIT_RPM", raw.ocr_rate_limit_rpm.take(), 1600)?,
        tokens_per_window: positive_whole("OCR_RATE_LIMIT_TPM", raw.ocr_rate_limit_tpm.take(), 6_400_000)?,
        window: millis("OCR_RATE_LIMIT_WINDOW_MS", raw.ocr_rate_limit_window_ms.take(), 60_000)?,
        arrival_margin: Duration::from_millis(whole("OCR_RATE_LIMIT_MARGIN_MS", raw.ocr_rate_limit_margin_ms.take(), 1_000)?),
    })
}

/// The queue databases: prod (with the legacy single-database variables), staging, dev; at least one.
fn environments(raw: &mut RawEnv) -> Result<Vec<Environment>, ConfigError> {
    // Legacy single-database variables count as prod when no PROD_ variable is set.
    let prod_db = raw.prod_database_url.take().or(raw.database_url.take());
    let prod_db_name = "PROD_DATABASE_URL";
    let (prod_rest_name, prod_rest) = match raw.prod_supabase_url.take() {
        Some(v) => ("PROD_SUPABASE_URL", Some(v)),
        None => ("SUPABASE_URL", raw.supabase_url.take()),
    };
    let (prod_key_name, prod_key) = match raw.prod_supabase_service_key.take() {
        Some(v) => ("PROD_SUPABASE_SERVICE_KEY", Some(v)),
        None => ("SUPABASE_SERVICE_KEY", raw.supabase_service_key.take()),
    };
    let environments: Vec<Environment> = [
        environment(EnvName::Prod, (prod_db_name, prod_db), (prod_rest_name, prod_rest), (prod_key_name, prod_key))?,
        environment(
            EnvName::Staging,
            ("STAGING_DATABASE_URL", raw.staging_database_url.take()),
            ("STAGING_SUPABASE_URL", raw.staging_supabase_url.take()),
            ("STAGING_SUPABASE_SERVICE_KEY", raw.staging_supabase_service_key.take()),
        )?,
        environment(
            EnvName::Dev,
            ("DEV_DATABASE_URL", raw.dev_database_url.take()),
            ("DEV_SUPABASE_URL", raw.dev_supabase_url.take()),
            ("DEV_SUPABASE_SERVICE_KEY", raw.dev_supabase_service_key.take()),
        )?,
    ]
    .into_iter()
    .flatten()
    .collect();
    if environments.is_empty() {
        return Err(ConfigError::NoEnvironment);
    }
    Ok(environments)
}

/// LOG_FORMAT and RUST_LOG.
fn log(raw: &mut RawEnv) -> Result<LogConfig, ConfigError> {
    let format = match text(raw.log_format.take(), "text").to_ascii_lowercase().as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => return Err(invalid("LOG_FORMAT", other, "text or json")),
    };
    Ok(LogConfig { format, filter: text(raw.rust_log.take(), "info") })
}

/// METRICS_ADDR: where /metrics, /health and /ready are served, if anywhere.
fn metrics_addr(value: Option<String>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    value
        .map(|v| {
            let v = v.trim().to_string();
            v.parse::<std::net::SocketAddr>()
                .map_err(|_| invalid("METRICS_ADDR", &v, "an address and port such as 127.0.0.1:9464"))
        })
        .transpose()
}

/// API_HOST must be an IP address or a host name; API_PORT a port from 1 to 65535; API_TOKEN, when
/// set, at least 16 characters (a short token is guessable) and never shown.
fn api(host: Option<String>, port: Option<String>, token: Option<String>) -> Result<ApiConfig, ConfigError> {
    let host = text(host, "127.0.0.1");
    let host_ok = host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !host_ok {
        return Err(invalid("API_HOST", &host, "an IP address or a host name such as 127.0.0.1 or 0.0.0.0"));
    }
    let raw_port = port.clone();
    let port = whole("API_PORT", port, 3000)?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("API_PORT", raw_port.as_deref().unwrap_or("").trim(), "a port from 1 to 65535"))?;
    let token = match token.map(|t| t.trim().to_string()) {
        None => None,
        Some(t) if t.chars().count() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(invalid("API_TOKEN", "[redacted]", "at least 16 characters without spaces (e.g. openssl rand -hex 32)"));
        }
        Some(t) => Some(Secret::new(t)),
    };
    Ok(ApiConfig { host, port, token, allowed_hosts: Vec::new(), max_streams: 64, max_concurrent: 64 })
}

/// API_ALLOWED_HOSTS: comma-separated host names or IP addresses, without port (the Host header's
/// port is ignored when it is checked). IPv6 addresses are kept in brackets, as a Host header
/// writes them.
fn allowed_hosts(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let mut hosts = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bare = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')).unwrap_or(entry);
        let host = if let Ok(v6) = bare.parse::<std::net::Ipv6Addr>() {
            format!("[{v6}]")
        } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && !entry.starts_with('.') {
            entry.to_ascii_lowercase()
        } else {
            return Err(invalid(
                "API_ALLOWED_HOSTS",
                entry,
                "comma-separated host names or IP addresses without port, such as registre.example.com,10.0.0.5",
            ));
        };
        hosts.push(host);
    }
    Ok(hosts)
}

/// REDIS_URL and REDIS_CLUSTER (docs/design.md §13). In cluster mode REDIS_URL lists the seed nodes,
/// comma-separated, and SERVER_ID is required: without it the capacity and pool keys
/// (`server:cpu:allocated`, `server:workers`, ...) carry no hash tag and would land in different
/// slots, which the one-slot atomic scripts cannot work on.
fn redis(value: Option<String>, cluster: Option<String>, server_id: Option<&str>) -> Result<RedisTarget, ConfigError> {
    const VAR: &str = "REDIS_URL";
    let cluster = boolean("REDIS_CLUSTER", cluster, false)?;
    let v = text(value, "redis://localhost:6379");
    let schemes = ["redis", "rediss"];
    if !cluster {
        if v.contains(",redis://") || v.contains(",rediss://") {
            return Err(ConfigError::Inconsistent(format!(
                "REDIS_URL lists {} nodes: a list of Redis Cluster nodes needs REDIS_CLUSTER=true",
                v.split(',').count()
            )));
        }
        return Ok(RedisTarget::single(SecretUrl::new(url(VAR, &v, &schemes, true)?)));
    }
    if server_id.is_none_or(|id| id.trim().is_empty()) {
        return Err(ConfigError::Missing {
            variable: "SERVER_ID",
            because: "REDIS_CLUSTER=true (each server's capacity and pool keys must share one hash slot)".into(),
        });
    }
    let nodes = v
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| url(VAR, n, &schemes, true).map(SecretUrl::new))
        .collect::<Result<Vec<_>, _>>()?;
    RedisTarget::cluster(nodes).ok_or_else(|| invalid(VAR, &v, "one or more comma-separated redis:// URLs of cluster nodes"))
}
