//! Completions per minute over the last hour, maintained incrementally per environment inside the
//! process (the API, the monitor): the first overview reads the whole hour in one grouped range
//! scan of the status-5 partial index (`extraction_queue_completed_idx`, migration 0050); every
//! later one re-reads only the minutes since its previous call plus one minute of margin, and keeps
//! the closed minutes it already counted. With 100,000 rows (40,000 completed in the hour) this
//! turns the overview's most expensive query into a scan of a minute or two of completions.
//!
//! Why the margin: a completion is stamped with its transaction's start time, so a row stamped
//! 12:04:59.9 may commit at 12:05:00.1, after a read of 12:04 at 12:05:00.0; re-reading the
//! previous minute on every call counts it. A completed row is final (retry applies to Erreur only,
//! cancel refuses final rows), so a closed minute's count does not change once its rows committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use registre_config::EnvName;
use sqlx::PgPool;

use crate::db::{timed, MinuteCount};
use crate::OpsError;

/// Minutes shown (the current one included).
pub const MINUTES: i64 = 60;

/// The counted minutes of one environment.
#[derive(Debug, Default)]
struct EnvMinutes {
    counts: BTreeMap<DateTime<Utc>, u64>,
    /// The first minute the next call must read again (None: read the whole hour).
    reread_from: Option<DateTime<Utc>>,
}

/// Per-environment caches, shared by every request of the process.
#[derive(Debug, Default)]
pub struct CompletionCache {
    envs: Mutex<HashMap<EnvName, EnvMinutes>>,
}

impl CompletionCache {
    /// The last hour's completions per minute (oldest first, zeros included, 60 entries).
    pub(crate) async fn per_minute(&self, pool: &PgPool, env: EnvName) -> Result<Vec<MinuteCount>, OpsError> {
        let from = self.envs.lock().ok().and_then(|m| m.get(&env).and_then(|e| e.reread_from));
        // `greatest` ignores a NULL $1: the first call reads the whole hour.
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, Option<i64>)> = timed(
            env,
            "counting completions per minute",
            sqlx::query_as(
                "SELECT c.current, greatest($1, c.current - interval '59 minutes'), q.minute, q.count
                   FROM (SELECT date_trunc('minute', now()) AS current) c
                   LEFT JOIN LATERAL (
                        SELECT date_trunc('minute', updated_at) AS minute, count(*) AS count
                          FROM extraction_queue
                         WHERE status_id = 5 AND updated_at >= greatest($1, c.current - interval '59 minutes')
                         GROUP BY 1) q ON true",
            )
            .bind(from)
            .fetch_all(pool),
        )
        .await?;
        let Some(&(current, read_from, _, _)) = rows.first() else {
            return Ok(Vec::new());
        };
        let first = current - Duration::minutes(MINUTES - 1);
        let mut envs = match self.envs.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock: start the cache over.
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.clear();
                guard
            }
        };
        let cache = envs.entry(env).or_default();
        // Minutes read now replace what was kept of them; minutes out of the hour are dropped.
        cache.counts.retain(|minute, _| *minute >= first && *minute < read_from);
        for (_, _, minute, count) in &rows {
            if let (Some(minute), Some(count)) = (minute, count) {
                cache.counts.insert(*minute, u64::try_from(*count).unwrap_or(0));
            }
        }
        cache.reread_from = Some(current - Duration::minutes(1));
        Ok((0..MINUTES)
            .map(|i| {
                let minute = first + Duration::minutes(i);
                MinuteCount { minute, count: cache.counts.get(&minute).copied().unwrap_or(0) }
            })
            .collect())
    }

    /// Forgets what was counted (tests; an operator's correction of completed rows).
    pub fn clear(&self) {
        if let Ok(mut envs) = self.envs.lock() {
            envs.clear();
        }
    }
}
