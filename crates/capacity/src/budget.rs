//! Each server publishes its own usable budget, so whoever reads the capacity of several servers
//! (registre-api's bars, `registrectl status`, the monitor's `capacity_over`) judges each one
//! against what that server really has, not against the reader's own SERVER_MAX_* settings.
//!
//! Keys (docs/capacity.md):
//! - `server:budget` / `server:{x}:budget`: hash `cpu`, `ram` (usable thousandths: SERVER_MAX_* ×
//!   (1 − reserve), 6400 and 12800 with the defaults), `host`, `pid`; expires [`BUDGET_TTL_LEASES`]
//!   lease TTLs after the last refresh. In the server's hash slot, beside its capacity keys.
//! - `servers`: sorted set of live servers (member SERVER_ID, `""` for the default server, score =
//!   expiry ms on the Redis clock), refreshed with the budget; readers list it instead of SCAN.
//!
//! Every process holding a capacity lease refreshes both from its lease heartbeat
//! ([`crate::Lease`]), so a server with a live worker always has a published budget, and one whose
//! workers all stopped drops out within the expiry.

use std::sync::LazyLock;

use redis::Script;
use registre_domain::keys::SERVERS;
use registre_runtime::RedisConn;

use crate::{CapacityError, CapacityManager, Milli};

/// The budget and the registry entry live this many lease TTLs after their last refresh: longer
/// than a lease, so a server's leases never outlive its budget.
pub const BUDGET_TTL_LEASES: u32 = 2;

static REGISTER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/register_server.lua")));
static LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/live_servers.lua")));

/// A server's published usable budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub cpu: Milli,
    pub ram: Milli,
}

fn redis_err(operation: &'static str) -> impl FnOnce(redis::RedisError) -> CapacityError {
    move |source| CapacityError::Redis { operation, source }
}

impl CapacityManager {
    /// Writes this server's usable budget under its capacity keys and refreshes its entry in the
    /// registry of servers (two calls: in a Redis Cluster the registry is in another slot).
    pub async fn publish_budget(&self) -> Result<(), CapacityError> {
        let s = self.settings();
        let ttl_ms = (s.costs.lease_ttl.as_millis() as u64).saturating_mul(BUDGET_TTL_LEASES as u64).max(1);
        let mut conn = self.connection();
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(
                &s.keys.budget,
                &[("cpu", s.usable_cpu.0.to_string()), ("ram", s.usable_ram.0.to_string()), ("host", s.host.clone()), ("pid", s.pid.to_string())],
            )
            .ignore()
            .pexpire(&s.keys.budget, ttl_ms as i64)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err("publishing the budget"))?;
        let _: i64 = REGISTER
            .key(SERVERS)
            .arg(s.keys.server_id.as_deref().unwrap_or(""))
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("registering the server"))?;
        Ok(())
    }
}

/// The budget a server published, or None (none published, or it expired).
pub async fn published_budget(conn: &RedisConn, server_id: Option<&str>) -> Result<Option<Budget>, CapacityError> {
    let keys = registre_domain::keys::CapacityKeys::for_server(server_id);
    let (cpu, ram): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(&keys.budget)
        .arg("cpu")
        .arg("ram")
        .query_async(&mut conn.clone())
        .await
        .map_err(redis_err("reading a budget"))?;
    Ok(match (cpu, ram) {
        (Some(cpu), Some(ram)) => Some(Budget { cpu: Milli(cpu), ram: Milli(ram) }),
        _ => None,
    })
}

/// The servers whose registry entry is live: None for the default server, Some(id) for SERVER_ID=id.
pub async fn live_servers(conn: &RedisConn) -> Result<Vec<Option<String>>, CapacityError> {
    let members: Vec<String> =
        LIVE.key(SERVERS).invoke_async(&mut conn.clone()).await.map_err(redis_err("listing the servers"))?;
    Ok(members.into_iter().map(|m| (!m.is_empty()).then_some(m)).collect())
}
