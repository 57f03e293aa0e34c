//! The pool manager's Redis side against a real Redis: one rebalancer per pool key at a time
//! (many contenders at once, takeover only after expiry or release), the exact JSON of
//! worker_pool:allocation and worker_pool:assignments, and the allocation as the sum over the
//! live pool processes of one server.

use std::time::Duration;

use redis::Commands;
use registre_domain::keys::PoolKeys;
use registre_domain::pool::QueueCounts;
use registre_pool::{Mode, PoolManager, Split};
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
    let lock_key = format!("worker_pool:{{{server}}}:lock");
    let contenders: Vec<PoolManager> = (0..16).map(|i| manager(&url, &server, &format!("host:{i}"))).collect();
    let long = Duration::from_secs(60);
    let tasks: Vec<_> = contenders.iter().cloned().map(|m| tokio::spawn(async move { m.hold_lock(long).await.unwrap() })).collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 simultaneous pool processes may rebalance");
    let mut c = redis_sync(&url);
    let owner: String = c.get(&lock_key).unwrap();
    let holder_index: usize = owner.trim_start_matches("host:").parse().unwrap();
    let holder = &contenders[holder_index];
    let other = &contenders[(holder_index + 1) % contenders.len()];

    // The holder extends its lock (its TTL goes back up); the others keep being refused.
    let _: () = redis::cmd("PEXPIRE").arg(&lock_key).arg(30_000).query(&mut c).unwrap();
    assert!(holder.hold_lock(long).await.unwrap());
    let pttl: i64 = redis::cmd("PTTL").arg(&lock_key).query(&mut c).unwrap();
    assert!(pttl > 30_000, "the holder's hold_lock extends its lock (pttl {pttl})");
    for m in contenders.iter().filter(|m| !std::ptr::eq(*m, holder)) {
        assert!(!m.hold_lock(long).await.unwrap(), "a live lock is never taken over");
    }

    // A holder that stops renewing (crashed) loses the lock once it expires, and only then:
    // every refusal is seen with the holder's lock still in place.
    assert!(holder.hold_lock(Duration::from_millis(500)).await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if other.hold_lock(long).await.unwrap() {
            break;
        }
        let still: Option<String> = c.get(&lock_key).unwrap();
        // The key may expire between the refusal and this read; if present it is the holder's.
        assert!(still.is_none() || still.as_deref() == Some(owner.as_str()), "refused while the lock was {still:?}");
        assert!(std::time::Instant::now() < deadline, "the lock never freed after its expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Release only removes one's own lock.
    holder.release_lock().await.unwrap();
    assert!(!holder.hold_lock(long).await.unwrap(), "a stale owner's release must not free the new owner's lock");
    other.release_lock().await.unwrap();
    assert!(holder.hold_lock(long).await.unwrap());
    holder.release_lock().await.unwrap();
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
    m.withdraw_allocation().await.unwrap();
    let left: Option<String> = c.get(format!("worker_pool:{{{server}}}:allocation")).unwrap();
    assert_eq!(left, None, "the last pool process withdrawing deletes the allocation");
}

/// Two pool processes of one SERVER_ID: each records its own split, the allocation key shows the
/// sum over the live ones; a process that stops withdraws its part, one that crashed stops
/// counting once its part expires.
#[tokio::test]
async fn allocation_is_the_sum_over_the_live_pool_processes() {
    let url = shared_redis_url();
    let server = unique("pool");
    let a = manager(&url, &server, "host:1:aaaa");
    let b = manager(&url, &server, "host:2:bbbb");
    let a1 = a.publish_allocation(Split { index: 1, acte: 1 }, QueueCounts { index: 0, acte: 0 }).await.unwrap();
    assert_eq!((a1.index_workers, a1.acte_workers, a1.total_workers), (1, 1, 2));
    let both = b.publish_allocation(Split { index: 3, acte: 1 }, QueueCounts { index: 40, acte: 2 }).await.unwrap();
    assert_eq!((both.index_workers, both.acte_workers, both.total_workers), (4, 2, 6));
    assert_eq!(both.queue, QueueCounts { index: 40, acte: 2 });
    // Republishing replaces a process's own part, it is never counted twice.
    let again = a.publish_allocation(Split { index: 0, acte: 2 }, QueueCounts { index: 40, acte: 2 }).await.unwrap();
    assert_eq!((again.index_workers, again.acte_workers, again.total_workers), (3, 3, 6));
    assert_eq!(b.allocation().await.unwrap(), Some(again.clone()));

    // a stops: only b's part is left, with the last queue counts.
    let left = a.withdraw_allocation().await.unwrap().unwrap();
    assert_eq!((left.index_workers, left.acte_workers, left.total_workers), (3, 1, 4));
    assert_eq!(left.queue, QueueCounts { index: 40, acte: 2 });

    // c publishes with a short part TTL and "crashes" (never publishes again): once its part
    // has expired, b's next publication no longer counts it.
    let c = manager(&url, &server, "host:3:cccc").with_part_ttl(Duration::from_millis(300));
    let with_c = c.publish_allocation(Split { index: 1, acte: 1 }, QueueCounts { index: 40, acte: 2 }).await.unwrap();
    assert_eq!(with_c.total_workers, 6);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = b.publish_allocation(Split { index: 3, acte: 1 }, QueueCounts { index: 40, acte: 2 }).await.unwrap();
        if now.total_workers == 4 {
            assert_eq!((now.index_workers, now.acte_workers), (3, 1));
            break;
        }
        assert_eq!(now.total_workers, 6, "{now:?}");
        assert!(std::time::Instant::now() < deadline, "the crashed process's part never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.withdraw_allocation().await.unwrap(), None);
    let mut conn = redis_sync(&url);
    let left: Option<String> = conn.get(format!("worker_pool:{{{server}}}:allocation")).unwrap();
    assert_eq!(left, None);
    let parts: usize = conn.hlen(format!("worker_pool:{{{server}}}:allocation:processes")).unwrap();
    assert_eq!(parts, 0);
}
