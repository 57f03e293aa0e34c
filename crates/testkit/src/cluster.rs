//! A real Redis Cluster for the tests of REDIS_CLUSTER=true (docs/design.md §13): 3 masters and 3
//! replicas, each a private `redis-server --cluster-enabled yes` on a free port of 127.0.0.1,
//! joined by `redis-cli --cluster create ... --cluster-replicas 1`. The node timeout is short
//! (2 s) so a killed master's replica takes over within seconds. Every node is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::unique;

/// Milliseconds a master may be unreachable before its replica is promoted.
pub const NODE_TIMEOUT_MS: u64 = 2000;

pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it installed? bash .ci/run installs it): {e}"));
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or a power loss.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Six nodes, three of them masters, every slot covered.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let port = crate::free_port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair (port, port + 10000) for a cluster node");
}

/// One line of `CLUSTER NODES`: (port, is master, is failed).
fn parse_nodes(text: &str) -> Vec<(u16, bool, bool)> {
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let addr = fields.get(1)?;
            let port: u16 = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = fields.get(2)?;
            Some((port, flags.contains("master"), flags.contains("fail")))
        })
        .collect()
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster and waits (60 s at most) until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let mut ports = Vec::new();
        for _ in 0..6 {
            let p = free_cluster_port(&ports);
            ports.push(p);
        }
        let mut nodes: Vec<ClusterNode> = ports
            .iter()
            .map(|&port| {
                let dir = std::env::temp_dir().join(unique("redis-cluster-node"));
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
                ClusterNode { port, child: None, dir }
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        let cluster = RedisCluster { nodes };
        for node in &cluster.nodes {
            cluster.wait_for_ping(node.port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_healthy(Duration::from_secs(60));
        cluster
    }

    fn wait_for_ping(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.query(port, &["PING"]).is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "cluster node on port {port} did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One command to one node; `None` when it does not answer.
    pub fn query(&self, port: u16, args: &[&str]) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let value: redis::Value = cmd.query(&mut conn).ok()?;
        match value {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            redis::Value::SimpleString(s) => Some(s),
            redis::Value::VerbatimString { text, .. } => Some(text),
            redis::Value::Okay => Some("OK".into()),
            other => Some(format!("{other:?}")),
        }
    }

    /// The seed list for REDIS_URL (every node, comma-separated).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(ClusterNode::url).collect::<Vec<_>>().join(",")
    }

    /// Every running node answers `cluster_state:ok` and sees 3 masters that are not failed.
    pub fn is_healthy(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let ok = self.query(n.port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"));
            let masters = self
                .query(n.port, &["CLUSTER", "NODES"])
                .map(|t| parse_nodes(&t).iter().filter(|(_, master, failed)| *master && !*failed).count())
                .unwrap_or(0);
            // 3 live masters (a failed one is flagged `master,fail` and has lost its slots).
            ok && masters == 3
        })
    }

    pub fn wait_until_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.is_healthy() {
            assert!(Instant::now() < deadline, "the Redis Cluster did not reach cluster_state:ok with 3 masters within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the master serving `key`'s slot, as the running nodes see it.
    pub fn master_of(&self, key: &str) -> u16 {
        let running = self.nodes.iter().find(|n| n.is_running()).expect("a running node");
        let mut conn = redis::Client::open(running.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("cluster node {}: {e}", running.port));
        let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut conn).unwrap_or_else(|e| panic!("CLUSTER KEYSLOT: {e}"));
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).unwrap_or_else(|e| panic!("CLUSTER SLOTS: {e}"));
        for range in slots {
            let redis::Value::Array(items) = range else { continue };
            let int = |v: &redis::Value| if let redis::Value::Int(i) = v { *i } else { -1 };
            let (start, end) = (int(&items[0]), int(&items[1]));
            if (start..=end).contains(&slot) {
                if let redis::Value::Array(master) = &items[2] {
                    return int(&master[1]) as u16;
                }
            }
        }
        panic!("no master serves slot {slot} of {key}");
    }

    /// SIGKILLs the master serving `key` and waits (60 s at most) until its replica has taken over
    /// and the cluster is healthy again. Returns the killed node's port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_of(key);
        self.kill_node(port);
        // The cluster keeps reporting `ok` until the node timeout marks the master failed, so
        // wait for the slot to have another master first.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.master_of(key) == port {
            assert!(Instant::now() < deadline, "no replica took over {key}'s slot from :{port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_until_healthy(Duration::from_secs(60));
        port
    }

    /// SIGKILLs one node without waiting for anything.
    pub fn kill_node(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}
