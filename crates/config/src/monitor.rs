//! registre-monitor's variables (docs/design.md §12): how often it runs its checks and repairs, when a
//! lease-less working row counts as stuck, the alert thresholds and the webhook. Kept apart from
//! parse.rs so the monitor's knobs read in one place.

use std::time::Duration;

use url::Url;

use crate::secret::Secret;
use crate::ConfigError;

/// registre-monitor (docs/design.md §12, docs/operations.md).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// MONITOR_INTERVAL_MS: one round of checks and repairs.
    pub interval: Duration,
    /// MONITOR_STUCK_AFTER_MS: a row in 2 or 6 without a lease, untouched this long, is requeued.
    pub stuck_after: Duration,
    /// MONITOR_OLDEST_WAITING_ALERT_MS: alert when the oldest waiting row of a stage is older.
    pub oldest_waiting_alert: Duration,
    /// MONITOR_ERRORS_PER_MINUTE_ALERT: alert when Erreur rows grow faster than this per minute.
    pub errors_per_minute_alert: f64,
    /// ALERT_WEBHOOK_URL: alerts are POSTed here as JSON. A Slack webhook URL is a secret as a
    /// whole (the path is the credential), so Debug and Display print `[redacted]`.
    pub webhook: Option<Secret>,
    /// `scheme://host/[redacted]` of the webhook, for logs.
    pub webhook_shown: Option<String>,
    /// MONITOR_RESOLVE_AFTER_ROUNDS: an incident resolves after this many rounds in a row without
    /// its condition (so a condition that comes and goes does not flap).
    pub resolve_after_rounds: u32,
}



fn invalid(variable: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid { variable, value: value.to_string(), expected: expected.to_string() }
}

fn millis(variable: &'static str, value: Option<String>, default_ms: u64) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(Duration::from_millis(default_ms)) };
    let v = v.trim();
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
        _ => Err(invalid(variable, v, "a whole number of milliseconds greater than 0")),
    }
}

pub(crate) fn parse(
    interval: Option<String>,
    stuck_after: Option<String>,
    oldest_waiting: Option<String>,
    errors_per_minute: Option<String>,
    webhook: Option<String>,
    resolve_after_rounds: Option<String>,
) -> Result<MonitorConfig, ConfigError> {
    let resolve_after_rounds = match resolve_after_rounds.map(|v| v.trim().to_string()) {
        None => 2,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(invalid("MONITOR_RESOLVE_AFTER_ROUNDS", &v, "a whole number of rounds from 1 to 1000")),
        },
    };
    let errors_per_minute_alert = match errors_per_minute.map(|v| v.trim().to_string()) {
        None => 10.0,
        Some(v) => match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => n,
            _ => return Err(invalid("MONITOR_ERRORS_PER_MINUTE_ALERT", &v, "a number ≥ 0 (Erreur rows per minute)")),
        },
    };
    let (webhook, webhook_shown) = match webhook.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
        None => (None, None),
        Some(v) => {
            // A webhook URL's secret is its path (Slack: /services/T…/B…/…): only scheme and host show.
            let shown = |v: &str| {
                Url::parse(v)
                    .map(|u| format!("{}://{}/[redacted]", u.scheme(), u.host_str().unwrap_or("")))
                    .unwrap_or_else(|_| "[redacted: not a URL]".into())
            };
            let parsed = Url::parse(&v).map_err(|_| invalid("ALERT_WEBHOOK_URL", &shown(&v), "a URL starting with https:// or http://"))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none_or(str::is_empty) {
                return Err(invalid("ALERT_WEBHOOK_URL", &shown(&v), "a URL starting with https:// or http://, with a host"));
            }
            (Some(Secret::new(parsed.as_str())), Some(shown(&v)))
        }
    };
    Ok(MonitorConfig {
        interval: millis("MONITOR_INTERVAL_MS", interval, 30_000)?,
        stuck_after: millis("MONITOR_STUCK_AFTER_MS", stuck_after, 600_000)?,
        oldest_waiting_alert: millis("MONITOR_OLDEST_WAITING_ALERT_MS", oldest_waiting, 1_800_000)?,
        errors_per_minute_alert,
        webhook,
        webhook_shown,
        resolve_after_rounds,
    })
}
