//! Configuration of every registre-extractor binary: read once from the environment (`.env`
//! loaded if present), typed, validated, with secrets redacted in Debug output.
//!
//! Bad input is refused with one line naming the variable, its value and what was expected
//! (`OCR_WORKER_POOL_SIZE=abc: expected a whole number`); binaries print it and exit with 2
//! through [`load_or_exit`]. Names and defaults are the contract of docs/design.md §3.

mod monitor;
mod parse;
mod raw;
mod redis;
pub mod secret;
pub mod units;

use std::path::PathBuf;
use std::time::Duration;

pub use monitor::MonitorConfig;
pub use raw::VARIABLES;
pub use redis::RedisTarget;
pub use secret::{Secret, SecretUrl};
pub use units::Milli;
use url::Url;

/// Exit code of a binary refused for bad configuration.
pub const EXIT_BAD_CONFIG: i32 = 2;

/// Why the configuration was refused. Display is the one line shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable's value could not be used.
    #[error("{variable}={value}: expected {expected}")]
    Invalid {
        variable: &'static str,
        /// Already redacted when the variable holds a secret.
        value: String,
        expected: String,
    },
    /// A variable another one depends on is missing.
    #[error("{variable} is required when {because}")]
    Missing { variable: &'static str, because: String },
    /// Variables that are each valid but contradict one another.
    #[error("{0}")]
    Inconsistent(String),
    #[error(
        "no environment configured: set PROD_DATABASE_URL (or PROD_SUPABASE_URL and \
         PROD_SUPABASE_SERVICE_KEY), the STAGING_ or DEV_ equivalents, or the legacy DATABASE_URL / SUPABASE_URL"
    )]
    NoEnvironment,
    #[error(".env could not be read: {0}")]
    DotEnv(String),
}

/// The whole configuration. Every field is typed; nothing is re-parsed downstream.
#[derive(Debug, Clone)]
pub struct Config {
    /// REDIS_URL (with REDIS_CLUSTER=true: a comma-separated list of cluster nodes).
    pub redis_url: RedisTarget,
    pub server: ServerConfig,
    pub capacity: CapacityConfig,
    pub registre: RegistreConfig,
    pub ocr_pool: OcrPoolConfig,
    pub ocr_engine: OcrEngineConfig,
    pub rate_limit: RateLimitConfig,
    /// In polling order: prod, staging, dev.
    pub environments: Vec<Environment>,
    /// How workers use the extraction queue of every environment (docs/queue.md).
    pub queue: QueueConfig,
    pub storage_url: SecretUrl,
    /// The backend STORAGE_URL selects, with its credentials (docs/design.md §8).
    pub storage: StorageConfig,
    pub log: LogConfig,
    /// registre-api: where it listens and the token of its data-changing routes (docs/design.md §12).
    pub api: ApiConfig,
    /// METRICS_ADDR: where a worker binary serves /metrics, /health, /ready (None: not served).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// registre-monitor: interval, stuck threshold, alert thresholds and webhook (docs/design.md §12).
    pub monitor: MonitorConfig,
}

/// registre-api (docs/design.md §12).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// API_HOST: the address it binds (127.0.0.1 by default: put a reverse proxy in front).
    pub host: String,
    /// API_PORT
    pub port: u16,
    /// API_TOKEN: bearer token of every `/api/*` route, reads included; None → those routes answer 403.
    pub token: Option<Secret>,
    /// API_ALLOWED_HOSTS: Host header names accepted besides localhost, 127.0.0.1, [::1] and
    /// API_HOST (lower-case, IPv6 addresses in brackets, no port). Any other Host gets 403.
    pub allowed_hosts: Vec<String>,
    /// API_MAX_STREAMS: open `/api/stream` clients at most (over it: 503).
    pub max_streams: u32,
    /// API_MAX_CONCURRENT: requests handled at once at most (streams counted by API_MAX_STREAMS).
    pub max_concurrent: u32,
}

/// The server whose CPU/RAM budget the workers of this process share.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// SERVER_ID: namespaces this server's Redis keys so several servers share one Redis.
    pub id: Option<String>,
    pub max_cpu: Milli,
    pub max_ram: Milli,
    pub reserve_cpu_percent: f64,
    pub reserve_ram_percent: f64,
}

impl ServerConfig {
    /// max × (1 − reserve/100), in milli-units: 6.4 vCPU = 6400 with the defaults.
    pub fn usable_cpu(&self) -> Milli {
        self.max_cpu.scaled(1.0 - self.reserve_cpu_percent / 100.0)
    }
    pub fn usable_ram(&self) -> Milli {
        self.max_ram.scaled(1.0 - self.reserve_ram_percent / 100.0)
    }
}

/// What one worker of a type holds while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCost {
    pub cpu: Milli,
    pub ram: Milli,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapacityConfig {
    pub registre: WorkerCost,
    pub index_ocr: WorkerCost,
    pub acte_ocr: WorkerCost,
    /// A lease not renewed within this long is dropped and its capacity returns.
    pub lease_ttl: Duration,
    /// How often a holder renews its lease (default: a third of the TTL).
    pub heartbeat: Duration,
    /// Longest wait between two attempts of a worker waiting for capacity.
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetcherKind {
    /// The Registre foncier website through a browser.
    Registry,
    /// A URL template with `{source}` and `{document_number}` holes.
    Http,
    /// `{REGISTRE_SOURCE_DIR}/{document_source}/{document_number}.pdf`.
    Directory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegistreConfig {
    pub worker_count: u32,
    /// WORKER_ID: prefix of worker ids (`<WORKER_ID>-<n>`) instead of `registre-worker-<n>-<hex>`.
    pub worker_id: Option<String>,
    pub fetcher: FetcherKind,
    pub source_dir: Option<PathBuf>,
    /// REGISTRE_URL_TEMPLATE: a secret, since a mirror's URL may carry credentials or a token.
    pub url_template: Option<Secret>,
    pub extraction_timeout: Duration,
    /// REGISTRE_BASE_URL: replaces the registry site's base URL of the site config (tests, mirrors).
    pub base_url: Option<Url>,
    /// REGISTRE_SITE_CONFIG: an edited copy of crates/fetch/registry-site.toml to use instead of the embedded one.
    pub site_config: Option<PathBuf>,
    /// CHROMIUM_PATH: the Chromium binary the registry fetcher drives.
    pub chromium_path: PathBuf,
    /// CHROMEDRIVER_PATH: the chromedriver binary the registry fetcher starts.
    pub chromedriver_path: PathBuf,
    /// REGISTRE_BROWSER_IDLE_MS: the browser session is closed after this long without a fetch.
    pub browser_idle: Duration,
    /// REGISTRE_STEP_TIMEOUT_MS: longest wait for one form element or page of the site (overrides
    /// the site config's `step_timeout_ms` when set; production learned 30 s).
    pub step_timeout: Option<Duration>,
    /// REGISTRE_DOCUMENT_TIMEOUT_MS: longest wait for the document after the search (overrides the
    /// site config's `document_timeout_ms` when set; production learned 3 minutes).
    pub document_timeout: Option<Duration>,
    /// REGISTRE_DEFAULT_CIRCONSCRIPTION: circonscription searched for a row that has none (production
    /// used Montréal); unset → such a row fails with a readable error.
    pub default_circonscription: Option<String>,
    /// REGISTRE_STATUS_INTERVAL_MS: how often registre-workers logs its status block (default 60 s).
    pub status_interval: Duration,
    /// REGISTRE_SHUTDOWN_GRACE_MS: on SIGTERM, how long a worker may take to finish its current job
    /// before it releases it to the queue (keep PM2's kill_timeout above it).
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcrPoolConfig {
    pub pool_size: u32,
    pub min_index_workers: u32,
    pub min_acte_workers: u32,
    pub rebalance_interval: Duration,
    /// OCR_STATUS_INTERVAL_MS: how often ocr-pool logs its status block (default 60 s).
    pub status_interval: Duration,
    /// OCR_SHUTDOWN_GRACE_MS: on SIGTERM, how long a busy OCR worker may finish its job before
    /// releasing it (back to status 3, no attempt counted).
    pub shutdown_grace: Duration,
    pub serve_prod: bool,
    pub serve_staging: bool,
    pub serve_dev: bool,
}

impl OcrPoolConfig {
    /// Whether the OCR pool takes work from this environment (OCR_PROD / OCR_STAGING / OCR_DEV).
    pub fn serves(&self, env: EnvName) -> bool {
        match env {
            EnvName::Prod => self.serve_prod,
            EnvName::Staging => self.serve_staging,
            EnvName::Dev => self.serve_dev,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcrEngineKind {
    Tesseract,
    Gemini,
}

#[derive(Debug, Clone)]
pub struct OcrEngineConfig {
    pub engine: OcrEngineKind,
    pub gemini_api_key: Option<Secret>,
    pub gemini_api_base_url: Url,
    pub extract_model: String,
    pub boost_model: String,
    /// OCR_GEMINI_TEMPERATURE: generationConfig.temperature of every Gemini call (0 to 2).
    pub gemini_temperature: f64,
    /// OCR_TESSERACT_DPI: resolution at which pdftoppm renders each page for tesseract (72 to 1200).
    pub tesseract_dpi: u32,
    /// OCR_TESSERACT_LANG: tesseract language(s), e.g. `fra` or `fra+eng` (installed traineddata).
    pub tesseract_lang: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Keys live under `ratelimit:{<name>}:`.
    pub name: String,
    pub requests_per_window: u64,
    pub tokens_per_window: u64,
    pub window: Duration,
    /// OCR_RATE_LIMIT_MARGIN_MS: how much later than its grant a call may reach the API. Each grant
    /// keeps its place for window + margin, so the API's own window never sees more than the limit
    /// (docs/rate-limiter.md, "Arrival margin").
    pub arrival_margin: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvName {
    Prod,
    Staging,
    Dev,
}

impl EnvName {
    pub const ALL: [EnvName; 3] = [EnvName::Prod, EnvName::Staging, EnvName::Dev];
    pub fn as_str(self) -> &'static str {
        match self {
            EnvName::Prod => "prod",
            EnvName::Staging => "staging",
            EnvName::Dev => "dev",
        }
    }
}

impl std::fmt::Display for EnvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Leases, polling and retries of the extraction queue (docs/design.md §7, docs/queue.md).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// QUEUE_LEASE_TTL_MS: a claimed row whose lease is not renewed within this long is reaped.
    pub lease_ttl: Duration,
    /// QUEUE_HEARTBEAT_MS: how often a worker renews the lease of its row (default: a third of the TTL).
    pub heartbeat: Duration,
    /// QUEUE_POLL_INTERVAL_MS: pause of an idle worker between two rounds over the environments.
    pub poll_interval: Duration,
    /// QUEUE_BACKOFF_BASE_MS: delay before the retry of a failed row (doubled at every attempt).
    pub backoff_base: Duration,
    /// QUEUE_BACKOFF_MAX_MS: longest delay before the retry of a failed row.
    pub backoff_max: Duration,
    /// QUEUE_MAX_ATTEMPTS: attempts of a row whose max_attempts / ocr_max_attempts is NULL.
    pub max_attempts: u32,
    /// QUEUE_ENV_RETRY_MAX_MS: longest wait before an environment that is down is tried again.
    pub env_retry_max: Duration,
    /// QUEUE_CALL_TIMEOUT_MS: longest time of one queue call (connect included).
    pub call_timeout: Duration,
    /// QUEUE_PG_POOL_SIZE: Postgres connections per environment in one process, shared by every
    /// user of the queue in it (registre and OCR workers, their heartbeats, the reaper, the pool
    /// manager's counts). Default: [`QueueConfig::default_pg_pool_size`].
    pub pg_pool_size: u32,
    /// QUEUE_MIGRATE_LOCK_TIMEOUT_MS: longest time one migration statement waits for a table lock
    /// before giving up and retrying later, so `registrectl migrate` never blocks the writes of a
    /// busy table behind it for longer than this.
    pub migrate_lock_timeout: Duration,
}

impl QueueConfig {
    /// Connections needed by `workers` workers (WORKER_COUNT + OCR_WORKER_POOL_SIZE): one for each
    /// worker's claim or transition, one for each worker's heartbeat (a renew can fall while its
    /// worker records a transition), and 2 for the background users (reaper / environment probe,
    /// the pool manager's count of waiting rows).
    pub fn default_pg_pool_size(workers: u32) -> u32 {
        workers.saturating_mul(2).saturating_add(2)
    }
}

/// How one environment's queue is reached.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Direct Postgres (a Supabase connection string or any Postgres).
    Database { url: SecretUrl },
    /// Supabase REST (PostgREST) with the service key.
    Supabase { url: Url, service_key: Secret },
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub name: EnvName,
    pub backend: Backend,
}

/// Where the fetched PDFs are stored (docs/design.md §8, docs/storage.md), chosen by the scheme of STORAGE_URL.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// STORAGE_TIMEOUT_MS: longest time of one HTTP call to Supabase Storage or S3.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// `file:///dir`: one directory per bucket under `root`.
    Local { root: PathBuf },
    /// `https://<project>.supabase.co`: Supabase Storage REST, authenticated with the service key
    /// (STORAGE_SERVICE_KEY, else the prod environment's PROD_SUPABASE_SERVICE_KEY / SUPABASE_SERVICE_KEY).
    Supabase { url: Url, service_key: Secret },
    /// `s3://<bucket>[/<prefix>]?region=..&endpoint=..&path_style=..`: any S3-compatible store.
    S3(S3Config),
}

/// One S3 bucket; the logical buckets (`index`, `actes`, `plans-cadastraux`) are key prefixes in it.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix under which the logical buckets live (`""` or `a/b`, no leading/trailing `/`).
    pub prefix: String,
    pub region: String,
    /// `https://s3.<region>.amazonaws.com` unless `endpoint=` / S3_ENDPOINT says otherwise.
    pub endpoint: Url,
    /// `<endpoint>/<bucket>/<key>` (MinIO, most S3-compatible stores) instead of `<bucket>.<endpoint host>/<key>`.
    pub path_style: bool,
    /// AWS_ACCESS_KEY_ID (an identifier, not a secret: safe in logs).
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// RUST_LOG directives, `info` by default.
    pub filter: String,
}

/// The sections of the configuration a binary uses: those are validated (a bad value stops it with
/// exit 2); the others fall back to their defaults when their variables are wrong, so one `.env`
/// shared by every PM2 app (the checklist's way) cannot stop an app over a section it never reads
/// (e.g. REGISTRE_FETCHER=directory without REGISTRE_SOURCE_DIR stops registre-workers only).
/// REDIS_URL / REDIS_CLUSTER, the environments, QUEUE_* and LOG_* are used by every binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    /// SERVER_* (SERVER_ID, the budget and its reserve).
    pub server: bool,
    /// CAPACITY_* and the *_WORKER_CPU / _RAM costs.
    pub capacity: bool,
    /// WORKER_COUNT, WORKER_ID, REGISTRE_*, EXTRACTION_TIMEOUT, CHROMIUM_PATH, CHROMEDRIVER_PATH.
    pub registre: bool,
    /// OCR_WORKER_POOL_SIZE, OCR_MIN_*, OCR_REBALANCE_INTERVAL_MS, OCR_STATUS/SHUTDOWN_*, OCR_PROD/STAGING/DEV.
    pub ocr_pool: bool,
    /// OCR_ENGINE, GEMINI_*, OCR_*_MODEL_GEMINI, OCR_GEMINI_TEMPERATURE, OCR_TESSERACT_*.
    pub ocr_engine: bool,
    /// OCR_RATE_LIMIT_*.
    pub rate_limit: bool,
    /// STORAGE_*, AWS_*, S3_ENDPOINT.
    pub storage: bool,
    /// API_HOST, API_PORT, API_TOKEN.
    pub api: bool,
    /// METRICS_ADDR.
    pub metrics: bool,
    /// MONITOR_* and ALERT_WEBHOOK_URL.
    pub monitor: bool,
}

impl Sections {
    /// Every section: what tests and [`Config::from_vars`] validate.
    pub const ALL: Sections = Sections {
        server: true,
        capacity: true,
        registre: true,
        ocr_pool: true,
        ocr_engine: true,
        rate_limit: true,
        storage: true,
        api: true,
        metrics: true,
        monitor: true,
    };
    const NONE: Sections = Sections {
        server: false,
        capacity: false,
        registre: false,
        ocr_pool: false,
        ocr_engine: false,
        rate_limit: false,
        storage: false,
        api: false,
        metrics: false,
        monitor: false,
    };

    /// What the binary `name` reads. An unknown name validates everything.
    pub fn for_binary(name: &str) -> Sections {
        let worker = Sections { server: true, capacity: true, storage: true, metrics: true, ..Sections::NONE };
        match name {
            "registre-workers" => Sections { registre: true, ..worker },
            "ocr-pool" => Sections { ocr_pool: true, ocr_engine: true, rate_limit: true, ..worker },
            "start-all-workers" => Sections { api: false, monitor: false, ..Sections::ALL },
            // The dashboard reads each server's capacity and the shared rate limit's window.
            "registre-api" => Sections { server: true, capacity: true, rate_limit: true, api: true, ..Sections::NONE },
            "registre-monitor" => {
                Sections { server: true, capacity: true, rate_limit: true, metrics: true, monitor: true, ..Sections::NONE }
            }
            // status, requeue-stuck (MONITOR_STUCK_AFTER_MS), release-capacity (CAPACITY_HEARTBEAT_MS).
            "registrectl" => Sections { server: true, capacity: true, rate_limit: true, monitor: true, ..Sections::NONE },
            _ => Sections::ALL,
        }
    }
}

impl Config {
    /// Loads `.env` from the working directory if there is one (variables already set in the
    /// process win), then reads the process environment, validating every section.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_env_for(Sections::ALL)
    }

    /// [`Config::from_env`] validating only the sections `uses` (see [`Sections`]).
    pub fn from_env_for(uses: Sections) -> Result<Config, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::DotEnv(e.to_string())),
        }
        Config::from_vars_for(uses, std::env::vars())
    }

    /// Builds the configuration from explicit variables, ignoring the process environment:
    /// what tests use, so they can run in parallel. Every section is validated.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Config::from_vars_for(Sections::ALL, vars)
    }

    /// [`Config::from_vars`] validating only the sections `uses`.
    pub fn from_vars_for<I, K, V>(uses: Sections, vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        // Empty values count as unset: `VAR=` in a .env means "use the default".
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v): &(String, String)| !v.trim().is_empty());
        let raw: raw::RawEnv =
            envy::from_iter(vars).map_err(|e| ConfigError::Inconsistent(e.to_string()))?;
        parse::build(raw, uses)
    }
}

/// What every binary's `main` calls first: the configuration, or one line on stderr and exit 2.
/// Validates every section; binaries call [`load_or_exit_for`] with what they use.
pub fn load_or_exit() -> Config {
    load_or_exit_for(Sections::ALL)
}

/// [`load_or_exit`] validating only the sections `uses` (see [`Sections::for_binary`]).
pub fn load_or_exit_for(uses: Sections) -> Config {
    match Config::from_env_for(uses) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("configuration error: {err}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    }
}
