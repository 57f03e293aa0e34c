//! Where the capacity state lives in Redis. With SERVER_ID the id is wrapped in a hash tag
//! (`server:{x}:...`) so several servers share one Redis and Redis Cluster keeps one server's
//! four keys in one slot, which the atomic scripts require. The server's published budget
//! (`server:budget` / `server:{x}:budget`, crate::budget) sits in the same slot.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityKeys {
    pub cpu_allocated: String,
    pub ram_allocated: String,
    pub workers: String,
    pub leases: String,
    /// The usable budget this server publishes (crate::budget).
    pub budget: String,
    /// The SERVER_ID these keys belong to (None: the default keys).
    pub server_id: Option<String>,
}

impl CapacityKeys {
    pub fn for_server(server_id: Option<&str>) -> CapacityKeys {
        let prefix = match server_id {
            Some(id) => format!("server:{{{id}}}"),
            None => "server".to_string(),
        };
        CapacityKeys {
            cpu_allocated: format!("{prefix}:cpu:allocated"),
            ram_allocated: format!("{prefix}:ram:allocated"),
            workers: format!("{prefix}:workers"),
            leases: format!("{prefix}:leases"),
            budget: format!("{prefix}:budget"),
            server_id: server_id.map(str::to_string),
        }
    }

    /// In the order the scripts expect them as KEYS[1..4].
    pub(crate) fn as_array(&self) -> [&str; 4] {
        [&self.cpu_allocated, &self.ram_allocated, &self.workers, &self.leases]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_are_the_checklist_ones() {
        let k = CapacityKeys::for_server(None);
        assert_eq!(k.as_array(), ["server:cpu:allocated", "server:ram:allocated", "server:workers", "server:leases"]);
        assert_eq!(k.budget, "server:budget");
    }

    #[test]
    fn server_id_becomes_a_hash_tag() {
        let k = CapacityKeys::for_server(Some("vps-2"));
        assert_eq!(
            k.as_array(),
            ["server:{vps-2}:cpu:allocated", "server:{vps-2}:ram:allocated", "server:{vps-2}:workers", "server:{vps-2}:leases"]
        );
        assert_eq!(k.budget, "server:{vps-2}:budget");
    }
}
