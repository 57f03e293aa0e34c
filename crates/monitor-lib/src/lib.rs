//! registre-monitor (docs/design.md §12, PM2 app `registre-monitor`): keeps the fleet healthy when no worker
//! of a stage is running, repairs what older systems leave behind, and tells people when something
//! is wrong. Every MONITOR_INTERVAL_MS, for every configured environment, one [`Monitor::round`]:
//!
//! - runs the reaper (rows whose lease expired come back even with every worker of a stage stopped)
//!   and requeues rows in status 2 or 6 with NO lease (claimed by an older system) untouched for
//!   MONITOR_STUCK_AFTER_MS, the attempt counted and said in error_message (registre-ops, SQL ops_requeue_stuck);
//! - raises alerts, each once per incident and resolved after MONITOR_RESOLVE_AFTER_ROUNDS clean
//!   rounds ([`alerts`]; open incidents are kept in Redis, [`store`], across restarts): rows waiting
//!   with no live worker for their stage, the oldest waiting row older than
//!   MONITOR_OLDEST_WAITING_ALERT_MS, Erreur rows growing faster than
//!   MONITOR_ERRORS_PER_MINUTE_ALERT, the rate limiter in cooldown, an environment or Redis
//!   unreachable, capacity allocated above usable (must never happen: an ERROR);
//! - alerts are log lines, and JSON POSTs to ALERT_WEBHOOK_URL when set ([`webhook`]).
//!
//! On METRICS_ADDR it serves `/metrics` (the queue, capacity, rate-limit and pool gauges of
//! registre-api, plus the monitor's own counters), `/health` and `/ready` (503 naming what the last
//! round could not reach). docs/operations.md describes each check and alert and what to do.

pub mod alerts;
mod server;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName, MonitorConfig};
use registre_domain::status;
use registre_ops::{EnvOverview, LiveView, Ops, OpsError};
use registre_runtime::{BinaryError, Shutdown};

pub use alerts::Severity;
pub use server::render_stats;
use alerts::{Alert, Change, Incidents, Scope};
use webhook::Webhook;

/// Who the repairs name in error_message.
pub const REPAIRED_BY: &str = "registre-monitor";

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    Setup(String),
}

impl BinaryError for MonitorError {}

/// Counters and the last round's outcome, for /metrics and /ready.
#[derive(Debug, Default)]
pub struct Stats {
    pub rounds: u64,
    /// env → rows given back by the reaper.
    pub reaped: HashMap<&'static str, u64>,
    /// (env, stage) → lease-less stuck rows requeued.
    pub requeued: HashMap<(&'static str, &'static str), u64>,
    pub alerts_fired: u64,
    /// Keys and severities of the open incidents.
    pub open: Vec<(String, Severity)>,
    /// What the last round could not reach (empty: all answered). None before the first round.
    pub unreachable: Option<Vec<String>>,
    /// The webhook's delivery counts (None without ALERT_WEBHOOK_URL).
    pub webhook: Option<Arc<webhook::WebhookStats>>,
}

/// What one round did, for tests and the log.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    pub requeued: Vec<(EnvName, registre_ops::Requeued)>,
    pub changes: Vec<Change>,
    pub unreachable: Vec<String>,
}

pub struct Monitor {
    ops: Arc<Ops>,
    settings: MonitorConfig,
    max_attempts: u32,
    incidents: Incidents,
    /// env → (Erreur rows, when counted), for the growth rate.
    errors_seen: HashMap<EnvName, (u64, Instant)>,
    webhook: Option<Webhook>,
    host: String,
    stats: Arc<Mutex<Stats>>,
    /// Where the open incidents are kept across restarts (None: Redis URL unusable).
    redis: Option<registre_runtime::RedisConn>,
    /// Whether the incidents saved by a previous run were looked for (at the first round).
    restored: bool,
    incidents_ttl: Duration,
    incidents_key: String,
}

impl Monitor {
    /// A monitor over `ops`; starts the webhook task when ALERT_WEBHOOK_URL is set.
    pub fn new(config: &Config, ops: Arc<Ops>, stop: tokio_util::sync::CancellationToken) -> Monitor {
        let webhook = match (&config.monitor.webhook, &config.monitor.webhook_shown) {
            (Some(url), Some(shown)) => Some(Webhook::start(url.clone(), shown.clone(), stop)),
            _ => None,
        };
        let redis = match registre_runtime::redis_connection(&config.redis_url) {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::warn!("Redis connection for the incidents failed ({e}): they are kept in memory only");
                None
            }
        };
        let stats = Stats { webhook: webhook.as_ref().map(|w| w.stats.clone()), ..Stats::default() };
        Monitor {
            ops,
            settings: config.monitor.clone(),
            max_attempts: config.queue.max_attempts,
            incidents: Incidents::new(config.monitor.resolve_after_rounds),
            errors_seen: HashMap::new(),
            webhook,
            host: registre_runtime::host_name(),
            stats: Arc::new(Mutex::new(stats)),
            redis,
            restored: false,
            incidents_ttl: store::ttl(config.monitor.interval),
            incidents_key: registre_domain::keys::monitor_incidents(config.server.id.as_deref()),
        }
    }

    pub fn stats(&self) -> Arc<Mutex<Stats>> {
        self.stats.clone()
    }

    /// Waits until every webhook message queued so far was delivered or given up.
    pub async fn webhook_idle(&self) {
        if let Some(w) = &self.webhook {
            w.stats.idle().await;
        }
    }

    /// (delivered, failed) webhook messages so far.
    pub fn webhook_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        self.webhook
            .as_ref()
            .map(|w| (w.stats.delivered.load(Ordering::SeqCst), w.stats.failures.load(Ordering::SeqCst)))
            .unwrap_or((0, 0))
    }

    /// One round of repairs and checks over every environment.
    pub async fn round(&mut self) -> RoundReport {
        if !self.restored {
            self.restore().await;
        }
        let mut report = RoundReport::default();
        let mut seen: Vec<Alert> = Vec::new();
        let mut env_ok: Vec<&'static str> = Vec::new();
        let live = self.ops.live().view().await;
        if let Err(e) = &live {
            report.unreachable.push("Redis".into());
            seen.push(Alert {
                key: "redis_unreachable".into(),
                severity: Severity::Error,
                message: format!("Redis does not answer ({e}): workers cannot take capacity or rate-limit grants"),
                scope: Scope::Always,
            });
        }
        let live = live.ok();
        for env in self.ops.environments() {
            let name = env.as_str();
            let repaired = self.ops.requeue_stuck(env, self.settings.stuck_after, self.max_attempts, REPAIRED_BY).await;
            let overview = match repaired {
                // A REST-only environment: the monitor has no SQL access there (docs/operations.md).
                Err(OpsError::RestUnsupported { .. }) => continue,
                Err(e) => Err(e),
                Ok(r) => {
                    if r.reaped + r.stuck_extraction + r.stuck_ocr > 0 {
                        tracing::info!(
                            "🔧 {env}: {} expired lease(s) reaped, {} stuck extraction row(s) and {} stuck OCR row(s) requeued (no lease for {} s or more)",
                            r.reaped,
                            r.stuck_extraction,
                            r.stuck_ocr,
                            self.settings.stuck_after.as_secs()
                        );
                    }
                    if let Ok(mut s) = self.stats.lock() {
                        *s.reaped.entry(name).or_default() += r.reaped;
                        *s.requeued.entry((name, "extraction")).or_default() += r.stuck_extraction;
                        *s.requeued.entry((name, "ocr")).or_default() += r.stuck_ocr;
                    }
                    report.requeued.push((env, r));
                    self.ops.overview(env).await
                }
            };
            match overview {
                Ok(o) => {
                    env_ok.push(name);
                    self.queue_alerts(env, &o, live.as_ref(), &mut seen);
                }
                Err(e) => {
                    report.unreachable.push(name.to_string());
                    seen.push(Alert {
                        key: format!("env_unreachable:{name}"),
                        severity: Severity::Error,
                        message: format!("{name} is unreachable: {e}"),
                        scope: Scope::Always,
                    });
                }
            }
        }
        if let Some(live) = &live {
            live_alerts(live, &mut seen);
        }
        let live_ok = live.is_some();
        let changes = self.incidents.update(seen, |scope| match scope {
            Scope::Always => true,
            Scope::Live => live_ok,
            Scope::Env(e) => env_ok.contains(e),
            Scope::EnvAndLive(e) => live_ok && env_ok.contains(e),
        });
        for change in &changes {
            self.announce(change);
        }
        if let Some(conn) = &self.redis {
            let open: Vec<_> = self.incidents.open().map(|i| i.saved()).collect();
            if let Err(e) = store::save(conn, &self.incidents_key, &open, self.incidents_ttl).await {
                tracing::warn!("saving the open incidents in Redis failed ({e}): a restart now would forget them");
            }
        }
        if let Ok(mut s) = self.stats.lock() {
            s.rounds += 1;
            s.alerts_fired += changes.iter().filter(|c| c.state == "firing").count() as u64;
            s.open = self.incidents.open().map(|i| (i.alert.key.clone(), i.alert.severity)).collect();
            s.unreachable = Some(report.unreachable.clone());
        }
        report.changes = changes;
        report
    }

    /// Opens again, without firing, the incidents a previous run left open (store.rs). Once: if
    /// Redis does not answer at the first round, this run starts with none.
    async fn restore(&mut self) {
        self.restored = true;
        let Some(conn) = &self.redis else { return };
        match store::load(conn, &self.incidents_key).await {
            Ok(saved) if saved.is_empty() => {}
            Ok(saved) => {
                tracing::info!(
                    "🩺 {} incident(s) still open from the previous run: {}",
                    saved.len(),
                    saved.iter().map(|i| i.alert.key.as_str()).collect::<Vec<_>>().join(", ")
                );
                self.incidents.restore(saved);
            }
            Err(e) => tracing::warn!("reading the open incidents from Redis failed ({e}): starting with none"),
        }
    }

    fn queue_alerts(&mut self, env: EnvName, o: &EnvOverview, live: Option<&LiveView>, seen: &mut Vec<Alert>) {
        let name = env.as_str();
        let count = |status: i32| o.counts.iter().filter(|c| c.status_id == status).map(|c| c.count).sum::<u64>();
        if let Some(live) = live {
            let registre = live.workers.iter().filter(|w| w.kind == "registre").count();
            let ocr = live.workers.iter().filter(|w| w.kind.ends_with("-ocr")).count();
            for (stage, waiting, workers, who) in
                [("extraction", count(status::WAITING), registre, "registre worker"), ("ocr", count(status::DOWNLOADED), ocr, "OCR worker")]
            {
                if waiting > 0 && workers == 0 {
                    seen.push(Alert {
                        key: format!("no_worker:{name}:{stage}"),
                        severity: Severity::Warning,
                        message: format!("{name}: {waiting} row(s) waiting for the {stage} stage but no {who} is running (no capacity lease in Redis)"),
                        scope: Scope::EnvAndLive(name),
                    });
                }
            }
        }
        let limit = self.settings.oldest_waiting_alert.as_secs_f64();
        for (stage, age) in [("extraction", o.oldest_waiting_seconds.extraction), ("ocr", o.oldest_waiting_seconds.ocr)] {
            if let Some(age) = age.filter(|a| *a > limit) {
                seen.push(Alert {
                    key: format!("oldest_waiting:{name}:{stage}"),
                    severity: Severity::Warning,
                    message: format!(
                        "{name}: the oldest row waiting for the {stage} stage was queued {:.0} min ago (threshold {:.0} min)",
                        age / 60.0,
                        limit / 60.0
                    ),
                    scope: Scope::Env(name),
                });
            }
        }
        let errors = count(4);
        let now = Instant::now();
        if let Some((before, at)) = self.errors_seen.insert(env, (errors, now)) {
            let minutes = now.duration_since(at).as_secs_f64() / 60.0;
            let grown = errors.saturating_sub(before);
            if minutes > 0.0 && grown > 0 {
                let rate = grown as f64 / minutes;
                if rate > self.settings.errors_per_minute_alert {
                    seen.push(Alert {
                        key: format!("errors_growing:{name}"),
                        severity: Severity::Warning,
                        message: format!(
                            "{name}: {grown} more row(s) in Erreur within {:.1} min ({rate:.1}/min, threshold {}/min); {errors} in Erreur now",
                            minutes, self.settings.errors_per_minute_alert
                        ),
                        scope: Scope::Env(name),
                    });
                }
            }
        }
    }

    fn announce(&self, change: &Change) {
        match (change.state, change.severity) {
            ("resolved", _) => tracing::info!(
                alert = change.key.as_str(),
                "✅ RESOLVED {}: {} (lasted {} s)",
                change.key,
                change.message,
                change.lasted_seconds.unwrap_or(0)
            ),
            (_, Severity::Error) => tracing::error!(alert = change.key.as_str(), "🚨 ALERT {}: {}", change.key, change.message),
            _ => tracing::warn!(alert = change.key.as_str(), "⚠️ ALERT {}: {}", change.key, change.message),
        }
        if let Some(w) = &self.webhook {
            w.send(webhook::payload(change, &self.host));
        }
    }
}

fn live_alerts(live: &LiveView, seen: &mut Vec<Alert>) {
    let r = &live.rate_limit;
    if r.cooldown_seconds > 0.0 {
        seen.push(Alert {
            key: format!("ratelimit_cooldown:{}", r.name),
            severity: Severity::Warning,
            message: format!(
                "the {} rate limiter is in cooldown ({:.0} s left): the OCR API answered 429 and every OCR worker waits",
                r.name, r.cooldown_seconds
            ),
            scope: Scope::Live,
        });
    }
    for c in &live.capacity {
        // Each server against the budget it published itself; none published: not judged.
        if let (Some(true), Some(cpu_usable), Some(ram_usable)) = (c.above_budget(), c.cpu_usable, c.ram_usable) {
            let server = c.server.as_deref().unwrap_or("(default)");
            seen.push(Alert {
                key: format!("capacity_over:{server}"),
                severity: Severity::Error,
                message: format!(
                    "server {server}: capacity allocated above its published usable budget ({:.2} / {:.2} vCPU, {:.2} / {:.2} GB): \
                     must never happen; check that every process of this server has the same SERVER_MAX_* / reserve settings",
                    c.cpu_allocated, cpu_usable, c.ram_allocated, ram_usable
                ),
                scope: Scope::Live,
            });
        }
    }
}

/// registre-monitor's run: a round every MONITOR_INTERVAL_MS until SIGTERM/SIGINT, and the
/// METRICS_ADDR server.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), MonitorError> {
    let ops = Arc::new(Ops::from_config(&config).map_err(MonitorError::Setup)?);
    let mut monitor = Monitor::new(&config, ops.clone(), shutdown.token());
    if let Some(addr) = config.metrics_addr {
        // A taken METRICS_ADDR usually means a second monitor on this server: exit 1 (PM2 shows it)
        // rather than run unseen, as the binary's help says.
        server::spawn(addr, ops.clone(), monitor.stats(), shutdown.token()).await.map_err(MonitorError::Setup)?;
    }
    let envs: Vec<&str> = config.environments.iter().map(|e| e.name.as_str()).collect();
    tracing::info!(
        "🩺 registre-monitor: every {} ms over {} (stuck after {} s; alerts: log{})",
        config.monitor.interval.as_millis(),
        envs.join(", "),
        config.monitor.stuck_after.as_secs(),
        config.monitor.webhook_shown.as_deref().map(|w| format!(" and {w}")).unwrap_or_default()
    );
    for env in &config.environments {
        if matches!(env.backend, registre_config::Backend::Supabase { .. }) {
            tracing::warn!(
                "{}: Supabase REST only: the monitor cannot reap or check it; set {}_DATABASE_URL",
                env.name,
                env.name.as_str().to_ascii_uppercase()
            );
        }
    }
    let stop = shutdown.token();
    let mut tick = tokio::time::interval(config.monitor.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = monitor.round() => {}
        }
    }
    // Give queued webhook messages a moment; the delivery task stops its retries on shutdown.
    let _ = tokio::time::timeout(Duration::from_secs(5), monitor.webhook_idle()).await;
    tracing::info!("registre-monitor stopped");
    Ok(())
}
