//! The open incidents in Redis, so a restarted monitor (PM2 restart, deploy, crash) neither fires
//! them again nor forgets to send "resolved" when they clear.
//!
//! Key `monitor:incidents` (registre_domain::keys::monitor_incidents; `monitor:{x}:incidents` with SERVER_ID=x, so monitors of separate
//! fleets sharing a Redis keep their own): hash alert key → JSON ([`SavedIncident`]: severity,
//! message, scope, since, clean rounds). Rewritten whole after every round (MULTI: DEL, HSET, PEXPIRE) with an
//! expiry of [`ttl`] (10 rounds, at least an hour): a monitor stopped for longer starts afresh
//! rather than resolving incidents nobody watched. A Redis failure only costs the memory across a
//! restart: the rounds go on with the incidents kept in the process.

use std::time::Duration;

use registre_runtime::RedisConn;

use crate::alerts::{Incident, SavedIncident};

/// How long saved incidents outlive the last round that saved them.
pub fn ttl(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(3600))
}

/// Saves the open incidents (replacing what was saved).
pub async fn save(conn: &RedisConn, key: &str, open: &[SavedIncident], ttl: Duration) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic().del(key).ignore();
    if !open.is_empty() {
        let fields: Vec<(String, String)> =
            open.iter().map(|i| (i.key.clone(), serde_json::to_string(i).unwrap_or_default())).collect();
        pipe.hset_multiple(key, &fields).ignore().pexpire(key, ttl.as_millis() as i64).ignore();
    }
    pipe.query_async(&mut conn.clone()).await
}

/// The incidents a previous run saved; unreadable records are skipped (logged).
pub async fn load(conn: &RedisConn, key: &str) -> redis::RedisResult<Vec<Incident>> {
    let saved: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL").arg(key).query_async(&mut conn.clone()).await?;
    Ok(saved
        .into_iter()
        .filter_map(|(key, json)| {
            let incident = serde_json::from_str::<SavedIncident>(&json).ok().and_then(Incident::from_saved);
            if incident.is_none() {
                tracing::warn!("saved incident {key} is not readable by this version: dropped");
            }
            incident
        })
        .collect())
}
