//! What `/ready` asks Redis. A single server must answer PING. A cluster is ready when the first
//! seed node that answers reports `cluster_state:ok` (every slot served): one dead node that the
//! cluster has failed over from leaves the workers able to work, while a slot range without any
//! master stops some of them, whichever node REDIS_URL lists first.

use std::time::Duration;

use registre_config::RedisTarget;

/// How long one node may take to connect and answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// Ok when the workers' Redis can serve them; otherwise why not, naming nodes with their
/// passwords masked.
pub async fn redis_ready(target: &RedisTarget) -> Result<(), String> {
    if !target.is_cluster() {
        return match ask(target.first().expose(), "PING").await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("Redis does not answer ({e})")),
        };
    }
    let mut silent = Vec::new();
    for node in target.nodes() {
        match ask(node.expose(), "CLUSTER INFO").await {
            Ok(info) => {
                let state = info.lines().find_map(|l| l.trim().strip_prefix("cluster_state:")).unwrap_or("unknown");
                return if state == "ok" {
                    Ok(())
                } else {
                    Err(format!("Redis Cluster state is {state} (as {} sees it): some slots have no master", node.redacted()))
                };
            }
            Err(_) => silent.push(node.redacted()),
        }
    }
    Err(format!("no node of REDIS_URL answers ({})", silent.join(", ")))
}

/// One command on a fresh connection to one node, as a string reply.
async fn ask(url: &str, command: &str) -> Result<String, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut cmd = redis::Cmd::new();
    for word in command.split(' ') {
        cmd.arg(word);
    }
    let reply = tokio::time::timeout(NODE_TIMEOUT, async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async::<String>(&mut conn).await
    })
    .await;
    match reply {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", NODE_TIMEOUT.as_secs())),
    }
}
