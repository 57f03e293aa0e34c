//! Where Redis is (REDIS_URL, REDIS_CLUSTER; docs/design.md §13): one server, or the nodes of a Redis
//! Cluster. Kept as one type so every binary asks `registre_runtime::redis_connection` for a
//! connection without caring which of the two it is; the URLs stay secret (passwords masked).

use std::fmt;

use crate::SecretUrl;

/// One Redis server, or the seed nodes of a Redis Cluster (any reachable node tells the client
/// the rest of the cluster, so two or three of them are plenty).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Never empty.
    nodes: Vec<SecretUrl>,
    cluster: bool,
}

impl RedisTarget {
    /// A single server (REDIS_CLUSTER unset or false).
    pub fn single(url: SecretUrl) -> RedisTarget {
        RedisTarget { nodes: vec![url], cluster: false }
    }

    /// The seed nodes of a cluster; `None` when there is none.
    pub fn cluster(nodes: Vec<SecretUrl>) -> Option<RedisTarget> {
        (!nodes.is_empty()).then_some(RedisTarget { nodes, cluster: true })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Every configured node, in the order of REDIS_URL.
    pub fn nodes(&self) -> &[SecretUrl] {
        &self.nodes
    }

    /// The single server, or the first seed node of a cluster (what a one-node check such as
    /// a PING of /ready talks to).
    pub fn first(&self) -> &SecretUrl {
        // `nodes` is never empty: both constructors guarantee it.
        &self.nodes[0]
    }

    /// The URLs with their passwords masked, comma-separated as in REDIS_URL: safe for logs.
    pub fn redacted(&self) -> String {
        self.nodes.iter().map(SecretUrl::redacted).collect::<Vec<_>>().join(",")
    }
}

impl From<SecretUrl> for RedisTarget {
    fn from(url: SecretUrl) -> RedisTarget {
        RedisTarget::single(url)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.cluster { "cluster" } else { "single" };
        write!(f, "RedisTarget({mode}: {:?})", self.redacted())
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(u: &str) -> SecretUrl {
        SecretUrl::new(url::Url::parse(u).unwrap())
    }

    #[test]
    fn passwords_never_show() {
        let t = RedisTarget::cluster(vec![secret("redis://:pw1@10.0.0.1:6379"), secret("redis://:pw2@10.0.0.2:6379")]).unwrap();
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        assert_eq!(t.to_string(), "redis://:***@10.0.0.1:6379,redis://:***@10.0.0.2:6379");
        assert!(t.is_cluster());
        assert_eq!(t.first().expose(), "redis://:pw1@10.0.0.1:6379");
        assert!(RedisTarget::cluster(Vec::new()).is_none());
        assert!(!RedisTarget::single(secret("redis://localhost:6379")).is_cluster());
    }
}
