//! Completions (rows that reached status 5) kept incrementally per environment inside the process
//! (the API, the monitor, registrectl), so an overview never re-reads what it already counted:
//!
//! - **per minute over the last hour**: the first overview reads the whole hour in one grouped
//!   range scan of the status-5 partial index (`extraction_queue_completed_idx`, migration 0050);
//!   every later one re-reads only the minutes since its previous call plus one minute of margin,
//!   and keeps the closed minutes (by source);
//! - **status-5 rows per source** (80 % of a production table, the bulk of what counting rows per
//!   status and source used to scan): a baseline of the rows completed before a minute B (one
//!   index-only count, refreshed every [`BASELINE_EVERY`]) plus the kept per-minute counts from B
//!   on. The overview then counts only the non-final statuses (an index-only scan of 1, 2, 3, 4, 6).
//!
//! Why the margin: a completion is stamped with its transaction's start time, so a row stamped
//! 12:04:59.9 may commit at 12:05:00.1, after a read of 12:04 at 12:05:00.0; re-reading the
//! previous minute on every call counts it (and the baseline stops two minutes back). A completed
//! row is final (retry applies to Erreur only, cancel refuses final rows); a status-5 row deleted
//! or changed by hand is still counted until the next baseline, at most [`BASELINE_EVERY`] later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use registre_config::EnvName;
use sqlx::PgPool;

use crate::db::{timed, MinuteCount};
use crate::OpsError;

/// Minutes shown (the current one included).
pub const MINUTES: i64 = 60;
/// How often the status-5 baseline is counted again (corrects rows deleted or edited by hand).
pub const BASELINE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug)]
struct Baseline {
    /// Status-5 rows per source whose completion is before `before`.
    by_source: BTreeMap<String, u64>,
    before: DateTime<Utc>,
    taken: Instant,
}

/// What is kept of one environment.
#[derive(Debug, Default)]
struct EnvMinutes {
    /// (minute, source) → completions.
    counts: BTreeMap<(DateTime<Utc>, String), u64>,
    /// The first minute the next call must read again (None: read the whole hour).
    reread_from: Option<DateTime<Utc>>,
    baseline: Option<Baseline>,
}

/// Per-environment caches, shared by every request of the process.
#[derive(Debug, Default)]
pub struct CompletionCache {
    envs: Mutex<HashMap<EnvName, EnvMinutes>>,
}

/// What the overview takes from the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completions {
    /// The last hour, oldest first, zeros included (60 entries).
    pub per_minute: Vec<MinuteCount>,
    /// Status-5 rows per source (the whole table).
    pub completed_by_source: BTreeMap<String, u64>,
}

impl CompletionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EnvName, EnvMinutes>> {
        match self.envs.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock: start the cache over.
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.clear();
                guard
            }
        }
    }

    pub(crate) async fn read(&self, pool: &PgPool, env: EnvName) -> Result<Completions, OpsError> {
        let from = self.lock().get(&env).and_then(|e| e.reread_from);
        // `greatest` ignores a NULL $1: the first call reads the whole hour.
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>, Option<i64>)> = timed(
            env,
            "counting completions per minute",
            sqlx::query_as(
                "SELECT c.current, greatest($1, c.current - interval '59 minutes'), q.minute, q.source, q.count
                   FROM (SELECT date_trunc('minute', now()) AS current) c
                   LEFT JOIN LATERAL (
                        SELECT date_trunc('minute', updated_at) AS minute, document_source::text AS source, count(*) AS count
                          FROM extraction_queue
                         WHERE status_id = 5 AND updated_at >= greatest($1, c.current - interval '59 minutes')
                         GROUP BY 1, 2) q ON true",
            )
            .bind(from)
            .fetch_all(pool),
        )
        .await?;
        let Some(&(current, read_from, _, _, _)) = rows.first() else {
            return Ok(Completions { per_minute: Vec::new(), completed_by_source: BTreeMap::new() });
        };
        let first = current - Duration::minutes(MINUTES - 1);
        {
            let mut envs = self.lock();
            let cache = envs.entry(env).or_default();
            // Minutes read now replace what was kept of them; minutes out of the hour are dropped.
            cache.counts.retain(|(minute, _), _| *minute >= first && *minute < read_from);
            for (_, _, minute, source, count) in &rows {
                if let (Some(minute), Some(source), Some(count)) = (minute, source, count) {
                    cache.counts.insert((*minute, source.clone()), u64::try_from(*count).unwrap_or(0));
                }
            }
            cache.reread_from = Some(current - Duration::minutes(1));
        }

        // The status-5 baseline: two minutes back, so late commits are in the minutes, not in it.
        let stale = self.lock().get(&env).and_then(|e| e.baseline.as_ref()).is_none_or(|b| b.taken.elapsed() >= BASELINE_EVERY);
        if stale {
            let before = current - Duration::minutes(2);
            let counted: Vec<(String, i64)> = timed(
                env,
                "counting completed rows per source",
                sqlx::query_as(
                    "SELECT s.source, s.n - coalesce(r.n, 0)
                       FROM (SELECT document_source::text AS source, count(*) AS n
                               FROM extraction_queue WHERE status_id = 5 GROUP BY 1) s
                       LEFT JOIN (SELECT document_source::text AS source, count(*) AS n
                                    FROM extraction_queue WHERE status_id = 5 AND updated_at >= $1 GROUP BY 1) r
                         USING (source)",
                )
                .bind(before)
                .fetch_all(pool),
            )
            .await?;
            let by_source = counted.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect();
            if let Some(cache) = self.lock().get_mut(&env) {
                cache.baseline = Some(Baseline { by_source, before, taken: Instant::now() });
            }
        }

        let envs = self.lock();
        let Some(cache) = envs.get(&env) else {
            return Ok(Completions { per_minute: Vec::new(), completed_by_source: BTreeMap::new() });
        };
        let per_minute = (0..MINUTES)
            .map(|i| {
                let minute = first + Duration::minutes(i);
                let count = cache.counts.range((minute, String::new())..).take_while(|((m, _), _)| *m == minute).map(|(_, n)| *n).sum();
                MinuteCount { minute, count }
            })
            .collect();
        let mut completed_by_source = BTreeMap::new();
        if let Some(b) = &cache.baseline {
            completed_by_source = b.by_source.clone();
            for ((minute, source), n) in &cache.counts {
                if *minute >= b.before {
                    *completed_by_source.entry(source.clone()).or_insert(0) += n;
                }
            }
        }
        Ok(Completions { per_minute, completed_by_source })
    }

    /// Forgets what was counted (an operator's correction of completed rows shows at once).
    pub fn clear(&self) {
        self.lock().clear();
    }
}
