//! The pool manager's Redis side against a real Redis: one rebalancer per pool key at a time
//! (many contenders at once, takeover only after expiry or release), and the exact JSON of
//! worker_pool:allocation and worker_pool:assignments.

use std::time::Duration;

use redis::Commands;
use registre_pool::{Mode, PoolKeys, PoolManager, QueueCounts, Split};
use registre_testkit::{redis_sync, shared_redis_url, unique};

fn manager(url: &str, server: &str, owner: &str) -> PoolManager {
    let client = redis::Client::open(url).unwrap();
    let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, redis::aio::ConnectionManagerConfig::new()).unwrap();
    PoolManager::new(conn, PoolKeys::for_server(Some(server)), owner.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_pool_process_rebalances_at_a_time() {
    let url = shared_redis_url();
    let server = unique("pool");
    let contenders: Vec<PoolManager> = (0..16).map(|i| manager(&url, &server, &format!("host:{i}"))).collect();
    let ttl = Duration::from_millis(600);
    let tasks: Vec<_> = contenders.iter().cloned().map(|m| tokio::spawn(async move { m.hold_lock(ttl).await.unwrap() })).collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 simultaneous pool processes may rebalance");
    let owner: String = redis_sync(&url).get(format!("worker_pool:{{{server}}}:lock")).unwrap();
    let holder_index: usize = owner.trim_start_matches("host:").parse().unwrap();
    let other = (holder_index + 1) % contenders.len();

    // The holder extends its lock; the others keep being refused while it lives.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(contenders[holder_index].hold_lock(ttl).await.unwrap());
        assert!(!contenders[other].hold_lock(ttl).await.unwrap());
    }
    // A holder that stops renewing (crashed) loses the lock after the TTL.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(contenders[other].hold_lock(ttl).await.unwrap(), "the lock must free after its expiry");
    // Release only removes one's own lock.
    contenders[holder_index].release_lock().await.unwrap();
    assert!(!contenders[holder_index].hold_lock(ttl).await.unwrap(), "a stale owner's release must not free the new owner's lock");
    contenders[other].release_lock().await.unwrap();
    assert!(contenders[holder_index].hold_lock(ttl).await.unwrap());
    contenders[holder_index].release_lock().await.unwrap();
}

#[tokio::test]
async fn allocation_and_assignments_have_the_documented_fields() {
    let url = shared_redis_url();
    let server = unique("pool");
    let m = manager(&url, &server, "host:1");
    m.publish_allocation(Split { index: 3, acte: 1 }, QueueCounts { index: 40, acte: 0 }).await.unwrap();
    m.assign("ocr-worker-1", Mode::Index).await.unwrap();

    let mut c = redis_sync(&url);
    let json: String = c.get(format!("worker_pool:{{{server}}}:allocation")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["acteWorkers", "indexWorkers", "queue", "totalWorkers", "updatedAt"]);
    assert_eq!((v["indexWorkers"].as_u64(), v["acteWorkers"].as_u64(), v["totalWorkers"].as_u64()), (Some(3), Some(1), Some(4)));
    assert_eq!(v["queue"], serde_json::json!({"index": 40, "acte": 0}));
    assert_eq!(m.allocation().await.unwrap().unwrap().index_workers, 3);

    let json: String = c.hget(format!("worker_pool:{{{server}}}:assignments"), "ocr-worker-1").unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["assignedMode", "lastUpdated", "workerId"]);
    assert_eq!((v["workerId"].as_str(), v["assignedMode"].as_str()), (Some("ocr-worker-1"), Some("index")));
    m.unassign("ocr-worker-1").await.unwrap();
    let n: usize = c.hlen(format!("worker_pool:{{{server}}}:assignments")).unwrap();
    assert_eq!(n, 0);
    let _: () = redis::cmd("DEL").arg(format!("worker_pool:{{{server}}}:allocation")).query(&mut c).unwrap();
}
