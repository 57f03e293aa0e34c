//! The overview every view shares (registre-api's GET /api/overview, its SSE stream and /metrics;
//! registre-monitor's /metrics): each environment's counts and ages, and Redis's live state, read
//! concurrently. A part that does not answer is reported in place (`error`) so the rest still
//! shows: an operator needs the dashboard most when something is down. registre-api computes it in
//! its stream's one background task only, never per request; each one also lists the rows changed
//! since the one before ([`add_changes`]), so a dashboard re-reads a row's detail only when that
//! row changed.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use registre_domain::status;
use serde::Serialize;

use crate::{ChangedRow, EnvOverview, LiveView, Ops};

#[derive(Debug, Clone, Serialize)]
pub struct EnvEntry {
    pub env: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overview: Option<EnvOverview>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows changed since the previous overview; None on the first one (nothing to compare with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// Reached through Supabase REST only: not read here, and not down (`registre_env_rest_only`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rest_only: bool,
}

/// Rows updated since the previous overview's last change (less [`LATE_COMMIT_MARGIN`]), newest
/// first: their id and updated_at, which a client compares with the rows it shows.
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    pub since: DateTime<Utc>,
    pub rows: Vec<ChangedRow>,
    /// More rows changed than [`CHANGES_LIMIT`]: the oldest are left out (a client re-reads what it shows).
    pub truncated: bool,
}

/// Rows listed in one overview's changes at most.
pub const CHANGES_LIMIT: u32 = 200;

/// updated_at is set at a transaction's start, so a change committed late can carry a time just
/// before the previous overview's last change: the window reaches back this far. Rows listed twice
/// carry the same updated_at, which a client ignores.
pub const LATE_COMMIT_MARGIN: TimeDelta = TimeDelta::seconds(5);

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// Status id → French label, for clients.
    pub statuses: BTreeMap<i32, &'static str>,
    pub environments: Vec<EnvEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_error: Option<String>,
}

pub async fn overview(ops: &Ops) -> Overview {
    let envs = ops.environments();
    let per_env = futures_util::future::join_all(envs.iter().map(|env| ops.overview(*env)));
    let (results, live) = tokio::join!(per_env, ops.live().view());
    let environments = envs
        .iter()
        .zip(results)
        .map(|(env, r)| match r {
            Ok(o) => EnvEntry { env: env.as_str(), overview: Some(o), error: None, changes: None, rest_only: false },
            Err(e) => EnvEntry {
                env: env.as_str(),
                overview: None,
                rest_only: matches!(e, crate::OpsError::RestUnsupported { .. }),
                error: Some(e.to_string()),
                changes: None,
            },
        })
        .collect();
    let (live, live_error) = match live {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Overview {
        generated_at: Utc::now(),
        statuses: status::ALL.iter().map(|s| (*s, status::label(*s))).collect(),
        environments,
        live,
        live_error,
    }
}

/// Fills each environment's changes since `previous` (the last change each environment showed in
/// the previous overview): no query when its last change did not move.
pub async fn add_changes(ops: &Ops, overview: &mut Overview, previous: &BTreeMap<&'static str, DateTime<Utc>>) {
    for entry in &mut overview.environments {
        let Some(current) = entry.overview.as_ref().map(|o| o.last_change) else { continue };
        let Some(before) = previous.get(entry.env).copied() else { continue };
        let since = before - LATE_COMMIT_MARGIN;
        if current.is_none_or(|c| c <= before) {
            entry.changes = Some(Changes { since, rows: Vec::new(), truncated: false });
            continue;
        }
        let Ok(env) = ops.env(entry.env) else { continue };
        match ops.changed_since(env, since, CHANGES_LIMIT + 1).await {
            Ok(mut rows) => {
                let truncated = rows.len() > CHANGES_LIMIT as usize;
                rows.truncate(CHANGES_LIMIT as usize);
                entry.changes = Some(Changes { since, rows, truncated });
            }
            // Unknown changes: a client re-reads what it shows, as on the first overview.
            Err(e) => tracing::debug!("{}: changed rows not read: {e}", entry.env),
        }
    }
}

/// Each environment's last change in `overview`, for the next [`add_changes`].
pub fn last_changes(overview: &Overview) -> BTreeMap<&'static str, DateTime<Utc>> {
    overview
        .environments
        .iter()
        .filter_map(|e| Some((e.env, e.overview.as_ref()?.last_change?)))
        .collect()
}
