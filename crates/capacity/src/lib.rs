//! The server's CPU/RAM budget, shared by every worker process of a server through Redis.
//!
//! Each worker holds a [`Lease`] on the fixed cost of its [`WorkerType`]. Every operation
//! (allocate, switch, renew, release, status) is ONE Lua script run atomically by Redis, so no amount of
//! concurrency over-allocates, and leases expire on the Redis clock, so a process that dies
//! without releasing (SIGKILL, OOM, power loss) gives its capacity back after the lease TTL.
//!
//! Keys ([`registre_domain::keys::CapacityKeys`]): `server:cpu:allocated`, `server:ram:allocated` (decimal strings, the
//! sum over live leases), `server:workers` (hash id → JSON record), `server:leases` (sorted set
//! id → expiry ms); with `SERVER_ID=x`, `server:{x}:cpu:allocated` and so on. Each server also
//! publishes its usable budget (`server:budget`) and registers in `servers` ([`budget`]).

pub mod budget;
mod lease;
mod manager;

pub use budget::{live_servers, published_budget, Budget};
pub use lease::Lease;
pub use manager::{Allocation, CapacityManager, CapacitySettings, CapacityStatus, Renewal, Shortfall, WorkerRecord};
pub use registre_config::Milli;

/// The kinds of worker that hold capacity, each with its own cost (docs/design.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerType {
    Registre,
    IndexOcr,
    ActeOcr,
}

impl WorkerType {
    pub const ALL: [WorkerType; 3] = [WorkerType::Registre, WorkerType::IndexOcr, WorkerType::ActeOcr];

    /// The `type` field of worker records: `registre`, `index-ocr`, `acte-ocr`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerType::Registre => "registre",
            WorkerType::IndexOcr => "index-ocr",
            WorkerType::ActeOcr => "acte-ocr",
        }
    }
}

impl std::fmt::Display for WorkerType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("Redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("unexpected reply from the capacity script {script}: {detail}")]
    Reply { script: &'static str, detail: String },
}
