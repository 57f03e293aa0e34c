//! Delivery of alert changes to ALERT_WEBHOOK_URL: a JSON POST with a Slack-compatible `text`
//! field (plus the structured fields for other receivers), from a task of its own, so a slow or
//! failing webhook never delays or stops a round. Each message is retried with exponential backoff
//! ([`ATTEMPTS`] tries, [`FIRST_RETRY`] doubling); a message that still fails is logged (the alert
//! itself was already logged). Every message is counted once in
//! `registre_monitor_webhook_deliveries_total{outcome}`: `delivered`, `failed` (every attempt
//! failed) or `dropped` (the queue was full).
//! The URL is a secret (a Slack webhook's path is its credential): logs show its host only.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registre_config::Secret;
use registre_runtime::Backoff;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::alerts::Change;

/// Tries per message.
pub const ATTEMPTS: u32 = 6;
/// Delay before the first retry (then doubled, at most [`MAX_RETRY`]).
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// Longest wait for one POST.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting beyond this are dropped (logged): a dead webhook must not grow memory.
const QUEUE_LIMIT: usize = 1000;

#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    /// Messages given up after every attempt.
    pub failures: AtomicU64,
    /// Messages dropped because [`QUEUE_LIMIT`] were already waiting.
    pub dropped: AtomicU64,
    pending: AtomicUsize,
    idle: Notify,
}

impl WebhookStats {
    /// Waits until every queued message was delivered or given up.
    pub async fn idle(&self) {
        loop {
            // Registered before the check, so a notification between the two is not missed.
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<serde_json::Value>,
    pub stats: Arc<WebhookStats>,
}

/// The JSON posted for one change.
pub fn payload(change: &Change, host: &str) -> serde_json::Value {
    let icon = match (change.state, change.severity) {
        ("resolved", _) => "✅ RESOLVED",
        (_, crate::alerts::Severity::Error) => "🚨 ERROR",
        _ => "⚠️ ALERT",
    };
    let lasted = change.lasted_seconds.map(|s| format!(" (lasted {s} s)")).unwrap_or_default();
    serde_json::json!({
        "text": format!("{icon} [registre-monitor on {host}] {}{lasted}", change.message),
        "alert": change.key,
        "state": change.state,
        "severity": change.severity,
        "message": change.message,
        "since": change.since.to_rfc3339(),
        "lasted_seconds": change.lasted_seconds,
        "host": host,
    })
}

impl Webhook {
    /// Starts the delivery task; it ends when `stop` fires (after trying what is queued once more
    /// for at most a few seconds) or every sender is dropped.
    pub fn start(url: Secret, shown: String, stop: CancellationToken) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<serde_json::Value>(QUEUE_LIMIT);
        let stats = Arc::new(WebhookStats::default());
        let task_stats = stats.clone();
        let client = reqwest::Client::builder().timeout(POST_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                let delivered = deliver(&client, &url, &shown, &body, &stop).await;
                if delivered {
                    task_stats.delivered.fetch_add(1, Ordering::SeqCst);
                } else {
                    task_stats.failures.fetch_add(1, Ordering::SeqCst);
                }
                task_stats.pending.fetch_sub(1, Ordering::SeqCst);
                task_stats.idle.notify_waiters();
            }
        });
        Webhook { tx, stats }
    }

    /// Queues one message (never waits: a full queue drops it, logged).
    pub fn send(&self, body: serde_json::Value) {
        self.stats.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(body).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::SeqCst);
            self.stats.dropped.fetch_add(1, Ordering::SeqCst);
            self.stats.idle.notify_waiters();
            tracing::warn!("alert webhook: {QUEUE_LIMIT} messages already waiting; this one is dropped (it is in the log)");
        }
    }
}

async fn deliver(client: &reqwest::Client, url: &Secret, shown: &str, body: &serde_json::Value, stop: &CancellationToken) -> bool {
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    for attempt in 1..=ATTEMPTS {
        let why = match client.post(url.expose()).json(body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            // Without the URL: reqwest's error text names it, and the URL is the secret.
            Err(e) => {
                let kind = if e.is_timeout() { "timeout" } else if e.is_connect() { "cannot connect" } else { "request failed" };
                kind.to_string()
            }
        };
        if attempt == ATTEMPTS {
            tracing::warn!("alert webhook {shown}: {why}; gave up after {ATTEMPTS} attempts (the alert is in this log)");
            return false;
        }
        let delay = backoff.next_delay();
        tracing::warn!("alert webhook {shown}: {why} (attempt {attempt} of {ATTEMPTS}); retrying in {} ms", delay.as_millis());
        tokio::select! {
            // Stopping: one more immediate try is not worth a slow shutdown.
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    false
}
