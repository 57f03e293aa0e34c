//! Metrics of the worker binaries (registre-workers, ocr-pool, start-all-workers), in one place:
//! the counters and histograms of their work, process RSS and CPU and the host's load ([`host`],
//! read through sysinfo), and the small HTTP server that
//! serves `/metrics`, `/health` and `/ready` on METRICS_ADDR (started by registre_runtime's
//! run_binary when the variable is set). Worker crates record with one call each ([`job`],
//! [`fetch`], [`ocr_pages`], [`ratelimit_wait`], [`capacity_wait`]); recording is a few atomic
//! operations, so it is done whether or not the server runs.
//!
//! Names start with `registre_`, counters end in `_total`, durations are `_seconds` histograms
//! (prometheus-client, OpenMetrics text format, which Prometheus scrapes natively).

pub mod host;
mod ready;

pub use ready::redis_ready;

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use registre_config::RedisTarget;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    /// extraction or ocr
    stage: String,
    /// completed, retry, failed, released, lost
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    /// registre, index-ocr, acte-ocr
    r#type: String,
}

struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    job_duration: Family<StageLabels, Histogram>,
    fetch_duration: Histogram,
    ocr_pages: Counter,
    ratelimit_wait: Histogram,
    capacity_wait: Family<TypeLabels, Histogram>,
    rss: Gauge<f64, std::sync::atomic::AtomicU64>,
    cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    cpu_seen: Mutex<f64>,
    load: Family<WindowLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    /// 1m, 5m, 15m
    window: String,
}

/// Seconds from 10 ms to ~11 min: a fetch may take 3 minutes, a wait for capacity longer.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.5, 14)
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let jobs = Family::<JobLabels, Counter>::default();
    registry.register("registre_jobs", "Jobs finished by this process, by stage and outcome", jobs.clone());
    let job_duration = Family::<StageLabels, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
    registry.register("registre_job_duration_seconds", "Time from claim to the end of a job, by stage", job_duration.clone());
    let fetch_duration = Histogram::new(seconds_buckets());
    registry.register("registre_fetch_duration_seconds", "Time to fetch one document (registre workers)", fetch_duration.clone());
    let ocr_pages = Counter::default();
    registry.register("registre_ocr_pages", "Pages whose text was extracted (OCR workers)", ocr_pages.clone());
    let ratelimit_wait = Histogram::new(seconds_buckets());
    registry.register("registre_ratelimit_wait_seconds", "Time an OCR call waited for the shared rate limit", ratelimit_wait.clone());
    let capacity_wait = Family::<TypeLabels, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
    registry.register("registre_capacity_wait_seconds", "Time a worker waited for its capacity lease, by worker type", capacity_wait.clone());
    let rss = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    registry.register("registre_process_resident_memory_bytes", "Resident memory of this process", rss.clone());
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    registry.register("registre_process_cpu_seconds", "CPU time (user + system) used by this process", cpu.clone());
    let load = Family::<WindowLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register("registre_host_load", "Load average of the host, by window (1m, 5m, 15m)", load.clone());
    Metrics { registry, jobs, job_duration, fetch_duration, ocr_pages, ratelimit_wait, capacity_wait, rss, cpu, cpu_seen: Mutex::new(0.0), load }
});

/// A finished job: `stage` extraction or ocr; `outcome` completed, retry, failed, released or lost.
pub fn job(stage: &str, outcome: &str, duration: Duration) {
    let m = &*METRICS;
    m.jobs.get_or_create(&JobLabels { stage: stage.into(), outcome: outcome.into() }).inc();
    m.job_duration.get_or_create(&StageLabels { stage: stage.into() }).observe(duration.as_secs_f64());
}

/// One document fetch (successful or not).
pub fn fetch(duration: Duration) {
    METRICS.fetch_duration.observe(duration.as_secs_f64());
}

pub fn ocr_pages(pages: u64) {
    METRICS.ocr_pages.inc_by(pages);
}

pub fn ratelimit_wait(duration: Duration) {
    METRICS.ratelimit_wait.observe(duration.as_secs_f64());
}

pub fn capacity_wait(worker_type: &str, duration: Duration) {
    METRICS.capacity_wait.get_or_create(&TypeLabels { r#type: worker_type.into() }).observe(duration.as_secs_f64());
}

/// RSS and CPU time of this process and the host's load, read through sysinfo.
fn refresh_process() {
    let m = &*METRICS;
    let usage = host::usage();
    m.rss.set(usage.rss_bytes as f64);
    if let Ok(mut seen) = m.cpu_seen.lock() {
        // A counter only goes up: add what was used since the last reading.
        if usage.cpu_seconds > *seen {
            m.cpu.inc_by(usage.cpu_seconds - *seen);
            *seen = usage.cpu_seconds;
        }
    }
    for (window, value) in ["1m", "5m", "15m"].into_iter().zip(usage.load) {
        m.load.get_or_create(&WindowLabels { window: window.into() }).set(value);
    }
}

/// The metrics in the OpenMetrics text format.
pub fn render() -> String {
    refresh_process();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &METRICS.registry);
    out
}

/// Serves /metrics, /health (checks nothing) and /ready ([`redis_ready`]: the server answers PING,
/// or the cluster serves every slot) on `addr` until `stop`.
/// A port that cannot be bound is logged, not fatal: the workers matter more than their metrics.
pub fn spawn_server(addr: SocketAddr, redis: RedisTarget, stop: CancellationToken) {
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("METRICS_ADDR={addr}: cannot listen ({e}); /metrics is not served");
                return;
            }
        };
        tracing::info!("📈 metrics on http://{addr}/metrics (/health, /ready)");
        let redis = std::sync::Arc::new(redis);
        let app = Router::new()
            .route(
                "/metrics",
                get(|| async {
                    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], render())
                }),
            )
            .route("/health", get(|| async { "ok" }))
            .route(
                "/ready",
                get(move || {
                    let redis = redis.clone();
                    async move {
                        match redis_ready(&redis).await {
                            Ok(()) => (StatusCode::OK, "ready".to_string()).into_response(),
                            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
                        }
                    }
                }),
            );
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    });
}
