//! Every Redis key the fleet shares, in one place (docs/design.md §6): grep a key's name here to
//! find its format. Keys of one server carry its SERVER_ID as a Redis Cluster hash tag
//! (`server:{x}:...`, `worker_pool:{x}:...`) so the keys an atomic script touches together share
//! one slot; without SERVER_ID they are the un-namespaced keys of the deployment checklist.
//!
//! - capacity (crates/capacity): [`CapacityKeys`] (`server:cpu:allocated`, `server:ram:allocated`,
//!   `server:workers`, `server:leases`, `server:budget`) and the registry of live servers
//!   [`SERVERS`];
//! - OCR pool (crates/pool): [`PoolKeys`] (`worker_pool:allocation`,
//!   `worker_pool:allocation:processes`, `worker_pool:assignments`, `worker_pool:lock`);
//! - rate limit (crates/ratelimit): [`RateLimitKeys`] (`ratelimit:{<name>}:requests`, `:charges`,
//!   `:tokens`, `:state`, `:cooldown`);
//! - monitor (crates/monitor-lib): [`monitor_incidents`] (`monitor:incidents`).

/// The registry of live servers: a sorted set, SERVER_ID (or empty for the default server) →
/// expiry, refreshed with the capacity leases (crates/capacity budget.rs). One key for every server
/// sharing the Redis, so readers find every server without SCAN.
pub const SERVERS: &str = "servers";

/// `server` or `server:{<id>}`.
fn server_prefix(kind: &str, server_id: Option<&str>) -> String {
    match server_id {
        Some(id) => format!("{kind}:{{{id}}}"),
        None => kind.to_string(),
    }
}

/// Where one server's capacity state lives (crates/capacity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityKeys {
    /// String: milli-vCPUs held by live leases.
    pub cpu_allocated: String,
    /// String: milli-GB of RAM held by live leases.
    pub ram_allocated: String,
    /// Hash: worker id → its lease record (JSON).
    pub workers: String,
    /// Sorted set: worker id → lease expiry (ms).
    pub leases: String,
    /// The usable budget this server publishes (crates/capacity budget.rs), in the same slot.
    pub budget: String,
    /// The SERVER_ID these keys belong to (None: the default keys).
    pub server_id: Option<String>,
}

impl CapacityKeys {
    pub fn for_server(server_id: Option<&str>) -> CapacityKeys {
        let prefix = server_prefix("server", server_id);
        CapacityKeys {
            cpu_allocated: format!("{prefix}:cpu:allocated"),
            ram_allocated: format!("{prefix}:ram:allocated"),
            workers: format!("{prefix}:workers"),
            leases: format!("{prefix}:leases"),
            budget: format!("{prefix}:budget"),
            server_id: server_id.map(str::to_string),
        }
    }

    /// In the order crates/capacity's scripts expect them as KEYS[1..4].
    pub fn as_array(&self) -> [&str; 4] {
        [&self.cpu_allocated, &self.ram_allocated, &self.workers, &self.leases]
    }
}

/// Where one server's OCR pool state lives (crates/pool): the published allocation (the sum over
/// the live pool processes, each recording its own part in `processes`), the per-worker
/// assignments and the rebalancer lock. The records are [`crate::pool`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolKeys {
    /// String: the [`crate::pool::AllocationRecord`] (JSON).
    pub allocation: String,
    /// Hash process id → that process's own split and its expiry; `allocation` is their sum.
    pub processes: String,
    /// Hash worker id → its [`crate::pool::AssignmentRecord`] (JSON).
    pub assignments: String,
    pub lock: String,
}

impl PoolKeys {
    pub fn for_server(server_id: Option<&str>) -> PoolKeys {
        let prefix = server_prefix("worker_pool", server_id);
        PoolKeys {
            allocation: format!("{prefix}:allocation"),
            processes: format!("{prefix}:allocation:processes"),
            assignments: format!("{prefix}:assignments"),
            lock: format!("{prefix}:lock"),
        }
    }
}

/// Where one rate limiter's state lives (crates/ratelimit): five keys under `ratelimit:{<name>}:`.
/// The braces are literal, a hash tag, so the five keys share one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitKeys {
    /// Sorted set: `<reservation id>:<tokens charged at the grant>` → grant time (ms, Redis clock).
    /// At most RPM live members.
    pub requests: String,
    /// Sorted set: extra charge id (`<reservation id>:x`: an under-estimate's excess or a late
    /// settle) → charge time (ms).
    pub charges: String,
    /// Hash: extra charge id → tokens.
    pub tokens: String,
    /// Hash: the counters and bounds the scripts keep (requests and tokens in the window, the last
    /// reservation id, ...), see crates/ratelimit lua/prelude.lua.
    pub state: String,
    /// String: the end of the current cooldown (ms); expires by itself when the cooldown ends.
    pub cooldown: String,
}

impl RateLimitKeys {
    pub fn for_name(name: &str) -> RateLimitKeys {
        let prefix = format!("ratelimit:{{{name}}}");
        RateLimitKeys {
            requests: format!("{prefix}:requests"),
            charges: format!("{prefix}:charges"),
            tokens: format!("{prefix}:tokens"),
            state: format!("{prefix}:state"),
            cooldown: format!("{prefix}:cooldown"),
        }
    }

    /// In the order crates/ratelimit's scripts expect them as KEYS[1..5].
    pub fn as_array(&self) -> [&str; 5] {
        [&self.requests, &self.charges, &self.tokens, &self.state, &self.cooldown]
    }
}

/// The open incidents of the monitor of server `server_id` (a hash alert key → JSON, crates/monitor-lib
/// store.rs): `monitor:incidents`, or `monitor:{x}:incidents` so monitors of separate fleets
/// sharing a Redis keep their own.
pub fn monitor_incidents(server_id: Option<&str>) -> String {
    format!("{}:incidents", server_prefix("monitor", server_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capacity_keys_are_the_checklist_ones() {
        let k = CapacityKeys::for_server(None);
        assert_eq!(k.as_array(), ["server:cpu:allocated", "server:ram:allocated", "server:workers", "server:leases"]);
        assert_eq!(k.budget, "server:budget");
    }

    #[test]
    fn a_server_id_becomes_a_hash_tag() {
        let k = CapacityKeys::for_server(Some("vps-2"));
        assert_eq!(
            k.as_array(),
            ["server:{vps-2}:cpu:allocated", "server:{vps-2}:ram:allocated", "server:{vps-2}:workers", "server:{vps-2}:leases"]
        );
        assert_eq!(k.budget, "server:{vps-2}:budget");
        let p = PoolKeys::for_server(Some("vps-2"));
        assert_eq!(
            [p.allocation.as_str(), &p.processes, &p.assignments, &p.lock],
            ["worker_pool:{vps-2}:allocation", "worker_pool:{vps-2}:allocation:processes", "worker_pool:{vps-2}:assignments", "worker_pool:{vps-2}:lock"]
        );
        assert_eq!(PoolKeys::for_server(None).allocation, "worker_pool:allocation");
        assert_eq!(monitor_incidents(None), "monitor:incidents");
        assert_eq!(monitor_incidents(Some("vps-2")), "monitor:{vps-2}:incidents");
    }

    #[test]
    fn rate_limit_keys_share_the_name_as_a_hash_tag() {
        let k = RateLimitKeys::for_name("gemini");
        assert_eq!(
            k.as_array(),
            [
                "ratelimit:{gemini}:requests",
                "ratelimit:{gemini}:charges",
                "ratelimit:{gemini}:tokens",
                "ratelimit:{gemini}:state",
                "ratelimit:{gemini}:cooldown",
            ]
        );
    }
}
