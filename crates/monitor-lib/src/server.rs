//! registre-monitor's METRICS_ADDR server: `/metrics` (Prometheus text: the queue, capacity,
//! rate-limit and pool gauges registre-api serves, then the monitor's own counters), `/health`
//! (checks nothing) and `/ready` (200 once a round reached Redis and every environment; 503 naming
//! what the last round could not reach).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use registre_ops::Ops;
use tokio_util::sync::CancellationToken;

use crate::Stats;

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The monitor's counters in the Prometheus text format.
pub fn render_stats(s: &Stats) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HELP registre_monitor_rounds_total Rounds of checks and repairs done by this monitor.");
    let _ = writeln!(o, "# TYPE registre_monitor_rounds_total counter");
    let _ = writeln!(o, "registre_monitor_rounds_total {}", s.rounds);
    let _ = writeln!(o, "# HELP registre_monitor_reaped_rows_total Rows whose lease had expired, given back by this monitor's reaper.");
    let _ = writeln!(o, "# TYPE registre_monitor_reaped_rows_total counter");
    let mut reaped: Vec<_> = s.reaped.iter().collect();
    reaped.sort();
    for (env, n) in reaped {
        let _ = writeln!(o, "registre_monitor_reaped_rows_total{{env=\"{}\"}} {n}", escape(env));
    }
    let _ = writeln!(o, "# HELP registre_monitor_requeued_rows_total Lease-less rows stuck in a working status (older system) requeued.");
    let _ = writeln!(o, "# TYPE registre_monitor_requeued_rows_total counter");
    let mut requeued: Vec<_> = s.requeued.iter().collect();
    requeued.sort();
    for ((env, stage), n) in requeued {
        let _ = writeln!(o, "registre_monitor_requeued_rows_total{{env=\"{}\",stage=\"{stage}\"}} {n}", escape(env));
    }
    let _ = writeln!(o, "# HELP registre_monitor_alerts_fired_total Alerts that started (each incident once).");
    let _ = writeln!(o, "# TYPE registre_monitor_alerts_fired_total counter");
    let _ = writeln!(o, "registre_monitor_alerts_fired_total {}", s.alerts_fired);
    let _ = writeln!(
        o,
        "# HELP registre_monitor_webhook_deliveries_total Alert messages for ALERT_WEBHOOK_URL by outcome: delivered, failed (every attempt failed), dropped (queue full)."
    );
    let _ = writeln!(o, "# TYPE registre_monitor_webhook_deliveries_total counter");
    let count = |n: Option<&std::sync::atomic::AtomicU64>| n.map(|n| n.load(std::sync::atomic::Ordering::SeqCst)).unwrap_or(0);
    let w = s.webhook.as_deref();
    for (outcome, n) in [
        ("delivered", count(w.map(|w| &w.delivered))),
        ("failed", count(w.map(|w| &w.failures))),
        ("dropped", count(w.map(|w| &w.dropped))),
    ] {
        let _ = writeln!(o, "registre_monitor_webhook_deliveries_total{{outcome=\"{outcome}\"}} {n}");
    }
    let _ = writeln!(o, "# HELP registre_monitor_alert_active 1 for each open incident, by alert key and severity.");
    let _ = writeln!(o, "# TYPE registre_monitor_alert_active gauge");
    for (key, severity) in &s.open {
        let sev = match severity {
            crate::Severity::Error => "error",
            crate::Severity::Warning => "warning",
        };
        let _ = writeln!(o, "registre_monitor_alert_active{{alert=\"{}\",severity=\"{sev}\"}} 1", escape(key));
    }
    o
}

pub async fn spawn(addr: SocketAddr, ops: Arc<Ops>, stats: Arc<Mutex<Stats>>, stop: CancellationToken) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("METRICS_ADDR={addr}: cannot listen ({e}); is another registre-monitor running?"))?;
    tracing::info!("📈 registre-monitor metrics on http://{addr}/metrics (/health, /ready)");
    let metrics_stats = stats.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let ops = ops.clone();
                let stats = metrics_stats.clone();
                async move {
                    let mut text = registre_ops::render_metrics(&registre_ops::overview(&ops).await);
                    if let Ok(s) = stats.lock() {
                        text.push_str(&render_stats(&s));
                    }
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
                }
            }),
        )
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/ready",
            get(move || {
                let stats = stats.clone();
                async move {
                    let unreachable = stats.lock().ok().and_then(|s| s.unreachable.clone());
                    match unreachable {
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"ready": false, "error": "not ready: the first round has not finished"})),
                        )
                            .into_response(),
                        Some(down) if down.is_empty() => Json(serde_json::json!({"ready": true})).into_response(),
                        Some(down) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"ready": false, "error": format!("not ready: {} not answering", down.join(", "))})),
                        )
                            .into_response(),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    });
    Ok(())
}
