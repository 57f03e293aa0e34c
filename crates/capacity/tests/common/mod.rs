//! What the capacity test files share: a manager built from environment-style variables, as a
//! binary builds it, so each test states only the variables it is about.

use registre_capacity::{Allocation, CapacityManager, CapacitySettings};
use registre_config::Config;

/// A manager for `redis_url` with `vars` on top of the two variables every binary needs.
pub fn manager(redis_url: &str, vars: &[(&str, &str)]) -> CapacityManager {
    let mut all = vec![("REDIS_URL", redis_url), ("DATABASE_URL", "postgres://localhost/unused")];
    all.extend_from_slice(vars);
    let config = Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("test config is valid");
    let conn = registre_runtime::redis_connection(&config.redis_url).expect("redis url");
    CapacityManager::new(conn, CapacitySettings::from_config(&config))
}

#[allow(dead_code)] // not every test file asks
pub fn granted(a: &Allocation) -> bool {
    matches!(a, Allocation::Granted { .. })
}
