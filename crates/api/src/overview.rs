//! The overview every view shares (GET /api/overview, the SSE stream, /metrics): each environment's
//! counts and ages, and Redis's live state, read concurrently. A part that does not answer is
//! reported in place (`error`) so the rest still shows: an operator needs the dashboard most when
//! something is down.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use registre_ops::{EnvOverview, LiveView, Ops};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct EnvEntry {
    pub env: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overview: Option<EnvOverview>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reached through Supabase REST only: not read here, and not down (`registre_env_rest_only`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rest_only: bool,
}

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
            Ok(o) => EnvEntry { env: env.as_str(), overview: Some(o), error: None, rest_only: false },
            Err(e) => EnvEntry {
                env: env.as_str(),
                overview: None,
                rest_only: matches!(e, registre_ops::OpsError::RestUnsupported { .. }),
                error: Some(e.to_string()),
            },
        })
        .collect();
    let (live, live_error) = match live {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Overview {
        generated_at: Utc::now(),
        statuses: (1..=6).map(|s| (s, registre_ops::status_label(s))).collect(),
        environments,
        live,
        live_error,
    }
}
